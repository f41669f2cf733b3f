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

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from ..models import (
    CodeunitId,
    ConnectionStatus,
    ContactSyncSetup,
    ExchangeSyncSetup,
    JobQueueEntry,
    JobQueueLogEntry,
    JobStatus,
    LogStatus,
    ObjectType,
    PassOutcome,
    PassUser,
    RunStatus,
    SyncMode,
    SyncRun,
    SyncTrigger,
    UserCard,
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
USER_TASK_FUNC = "exchange_sync.tasks.run_pass_user_task"
# A user whose background sync keeps failing skips 1, 2, 4, ... passes, never more than this many.
BACKOFF_MAX_SKIPS = 32
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
    """A run's hold on its entry: the claimed_at it wrote. A run that finds another value when it
    ends was taken over as stale, and leaves the outcome to the run that took it. A pass's user
    tasks renew the entry's claimed_at as they progress (_renew_entry)."""

    def __init__(self, *, entry_id: int, claimed_at: datetime) -> None:
        self.entry_id = entry_id
        self.claimed_at = claimed_at


class JobFailed(Exception):
    """The job ran but did not fully succeed; the message goes to the entry's Last Error."""


def sync_contacts_of_background_users(entry: JobQueueEntry, claim: Claim) -> JobQueueLogEntry:
    """Codeunit 6700: a pass. Records a Job Queue Log Entry and queues one task per active user whose
    background synchronization is enabled (run_pass_user), spread over every worker of the default
    cluster; the entry stays In Process until the last of them closes the pass. A delivery that took
    a stale entry over resumes its open pass: the users not finished yet are queued again, and a
    user already done stays done."""
    with transaction.atomic():
        log = entry.log_entries.filter(status=LogStatus.IN_PROCESS).order_by("-started_at", "-pk").first()
        if log is None:
            user_ids = list(
                get_user_model()
                .objects.filter(exchange_sync_setup__enabled=True, is_active=True)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            log = JobQueueLogEntry.objects.create(entry=entry, users_total=len(user_ids))
            PassUser.objects.bulk_create(PassUser(log_entry=log, user_id=user_id) for user_id in user_ids)
        else:
            user_ids = list(log.users.filter(finished_at__isnull=True).values_list("user_id", flat=True))
    # Queued once the pass's rows are committed (a run is never inside an outer transaction).
    _queue_pass_users(log_id=log.pk, user_ids=user_ids)
    if not user_ids:
        _close_pass(log_id=log.pk)
    return log


def _queue_pass_users(*, log_id: int, user_ids: list[int]) -> None:
    for user_id in user_ids:
        async_task(
            USER_TASK_FUNC,
            log_id,
            user_id,
            task_name=f"job-queue-pass-{log_id}-user-{user_id}",
            group=f"job-queue-pass-{log_id}",
        )


def setup_fingerprint(*, user: AbstractBaseUser) -> str:
    """What a background failure depends on: the Microsoft 365 email, the filter, the folder and the
    last validation. A change to any of them ends the user's back-off."""
    exchange, contact = contact_sync.setups_for(user=user)
    email = UserCard.objects.filter(user=user).values_list("microsoft_365_email", flat=True).first() or ""
    parts = [
        email,
        json.dumps(contact.contact_filter, sort_keys=True),
        contact.folder_name,
        contact.folder_id,
        exchange.connection_status,
        exchange.last_validated_at.isoformat() if exchange.last_validated_at else "",
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _clear_backoff(*, setup_id: int) -> None:
    ExchangeSyncSetup.objects.filter(pk=setup_id).exclude(background_failures=0).update(
        background_failures=0,
        background_skips_left=0,
        background_failed_at=None,
        background_failure_key="",
        background_failure="",
    )


def describe_backoff(*, setup: ExchangeSyncSetup) -> str:
    """The user's back-off as one line, or "" when background passes sync the user."""
    if not setup.background_failures:
        return ""
    waiting = (
        f"the next {setup.background_skips_left} pass(es) skip this user"
        if setup.background_skips_left
        else "the next pass tries again"
    )
    return (
        f"Backed off after {setup.background_failures} failed background sync(s): {waiting}, unless the "
        f"setup changes or someone presses Sync. Last failure: {setup.background_failure}"
    )


def _backoff_reason(*, user: AbstractBaseUser, fingerprint: str) -> str:
    """Why this pass skips the user ("" to sync). A changed setup, or a sync run by a person since
    the failure, ends the back-off."""
    setup = ExchangeSyncSetup.objects.get(user=user)
    if not setup.background_failures:
        return ""
    person_ran = (
        SyncRun.objects.filter(user=user, queued_at__gt=setup.background_failed_at)
        .exclude(trigger=SyncTrigger.JOB_QUEUE)
        .exists()
    )
    if person_ran or fingerprint != setup.background_failure_key:
        _clear_backoff(setup_id=setup.pk)
        return ""
    return describe_backoff(setup=setup) if setup.background_skips_left else ""


@dataclass(frozen=True)
class PassResult:
    outcome: str
    detail: str
    run_id: int | None = None
    backed_off: bool = False  # skipped by the user's back-off: one pass fewer left to skip


def _sync_pass_user(*, pass_user: PassUser, log: JobQueueLogEntry, fingerprint: str) -> PassResult | None:
    """Sync one user of a pass, or say why not. None: an earlier delivery's run of this pass still
    holds the user's sync, and that delivery records the outcome."""
    user = pass_user.user
    if pass_user.run_id is not None:
        earlier = SyncRun.objects.get(pk=pass_user.run_id)
        if earlier.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            return _result_of(earlier)
    # A person's run that succeeded since the pass started did this pass's work already.
    done = (
        SyncRun.objects.filter(user=user, status=RunStatus.SUCCEEDED, started_at__gte=log.started_at)
        .exclude(mode=SyncMode.PREVIEW)
        .order_by("-pk")
        .first()
    )
    if done is not None:
        return PassResult(
            PassOutcome.SYNCED, f"synced by sync run #{done.pk} since the pass started", done.pk
        )
    reason = _backoff_reason(user=user, fingerprint=fingerprint)
    if reason:
        return PassResult(PassOutcome.SKIPPED, reason, backed_off=True)
    try:
        run = contact_sync.request_contact_sync(
            user=user,
            mode=SyncMode.SYNC,
            trigger=SyncTrigger.JOB_QUEUE,
            job_queue_entry_id=log.entry_id,
            enqueue=False,
        )
    except contact_sync.SyncRefused as exc:  # already running, or must reconnect: the message says
        active = ContactSyncSetup.objects.filter(user=user).values_list("active_run_id", flat=True).first()
        if pass_user.run_id is not None and active == pass_user.run_id:
            return None
        logger.info("Job queue entry %s skipped %s: %s", log.entry_id, user, exc)
        return PassResult(PassOutcome.SKIPPED, str(exc))
    except contact_sync.SetupIncomplete as exc:
        run = SyncRun.objects.create(
            user=user,
            mode=SyncMode.SYNC,
            trigger=SyncTrigger.JOB_QUEUE,
            job_queue_entry_id=log.entry_id,
            status=RunStatus.FAILED,
            finished_at=timezone.now(),
            error=str(exc),
        )
        alerts.note_run_finished(run=run)
        return _result_of(run)
    PassUser.objects.filter(pk=pass_user.pk).update(run=run)
    run = contact_sync.run_contact_sync(run_id=run.pk)
    if run.status == RunStatus.RUNNING:  # handed on to its next slice: its last slice records it
        return None
    return _result_of(run)


def _result_of(run: SyncRun) -> PassResult:
    if run.status == RunStatus.SUCCEEDED:
        return PassResult(PassOutcome.SYNCED, f"sync run #{run.pk}", run.pk)
    return PassResult(PassOutcome.FAILED, f"sync run #{run.pk}: {run.error}", run.pk)


def run_pass_user(*, log_entry_id: int, user_id: int) -> str:
    """One user's part of a pass (the django-q2 task). Delivered at least once: the delivery that
    claims the user's row syncs, the first outcome recorded stands, and whoever records the last
    outcome closes the pass. Returns the outcome as a sentence."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.SYNC_CLAIM_STALE_SECONDS)
    if not (
        PassUser.objects.filter(log_entry_id=log_entry_id, user_id=user_id, finished_at__isnull=True)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale_before))
        .update(claimed_at=now)
    ):
        return "skipped: done or held by another delivery"
    pass_user = PassUser.objects.select_related("user", "log_entry").get(
        log_entry_id=log_entry_id, user_id=user_id
    )
    log = pass_user.log_entry
    _renew_entry(log=log)
    fingerprint = setup_fingerprint(user=pass_user.user)
    result = _sync_pass_user(pass_user=pass_user, log=log, fingerprint=fingerprint)
    if result is None:
        return "left to this pass's own run, still running"
    if not _finish_pass_user(pass_user=pass_user, result=result):
        return "skipped: another delivery recorded this user"
    return f"{result.outcome}: {result.detail}"


def _finish_pass_user(*, pass_user: PassUser, result: PassResult) -> bool:
    """Record the user's outcome unless one is recorded already, then close the pass if it was the
    last. False: another delivery (or the run's own last slice) recorded it first."""
    with transaction.atomic():
        if not PassUser.objects.filter(pk=pass_user.pk, finished_at__isnull=True).update(
            finished_at=timezone.now(), outcome=result.outcome, detail=result.detail, run_id=result.run_id
        ):
            return False
        # The run may have changed the setup (a folder it created): the back-off holds from here.
        _note_backoff(user=pass_user.user, result=result, fingerprint=setup_fingerprint(user=pass_user.user))
    _renew_entry(log=pass_user.log_entry)
    _close_pass(log_id=pass_user.log_entry_id)
    return True


def after_run(*, run: SyncRun, **_: object) -> None:
    """contact_sync.run_finished receiver: a pass's user run that went on in slices records its
    outcome on the pass when its last slice ends (the pass task that started it has returned)."""
    if run.job_queue_entry_id is None:
        return
    pass_user = (
        PassUser.objects.filter(run=run, finished_at__isnull=True).select_related("user", "log_entry").first()
    )
    if pass_user is not None and run.slice > 1:
        _finish_pass_user(pass_user=pass_user, result=_result_of(run))


def _note_backoff(*, user: AbstractBaseUser, result: PassResult, fingerprint: str) -> None:
    setup = ExchangeSyncSetup.objects.select_for_update().get(user=user)
    if result.outcome == PassOutcome.SYNCED:
        _clear_backoff(setup_id=setup.pk)
    elif result.outcome == PassOutcome.FAILED:
        failures = setup.background_failures + 1
        ExchangeSyncSetup.objects.filter(pk=setup.pk).update(
            background_failures=failures,
            background_skips_left=min(2 ** (failures - 1), BACKOFF_MAX_SKIPS),
            background_failed_at=timezone.now(),
            background_failure_key=fingerprint,
            background_failure=result.detail,
        )
    elif result.backed_off and setup.background_skips_left:
        ExchangeSyncSetup.objects.filter(pk=setup.pk).update(
            background_skips_left=setup.background_skips_left - 1
        )


def _renew_entry(*, log: JobQueueLogEntry) -> None:
    """A pass's progress keeps its entry's claim from going stale."""
    JobQueueEntry.objects.filter(pk=log.entry_id, status=JobStatus.IN_PROCESS).update(
        claimed_at=timezone.now()
    )


def _close_pass(*, log_id: int) -> None:
    """Close the pass once every user has an outcome. Several deliveries may see that at once: the
    conditional UPDATE lets exactly one of them close it and set its entry Ready again."""
    users = PassUser.objects.filter(log_entry_id=log_id)
    if users.filter(finished_at__isnull=True).exists():
        return
    counts = users.aggregate(
        synced=Count("pk", filter=Q(outcome=PassOutcome.SYNCED)),
        skipped=Count("pk", filter=Q(outcome=PassOutcome.SKIPPED)),
        failed=Count("pk", filter=Q(outcome=PassOutcome.FAILED)),
    )
    failures = [
        f"{user} ({detail})"
        for user, detail in users.filter(outcome=PassOutcome.FAILED)
        .order_by("user__username")
        .values_list("user__username", "detail")
    ]
    skips = [
        f"{user} ({detail})"
        for user, detail in users.filter(outcome=PassOutcome.SKIPPED)
        .order_by("user__username")
        .values_list("user__username", "detail")
    ]
    message = "; ".join(
        part
        for part in (
            f"Contact sync failed for {len(failures)} users: " + "; ".join(failures) if failures else "",
            f"Skipped {len(skips)} users: " + "; ".join(skips) if skips else "",
        )
        if part
    )
    now = timezone.now()
    with transaction.atomic():
        if not JobQueueLogEntry.objects.filter(pk=log_id, status=LogStatus.IN_PROCESS).update(
            status=LogStatus.SUCCESS_WITH_FAILURES if failures else LogStatus.SUCCESS,
            ended_at=now,
            users_synced=counts["synced"],
            users_skipped=counts["skipped"],
            users_failed=counts["failed"],
            error_message=message,
        ):
            return
        log = JobQueueLogEntry.objects.get(pk=log_id)
        entry = JobQueueEntry.objects.select_for_update().filter(pk=log.entry_id).first()
        newest = entry and entry.log_entries.order_by("-started_at", "-pk").values_list("pk", flat=True)[0]
        if entry is None or entry.status != JobStatus.IN_PROCESS or newest != log_id:
            return
        _finish_entry(entry=entry, due=entry.next_run_at, started_at=log.started_at, error="")


# What each Object ID to Run runs. A runner raises JobFailed with a readable message on failure.
# A runner that returns an open Job Queue Log Entry leaves its entry In Process: the pass closes it.
RUNNERS: dict[int, Callable[[JobQueueEntry, Claim], JobQueueLogEntry | None]] = {
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
        if runner(entry, claim) is not None:
            return JobQueueEntry.objects.filter(pk=entry_id).first()
    except JobFailed as exc:
        error = str(exc)
    except Exception as exc:
        logger.exception("Job queue entry %s failed", entry_id)
        error = contact_sync.UNEXPECTED_ERROR.format(name=type(exc).__name__)
    with transaction.atomic():
        entry = JobQueueEntry.objects.select_for_update().filter(pk=entry_id).first()
        if entry is None or entry.claimed_at != claim.claimed_at:
            return entry  # deleted meanwhile, or taken over as stale: that run records the outcome
        _finish_entry(entry=entry, due=due, started_at=now, error=error)
    return entry


def _finish_entry(*, entry: JobQueueEntry, due: datetime | None, started_at: datetime, error: str) -> None:
    """End a run: Ready (or Error) again, next run computed, Schedule in step. Call inside a
    transaction holding the entry's row."""
    entry.status = JobStatus.ERROR if error else JobStatus.READY
    entry.last_error = error
    entry.last_run_at = started_at
    entry.claimed_at = None
    entry.next_run_at = entry.next_run(anchor=due, now=timezone.now())
    entry.save(update_fields=["status", "last_error", "last_run_at", "claimed_at", "next_run_at"])
    _sync_schedule(entry)


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
