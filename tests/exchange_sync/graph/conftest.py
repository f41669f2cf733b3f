"""Fixtures for testing the Graph client over real HTTP against the local emulator."""

import uuid
from collections.abc import Callable, Iterator

import pytest

from exchange_sync.graph.auth import AppCredential, AppRegistration, ClientCredentialsTokenProvider
from exchange_sync.graph.client import GraphClient
from exchange_sync.graph.transport import build_session

# Knobs the tests here turn; put back afterwards in case the emulator is shared with other tests.
_KNOBS = (
    "latency_ms",
    "item_latency_ms",
    "fault_rate_429",
    "fault_rate_503",
    "fault_rate_504",
    "retry_after_s",
)


@pytest.fixture
def emulator(m365_emulator) -> Iterator:
    config = m365_emulator.emulator.config
    saved = {name: getattr(config, name) for name in _KNOBS}
    m365_emulator.emulator.reset_stats()
    yield m365_emulator
    m365_emulator.emulator.configure(**saved)


@pytest.fixture
def mailbox(emulator) -> str:
    """A mailbox of its own per test, so tests never see each other's folders."""
    upn = f"ada.{uuid.uuid4().hex[:8]}@contoso.test"
    emulator.emulator.add_mailbox(upn)
    return upn


@pytest.fixture
def make_provider(emulator) -> Callable[..., ClientCredentialsTokenProvider]:
    config = emulator.emulator.config

    def make(**overrides: str) -> ClientCredentialsTokenProvider:
        values = {
            "tenant_id": config.tenant,
            "client_id": config.client_id,
            "client_secret": config.client_secret,
            **overrides,
        }
        registration = AppRegistration(
            tenant_id=values["tenant_id"],
            client_id=values["client_id"],
            credential=AppCredential(setting="M365_CLIENT_SECRET", secret=values["client_secret"]),
        )
        return ClientCredentialsTokenProvider(
            registration=registration, session=build_session(emulator_url=emulator.url)
        )

    return make


@pytest.fixture
def make_client(make_provider) -> Callable[..., GraphClient]:
    def make(**options) -> GraphClient:
        provider = make_provider()
        return GraphClient(
            token_provider=provider, session=provider.session, **{"backoff_base_s": 0.01, **options}
        )

    return make


@pytest.fixture
def client(make_client) -> GraphClient:
    return make_client()


@pytest.fixture
def folder_id(client, mailbox) -> str:
    return client.create_contact_folder(mailbox=mailbox, display_name="Business Central")["id"]
