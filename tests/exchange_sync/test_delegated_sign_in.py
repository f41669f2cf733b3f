"""Delegated mode end to end below the browser: Connect through the emulator's sign-in pages with real
MSAL, runs that sign in from the stored (encrypted) refresh token an hour of token time later, Microsoft
revoking the sign-in, reconnecting, the wrong account, a tampered answer; and app mode's certificate
and a mailbox outside the app's scope. tests/e2e/test_delegated_browser.py does the same clicks in
Chromium."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.fernet import Fernet

from exchange_sync.graph import SignInRefused, reset_graph_client_cache
from exchange_sync.models import M365Connection, M365ConnectionStatus, RunStatus, SyncMode
from exchange_sync.services import contact_sync, m365_connections
from m365_emulator.control import sign_in
from tests.certificates import write_certificate
from tests.exchange_sync.test_m365_connections import raw_table_bytes
from tests.factories import PersonFactory, UserCardFactory, UserFactory

CALLBACK = "http://127.0.0.1/admin/exchange_sync/exchangesyncsetup/microsoft-365/callback/"
ANN = "ann@contoso.test"


@pytest.fixture
def delegated_m365(settings, m365):
    settings.M365_AUTH_MODE = "delegated"
    settings.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    m365.emulator.configure(grant="delegated", redirect_uris=[CALLBACK])
    m365.emulator.add_mailbox(ANN)
    m365.emulator.add_mailbox("bob@contoso.test")
    return m365


@pytest.fixture
def ann(db):
    return UserCardFactory(user=UserFactory(username="ann"), microsoft_365_email=ANN).user


def connect(user, *, as_account: str = ANN, tamper: bool = False) -> M365Connection:
    """Connect to Microsoft 365 as the callback does, after signing in on the emulator's pages."""
    flow = m365_connections.start_connect(user=user, redirect_uri=CALLBACK)
    answer = dict(parse_qsl(urlsplit(sign_in(flow["auth_uri"], as_account)).query))
    if tamper:
        answer["state"] = answer["state"][::-1]
    return m365_connections.finish_connect(user=user, flow=flow, answer=answer)


def stored_tokens(user) -> set[str]:
    """The refresh and access tokens in the user's decrypted cache."""
    cache = json.loads(m365_connections.StoredTokenCache(M365Connection.objects.get(user=user)).load())
    return {
        entry["secret"] for section in ("RefreshToken", "AccessToken") for entry in cache[section].values()
    }


def sync(user, mode: str = SyncMode.SYNC):
    run = contact_sync.request_contact_sync(user=user, mode=mode, enqueue=False)
    return contact_sync.run_contact_sync(run_id=run.pk)


def test_connect_then_runs_sign_in_from_the_stored_refresh_token_an_hour_later(delegated_m365, ann):
    PersonFactory.create_batch(3)
    connection = connect(ann)
    assert (connection.account, connection.status) == (ANN, M365ConnectionStatus.CONNECTED)
    first_tokens = stored_tokens(ann)
    assert len(first_tokens) == 2
    assert not any(token.encode() in raw_table_bytes() for token in first_tokens)  # a raw read finds none

    assert sync(ann).status == RunStatus.SUCCEEDED
    delegated_m365.emulator.auth.advance_clock(3600)  # the access token is dead at Graph
    later = sync(ann, SyncMode.FULL)

    assert later.status == RunStatus.SUCCEEDED, later.error
    assert len(delegated_m365.emulator.outlook(ANN).list_contacts("Business Central")) == 3
    refreshed = stored_tokens(ann)
    assert refreshed.isdisjoint(first_tokens)  # the rotated refresh token was saved
    assert not any(token.encode() in raw_table_bytes() for token in refreshed)
    assert M365Connection.objects.get(user=ann).last_used_at is not None


