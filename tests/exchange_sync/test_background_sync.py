"""Enable Background Synchronization (the two policies) and the Job Queue Entry admin pages, driven
over the admin with CSRF enforced."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django_q.conf import Conf

from exchange_sync.models import ConnectionStatus, ExchangeSyncSetup, JobQueueEntry, JobStatus, SyncRun
from exchange_sync.services import job_queue
from exchange_sync.services.contact_sync import setups_for
from tests.factories import PersonFactory, UserCardFactory, job_queue_schedules
from tests.http_client import csrf_client, post

NOTICE = (
    "Background contact synchronization can no longer be activated. If you activated it in the past "
    "and deactivate it, you won't be able to activate it again."
)
NOTICE_HTML = escape(NOTICE)


def enabled(user) -> bool:
    return ExchangeSyncSetup.objects.get(user=user).enabled


def setup_page(user) -> str:
    return reverse("admin:exchange_sync_contactsyncsetup_change", args=[setups_for(user=user)[1].pk])


def toggle_url(user) -> str:
    return reverse("admin:exchange_sync_contactsyncsetup_background_sync", args=[setups_for(user=user)[1].pk])


@pytest.fixture(autouse=True)
def _connections_validated(staff_user, other_staff_user):
    """Switching background sync on needs a validated connection (refused otherwise: see
    tests/exchange_sync/test_setup_pages.py)."""
    for user in (staff_user, other_staff_user):
        ExchangeSyncSetup.objects.update_or_create(
            user=user, defaults={"connection_status": ConnectionStatus.CONNECTED}
        )


# --- the toggle and its policies -------------------------------------------------------------------


@pytest.mark.django_db
def test_allow_policy_switches_on_off_on_and_creates_the_6700_entry_once(staff_user, other_staff_user):
    job_queue.set_background_sync(user=staff_user, enabled=True)
    assert enabled(staff_user)
    entry = JobQueueEntry.objects.get()
    assert (entry.object_type_to_run, entry.object_id_to_run, entry.user) == ("codeunit", 6700, staff_user)
    assert entry.description == job_queue.DEFAULT_ENTRY_DESCRIPTION
    assert (entry.recurring, entry.minutes_between_runs, entry.status) == (True, 1440, JobStatus.READY)
    assert all(getattr(entry, field) for field in JobQueueEntry.WEEKDAY_FIELDS)
    assert job_queue_schedules().get().pk == entry.schedule_id

    job_queue.set_background_sync(user=staff_user, enabled=False)
    assert not enabled(staff_user)
    job_queue.set_background_sync(user=staff_user, enabled=True)
    job_queue.set_background_sync(user=other_staff_user, enabled=True)
    assert enabled(staff_user) and enabled(other_staff_user)
    assert JobQueueEntry.objects.count() == 1 and job_queue_schedules().count() == 1


@pytest.mark.django_db
def test_enabling_again_recreates_a_deleted_entry(staff_user):
    job_queue.set_background_sync(user=staff_user, enabled=True)
    job_queue.delete_job_queue_entry(entry=JobQueueEntry.objects.get())
    job_queue.set_background_sync(user=staff_user, enabled=True)
    assert JobQueueEntry.objects.count() == 1 and job_queue_schedules().count() == 1


@pytest.mark.django_db
def test_legacy_policy_switches_off_but_never_on(staff_user, settings):
    job_queue.set_background_sync(user=staff_user, enabled=True)  # activated in the past
    settings.BACKGROUND_SYNC_POLICY = "legacy"
    job_queue.set_background_sync(user=staff_user, enabled=True)  # staying on is fine
    job_queue.set_background_sync(user=staff_user, enabled=False)
    with pytest.raises(job_queue.BackgroundSyncLocked, match="can no longer be activated"):
        job_queue.set_background_sync(user=staff_user, enabled=True)
    assert not enabled(staff_user)


@pytest.mark.django_db
def test_an_unknown_policy_is_a_configuration_error(staff_user, settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.BACKGROUND_SYNC_POLICY = "sometimes"
    with pytest.raises(ImproperlyConfigured):
        job_queue.set_background_sync(user=staff_user, enabled=True)


@pytest.mark.django_db
def test_the_setup_page_button_switches_on_and_off_with_csrf(staff_user):
    client = csrf_client(staff_user)
    page = client.get(setup_page(staff_user)).content.decode()
    assert "Enable Background Synchronization</button>" in page and NOTICE_HTML not in page
    assert client.post(toggle_url(staff_user), {"enabled": "1"}).status_code == 403  # no CSRF token

    response = post(client, toggle_url(staff_user), {"enabled": "1"}, follow=True)
    assert enabled(staff_user)
    assert "Background synchronization is on" in response.content.decode()
    assert "Disable Background Synchronization</button>" in response.content.decode()
    post(client, toggle_url(staff_user), {"enabled": "0"})
    assert not enabled(staff_user)
    assert client.get(toggle_url(staff_user)).status_code == 403  # a button, never a link


@pytest.mark.django_db
def test_legacy_page_shows_the_notice_and_offers_only_disable(staff_user, settings):
    job_queue.set_background_sync(user=staff_user, enabled=True)
    settings.BACKGROUND_SYNC_POLICY = "legacy"
    client = csrf_client(staff_user)
    page = client.get(setup_page(staff_user)).content.decode()
    assert NOTICE_HTML in page and "Disable Background Synchronization</button>" in page

    response = post(client, toggle_url(staff_user), {"enabled": "0"}, follow=True)
    page = response.content.decode()
    assert NOTICE_HTML in page and "Background Synchronization</button>" not in page
    response = post(client, toggle_url(staff_user), {"enabled": "1"}, follow=True)
    assert not enabled(staff_user)
    assert response.content.decode().count("can no longer be activated") == 2  # the error and the notice


@pytest.mark.django_db
def test_a_user_cannot_switch_another_users_background_sync(staff_user, other_staff_user):
    setups_for(user=other_staff_user)
    client = csrf_client(staff_user)
    assert post(client, toggle_url(other_staff_user), {"enabled": "1"}).status_code == 403
    assert not ExchangeSyncSetup.objects.get(user=other_staff_user).enabled


# --- the Job Queue Entry pages ---------------------------------------------------------------------


@pytest.fixture
def entry(staff_user) -> JobQueueEntry:
    job_queue.set_background_sync(user=staff_user, enabled=True)
    return JobQueueEntry.objects.get()


def button_url(entry: JobQueueEntry, button: str) -> str:
    return reverse("admin:exchange_sync_jobqueueentry_button", args=[entry.pk, button])


@pytest.mark.django_db
def test_set_on_hold_and_set_ready_buttons(entry, staff_user):
    client = csrf_client(staff_user)
    page = client.get(reverse("admin:exchange_sync_jobqueueentry_change", args=[entry.pk])).content.decode()
    for label in ("Run Now", "Set On Hold", "Set Status to Ready"):
        assert f">{label}</button>" in page
    assert client.get(button_url(entry, "on-hold")).status_code == 403

    response = post(client, button_url(entry, "on-hold"), follow=True)
    assert "is on hold" in response.content.decode()
    entry.refresh_from_db()
    assert entry.status == JobStatus.ON_HOLD and job_queue_schedules().get().repeats == 0

    response = post(client, button_url(entry, "run-now"), follow=True)
    assert "set it to Ready first" in response.content.decode()
    post(client, button_url(entry, "ready"))
    entry.refresh_from_db()
    assert entry.status == JobStatus.READY and job_queue_schedules().get().repeats == -1


@pytest.mark.django_db
def test_run_now_button_runs_the_entry_and_the_list_links_its_sync_runs(
    entry, staff_user, m365, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", True)
    card = UserCardFactory(user=staff_user)
    m365.emulator.add_mailbox(card.microsoft_365_email)
    PersonFactory.create_batch(2)
    JobQueueEntry.objects.filter(pk=entry.pk).update(next_run_at=timezone.now() + timedelta(hours=5))
    client = csrf_client(staff_user)

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, button_url(entry, "run-now"), follow=True)
    assert "is queued to run now" in response.content.decode()
    entry.refresh_from_db()
    assert entry.status == JobStatus.READY and entry.last_run_at is not None
    run = SyncRun.objects.get()
    assert run.job_queue_entry_id == entry.pk and run.created == 2

    listing = client.get(reverse("admin:exchange_sync_jobqueueentry_changelist")).content.decode()
    assert "Ready" in listing and "of the last run" in listing and "all runs" in listing
    runs_url = reverse("admin:exchange_sync_syncrun_changelist")
    for query in (
        {"job_queue_entry__id__exact": entry.pk},
        {"job_queue_entry__id__exact": entry.pk, "queued_at__gte": entry.last_run_at.isoformat()},
    ):
        response = client.get(runs_url, query)
        assert response.status_code == 200 and response.context["cl"].result_count == 1


@pytest.mark.django_db
def test_list_actions_post_with_csrf(entry, staff_user):
    client = csrf_client(staff_user)
    changelist = reverse("admin:exchange_sync_jobqueueentry_changelist")
    post(client, changelist, {"action": "set_on_hold_selected", "_selected_action": [entry.pk]})
    assert JobQueueEntry.objects.get().status == JobStatus.ON_HOLD
    post(client, changelist, {"action": "set_ready_selected", "_selected_action": [entry.pk]})
    assert JobQueueEntry.objects.get().status == JobStatus.READY
    response = post(
        client, changelist, {"action": "run_now_selected", "_selected_action": [entry.pk]}, follow=True
    )
    assert "is queued to run now" in response.content.decode()


@pytest.mark.django_db
def test_a_salesperson_sees_only_their_own_entries(entry, staff_user, other_staff_user):
    theirs = job_queue.save_job_queue_entry(entry=JobQueueEntry(user=other_staff_user, description="Bob's"))
    client = csrf_client(staff_user)
    listing = client.get(reverse("admin:exchange_sync_jobqueueentry_changelist"))
    assert list(listing.context["cl"].result_list) == [entry]
    response = client.get(reverse("admin:exchange_sync_jobqueueentry_change", args=[theirs.pk]))
    assert response.status_code == 302  # "doesn't exist"
    assert post(client, button_url(theirs, "on-hold")).status_code == 403
    changelist = reverse("admin:exchange_sync_jobqueueentry_changelist")
    post(client, changelist, {"action": "set_on_hold_selected", "_selected_action": [theirs.pk]})
    assert JobQueueEntry.objects.get(pk=theirs.pk).status == JobStatus.READY


@pytest.mark.django_db
def test_the_card_refuses_an_unknown_object_id_and_saves_through_the_service(admin_client, admin_user):
    add = reverse("admin:exchange_sync_jobqueueentry_add")
    form = {
        "user": admin_user.pk,
        "object_type_to_run": "codeunit",
        "object_id_to_run": "1234",
        "description": "Mine",
        "recurring": "on",
        "minutes_between_runs": "1",
        "earliest_start_at_0": "2026-01-01",
        "earliest_start_at_1": "00:00:00",
        **{field: "on" for field in JobQueueEntry.WEEKDAY_FIELDS},
    }
    page = admin_client.get(add).content.decode()
    assert "Known Object IDs: 6700: Exchange Sync" in page
    response = admin_client.post(add, form)
    assert response.status_code == 200
    assert (
        "There is no Codeunit 1234 to run. Known Object IDs: 6700 (Exchange Sync" in response.content.decode()
    )
    assert not JobQueueEntry.objects.exists()

    assert admin_client.post(add, {**form, "object_id_to_run": "6700"}).status_code == 302
    entry = JobQueueEntry.objects.get()
    schedule = job_queue_schedules().get()
    assert (entry.schedule_id, schedule.minutes) == (schedule.pk, 1)
    change = reverse("admin:exchange_sync_jobqueueentry_change", args=[entry.pk])
    for _ in range(5):
        assert (
            admin_client.post(
                change, {**form, "object_id_to_run": "6700", "minutes_between_runs": "7"}
            ).status_code
            == 302
        )
    assert job_queue_schedules().get().minutes == 7

    delete = reverse("admin:exchange_sync_jobqueueentry_delete", args=[entry.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert not JobQueueEntry.objects.exists() and not job_queue_schedules().exists()


@pytest.mark.django_db
def test_an_in_process_entry_page_refreshes_itself(entry, admin_client):
    JobQueueEntry.objects.filter(pk=entry.pk).update(status=JobStatus.IN_PROCESS)
    page = admin_client.get(
        reverse("admin:exchange_sync_jobqueueentry_change", args=[entry.pk])
    ).content.decode()
    assert 'http-equiv="refresh"' in page and "is running" in page
