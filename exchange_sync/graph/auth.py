"""Access tokens for Microsoft Graph, through MSAL.

`GraphClient` only needs something with ``access_token(force_refresh=...)`` (`TokenProvider`). Two
kinds exist, one per M365_AUTH_MODE:

- app: `ClientCredentialsTokenProvider`, the client-credentials flow with the application permission
  Contacts.ReadWrite (a client secret or a certificate);
- delegated: `DelegatedTokenProvider`, one user's tokens from their MSAL token cache, which the
  caller loads and saves through a `TokenCacheStore` (the cache is stored encrypted per user; this
  package knows nothing of the database). The cache is filled by the authorization-code flow of
  `start_sign_in` and `finish_sign_in`.

Both address the mailbox as ``/users/{upn}``: a delegated token reaches ``/users/{own upn}`` as it
reaches ``/me``, and the caller checks at sign-in that the account is the mailbox it syncs, so one
path serves both modes and a token of another account is refused by Graph instead of syncing the
wrong mailbox.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from .errors import AuthenticationFailed, GraphConnectionError, ServiceUnavailable, SignInRequired

logger = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# Delegated: MSAL adds openid, profile and offline_access (the refresh token) itself.
DELEGATED_SCOPES = ["Contacts.ReadWrite"]
MICROSOFT_AUTHORITY_HOST = "https://login.microsoftonline.com"

# What a person should change for each OAuth error Entra can answer the app's credentials with.
_CREDENTIAL_HINTS = {
    "invalid_client": "check {credential} (wrong, expired or revoked {what}) and M365_CLIENT_ID",
    "unauthorized_client": "check M365_CLIENT_ID: the app must be registered in tenant M365_TENANT_ID",
    "invalid_request": "check M365_TENANT_ID and M365_CLIENT_ID",
    "invalid_scope": "check that the app registration may call Microsoft Graph",
}
_DEFAULT_HINT = "check M365_TENANT_ID, M365_CLIENT_ID and {credential}"

# Entra's answers to a refresh that only the user signing in again can fix, and the AADSTS codes
# that say why, in words for the user.
_SIGN_IN_AGAIN_ERRORS = {"invalid_grant", "interaction_required", "consent_required", "login_required"}
_SIGN_IN_AGAIN_REASONS = {
    700082: "the sign-in expired after 90 days without use",
    70008: "the sign-in expired or was revoked",
    50173: "the sign-in was revoked (for example after a password reset or by an administrator)",
    50076: "your organisation now requires multi-factor authentication",
    50078: "your multi-factor authentication expired",
    50079: "your organisation requires you to register for multi-factor authentication",
    70043: "your organisation's Conditional Access policy requires signing in again periodically",
    53003: "a Conditional Access policy blocks the sign-in",
    65001: "the consent given to bcsync was withdrawn",
    50057: "the account is disabled",
}
# Entra is down or overloaded: retry later, the sign-in itself is fine.
_TRANSIENT_ERRORS = {"temporarily_unavailable", "server_error"}


@dataclass(frozen=True)
class AppCredential:
    """The app's own proof: a client secret, or a certificate and its private key (PEM). Never
    shown: not in reprs, messages or logs."""

    setting: str  # the setting it came from, for messages
    secret: str = field(default="", repr=False)
    private_key_pem: str = field(default="", repr=False)
    certificate_pem: str = ""
    sha256_thumbprint: str = ""

    def for_msal(self) -> str | dict[str, str]:
        if self.secret:
            return self.secret
        # No "thumbprint": MSAL then signs with PS256 and sends x5t#S256, not the deprecated SHA-1.
        return {"private_key": self.private_key_pem, "public_certificate": self.certificate_pem}

    def hint_for(self, error: str) -> str:
        what = "secret" if self.secret else "certificate: upload its public part to the app registration"
        hint = _CREDENTIAL_HINTS.get(error, _DEFAULT_HINT).format(credential=self.setting, what=what)
        if self.sha256_thumbprint and error == "invalid_client":
            hint = f"{hint}; this certificate's SHA-256 thumbprint is {self.sha256_thumbprint}"
        return hint


def certificate_credential(*, path: str, now: datetime | None = None) -> AppCredential:
    """The credential in a PEM file holding a private key and its certificate (M365_CLIENT_CERTIFICATE).
    Raises `AuthenticationFailed` naming what is wrong: no file, no key or certificate, a key that is
    not the certificate's, or a certificate outside its validity dates."""
    where = f"M365_CLIENT_CERTIFICATE ({path})"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AuthenticationFailed(
            f"Cannot read the certificate file {where}: {exc.strerror}.", code="bad_certificate"
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise AuthenticationFailed(
            f"The certificate file {where} holds no readable private key: it needs the unencrypted "
            "private key (-----BEGIN PRIVATE KEY-----) and the certificate, both PEM.",
            code="bad_certificate",
        ) from None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf = next(
        (
            cert
            for cert in certificates
            if cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            == public
        ),
        None,
    )
    if leaf is None:
        raise AuthenticationFailed(
            f"The certificate file {where} holds no certificate for its private key"
            + (" (the certificates in it belong to another key)." if certificates else "."),
            code="bad_certificate",
        )
    thumbprint = base64.urlsafe_b64encode(
        hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).digest()
    )
    subject = leaf.subject.rfc4514_string() or "no subject"
    now = now or datetime.now(UTC)
    if leaf.not_valid_after_utc < now:
        raise AuthenticationFailed(
            f"The certificate in {where}, {subject}, expired on "
            f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: create a new one, upload its public part to "
            "the app registration (Certificates & secrets) and point M365_CLIENT_CERTIFICATE at it.",
            code="certificate_expired",
        )
    if leaf.not_valid_before_utc > now:
        raise AuthenticationFailed(
            f"The certificate in {where}, {subject}, is valid only from "
            f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC.",
            code="certificate_not_yet_valid",
        )
    return AppCredential(
        setting="M365_CLIENT_CERTIFICATE",
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        certificate_pem=leaf.public_bytes(serialization.Encoding.PEM).decode(),
        sha256_thumbprint=thumbprint.decode().rstrip("="),
    )


