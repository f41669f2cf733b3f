"""The Microsoft 365 boundary: the only code in bcsync that speaks HTTP to Microsoft.

Use `graph_client_from_settings()` to get a `GraphClient`; everything else here is for tests and
for callers that build clients by hand.
"""

import functools

import requests
from django.conf import settings

from .auth import (
    AppCredential,
    AppRegistration,
    ClientCredentialsTokenProvider,
    DelegatedTokenProvider,
    SignedIn,
    SignInRefused,
    TokenCacheStore,
    TokenProvider,
    certificate_credential,
    finish_sign_in,
    start_sign_in,
)
from .budget import BucketRates, MailboxBudget
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
    DELEGATED_ACCESS_DENIED_HINT,
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
    SignInRequired,
    SyncStateExpired,
    Throttled,
)
from .transport import build_session

__all__ = [
    "AccessDenied",
    "AppCredential",
    "AppRegistration",
    "AuthenticationFailed",
    "BadRequest",
    "BatchRequest",
    "BatchResult",
    "BucketRates",
    "ClientCredentialsTokenProvider",
    "DelegatedTokenProvider",
    "DeltaPage",
    "FolderExists",
    "GraphClient",
    "GraphConnectionError",
    "GraphError",
    "InvalidToken",
    "ItemNotFound",
    "M365NotConfigured",
    "MailboxBudget",
    "MailboxNotFound",
    "PreconditionFailed",
    "ServiceUnavailable",
    "SignInRefused",
    "SignInRequired",
    "SignedIn",
    "SyncStateExpired",
    "Throttled",
    "TokenCacheStore",
    "TokenProvider",
    "app_registration_from_settings",
    "auth_mode",
    "certificate_credential",
    "contact_create_request",
    "contact_delete_request",
    "contact_update_request",
    "finish_sign_in",
    "folder_resource",
    "graph_client_from_settings",
    "graph_session",
    "reset_graph_client_cache",
    "start_sign_in",
]


def auth_mode() -> str:
    """M365_AUTH_MODE: "app" (the application signs in for every mailbox) or "delegated"."""
    return settings.M365_AUTH_MODE


def app_registration_from_settings() -> AppRegistration:
    """The app registration from M365_TENANT_ID, M365_CLIENT_ID and M365_CLIENT_SECRET or
    M365_CLIENT_CERTIFICATE. Raises `M365NotConfigured` when they are missing (and no emulator is
    set), `AuthenticationFailed` naming what is wrong with the certificate."""
    tenant_id = settings.M365_TENANT_ID
    client_id = settings.M365_CLIENT_ID
    certificate = settings.M365_CLIENT_CERTIFICATE
    if not (
        settings.M365_EMULATOR_URL
        or (tenant_id and client_id and (settings.M365_CLIENT_SECRET or certificate))
    ):
        raise M365NotConfigured(
            "Microsoft 365 is not configured: set M365_TENANT_ID, M365_CLIENT_ID and M365_CLIENT_SECRET "
            "(or M365_CLIENT_CERTIFICATE), or M365_EMULATOR_URL for the local emulator."
        )
    credential = (
        certificate_credential(path=certificate)
        if certificate
        else AppCredential(setting="M365_CLIENT_SECRET", secret=settings.M365_CLIENT_SECRET)
    )
    return AppRegistration(tenant_id=tenant_id, client_id=client_id, credential=credential)


def graph_session() -> requests.Session:
    """The process's pooled session to Microsoft (or to the emulator)."""
    return _session(settings.M365_EMULATOR_URL)


def graph_client_from_settings(
    *, token_cache: TokenCacheStore | None = None, budget: MailboxBudget | None = None
) -> GraphClient:
    """A fresh `GraphClient` (fresh request counters) for one sync run or one admin action. With
    `budget`, every request is paid for from its mailbox's budget first.

    In app mode it shares the process's token provider, so access tokens are reused across runs. In
    delegated mode it acts for the user whose MSAL token cache `token_cache` holds (required then).
    Raises `M365NotConfigured` unless the app registration is configured (see
    `app_registration_from_settings`). With the emulator the credentials still apply (it checks them).
    """
    registration = app_registration_from_settings()
    session = graph_session()
    if auth_mode() == "delegated":
        if token_cache is None:
            raise ValueError(
                "M365_AUTH_MODE=delegated: a user's token cache is needed to call Microsoft 365."
            )
        provider: TokenProvider = DelegatedTokenProvider(
            registration=registration,
            session=session,
            store=token_cache,
            home_account_id=token_cache.home_account_id,
        )
        return GraphClient(
            token_provider=provider,
            session=session,
            access_denied_hint=DELEGATED_ACCESS_DENIED_HINT,
            budget=budget,
        )
    return GraphClient(
        token_provider=_token_provider(registration, settings.M365_EMULATOR_URL),
        session=session,
        budget=budget,
    )


@functools.lru_cache(maxsize=4)
def _token_provider(registration: AppRegistration, emulator_url: str) -> ClientCredentialsTokenProvider:
    # Keyed by the whole configuration: after a fix (say, a new secret) the next call builds a new
    # provider with a new MSAL application, free of MSAL's memory of the failed requests.
    return ClientCredentialsTokenProvider(registration=registration, session=_session(emulator_url))


@functools.lru_cache(maxsize=4)
def _session(emulator_url: str) -> requests.Session:
    return build_session(emulator_url=emulator_url or None)


def reset_graph_client_cache() -> None:
    """Forget cached token providers and sessions (tests; after changing settings at run time)."""
    _token_provider.cache_clear()
    _session.cache_clear()
