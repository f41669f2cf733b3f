"""Progress of a running sync: what each per-batch flush writes during real runs with known totals,
the run page's bar and time left, and the run's log on its page, paginated and filtered."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import timedelta
from itertools import pairwise

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from exchange_sync.models import ActivityLog, Direction, Outcome, RunPhase, RunStatus, SyncMode
from exchange_sync.services import contact_sync
from exchange_sync.services.health import run_progress
from tests.factories import PersonFactory, SyncRunFactory

pytestmark = pytest.mark.django_db


@contextmanager
def progress_writes():
    """(phase, done, total) of every UPDATE of a run that writes its progress, in order."""
    written: list[tuple[str, int, int]] = []

    def watch(execute, sql, params, many, context):
        if sql.startswith('UPDATE "exchange_sync_syncrun" SET') and '"phase_done"' in sql:
            columns = re.findall(r'"(\w+)" = %s', sql.split(" WHERE ")[0])
            values = dict(zip(columns, params, strict=False))
            written.append((values["phase"], values["phase_done"], values["phase_total"]))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        yield written


def full_sync(user):
    run = contact_sync.request_contact_sync(user=user, mode=SyncMode.FULL, enqueue=False)
    return contact_sync.run_contact_sync(run_id=run.pk)


def test_each_phase_reports_n_of_n_as_its_batches_land(sync_user, m365):
    PersonFactory.create_batch(45)
    with progress_writes() as written:
        run = full_sync(sync_user)
    assert (run.status, run.created) == (RunStatus.SUCCEEDED, 45)
    phases = [phase for phase, _, _ in written]
    assert list(dict.fromkeys(phases)) == [
        RunPhase.READING_OUTLOOK,
        RunPhase.PLANNING,
        RunPhase.WRITING_OUTLOOK,
        RunPhase.WRITING_BC,
    ]
    to_outlook = [(done, total) for phase, done, total in written if phase == RunPhase.WRITING_OUTLOOK]
    # Its start, then one write per $batch of 20 as it lands (up to 4 in flight: any order of sizes).
    assert to_outlook[0] == (0, 45) and to_outlook[-1] == (45, 45) and len(to_outlook) == 4
    assert all(done < later for (done, _), (later, _) in pairwise(to_outlook))
    assert all(total == 0 for phase, _, total in written if phase == RunPhase.WRITING_BC)

    mailbox = m365.emulator.outlook("ann@contoso.test")
    for item in mailbox.list_contacts("Business Central")[:5]:
        mailbox.update_contact(item["id"], {"jobTitle": "Changed in Outlook"})
    with progress_writes() as written:
        run = full_sync(sync_user)
    assert (run.status, run.bc_updated) == (RunStatus.SUCCEEDED, 5)
    reading = [(done, total) for phase, done, total in written if phase == RunPhase.READING_OUTLOOK]
    assert reading[0] == (0, 45) and reading[-1] == (45, 45)  # the folder holds the 45 it linked
    to_bc = [(done, total) for phase, done, total in written if phase == RunPhase.WRITING_BC]
    assert to_bc[0] == (0, 5) and to_bc[-1] == (5, 5)
    assert not [w for w in written if w[0] == RunPhase.WRITING_OUTLOOK and w[2]]  # nothing to send


def test_the_time_left_is_the_phases_pace_applied_to_what_remains():
    now = timezone.now()
    run = SyncRunFactory.build(
        status=RunStatus.RUNNING,
        phase=RunPhase.WRITING_OUTLOOK,
        phase_started_at=now - timedelta(seconds=60),
        phase_done=30,
        phase_total=120,
    )
    progress = run_progress(run=run, now=now)
    assert (progress.text, progress.percent, progress.seconds_left) == (
        "Writing to Outlook: 30 of 120",
        25,
        180,
    )
    assert progress.time_left == "about 3 min left"
    run.phase_done, run.phase_total = 0, 0
    run.phase = RunPhase.READING_OUTLOOK
    reading = run_progress(run=run, now=now)
    assert (reading.text, reading.percent, reading.time_left) == ("Reading Outlook…", None, "")
    run.status = RunStatus.SUCCEEDED
    assert run_progress(run=run, now=now) is None


def test_a_running_run_page_shows_the_phase_bar_and_time_left_and_refreshes(client, sync_user):
    run = SyncRunFactory(
        user=sync_user,
        status=RunStatus.RUNNING,
        finished_at=None,
        phase=RunPhase.WRITING_BC,
        phase_started_at=timezone.now() - timedelta(seconds=10),
        phase_done=400,
        phase_total=1000,
    )
    client.force_login(sync_user)
    page = client.get(reverse("admin:exchange_sync_syncrun_change", args=[run.pk])).content.decode()
    assert '<meta http-equiv="refresh" content="2">' in page
    assert "Writing to Business Central: 400 of 1,000" in page
    assert '<progress max="1000" value="400">40 %</progress>' in page
    assert re.search(r"about 1[45] s left", page)


def test_a_run_no_worker_took_says_so_on_its_page_and_keeps_refreshing(client, sync_user):
    run = SyncRunFactory(
        user=sync_user,
        status=RunStatus.QUEUED,
        queued_at=timezone.now() - timedelta(seconds=75),
        started_at=None,
        finished_at=None,
    )
    client.force_login(sync_user)

    page = client.get(reverse("admin:exchange_sync_syncrun_change", args=[run.pk])).content.decode()

    assert '<meta http-equiv="refresh" content="2">' in page
    assert "This run is queued… the page refreshes by itself." in page
    assert f"Run #{run.pk} has waited 75 s for a worker" in page
    assert "It starts as soon as one is; ask an administrator to start them." in page


def log_entries(run, count: int, **fields) -> None:
    ActivityLog.objects.bulk_create(
        ActivityLog(
            run=run,
            user_id=run.user_id,
            action="Create Outlook contact",
            outcome=fields.get("outcome", Outcome.CREATED),
            direction=fields.get("direction", Direction.TO_M365),
            message=f"{fields.get('label', 'Contact')} {i} was added to the Outlook folder.",
        )
        for i in range(count)
    )


def test_the_run_log_on_its_page_is_paginated_and_filtered(client, sync_user):
    run = SyncRunFactory(user=sync_user)
    log_entries(run, 120)
    log_entries(run, 3, outcome=Outcome.FAILED, label="Broken")
    log_entries(run, 2, outcome=Outcome.UPDATED, direction=Direction.TO_BC, label="Imported")
    url = reverse("admin:exchange_sync_syncrun_change", args=[run.pk])
    client.force_login(sync_user)

    with CaptureQueriesContext(connection) as first_page:
        page = client.get(url).content.decode()
    assert page.count('<tr class="run-log-entry') == 50
    assert "125 entries" in page and "Page 1 of 3" in page
    assert 'href="?log_p=2"' in page

    last = client.get(url, {"log_p": "3"}).content.decode()
    assert last.count('<tr class="run-log-entry') == 25

    failed = client.get(url, {"log_outcome": Outcome.FAILED}).content.decode()
    assert failed.count('<tr class="run-log-entry') == 3 and "Broken 0" in failed
    log_url = reverse("admin:exchange_sync_activitylog_changelist")
    assert f'href="{log_url}?run__id__exact={run.pk}&amp;outcome__exact=failed"' in failed

    searched = client.get(url, {"log_q": "Imported", "log_direction": Direction.TO_BC}).content.decode()
    assert searched.count('<tr class="run-log-entry') == 2
    assert f"run__id__exact={run.pk}&amp;direction__exact=to_bc&amp;q=Imported" in searched
    activity_log = client.get(f"{log_url}?run__id__exact={run.pk}&direction__exact=to_bc&q=Imported")
    assert activity_log.status_code == 200 and activity_log.content.decode().count("Imported ") == 2

    log_entries(run, 500)
    with CaptureQueriesContext(connection) as more:
        client.get(url)
    assert len(more) == len(first_page)  # a page of the log, whatever its length