@dataclass(frozen=True)
class AppRegistration:
    """The Entra app registration bcsync signs in as."""

    tenant_id: str
    client_id: str
    credential: AppCredential
    authority_host: str = MICROSOFT_AUTHORITY_HOST

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant_id}"

    def application(
        self, *, session: requests.Session, token_cache: msal.TokenCache | None = None
    ) -> msal.ConfidentialClientApplication:
        """A new MSAL application. Raises typed errors: MSAL reads the tenant's OpenID configuration
        over the network when constructed."""
        host = self.authority.split("/")[2]
        try:
            return msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=self.credential.for_msal(),
                authority=self.authority,
                http_client=session,
                token_cache=token_cache,
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
            raise unreachable(self, exc) from None

    def rejected(self, result: dict[str, Any]) -> AuthenticationFailed:
        """Entra refused the app's own credentials (any mode)."""
        error = str(result.get("error") or "unknown_error")
        hint = self.credential.hint_for(error)
        message = f"Microsoft 365 rejected the application's credentials ({error}): {hint}."
        first_line = entra_said(result, hide=self.credential.secret)
        if first_line:
            message = f"{message} Entra said: {first_line}"
        logger.warning("Microsoft 365 sign-in failed for app %s: %s", self.client_id, error)
        return AuthenticationFailed(message, code=error)


def unreachable(registration: AppRegistration, exc: Exception) -> GraphConnectionError:
    return GraphConnectionError(
        f"Could not reach Microsoft 365 sign-in at {registration.authority}: {type(exc).__name__}."
    )


def entra_said(result: dict[str, Any], *, hide: str = "") -> str:
    """The first line of Entra's error description: an AADSTS code and a sentence; the trace and
    correlation ids on the following lines are noise here. Belt and braces: never echo `hide`."""
    description = str(result.get("error_description") or "").strip().splitlines()
    first_line = description[0] if description else ""
    return first_line.replace(hide, "[secret]") if hide else first_line


class TokenProvider(Protocol):
    """Hands out bearer tokens for Graph. ``force_refresh`` is used once after Graph answered 401
    to a token the provider still considered valid (revoked, or expired early)."""

    def access_token(self, *, force_refresh: bool = False) -> str: ...


