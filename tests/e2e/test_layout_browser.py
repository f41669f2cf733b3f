"""The Sync runs list and a run's page fit a 1,400-pixel screen: many runs with every count set, and
a run whose log quotes long emails and messages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from exchange_sync.models import ActivityLog, Direction, Outcome, RunStatus, SyncMode, SyncRun
from tests.factories import SyncRunFactory, UserFactory

from .test_admin_browser import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WIDTH = 1400
COUNTS = {name: 10_000 + n for n, name in enumerate(SyncRun.COUNT_FIELDS)}


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": WIDTH, "height": 900}}


def page_width(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def list_fits(page: Page) -> bool:
    """The admin scrolls a wide list inside its own box, so the page alone does not tell."""
    return page.evaluate(
        "(box => box.scrollWidth <= box.clientWidth)(document.querySelector('#changelist .results'))"
    )


def test_the_runs_list_and_a_run_page_fit_1400_pixels(live_server, page: Page, shot):
    UserFactory(username="boss", is_superuser=True)
    users = [UserFactory(username=f"salesperson.with.a.long.name.{n}") for n in range(3)]
    start = timezone.now() - timedelta(hours=2)
    for n in range(60):
        SyncRunFactory(
            user=users[n % 3],
            mode=SyncMode.PREVIEW if n % 5 == 0 else SyncMode.SYNC,
            status=RunStatus.FAILED if n % 7 == 0 else RunStatus.SUCCEEDED,
            queued_at=start + timedelta(minutes=n),
            graph_requests=123_456,
            **COUNTS,
        )
    run = SyncRun.objects.filter(mode=SyncMode.SYNC).first()
    email = "a.very.long.mailbox.name.that.goes.on.and.on@subsidiary.of.contoso.example.test"
    ActivityLog.objects.bulk_create(
        ActivityLog(
            run=run,
            user=run.user,
            contact_no=f"CT{n:06d}",
            email=email,
            graph_id="AAMkAGI2" + "x" * 140,
            direction=Direction.TO_M365,
            action="create",
            outcome=Outcome.CREATED,
            message=f"Created {email} in Outlook from contact CT{n:06d}; " + "overwritten: " * 20,
        )
        for n in range(60)
    )

    log_in(page, live_server.url, "boss")
    page.goto(f"{live_server.url}/admin/exchange_sync/syncrun/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(60)
    expect(rows.first.locator(".field-result")).to_have_text(
        "created=10000 updated=20006 linked=10006 deleted=10002 recreated=10003 imported=10004 "
        "skipped=10007 failed=10008"
    )
    assert page_width(page) <= WIDTH and list_fits(page)
    shot("sync runs list at 1400 px", full_page=False)

    page.locator("#result_list thead th.column-duration a").first.click()
    expect(page.locator("#result_list thead th.column-duration")).to_have_class(re.compile(r"\bsorted\b"))
    assert page_width(page) <= WIDTH and list_fits(page)

    page.goto(f"{live_server.url}/admin/exchange_sync/syncrun/{run.pk}/change/")
    log_rows = page.locator("#run-log tr.run-log-entry")
    expect(log_rows).to_have_count(50)
    expect(page.get_by_text("Created a.very.long.mailbox", exact=False)).to_have_count(50)  # each once
    assert page_width(page) <= WIDTH
    shot("run page at 1400 px")
