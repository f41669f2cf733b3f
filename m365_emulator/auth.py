"""Microsoft Entra sign-in as MSAL sees it: discovery documents, the token endpoint (client credentials,
authorization code with PKCE, refresh tokens; the client proves itself with its secret or a client
assertion signed with a registered certificate) and the bearer check every Graph request goes through.

Access and id tokens are RS256 JWTs shaped like Entra's; Graph trusts an access token only while it is
in this process's table, so a token from before a restart gets the "expired" 401. Refresh tokens and
codes are opaque. Time is the emulator's clock: real time plus an offset tests can advance. Error
bodies follow Entra's shape (error, error_description with an AADSTS code, error_codes, timestamp,
trace_id, correlation_id, error_uri, and suberror where Entra sends one).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from . import jose
from .config import EmulatorConfig
from .errors import GraphError
from .messages import Request, Response

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_SCOPES = frozenset({f"{GRAPH_RESOURCE}/.default", f"{GRAPH_APP_ID}/.default"})
# The delegated Graph permissions the emulator knows, and the OpenID Connect scopes MSAL adds.
DELEGATED_PERMISSIONS = {
    "Contacts.ReadWrite": "Have full access to your contacts",
    "Contacts.Read": "Read your contacts",
    "User.Read": "Sign you in and read your profile",
}
OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
APP_ROLES = frozenset({"Contacts.ReadWrite"})
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
    f'client_id="{GRAPH_APP_ID}"'
)
ASSERTION_CLOCK_SKEW_S = 300


_ME = re.compile(r"^/me(?=/|$)", re.IGNORECASE)


def tenant_id(tenant: str) -> str:
    """A stable GUID for the tenant name: Entra's discovery documents name tenants by GUID."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{tenant}.onmicrosoft.com"))


def user_object_id(tenant: str, upn: str) -> str:
    """The user's stable object id (`oid`, Graph's user `id`)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant_id(tenant)}/users/{upn.lower()}"))


def normalize_scopes(text: str) -> list[str]:
    """Scope names as the token carries them: Graph's resource prefix dropped, OIDC names lower-case."""
    names = []
    for raw in text.split():
        name = raw.removeprefix(f"{GRAPH_RESOURCE}/").removeprefix(f"{GRAPH_APP_ID}/")
        names.append(name.lower() if name.lower() in OIDC_SCOPES else name)
    return names


def scope_string(scopes: set[str] | frozenset[str]) -> str:
    graph = sorted(scope for scope in scopes if scope not in OIDC_SCOPES)
    return " ".join([*graph, *(scope for scope in OIDC_SCOPES if scope in scopes)])


@dataclass(frozen=True)
class Principal:
    """Whom an access token speaks for: the app itself (`roles`) or a signed-in user (`scopes`)."""

    upn: str | None
    oid: str | None
    scopes: frozenset[str]
    roles: frozenset[str]
    expires: float  # emulator clock

    @property
    def delegated(self) -> bool:
        return self.upn is not None


def me_as_user(path: str, principal: Principal | None) -> str:
    """/me/... of a delegated token is /users/{its user}/...; an app-only token's /me stays unmatched."""
    if principal is not None and principal.upn is not None:
        return _ME.sub(f"/users/{quote(principal.upn, safe='@')}", path, count=1)
    return path


@dataclass
class AuthCode:
    redirect_uri: str
    challenge: str
    method: str
    scopes: frozenset[str]
    upn: str
    nonce: str | None
    auth_time: float
    expires: float
    with_auth_time: bool  # the authorize request sent max_age, so the id token carries auth_time
    redeemed: bool = False


@dataclass
class RefreshGrant:
    upn: str
    scopes: frozenset[str]
    auth_time: float  # the interactive sign-in this chain of refresh tokens started from
    issued: float
    last_used: float
    redeemed: bool = False


@dataclass
class UserAuth:
    """A user's sign-in state: password, consent, and the switches that make refreshing fail."""

    password: str | None = None
    consented: set[str] = field(default_factory=set)
    tokens_valid_from: float = 0.0  # refresh tokens issued before this are revoked (50173)
    mfa_required_since: float | None = None  # 50076 for refresh tokens from sign-ins before this
    mfa_registration_since: float | None = None  # 50079 interaction_required likewise
    sign_in_frequency_since: float | None = None  # 70043 likewise
    disabled: bool = False


