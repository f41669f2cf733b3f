"""Contact sync for one user: the setups, Validate Exchange Connection, the sync folder, requesting and
running a sync, the sync filter and the Activity Log."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import models, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.dispatch import Signal
from django.utils import timezone
from django_q.tasks import async_task

from ..graph import GraphError, M365NotConfigured
from ..models import (
    ActivityLog,
    ConnectionStatus,
    ContactLink,
    ContactSyncSetup,
    ExchangeSyncSetup,
    Outcome,
    RunStatus,
    SyncMode,
    SyncRun,
    SyncTrigger,
    UnconfirmedChange,
    UserCard,
)
from ..sync.engine import SliceEnded, SyncEngine
from ..sync.filters import FilterError, describe_filter, validate_filter
from ..sync.planner import MassDeleteBlocked
from ..sync.reader import DELTA_PAGE_SIZE
from . import alerts, m365_connections, mailbox_budget, sync_folder
from .sync_folder import FolderStep

logger = logging.getLogger(__name__)

# Sent with `run` when a run has ended (released its claim), whatever its outcome.
run_finished = Signal()

UNEXPECTED_ERROR = "Unexpected error ({name}); the details are in the server log."


class SetupIncomplete(Exception):
    """Something the user must fill in before syncing."""


class SyncRefused(Exception):
    """A run was not started; the message says why."""


class NeedsReconnecting(SyncRefused):
    """Delegated mode: the user must connect (or reconnect) to Microsoft 365 before any run; a
    scheduled pass skips them with this reason."""


def check_connected(*, user: AbstractBaseUser) -> None:
    """Raise `NeedsReconnecting` unless the user's runs can sign in (always true in app mode)."""
    reason = m365_connections.reconnect_reason(user=user)
    if reason is not None:
        raise NeedsReconnecting(m365_connections.reconnect_message(reason=reason))


# The failures a run reports as they are: their message is for the user.
EXPECTED_FAILURES = (SetupIncomplete, SyncRefused, GraphError, FilterError, MassDeleteBlocked)


def setups_for(*, user: AbstractBaseUser) -> tuple[ExchangeSyncSetup, ContactSyncSetup]:
    """The user's Exchange Sync Setup and Contact Sync Setup, created on first use as Business
    Central creates its row when the page opens."""
    exchange, _ = ExchangeSyncSetup.objects.get_or_create(user=user)
    contact, _ = ContactSyncSetup.objects.get_or_create(user=user)
    return exchange, contact


def mailbox_of(*, user: AbstractBaseUser) -> str:
    email = UserCard.objects.filter(user=user).values_list("microsoft_365_email", flat=True).first()
    if not email:
        raise SetupIncomplete(
            f"{user} has no Microsoft 365 email. Enter it in the Microsoft 365 section of the User Card "
            "(an administrator's task)."
        )
    return email


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    message: str


def validate_exchange_connection(*, user: AbstractBaseUser) -> ConnectionCheck:
    """Business Central's Validate Exchange Connection, step by step: a Microsoft 365 email, a
    token, a mailbox that answers, and what the next Sync does with the folder. Writes nothing to
    Outlook.

    A process with no Microsoft 365 settings says nothing about the user's connection, so it reports
    the failure but leaves the setup's status and last validation as they were."""
    exchange, contact_setup = setups_for(user=user)
    step = "Microsoft 365 email"
    try:
        mailbox = mailbox_of(user=user)
        step = "sign-in to Microsoft 365"
        client = m365_connections.graph_client_for(user=user)
        client.token_provider.access_token()
        step = f"mailbox {mailbox}"
        client.check_mailbox(mailbox=mailbox)
        step = f"folder '{contact_setup.folder_name}'"
        folder = sync_folder.look_up_folder(client=client, setup=contact_setup, mailbox=mailbox)
        check = ConnectionCheck(
            ok=True,
            message=f"Connected successfully to Microsoft 365: mailbox {mailbox}, "
            f"{folder.describe(done=False)}.",
        )
    except (SetupIncomplete, GraphError) as exc:
        check = ConnectionCheck(ok=False, message=f"Cannot connect to Microsoft 365 ({step}): {exc}")
        if isinstance(exc, M365NotConfigured):
            return check
    ExchangeSyncSetup.objects.filter(pk=exchange.pk).update(
        connection_status=ConnectionStatus.CONNECTED if check.ok else ConnectionStatus.FAILED,
        last_validated_at=timezone.now(),
        last_validation_message=check.message,
    )
    alerts.note_connection_checked(user=user, ok=check.ok, message=check.message)
    return check


