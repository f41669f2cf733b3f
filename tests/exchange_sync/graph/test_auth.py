"""Sign-in through MSAL, over the session that sends Microsoft's hosts to the emulator."""

import pytest

from exchange_sync.graph import AuthenticationFailed


def test_token_is_acquired_through_msal_and_cached(emulator, make_provider):
    provider = make_provider()

    first = provider.access_token()
    second = provider.access_token()

    assert first
    assert second == first
    assert emulator.emulator.stats()["token_requests"] == 1


def test_wrong_secret_fails_with_an_actionable_message_that_never_shows_the_secret(make_provider):
    secret = "wrong-secret-Zq8~value"
    provider = make_provider(client_secret=secret)

    with pytest.raises(AuthenticationFailed) as raised:
        provider.access_token()

    error = raised.value
    assert error.code == "invalid_client"
    assert "Microsoft 365 rejected the application's credentials (invalid_client)" in str(error)
    assert "check M365_CLIENT_SECRET" in str(error)
    for text in (str(error), repr(error), repr(provider)):
        assert secret not in text


def test_a_provider_built_after_fixing_the_secret_signs_in(make_provider):
    with pytest.raises(AuthenticationFailed):
        make_provider(client_secret="wrong").access_token()

    assert make_provider().access_token()


def test_unknown_client_id_says_which_setting_to_check(make_provider):
    with pytest.raises(AuthenticationFailed, match="check M365_CLIENT_ID"):
        make_provider(client_id="not-registered").access_token()


def test_unknown_tenant_says_which_setting_to_check(make_provider):
    with pytest.raises(AuthenticationFailed, match="M365_TENANT_ID"):
        make_provider(tenant_id="no-such-tenant").access_token()


def test_token_expiring_mid_sequence_is_refreshed_transparently(emulator, client, mailbox):
    client.check_mailbox(mailbox=mailbox)
    emulator.emulator.configure(expire_tokens_now=True)

    client.check_mailbox(mailbox=mailbox)
    client.check_mailbox(mailbox=mailbox)

    stats = emulator.emulator.stats()
    assert stats["token_requests"] == 2
    assert stats["by_status"].get("401") == 1
    assert client.requests_sent == 4  # the rejected request counts: it was spent
