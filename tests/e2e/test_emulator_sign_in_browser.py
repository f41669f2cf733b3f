"""The emulator's sign-in pages in Chromium: MSAL's auth_uri, a wrong then the right password, consent,
and the redirect back with a code MSAL redeems."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import msal
import pytest
from playwright.sync_api import Page, expect

from m365_emulator import EmulatorConfig, RunningEmulator, serve_in_thread
from tests.m365_emulator.transport import emulator_session

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended"),
]

ADA = "ada@contoso.test"
# The emulator's own Outlook page is the landing page: any loopback port matches the registration.
REDIRECT = "http://127.0.0.1/"


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    server = serve_in_thread(
        EmulatorConfig(
            tenant="contoso-test",
            client_id="tests-client",
            client_secret="tests-secret",
            mailboxes=[ADA],
            grant="delegated",
            redirect_uris=[REDIRECT],
            mailbox_passwords={ADA: "Secret1"},
        )
    )
    yield server
    server.stop()


def test_a_browser_signs_in_consents_and_returns_a_code_msal_redeems(emulator, page: Page, shot):
    app = msal.ConfidentialClientApplication(
        "tests-client",
        client_credential="tests-secret",
        authority="https://login.microsoftonline.com/contoso-test",
        http_client=emulator_session(emulator.url),
    )
    callback = f"{emulator.url}/"
    flow = app.initiate_auth_code_flow(["Contacts.ReadWrite"], redirect_uri=callback, login_hint=ADA)
    page.goto(flow["auth_uri"])
    expect(page.locator("#login")).to_have_value(ADA)
    shot("account")
    page.locator("#next").click()
    page.locator("#passwd").fill("wrong")
    page.locator("#sign-in").click()
    expect(page.locator("#error")).to_contain_text("Your account or password is incorrect")
    page.locator("#passwd").fill("Secret1")
    page.locator("#sign-in").click()
    expect(page.locator("#permissions")).to_contain_text("Have full access to your contacts")
    shot("consent")
    page.locator("#accept").click()
    page.wait_for_url(f"{callback}?**")
    answer = dict(parse_qsl(urlsplit(page.url).query))
    assert answer["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, answer)
    assert result["id_token_claims"]["preferred_username"] == ADA