def next_folder_step(*, user: AbstractBaseUser) -> str:
    """What the next Sync does with the user's folder, as a sentence. Reads only."""
    _, setup = setups_for(user=user)
    try:
        mailbox = mailbox_of(user=user)
        client = m365_connections.graph_client_for(user=user)
        return sync_folder.look_up_folder(client=client, setup=setup, mailbox=mailbox).sentence(done=False)
    except (SetupIncomplete, GraphError) as exc:
        return f"Microsoft 365 could not be asked about folder '{setup.folder_name}' now ({exc})."


def request_contact_sync(
    *,
    user: AbstractBaseUser,
    mode: str,
    trigger: str = SyncTrigger.BUTTON,
    allow_mass_delete: bool = False,
    job_queue_entry_id: int | None = None,
    enqueue: bool = True,
) -> SyncRun:
    """Claim the user's sync and queue the run. One run per user at a time: a second request while
    one is queued or running is refused, not queued behind it."""
    _, setup = setups_for(user=user)
    mailbox_of(user=user)
    check_connected(user=user)
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.SYNC_CLAIM_STALE_SECONDS)
    with transaction.atomic():
        run = SyncRun.objects.create(
            user=user,
            mode=mode,
            trigger=trigger,
            allow_mass_delete=allow_mass_delete,
            job_queue_entry_id=job_queue_entry_id,
        )
        previous = (
            ContactSyncSetup.objects.filter(pk=setup.pk).values_list("active_run_id", flat=True).first()
        )
        if not ContactSyncSetup.objects.claim(setup=setup, run=run, now=now, stale_before=stale_before):
            active = SyncRun.objects.filter(pk=previous).first()
            raise SyncRefused(
                f"A {active.get_mode_display() if active else 'sync'} is already "
                f"{active.get_status_display().lower() if active else 'running'} for {user}; "
                "wait for it to finish, then try again."
            )
        if previous:
            SyncRun.objects.filter(pk=previous, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(
                status=RunStatus.FAILED,
                finished_at=now,
                error="Interrupted: the run stopped giving signs of life, so a new run took over.",
            )
        if enqueue:
            transaction.on_commit(lambda: _enqueue(run))
    return run


def request_coalesced_sync(*, user_id: int, trigger: str = SyncTrigger.LIVE) -> SyncRun | None:
    """A Sync asked for by a change (live updates), coalesced: however many changes ask, a user has
    at most one run queued or running plus one trailing run. Each request stamps sync_requested_at;
    only the request that sets sync_pending_at queues a run (taken over when it went stale with a
    worker that died), and a run finds at its end any request made after it started.
    Returns the run queued, if this request queued one."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.SYNC_CLAIM_STALE_SECONDS)
    setups = ContactSyncSetup.objects.filter(user_id=user_id)
    if not setups.update(sync_requested_at=now):
        ContactSyncSetup.objects.get_or_create(user_id=user_id, defaults={"sync_requested_at": now})
    free = Q(sync_pending_at__isnull=True) | Q(sync_pending_at__lt=stale_before)
    if not setups.filter(free).update(sync_pending_at=now):
        return None
    user = get_user_model().objects.get(pk=user_id)
    try:
        return request_contact_sync(user=user, mode=SyncMode.SYNC, trigger=trigger)
    except SyncRefused:
        return None  # the run holding the claim finds this request when it ends
    except SetupIncomplete:
        setups.update(sync_pending_at=None)
        return None


def _queue_trailing_run(run: SyncRun) -> None:
    """The end of a run: a change that asked for a Sync after the run started gets one more run. After
    a live run, changes still arriving (a burst of edits) are waited out first, briefly, so that one
    trailing run takes them all; the pending stamp keeps other requests from queueing meanwhile."""
    setups = ContactSyncSetup.objects.filter(user_id=run.user_id)
    if confirm_outlook_changes(user_id=run.user_id):
        setups.update(sync_requested_at=timezone.now())

    def requested_since_start() -> bool:
        requested = setups.values_list("sync_requested_at", flat=True).first()
        return bool(requested and run.started_at and requested > run.started_at)

    if run.trigger == SyncTrigger.LIVE and requested_since_start():
        _wait_until_quiet(setups)
    setups.update(sync_pending_at=None)
    if requested_since_start():
        request_coalesced_sync(user_id=run.user_id)


def run_is_writing(*, user_id: int) -> bool:
    """A run of the user is running and alive (its heartbeat not stale)."""
    stale_before = timezone.now() - timedelta(seconds=settings.SYNC_CLAIM_STALE_SECONDS)
    return SyncRun.objects.filter(
        user_id=user_id, status=RunStatus.RUNNING, heartbeat_at__gte=stale_before
    ).exists()


def confirm_outlook_changes(*, user_id: int) -> bool:
    """Settle the user's unconfirmed Outlook changes: those whose version is not the one a link now
    holds (not the echo of bcsync's own write) were real edits. All are forgotten; True if any was
    real."""
    rows = list(UnconfirmedChange.objects.filter(user_id=user_id))
    if not rows:
        return False
    ours = set(
        ContactLink.objects.filter(
            setup__user_id=user_id, graph_id__in=[r.graph_id for r in rows]
        ).values_list("graph_id", "change_key")
    )
    UnconfirmedChange.objects.filter(pk__in=[r.pk for r in rows]).delete()
    return any(not r.change_key or (r.graph_id, r.change_key) not in ours for r in rows)


def _wait_until_quiet(setups) -> None:
    settle = timedelta(seconds=settings.LIVE_SYNC_SETTLE_SECONDS)
    deadline = timezone.now() + timedelta(seconds=settings.LIVE_SYNC_SETTLE_MAX_SECONDS)
    while (now := timezone.now()) < deadline:
        requested = setups.values_list("sync_requested_at", flat=True).first()
        if requested is None or now - requested >= settle:
            return
        time.sleep(min((requested + settle - now).total_seconds(), (deadline - now).total_seconds()))


def _enqueue(run: SyncRun, *, slice_no: int = 1) -> None:
    async_task(
        "exchange_sync.tasks.run_contact_sync_task",
        run.pk,
        slice_no,
        task_name=f"contact-sync-{run.pk}" + (f"-slice-{slice_no}" if slice_no > 1 else ""),
        group=f"contact-sync-user-{run.user_id}",
        cluster=run.interactive_cluster,
    )


def _start_slice(*, run_id: int, slice_no: int) -> bool:
    """Take slice `slice_no` of the run: a queued run's first, the next of a run whose last slice
    queued it, or one whose worker died (its heartbeat went stale) when it is delivered again. A
    duplicate delivery of a slice that is alive, or of one that is over, gets False."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.SYNC_CLAIM_STALE_SECONDS)
    startable = models.Q(status=RunStatus.QUEUED) | models.Q(status=RunStatus.RUNNING) & (
        models.Q(slice_started_at__isnull=True) | models.Q(heartbeat_at__lt=stale_before)
    )
    return bool(
        SyncRun.objects.filter(startable, pk=run_id, slice=slice_no).update(
            status=RunStatus.RUNNING,
            started_at=Coalesce("started_at", models.Value(now, output_field=models.DateTimeField())),
            heartbeat_at=now,
            slice_started_at=now,
        )
    )


def run_contact_sync(*, run_id: int, slice_no: int = 1, queue_next: bool = True) -> SyncRun:
    """Execute a queued run, or its next slice. Delivered at least once: a slice already running or
    over is left alone. A Sync still writing when SYNC_SLICE_SECONDS are up stops between batches,
    keeps the claim and hands on to its next slice (queued as a task unless `queue_next` is False:
    see `run_contact_sync_to_end`); only the last slice moves the watermark and the delta link, so
    each slice reads the same changes again and the links skip what is already written."""
    if not _start_slice(run_id=run_id, slice_no=slice_no):
        return SyncRun.objects.get(pk=run_id)
    deadline = time.monotonic() + settings.SYNC_SLICE_SECONDS
    run = SyncRun.objects.select_related("user").get(pk=run_id)
    setup = ContactSyncSetup.objects.get(user=run.user)
    engine: SyncEngine | None = None
    continues = False
    try:
        if setup.active_run_id != run.pk:
            raise SyncRefused("Another run took over this user's sync before this one started.")
        validate_filter(filters=setup.contact_filter)
        mailbox = mailbox_of(user=run.user)
        check_connected(user=run.user)
        client = m365_connections.graph_client_for(
            user=run.user, budget=mailbox_budget.budget_from_settings()
        )
        if run.mode == SyncMode.PREVIEW:  # reads only: the folder is left as it is
            folder = sync_folder.look_up_folder(client=client, setup=setup, mailbox=mailbox)
            engine = SyncEngine(
                run=run, setup=setup, client=client, mailbox=mailbox, folder_id=folder.folder_to_read
            )
            if folder.step not in (FolderStep.READY, FolderStep.ADOPT):
                engine.log.add(
                    action="Sync folder", outcome=Outcome.PLANNED, message=folder.sentence(done=False)
                )
        else:
            if run.mode == SyncMode.SYNC and setup.delta_link and setup.has_folder_in(mailbox):
                # Outlook's changes are asked for while the folder is checked. The folder is nearly
                # always the same one, so the run waits for one round trip instead of two; when it is
                # not, its delta link is dropped and the page read ahead goes unused.
                client.read_ahead_delta(
                    mailbox=mailbox, delta_link=setup.delta_link, page_size=DELTA_PAGE_SIZE
                )
            folder_id = sync_folder.prepare_folder(client=client, setup=setup, mailbox=mailbox, run=run)
            engine = SyncEngine(
                run=run, setup=setup, client=client, mailbox=mailbox, folder_id=folder_id, deadline=deadline
            )
        the_plan = engine.execute()
        finished = timezone.now()
        with transaction.atomic():
            if run.mode != SyncMode.PREVIEW:
                ContactSyncSetup.objects.filter(pk=setup.pk, active_run=run).update(
                    watermark=run.started_at,
                    delta_link=engine.delta_link,
                    last_sync_at=finished,
                    settled_key=engine.settled_key(),
                )
            SyncRun.objects.filter(pk=run.pk).update(
                status=RunStatus.SUCCEEDED,
                finished_at=finished,
                summary=f"{len(the_plan.actions)} actions planned" if run.mode == SyncMode.PREVIEW else "",
                **engine.counts(),
            )
    except SliceEnded:
        assert engine is not None
        continues = _hand_on(run, slice_no=slice_no, counts=engine.counts(), queue_next=queue_next)
    except EXPECTED_FAILURES as exc:
        _fail(run, engine, str(exc))
    except Exception as exc:
        logger.exception("Contact sync run %s failed", run.pk)
        _fail(run, engine, UNEXPECTED_ERROR.format(name=type(exc).__name__))
    finally:
        if not continues:
            ContactSyncSetup.objects.release_claim(setup=setup, run=run)
    run.refresh_from_db()
    if continues:
        return run
    alerts.note_run_finished(run=run)
    _queue_trailing_run(run)
    run_finished.send(sender=SyncRun, run=run)
    return run


def run_contact_sync_to_end(*, run_id: int) -> SyncRun:
    """Run a queued run's slices here, one after another: for a caller that waits (a command)."""
    run = run_contact_sync(run_id=run_id, queue_next=False)
    while run.status == RunStatus.RUNNING and run.slice_started_at is None:
        run = run_contact_sync(run_id=run_id, slice_no=run.slice, queue_next=False)
    return run


def _hand_on(run: SyncRun, *, slice_no: int, counts: dict[str, int], queue_next: bool) -> bool:
    """Hand the run on to its next slice, still Running and still holding the user's claim. False when
    the run is no longer this slice's (another run took over the user's sync meanwhile)."""
    next_slice = slice_no + 1
    now = timezone.now()
    with transaction.atomic():
        handed_on = SyncRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING, slice=slice_no).update(
            slice=next_slice, slice_started_at=None, heartbeat_at=now, **counts
        )
        if handed_on:
            ContactSyncSetup.objects.filter(user_id=run.user_id, active_run=run).update(claimed_at=now)
            if queue_next:
                transaction.on_commit(lambda: _enqueue(run, slice_no=next_slice))
            logger.info("Contact sync run %s: slice %d ended, slice %d follows", run.pk, slice_no, next_slice)
    return bool(handed_on)


def _fail(run: SyncRun, engine: SyncEngine | None, message: str) -> None:
    counts = {}
    if engine is not None:
        engine.flush()
        counts = engine.counts()
    SyncRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED, finished_at=timezone.now(), error=message, **counts
    )


