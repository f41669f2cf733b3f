"""Business Central's Job Queue (table 472) on django-q2, and Enable Background Synchronization.

An entry names what it runs by Object ID (RUNNERS: 6700 is the contact sync of every user with
background synchronization enabled) and owns exactly one django-q2 Schedule, named
``job-queue-entry-<pk>`` and kept in step by the services here whenever the entry changes. The
entry is the source of truth: its ``next_run_at`` (on a weekday it runs) is written to the
Schedule's ``next_run``; an entry that may not run (On Hold, Error, or a one-off that has run)
keeps its Schedule paused with ``repeats=0`` rather than deleted, so there is always exactly one.

django-q2 delivers at least once (and the Schedule, a Run Now and a retry may all deliver the same
run), so a run first claims its entry with a conditional UPDATE: only a Ready entry that is due, or
an In Process entry whose claim went stale, is taken; every other delivery exits without work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from ..models import (
    CodeunitId,
    ConnectionStatus,
    ExchangeSyncSetup,
    JobQueueEntry,
    JobStatus,
    ObjectType,
    RunStatus,
    SyncMode,
    SyncRun,
    SyncTrigger,
)
from . import alerts, contact_sync, live_updates

logger = logging.getLogger(__name__)

DEFAULT_ENTRY_DESCRIPTION = (
    "Auto-created for retrieval of new data from Outlook and Bookings. Can be deleted if not used. "
    "Will be recreated when the feature is activated."
)
BACKGROUND_SYNC_NOTICE = (
    "Background contact synchronization can no longer be activated. If you activated it in the past "
    "and deactivate it, you won't be able to activate it again."
)
TASK_FUNC = "exchange_sync.tasks.run_job_queue_entry_task"
RUNTIME_FIELDS = ("status", "last_run_at", "next_run_at", "last_error", "claimed_at", "schedule")
# Schedule.minutes is a PositiveSmallIntegerField. Its value only shapes django-q2's own guess of
# the next run; the entry overwrites Schedule.next_run after every run.
SCHEDULE_MAX_MINUTES = 32767


class JobQueueRefused(Exception):
    """An action on an entry that its status does not allow; the message says why."""


class BackgroundSyncRefused(Exception):
    """Background synchronization cannot be switched on for this user; the message says why."""


class BackgroundSyncLocked(BackgroundSyncRefused):
    """BACKGROUND_SYNC_POLICY=legacy: background synchronization can be switched off, never on."""


class Claim:
    """A run's hold on its entry. `renew()` keeps it from going stale between units of work and
    answers False once another delivery has taken the entry over."""

    def __init__(self, *, entry_id: int, claimed_at: datetime) -> None:
        self.entry_id = entry_id
        self.claimed_at = claimed_at

    def renew(self) -> bool:
        now = timezone.now()
        if not JobQueueEntry.objects.filter(pk=self.entry_id, claimed_at=self.claimed_at).update(
            claimed_at=now
        ):
            return False
        self.claimed_at = now
        return True


class JobFailed(Exception):
    """The job ran but did not fully succeed; the message goes to the entry's Last Error."""


def sync_contacts_of_background_users(entry: JobQueueEntry, claim: Claim) -> None:
    """Codeunit 6700: a delta sync of every active user whose background synchronization is
    enabled, one after another in this worker. One user's failure does not stop the others; a user
    whose sync is already running (a button, another host) is skipped, since that run does the work."""
    users = get_user_model().objects.filter(exchange_sync_setup__enabled=True, is_active=True).order_by("pk")
    failed: list[str] = []
    for user in users:
        if not claim.renew():
            raise JobFailed("Stopped: another worker took this job queue entry over.")
        try:
            run = contact_sync.request_contact_sync(
                user=user,
                mode=SyncMode.SYNC,
                trigger=SyncTrigger.JOB_QUEUE,
                job_queue_entry_id=entry.pk,
                enqueue=False,
            )
        except contact_sync.SyncRefused as exc:
            logger.info("Job queue entry %s skipped %s: %s", entry.pk, user, exc)
            continue
        except contact_sync.SetupIncomplete as exc:
            run = SyncRun.objects.create(
                user=user,
                mode=SyncMode.SYNC,
                trigger=SyncTrigger.JOB_QUEUE,
                job_queue_entry=entry,
                status=RunStatus.FAILED,
                finished_at=timezone.now(),
                error=str(exc),
            )
            alerts.note_run_finished(run=run)
        else:
            run = contact_sync.run_contact_sync(run_id=run.pk)
        if run.status == RunStatus.FAILED:
            failed.append(f"{user} (sync run #{run.pk}: {run.error})")
    if failed:
        raise JobFailed(f"Contact sync failed for {len(failed)} of {len(users)} users: " + "; ".join(failed))


# What each Object ID to Run runs. A runner raises JobFailed with a readable message on failure.
RUNNERS: dict[int, Callable[[JobQueueEntry, Claim], None]] = {
    CodeunitId.CONTACT_SYNC: sync_contacts_of_background_users,
}