class SignInError(Exception):
    """An Entra error for the token endpoint (JSON) or the sign-in pages (redirect or page)."""

    def __init__(
        self, error: str, code: int, description: str, status: int = 400, suberror: str | None = None
    ) -> None:
        super().__init__(f"AADSTS{code}: {description}")
        self.error, self.code, self.description = error, code, description
        self.status, self.suberror = status, suberror


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%m/%d/%Y %H:%M:%S")


class Auth:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self.clock_offset_s = 0.0
        self._tokens: dict[str, Principal] = {}
        self._codes: dict[str, AuthCode] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        self._users: dict[str, UserAuth] = {}
        for upn, password in config.mailbox_passwords.items():
            self.user(upn).password = password
        self.on_change: Callable[[], None] | None = None  # the state file's saver, when there is one
        self.certificates: list[jose.Certificate] = []
        for pem in config.client_certificates:
            self.add_certificate(pem)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def to_json(self) -> dict[str, Any]:
        """The sign-in state worth keeping across a restart: refresh tokens, users, the clock, and
        certificates registered at runtime. Access tokens and codes are short-lived and stay out."""
        with self._lock:
            return {
                "clockOffsetS": self.clock_offset_s,
                "refreshTokens": {
                    token: [g.upn, sorted(g.scopes), g.auth_time, g.issued, g.last_used, g.redeemed]
                    for token, g in self._refresh.items()
                },
                "users": {upn: dataclasses.asdict(user) | {"consented": sorted(user.consented)}
                          for upn, user in self._users.items()},
                "certificates": [base64.b64encode(cert.der).decode() for cert in self.certificates],
            }  # fmt: skip

    def load_json(self, data: dict[str, Any]) -> None:
        """Restore to_json's state; passwords given on the command line win over saved ones."""
        with self._lock:
            self.clock_offset_s = float(data.get("clockOffsetS", 0.0))
            for token, (upn, scopes, auth_time, issued, last_used, redeemed) in data.get(
                "refreshTokens", {}
            ).items():
                self._refresh[token] = RefreshGrant(
                    upn, frozenset(scopes), auth_time, issued, last_used, redeemed
                )
            for upn, saved in data.get("users", {}).items():
                user = UserAuth(**{**saved, "consented": set(saved["consented"])})
                configured = self._users.get(upn)
                if configured is not None and configured.password is not None:
                    user.password = configured.password
                self._users[upn] = user
            known = {cert.der for cert in self.certificates}
            for encoded in data.get("certificates", []):
                der = base64.b64decode(encoded)
                if der not in known:
                    self.certificates.append(jose.parse_certificate(der))

    # ---- clock, users, certificates ----------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def advance_clock(self, seconds: float) -> float:
        with self._lock:
            self.clock_offset_s += seconds
        self._changed()
        return self.now()

    def user(self, upn: str) -> UserAuth:
        with self._lock:
            return self._users.setdefault(upn.lower(), UserAuth())

    def add_certificate(self, pem: str) -> list[dict[str, Any]]:
        """Register every certificate in a PEM text; ValueError when it holds none or a non-RSA one."""
        found = jose.certificates_in_pem(pem)
        with self._lock:
            self.certificates.extend(found)
        self._changed()
        return [self.describe_certificate(cert) for cert in found]

    @staticmethod
    def describe_certificate(cert: jose.Certificate) -> dict[str, Any]:
        return {
            "thumbprint": cert.sha1_thumbprint.hex().upper(),
            "thumbprint_sha256": cert.sha256_thumbprint.hex().upper(),
            "not_before": _stamp(cert.not_before),
            "not_after": _stamp(cert.not_after),
        }

    def user_state(self, upn: str) -> dict[str, Any]:
        """A user's sign-in state for the control API (no tokens, no password)."""
        state = self.user(upn)
        with self._lock:
            live = [
                grant
                for grant in self._refresh.values()
                if grant.upn.lower() == upn.lower() and grant.issued > state.tokens_valid_from
            ]
            return {
                "upn": upn,
                "oid": user_object_id(self.config.tenant, upn),
                "has_password": state.password is not None,
                "consented": sorted(state.consented),
                "tokens_valid_from": state.tokens_valid_from or None,
                "mfa_required": state.mfa_required_since is not None,
                "mfa_registration_required": state.mfa_registration_since is not None,
                "sign_in_frequency_enforced": state.sign_in_frequency_since is not None,
                "disabled": state.disabled,
                "refresh_tokens": len(live),
            }

    def _update_user(self, upn: str, **values: Any) -> None:
        user = self.user(upn)
        with self._lock:
            for name, value in values.items():
                setattr(user, name, value)
        self._changed()

    def revoke_sessions(self, upn: str) -> None:
        """Revoke the user's refresh tokens (Entra's revokeSignInSessions; an admin password reset)."""
        self._update_user(upn, tokens_valid_from=self.now())

    def set_password(self, upn: str, password: str | None) -> None:
        self._update_user(upn, password=password, tokens_valid_from=self.now())

    def grant_consent(self, upn: str, scopes: set[str]) -> None:
        self._update_user(upn, consented=self.user(upn).consented | scopes)

    def revoke_consent(self, upn: str) -> None:
        self._update_user(upn, consented=set())

    def require_mfa(self, upn: str) -> None:
        self._update_user(upn, mfa_required_since=self.now())

    def require_mfa_registration(self, upn: str) -> None:
        self._update_user(upn, mfa_registration_since=self.now())

    def enforce_sign_in_frequency(self, upn: str) -> None:
        self._update_user(upn, sign_in_frequency_since=self.now())

    def set_disabled(self, upn: str, disabled: bool) -> None:
        self._update_user(upn, disabled=disabled)

    # ---- discovery -------------------------------------------------------------------------------

    def knows_tenant(self, tenant: str) -> bool:
        return tenant.lower() in (self.config.tenant.lower(), tenant_id(self.config.tenant))

    def issuer(self) -> str:
        return f"{self.config.authority_url.rstrip('/')}/{tenant_id(self.config.tenant)}/v2.0"

    def sign_in_base(self, request: Request) -> str:
        """Where a browser reaches the sign-in pages: the sign_in_url knob, else where this request came."""
        if self.config.sign_in_url:
            return self.config.sign_in_url.rstrip("/")
        host = request.header("host")
        return f"http://{host}" if host else self.config.authority_url.rstrip("/")

    def openid_configuration(self, tenant: str, request: Request) -> Response:
        if not self.knows_tenant(tenant):
            return self.error_response(SignInError("invalid_tenant", 90002, self._tenant_not_found(tenant)))
        guid = tenant_id(self.config.tenant)
        base = f"{self.config.authority_url.rstrip('/')}/{guid}"
        browser = f"{self.sign_in_base(request)}/{guid}"
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
                "issuer": self.issuer(),
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
                "authorization_endpoint": f"{browser}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{browser}/oauth2/v2.0/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "cloud_instance_name",
                    "cloud_instance_host_name",
                    "cloud_graph_host_name",
                    "msgraph_host",
                    "aud",
                    "exp",
                    "iat",
                    "auth_time",
                    "acr",
                    "nonce",
                    "preferred_username",
                    "name",
                    "tid",
                    "ver",
                    "at_hash",
                    "c_hash",
                    "email",
                ],
                "kerberos_endpoint": f"{base}/kerberos",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            },
        )

    def jwks(self, tenant: str) -> Response:
        if not self.knows_tenant(tenant):
            return self.error_response(SignInError("invalid_tenant", 90002, self._tenant_not_found(tenant)))
        key = jose.SigningKey.get().public.jwk(jose.SigningKey.kid())
        return Response.json(200, {"keys": [{**key, "issuer": self.issuer()}]})

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
        try:
            if not self.knows_tenant(tenant):
                raise SignInError("invalid_request", 90002, self._tenant_not_found(tenant))
            grant = form.get("grant_type", "")
            if grant not in ("client_credentials", "authorization_code", "refresh_token"):
                raise SignInError(
                    "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'."
                )
            self.check_client(form, tenant)
            if grant == "client_credentials":
                body = self._client_credentials(form)
            elif grant == "authorization_code":
                body = self._redeem_code(form)
            else:
                body = self._redeem_refresh_token(form)
        except SignInError as failure:
            return self.error_response(failure)
        return Response.json(200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def check_client(self, form: dict[str, str], tenant: str) -> None:
        """The client_id is the registered app and it proved itself (secret or client assertion)."""
        client_id = form.get("client_id", "")
        if not client_id and "client_assertion" in form:
            # client_id may be left out with an assertion: its iss/sub name the client.
            try:
                client_id = str(jose.decode_jwt(form["client_assertion"]).claims.get("sub", ""))
            except ValueError:
                client_id = ""
        if client_id != self.config.client_id:
            # Entra answers an unknown application with 400 unauthorized_client (AADSTS700016).
            raise SignInError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.config.tenant}'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in "
                "the tenant. You may have sent your authentication request to the wrong tenant.",
            )
        if "client_assertion" in form or "client_assertion_type" in form:
            self._check_assertion(form, tenant)
            return
        if "client_secret" not in form:
            raise SignInError(
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
                status=401,
            )
        secret = self.config.client_secret
        if not secret or not secrets.compare_digest(form["client_secret"], secret):
            raise SignInError(
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID, for a secret added to "
                f"app '{client_id}'.",
                status=401,
            )

    def _check_assertion(self, form: dict[str, str], tenant: str) -> None:
        client_id = self.config.client_id
        if form.get("client_assertion_type") != JWT_BEARER:
            raise SignInError(
                "invalid_request",
                50027,
                f"Invalid client_assertion_type '{form.get('client_assertion_type', '')}'; expected "
                f"'{JWT_BEARER}'.",
            )
        try:
            assertion = jose.decode_jwt(form.get("client_assertion", ""))
        except ValueError:
            raise SignInError("invalid_client", 50027, "JWT token is invalid or malformed.", 401) from None
        algorithm = assertion.header.get("alg")
        if algorithm not in ("RS256", "PS256"):
            raise SignInError(
                "invalid_client",
                5002738,
                f"Invalid JWT token. '{algorithm}' is not a supported signature algorithm.",
                401,
            )
        if "x5t#S256" in assertion.header:
            wanted, thumbprint_of = str(assertion.header["x5t#S256"]), "sha256_thumbprint"
        else:
            wanted, thumbprint_of = str(assertion.header.get("x5t", "")), "sha1_thumbprint"
        try:
            thumbprint = jose.b64url_decode(wanted)
        except ValueError:
            thumbprint = b""
        shown = thumbprint.hex().upper()
        help_text = (
            "Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys "
            f"for app Id '{client_id}'. Review the documentation at "
            "https://docs.microsoft.com/en-us/graph/deployment-to-azure-app-registration to learn how to "
            "configure keys."
        )
        with self._lock:
            cert = next((c for c in self.certificates if getattr(c, thumbprint_of) == thumbprint), None)
        if cert is None:
            raise SignInError(
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature. [Reason - The key was not found., "
                f"Thumbprint of key used by client: '{shown}', {help_text}]",
                401,
            )
        found = f"Found key 'Start={_stamp(cert.not_before)}, End={_stamp(cert.not_after)}'"
        now = self.now()
        if now > cert.not_after or now < cert.not_before:
            state = "expired" if now > cert.not_after else "not yet valid"
            raise SignInError(
                "invalid_client",
                700027,
                f"The certificate with identifier used to sign the client assertion is {state} on "
                f"application. [Reason - The key used is {state}., Thumbprint of key used by client: "
                f"'{shown}', {found}, {help_text}]",
                401,
            )
        if not cert.public_key.verify(algorithm, assertion.signing_input, assertion.signature):
            raise SignInError(
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature. [Reason - The provided signature value "
                f"did not match the expected signature value., Thumbprint of key used by client: '{shown}', "
                f"{found}, {help_text}]",
                401,
            )
        claims = assertion.claims
        authority = self.config.authority_url.rstrip("/")
        audiences = {
            f"{authority}/{segment}/oauth2/{version}token"
            for segment in (tenant, self.config.tenant, tenant_id(self.config.tenant))
            for version in ("v2.0/", "")
        }
        if claims.get("aud") not in audiences:
            raise SignInError(
                "invalid_client",
                700023,
                "Client assertion audience claim does not match Realm issuer. Review the documentation at "
                "https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
                401,
            )
        if claims.get("iss") != client_id or claims.get("sub") != client_id or not claims.get("jti"):
            raise SignInError(
                "invalid_client",
                50027,
                "JWT token is invalid or malformed: a client assertion needs iss and sub equal to the "
                "client id and a jti.",
                401,
            )
        expires, not_before = claims.get("exp"), claims.get("nbf", claims.get("iat", 0))
        if (
            not isinstance(expires, int | float)
            or not isinstance(not_before, int | float)
            or expires <= now
            or not_before > now + ASSERTION_CLOCK_SKEW_S
        ):
            raise SignInError(
                "invalid_client",
                700024,
                f"Client assertion is not within its valid time range. Current time: "
                f"{datetime.fromtimestamp(now, UTC).isoformat()}, expiry time of assertion {expires}. "
                "Review the documentation at https://learn.microsoft.com/entra/identity-platform/"
                "certificate-credentials .",
                401,
            )

    def _client_credentials(self, form: dict[str, str]) -> dict[str, Any]:
        scopes = set(form.get("scope", "").split())
        if not scopes or not scopes <= GRAPH_SCOPES:
            raise SignInError(
                "invalid_scope",
                1002012,
                f"The provided value for scope {form.get('scope', '')} is not valid. Client "
                "credential flows must have a scope value with /.default suffixed to the "
                "resource identifier (application ID URI).",
            )
        # An app granted only delegated permission still gets a token, one without roles: Graph refuses it.
        roles = APP_ROLES if self.config.grant in ("application", "both") else frozenset()
        now = self.now()
        lifetime = int(self.config.token_lifetime_s)
        claims: dict[str, Any] = {
            **self._access_claims(now, lifetime),
            "idtyp": "app",
            "oid": str(
                uuid.uuid5(
                    uuid.NAMESPACE_URL, f"{tenant_id(self.config.tenant)}/apps/{self.config.client_id}"
                )
            ),
        }
        if roles:
            claims["roles"] = sorted(roles)
        token = jose.encode_jwt(claims)
        with self._lock:
            self._tokens[token] = Principal(None, None, frozenset(), roles, now + lifetime)
        return {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }

    # ---- authorization codes and refresh tokens ---------------------------------------------------

    def issue_code(
        self,
        *,
        upn: str,
        redirect_uri: str,
        scopes: frozenset[str],
        challenge: str,
        method: str,
        nonce: str | None,
        auth_time: float,
        with_auth_time: bool,
    ) -> str:
        code = secrets.token_urlsafe(48)
        with self._lock:
            self._codes[code] = AuthCode(
                redirect_uri, challenge, method, scopes, upn, nonce, auth_time,
                self.now() + self.config.auth_code_lifetime_s, with_auth_time,
            )  # fmt: skip
        return code

    def _redeem_code(self, form: dict[str, str]) -> dict[str, Any]:
        code = form.get("code", "")
        if not code:
            raise self._missing("code")
        with self._lock:
            entry = self._codes.get(code)
            if entry is None:
                raise SignInError(
                    "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
                )
            if entry.redeemed:
                raise SignInError(
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or "
                    "use an existing refresh token.",
                )
            if entry.expires <= self.now():
                raise SignInError(
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a "
                    "new interactive authorization request for this user and resource.",
                )
            if form.get("redirect_uri", "") != entry.redirect_uri:
                raise SignInError(
                    "invalid_grant",
                    50011,
                    f"The reply address '{form.get('redirect_uri', '')}' does not match the reply address "
                    f"'{entry.redirect_uri}' provided when requesting Authorization code.",
                )
            if entry.challenge:
                verifier = form.get("code_verifier", "")
                if not verifier:
                    raise SignInError(
                        "invalid_grant",
                        50148,
                        "The code_verifier does not match the code_challenge supplied in the authorization "
                        "request for PKCE.",
                    )
                computed = (
                    jose.b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
                    if entry.method == "S256"
                    else verifier
                )
                if not secrets.compare_digest(computed, entry.challenge):
                    raise SignInError(
                        "invalid_grant",
                        501481,
                        "The Code_Verifier does not match the code_challenge supplied in the authorization "
                        "request.",
                    )
            entry.redeemed = True
        self._check_user_may_sign_in(entry.upn)
        return self._user_tokens(
            entry.upn,
            entry.scopes,
            entry.auth_time,
            form.get("client_info") == "1",
            entry.nonce,
            with_auth_time=entry.with_auth_time,
        )

    def _redeem_refresh_token(self, form: dict[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token", "")
        if not token:
            raise self._missing("refresh_token")
        now = self.now()
        with self._lock:
            grant = self._refresh.get(token)
            if grant is None:
                raise SignInError(
                    "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
                )
            if grant.redeemed and self.config.strict_refresh_rotation:
                raise SignInError(
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a "
                    "new interactive authorization request for this user and resource.",
                )
        state = self.user(grant.upn)
        self._check_user_may_sign_in(grant.upn)
        if grant.issued <= state.tokens_valid_from:
            raise SignInError(
                "invalid_grant",
                50173,
                "The provided grant has expired due to it being revoked, a fresh auth token is needed. The "
                "user might have changed or reset their password. The grant was issued on "
                f"'{datetime.fromtimestamp(grant.issued, UTC).isoformat()}' and the TokensValidFrom date "
                "(before which tokens are not valid) for this user is "
                f"'{datetime.fromtimestamp(state.tokens_valid_from, UTC).isoformat()}'.",
            )
        inactive = now - grant.last_used
        if inactive > self.config.refresh_token_max_inactive_s:
            days, rest = divmod(int(self.config.refresh_token_max_inactive_s), 86400)
            hours, rest = divmod(rest, 3600)
            raise SignInError(
                "invalid_grant",
                700082,
                "The refresh token has expired due to inactivity. The token was issued on "
                f"{datetime.fromtimestamp(grant.issued, UTC).isoformat()} and was inactive for "
                f"{days}.{hours:02}:{rest // 60:02}:{rest % 60:02}.",
                suberror="bad_token",
            )
        if state.mfa_required_since is not None and grant.auth_time < state.mfa_required_since:
            raise SignInError(
                "invalid_grant",
                50076,
                "Due to a configuration change made by your administrator, or because you moved to a new "
                f"location, you must use multi-factor authentication to access '{GRAPH_APP_ID}'.",
                suberror="basic_action",
            )
        if state.mfa_registration_since is not None and grant.auth_time < state.mfa_registration_since:
            raise SignInError(
                "interaction_required",
                50079,
                "Due to a configuration change made by your administrator, or because you moved to a new "
                f"location, you must enroll in multi-factor authentication to access '{GRAPH_APP_ID}'.",
            )
        if state.sign_in_frequency_since is not None and grant.auth_time < state.sign_in_frequency_since:
            raise SignInError(
                "invalid_grant",
                70043,
                "The refresh token has expired or is invalid due to sign-in frequency checks by conditional "
                f"access. The token was issued on {datetime.fromtimestamp(grant.issued, UTC).isoformat()} "
                "and the maximum allowed lifetime for this request is 0.",
                suberror="token_expired",
            )
        requested = set(normalize_scopes(form.get("scope", ""))) or set(grant.scopes)
        permissions = {scope for scope in requested if scope not in OIDC_SCOPES}
        if ".default" in permissions:
            permissions = (permissions - {".default"}) | {s for s in grant.scopes if s not in OIDC_SCOPES}
        if not permissions <= state.consented:
            raise self.consent_missing(permissions - state.consented)
        oidc = {scope for scope in requested if scope in OIDC_SCOPES} & grant.scopes
        with self._lock:
            grant.redeemed = True
            grant.last_used = now
        self._changed()
        return self._user_tokens(
            grant.upn, frozenset(permissions | oidc), grant.auth_time, form.get("client_info") == "1", None
        )

    def consent_missing(self, scopes: set[str]) -> SignInError:
        client_id = self.config.client_id
        return SignInError(
            "invalid_grant",
            65001,
            f"The user or administrator has not consented to use the application with ID '{client_id}' "
            f"named '{client_id}'. Send an interactive authorization request for this user and resource."
            + (f" Missing: {scope_string(scopes)}." if scopes else ""),
            suberror="consent_required",
        )

    def _check_user_may_sign_in(self, upn: str) -> None:
        if self.user(upn).disabled:
            raise SignInError(
                "invalid_grant",
                50057,
                "The user account is disabled. The account has been disabled by an administrator.",
            )

    def _user_tokens(
        self,
        upn: str,
        scopes: frozenset[str],
        auth_time: float,
        client_info: bool,
        nonce: str | None,
        *,
        with_auth_time: bool = False,
    ) -> dict[str, Any]:
        now = self.now()
        lifetime = int(self.config.token_lifetime_s)
        oid = user_object_id(self.config.tenant, upn)
        tid = tenant_id(self.config.tenant)
        permissions = frozenset(scope for scope in scopes if scope not in OIDC_SCOPES)
        scp = permissions | {scope for scope in scopes if scope in ("openid", "profile", "email")}
        name = upn.split("@")[0].replace(".", " ").title()
        access = jose.encode_jwt(
            {
                **self._access_claims(now, lifetime),
                "idtyp": "user",
                "name": name,
                "oid": oid,
                "scp": scope_string(scp),
                "sub": jose.b64url(hashlib.sha256(f"{oid}/{GRAPH_APP_ID}".encode()).digest()),
                "unique_name": upn,
                "upn": upn,
                "auth_time": int(auth_time),
            }
        )
        with self._lock:
            self._tokens[access] = Principal(upn, oid, permissions, frozenset(), now + lifetime)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": scope_string(scopes),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access,
        }
        if "offline_access" in scopes:
            refresh = secrets.token_urlsafe(64)
            with self._lock:
                self._refresh[refresh] = RefreshGrant(upn, scopes, auth_time, now, now)
            self._changed()
            body["refresh_token"] = refresh
        if "openid" in scopes:
            claims: dict[str, Any] = {
                "aud": self.config.client_id,
                "iss": self.issuer(),
                "iat": int(now),
                "nbf": int(now),
                "exp": int(now) + 3600,
                "name": name,
                "oid": oid,
                "preferred_username": upn,
                "sub": jose.b64url(hashlib.sha256(f"{oid}/{self.config.client_id}".encode()).digest()),
                "tid": tid,
                "uti": jose.b64url(secrets.token_bytes(16)),
                "ver": "2.0",
            }
            if nonce is not None:
                claims["nonce"] = nonce
            if with_auth_time:
                claims["auth_time"] = int(auth_time)
            body["id_token"] = jose.encode_jwt(claims)
        if client_info:
            body["client_info"] = self.client_info(upn)
        return body

    def client_info(self, upn: str) -> str:
        info = {"uid": user_object_id(self.config.tenant, upn), "utid": tenant_id(self.config.tenant)}
        return jose.b64url(json.dumps(info).encode())

    def _access_claims(self, now: float, lifetime: int) -> dict[str, Any]:
        """Claims every Graph access token carries (a v1.0 token, as Graph's are)."""
        tid = tenant_id(self.config.tenant)
        return {
            "aud": GRAPH_RESOURCE,
            "iss": f"https://sts.windows.net/{tid}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + lifetime,
            "appid": self.config.client_id,
            "app_displayname": self.config.client_id,
            "tid": tid,
            "uti": base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("="),
            "ver": "1.0",
        }

    def _missing(self, name: str) -> SignInError:
        return SignInError(
            "invalid_request", 900144, f"The request body must contain the following parameter: '{name}'."
        )

    def _tenant_not_found(self, tenant: str) -> str:
        return (
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
            "signing into the correct cloud. Check with your subscription administrator, this may happen "
            "if there are no active subscriptions for the tenant."
        )

    def error_body(self, failure: SignInError) -> dict[str, Any]:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        body: dict[str, Any] = {
            "error": failure.error,
            "error_description": f"AADSTS{failure.code}: {failure.description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {stamp}",
            "error_codes": [failure.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self.config.authority_url.rstrip('/')}/error?code={failure.code}",
        }
        if failure.suberror:
            body["suberror"] = failure.suberror
        return body

    def error_response(self, failure: SignInError) -> Response:
        return Response.json(failure.status, self.error_body(failure))

    # ---- bearer checks ---------------------------------------------------------------------------

    def check_bearer(self, request: Request) -> Principal:
        """Whom the request's live access token speaks for; else Graph's 401 InvalidAuthenticationToken."""
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
            principal = self._tokens.get(token.strip())
        # Unknown tokens (e.g. issued before an emulator restart) get the same answer as expired ones.
        if principal is None or principal.expires <= self.now():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
                {"WWW-Authenticate": WWW_AUTHENTICATE},
            )
        return principal

    def expire_all(self) -> None:
        with self._lock:
            for token, principal in self._tokens.items():
                self._tokens[token] = Principal(
                    principal.upn, principal.oid, principal.scopes, principal.roles, 0.0
                )