class ClientCredentialsTokenProvider:
    """App-only tokens from Microsoft Entra with a client secret or a certificate.

    Tokens live in MSAL's in-memory cache; MSAL hands out the cached token and fetches a new one
    when less than five minutes remain (or at the ``refresh_in`` hint Entra sends), so callers can
    ask for a token before every request. Each provider owns its own MSAL application: MSAL
    remembers failed token requests for up to a minute (its HTTP cache), so a provider built after
    a configuration fix starts clean. The credential never appears in messages, reprs or logs.
    """

    def __init__(self, *, registration: AppRegistration, session: requests.Session) -> None:
        self.registration = registration
        self.session = session
        self._app: msal.ConfidentialClientApplication | None = None
        # One token request at a time: threads that all find the cache empty would each ask Entra.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(authority={self.registration.authority!r}, "
            f"client_id={self.registration.client_id!r})"
        )

    def access_token(self, *, force_refresh: bool = False) -> str:
        registration = self.registration
        with self._lock:
            if self._app is None:
                # Built on first use, so a failure surfaces as a typed error on the call that needs it.
                self._app = registration.application(session=self.session)
            if force_refresh:
                # MSAL refuses force_refresh for this flow; dropping our cached tokens has that effect.
                self._app.remove_tokens_for_client()
            try:
                result = self._app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
            except requests.RequestException as exc:
                raise unreachable(registration, exc) from None
        if "access_token" not in result:
            raise registration.rejected(result)
        if result.get("token_source") == "identity_provider":
            logger.info(
                "Signed in to Microsoft 365 as app %s in tenant %s",
                registration.client_id,
                registration.tenant_id,
            )
        return result["access_token"]


class TokenCacheStore(Protocol):
    """Where one user's serialized MSAL token cache lives (encrypted, outside this package), and the
    MSAL account (``home_account_id``) it signs in as."""

    home_account_id: str

    def load(self) -> str:
        """The serialized cache; raises `SignInRequired` when there is none to use."""
        ...

    def save(self, serialized: str) -> None: ...

    def sign_in_required(self, *, reason: str) -> None:
        """Microsoft said this user must sign in again; record it."""
        ...


@dataclass(frozen=True)
class SignedIn:
    """The outcome of a delegated sign-in: who signed in, and the token cache to store."""

    username: str
    home_account_id: str
    serialized_cache: str = field(repr=False)


def start_sign_in(
    *, registration: AppRegistration, session: requests.Session, redirect_uri: str, login_hint: str
) -> dict[str, Any]:
    """Begin the authorization-code flow (PKCE, state and nonce are MSAL's). Returns MSAL's flow:
    keep it in the user's session and send the browser to its ``auth_uri``."""
    app = registration.application(session=session)
    with warnings.catch_warnings():
        # MSAL recommends form_post, a cross-site POST that the session cookie (SameSite=Lax) does
        # not follow; the query answer is as safe, since the code needs the PKCE verifier and the
        # app's credential.
        warnings.simplefilter("ignore", UserWarning)
        return app.initiate_auth_code_flow(
            DELEGATED_SCOPES, redirect_uri=redirect_uri, login_hint=login_hint or None, response_mode="query"
        )


class SignInRefused(AuthenticationFailed):
    """The callback of a delegated sign-in could not be used; nothing was stored."""


