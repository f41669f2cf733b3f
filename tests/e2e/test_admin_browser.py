"""A salesperson's day in the admin, in Chromium: User Card, validate, sync filter, Sync, the run
page, the activity log, Full Sync, Preview; and another user's setup is out of reach. Plus: what
Outlook sends is shown escaped. Runs execute inline (django-q2 sync mode) in the live server."""

from __future__ import annotations

import re

import django_q.conf
import pytest
from playwright.sync_api import Page, expect

from contacts.models import Contact
from exchange_sync.models import ActivityLog, ContactSyncSetup, RunStatus, SyncMode, SyncRun
from exchange_sync.services import contact_sync
from tests.factories import PersonFactory, UserCardFactory, UserFactory
from tests.http_client import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


MAILBOX = "ann@contoso.test"


@pytest.fixture(autouse=True)
def _runs_execute_inline(monkeypatch):
    # The buttons enqueue in transaction.on_commit; in sync mode async_task runs the task there.
    monkeypatch.setattr(django_q.conf.Conf, "SYNC", True)


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools strong")).to_have_text(username)


def success_message(page: Page):
    return expect(page.locator("ul.messagelist li.success"))


def readonly(page: Page, field: str):
    return page.locator(f".form-row .field-{field} .readonly, .form-row.field-{field} .readonly").first


def test_a_salesperson_syncs_from_the_browser(live_server, m365, page: Page, shot, dialogs):
    base = live_server.url
    m365.emulator.add_mailbox(MAILBOX)
    ann = UserFactory(username="ann")
    UserCardFactory(user=ann, microsoft_365_email=MAILBOX)  # an administrator's to set
    bob = UserFactory(username="bob")
    UserCardFactory(user=bob, microsoft_365_email="bob@contoso.test")
    _, bobs_setup = contact_sync.setups_for(user=bob)
    for first, city in [("Ada", "London"), ("Alan", "London"), ("Grace", "Paris"), ("Edsger", "Amsterdam")]:
        PersonFactory(first_name=first, surname="Tester", city=city, email=f"{first.lower()}@example.com")

    page.goto(f"{base}/admin/")
    expect(page).to_have_title(re.compile("Log in"))
    shot("login")
    log_in(page, base, "ann")
    shot("admin index")

    # User Card: the card opens directly; the Microsoft 365 email is read-only for a salesperson.
    page.goto(f"{base}/admin/exchange_sync/usercard/")
    expect(readonly(page, "microsoft_365_email")).to_have_text(MAILBOX)
    expect(page.locator("#id_microsoft_365_email")).to_have_count(0)
    expect(page.locator("input[name=_save]")).to_have_count(0)
    shot("user card")

    # Contact Sync Setup: validate the connection.
    page.goto(f"{base}/admin/exchange_sync/contactsyncsetup/")
    setup = ContactSyncSetup.objects.get(user=ann)
    expect(page).to_have_url(re.compile(rf"/contactsyncsetup/{setup.pk}/change/$"))
    shot("contact sync setup")
    page.get_by_role("button", name="Validate Exchange Connection").click()
    success_message(page).to_have_text(
        f"Connected successfully to Microsoft 365: mailbox {MAILBOX}, "
        "folder 'Business Central' will be created by the first Sync."
    )
    shot("validated")

    # Set Sync Filter: a malformed expression is refused pointing at the bad part; then London.
    page.get_by_role("link", name="Set Sync Filter").click()
    page.fill("#id_city", "London|")
    page.click("input[type=submit][value='Save filter']")
    expect(page.locator(".form-row.errors ul.errorlist")).to_have_text(
        'City: "London|" — expected a value after "|" at position 7'
    )
    shot("filter refused")
    page.fill("#id_city", "London")
    page.click("input[type=submit][value='Save filter']")
    success_message(page).to_have_text("Sync filter saved: City: London.")
    expect(readonly(page, "filter_description")).to_have_text("City: London")
    shot("filter saved")

    # Sync with Microsoft 365: the run page follows the run; in sync mode it has already finished.
    page.get_by_role("button", name="Sync with Microsoft 365", exact=True).click()
    run = SyncRun.objects.filter(user=ann).latest("pk")
    expect(page).to_have_url(re.compile(rf"/syncrun/{run.pk}/change/$"))
    success_message(page).to_have_text(
        "Sync with Microsoft 365 is queued. This page follows it until it ends."
    )
    expect(readonly(page, "status")).to_have_text("Succeeded")
    expect(readonly(page, "mode")).to_have_text("Sync with Microsoft 365")
    expect(readonly(page, "created")).to_have_text("2")
    expect(readonly(page, "deleted")).to_have_text("0")
    expect(readonly(page, "imported")).to_have_text("0")
    expect(readonly(page, "failed")).to_have_text("0")
    expect(page.locator("meta[http-equiv=refresh]")).to_have_count(0)  # finished: no more refreshing
    expect(page.locator(".run-progress")).to_have_count(0)
    log_inline = page.locator("#run-log")  # the run's own activity log, under its counts
    expect(log_inline.locator("tbody tr.run-log-entry")).to_have_count(2)
    expect(log_inline).to_contain_text("Ada Tester")
    expect(log_inline).to_contain_text("Alan Tester")
    assert {c["displayName"] for c in m365.emulator.outlook(MAILBOX).list_contacts("Business Central")} == {
        "Ada Tester",
        "Alan Tester",
    }
    shot("sync finished")

    # Its activity log.
    page.get_by_role("link", name="Activity Log of this run").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#result_list")).to_contain_text("Ada Tester")
    expect(page.locator("#result_list")).to_contain_text("Alan Tester")
    assert ActivityLog.objects.filter(run=run).count() == 2
    shot("activity log")

    # Full Sync, then Preview, from the setup page.
    page.goto(f"{base}/admin/exchange_sync/contactsyncsetup/{setup.pk}/change/")
    page.get_by_role("button", name="Full Sync with Microsoft 365").click()
    success_message(page).to_contain_text("Full Sync with Microsoft 365 is queued.")
    expect(readonly(page, "status")).to_have_text("Succeeded")
    expect(readonly(page, "mode")).to_have_text("Full Sync with Microsoft 365")
    expect(readonly(page, "created")).to_have_text("0")
    shot("full sync finished")
    page.get_by_role("link", name="Contact Sync Setup", exact=True).click()
    page.get_by_role("button", name="Preview").click()
    success_message(page).to_contain_text("Preview is queued.")
    expect(readonly(page, "status")).to_have_text("Succeeded")
    expect(readonly(page, "mode")).to_have_text("Preview")
    shot("preview finished")
    assert [(r.mode, r.status) for r in SyncRun.objects.filter(user=ann).order_by("pk")] == [
        (SyncMode.SYNC, RunStatus.SUCCEEDED),
        (SyncMode.FULL, RunStatus.SUCCEEDED),
        (SyncMode.PREVIEW, RunStatus.SUCCEEDED),
    ]

    # Bob's setup, by URL: "doesn't exist", back on the index; his run list is out of reach too.
    page.goto(f"{base}/admin/exchange_sync/contactsyncsetup/{bobs_setup.pk}/change/")
    expect(page).to_have_url(f"{base}/admin/")
    expect(page.locator("ul.messagelist li.warning")).to_have_text(
        f"Contact sync setup with ID “{bobs_setup.pk}” doesn\u2019t exist. Perhaps it was deleted?"
    )
    shot("another users setup refused")
    assert dialogs == []


