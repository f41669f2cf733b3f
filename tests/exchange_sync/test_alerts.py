"""Alert emails, captured in Django's test outbox: real scheduled runs (the Job Queue Entry for Codeunit
6700) failing against the emulator through the real client, and Validate Exchange Connection."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from exchange_sync.models import (
    ExchangeSyncSetup,
    IncidentKind,
    JobQueueEntry,
    JobStatus,
    RunStatus,
    SyncIncident,
    SyncMode,
    SyncRun,
    UserCard,
)
from exchange_sync.services import contact_sync, job_queue
from tests.factories import PersonFactory, UserCardFactory, UserFactory, enable_background_sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def admins(db):
    UserFactory(username="root", email="root@contoso.test", is_superuser=True)
    UserFactory(username="gone", email="gone@contoso.test", is_superuser=True, is_active=False)


@pytest.fixture
def carl(m365, admins):
    """Background sync on; his Microsoft 365 mailbox does not exist, so every run fails."""
    card = UserCardFactory(user=UserFactory(username="carl"), microsoft_365_email="carl@contoso.test")
    enable_background_sync(card.user)
    return card.user


@pytest.fixture
def entry(carl) -> JobQueueEntry:
    return job_queue.ensure_contact_sync_entry(user=carl)


@pytest.fixture
def scheduled_run(entry, django_capture_on_commit_callbacks, inline_tasks):
    """One pass of the entry's Schedule that reaches the user, due now, its user tasks run inline,
    with what the run commits sent. The passes a failing user's back-off skips go by in between."""

    def run() -> SyncRun:
        JobQueueEntry.objects.filter(pk=entry.pk).update(status=JobStatus.READY, next_run_at=timezone.now())
        ExchangeSyncSetup.objects.update(background_skips_left=0)
        with django_capture_on_commit_callbacks(execute=True):
            assert job_queue.run_job_queue_entry(entry_id=entry.pk) is not None
        return SyncRun.objects.latest("pk")

    return run


def test_three_scheduled_failures_send_one_email_to_the_user_and_the_administrators(carl, scheduled_run):
    assert scheduled_run().status == RunStatus.FAILED
    assert scheduled_run().status == RunStatus.FAILED
    assert mail.outbox == []

    third = scheduled_run()
    assert third.status == RunStatus.FAILED
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["carl@contoso.test", "root@contoso.test"]
    assert message.subject == "Contact sync of carl has failed 3 times in a row"
    assert "carl@contoso.test" in message.body and "Codeunit 6700" in message.body
    assert f"Why: {third.error}" in message.body
    assert "carl@contoso.test" in third.error  # the reason names the mailbox that is missing
    assert "press Validate Exchange Connection and Sync with Microsoft 365" in message.body
    setup = contact_sync.setups_for(user=carl)[1]
    assert f"http://127.0.0.1:8000/admin/exchange_sync/contactsyncsetup/{setup.pk}/change/" in message.body
    assert f"/admin/exchange_sync/syncrun/{third.pk}/change/" in message.body

    scheduled_run()
    scheduled_run()
    assert len(mail.outbox) == 1  # the same incident: no email per failing run
    incident = SyncIncident.objects.get()
    assert (incident.kind, incident.run_id, incident.resolved_at) == (
        IncidentKind.BACKGROUND_SYNC_FAILING,
        third.pk,
        None,
    )


def test_a_recovered_sync_sends_one_email_and_a_new_streak_a_new_one(carl, m365, scheduled_run):
    PersonFactory.create_batch(2)
    for _ in range(3):
        scheduled_run()
    assert len(mail.outbox) == 1

    m365.emulator.add_mailbox("carl@contoso.test")
    recovered = scheduled_run()
    assert recovered.status == RunStatus.SUCCEEDED and recovered.created == 2
    assert len(mail.outbox) == 2
    message = mail.outbox[1]
    assert message.subject == "Contact sync of carl works again"
    assert message.to == ["carl@contoso.test", "root@contoso.test"]
    assert f"Sync run #{recovered.pk} (Sync with Microsoft 365) succeeded" in message.body
    assert SyncIncident.objects.get().resolved_at is not None

    scheduled_run()
    assert len(mail.outbox) == 2  # nothing was wrong: nothing to say

    UserCard.objects.filter(user=carl).update(microsoft_365_email="carl.typo@contoso.test")  # no such mailbox
    for _ in range(2):
        scheduled_run()
    assert len(mail.outbox) == 2  # two in a row since the last success: not yet
    scheduled_run()
    assert len(mail.outbox) == 3
    assert mail.outbox[2].subject == "Contact sync of carl has failed 3 times in a row"
    assert SyncIncident.objects.filter(resolved_at__isnull=True).count() == 1