def _schedule_name(entry: JobQueueEntry) -> str:
    return f"job-queue-entry-{entry.pk}"


def _sync_schedule(entry: JobQueueEntry) -> Schedule:
    """Make the entry's one Schedule match it. Call inside a transaction holding the entry's row."""
    active = entry.status in (JobStatus.READY, JobStatus.IN_PROCESS) and entry.next_run_at is not None
    if entry.recurring:
        shape = {
            "schedule_type": Schedule.MINUTES,
            "minutes": min(entry.minutes_between_runs, SCHEDULE_MAX_MINUTES),
            "repeats": -1 if active else 0,
        }
    else:
        # A positive repeats keeps a ONCE schedule after it fires (django-q2 deletes it otherwise).
        shape = {"schedule_type": Schedule.ONCE, "minutes": None, "repeats": 1 if active else 0}
    name = _schedule_name(entry)
    schedules = list(Schedule.objects.filter(Q(name=name) | Q(pk=entry.schedule_id)).order_by("pk"))
    schedule = next((s for s in schedules if s.pk == entry.schedule_id), schedules[0] if schedules else None)
    Schedule.objects.filter(pk__in=[s.pk for s in schedules if s is not schedule]).delete()
    schedule = schedule or Schedule(name=name)
    schedule.name = name
    schedule.func = TASK_FUNC
    schedule.args = repr((entry.pk,))
    schedule.next_run = entry.next_run_at or timezone.now()
    for field, value in shape.items():
        setattr(schedule, field, value)
    schedule.save()
    if entry.schedule_id != schedule.pk:
        JobQueueEntry.objects.filter(pk=entry.pk).update(schedule=schedule)
        entry.schedule = schedule
    return schedule


def _locked(entry_id: int) -> JobQueueEntry:
    return JobQueueEntry.objects.select_for_update().get(pk=entry_id)


def save_job_queue_entry(*, entry: JobQueueEntry) -> JobQueueEntry:
    """Save an entry created or edited on its card, recompute its next run and keep its Schedule in step."""
    entry.full_clean(exclude=RUNTIME_FIELDS)
    with transaction.atomic():
        if entry.pk is not None:
            # What runs write (status, last run, ...) comes from the row, never from a stale form.
            current = _locked(entry.pk)
            for name in RUNTIME_FIELDS:
                attname = JobQueueEntry._meta.get_field(name).attname
                setattr(entry, attname, getattr(current, attname))
        if entry.status == JobStatus.READY:
            entry.next_run_at = entry.next_run(anchor=entry.last_run_at, now=timezone.now())
        entry.save()
        _sync_schedule(entry)
    return entry


def delete_job_queue_entry(*, entry: JobQueueEntry) -> None:
    """Delete an entry and its Schedule."""
    with transaction.atomic():
        Schedule.objects.filter(Q(name=_schedule_name(entry)) | Q(pk=entry.schedule_id)).delete()
        entry.delete()


def set_job_queue_entry_on_hold(*, entry: JobQueueEntry) -> JobQueueEntry:
    """Set On Hold: the Schedule is paused (repeats=0) until the entry is set to Ready again."""
    with transaction.atomic():
        entry = _locked(entry.pk)
        if entry.status == JobStatus.IN_PROCESS:
            raise JobQueueRefused(f"{entry.label} is running; set it on hold when the run has ended.")
        entry.status = JobStatus.ON_HOLD
        entry.save(update_fields=["status"])
        _sync_schedule(entry)
    return entry


def set_job_queue_entry_ready(*, entry: JobQueueEntry) -> JobQueueEntry:
    """Set Status to Ready: from On Hold or Error, the next run is computed afresh."""
    with transaction.atomic():
        entry = _locked(entry.pk)
        if entry.status == JobStatus.IN_PROCESS:
            raise JobQueueRefused(f"{entry.label} is running; its status is set when the run ends.")
        entry.status = JobStatus.READY
        entry.next_run_at = entry.next_run(anchor=entry.last_run_at, now=timezone.now())
        entry.save(update_fields=["status", "next_run_at"])
        _sync_schedule(entry)
    return entry


def run_job_queue_entry_now(*, entry: JobQueueEntry) -> None:
    """Run Now: make the entry due and queue its run once that is committed. An entry in Error is
    set to Ready (this is its retry); one On Hold or In Process is refused."""
    now = timezone.now()
    if not JobQueueEntry.objects.filter(pk=entry.pk, status__in=[JobStatus.READY, JobStatus.ERROR]).update(
        status=JobStatus.READY, next_run_at=now
    ):
        entry.refresh_from_db(fields=["status"])
        raise JobQueueRefused(
            f"{entry.label} is {entry.get_status_display()}; "
            + ("it is running already." if entry.status == JobStatus.IN_PROCESS else "set it to Ready first.")
        )
    transaction.on_commit(
        lambda: async_task(TASK_FUNC, entry.pk, task_name=f"job-queue-entry-{entry.pk}-run-now")
    )