XSS_NAME = "<script>alert(1)</script>"
XSS_COMPANY = "<img src=x onerror=alert(2)>"


def test_what_outlook_sends_is_shown_escaped(live_server, m365, page: Page, shot, dialogs):
    base = live_server.url
    boss = UserFactory(username="boss", is_superuser=True)
    UserCardFactory(user=boss, microsoft_365_email="boss@contoso.test")
    m365.emulator.add_mailbox("boss@contoso.test")
    assert contact_sync.validate_exchange_connection(user=boss).ok
    m365.emulator.outlook("boss@contoso.test").create_folder("Business Central")
    m365.emulator.outlook("boss@contoso.test").create_contact(
        "Business Central",
        {
            "displayName": XSS_NAME,
            "givenName": XSS_NAME,
            "companyName": XSS_COMPANY,
            "emailAddresses": [{"address": "mallory@example.com", "name": XSS_NAME}],
        },
    )
    setup = ContactSyncSetup.objects.get(user=boss)

    log_in(page, base, "boss")
    page.goto(f"{base}/admin/exchange_sync/contactsyncsetup/{setup.pk}/change/")
    page.get_by_role("button", name="Sync with Microsoft 365", exact=True).click()
    expect(readonly(page, "status")).to_have_text("Succeeded")
    expect(readonly(page, "imported")).to_have_text("1")
    imported = Contact.objects.get(email="mallory@example.com")
    assert (imported.name, imported.company_name) == (XSS_NAME, XSS_COMPANY)
    expect(page.locator("#content")).to_contain_text(XSS_NAME)  # the log inline on the run page
    assert_inert(page)
    shot("run page")

    page.get_by_role("link", name="Activity Log of this run").click()
    expect(page.locator("#result_list")).to_contain_text(XSS_NAME)
    assert_inert(page)
    shot("activity log")

    page.goto(f"{base}/admin/contacts/contact/?q=mallory")
    row = page.locator("#result_list tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(XSS_NAME)
    expect(row).to_contain_text(XSS_COMPANY)
    assert_inert(page)
    shot("contact list", full_page=False)  # its country filter is 250 entries long
    page.goto(f"{base}/admin/contacts/contact/{imported.pk}/change/")
    expect(page.locator("#id_company_name")).to_have_value(XSS_COMPANY)
    assert_inert(page)
    shot("contact card")

    assert dialogs == []


def assert_inert(page: Page) -> None:
    """The payloads are text: no element of theirs exists and no inline script mentions alert."""
    expect(page.locator("img[src='x']")).to_have_count(0)
    inline_scripts = page.evaluate("[...document.scripts].filter(s => !s.src).map(s => s.text)")
    assert not any("alert(" in script for script in inline_scripts)
