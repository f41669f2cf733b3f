"""Access tokens for Microsoft Graph, through MSAL.

`GraphClient` only needs something with ``access_token(force_refresh=...)``. Today that is the
app-only client-credentials flow (application permission Contacts.ReadWrite, every mailbox
addressed as ``/users/{upn}``). A per-user delegated provider (authorization-code flow, its MSAL
``SerializableTokenCache`` stored encrypted per user) can implement the same `TokenProvider`
protocol later without the client changing.
"""

import logging
import threading
from typing import Any, Protocol

import msal
import requests
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from .errors import AuthenticationFailed, GraphConnectionError

logger = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MICROSOFT_AUTHORITY_HOST = "https://login.microsoftonline.com"

# What a person should change for each OAuth error Entra can answer a client-credentials request with.
_CREDENTIAL_HINTS = {
    "invalid_client": "check M365_CLIENT_SECRET (wrong, expired or revoked secret) and M365_CLIENT_ID",
    "unauthorized_client": "check M365_CLIENT_ID: the app must be registered in tenant M365_TENANT_ID",
    "invalid_request": "check M365_TENANT_ID and M365_CLIENT_ID",
    "invalid_scope": "check that the app registration may call Microsoft Graph",
}
_DEFAULT_HINT = "check M365_TENANT_ID, M365_CLIENT_ID and M365_CLIENT_SECRET"


class TokenProvider(Protocol):
    """Hands out bearer tokens for Graph. ``force_refresh`` is used once after Graph answered 401
    to a token the provider still considered valid (revoked, or expired early)."""

    def access_token(self, *, force_refresh: bool = False) -> str: ...


class ClientCredentialsTokenProvider:
    """App-only tokens from Microsoft Entra with a client secret.

    Tokens live in MSAL's in-memory cache; MSAL hands out the cached token and fetches a new one
    when less than five minutes remain (or at the ``refresh_in`` hint Entra sends), so callers can
    ask for a token before every request. Each provider owns its own MSAL application: MSAL
    remembers failed token requests for up to a minute (its HTTP cache), so a provider built after
    a configuration fix starts clean. The secret never appears in messages, reprs or logs.
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        session: requests.Session,
        authority_host: str = MICROSOFT_AUTHORITY_HOST,
    ) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._client_secret = client_secret
        self.session = session
        self._app: msal.ConfidentialClientApplication | None = None
        # One token request at a time: threads that all find the cache empty would each ask Entra.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(authority={self.authority!r}, client_id={self.client_id!r})"

    def access_token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            app = self._application()
            if force_refresh:
                # MSAL refuses force_refresh for this flow; dropping our cached tokens has that effect.
                app.remove_tokens_for_client()
            try:
                result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
            except requests.RequestException as exc:
                raise GraphConnectionError(
                    f"Could not reach Microsoft 365 sign-in at {self.authority}: {type(exc).__name__}."
                ) from None
        if "access_token" not in result:
            raise self._authentication_failed(result)
        if result.get("token_source") == "identity_provider":
            logger.info("Signed in to Microsoft 365 as app %s in tenant %s", self.client_id, self.tenant_id)
        return result["access_token"]

    def _application(self) -> msal.ConfidentialClientApplication:
        # Built on first use: MSAL reads the tenant's OpenID configuration over the network when
        # constructed, and a failure here should surface as a typed error on the call that needs it.
        if self._app is None:
            host = self.authority.split("/")[2]
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._client_secret,
                    authority=self.authority,
                    http_client=self.session,
                    # Instance discovery asks Microsoft's own endpoint about the host; pointless
                    # (and unreachable) for any other authority host.
                    instance_discovery=None if host in WELL_KNOWN_AUTHORITY_HOSTS else False,
                )
            except ValueError:
                # MSAL's message would repeat the whole discovery response; ours says what to fix.
                raise AuthenticationFailed(
                    f"Microsoft 365 does not know the tenant {self.tenant_id!r} at {self.authority}: "
                    "check M365_TENANT_ID.",
                    code="invalid_tenant",
                ) from None
            except requests.RequestException as exc:
                raise GraphConnectionError(
                    f"Could not reach Microsoft 365 sign-in at {self.authority}: {type(exc).__name__}."
                ) from None
        return self._app

    def _authentication_failed(self, result: dict[str, Any]) -> AuthenticationFailed:
        error = str(result.get("error") or "unknown_error")
        # Entra's description starts with an AADSTS code and a sentence; the trace and correlation
        # ids on the following lines are noise here. Belt and braces: never echo the secret.
        description = str(result.get("error_description") or "").strip().splitlines()
        first_line = description[0] if description else ""
        if self._client_secret:
            first_line = first_line.replace(self._client_secret, "[secret]")
        hint = _CREDENTIAL_HINTS.get(error, _DEFAULT_HINT)
        message = f"Microsoft 365 rejected the application's credentials ({error}): {hint}."
        if first_line:
            message = f"{message} Entra said: {first_line}"
        logger.warning("Microsoft 365 sign-in failed for app %s: %s", self.client_id, error)
        return AuthenticationFailed(message, code=error)
