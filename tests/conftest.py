"""Shared fixtures. Tests mirror the packages they test (tests/contacts, tests/exchange_sync, ...)."""

import pytest

from tests.factories import UserFactory


@pytest.fixture
def staff_user(db):
    """A salesperson: staff, not a superuser."""
    return UserFactory(username="ann")


@pytest.fixture
def other_staff_user(db):
    return UserFactory(username="bob")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _static_files_without_collectstatic(settings):
    """Tests render pages with DEBUG off, where the manifest storage needs collectstatic's manifest;
    tests/test_deploy.py runs collectstatic and that storage for real, under gunicorn."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def inline_tasks(monkeypatch):
    """django-q2 tasks run as they are queued, in this process: a Job Queue pass's user tasks run
    before run_job_queue_entry returns (the process tests run them on real clusters instead)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def m365_emulator():
    """A running Microsoft 365 emulator (sign-in + Graph contacts) on a free port.

    Tenant `bcsync-test`, client id `bcsync-tests`, secret `test-secret`, no mailboxes (add them with
    `m365_emulator.emulator.add_mailbox(upn)`). `.url` is its base URL.
    """
    from m365_emulator import EmulatorConfig, serve_in_thread

    server = serve_in_thread(
        EmulatorConfig(
            tenant="bcsync-test", client_id="bcsync-tests", client_secret="test-secret", mailboxes=[]
        )
    )
    yield server
    server.stop()


@pytest.fixture
def m365(settings, m365_emulator):
    """Django pointed at the test emulator: sign-in and Graph traffic go there, through the real
    client. Yields the running emulator (`.url`, `.emulator` for knobs, stats and the Outlook side)."""
    from exchange_sync.graph import reset_graph_client_cache

    settings.M365_EMULATOR_URL = m365_emulator.url
    settings.M365_TENANT_ID = "bcsync-test"
    settings.M365_CLIENT_ID = "bcsync-tests"
    settings.M365_CLIENT_SECRET = "test-secret"
    reset_graph_client_cache()
    yield m365_emulator
    reset_graph_client_cache()


@pytest.fixture
def sync_user(db, m365):
    """A salesperson whose Microsoft 365 mailbox exists on the emulator."""
    from tests.factories import UserCardFactory

    card = UserCardFactory(user=UserFactory(username="ann"), microsoft_365_email="ann@contoso.test")
    m365.emulator.add_mailbox(card.microsoft_365_email)
    return card.user