def finish_sign_in(
    *,
    registration: AppRegistration,
    session: requests.Session,
    flow: dict[str, Any],
    answer: dict[str, str],
) -> SignedIn:
    """Redeem the authorization code the browser brought back for this user's tokens. Raises
    `SignInRefused` for a tampered or replayed answer, a refused sign-in or consent, or a grant
    without Contacts.ReadWrite."""
    cache = msal.SerializableTokenCache()
    app = registration.application(session=session, token_cache=cache)
    try:
        result = app.acquire_token_by_auth_code_flow(flow, answer)
    except (ValueError, RuntimeError):
        # ValueError: state missing or not this flow's; RuntimeError: the id token's nonce differs.
        raise SignInRefused(
            "This Microsoft 365 sign-in answer does not belong to the sign-in started here (it was "
            "replayed, tampered with, or the sign-in was started in another window). Nothing was "
            "stored; press Connect to Microsoft 365 again.",
            code="state_mismatch",
        ) from None
    except requests.RequestException as exc:
        raise unreachable(registration, exc) from None
    if "access_token" not in result:
        error = str(result.get("error") or "unknown_error")
        if error == "invalid_client":
            raise registration.rejected(result)
        said = entra_said(result, hide=registration.credential.secret)
        raise SignInRefused(
            f"Microsoft 365 did not complete the sign-in ({error}){': ' + said if said else ''}. Nothing "
            "was stored; press Connect to Microsoft 365 to try again.",
            code=error,
        )
    granted = {scope.rsplit("/", 1)[-1].lower() for scope in str(result.get("scope", "")).split()}
    if "contacts.readwrite" not in granted:
        raise SignInRefused(
            "Microsoft 365 signed you in without the Contacts.ReadWrite permission (consent was not "
            "given, or an administrator must approve it). Nothing was stored.",
            code="scope_not_granted",
        )
    claims = result.get("id_token_claims") or {}
    accounts = app.get_accounts()
    return SignedIn(
        username=str(claims.get("preferred_username") or ""),
        home_account_id=accounts[0]["home_account_id"] if accounts else "",
        serialized_cache=cache.serialize(),
    )


def sign_in_again_reason(result: dict[str, Any]) -> str | None:
    """Why Microsoft wants the user to sign in again, in words; None when it is not that kind of
    error. Decided by the OAuth error, as Microsoft advises; the AADSTS code only picks the words."""
    error = str(result.get("error") or "")
    if error not in _SIGN_IN_AGAIN_ERRORS:
        return None
    for code in result.get("error_codes") or []:
        if code in _SIGN_IN_AGAIN_REASONS:
            return _SIGN_IN_AGAIN_REASONS[code]
    return f"Microsoft 365 asks you to sign in again ({error})"


class DelegatedTokenProvider:
    """One user's tokens: the cached access token while it lasts, then a new one from the stored
    refresh token (MSAL's ``acquire_token_silent``). The cache is saved whenever MSAL changed it,
    since Entra returns a new refresh token on every use. When Microsoft says the user must sign in
    again, the store hears it and `SignInRequired` is raised: retrying cannot help."""

    def __init__(
        self,
        *,
        registration: AppRegistration,
        session: requests.Session,
        store: TokenCacheStore,
        home_account_id: str,
    ) -> None:
        self.registration = registration
        self.session = session
        self.store = store
        self.home_account_id = home_account_id
        self._app: msal.ConfidentialClientApplication | None = None
        self._cache: msal.SerializableTokenCache | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        authority = self.registration.authority
        return f"{type(self).__name__}(authority={authority!r}, account={self.home_account_id!r})"

    def access_token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            if self._app is None or self._cache is None:
                cache = msal.SerializableTokenCache()
                cache.deserialize(self.store.load())
                self._app = self.registration.application(session=self.session, token_cache=cache)
                self._cache = cache
            account = next(
                (a for a in self._app.get_accounts() if a.get("home_account_id") == self.home_account_id),
                None,
            )
            if account is None:
                raise self._sign_in_required(
                    "no stored sign-in was found for the account", error="no_account"
                )
            try:
                result = self._app.acquire_token_silent_with_error(
                    DELEGATED_SCOPES, account, force_refresh=force_refresh
                )
            except requests.RequestException as exc:
                raise unreachable(self.registration, exc) from None
            if self._cache.has_state_changed:
                self.store.save(self._cache.serialize())
        if result is None:
            raise self._sign_in_required("no refresh token is stored", error="no_refresh_token")
        if "access_token" in result:
            return result["access_token"]
        reason = sign_in_again_reason(result)
        if reason is not None:
            raise self._sign_in_required(reason, error=str(result.get("error")))
        error = str(result.get("error") or "unknown_error")
        if error in _TRANSIENT_ERRORS:
            raise ServiceUnavailable(
                f"Microsoft 365 sign-in is unavailable ({error}); try again in a few minutes.", code=error
            )
        raise self.registration.rejected(result)

    def _sign_in_required(self, reason: str, *, error: str) -> SignInRequired:
        logger.info("Microsoft 365 wants account %s to sign in again: %s", self.home_account_id, error)
        self.store.sign_in_required(reason=reason)
        return SignInRequired.for_reason(reason, code=error)