def test_a_revoked_sign_in_needs_reconnecting_and_reconnecting_heals_it(delegated_m365, ann):
    PersonFactory.create_batch(2)
    connect(ann)
    delegated_m365.emulator.auth.revoke_sessions(ANN)
    delegated_m365.emulator.auth.advance_clock(3600)

    failed = sync(ann)

    assert failed.status == RunStatus.FAILED
    assert failed.error.startswith("Reconnect to Microsoft 365: the sign-in was revoked")
    connection = M365Connection.objects.get(user=ann)
    assert connection.status == M365ConnectionStatus.NEEDS_RECONNECTING
    with pytest.raises(contact_sync.NeedsReconnecting, match="press Reconnect to Microsoft 365"):
        contact_sync.request_contact_sync(user=ann, mode=SyncMode.SYNC, enqueue=False)

    connect(ann)
    assert M365Connection.objects.get(user=ann).status == M365ConnectionStatus.CONNECTED
    assert sync(ann).status == RunStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("switch", "reason"),
    [
        ("require_mfa", "multi-factor authentication"),
        ("revoke_consent", "the consent given to bcsync was withdrawn"),
        ("enforce_sign_in_frequency", "Conditional Access policy requires signing in again"),
    ],
)
def test_microsofts_reasons_to_sign_in_again_are_told_in_words(delegated_m365, ann, switch, reason):
    connect(ann)
    getattr(delegated_m365.emulator.auth, switch)(ANN)
    delegated_m365.emulator.configure(expire_tokens_now=True)

    check = contact_sync.validate_exchange_connection(user=ann)

    assert not check.ok and reason in check.message
    assert M365Connection.objects.get(user=ann).reason.find(reason) >= 0


def test_signing_in_as_another_account_stores_nothing(delegated_m365, ann):
    with pytest.raises(SignInRefused) as refused:
        connect(ann, as_account="bob@contoso.test")

    assert str(refused.value).startswith(
        "You signed in to Microsoft 365 as bob@contoso.test, but your User Card's Microsoft 365 email "
        "is ann@contoso.test. Nothing was stored"
    )
    assert not M365Connection.objects.exists()


def test_a_tampered_answer_stores_nothing(delegated_m365, ann):
    with pytest.raises(SignInRefused, match="does not belong to the sign-in started here"):
        connect(ann, tamper=True)
    assert not M365Connection.objects.exists()


def test_disconnect_deletes_the_tokens_and_runs_then_ask_to_connect(delegated_m365, ann):
    connect(ann)
    assert m365_connections.disconnect(user=ann)
    assert raw_table_bytes() == b""
    with pytest.raises(contact_sync.NeedsReconnecting, match="Connect to Microsoft 365 first"):
        contact_sync.request_contact_sync(user=ann, mode=SyncMode.SYNC, enqueue=False)


def test_app_mode_on_a_mailbox_outside_the_apps_scope_names_rbac_for_applications(m365, sync_user):
    m365.emulator.configure(grant="delegated")  # the app's application permission reaches no mailbox

    check = contact_sync.validate_exchange_connection(user=sync_user)
    run = sync(sync_user)

    for message in (check.message, run.error):
        assert "403 ErrorAccessDenied" in message
        assert "the mailbox is outside the app's scope" in message and "RBAC for Applications" in message


def test_app_mode_signs_in_with_a_certificate_and_names_a_wrong_one(settings, m365, sync_user, tmp_path):
    good = write_certificate(tmp_path / "good.pem")
    m365.emulator.auth.add_certificate(good.read_text())
    settings.M365_CLIENT_SECRET = ""
    settings.M365_CLIENT_CERTIFICATE = str(good)
    reset_graph_client_cache()

    assert contact_sync.validate_exchange_connection(user=sync_user).ok

    settings.M365_CLIENT_CERTIFICATE = str(write_certificate(tmp_path / "other.pem"))
    check = contact_sync.validate_exchange_connection(user=sync_user)

    assert not check.ok
    assert (
        "Microsoft 365 rejected the application's credentials (invalid_client): check M365_CLIENT_CERTIFICATE"
        in (check.message)
    )
    assert "this certificate's SHA-256 thumbprint is" in check.message and "AADSTS700027" in check.message
