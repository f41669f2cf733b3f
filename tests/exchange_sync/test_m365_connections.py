"""Delegated mode without a browser: the encrypted token cache (at rest, bound to its user, rotated
under a new key), tokens from a stored cache over real MSAL and HTTP to the emulator, the errors
that mean "sign in again", runs refused while a user must reconnect, the scheduled pass skipping
them, and the Connect/Disconnect URLs keyed by the requester only."""

from __future__ import annotations

import base64
import json

import msal
import pytest
import requests
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection as db_connection
from django.urls import reverse
from django.utils import timezone

from exchange_sync.graph import SignInRequired, graph_client_from_settings
from exchange_sync.graph.auth import sign_in_again_reason
from exchange_sync.models import M365Connection, M365ConnectionStatus, SyncMode
from exchange_sync.services import contact_sync, m365_connections
from tests.factories import UserCardFactory, UserFactory
from tests.http_client import csrf_client, post

ACCESS_TOKEN = "delegated-ACCESS-token-1f0c"
REFRESH_TOKEN = "delegated-REFRESH-token-9a7e"


@pytest.fixture
def delegated(settings):
    settings.M365_AUTH_MODE = "delegated"
    settings.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    return settings


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


DEFAULT_TOKEN_ENDPOINT = "https://login.microsoftonline.com/bcsync-test/oauth2/v2.0/token"


def msal_cache(*, username: str, expires_in: int = 3600, token_endpoint: str = DEFAULT_TOKEN_ENDPOINT) -> str:
    """A token cache as MSAL writes it after a sign-in of `username` (oid u1, tenant t1)."""
    cache = msal.SerializableTokenCache()
    claims = {"oid": "u1", "tid": "t1", "preferred_username": username, "aud": "bcsync-tests", "sub": "s"}
    cache.add(
        {
            "client_id": "bcsync-tests",
            "scope": ["Contacts.ReadWrite"],
            "token_endpoint": token_endpoint,
            "response": {
                "access_token": ACCESS_TOKEN,
                "refresh_token": REFRESH_TOKEN,
                "id_token": f"{_b64({'alg': 'none'})}.{_b64(claims)}.",
                "client_info": _b64({"uid": "u1", "utid": "t1"}),
                "expires_in": expires_in,
                "token_type": "Bearer",
                "scope": "Contacts.ReadWrite openid profile offline_access",
            },
        }
    )
    return cache.serialize()


def connect(user, **cache_options) -> M365Connection:
    """A stored connection, as the callback stores it."""
    email = user.user_card.microsoft_365_email
    return M365Connection.objects.create(
        user=user,
        account=email,
        home_account_id="u1.t1",
        connected_at=timezone.now(),
        token_cache=m365_connections._encrypt(
            user_id=user.pk, cache=msal_cache(username=email, **cache_options)
        ),
    )


@pytest.fixture
def ann(db):
    return UserCardFactory(user=UserFactory(username="ann"), microsoft_365_email="ann@contoso.test").user


def raw_table_bytes() -> bytes:
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT * FROM exchange_sync_m365connection")
        rows = cursor.fetchall()
    return b"".join(
        bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
        for row in rows
        for value in row
    )


def test_the_token_cache_is_encrypted_at_rest_and_rotates_to_a_new_key(delegated, ann):
    old_key = delegated.TOKEN_ENCRYPTION_KEYS[0]
    connect(ann)
    stored = raw_table_bytes()
    assert stored and ACCESS_TOKEN.encode() not in stored and REFRESH_TOKEN.encode() not in stored
    assert b"RefreshToken" not in stored

    delegated.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]
    call_command("reencrypt_tokens")
    delegated.TOKEN_ENCRYPTION_KEYS = delegated.TOKEN_ENCRYPTION_KEYS[:1]  # the old key removed

    loaded = m365_connections.StoredTokenCache(M365Connection.objects.get(user=ann)).load()
    assert REFRESH_TOKEN in loaded
    assert REFRESH_TOKEN.encode() not in raw_table_bytes()


