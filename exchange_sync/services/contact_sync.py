"""Contact sync for one user: the setups, Validate Exchange Connection, the sync folder, requesting and
running a sync, the sync filter and the Activity Log."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from ..graph import GraphClient, GraphError, graph_client_from_settings
from ..models import (
    ActivityLog,
    ConnectionStatus,
    ContactLink,
    ContactSyncSetup,
    ExchangeSyncSetup,
    RunStatus,
    SyncMode,
    SyncRun,
    SyncTrigger,
    UserCard,
)
from ..sync.engine import SyncEngine
from ..sync.filters import FilterError, describe_filter, validate_filter
from ..sync.planner import MassDeleteBlocked
from . import alerts

logger = logging.getLogger(__name__)

UNEXPECTED_ERROR = "Unexpected error ({name}); the details are in the server log."


class SetupIncomplete(Exception):
    """Something the user must fill in before syncing."""


class SyncRefused(Exception):
    """A run was not started; the message says why."""


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
            f"{user} has no Microsoft 365 email. Enter it in the Microsoft 365 section of the User Card."
        )
    return email


def resolve_folder(*, client: GraphClient, setup: ContactSyncSetup, mailbox: str) -> str:
    """The id of the user's sync folder, found by name or created. A different folder than last time
    (renamed setting, another mailbox, folder deleted in Outlook) starts the links afresh; email
    matching then pairs the contacts again without duplicates."""
    if setup.folder_id and setup.folder_mailbox == mailbox:
        folder = client.get_contact_folder(mailbox=mailbox, folder_id=setup.folder_id)
        if folder is not None and folder.get("displayName") == setup.folder_name:
            return setup.folder_id
    folder = client.find_contact_folder(mailbox=mailbox, display_name=setup.folder_name)
    if folder is None:
        folder = client.create_contact_folder(mailbox=mailbox, display_name=setup.folder_name)
    if folder["id"] != setup.folder_id or setup.folder_mailbox != mailbox:
        with transaction.atomic():
            ContactLink.objects.filter(setup=setup).delete()
            ContactSyncSetup.objects.filter(pk=setup.pk).update(
                folder_id=folder["id"], folder_mailbox=mailbox, delta_link="", watermark=None
            )
        setup.folder_id, setup.folder_mailbox, setup.delta_link, setup.watermark = (
            folder["id"],
            mailbox,
            "",
            None,
        )
    return setup.folder_id


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    message: str


def validate_exchange_connection(*, user: AbstractBaseUser) -> ConnectionCheck:
    """Business Central's Validate Exchange Connection, step by step: a Microsoft 365 email, a
    token, a mailbox that answers, and the sync folder (found or created)."""
    exchange, contact_setup = setups_for(user=user)
    step = "Microsoft 365 email"
    try:
        mailbox = mailbox_of(user=user)
        step = "sign-in to Microsoft 365"
        client = graph_client_from_settings()
        client.token_provider.access_token()
        step = f"mailbox {mailbox}"
        client.check_mailbox(mailbox=mailbox)
        step = f"folder '{contact_setup.folder_name}'"
        resolve_folder(client=client, setup=contact_setup, mailbox=mailbox)
        check = ConnectionCheck(
            ok=True,
            message=f"Connected successfully to Microsoft 365: mailbox {mailbox}, "
            f"folder '{contact_setup.folder_name}' is ready.",
        )
    except (SetupIncomplete, GraphError) as exc:
        check = ConnectionCheck(ok=False, message=f"Cannot connect to Microsoft 365 ({step}): {exc}")
    ExchangeSyncSetup.objects.filter(pk=exchange.pk).update(
        connection_status=ConnectionStatus.CONNECTED if check.ok else ConnectionStatus.FAILED,
        last_validated_at=timezone.now(),
        last_validation_message=check.message,
    )
    alerts.note_connection_checked(user=user, ok=check.ok, message=check.message)
    return check


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
        claimed = (
            ContactSyncSetup.objects.filter(pk=setup.pk)
            .filter(Q(active_run__isnull=True) | Q(claimed_at__lt=stale_before))
            .update(active_run=run, claimed_at=now)
        )
        if not claimed:
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


def _enqueue(run: SyncRun) -> None:
    async_task(
        "exchange_sync.tasks.run_contact_sync_task",
        run.pk,
        task_name=f"contact-sync-{run.pk}",
        group=f"contact-sync-user-{run.user_id}",
    )


def run_contact_sync(*, run_id: int) -> SyncRun:
    """Execute a queued run. Delivered at least once: a run that is no longer queued is left alone."""
    now = timezone.now()
    if not SyncRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now
    ):
        return SyncRun.objects.get(pk=run_id)
    run = SyncRun.objects.select_related("user").get(pk=run_id)
    setup = ContactSyncSetup.objects.get(user=run.user)
    engine: SyncEngine | None = None
    try:
        if setup.active_run_id != run.pk:
            raise SyncRefused("Another run took over this user's sync before this one started.")
        validate_filter(filters=setup.contact_filter)
        mailbox = mailbox_of(user=run.user)
        client = graph_client_from_settings()
        resolve_folder(client=client, setup=setup, mailbox=mailbox)
        engine = SyncEngine(run=run, setup=setup, client=client, mailbox=mailbox)
        the_plan = engine.execute()
        finished = timezone.now()
        with transaction.atomic():
            if run.mode != SyncMode.PREVIEW:
                ContactSyncSetup.objects.filter(pk=setup.pk, active_run=run).update(
                    watermark=run.started_at, delta_link=engine.delta_link, last_sync_at=finished
                )
            SyncRun.objects.filter(pk=run.pk).update(
                status=RunStatus.SUCCEEDED,
                finished_at=finished,
                summary=f"{len(the_plan.actions)} actions planned" if run.mode == SyncMode.PREVIEW else "",
                **engine.counts(),
            )
    except EXPECTED_FAILURES as exc:
        _fail(run, engine, str(exc))
    except Exception as exc:
        logger.exception("Contact sync run %s failed", run.pk)
        _fail(run, engine, UNEXPECTED_ERROR.format(name=type(exc).__name__))
    finally:
        ContactSyncSetup.objects.filter(pk=setup.pk, active_run=run).update(active_run=None, claimed_at=None)
    run.refresh_from_db()
    alerts.note_run_finished(run=run)
    return run


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


def delete_activity_log(*, user: AbstractBaseUser) -> int:
    deleted, _ = ActivityLog.objects.filter(user=user).delete()
    return deleted
