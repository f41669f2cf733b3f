"""GET/POST /{tenant}/oauth2/v2.0/authorize: Entra's sign-in and consent pages for the tenant's mailboxes.

Plain HTML forms, no script needed, so a browser or any HTTP client can complete them: the first page
asks for the account, a second one for the password where one was configured for that mailbox, and a
consent page lists the permissions the user has not accepted yet. The flow's parameters stay on the
server under an unguessable id that the forms carry. An unknown client or redirect URI gets an error
page and no redirect (RFC 6749 §4.1.2.1); every later error goes back to the redirect URI with
`error`, `error_description` (AADSTS code) and `state`, as Entra does.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit

from .auth import DELEGATED_PERMISSIONS, OIDC_SCOPES, SignInError, normalize_scopes, tenant_id
from .messages import Request, Response

if TYPE_CHECKING:
    from .emulator import Emulator

FLOW_LIFETIME_S = 900
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")

STYLE = """
body{font-family:Segoe UI,Helvetica,Arial,sans-serif;background:#f2f2f2;margin:0;color:#1b1b1b}
main{background:#fff;max-width:440px;margin:60px auto;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:24px;font-weight:600;margin:12px 0 16px} .brand{color:#737373;font-size:15px}
input[type=text],input[type=email],input[type=password]{width:100%;box-sizing:border-box;padding:6px 0;
  border:0;border-bottom:1px solid #666;font-size:15px;margin:8px 0 16px}
button{background:#0067b8;color:#fff;border:0;padding:8px 24px;font-size:15px;cursor:pointer}
button.secondary{background:#ccc;color:#000} .error{color:#e81123;margin:8px 0} ul{padding-left:20px}
.account{font-size:15px;margin-bottom:8px}
"""


@dataclass
class PendingSignIn:
    client_id: str
    redirect_uri: str
    response_mode: str
    state: str | None
    scopes: frozenset[str]
    challenge: str
    method: str
    nonce: str | None
    client_info: bool
    login_hint: str
    prompt: str
    max_age: bool
    expires: float
    upn: str | None = None
    auth_time: float = 0.0


def redirect_uri_registered(uri: str, registered: list[str]) -> bool:
    """Exact match, except that http://localhost and http://127.0.0.1 match on any port (Entra's
    loopback rule)."""
    if uri in registered:
        return True
    given = urlsplit(uri)
    if given.scheme != "http" or given.hostname not in LOOPBACK_HOSTS:
        return False
    for candidate in registered:
        known = urlsplit(candidate)
        if (known.scheme, known.hostname, known.path, known.query) == (
            "http", given.hostname, given.path, given.query,
        ):  # fmt: skip
            return True
    return False


class SignIn:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.auth = emulator.auth
        self.config = emulator.config
        self._lock = threading.Lock()
        self._flows: dict[str, PendingSignIn] = {}

    # ---- GET: validate the request, show the first page ---------------------------------------------

    def authorize(self, tenant: str, request: Request) -> Response:
        if request.method == "POST" and "flow" in (form := self._form(request)):
            return self._continue(tenant, form)
        params = {**request.query, **(self._form(request) if request.method == "POST" else {})}
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        if not self.auth.knows_tenant(tenant):
            return self._error_page(SignInError("invalid_tenant", 90002, f"Tenant '{tenant}' not found."))
        if client_id != self.config.client_id:
            return self._error_page(
                SignInError(
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{client_id}' was not found in the directory "
                    f"'{self.config.tenant}'. This can happen if the application has not been installed by "
                    "the administrator of the tenant or consented to by any user in the tenant. You may have "
                    "sent your authentication request to the wrong tenant.",
                )
            )
        if not self.config.redirect_uris:
            return self._error_page(
                SignInError("invalid_request", 500113, "No reply address is registered for the application.")
            )
        if not redirect_uri_registered(redirect_uri, self.config.redirect_uris):
            return self._error_page(
                SignInError(
                    "invalid_request",
                    50011,
                    f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect "
                    f"URIs configured for the application '{client_id}'. Make sure the redirect URI sent in "
                    "the request matches one added to your application in the Azure portal. Navigate to "
                    "https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
                )
            )
        mode = params.get("response_mode", "query")
        state = params.get("state")
        if mode not in ("query", "fragment", "form_post"):
            mode = "query"
            return self._redirect_error(
                redirect_uri, mode, state,
                SignInError("invalid_request", 900144, "response_mode must be query, fragment or form_post."),
            )  # fmt: skip
        try:
            flow = self._new_flow(params, redirect_uri, mode, state)
        except SignInError as failure:
            return self._redirect_error(redirect_uri, mode, state, failure)
        flow_id = secrets.token_urlsafe(32)
        with self._lock:
            self._flows = {
                key: value for key, value in self._flows.items() if value.expires > self.auth.now()
            }
            self._flows[flow_id] = flow
        return self._account_page(tenant, flow_id, flow.login_hint)

    def _new_flow(
        self, params: dict[str, str], redirect_uri: str, mode: str, state: str | None
    ) -> PendingSignIn:
        if params.get("response_type", "") != "code":
            raise SignInError(
                "unsupported_response_type",
                700054,
                f"response_type '{params.get('response_type', '')}' is not enabled for the application.",
            )
        scopes = normalize_scopes(params.get("scope", ""))
        if not scopes:
            raise SignInError(
                "invalid_request", 900144, "The request body must contain the following parameter: 'scope'."
            )
        unknown = [
            s for s in scopes if s not in OIDC_SCOPES and s not in DELEGATED_PERMISSIONS and s != ".default"
        ]
        if unknown:
            raise SignInError(
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid. The scope "
                f"'{' '.join(unknown)}' does not exist on the resource.",
            )
        permissions = {s for s in scopes if s not in OIDC_SCOPES}
        if ".default" in permissions:
            permissions = (permissions - {".default"}) | {"Contacts.ReadWrite"}
        if permissions and self.config.grant == "application":
            raise SignInError(
                "invalid_client",
                65005,
                f"Misconfigured application. The client '{self.config.client_id}' has not listed the "
                f"delegated permissions '{' '.join(sorted(permissions))}' in the requested permissions of "
                "its application registration (the emulator was started with --grant application; use "
                "--grant delegated or --grant both).",
            )
        method = params.get("code_challenge_method", "plain" if params.get("code_challenge") else "")
        if params.get("code_challenge") and method not in ("S256", "plain"):
            raise SignInError(
                "invalid_request", 501491, f"Invalid code_challenge_method '{method}'; use S256 or plain."
            )
        prompt = params.get("prompt", "")
        if prompt == "none":
            raise SignInError(
                "login_required", 50058, "A silent sign-in request was sent but no user is signed in."
            )
        return PendingSignIn(
            client_id=self.config.client_id,
            redirect_uri=redirect_uri,
            response_mode=mode,
            state=state,
            scopes=frozenset(permissions | {s for s in scopes if s in OIDC_SCOPES}),
            challenge=params.get("code_challenge", ""),
            method=method,
            nonce=params.get("nonce"),
            client_info=params.get("client_info") == "1",
            login_hint=params.get("login_hint", ""),
            prompt=prompt,
            max_age="max_age" in params,
            expires=self.auth.now() + FLOW_LIFETIME_S,
        )

    # ---- POST: the account, password and consent steps ----------------------------------------------

    def _continue(self, tenant: str, form: dict[str, str]) -> Response:
        flow_id = form["flow"]
        with self._lock:
            flow = self._flows.get(flow_id)
        if flow is None or flow.expires <= self.auth.now():
            return self._error_page(
                SignInError(
                    "invalid_request",
                    50058,
                    "This sign-in request is no longer valid. Go back to the application and sign in again.",
                )
            )
        step = form.get("step", "")
        if step == "account":
            return self._account_step(tenant, flow_id, flow, form.get("login", "").strip())
        if step == "password" and flow.upn is not None:
            return self._password_step(tenant, flow_id, flow, form.get("passwd", ""))
        if step == "consent" and flow.upn is not None and flow.auth_time:
            if form.get("consent") != "accept":
                self._forget(flow_id)
                return self._redirect_error(
                    flow.redirect_uri,
                    flow.response_mode,
                    flow.state,
                    SignInError("access_denied", 65004, "User declined to consent to access the app."),
                )
            self.auth.grant_consent(flow.upn, self._permissions(flow))
            return self._complete(flow_id, flow)
        return self._account_page(tenant, flow_id, flow.login_hint, "Start again: enter your account.")

    def _account_step(self, tenant: str, flow_id: str, flow: PendingSignIn, login: str) -> Response:
        store = self.emulator.store
        with store.lock:
            mailbox = store.lookup(login) if "@" in login else None
        if mailbox is None:
            return self._account_page(
                tenant, flow_id, login,
                f"AADSTS50034: We couldn't find an account with that username ({login}) in "
                f"{self.config.tenant}. Try another account.",
            )  # fmt: skip
        if self.auth.user(mailbox.upn).disabled:
            return self._account_page(
                tenant,
                flow_id,
                login,
                "AADSTS50057: Your account has been disabled. Contact your administrator.",
            )
        flow.upn = mailbox.upn
        flow.auth_time = 0.0
        if self.auth.user(mailbox.upn).password is not None:
            return self._password_page(tenant, flow_id, mailbox.upn)
        return self._signed_in(tenant, flow_id, flow)

    def _password_step(self, tenant: str, flow_id: str, flow: PendingSignIn, password: str) -> Response:
        assert flow.upn is not None
        expected = self.auth.user(flow.upn).password or ""
        if not secrets.compare_digest(password.encode(), expected.encode()):
            return self._password_page(
                tenant, flow_id, flow.upn, "AADSTS50126: Your account or password is incorrect."
            )
        return self._signed_in(tenant, flow_id, flow)

    def _signed_in(self, tenant: str, flow_id: str, flow: PendingSignIn) -> Response:
        assert flow.upn is not None
        flow.auth_time = self.auth.now()
        missing = self._permissions(flow) - self.auth.user(flow.upn).consented
        if missing or flow.prompt == "consent":
            return self._consent_page(tenant, flow_id, flow)
        return self._complete(flow_id, flow)

    def _complete(self, flow_id: str, flow: PendingSignIn) -> Response:
        assert flow.upn is not None
        self._forget(flow_id)
        code = self.auth.issue_code(
            upn=flow.upn,
            redirect_uri=flow.redirect_uri,
            scopes=flow.scopes,
            challenge=flow.challenge,
            method=flow.method,
            nonce=flow.nonce,
            auth_time=flow.auth_time,
            with_auth_time=flow.max_age,
        )
        values = {"code": code}
        if flow.client_info:
            values["client_info"] = self.auth.client_info(flow.upn)
        if flow.state is not None:
            values["state"] = flow.state
        values["session_state"] = str(uuid.uuid4())
        return self._redirect(flow.redirect_uri, flow.response_mode, values)

    # ---- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _permissions(flow: PendingSignIn) -> set[str]:
        return {scope for scope in flow.scopes if scope not in OIDC_SCOPES}

    def _forget(self, flow_id: str) -> None:
        with self._lock:
            self._flows.pop(flow_id, None)

    @staticmethod
    def _form(request: Request) -> dict[str, str]:
        return dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))

    def _redirect_error(
        self, redirect_uri: str, mode: str, state: str | None, failure: SignInError
    ) -> Response:
        body = self.auth.error_body(failure)
        values = {"error": failure.error, "error_description": body["error_description"]}
        if failure.suberror:
            values["error_subcode"] = failure.suberror
        if state is not None:
            values["state"] = state
        return self._redirect(redirect_uri, mode, values)

    @staticmethod
    def _redirect(redirect_uri: str, mode: str, values: dict[str, str]) -> Response:
        if mode == "form_post":
            fields = "".join(
                f"<input type='hidden' name='{escape(name, quote=True)}' value='{escape(value, quote=True)}'>"
                for name, value in values.items()
            )
            return Response.html(
                200,
                "<!doctype html><html><head><title>Working...</title></head><body>"
                f"<form method='POST' name='hiddenform' action='{escape(redirect_uri, quote=True)}'>{fields}"
                "<noscript><p>Script is disabled. Click Submit to continue.</p>"
                "<input type='submit' value='Submit'></noscript></form>"
                "<script>document.forms[0].submit();</script></body></html>",
            )
        separator = "#" if mode == "fragment" else ("&" if "?" in redirect_uri else "?")
        return Response(302, {"Location": f"{redirect_uri}{separator}{urlencode(values)}"}, b"")

    def _error_page(self, failure: SignInError) -> Response:
        body = self.auth.error_body(failure)
        return Response.html(
            400,
            self._page(
                "Sign in to your account",
                "<h1>Sorry, but we're having trouble signing you in.</h1>"
                f"<p class='error' id='error'>{escape(body['error_description'])}</p>",
            ),
        )

    def _page(self, title: str, content: str) -> str:
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><main><div class='brand'>Microsoft (M365 emulator: "
            f"{escape(self.config.tenant)})</div>{content}</main></body></html>"
        )

    def _form_html(self, tenant: str, flow_id: str, step: str, inner: str) -> str:
        action = f"/{escape(tenant, quote=True)}/oauth2/v2.0/authorize"
        return (
            f"<form method='post' action='{action}'>"
            f"<input type='hidden' name='flow' value='{escape(flow_id, quote=True)}'>"
            f"<input type='hidden' name='step' value='{step}'>{inner}</form>"
        )

    @staticmethod
    def _error_html(error: str) -> str:
        return f"<p class='error' id='error' role='alert'>{escape(error)}</p>" if error else ""

    def _account_page(self, tenant: str, flow_id: str, login: str, error: str = "") -> Response:
        inner = (
            "<h1>Sign in</h1>"
            f"{self._error_html(error)}"
            "<label for='login'>Email address of your mailbox</label>"
            f"<input type='email' id='login' name='login' value='{escape(login, quote=True)}' "
            "autocomplete='username' required autofocus>"
            "<button type='submit' id='next'>Next</button>"
        )
        return Response.html(
            200, self._page("Sign in to your account", self._form_html(tenant, flow_id, "account", inner))
        )

    def _password_page(self, tenant: str, flow_id: str, upn: str, error: str = "") -> Response:
        inner = (
            f"<div class='account'>{escape(upn)}</div><h1>Enter password</h1>"
            f"{self._error_html(error)}"
            "<label for='passwd'>Password</label>"
            "<input type='password' id='passwd' name='passwd' autocomplete='current-password' "
            "required autofocus>"
            "<button type='submit' id='sign-in'>Sign in</button>"
        )
        return Response.html(
            200, self._page("Sign in to your account", self._form_html(tenant, flow_id, "password", inner))
        )

    def _consent_page(self, tenant: str, flow_id: str, flow: PendingSignIn) -> Response:
        assert flow.upn is not None
        items = "".join(
            f"<li><b>{escape(DELEGATED_PERMISSIONS[scope])}</b> ({escape(scope)})</li>"
            for scope in sorted(self._permissions(flow))
        )
        if "offline_access" in flow.scopes:
            items += "<li><b>Maintain access to data you have given it access to</b> (offline_access)</li>"
        if "openid" in flow.scopes or "profile" in flow.scopes:
            items += "<li><b>View your basic profile</b> (openid, profile)</li>"
        inner = (
            f"<div class='account'>{escape(flow.upn)}</div><h1>Permissions requested</h1>"
            f"<p><b>{escape(flow.client_id)}</b> (tenant {escape(tenant_id(self.config.tenant))}) "
            "would like to:</p>"
            f"<ul id='permissions'>{items}</ul>"
            "<p>Accepting these permissions means that you allow this app to use your data as specified.</p>"
            "<button type='submit' name='consent' value='accept' id='accept'>Accept</button> "
            "<button type='submit' name='consent' value='cancel' id='cancel' class='secondary'>"
            "Cancel</button>"
        )
        return Response.html(
            200, self._page("Permissions requested", self._form_html(tenant, flow_id, "consent", inner))
        )

    def logout(self, tenant: str, request: Request) -> Response:
        """end_session_endpoint: the emulator keeps no browser session, so only the redirect is left."""
        target = request.query.get("post_logout_redirect_uri", "")
        if target and redirect_uri_registered(target, self.config.redirect_uris):
            return Response(302, {"Location": target}, b"")
        return Response.html(200, self._page("Sign out", "<h1>You signed out of your account</h1>"))
