"""Alert emails: the user and the administrators hear once when a user's background sync has failed
three times in a row or their connection failed to validate, and once when it works again.

An incident is a SyncIncident row; at most one is open per user and kind (a database constraint), so
only the run that opens or resolves it sends the email, even with several workers or after a restart.
The email goes out once the row is committed; a mail server that refuses it is logged, and never
fails the sync.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from ..models import (
    ContactSyncSetup,
    IncidentKind,
    RunStatus,
    SyncIncident,
    SyncMode,
    SyncRun,
    SyncTrigger,
    UserCard,
)
from .health import failures_since_last_success

logger = logging.getLogger(__name__)

FAILURES_BEFORE_ALERT = 3


def note_run_finished(*, run: SyncRun) -> None:
    """After a run ended: a success resolves the user's background-sync incident; the third
    scheduled failure in a row opens one."""
    if run.mode == SyncMode.PREVIEW:
        return
    if run.status == RunStatus.SUCCEEDED:
        _resolve(
            user=run.user,
            kind=IncidentKind.BACKGROUND_SYNC_FAILING,
            how=f"Sync run #{run.pk} ({run.get_mode_display()}) succeeded at {_when(run.finished_at)}.",
        )
    elif run.status == RunStatus.FAILED and run.trigger == SyncTrigger.JOB_QUEUE:
        in_a_row = failures_since_last_success(user=run.user).filter(trigger=SyncTrigger.JOB_QUEUE).count()
        if in_a_row >= FAILURES_BEFORE_ALERT:
            _open(user=run.user, kind=IncidentKind.BACKGROUND_SYNC_FAILING, reason=run.error, run=run)


def note_connection_checked(*, user: AbstractBaseUser, ok: bool, message: str) -> None:
    """After Validate Exchange Connection: a failure opens the connection incident, a success
    resolves it."""
    if ok:
        _resolve(user=user, kind=IncidentKind.CONNECTION_FAILED, how=message)
    else:
        _open(user=user, kind=IncidentKind.CONNECTION_FAILED, reason=message, run=None)


def _open(*, user: AbstractBaseUser, kind: str, reason: str, run: SyncRun | None) -> None:
    if SyncIncident.objects.filter(user=user, kind=kind, resolved_at__isnull=True).exists():
        return
    try:
        with transaction.atomic():
            incident = SyncIncident.objects.create(user=user, kind=kind, reason=reason, run=run)
    except IntegrityError:
        return  # another process opened it a moment ago, and tells them
    transaction.on_commit(lambda: _send(opened_message(incident), user=user))


def _resolve(*, user: AbstractBaseUser, kind: str, how: str) -> None:
    incident = SyncIncident.objects.filter(user=user, kind=kind, resolved_at__isnull=True).first()
    if incident is None:
        return
    # Conditional, so of two processes resolving it only one sends the email.
    if SyncIncident.objects.filter(pk=incident.pk, resolved_at__isnull=True).update(
        resolved_at=timezone.now()
    ):
        transaction.on_commit(lambda: _send(resolved_message(incident, how=how), user=user))


@dataclass(frozen=True)
class Message:
    subject: str
    body: str


def opened_message(incident: SyncIncident) -> Message:
    user = incident.user
    setup_url = _setup_url(user)
    if incident.kind == IncidentKind.BACKGROUND_SYNC_FAILING:
        run_url = site_url(reverse("admin:exchange_sync_syncrun_change", args=[incident.run_id]))
        return Message(
            subject=f"Contact sync of {user} has failed {FAILURES_BEFORE_ALERT} times in a row",
            body=(
                f"The background Sync with Microsoft 365 of {user} ({_mailbox(user)}), run by the Job "
                f"Queue Entry for Codeunit 6700, has failed {FAILURES_BEFORE_ALERT} times in a row, "
                f"the last time at {_when(incident.run.finished_at)}. Contacts changed since the last "
                "successful sync are not reaching Outlook or Business Central.\n\n"
                f"Why: {incident.reason}\n\n"
                f"What to do: put right what the reason names (the Microsoft 365 email is on the User "
                f"Card), then press Validate Exchange Connection and Sync with Microsoft 365 on the "
                f"Contact Sync Setup:\n{setup_url}\n\nThe last failed run: {run_url}\n\n" + _once_note()
            ),
        )
    return Message(
        subject=f"Microsoft 365 connection of {user} needs attention",
        body=(
            f"Validate Exchange Connection failed for {user} ({_mailbox(user)}) at "
            f"{_when(incident.opened_at)}. Until it works, their contacts do not sync.\n\n"
            f"Why: {incident.reason}\n\n"
            "What to do: check the Microsoft 365 email on the User Card, then press Validate Exchange "
            f"Connection on the Contact Sync Setup:\n{setup_url}\n\n" + _once_note()
        ),
    )


def resolved_message(incident: SyncIncident, *, how: str) -> Message:
    user = incident.user
    what = (
        f"Contact sync of {user}"
        if incident.kind == IncidentKind.BACKGROUND_SYNC_FAILING
        else f"Microsoft 365 connection of {user}"
    )
    return Message(
        subject=f"{what} works again",
        body=(
            f"{what} works again. {how}\n\nIt needed attention from {_when(incident.opened_at)} "
            f"to {_when(incident.resolved_at or timezone.now())} because: {incident.reason}\n\n"
            f"Nothing more to do. The Contact Sync Setup: {_setup_url(user)}\n"
        ),
    )


def site_url(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


def recipients(user: AbstractBaseUser) -> list[str]:
    """The user (their account's email, else their Microsoft 365 email) and every active superuser
    with an email, each once."""
    own = user.email or _mailbox(user)
    admins = (
        get_user_model()
        .objects.filter(is_superuser=True, is_active=True)
        .exclude(email="")
        .order_by("pk")
        .values_list("email", flat=True)
    )
    return list(dict.fromkeys(address for address in [own, *admins] if address))


def _send(message: Message, *, user: AbstractBaseUser) -> None:
    to = recipients(user)
    if not to:
        logger.warning(
            "No one to send the alert %r to: no user or administrator has an email", message.subject
        )
        return
    try:
        send_mail(message.subject, message.body, None, to)
    except Exception:
        logger.exception("The alert %r could not be sent to %s", message.subject, ", ".join(to))


def _setup_url(user: AbstractBaseUser) -> str:
    setup_id = ContactSyncSetup.objects.filter(user=user).values_list("pk", flat=True).first()
    if setup_id is None:  # the setup page creates it on the first visit
        return site_url(reverse("admin:exchange_sync_contactsyncsetup_changelist"))
    return site_url(reverse("admin:exchange_sync_contactsyncsetup_change", args=[setup_id]))


def _mailbox(user: AbstractBaseUser) -> str:
    email = UserCard.objects.filter(user=user).values_list("microsoft_365_email", flat=True).first()
    return email or "no Microsoft 365 email"


def _when(moment) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S %Z}"


def _once_note() -> str:
    return "You get this message once for this problem; another follows when it works again.\n"
