"""Microsoft Entra sign-in as MSAL sees it: discovery documents and the client-credentials token grant.

Access tokens are opaque random strings kept in memory with their expiry; Graph requests are checked
against that table. Error bodies follow Entra's shape (error, error_description with an AADSTS code,
error_codes, timestamp, trace_id, correlation_id, error_uri).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .config import EmulatorConfig
from .errors import GraphError
from .messages import Request, Response

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_SCOPES = frozenset({"https://graph.microsoft.com/.default", f"{GRAPH_APP_ID}/.default"})
WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
    f'client_id="{GRAPH_APP_ID}"'
)


def tenant_id(tenant: str) -> str:
    """A stable GUID for the tenant name: Entra's discovery documents name tenants by GUID."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{tenant}.onmicrosoft.com"))


class Auth:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # access token -> expiry (epoch seconds)

    # ---- discovery -------------------------------------------------------------------------------

    def knows_tenant(self, tenant: str) -> bool:
        return tenant.lower() in (self.config.tenant.lower(), tenant_id(self.config.tenant))

    def openid_configuration(self, tenant: str) -> Response:
        if not self.knows_tenant(tenant):
            return self._error(400, "invalid_tenant", 90002, self._tenant_not_found(tenant))
        base = f"{self.config.authority_url.rstrip('/')}/{tenant_id(self.config.tenant)}"
        return Response.json(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "tid", "ver", "oid"],
                "kerberos_endpoint": f"{base}/kerberos",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            },
        )

    def instance_discovery(self, request: Request) -> Response:
        """MSAL's instance discovery: point it at the tenant's OpenID configuration and list aliases."""
        authorize = request.query.get("authorization_endpoint", "")
        segments = [segment for segment in urlsplit(authorize).path.split("/") if segment]
        tenant = segments[0] if segments else self.config.tenant
        authority_host = urlsplit(self.config.authority_url).netloc or "login.microsoftonline.com"
        return Response.json(
            200,
            {
                "tenant_discovery_endpoint": (
                    f"{self.config.authority_url.rstrip('/')}/{tenant}/v2.0/.well-known/openid-configuration"
                ),
                "api-version": "1.1",
                "metadata": [
                    {
                        "preferred_network": authority_host,
                        "preferred_cache": authority_host,
                        "aliases": [
                            authority_host,
                            "login.microsoftonline.com",
                            "login.windows.net",
                            "login.microsoft.com",
                            "sts.windows.net",
                        ],
                    }
                ],
            },
        )

    # ---- token endpoint -------------------------------------------------------------------------

    def token(self, tenant: str, request: Request) -> Response:
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        if not self.knows_tenant(tenant):
            return self._error(400, "invalid_request", 90002, self._tenant_not_found(tenant))
        grant = form.get("grant_type", "")
        if grant != "client_credentials":
            return self._error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        client_id = form.get("client_id", "")
        if client_id != self.config.client_id:
            # Entra answers an unknown application with 400 unauthorized_client (AADSTS700016).
            return self._error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.config.tenant}'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in "
                "the tenant. You may have sent your authentication request to the wrong tenant.",
            )
        if "client_secret" not in form:
            return self._error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
            )
        if not secrets.compare_digest(form["client_secret"], self.config.client_secret):
            return self._error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID, for a secret added to "
                f"app '{client_id}'.",
            )
        scopes = set(form.get("scope", "").split())
        if not scopes or not scopes <= GRAPH_SCOPES:
            return self._error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {form.get('scope', '')} is not valid. Client "
                "credential flows must have a scope value with /.default suffixed to the "
                "resource identifier (application ID URI).",
            )
        lifetime = int(self.config.token_lifetime_s)
        token = secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = time.time() + lifetime
        return Response.json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
        )

    def _tenant_not_found(self, tenant: str) -> str:
        return (
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
            "signing into the correct cloud. Check with your subscription administrator, this may happen "
            "if there are no active subscriptions for the tenant."
        )

    def _error(self, status: int, error: str, code: int, description: str) -> Response:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        body: dict[str, Any] = {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {stamp}",
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self.config.authority_url.rstrip('/')}/error?code={code}",
        }
        return Response.json(status, body)

    # ---- bearer checks ---------------------------------------------------------------------------

    def check_bearer(self, request: Request) -> None:
        """Raise Graph's 401 InvalidAuthenticationToken unless the request carries a live access token."""
        header = request.header("authorization")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty.",
                {"WWW-Authenticate": WWW_AUTHENTICATE},
            )
        with self._lock:
            expiry = self._tokens.get(token.strip())
        # Unknown tokens (e.g. issued before an emulator restart) get the same answer as expired ones.
        if expiry is None or expiry <= time.time():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
                {"WWW-Authenticate": WWW_AUTHENTICATE},
            )

    def expire_all(self) -> None:
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = 0.0

    def delegated_user(self, request: Request) -> str | None:
        """The user a delegated token signed in as (what /me means); None for app-only tokens, the only
        kind this emulator issues."""
        return None
