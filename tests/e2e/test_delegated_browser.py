"""Delegated mode in Chromium: a salesperson connects through the emulator's sign-in pages, syncs, and
the scheduled run an hour of token time later signs in from the stored refresh token; the emulator
revokes the sign-in, the page turns to "needs reconnecting", and Reconnect heals it. Signing in as
another account stores nothing, and a tampered answer is refused. Runs execute inline (django-q2
sync mode) in the live server."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import django_q.conf
import pytest
from cryptography.fernet import Fernet
from playwright.sync_api import Page, Route, expect

from exchange_sync.models import ExchangeSyncSetup, M365Connection, M365ConnectionStatus, RunStatus, SyncRun
from exchange_sync.services import contact_sync, job_queue
from tests.e2e.test_admin_browser import log_in, readonly, success_message
from tests.exchange_sync.test_job_queue import new_entry
from tests.factories import PersonFactory, UserCardFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ANN = "ann@contoso.test"
CALLBACK_PATH = "/admin/exchange_sync/exchangesyncsetup/microsoft-365/callback/"


@pytest.fixture
def delegated_m365(settings, m365, monkeypatch):
    monkeypatch.setattr(django_q.conf.Conf, "SYNC", True)
    settings.M365_AUTH_MODE = "delegated"
    settings.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    # Loopback redirect URIs match on any port, as Entra's do: the live server's is random.
    m365.emulator.configure(
        grant="delegated",
        redirect_uris=[f"http://localhost{CALLBACK_PATH}", f"http://127.0.0.1{CALLBACK_PATH}"],
    )
    m365.emulator.add_mailbox(ANN)
    m365.emulator.add_mailbox("bob@contoso.test")
    return m365


@pytest.fixture
def ann(db):
    user = UserFactory(username="ann")
    UserCardFactory(user=user, microsoft_365_email=ANN)
    return user


def exchange_page(base: str, user) -> str:
    setup, _ = contact_sync.setups_for(user=user)
    return f"{base}/admin/exchange_sync/exchangesyncsetup/{setup.pk}/change/"


def sign_in_on_microsofts_page(page: Page, account: str) -> None:
    """The emulator's sign-in pages: the account (prefilled from the User Card), then consent."""
    expect(page.locator("#login")).to_have_value(ANN)
    page.fill("#login", account)
    page.click("#next")
    accept = page.locator("#accept")
    if accept.count():
        accept.click()


def connection_notice(page: Page):
    return expect(page.locator("#m365-connection"))


