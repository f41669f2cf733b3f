"""Watching the sync in Chromium: the administrators' Sync health page with its charts and filter, a
salesperson's own row on their setup page, and a running run's progress with its log."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from exchange_sync.models import (
    ActivityLog,
    Direction,
    ExchangeSyncSetup,
    JobQueueEntry,
    JobStatus,
    Outcome,
    RunPhase,
    RunStatus,
)
from exchange_sync.services import contact_sync, job_queue
from tests.factories import (
    PersonFactory,
    SyncRunFactory,
    UserCardFactory,
    UserFactory,
    enable_background_sync,
)

from .test_admin_browser import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def run_the_schedule(entry: JobQueueEntry) -> None:
    """A pass that reaches every user: the passes a failing user's back-off skips go by in between."""
    JobQueueEntry.objects.filter(pk=entry.pk).update(status=JobStatus.READY, next_run_at=timezone.now())
    ExchangeSyncSetup.objects.update(background_skips_left=0)
    job_queue.run_job_queue_entry(entry_id=entry.pk)


def test_the_health_page_and_a_salespersons_own_row(
    live_server, m365, page: Page, shot, dialogs, inline_tasks
):
    base = live_server.url
    PersonFactory.create_batch(3)
    UserFactory(username="boss", is_superuser=True)
    ann = UserCardFactory(user=UserFactory(username="ann")).user
    carl = UserCardFactory(user=UserFactory(username="carl")).user  # his mailbox does not exist
    m365.emulator.add_mailbox("ann@contoso.test")
    assert contact_sync.validate_exchange_connection(user=ann).ok
    for user in (ann, carl):
        enable_background_sync(user)
    entry = JobQueueEntry.objects.get()
    for _ in range(3):
        run_the_schedule(entry)

    log_in(page, base, "boss")
    page.get_by_role("link", name="Sync health").first.click()
    expect(page.locator("h1")).to_have_text("Sync health")
    rows = page.locator("table.sync-health tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-user", "carl")  # who needs attention comes first
    expect(rows.nth(0).locator(".failures")).to_have_text("3")
    expect(rows.nth(0).locator(".problems")).to_contain_text("The sync failed 3 times in a row")
    expect(rows.nth(0).locator(".problems")).to_contain_text("Alert emailed")
    expect(rows.nth(1)).to_have_attribute("data-user", "ann")
    expect(rows.nth(1).locator(".problems")).to_have_text("No")
    expect(page.locator("#runs-per-day rect")).to_have_count(2)  # today: succeeded and failed
    expect(page.locator("#run-durations rect")).to_have_count(6)
    shot("sync health")

    page.get_by_role("link", name="Needs attention only").click()
    expect(rows).to_have_count(1)
    expect(page.locator(".health-filter")).to_contain_text("Showing the 1 user who needs attention.")
    shot("sync health needs attention")

    page.locator("#logout-form button").click()
    log_in(page, base, "carl")
    page.goto(f"{base}/admin/exchange_sync/contactsyncsetup/")
    own = page.locator("#sync-health table.sync-health tbody tr")
    expect(own).to_have_count(1)
    expect(own).to_have_attribute("data-user", "carl")
    expect(own.locator(".problems")).to_contain_text("carl@contoso.test")
    shot("own sync health on the setup page")
    assert dialogs == []


def test_a_running_runs_progress_and_its_log(live_server, page: Page, shot, dialogs):
    # The run is in the state a worker's per-batch flush leaves it (the numbers are tested against
    # real runs in tests/exchange_sync/test_run_progress.py); here the browser shows it.
    ann = UserCardFactory(user=UserFactory(username="ann")).user
    contact_sync.setups_for(user=ann)
    run = SyncRunFactory(
        user=ann,
        mode="full",
        status=RunStatus.RUNNING,
        finished_at=None,
        heartbeat_at=timezone.now(),
        phase=RunPhase.WRITING_OUTLOOK,
        phase_started_at=timezone.now() - timedelta(seconds=90),
        phase_done=3_000,
        phase_total=10_000,
        created=2_990,
        failed=10,
    )
    ActivityLog.objects.bulk_create(
        ActivityLog(
            run=run,
            user=ann,
            contact_no=f"CT{i:06d}",
            direction=Direction.TO_M365,
            action="Create Outlook contact",
            outcome=Outcome.FAILED if i % 300 == 0 else Outcome.CREATED,
            message=f"CT{i:06d} Person {i} "
            + (
                "could not be sent: Outlook refused it."
                if i % 300 == 0
                else "was added to the Outlook folder."
            ),
        )
        for i in range(3_000)
    )

    log_in(page, live_server.url, "ann")
    page.goto(f"{live_server.url}/admin/exchange_sync/syncrun/{run.pk}/change/")
    status = page.locator(".run-progress")
    # 3,000 done in the 90 s since the phase started (plus the seconds this test takes): ~3.5 min left.
    expect(status).to_contain_text(
        re.compile(r"Writing to Outlook: 3,000 of 10,000, about [34] min( \d+ s)? left")
    )
    expect(status.locator("progress")).to_have_attribute("value", "3000")
    expect(page.locator("meta[http-equiv=refresh]")).to_have_count(1)
    expect(page.locator("#run-log tr.run-log-entry")).to_have_count(50)
    expect(page.locator("#run-log")).to_contain_text("3000 entries")
    shot("running run with progress")

    page.select_option("select[name=log_outcome]", "failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#run-log tr.run-log-entry")).to_have_count(10)
    shot("run log filtered to failures")
    page.get_by_role("link", name="Open in the Activity Log").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(10)
    shot("activity log with the same filter")
    assert dialogs == []
