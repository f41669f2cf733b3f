"""Retention: old Activity Log entries and Sync Runs go, in batches; a user's last run, a running run
and an open incident's run stay, with their log; the daily Schedule exists after migrate."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Schedule

from exchange_sync import tasks
from exchange_sync.models import (
    ActivityLog,
    IncidentKind,
    JobQueueEntry,
    JobQueueLogEntry,
    LogStatus,
    Outcome,
    PassOutcome,
    PassUser,
    RunStatus,
    SyncIncident,
    SyncRun,
)
from exchange_sync.services import retention
from tests.factories import SyncRunFactory, UserFactory

pytestmark = pytest.mark.django_db


def run_aged(user, days: int, *, entries: int = 2, **fields) -> SyncRun:
    when = timezone.now() - timedelta(days=days)
    run = SyncRunFactory(user=user, queued_at=when, **fields)
    for n in range(entries):
        ActivityLog.objects.create(
            run=run,
            user=user,
            action="create",
            outcome=Outcome.CREATED,
            message=f"entry {n}",
            created_at=when,
        )
    return run


@pytest.fixture
def runs():
    ann, bob, cid, dan = (UserFactory(username=name) for name in ("ann", "bob", "cid", "dan"))
    return {
        "ann_old": [run_aged(ann, days) for days in (200, 150, 100)],
        "ann_new": run_aged(ann, 10),
        "bob_old": run_aged(bob, 300),
        "bob_last": run_aged(bob, 120),  # only old runs: the newest is kept
        "cid_running": run_aged(cid, 95, status=RunStatus.RUNNING, finished_at=None),
        "cid_old": run_aged(cid, 180),
        "dan_incident": run_aged(dan, 160, status=RunStatus.FAILED),
        "dan_last": run_aged(dan, 1),
    }


def test_old_runs_and_their_log_go_and_the_kept_ones_stay(runs, settings):
    settings.SYNC_LOG_RETENTION_DAYS = 90
    SyncIncident.objects.create(
        user=runs["dan_incident"].user,
        kind=IncidentKind.BACKGROUND_SYNC_FAILING,
        reason="failing",
        run=runs["dan_incident"],
    )
    gone = [*runs["ann_old"], runs["bob_old"], runs["cid_old"]]
    kept = [runs[name] for name in ("ann_new", "bob_last", "cid_running", "dan_incident", "dan_last")]

    assert retention.prune_sync_log(dry_run=True) == retention.PruneResult(log_entries=10, runs=5, passes=0)
    assert SyncRun.objects.count() == 10  # a dry run only counts

    assert retention.prune_sync_log() == retention.PruneResult(log_entries=10, runs=5, passes=0)
    assert set(SyncRun.objects.all()) == set(kept)
    assert not SyncRun.objects.filter(pk__in=[r.pk for r in gone]).exists()
    assert set(ActivityLog.objects.values_list("run_id", flat=True)) == {r.pk for r in kept}
    assert ActivityLog.objects.count() == 2 * len(kept)
    assert retention.prune_sync_log() == retention.PruneResult(log_entries=0, runs=0, passes=0)


def test_a_resolved_incident_no_longer_keeps_its_run(runs):
    SyncIncident.objects.create(
        user=runs["dan_incident"].user,
        kind=IncidentKind.CONNECTION_FAILED,
        reason="x",
        run=runs["dan_incident"],
        resolved_at=timezone.now(),
    )
    retention.prune_sync_log(retention_days=90)
    assert not SyncRun.objects.filter(pk=runs["dan_incident"].pk).exists()
    assert SyncIncident.objects.get().run is None


def test_small_batches_remove_everything_old_in_bounded_deletes(runs):
    with CaptureQueriesContext(connection) as queries:
        result = retention.prune_sync_log(retention_days=90, batch_size=2)
    # No incident keeps dan's failed run.
    assert result == retention.PruneResult(log_entries=12, runs=6, passes=0)
    old = SyncRun.objects.filter(queued_at__lt=timezone.now() - timedelta(days=90))
    assert set(old) == {runs["bob_last"], runs["cid_running"]}
    by_pk = [q["sql"] for q in queries if q["sql"].startswith("DELETE") and '"id" IN' in q["sql"]]
    assert [sql.split('"')[1] for sql in by_pk] == ["exchange_sync_activitylog"] * 6 + [
        "exchange_sync_syncrun"
    ] * 3
    assert all(sql.count(",") == 1 for sql in by_pk)  # two rows per DELETE


def test_the_task_uses_the_setting(runs, settings):
    settings.SYNC_LOG_RETENTION_DAYS = 5
    assert (
        tasks.prune_sync_log_task()
        == "removed 12 activity log entries, 6 sync runs and 0 job queue log entries"
    )
    # ann's run of 10 days ago is older than 5 days but her last one
    assert set(SyncRun.objects.filter(user__username="ann")) == {runs["ann_new"]}


def test_the_command_dry_run_prints_counts_and_removes_nothing(runs, capsys):
    call_command("prune_sync_log", "--dry-run", "--days", "90")
    assert (
        capsys.readouterr().out
        == "Would remove 12 activity log entries, 6 sync runs and 0 job queue log entries.\n"
    )
    assert SyncRun.objects.count() == 10
    call_command("prune_sync_log", "--days", "90")
    assert (
        capsys.readouterr().out
        == "Removed 12 activity log entries, 6 sync runs and 0 job queue log entries.\n"
    )
    assert SyncRun.objects.count() == 4


def test_the_daily_schedule_exists_after_migrate_once():
    schedule = Schedule.objects.get(name=retention.SCHEDULE_NAME)
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == (
        tasks.__name__ + ".prune_sync_log_task",
        Schedule.DAILY,
        -1,
    )
    call_command("migrate", verbosity=0)
    assert Schedule.objects.filter(name=retention.SCHEDULE_NAME).count() == 1


def test_old_passes_go_with_their_user_rows_and_each_entrys_newest_and_running_passes_stay(settings):
    settings.SYNC_LOG_RETENTION_DAYS = 90
    users = [UserFactory(username=name) for name in ("ann", "bob", "cid")]
    entries = [
        JobQueueEntry.objects.create(user=users[0], object_id_to_run=6700, description=name)
        for name in ("daily", "weekly")
    ]

    def pass_aged(entry, days: int, status=LogStatus.SUCCESS) -> JobQueueLogEntry:
        log = JobQueueLogEntry.objects.create(
            entry=entry, started_at=timezone.now() - timedelta(days=days), status=status
        )
        PassUser.objects.bulk_create(
            PassUser(log_entry=log, user=user, outcome=PassOutcome.SYNCED, finished_at=log.started_at)
            for user in users
        )
        return log

    gone = [pass_aged(entries[0], days) for days in (300, 200)]
    stuck = pass_aged(entries[0], 150, status=LogStatus.IN_PROCESS)  # still in process: kept
    recent = pass_aged(entries[0], 5)
    only_old = pass_aged(entries[1], 400)  # the weekly entry's newest pass: kept however old

    assert retention.prune_sync_log(dry_run=True).passes == 2
    assert retention.prune_sync_log(batch_size=2).passes == 2

    assert set(JobQueueLogEntry.objects.values_list("pk", flat=True)) == {stuck.pk, recent.pk, only_old.pk}
    assert not PassUser.objects.filter(log_entry_id__in=[log.pk for log in gone]).exists()
    assert PassUser.objects.count() == 3 * len(users)