def test_a_manual_sync_that_works_resolves_it_and_manual_failures_do_not_alert(
    carl, m365, scheduled_run, django_capture_on_commit_callbacks
):
    def press_sync() -> SyncRun:
        run = contact_sync.request_contact_sync(user=carl, mode=SyncMode.SYNC, enqueue=False)
        with django_capture_on_commit_callbacks(execute=True):
            return contact_sync.run_contact_sync(run_id=run.pk)

    for _ in range(4):
        assert press_sync().status == RunStatus.FAILED
    assert mail.outbox == []  # a person pressing Sync sees the failure on the run page

    for _ in range(3):
        scheduled_run()
    assert len(mail.outbox) == 1

    m365.emulator.add_mailbox("carl@contoso.test")
    assert press_sync().status == RunStatus.SUCCEEDED
    assert [m.subject for m in mail.outbox] == [
        "Contact sync of carl has failed 3 times in a row",
        "Contact sync of carl works again",
    ]


def test_a_failed_connection_sends_one_email_and_one_when_it_works_again(
    m365, admins, django_capture_on_commit_callbacks
):
    dora = UserFactory(username="dora", email="")
    UserCardFactory(user=dora, microsoft_365_email="dora@contoso.test")

    def validate():
        with django_capture_on_commit_callbacks(execute=True):
            return contact_sync.validate_exchange_connection(user=dora)

    first = validate()
    assert not first.ok
    assert validate().ok is False
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == "Microsoft 365 connection of dora needs attention"
    assert message.to == ["dora@contoso.test", "root@contoso.test"]  # her account has no email of its own
    assert f"Why: {first.message}" in message.body
    assert "press Validate Exchange Connection" in message.body

    m365.emulator.add_mailbox("dora@contoso.test")
    check = validate()
    assert check.ok
    validate()
    assert [m.subject for m in mail.outbox] == [
        "Microsoft 365 connection of dora needs attention",
        "Microsoft 365 connection of dora works again",
    ]
    assert check.message in mail.outbox[1].body


def test_a_mail_server_that_refuses_does_not_fail_the_sync_and_is_not_retried_per_run(
    carl, scheduled_run, settings, caplog
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2  # nothing listens
    for _ in range(3):
        scheduled_run()
    assert "could not be sent to carl@contoso.test, root@contoso.test" in caplog.text
    assert SyncIncident.objects.filter(resolved_at__isnull=True).count() == 1
    assert JobQueueEntry.objects.get().status == JobStatus.READY  # the job's own outcome, unchanged

    caplog.clear()
    scheduled_run()
    assert "could not be sent" not in caplog.text


def test_the_open_incident_is_in_the_database_so_a_restarted_worker_does_not_resend(carl, scheduled_run):
    # A worker keeps nothing in memory: the fourth failure, in a fresh process or this one, finds the
    # open incident row. Opened long ago (a restart in between) changes nothing.
    for _ in range(3):
        scheduled_run()
    SyncIncident.objects.update(opened_at=timezone.now() - timedelta(days=2))
    scheduled_run()
    assert len(mail.outbox) == 1


@pytest.mark.parametrize(
    ("email_url", "expected"),
    [
        ("", "django.core.mail.backends.console.EmailBackend None None False"),
        (
            "smtp+tls://alerts:pw@smtp.example.com:587",
            "django.core.mail.backends.smtp.EmailBackend smtp.example.com 587 True",
        ),
    ],
)
def test_email_settings_come_from_email_url(email_url, expected, tmp_path):
    shown = "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, bool(getattr(s, 'EMAIL_USE_TLS', False)))"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import django; django.setup(); from django.conf import settings as s; {shown}",
        ],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bcsync_site.settings",
            "BCSYNC_VAR_DIR": str(tmp_path),
            "EMAIL_URL": email_url,
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == expected
