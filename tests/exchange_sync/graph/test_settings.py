import pytest

from exchange_sync.graph import M365NotConfigured, graph_client_from_settings, reset_graph_client_cache


@pytest.fixture(autouse=True)
def _fresh_cache():
    reset_graph_client_cache()
    yield
    reset_graph_client_cache()


def test_nothing_configured_raises_m365_not_configured(settings):
    settings.M365_TENANT_ID = settings.M365_CLIENT_ID = settings.M365_CLIENT_SECRET = ""
    settings.M365_EMULATOR_URL = ""

    with pytest.raises(M365NotConfigured, match="set M365_TENANT_ID, M365_CLIENT_ID and M365_CLIENT_SECRET"):
        graph_client_from_settings()


def test_partial_credentials_are_not_enough(settings):
    settings.M365_TENANT_ID, settings.M365_CLIENT_ID, settings.M365_CLIENT_SECRET = "t", "c", ""
    settings.M365_EMULATOR_URL = ""

    with pytest.raises(M365NotConfigured):
        graph_client_from_settings()


def test_clients_share_the_token_provider_until_the_configuration_changes(settings):
    settings.M365_TENANT_ID, settings.M365_CLIENT_ID, settings.M365_CLIENT_SECRET = "t", "c", "s1"
    settings.M365_EMULATOR_URL = ""

    first, second = graph_client_from_settings(), graph_client_from_settings()
    settings.M365_CLIENT_SECRET = "s2"
    after_fix = graph_client_from_settings()

    assert first is not second  # fresh request counters per run
    assert first.token_provider is second.token_provider  # tokens reused across runs
    assert after_fix.token_provider is not first.token_provider
    assert "s1" not in repr(first.token_provider)


def test_emulator_url_sends_sign_in_and_graph_to_the_emulator(m365):
    m365.emulator.add_mailbox("ada@contoso.test")
    client = graph_client_from_settings()

    client.check_mailbox(mailbox="ada@contoso.test")

    stats = m365.emulator.stats()
    assert (stats["token_requests"], stats["graph_requests"]) == (1, 1)
    assert client.requests_sent == 1
