"""Delegated sign-in with real MSAL: the authorize pages, the auth-code grant with PKCE, refresh tokens
and the switches that break them, --grant, and what a delegated token reaches at Graph."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msal
import pytest
import requests

from m365_emulator import RunningEmulator, serve_in_thread
from m365_emulator.auth import tenant_id, user_object_id
from m365_emulator.control import EmulatorControl, SignInRefused, sign_in
from tests.m365_emulator.transport import emulator_session

from .conftest import ADA, BOB, CLIENT_ID, GRAPH, SECRET, TENANT, make_config

LOGIN = "https://login.microsoftonline.com"
REDIRECT = "http://127.0.0.1/exchange/connect/callback"
CALLBACK = "http://127.0.0.1:8123/exchange/connect/callback"  # any loopback port matches REDIRECT
ADA_PASSWORD = "ada-Password-1"
SCOPES = ["Contacts.ReadWrite"]

# MSAL 1.39 recommends form_post on every auth-code flow; these tests use query mode on purpose too.
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    server = serve_in_thread(
        make_config(
            grant="both",
            redirect_uris=[REDIRECT],
            mailbox_passwords={ADA: ADA_PASSWORD},
            # Below MSAL's 5-minute margin, so every acquire_token_silent redeems the refresh token.
            token_lifetime_s=120,
        )
    )
    yield server
    server.stop()


@pytest.fixture
def http(emulator: RunningEmulator) -> requests.Session:
    return emulator_session(emulator.url)


def new_app(http: requests.Session, credential: Any = SECRET) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=credential,
        authority=f"{LOGIN}/{TENANT}",
        http_client=http,
        token_cache=msal.SerializableTokenCache(),
    )


def connect(
    app: msal.ConfidentialClientApplication, upn: str = ADA, password: str | None = ADA_PASSWORD, **flow: Any
) -> dict[str, Any]:
    started = app.initiate_auth_code_flow(SCOPES, redirect_uri=CALLBACK, login_hint=upn, **flow)
    back = sign_in(started["auth_uri"], upn, password)
    return app.acquire_token_by_auth_code_flow(started, dict(parse_qsl(urlsplit(back).query)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims_of(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# ---- the whole flow through MSAL ---------------------------------------------------------------------


def test_msal_connects_refreshes_after_an_hour_and_reports_revocation(emulator, http):
    app = new_app(http)
    result = connect(app)
    assert result.get("error") is None, result
    claims = result["id_token_claims"]
    oid, tid = user_object_id(TENANT, ADA), tenant_id(TENANT)
    assert (claims["aud"], claims["oid"], claims["tid"], claims["preferred_username"]) == (
        CLIENT_ID,
        oid,
        tid,
        ADA,
    )
    assert claims["iss"] == f"{LOGIN}/{tid}/v2.0"
    assert claims["nonce"]  # MSAL compared it with its flow's nonce and accepted it
    assert set(result["scope"].split()) == {"Contacts.ReadWrite", "openid", "profile", "offline_access"}
    (account,) = app.get_accounts(username=ADA)
    assert account["home_account_id"] == f"{oid}.{tid}"
    access = claims_of(result["access_token"])
    assert (access["upn"], access["oid"], access["idtyp"]) == (ADA, oid, "user")
    assert "Contacts.ReadWrite" in access["scp"].split() and "roles" not in access
    first = result["access_token"]
    assert http.get(f"{GRAPH}/me/contactFolders", headers=bearer(first)).status_code == 200

    EmulatorControl(emulator.url).advance_clock(3600)
    expired = http.get(f"{GRAPH}/me/contactFolders", headers=bearer(first))
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"
    later = app.acquire_token_silent_with_error(SCOPES, account)
    assert later["token_source"] == "identity_provider" and later["access_token"] != first
    assert http.get(f"{GRAPH}/me/contactFolders", headers=bearer(later["access_token"])).status_code == 200

    EmulatorControl(emulator.url).user_switch(ADA, "revoke-sessions")
    revoked = app.acquire_token_silent_with_error(SCOPES, account)
    assert revoked["error"] == "invalid_grant"
    assert revoked["error_codes"] == [50173]
    assert revoked["error_description"].startswith(
        "AADSTS50173: The provided grant has expired due to it being revoked"
    )
    # Signing in again heals the connection.
    assert "access_token" in connect(app)


def test_form_post_response_mode_works_with_msal(http):
    app = new_app(http)
    started = app.initiate_auth_code_flow(SCOPES, redirect_uri=CALLBACK, response_mode="form_post")
    back = sign_in(started["auth_uri"], ADA, ADA_PASSWORD)
    assert back.startswith(f"{CALLBACK}?")
    result = app.acquire_token_by_auth_code_flow(started, dict(parse_qsl(urlsplit(back).query)))
    assert result["id_token_claims"]["preferred_username"] == ADA


def test_max_age_puts_auth_time_in_the_id_token_as_msal_checks(http):
    result = connect(new_app(http), BOB, None, max_age=300)
    assert "auth_time" in result["id_token_claims"], result
    assert "auth_time" not in connect(new_app(http), BOB, None)["id_token_claims"]


def test_pages_complete_with_plain_requests_and_consent_is_asked_once(emulator, http):
    app = new_app(http)
    started = app.initiate_auth_code_flow(SCOPES, redirect_uri=CALLBACK, login_hint=ADA)
    browser = requests.Session()
    page = browser.get(started["auth_uri"])
    assert page.status_code == 200
    assert f"value='{ADA}'" in page.text  # login_hint prefilled
    action = re.search(r"<form method='post' action='([^']+)'", page.text).group(1)
    flow = re.search(r"name='flow' value='([^']+)'", page.text).group(1)
    page = browser.post(emulator.url + action, data={"flow": flow, "step": "account", "login": ADA})
    assert "type='password'" in page.text
    page = browser.post(
        emulator.url + action, data={"flow": flow, "step": "password", "passwd": ADA_PASSWORD}
    )
    assert "Permissions requested" in page.text and "Contacts.ReadWrite" in page.text
    done = browser.post(
        emulator.url + action,
        data={"flow": flow, "step": "consent", "consent": "accept"},
        allow_redirects=False,
    )
    assert done.status_code == 302
    back = dict(parse_qsl(urlsplit(done.headers["Location"]).query))
    assert back["state"] == started["state"] and back["code"] and back["client_info"]
    assert "access_token" in app.acquire_token_by_auth_code_flow(started, back)
    assert emulator.emulator.auth.user_state(ADA)["consented"] == ["Contacts.ReadWrite"]
    # The second sign-in goes straight back: consent was given.
    again = app.initiate_auth_code_flow(SCOPES, redirect_uri=CALLBACK)
    page = browser.get(again["auth_uri"])
    flow = re.search(r"name='flow' value='([^']+)'", page.text).group(1)
    page = browser.post(emulator.url + action, data={"flow": flow, "step": "account", "login": ADA})
    done = browser.post(
        emulator.url + action,
        data={"flow": flow, "step": "password", "passwd": ADA_PASSWORD},
        allow_redirects=False,
    )
    assert done.status_code == 302 and "code=" in done.headers["Location"]


def test_declined_consent_goes_back_with_access_denied(http):
    app = new_app(http)
    started = app.initiate_auth_code_flow(SCOPES, redirect_uri=CALLBACK)
    back = dict(parse_qsl(urlsplit(sign_in(started["auth_uri"], BOB, consent=False)).query))
    assert back["error"] == "access_denied" and back["state"] == started["state"]
    assert back["error_description"].startswith("AADSTS65004: User declined to consent")
    result = app.acquire_token_by_auth_code_flow(started, back)
    assert result["error"] == "access_denied"


def test_wrong_password_and_unknown_account_stay_on_the_page(http):
    started = new_app(http).initiate_auth_code_flow(SCOPES, redirect_uri=CALLBACK)
    with pytest.raises(SignInRefused, match="AADSTS50126: Your account or password is incorrect"):
        sign_in(started["auth_uri"], ADA, "wrong")
    with pytest.raises(SignInRefused, match="AADSTS50034"):
        sign_in(started["auth_uri"], "nobody@contoso.test")


def test_mailbox_without_password_signs_in_by_address(http):
    result = connect(new_app(http), BOB, None)
    assert result["id_token_claims"]["preferred_username"] == BOB


def test_unregistered_redirect_uri_gets_an_error_page_and_no_redirect(emulator, http):
    app = new_app(http)
    for wrong in ("http://127.0.0.1:8123/elsewhere", "https://evil.test/exchange/connect/callback"):
        started = app.initiate_auth_code_flow(SCOPES, redirect_uri=wrong)
        page = requests.get(started["auth_uri"], allow_redirects=False, timeout=30)
        assert page.status_code == 400 and "Location" not in page.headers
        assert "AADSTS50011" in page.text
    emulator.emulator.configure(redirect_uris=[])
    started = app.initiate_auth_code_flow(SCOPES, redirect_uri=CALLBACK)
    with pytest.raises(SignInRefused, match="AADSTS500113"):
        sign_in(started["auth_uri"], ADA, ADA_PASSWORD)


def test_unknown_scope_goes_back_with_invalid_scope(http):
    started = new_app(http).initiate_auth_code_flow(["Mail.Send"], redirect_uri=CALLBACK)
    response = requests.get(started["auth_uri"], allow_redirects=False, timeout=30)
    back = dict(parse_qsl(urlsplit(response.headers["Location"]).query))
    assert back["error"] == "invalid_scope" and "AADSTS70011" in back["error_description"]


# ---- the token endpoint's checks ---------------------------------------------------------------------


def code_for(http: requests.Session, verifier: str = "v" * 43) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    document = http.get(f"{LOGIN}/{TENANT}/v2.0/.well-known/openid-configuration").json()
    request = requests.Request(
        "GET",
        document["authorization_endpoint"],
        params={
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": CALLBACK,
            "scope": "Contacts.ReadWrite offline_access openid profile",
            "state": "s1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    ).prepare()
    back = dict(parse_qsl(urlsplit(sign_in(request.url, BOB)).query))
    return back["code"]


def redeem(http: requests.Session, **form: str) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "redirect_uri": CALLBACK,
        "code_verifier": "v" * 43,
        **form,
    }
    return http.post(f"{LOGIN}/{TENANT}/oauth2/v2.0/token", data=data)


def test_code_is_single_use_and_bound_to_verifier_and_redirect_uri(http):
    code = code_for(http)
    wrong_verifier = redeem(http, code=code, code_verifier="w" * 43)
    assert wrong_verifier.status_code == 400
    assert (wrong_verifier.json()["error"], wrong_verifier.json()["error_codes"]) == (
        "invalid_grant",
        [501481],
    )
    wrong_redirect = redeem(http, code=code, redirect_uri="http://127.0.0.1:9999/exchange/connect/callback")
    assert wrong_redirect.json()["error_codes"] == [50011]
    first = redeem(http, code=code)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    assert {"access_token", "refresh_token", "id_token"} <= first.json().keys()
    assert "client_info" not in first.json()  # only when the request asks with client_info=1
    replay = redeem(http, code=code)
    assert (replay.json()["error"], replay.json()["error_codes"]) == ("invalid_grant", [54005])
    assert redeem(http, code="made-up").json()["error_codes"] == [9002313]


def test_expired_code_is_70008(emulator, http):
    code = code_for(http)
    emulator.emulator.auth.advance_clock(601)
    assert redeem(http, code=code).json()["error_codes"] == [70008]


def refresh(http: requests.Session, token: str) -> requests.Response:
    return http.post(
        f"{LOGIN}/{TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "refresh_token": token,
            "scope": "Contacts.ReadWrite offline_access openid profile",
        },
    )


def test_refresh_tokens_rotate_and_old_ones_stay_valid_unless_strict(emulator, http):
    first = redeem(http, code=code_for(http)).json()["refresh_token"]
    second = refresh(http, first).json()["refresh_token"]
    assert second != first
    assert refresh(http, first).status_code == 200  # Entra does not revoke a redeemed refresh token
    emulator.emulator.configure(strict_refresh_rotation=True)
    assert refresh(http, first).json()["error_codes"] == [70008]
    assert refresh(http, second).status_code == 200


@pytest.mark.parametrize(
    ("switch", "code", "suberror"),
    [
        ("revoke-sessions", 50173, None),
        ("revoke-consent", 65001, "consent_required"),
        ("require-mfa", 50076, "basic_action"),
        ("require-mfa-registration", 50079, None),
        ("sign-in-frequency", 70043, "token_expired"),
        ("disable", 50057, None),
    ],
)
def test_user_switches_make_the_next_refresh_fail_like_entra(emulator, http, switch, code, suberror):
    token = redeem(http, code=code_for(http)).json()["refresh_token"]
    state = EmulatorControl(emulator.url).user_switch(BOB, switch)
    assert state["upn"] == BOB
    failed = refresh(http, token)
    body = failed.json()
    error = "interaction_required" if code == 50079 else "invalid_grant"
    assert (failed.status_code, body["error"], body["error_codes"]) == (400, error, [code])
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert body.get("suberror") == suberror
    assert {"trace_id", "correlation_id", "timestamp", "error_uri"} <= body.keys()


def test_password_reset_revokes_and_the_new_password_signs_in(emulator, http):
    token = redeem(http, code=code_for(http)).json()["refresh_token"]
    EmulatorControl(emulator.url).set_password(BOB, "new-Password-2")
    assert refresh(http, token).json()["error_codes"] == [50173]
    assert connect(new_app(http), BOB, "new-Password-2")["id_token_claims"]["preferred_username"] == BOB


def test_a_new_sign_in_heals_mfa_but_not_a_disabled_account(emulator, http):
    app = new_app(http)
    connect(app, BOB, None)
    (account,) = app.get_accounts()
    emulator.emulator.auth.require_mfa(BOB)
    assert app.acquire_token_silent_with_error(SCOPES, account)["error_codes"] == [50076]
    connect(app, BOB, None)
    assert "access_token" in app.acquire_token_silent_with_error(SCOPES, account)
    emulator.emulator.auth.set_disabled(BOB, True)
    with pytest.raises(SignInRefused, match="AADSTS50057"):
        connect(app, BOB, None)


def test_refresh_token_unused_for_90_days_expires(emulator, http):
    token = redeem(http, code=code_for(http)).json()["refresh_token"]
    emulator.emulator.auth.advance_clock(89 * 86400)
    token = refresh(http, token).json()["refresh_token"]  # used: the new token counts from now
    emulator.emulator.auth.advance_clock(91 * 86400)
    body = refresh(http, token).json()
    assert (body["error_codes"], body["suberror"]) == ([700082], "bad_token")
    assert "was inactive for 90.00:00:00" in body["error_description"]


def test_consent_revoked_asks_again_at_the_next_sign_in(emulator, http):
    connect(new_app(http))
    emulator.emulator.auth.revoke_consent(ADA)
    started = new_app(http).initiate_auth_code_flow(SCOPES, redirect_uri=CALLBACK)
    # Declining is only possible on the consent page, so an access_denied answer shows it was asked.
    back = sign_in(started["auth_uri"], ADA, ADA_PASSWORD, consent=False)
    assert dict(parse_qsl(urlsplit(back).query))["error"] == "access_denied"


# ---- --grant and what delegated tokens reach -----------------------------------------------------------


def client_credentials(http: requests.Session) -> requests.Response:
    return http.post(
        f"{LOGIN}/{TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scope": "https://graph.microsoft.com/.default",
        },
    )


def test_grant_delegated_gives_client_credentials_tokens_403_on_every_mailbox(emulator, http):
    emulator.emulator.configure(grant="delegated")
    issued = client_credentials(http)
    assert issued.status_code == 200
    assert "roles" not in claims_of(issued.json()["access_token"])
    for upn in (ADA, BOB):
        denied = http.get(f"{GRAPH}/users/{upn}/contacts", headers=bearer(issued.json()["access_token"]))
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "ErrorAccessDenied"
        assert denied.json()["error"]["message"] == "Access is denied. Check credentials and try again."
    # Users still sign in.
    assert "access_token" in connect(new_app(http))


def test_grant_application_refuses_delegated_sign_in(emulator, http):
    emulator.emulator.configure(grant="application")
    token = client_credentials(http).json()["access_token"]
    assert claims_of(token)["roles"] == ["Contacts.ReadWrite"]
    assert http.get(f"{GRAPH}/users/{ADA}/contacts", headers=bearer(token)).status_code == 200
    started = new_app(http).initiate_auth_code_flow(SCOPES, redirect_uri=CALLBACK)
    response = requests.get(started["auth_uri"], allow_redirects=False, timeout=30)
    back = dict(parse_qsl(urlsplit(response.headers["Location"]).query))
    assert back["error"] == "invalid_client" and "AADSTS65005" in back["error_description"]


def test_delegated_token_reaches_its_own_mailbox_by_me_upn_and_oid_and_nothing_else(http):
    token = connect(new_app(http))["access_token"]
    headers = bearer(token)
    created = http.post(f"{GRAPH}/me/contacts", json={"givenName": "Grace"}, headers=headers)
    assert created.status_code == 201
    contact_id = created.json()["id"]
    assert http.get(f"{GRAPH}/users/{ADA}/contacts/{contact_id}", headers=headers).status_code == 200
    oid = user_object_id(TENANT, ADA)
    assert http.get(f"{GRAPH}/users/{oid}/contacts/{contact_id}", headers=headers).status_code == 200
    listed = http.get(f"{GRAPH}/me/contacts", params={"$top": "1"}, headers=headers).json()
    assert [c["givenName"] for c in listed["value"]] == ["Grace"]
    folder = http.post(
        f"{GRAPH}/me/contactFolders", json={"displayName": "Business Central"}, headers=headers
    )
    assert folder.status_code == 201
    delta = http.get(f"{GRAPH}/me/contactFolders/{folder.json()['id']}/contacts/delta", headers=headers)
    assert delta.status_code == 200 and "/v1.0/me/contactFolders/" in delta.json()["@odata.deltaLink"]
    for other in (f"{GRAPH}/users/{BOB}/contacts", f"{GRAPH}/users/{user_object_id(TENANT, BOB)}/contacts"):
        denied = http.get(other, headers=headers)
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "ErrorAccessDenied"
    # The user object needs User.Read, which MSAL's Contacts.ReadWrite request does not include.
    assert http.get(f"{GRAPH}/me", headers=headers).json()["error"]["code"] == "Authorization_RequestDenied"


def test_me_with_user_read_returns_the_user(http):
    app = new_app(http)
    started = app.initiate_auth_code_flow(["User.Read", "Contacts.ReadWrite"], redirect_uri=CALLBACK)
    back = sign_in(started["auth_uri"], ADA, ADA_PASSWORD)
    token = app.acquire_token_by_auth_code_flow(started, dict(parse_qsl(urlsplit(back).query)))[
        "access_token"
    ]
    me = http.get(f"{GRAPH}/me", headers=bearer(token)).json()
    assert (me["userPrincipalName"], me["id"], me["mail"]) == (ADA, user_object_id(TENANT, ADA), ADA)


def test_batch_with_me_urls_and_a_foreign_mailbox(http):
    headers = bearer(connect(new_app(http))["access_token"])
    response = http.post(
        f"{GRAPH}/$batch",
        json={
            "requests": [
                {
                    "id": "1",
                    "method": "POST",
                    "url": "/me/contacts",
                    "body": {"givenName": "Ada"},
                    "headers": {"Content-Type": "application/json"},
                },
                {"id": "2", "method": "GET", "url": "me/contactFolders"},
                {"id": "3", "method": "GET", "url": f"/users/{BOB}/contacts"},
            ]
        },
        headers=headers,
    )
    statuses = {entry["id"]: entry["status"] for entry in response.json()["responses"]}
    assert statuses == {"1": 201, "2": 200, "3": 403}


def test_app_only_token_on_me_is_still_a_bad_request(http):
    token = client_credentials(http).json()["access_token"]
    response = http.get(f"{GRAPH}/me/contacts", headers=bearer(token))
    assert response.status_code == 400
    assert (
        response.json()["error"]["message"] == "/me request is only valid with delegated authentication flow."
    )


def test_control_api_reports_user_state_and_the_clock(emulator, http):
    connect(new_app(http))
    control = EmulatorControl(emulator.url)
    state = control.user(ADA)
    assert state["consented"] == ["Contacts.ReadWrite"] and state["refresh_tokens"] == 1
    assert state["has_password"] is True and "password" not in state
    before = control.call("GET", "/clock")["epoch"]
    after = control.advance_clock(86400)
    assert after["offset_s"] == 86400 and after["epoch"] - before >= 86400
    assert control.user_switch(ADA, "revoke-sessions")["refresh_tokens"] == 0


def test_refresh_tokens_and_consent_survive_a_restart_with_a_state_file(tmp_path):
    config = {"grant": "both", "redirect_uris": [REDIRECT], "state_file": str(tmp_path / "m365.json")}
    first = serve_in_thread(make_config(**config))
    try:
        app = new_app(emulator_session(first.url))
        connect(app, BOB, None)
        saved_cache = app.token_cache.serialize()
        first.emulator.auth.advance_clock(7200)
    finally:
        first.stop()
    second = serve_in_thread(make_config(**config))
    try:
        assert second.emulator.auth.clock_offset_s == 7200
        app = new_app(emulator_session(second.url))
        app.token_cache.deserialize(saved_cache)
        (account,) = app.get_accounts()
        app.token_cache.remove_at(
            next(iter(app.token_cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)))
        )
        refreshed = app.acquire_token_silent_with_error(SCOPES, account)
        assert refreshed["token_source"] == "identity_provider", refreshed
        assert second.emulator.auth.user_state(BOB)["consented"] == ["Contacts.ReadWrite"]
    finally:
        second.stop()
