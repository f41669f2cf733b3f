"""The Microsoft 365 boundary: the only code in bcsync that speaks HTTP to Microsoft.

Use `graph_client_from_settings()` to get a `GraphClient`; everything else here is for tests and
for callers that build clients by hand.
"""

import functools

from django.conf import settings

from .auth import ClientCredentialsTokenProvider, TokenProvider
from .client import (
    BatchRequest,
    BatchResult,
    DeltaPage,
    GraphClient,
    contact_create_request,
    contact_delete_request,
    contact_update_request,
    folder_resource,
)
from .errors import (
    AccessDenied,
    AuthenticationFailed,
    BadRequest,
    FolderExists,
    GraphConnectionError,
    GraphError,
    InvalidToken,
    ItemNotFound,
    M365NotConfigured,
    MailboxNotFound,
    PreconditionFailed,
    ServiceUnavailable,
    SyncStateExpired,
    Throttled,
)
from .transport import build_session

__all__ = [
    "AccessDenied",
    "AuthenticationFailed",
    "BadRequest",
    "BatchRequest",
    "BatchResult",
    "ClientCredentialsTokenProvider",
    "DeltaPage",
    "FolderExists",
    "GraphClient",
    "GraphConnectionError",
    "GraphError",
    "InvalidToken",
    "ItemNotFound",
    "M365NotConfigured",
    "MailboxNotFound",
    "PreconditionFailed",
    "ServiceUnavailable",
    "SyncStateExpired",
    "Throttled",
    "TokenProvider",
    "contact_create_request",
    "contact_delete_request",
    "contact_update_request",
    "folder_resource",
    "graph_client_from_settings",
    "reset_graph_client_cache",
]


def graph_client_from_settings() -> GraphClient:
    """A fresh `GraphClient` (fresh request counters) for one sync run or one admin action,
    sharing the process's session and token provider so access tokens are reused across runs.

    Raises `M365NotConfigured` unless M365_TENANT_ID, M365_CLIENT_ID and M365_CLIENT_SECRET are set,
    or M365_EMULATOR_URL is. With the emulator the three credentials still apply (it checks them).
    """
    tenant_id = settings.M365_TENANT_ID
    client_id = settings.M365_CLIENT_ID
    client_secret = settings.M365_CLIENT_SECRET
    emulator_url = settings.M365_EMULATOR_URL
    if not (emulator_url or (tenant_id and client_id and client_secret)):
        raise M365NotConfigured(
            "Microsoft 365 is not configured: set M365_TENANT_ID, M365_CLIENT_ID and M365_CLIENT_SECRET, "
            "or M365_EMULATOR_URL for the local emulator."
        )
    token_provider = _token_provider(tenant_id, client_id, client_secret, emulator_url)
    return GraphClient(token_provider=token_provider, session=token_provider.session)


@functools.lru_cache(maxsize=4)
def _token_provider(
    tenant_id: str, client_id: str, client_secret: str, emulator_url: str
) -> ClientCredentialsTokenProvider:
    # Keyed by the whole configuration: after a fix (say, a new secret) the next call builds a new
    # provider with a new MSAL application, free of MSAL's memory of the failed requests.
    return ClientCredentialsTokenProvider(
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=client_secret,
        session=build_session(emulator_url=emulator_url or None),
    )


def reset_graph_client_cache() -> None:
    """Forget cached token providers and sessions (tests; after changing settings at run time)."""
    _token_provider.cache_clear()