def set_sync_filter(*, user: AbstractBaseUser, filters: dict[str, str]) -> str:
    """Save the user's contact filter; returns it described for a message. Raises FilterError."""
    cleaned = validate_filter(filters=filters)
    _, setup = setups_for(user=user)
    ContactSyncSetup.objects.filter(pk=setup.pk).update(contact_filter=cleaned)
    return describe_filter(filters=cleaned)


def delete_contact_sync_setup(*, setup: ContactSyncSetup) -> ContactSyncSetup:
    """Delete a Contact Sync Setup; returns the setup that replaces it. Its settings go (sync filter,
    out-of-scope choice, sync state), but the replacement keeps the folder and the links: they are
    the only record of which Outlook contact is which Business Central contact, and pairing again by
    email would duplicate every contact whose email changed since the last Sync. The replacement's
    first Sync is a full comparison. Refused while a run holds the setup, which it would go on
    writing to."""
    stale_before = timezone.now() - timedelta(seconds=settings.SYNC_CLAIM_STALE_SECONDS)
    with transaction.atomic():
        locked = ContactSyncSetup.objects.select_for_update().select_related("user").get(pk=setup.pk)
        if locked.active_run_id is not None and locked.claimed_at and locked.claimed_at >= stale_before:
            raise SyncRefused(
                f"A sync is running for {locked.user}; delete the Contact Sync Setup when it has ended."
            )
        links = list(ContactLink.objects.filter(setup=locked))
        locked.delete()
        replacement = ContactSyncSetup.objects.create(
            user=locked.user,
            folder_name=locked.folder_name,
            folder_id=locked.folder_id,
            folder_mailbox=locked.folder_mailbox,
        )
        for link in links:
            link.pk, link.setup = None, replacement
        ContactLink.objects.bulk_create(links)
    return replacement


def delete_activity_log(*, user: AbstractBaseUser) -> int:
    deleted, _ = ActivityLog.objects.filter(user=user).delete()
    return deleted