def run_job_queue_entry(*, entry_id: int) -> JobQueueEntry | None:
    """One delivery of an entry's run (the django-q2 task). Returns the entry after the run, or None
    when this delivery did nothing: the entry is held by another run, not Ready, not due yet, or gone."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.SYNC_CLAIM_STALE_SECONDS)
    due = JobQueueEntry.objects.filter(pk=entry_id).values_list("next_run_at", flat=True).first()
    claimed = (
        JobQueueEntry.objects.filter(pk=entry_id, next_run_at=due, next_run_at__lte=now)
        .filter(Q(status=JobStatus.READY) | Q(status=JobStatus.IN_PROCESS, claimed_at__lt=stale_before))
        .update(status=JobStatus.IN_PROCESS, claimed_at=now)
    )
    if not claimed:
        return None
    entry = JobQueueEntry.objects.get(pk=entry_id)
    claim = Claim(entry_id=entry_id, claimed_at=now)
    runner = RUNNERS.get(entry.object_id_to_run)
    error = ""
    try:
        if runner is None:
            raise JobFailed(entry.unknown_object_message())
        runner(entry, claim)
    except JobFailed as exc:
        error = str(exc)
    except Exception as exc:
        logger.exception("Job queue entry %s failed", entry_id)
        error = contact_sync.UNEXPECTED_ERROR.format(name=type(exc).__name__)
    with transaction.atomic():
        entry = JobQueueEntry.objects.select_for_update().filter(pk=entry_id).first()
        if entry is None or entry.claimed_at != claim.claimed_at:
            return entry  # deleted meanwhile, or taken over as stale: that run records the outcome
        entry.status = JobStatus.ERROR if error else JobStatus.READY
        entry.last_error = error
        entry.last_run_at = now
        entry.claimed_at = None
        entry.next_run_at = entry.next_run(anchor=due, now=timezone.now())
        entry.save(update_fields=["status", "last_error", "last_run_at", "claimed_at", "next_run_at"])
        _sync_schedule(entry)
    return entry


def ensure_contact_sync_entry(*, user: AbstractBaseUser) -> JobQueueEntry:
    """Business Central's default job queue entry for Codeunit 6700 (recurring, every weekday, every
    1440 minutes, starting now), created for `user` unless a 6700 entry already exists."""
    existing = JobQueueEntry.objects.filter(
        object_type_to_run=ObjectType.CODEUNIT, object_id_to_run=CodeunitId.CONTACT_SYNC
    ).first()
    if existing is not None:
        return existing
    entry = JobQueueEntry(
        user=user,
        object_type_to_run=ObjectType.CODEUNIT,
        object_id_to_run=CodeunitId.CONTACT_SYNC,
        description=DEFAULT_ENTRY_DESCRIPTION,
        recurring=True,
        minutes_between_runs=1440,
        earliest_start_at=timezone.now(),
        status=JobStatus.READY,
        **dict.fromkeys(JobQueueEntry.WEEKDAY_FIELDS, True),
    )
    return save_job_queue_entry(entry=entry)


def background_sync_policy() -> str:
    policy = settings.BACKGROUND_SYNC_POLICY
    if policy not in ("allow", "legacy"):
        raise ImproperlyConfigured(f"BACKGROUND_SYNC_POLICY must be 'allow' or 'legacy', not {policy!r}.")
    return policy


def can_enable_background_sync(*, user: AbstractBaseUser) -> bool:
    """Whether the user may switch background synchronization on (or already has it on)."""
    if background_sync_policy() == "allow":
        return True
    return ExchangeSyncSetup.objects.filter(user=user, enabled=True).exists()


def set_background_sync(*, user: AbstractBaseUser, enabled: bool) -> ExchangeSyncSetup:
    """Enable Background Synchronization on or off for the user. Switching it on makes sure a
    Codeunit 6700 job queue entry exists. Under the legacy policy (Business Central v24+) it can be
    switched off but never on again: BackgroundSyncLocked carries Business Central's notice.
    Switching it on needs a validated connection, so the job does not fail on this user's setup."""
    setup, _ = contact_sync.setups_for(user=user)
    if enabled and not setup.enabled:
        if background_sync_policy() == "legacy":
            raise BackgroundSyncLocked(BACKGROUND_SYNC_NOTICE)
        if setup.connection_status != ConnectionStatus.CONNECTED:
            raise BackgroundSyncRefused(
                "Background synchronization needs a working connection: press Validate Exchange "
                "Connection first."
            )
    with transaction.atomic():
        ExchangeSyncSetup.objects.filter(pk=setup.pk).update(enabled=enabled)
        setup.enabled = enabled
        if enabled:
            ensure_contact_sync_entry(user=user)
        # Live updates follow: subscribed (or unsubscribed) by a worker once this is committed.
        transaction.on_commit(lambda: live_updates.subscribe_soon(user_id=user.pk))
    return setup


def start_background_sync_locally(*, user: AbstractBaseUser) -> None:
    """Background synchronization on for the local admin of `make run`, before the local emulator is
    up to validate: its first run creates the folder, after which live updates subscribe."""
    ExchangeSyncSetup.objects.update_or_create(user=user, defaults={"enabled": True})
    ensure_contact_sync_entry(user=user)