def test_a_cache_copied_onto_another_users_row_is_refused(delegated, ann):
    bob = UserCardFactory(user=UserFactory(username="bob"), microsoft_365_email="bob@contoso.test").user
    anns = connect(ann)
    bobs = connect(bob)
    M365Connection.objects.filter(pk=bobs.pk).update(token_cache=anns.token_cache)

    with pytest.raises(SignInRequired, match="cannot be decrypted"):
        m365_connections.StoredTokenCache(M365Connection.objects.get(pk=bobs.pk)).load()
    assert M365Connection.objects.get(pk=bobs.pk).status == M365ConnectionStatus.NEEDS_RECONNECTING


def test_a_key_that_is_not_a_fernet_key_is_named_without_echoing_it(delegated, ann):
    delegated.TOKEN_ENCRYPTION_KEYS = ["not-a-key-SECRETISH"]
    with pytest.raises(ImproperlyConfigured, match="not a Fernet key") as raised:
        connect(ann)
    assert "SECRETISH" not in str(raised.value)


@pytest.fixture
def token_endpoint(m365) -> str:
    """The emulator's token endpoint, as MSAL keys the cache by it (the tenant's id, not its name)."""
    discovery = requests.get(f"{m365.url}/bcsync-test/v2.0/.well-known/openid-configuration", timeout=10)
    return discovery.json()["token_endpoint"]


def test_the_stored_access_token_is_used_and_a_refused_refresh_marks_the_connection(
    delegated, m365, ann, token_endpoint
):
    m365.emulator.add_mailbox("ann@contoso.test")
    connection = connect(ann, token_endpoint=token_endpoint)
    store = m365_connections.StoredTokenCache(connection)

    client = graph_client_from_settings(token_cache=store)
    assert client.token_provider.access_token() == ACCESS_TOKEN
    assert m365.emulator.stats()["token_requests"] == 0  # from the cache, no sign-in

    # The access token has expired: MSAL redeems the refresh token, which this tenant refuses.
    M365Connection.objects.filter(pk=connection.pk).update(
        token_cache=m365_connections._encrypt(
            user_id=ann.pk,
            cache=msal_cache(username="ann@contoso.test", expires_in=-10, token_endpoint=token_endpoint),
        )
    )
    expired = graph_client_from_settings(
        token_cache=m365_connections.StoredTokenCache(M365Connection.objects.get())
    )
    with pytest.raises(
        SignInRequired, match="Microsoft 365 asks you to sign in again \\(invalid_grant\\)"
    ) as raised:
        expired.token_provider.access_token()
    for text in (str(raised.value), repr(raised.value)):
        assert REFRESH_TOKEN not in text and ACCESS_TOKEN not in text
    assert M365Connection.objects.get().status == M365ConnectionStatus.NEEDS_RECONNECTING


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (
            {"error": "invalid_grant", "error_codes": [700082]},
            "the sign-in expired after 90 days without use",
        ),
        ({"error": "invalid_grant", "error_codes": [50173]}, "the sign-in was revoked"),
        ({"error": "invalid_grant", "error_codes": [50076]}, "multi-factor authentication"),
        ({"error": "interaction_required", "error_codes": [50079]}, "register for multi-factor"),
        ({"error": "invalid_grant", "error_codes": [70043]}, "Conditional Access"),
        ({"error": "invalid_grant", "error_codes": [65001]}, "consent given to bcsync was withdrawn"),
        ({"error": "interaction_required"}, "asks you to sign in again (interaction_required)"),
        ({"error": "temporarily_unavailable"}, None),
        ({"error": "invalid_client", "error_codes": [7000222]}, None),
    ],
)
def test_the_errors_that_mean_sign_in_again(result, reason):
    found = sign_in_again_reason(result)
    assert found == reason if reason is None else reason in found


def test_runs_are_refused_until_the_user_connects_and_after_microsoft_asks_to_reconnect(delegated, ann):
    with pytest.raises(contact_sync.NeedsReconnecting, match="Connect to Microsoft 365 first"):
        contact_sync.request_contact_sync(user=ann, mode=SyncMode.SYNC, enqueue=False)

    connection = connect(ann)
    run = contact_sync.request_contact_sync(user=ann, mode=SyncMode.SYNC, enqueue=False)
    m365_connections.StoredTokenCache(connection).sign_in_required(reason="the sign-in was revoked")

    finished = contact_sync.run_contact_sync(run_id=run.pk)
    assert finished.status == "failed"
    assert finished.error.startswith("Reconnect to Microsoft 365: the sign-in was revoked.")
    with pytest.raises(contact_sync.SyncRefused, match="press Reconnect to Microsoft 365"):
        contact_sync.request_contact_sync(user=ann, mode=SyncMode.SYNC, enqueue=False)


