import io
import os
import shlex
from urllib.parse import urlsplit

import environ
import pytest
from django.core.management import call_command

from bcsync_site.local_env import LOCAL_EMULATOR_SETTINGS
from exchange_sync.graph import reset_graph_client_cache
from exchange_sync.services import contact_sync
from m365_emulator import EmulatorConfig, serve_in_thread
from m365_emulator.__main__ import build_parser
from tests.factories import UserCardFactory, UserFactory

pytestmark = pytest.mark.django_db


def emulator_arguments():
    out = io.StringIO()
    call_command("demo_mailboxes", stdout=out)
    return build_parser().parse_args(shlex.split(out.getvalue()))


def serve_emulator_as_make_run_starts_it():
    """What bin/run-local starts, on a free port."""
    arguments = vars(emulator_arguments())
    del arguments["host"], arguments["port"], arguments["verbose"]
    return serve_in_thread(EmulatorConfig(**arguments))


def write_local_env(env_file) -> str:
    out = io.StringIO()
    call_command("write_local_env", env_file=str(env_file), stdout=out)
    return out.getvalue()


@pytest.fixture
def shell_without_m365_settings(monkeypatch):
    for name in LOCAL_EMULATOR_SETTINGS:
        monkeypatch.delenv(name, raising=False)


def test_every_users_mailbox_reaches_the_emulators_command_line():
    for email in ("bob@contoso.test", "ann@contoso.test", ""):
        UserCardFactory(microsoft_365_email=email)
    arguments = emulator_arguments()
    assert arguments.mailboxes == ["ann@contoso.test", "bob@contoso.test"]


@pytest.mark.usefixtures("shell_without_m365_settings")
def test_make_runs_settings_step_adds_only_the_local_emulator_settings_env_has_no_value_for(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("SECRET_KEY=mine\nM365_TENANT_ID=\n# our app\nexport M365_CLIENT_ID=my-client\n")

    said = write_local_env(env_file)

    assert env_file.read_text() == (
        "SECRET_KEY=mine\nM365_TENANT_ID=bcsync-demo\n# our app\nexport M365_CLIENT_ID=my-client\n"
        "M365_EMULATOR_URL=http://127.0.0.1:8365\nM365_CLIENT_SECRET=local-emulator-secret\n"
    )
    added = "M365_EMULATOR_URL, M365_TENANT_ID, M365_CLIENT_SECRET"
    assert said == f"Added to {env_file} for the local emulator: {added}\n"
    assert write_local_env(env_file) == ""  # a second make run changes nothing
    assert env_file.read_text().count("M365_TENANT_ID") == 1


@pytest.mark.usefixtures("shell_without_m365_settings")
def test_a_second_shell_reaches_make_runs_emulator_where_a_new_demo_user_has_a_mailbox(
    tmp_path, monkeypatch, settings
):
    env_file = tmp_path / ".env"
    write_local_env(env_file)
    # Another shell: settings.py reads .env through django-environ.
    for name in LOCAL_EMULATOR_SETTINGS:
        monkeypatch.setenv(name, "")
    environ.Env.read_env(env_file, overwrite=True)
    for name in LOCAL_EMULATOR_SETTINGS:
        setattr(settings, name, os.environ[name])
    server = serve_emulator_as_make_run_starts_it()
    settings.M365_EMULATOR_URL = settings.M365_EMULATOR_URL.replace(
        "127.0.0.1:8365", urlsplit(server.url).netloc
    )
    reset_graph_client_cache()
    try:
        # A User Card saved while the emulator runs, as a new user's would be.
        card = UserCardFactory(
            user=UserFactory(username="sally"), microsoft_365_email="sally@bcsync-demo.test"
        )

        check = contact_sync.validate_exchange_connection(user=card.user)
    finally:
        server.stop()
        reset_graph_client_cache()

    assert check.ok, check.message
    assert check.message.startswith("Connected successfully to Microsoft 365: mailbox sally@bcsync-demo.test")


def test_in_delegated_mode_make_runs_emulator_lets_a_demo_user_connect(settings, monkeypatch):
    from urllib.parse import parse_qsl

    from cryptography.fernet import Fernet

    from exchange_sync.services import m365_connections
    from m365_emulator.control import sign_in

    settings.M365_AUTH_MODE = "delegated"
    settings.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.SITE_URL = "http://127.0.0.1:8000"
    for name, value in LOCAL_EMULATOR_SETTINGS.items():
        setattr(settings, name, value)
    card = UserCardFactory(user=UserFactory(username="sally"), microsoft_365_email="sally@bcsync-demo.test")
    arguments = emulator_arguments()
    callback = "http://127.0.0.1:8000/admin/exchange_sync/exchangesyncsetup/microsoft-365/callback/"
    assert (arguments.grant, arguments.redirect_uris) == ("delegated", [callback])
    server = serve_emulator_as_make_run_starts_it()
    settings.M365_EMULATOR_URL = server.url
    reset_graph_client_cache()
    try:
        flow = m365_connections.start_connect(user=card.user, redirect_uri=callback)
        answer = dict(parse_qsl(urlsplit(sign_in(flow["auth_uri"], card.microsoft_365_email)).query))
        connection = m365_connections.finish_connect(user=card.user, flow=flow, answer=answer)
        check = contact_sync.validate_exchange_connection(user=card.user)
    finally:
        server.stop()
        reset_graph_client_cache()

    assert connection.account == "sally@bcsync-demo.test"
    assert check.ok, check.message
