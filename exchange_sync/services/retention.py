"""Removing old Activity Log entries, Sync Runs and Job Queue Log Entries (SYNC_LOG_RETENTION_DAYS),
a batch at a time.

Each batch is one bounded DELETE by primary key in its own transaction, so SQLite's single writer
is never held for long and a sync running meanwhile only waits a moment. Kept whatever their age: a
user's last run (what their setup and the Sync health page show), a queued or running run, the run
a setup marks active, and the run an open incident points to; the log entries of kept runs stay too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django_q.models import Schedule

from ..models import (
    ActivityLog,
    ContactSyncSetup,
    JobQueueLogEntry,
    LogStatus,
    PassUser,
    RunStatus,
    SyncIncident,
    SyncRun,
)

DEFAULT_BATCH_SIZE = 500
SCHEDULE_NAME = "prune-sync-log"
TASK_FUNC = "exchange_sync.tasks.prune_sync_log_task"


@dataclass(frozen=True)
class PruneResult:
    log_entries: int
    runs: int
    passes: int


def kept_run_ids() -> set[int]:
    """The runs never removed, whatever their age."""
    last_run = SyncRun.objects.filter(user_id=OuterRef("pk")).order_by("-queued_at", "-id").values("pk")[:1]
    last_runs = (
        get_user_model().objects.annotate(last_run=Subquery(last_run)).values_list("last_run", flat=True)
    )
    active = ContactSyncSetup.objects.values_list("active_run_id", flat=True)
    incidents = SyncIncident.objects.filter(resolved_at__isnull=True).values_list("run_id", flat=True)
    unfinished = SyncRun.objects.exclude(status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED])
    ids = {*last_runs, *active, *incidents, *unfinished.values_list("pk", flat=True)}
    ids.discard(None)
    return ids


def _delete_in_batches(queryset: QuerySet, *, batch_size: int) -> int:
    deleted = 0
    while ids := list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size]):
        queryset.model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
    return deleted


def prune_sync_log(
    *,
    retention_days: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneResult:
    """Delete Activity Log entries and finished Sync Runs older than the retention period (default
    SYNC_LOG_RETENTION_DAYS), log entries first so deleting a run cascades to nothing. A dry run
    only counts what would go."""
    days = settings.SYNC_LOG_RETENTION_DAYS if retention_days is None else retention_days
    cutoff = (now or timezone.now()) - timedelta(days=days)
    kept = kept_run_ids()
    runs = SyncRun.objects.filter(queued_at__lt=cutoff).exclude(pk__in=kept)
    # An old run's newer entries go with it; a kept run's entries stay, however old.
    entries = ActivityLog.objects.filter(Q(created_at__lt=cutoff) | Q(run__in=runs)).exclude(run_id__in=kept)
    newest_pass = (
        JobQueueLogEntry.objects.filter(entry_id=OuterRef("entry_id"))
        .order_by("-started_at", "-id")
        .values("pk")[:1]
    )
    passes = (
        JobQueueLogEntry.objects.filter(started_at__lt=cutoff)
        .exclude(status=LogStatus.IN_PROCESS)
        .exclude(pk=Subquery(newest_pass))
    )
    if dry_run:
        return PruneResult(log_entries=entries.count(), runs=runs.count(), passes=passes.count())
    log_entries = _delete_in_batches(entries, batch_size=batch_size)
    run_count = _delete_in_batches(runs, batch_size=batch_size)
    # A pass's per-user rows first, in batches, so deleting the pass cascades to nothing.
    _delete_in_batches(PassUser.objects.filter(log_entry__in=passes), batch_size=batch_size)
    return PruneResult(
        log_entries=log_entries, runs=run_count, passes=_delete_in_batches(passes, batch_size=batch_size)
    )


def ensure_prune_schedule(*, using: str = "default", **kwargs) -> None:
    """The daily django-q2 Schedule that runs prune_sync_log, created once (a post_migrate receiver:
    it runs after every migrate and test-database flush, and leaves an existing Schedule alone). A
    migrate of some apps only may come before django-q2's tables exist; the next full one creates it."""
    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return
    Schedule.objects.using(using).get_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": TASK_FUNC, "schedule_type": Schedule.DAILY, "repeats": -1},
    )
