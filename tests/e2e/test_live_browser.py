"""Live updates in Chromium, end to end: a real `manage.py qcluster` worker, the live server reachable
by the emulator, background synchronization switched on from the setup page. An edit on the
emulator's Outlook page then appears on the admin's contact page with no sync button pressed."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from contacts.models import Contact
from exchange_sync.models import ExchangeSyncSetup, GraphSubscription, RunStatus, SubscriptionStatus, SyncRun
from exchange_sync.services import contact_sync
from tests.factories import PersonFactory, UserCardFactory, UserFactory
from tests.processes import emulator_child_environment, start, stop

from .test_admin_browser import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEADLINE_SECONDS = 90


def wait_for(condition, what: str, log) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen:\n{log.read_text()[-3000:]}"
        time.sleep(0.3)


def test_an_outlook_edit_arrives_in_the_admin_without_a_button(
    live_server, m365, page: Page, shot, tmp_path, settings
):
    settings.PUBLIC_BASE_URL = live_server.url
    ann = UserCardFactory(user=UserFactory(username="ann")).user
    m365.emulator.add_mailbox("ann@contoso.test")
    person = PersonFactory(
        first_name="Ada", surname="Lovelace", email="ada@example.com", job_title="Engineer"
    )
    assert contact_sync.validate_exchange_connection(user=ann).ok
    env = emulator_child_environment(
        tmp_path,
        m365.url,
        PUBLIC_BASE_URL=live_server.url,
        Q_WORKERS="2",
    )
    log = tmp_path / "qcluster.log"
    cluster = start(["manage.py", "qcluster"], env, log)
    try:
        log_in(page, live_server.url, "ann")
        page.goto(f"{live_server.url}/admin/exchange_sync/contactsyncsetup/")
        page.get_by_role("button", name="Enable Background Synchronization").click()
        assert ExchangeSyncSetup.objects.get(user=ann).enabled

        # The worker syncs once (creating the folder), subscribes, and syncs again.
        wait_for(
            lambda: (
                GraphSubscription.objects.filter(user=ann, status=SubscriptionStatus.ACTIVE)
                .exclude(graph_id="")
                .exists()
            ),
            "the subscription",
            log,
        )
        wait_for(
            lambda: (
                not SyncRun.objects.filter(
                    user=ann, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
                ).exists()
            ),
            "the first runs",
            log,
        )
        page.reload()
        expect(page.locator("#live-updates")).to_contain_text("On: Microsoft 365 notifies bcsync")
        shot("live updates on the setup page")

        page.goto(f"{m365.url}/")
        page.get_by_role("link", name="Edit").first.click()
        page.fill("#jobTitle", "Countess")
        page.get_by_role("button", name="Save").click()

        wait_for(
            lambda: Contact.objects.get(pk=person.pk).job_title == "Countess",
            "the edit in Business Central",
            log,
        )
        page.goto(f"{live_server.url}/admin/contacts/contact/{person.pk}/change/")
        expect(page.locator("#id_job_title")).to_have_value("Countess")
        shot("the Outlook edit on the contact page")
    finally:
        stop(cluster)