def test_connect_sync_scheduled_run_an_hour_later_revoke_and_reconnect(
    live_server, delegated_m365, ann, page, shot
):
    base = live_server.url
    PersonFactory.create_batch(2)
    log_in(page, base, "ann")
    page.goto(exchange_page(base, ann))
    connection_notice(page).to_contain_text("Not connected to Microsoft 365")
    shot("not connected")

    page.get_by_role("button", name="Connect to Microsoft 365").click()
    expect(page).to_have_url(re.compile(r"/oauth2/v2\.0/authorize"))
    shot("microsoft sign-in")
    sign_in_on_microsofts_page(page, ANN)
    success_message(page).to_have_text(f"Connected to Microsoft 365 as {ANN}.")
    connection_notice(page).to_contain_text(f"Connected to Microsoft 365 as {ANN}")
    expect(page.get_by_role("button", name="Reconnect to Microsoft 365")).to_be_visible()
    shot("connected")

    page.get_by_role("link", name="Contact Sync Setup", exact=True).click()
    page.get_by_role("button", name="Sync with Microsoft 365", exact=True).click()
    run = SyncRun.objects.filter(user=ann).latest("pk")
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert len(delegated_m365.emulator.outlook(ANN).list_contacts("Business Central")) == 2

    # The scheduled pass, an hour of token time later: Graph refuses the cached access token, and
    # the run signs in again from the stored refresh token.
    ExchangeSyncSetup.objects.filter(user=ann).update(enabled=True)
    delegated_m365.emulator.auth.advance_clock(3600)
    PersonFactory()
    job_queue.run_job_queue_entry(entry_id=new_entry(ann).pk)
    scheduled = SyncRun.objects.filter(user=ann).latest("pk")
    assert (scheduled.trigger, scheduled.status) == ("job_queue", RunStatus.SUCCEEDED), scheduled.error
    assert len(delegated_m365.emulator.outlook(ANN).list_contacts("Business Central")) == 3

    # An administrator revokes Ann's sessions: the next run fails and the page asks to reconnect.
    delegated_m365.emulator.auth.revoke_sessions(ANN)
    delegated_m365.emulator.auth.advance_clock(3600)
    page.goto(f"{base}/admin/exchange_sync/contactsyncsetup/")
    page.get_by_role("button", name="Sync with Microsoft 365", exact=True).click()
    failed = SyncRun.objects.filter(user=ann).latest("pk")
    assert failed.status == RunStatus.FAILED
    expect(readonly(page, "error")).to_contain_text("Reconnect to Microsoft 365: the sign-in was revoked")
    page.goto(exchange_page(base, ann))
    connection_notice(page).to_contain_text("Needs reconnecting: the sign-in was revoked")
    shot("needs reconnecting")

    page.get_by_role("button", name="Reconnect to Microsoft 365").click()
    sign_in_on_microsofts_page(page, ANN)
    success_message(page).to_have_text(f"Connected to Microsoft 365 as {ANN}.")
    connection_notice(page).to_contain_text(f"Connected to Microsoft 365 as {ANN}")
    shot("reconnected")
    assert contact_sync.validate_exchange_connection(user=ann).ok


def test_another_account_and_a_tampered_answer_store_nothing(live_server, delegated_m365, ann, page, shot):
    base = live_server.url
    log_in(page, base, "ann")
    page.goto(exchange_page(base, ann))

    page.get_by_role("button", name="Connect to Microsoft 365").click()
    sign_in_on_microsofts_page(page, "bob@contoso.test")
    expect(page.locator("ul.messagelist li.error")).to_have_text(
        "You signed in to Microsoft 365 as bob@contoso.test, but your User Card's Microsoft 365 email is "
        f"{ANN}. Nothing was stored: press Connect to Microsoft 365 again and sign in as {ANN}."
    )
    connection_notice(page).to_contain_text("Not connected to Microsoft 365")
    shot("wrong account")
    assert not M365Connection.objects.exists()

    def tamper(route: Route) -> None:
        # The emulator's last page sends the browser back to bcsync; forge the state on the way.
        response = route.fetch(max_redirects=0)
        location = response.headers.get("location", "")
        if CALLBACK_PATH not in location:
            route.fulfill(response=response)
            return
        parts = urlsplit(location)
        answer = dict(parse_qsl(parts.query))
        answer["state"] = "forged-" + answer["state"]
        forged = urlunsplit(parts._replace(query=urlencode(answer)))
        route.fulfill(response=response, headers={**response.headers, "location": forged})

    page.route("**/oauth2/v2.0/authorize**", tamper)
    page.get_by_role("button", name="Connect to Microsoft 365").click()
    sign_in_on_microsofts_page(page, ANN)
    expect(page.locator("ul.messagelist li.error")).to_contain_text(
        "This Microsoft 365 sign-in answer does not belong to the sign-in started here"
    )
    shot("tampered")
    assert not M365Connection.objects.exists()

    # Reloading an answer already used is refused too: the sign-in in progress was used up.
    page.unroute("**/oauth2/v2.0/authorize**")
    page.goto(f"{base}{CALLBACK_PATH}?code=replayed&state=replayed")
    expect(page.locator("ul.messagelist li.error")).to_contain_text(
        "No Microsoft 365 sign-in was in progress here"
    )
    assert not M365Connection.objects.filter(status=M365ConnectionStatus.CONNECTED).exists()
