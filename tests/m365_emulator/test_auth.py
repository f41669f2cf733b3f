"""Sign-in: discovery, the client-credentials grant, Entra's error bodies, token expiry, MSAL."""

from __future__ import annotations

import msal
import pytest

from tests.m365_emulator.transport import emulator_session

from .conftest import ADA, CLIENT_ID, GRAPH, SECRET, TENANT, Graph

LOGIN = "https://login.microsoftonline.com"


def token_request(graph: Graph, **overrides: str) -> dict:
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "scope": "https://graph.microsoft.com/.default",
        **overrides,
    }
    response = graph.session.post(f"{LOGIN}/{TENANT}/oauth2/v2.0/token", data=form)
    return {"status": response.status_code, **response.json()}


def test_openid_configuration_points_at_microsoft_urls_and_the_browser_at_the_emulator(emulator):
    from m365_emulator.auth import tenant_id

    guid = tenant_id(TENANT)
    session = emulator_session(emulator.url)
    document = session.get(f"{LOGIN}/{TENANT}/v2.0/.well-known/openid-configuration").json()
    assert document["token_endpoint"] == f"{LOGIN}/{guid}/oauth2/v2.0/token"
    assert document["issuer"] == f"{LOGIN}/{guid}/v2.0"
    assert document["jwks_uri"] == f"{LOGIN}/{guid}/discovery/v2.0/keys"
    assert document["device_authorization_endpoint"].startswith(LOGIN)
    # The sign-in pages are for a browser, which does not go through the rewriting transport.
    assert document["authorization_endpoint"] == f"{emulator.url}/{guid}/oauth2/v2.0/authorize"
    assert document["end_session_endpoint"] == f"{emulator.url}/{guid}/oauth2/v2.0/logout"
    emulator.emulator.configure(sign_in_url="http://sign-in.test:8365/")
    document = session.get(f"{LOGIN}/{TENANT}/v2.0/.well-known/openid-configuration").json()
    assert document["authorization_endpoint"] == f"http://sign-in.test:8365/{guid}/oauth2/v2.0/authorize"
    keys = session.get(document["jwks_uri"]).json()["keys"]
    assert keys[0]["kty"] == "RSA" and keys[0]["issuer"] == document["issuer"]


def test_instance_discovery_answers_like_entra(emulator):
    session = emulator_session(emulator.url)
    body = session.get(
        f"{LOGIN}/common/discovery/instance",
        params={"api-version": "1.1", "authorization_endpoint": f"{LOGIN}/{TENANT}/oauth2/v2.0/authorize"},
    ).json()
    assert body["tenant_discovery_endpoint"] == f"{LOGIN}/{TENANT}/v2.0/.well-known/openid-configuration"
    assert "login.microsoftonline.com" in body["metadata"][0]["aliases"]


def test_unknown_tenant_discovery_is_400(emulator):
    response = emulator_session(emulator.url).get(f"{LOGIN}/nope/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    assert "AADSTS90002" in response.json()["error_description"]


def test_client_credentials_success(graph):
    body = token_request(graph)
    assert body["status"] == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600 == body["ext_expires_in"]
    assert len(body["access_token"]) > 40


def test_wrong_secret_is_401_invalid_client(graph):
    body = token_request(graph, client_secret="wrong")
    assert body["status"] == 401
    assert body["error"] == "invalid_client"
    assert body["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert body["error_codes"] == [7000215]
    assert {"timestamp", "trace_id", "correlation_id"} <= body.keys()


def test_unknown_client_is_rejected_like_entra(graph):
    body = token_request(graph, client_id="someone-else")
    assert body["status"] == 400
    assert body["error"] == "unauthorized_client"
    assert body["error_codes"] == [700016]


def test_unknown_tenant_token_is_400_invalid_request(graph):
    response = graph.session.post(
        f"{LOGIN}/other-tenant/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["error_codes"] == [90002]


def test_scope_without_default_is_invalid_scope(graph):
    body = token_request(graph, scope="Contacts.ReadWrite")
    assert body["status"] == 400
    assert body["error"] == "invalid_scope"


def test_missing_and_unknown_tokens_are_401(graph):
    url = f"{GRAPH}/users/{ADA}/contactFolders"
    missing = graph.session.get(url, headers={"Authorization": ""})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert missing.json()["error"]["message"] == "Access token is empty."
    assert missing.headers["WWW-Authenticate"].startswith("Bearer ")
    unknown = graph.session.get(url, headers={"Authorization": "Bearer not-a-token"})
    assert unknown.status_code == 401
    assert unknown.json()["error"]["message"] == "Access token has expired or is not yet valid."


def test_tokens_expire_after_their_lifetime(graph, emulator):
    emulator.emulator.configure(token_lifetime_s=0)
    token = graph.fetch_token()
    response = graph.get(f"/users/{ADA}/contactFolders", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Access token has expired or is not yet valid."


def test_expire_tokens_now(graph, emulator):
    assert graph.get(f"/users/{ADA}/contactFolders").status_code == 200
    emulator.emulator.configure(expire_tokens_now=True)
    assert graph.get(f"/users/{ADA}/contactFolders").status_code == 401
    graph.session.headers["Authorization"] = f"Bearer {graph.fetch_token()}"
    assert graph.get(f"/users/{ADA}/contactFolders").status_code == 200


@pytest.mark.parametrize("tenant", [TENANT, "tenant-guid"])
def test_msal_round_trip(emulator, tenant):
    from m365_emulator.auth import tenant_id

    authority_tenant = tenant_id(TENANT) if tenant == "tenant-guid" else tenant
    session = emulator_session(emulator.url)
    app = msal.ConfidentialClientApplication(
        CLIENT_ID, client_credential=SECRET, authority=f"{LOGIN}/{authority_tenant}", http_client=session
    )
    result = app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert "access_token" in result, result
    response = session.get(
        f"{GRAPH}/users/{ADA}/contactFolders", headers={"Authorization": f"Bearer {result['access_token']}"}
    )
    assert response.status_code == 200
    assert emulator.emulator.stats()["token_requests"] == 1


def test_msal_reports_wrong_secret(emulator):
    app = msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential="nope",
        authority=f"{LOGIN}/{TENANT}",
        http_client=emulator_session(emulator.url),
    )
    result = app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert result["error"] == "invalid_client"
    assert "AADSTS7000215" in result["error_description"]
