"""The setup, run, log and job queue pages as a salesperson and an administrator use them: what a
delete does, the Activity Log of one setup, times to the second, the History of every button, and
what a setup needs before background sync."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils import timezone

from contacts.models import Contact, ContactType
from exchange_sync.models import (
    ActivityLog,
    ConnectionStatus,
    ContactSyncSetup,
    ExchangeSyncSetup,
    JobQueueEntry,
    JobStatus,
    Outcome,
    RunStatus,
    SyncMode,
    SyncRun,
)
from exchange_sync.services import contact_sync, job_queue
from tests.factories import PersonFactory, SyncRunFactory, UserCardFactory, UserFactory
from tests.http_client import csrf_client, post

pytestmark = pytest.mark.django_db

FOLDER = "Business Central"


def sync(user, mode: str = SyncMode.SYNC) -> SyncRun:
    run = contact_sync.request_contact_sync(user=user, mode=mode, enqueue=False)
    run = contact_sync.run_contact_sync(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


def setup_url(setup: ContactSyncSetup, view: str = "change", *args) -> str:
    return reverse(f"admin:exchange_sync_contactsyncsetup_{view}", args=[setup.pk, *args])


def history(obj) -> list[str]:
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
    ).order_by("pk")
    return [entry.get_change_message() for entry in entries]


# --- deleting a Contact Sync Setup -----------------------------------------------------------------


def test_deleting_a_setup_says_what_happens_and_the_next_sync_duplicates_nothing(sync_user, m365, admin_user):
    people = PersonFactory.create_batch(3)
    assert sync(sync_user).created == 3
    # A change the deleted setup never synced: paired by email, it would be created a second time.
    people[0].email = "changed@example.com"
    people[0].save()
    setup = ContactSyncSetup.objects.get(user=sync_user)
    ContactSyncSetup.objects.filter(pk=setup.pk).update(contact_filter={"city": "London"})
    client = csrf_client(admin_user)

    page = " ".join(client.get(setup_url(setup, "delete")).content.decode().split())
    assert "the same 3 links" in page and "('Business Central' of ann@contoso.test)" in page
    assert "nothing is duplicated" in page and "Nothing is deleted in Outlook or in Business Central" in page
    assert post(client, setup_url(setup, "delete"), {"post": "yes"}).status_code == 302
    replacement = ContactSyncSetup.objects.get(user=sync_user)
    assert replacement.pk != setup.pk and replacement.contact_filter == {}
    assert replacement.links.count() == 3

    again = sync(sync_user)
    assert again.moved() == {"updated": 1}, [e.message for e in ActivityLog.objects.filter(run=again)]
    outlook = m365.emulator.outlook("ann@contoso.test").list_contacts(FOLDER)
    emails = sorted(item["emailAddresses"][0]["address"] for item in outlook)
    assert emails == sorted(person.email for person in Contact.objects.filter(type=ContactType.PERSON))
    assert len(emails) == 3 and "changed@example.com" in emails
    assert sync(sync_user).moved() == {}


def test_a_setup_is_not_deleted_while_its_sync_runs(sync_user, m365, admin_user):
    run = contact_sync.request_contact_sync(user=sync_user, mode=SyncMode.SYNC, enqueue=False)
    setup = ContactSyncSetup.objects.get(user=sync_user)
    response = post(csrf_client(admin_user), setup_url(setup, "delete"), {"post": "yes"}, follow=True)
    assert "A sync is running for ann; delete the Contact Sync Setup when it has ended." in (
        response.content.decode()
    )
    assert ContactSyncSetup.objects.get(pk=setup.pk).active_run_id == run.pk


# --- the Activity Log of one setup ------------------------------------------------------------------


def log_entry(user, message: str) -> ActivityLog:
    run = SyncRun.objects.create(user=user, mode=SyncMode.SYNC, status=RunStatus.SUCCEEDED)
    return ActivityLog.objects.create(
        run=run, user=user, action="create", outcome=Outcome.CREATED, message=message
    )


def test_the_activity_log_button_opens_that_setups_entries_and_admins_filter_by_user(admin_user):
    ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
    log_entry(ann, "ann's entry")
    log_entry(bob, "bob's entry")
    anns_setup = contact_sync.setups_for(user=ann)[1]
    client = csrf_client(admin_user)
    page = client.get(setup_url(anns_setup)).content.decode()
    log_url = f"{reverse('admin:exchange_sync_activitylog_changelist')}?user__id__exact={ann.pk}"
    assert f'href="{log_url}"' in page
    listed = client.get(log_url).content.decode()
    assert "ann&#x27;s entry" in listed and "bob&#x27;s entry" not in listed
    assert "By user" in listed
    assert "column-user" in listed


def test_the_runs_list_words_the_non_zero_counts_in_one_result_column(admin_user):
    ann = UserFactory(username="ann")
    SyncRunFactory(user=ann, mode=SyncMode.PREVIEW, created=2, updated=1, bc_updated=1, graph_requests=9)
    SyncRunFactory(user=ann, status=RunStatus.FAILED, queued_at=timezone.now() - timedelta(minutes=1))
    SyncRunFactory(user=ann, created=3, failed=1, queued_at=timezone.now() - timedelta(minutes=2))
    runs = csrf_client(admin_user).get(reverse("admin:exchange_sync_syncrun_changelist")).content.decode()
    results = re.findall(r'<td class="field-result">(.*?)</td>', runs)
    assert results == ["would create 2, would update 2", "failed, nothing changed", "created=3 failed=1"]
    assert "column-created" not in runs and "column-graph_requests" not in runs


# --- times to the second, duration, paused entries ------------------------------------------------


def test_runs_and_the_log_show_seconds_and_the_runs_list_shows_duration(admin_user):
    ann = UserFactory(username="ann")
    queued = datetime(2026, 12, 1, 18, 46, 5, tzinfo=UTC)
    SyncRun.objects.create(
        user=ann,
        mode=SyncMode.SYNC,
        status=RunStatus.SUCCEEDED,
        queued_at=queued,
        started_at=queued + timedelta(seconds=1),
        finished_at=queued + timedelta(seconds=4, milliseconds=500),
    )
    run = SyncRun.objects.get()
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=queued + timedelta(seconds=3))
    ActivityLog.objects.create(
        run=run, user=ann, action="create", outcome=Outcome.CREATED, message="m", created_at=queued
    )
    client = csrf_client(admin_user)
    runs = client.get(reverse("admin:exchange_sync_syncrun_changelist")).content.decode()
    assert "18:46:05" in runs
    assert "column-duration" in runs and "3.5 s" in runs
    run_page = client.get(reverse("admin:exchange_sync_syncrun_change", args=[run.pk])).content.decode()
    # started, heartbeat, finished
    assert "18:46:06" in run_page and "18:46:08" in run_page and "18:46:09" in run_page
    assert "18:46:05" in client.get(reverse("admin:exchange_sync_activitylog_changelist")).content.decode()


def test_a_paused_entry_says_so_instead_of_a_past_next_run(admin_user):
    past = datetime(2026, 12, 1, 19, 11, 0, tzinfo=UTC)
    entry = JobQueueEntry.objects.create(user=admin_user, status=JobStatus.ERROR, next_run_at=past)
    client = csrf_client(admin_user)
    listed = client.get(reverse("admin:exchange_sync_jobqueueentry_changelist")).content.decode()
    card = client.get(reverse("admin:exchange_sync_jobqueueentry_change", args=[entry.pk])).content.decode()
    for page in (listed, card):
        assert "Paused (Error)" in page and "19:11:00" not in page
    JobQueueEntry.objects.filter(pk=entry.pk).update(status=JobStatus.ON_HOLD)
    assert (
        "Paused (On Hold)"
        in client.get(reverse("admin:exchange_sync_jobqueueentry_changelist")).content.decode()
    )


# --- every state-changing button writes the object's History ---------------------------------------


def test_every_state_changing_button_writes_the_history(staff_user):
    UserCardFactory(user=staff_user)
    exchange, setup = contact_sync.setups_for(user=staff_user)
    ExchangeSyncSetup.objects.filter(pk=exchange.pk).update(connection_status=ConnectionStatus.CONNECTED)
    client = csrf_client(staff_user)
    post(client, setup_url(setup, "filter"), {"territory_code": "EU|NA"})
    post(client, setup_url(setup, "background_sync"), {"enabled": "1"})
    post(client, setup_url(setup, "run", "preview"))
    post(client, setup_url(setup, "delete_log"), {"post": "yes"})
    run = SyncRun.objects.get(user=staff_user)
    assert history(setup) == [
        "Set Sync Filter: Territory Code: EU|NA.",
        "Enable Background Synchronization.",
        f"Preview: sync run #{run.pk} queued.",
        "Delete Activity Log: 0 entries deleted.",
    ]
    entry = JobQueueEntry.objects.get()
    post(client, reverse("admin:exchange_sync_jobqueueentry_button", args=[entry.pk, "on-hold"]))
    assert history(entry) == ["Set On Hold."]
    assert (
        "Set Sync Filter: Territory Code: EU|NA." in client.get(setup_url(setup, "history")).content.decode()
    )


def test_validate_writes_the_history_of_both_setup_pages(sync_user, m365):
    exchange, setup = contact_sync.setups_for(user=sync_user)
    client = csrf_client(sync_user)
    post(client, reverse("admin:exchange_sync_exchangesyncsetup_validate", args=[exchange.pk]))
    post(client, setup_url(setup, "validate"))
    logged = history(exchange) + history(setup)
    assert len(logged) == 2, logged
    for message in logged:
        assert message.startswith("Validate Exchange Connection: Connected") and "ann@contoso.test" in message


# --- what a setup needs before background sync ------------------------------------------------------


def test_a_user_without_an_email_is_told_before_any_button(staff_user):
    setup = contact_sync.setups_for(user=staff_user)[1]
    page = csrf_client(staff_user).get(setup_url(setup)).content.decode()
    told = page.find("ann has no Microsoft 365 email")
    assert told != -1 and told < page.find('<ul class="object-tools">')


def test_background_sync_needs_a_validated_connection(staff_user):
    UserCardFactory(user=staff_user)
    setup = contact_sync.setups_for(user=staff_user)[1]
    client = csrf_client(staff_user)
    response = post(client, setup_url(setup, "background_sync"), {"enabled": "1"}, follow=True)
    assert "press Validate Exchange Connection first" in response.content.decode()
    assert not ExchangeSyncSetup.objects.get(user=staff_user).enabled
    with pytest.raises(job_queue.BackgroundSyncRefused):
        job_queue.set_background_sync(user=staff_user, enabled=True)
    assert not JobQueueEntry.objects.exists()