def test_validate_says_to_reconnect(delegated, ann):
    check = contact_sync.validate_exchange_connection(user=ann)
    assert not check.ok
    assert "(sign-in to Microsoft 365): Connect to Microsoft 365 first" in check.message


def test_connect_urls_are_post_only_keyed_by_the_requester_and_disconnect_deletes_only_their_tokens(
    delegated, ann
):
    bob = UserCardFactory(user=UserFactory(username="bob"), microsoft_365_email="bob@contoso.test").user
    connect(ann)
    connect(bob)
    client = csrf_client(ann)

    assert client.get(reverse("admin:exchange_sync_exchangesyncsetup_m365_connect")).status_code == 403
    assert client.get(reverse("admin:exchange_sync_exchangesyncsetup_m365_disconnect")).status_code == 403
    response = post(client, reverse("admin:exchange_sync_exchangesyncsetup_m365_disconnect"), follow=True)

    assert "Disconnected from Microsoft 365" in response.content.decode()
    assert list(M365Connection.objects.values_list("user__username", flat=True)) == ["bob"]
    bobs_setup, _ = contact_sync.setups_for(user=bob)
    bobs_page = reverse("admin:exchange_sync_exchangesyncsetup_change", args=[bobs_setup.pk])
    assert client.get(bobs_page).status_code == 302  # Django admin: "doesn't exist", back to the index


def test_a_callback_without_a_sign_in_in_progress_stores_nothing(delegated, ann):
    client = csrf_client(ann)
    response = client.get(
        reverse("admin:exchange_sync_exchangesyncsetup_m365_callback"),
        {"code": "stolen-code", "state": "guessed"},
        follow=True,
    )
    assert "No Microsoft 365 sign-in was in progress here" in response.content.decode()
    assert not M365Connection.objects.exists()


def test_app_mode_has_no_connect_urls_in_use(settings, ann):
    settings.M365_AUTH_MODE = "app"
    client = csrf_client(ann)
    assert post(client, reverse("admin:exchange_sync_exchangesyncsetup_m365_connect")).status_code == 403


def test_the_page_shows_the_connection_and_reconnect_only_to_its_owner(delegated, ann):
    connection = connect(ann)
    m365_connections.StoredTokenCache(connection).sign_in_required(reason="the sign-in was revoked")
    setup, _ = contact_sync.setups_for(user=ann)
    page = reverse("admin:exchange_sync_exchangesyncsetup_change", args=[setup.pk])

    own = csrf_client(ann).get(page).content.decode()
    boss = UserFactory(username="boss", is_superuser=True)
    admins = csrf_client(boss).get(page).content.decode()

    assert (
        "Needs reconnecting: the sign-in was revoked." in own and "Reconnect to Microsoft 365</button>" in own
    )
    assert "Needs reconnecting: the sign-in was revoked." in admins
    listing = csrf_client(boss).get(reverse("admin:exchange_sync_exchangesyncsetup_changelist"))
    listing = listing.content.decode()
    assert '<td class="field-m365_connection">Needs reconnecting</td>' in listing
    assert "Reconnect to Microsoft 365</button>" not in admins  # Connect acts on the requester's own mailbox


def test_the_scheduled_pass_skips_a_user_who_must_reconnect(delegated, ann, caplog):
    from exchange_sync.models import ExchangeSyncSetup, SyncRun
    from exchange_sync.services import job_queue
    from tests.exchange_sync.test_job_queue import new_entry

    ExchangeSyncSetup.objects.create(user=ann, enabled=True)
    connection = connect(ann)
    m365_connections.StoredTokenCache(connection).sign_in_required(reason="the sign-in was revoked")

    job_queue.run_job_queue_entry(entry_id=new_entry(ann).pk)

    assert not SyncRun.objects.filter(user=ann).exists()
    assert any(
        "skipped ann: Reconnect to Microsoft 365: the sign-in was revoked." in record.getMessage()
        for record in caplog.records
    )


def test_reencrypt_tokens_names_connections_no_key_can_read(delegated, ann):
    connect(ann)
    delegated.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key dropped too early

    with pytest.raises(CommandError, match="1 connection\\(s\\) could not be decrypted with any key"):
        call_command("reencrypt_tokens")
