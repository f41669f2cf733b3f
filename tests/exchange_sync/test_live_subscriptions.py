"""Graph subscriptions against the emulator, which validates and notifies this test's live server:
created once the folder exists (then a Sync), notifications that reach the endpoint and request a
Sync, renewal before expiry, recreation when Graph removed it or renewal answers 404, lifecycle
events, and removal when background synchronization goes off."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from exchange_sync.models import GraphSubscription, RunStatus, SubscriptionStatus, SyncRun, SyncTrigger
from exchange_sync.services import job_queue, live_updates
from tests.exchange_sync.test_sync_rules import FOLDER, ok, sync
from tests.factories import PersonFactory, enable_background_sync

pytestmark = pytest.mark.django_db(transaction=True)


def live_runs(user) -> list[SyncRun]:
    return list(SyncRun.objects.filter(user=user, trigger=SyncTrigger.LIVE).order_by("pk"))


def finish_live_runs(user) -> None:
    """Run the queued live runs here, as a worker would."""
    from exchange_sync.services import contact_sync

    for run in SyncRun.objects.filter(user=user, status=RunStatus.QUEUED):
        ok(contact_sync.run_contact_sync(run_id=run.pk))


@pytest.fixture
def subscribed(sync_user, emulator, live_server, settings):
    """ann with background synchronization on, her folder synced once, and her subscription."""
    settings.PUBLIC_BASE_URL = live_server.url
    enable_background_sync(sync_user)
    PersonFactory(first_name="Ada", surname="Lovelace", email="ada@example.com")
    ok(sync(sync_user))
    subscription = live_updates.ensure_subscription(user=sync_user)
    assert subscription is not None
    return subscription


def test_a_subscription_is_created_on_the_folder_with_a_secret_and_followed_by_a_sync(
    subscribed, sync_user, emulator
):
    (graph,) = emulator.subscriptions()
    assert graph["id"] == subscribed.graph_id
    assert graph["client_state"] == subscribed.client_state and len(subscribed.client_state) >= 32
    assert graph["notification_url"].endswith("/graph/notifications/")
    assert graph["lifecycle_url"].endswith("/graph/lifecycle/")
    assert subscribed.expires_at > timezone.now() + timedelta(days=6)
    validations = [r for r in emulator.notifications() if r["kind"] == "validation"]
    assert [r["status"] for r in validations] == [200, 200]
    assert [run.status for run in live_runs(sync_user)] == [RunStatus.QUEUED]


def test_an_outlook_edit_reaches_the_endpoint_and_its_sync_brings_it_in(
    subscribed, sync_user, emulator, outlook
):
    finish_live_runs(sync_user)
    (item,) = outlook.list_contacts(FOLDER)
    emulator.reset_notifications()
    outlook.update_contact(item["id"], {"jobTitle": "Countess"})
    assert emulator.wait_notifications(timeout_s=10)
    (delivery,) = [r for r in emulator.notifications() if r["kind"] == "change"]
    assert delivery["status"] == 202
    runs = live_runs(sync_user)
    assert runs[-1].status == RunStatus.QUEUED
    finish_live_runs(sync_user)
    from contacts.models import Contact

    assert Contact.objects.get(email="ada@example.com").job_title == "Countess"
    assert GraphSubscription.objects.get(user=sync_user).last_notification_at is not None


def test_bcsyncs_own_write_to_outlook_requests_no_further_sync(subscribed, sync_user, emulator):
    finish_live_runs(sync_user)
    from contacts.models import Contact

    emulator.reset_notifications()
    Contact.objects.filter(email="ada@example.com").update(job_title="Mathematician")
    finish_live_runs(sync_user)  # the live run the Business Central edit requested writes to Outlook
    assert emulator.wait_notifications(timeout_s=10)
    assert [r["status"] for r in emulator.notifications() if r["kind"] == "change"] == [202]
    assert SyncRun.objects.filter(user=sync_user, status=RunStatus.QUEUED).count() == 0


def test_a_subscription_is_renewed_well_before_it_expires(subscribed, sync_user, emulator):
    soon = timezone.now() + timedelta(hours=20)
    GraphSubscription.objects.filter(pk=subscribed.pk).update(expires_at=soon)
    assert live_updates.maintain_subscriptions() == {"ok": 1, "failed": 0, "removed": 0}
    renewed = GraphSubscription.objects.get(pk=subscribed.pk)
    assert renewed.graph_id == subscribed.graph_id
    assert renewed.expires_at > timezone.now() + timedelta(days=6)
    assert renewed.renewed_at > subscribed.renewed_at


def test_a_subscription_graph_expired_is_recreated_and_followed_by_a_sync(subscribed, sync_user, emulator):
    finish_live_runs(sync_user)
    emulator.expire_subscription(subscribed.graph_id)
    GraphSubscription.objects.filter(pk=subscribed.pk).update(expires_at=timezone.now() + timedelta(hours=1))
    live_updates.maintain_subscriptions()
    recreated = GraphSubscription.objects.get(pk=subscribed.pk)
    assert recreated.graph_id != subscribed.graph_id
    assert [s["id"] for s in emulator.subscriptions()] == [recreated.graph_id]
    assert [run.status for run in live_runs(sync_user)][-1] == RunStatus.QUEUED


def test_subscription_removed_is_recreated_and_followed_by_a_sync(subscribed, sync_user, emulator):
    finish_live_runs(sync_user)
    emulator.fire_lifecycle(subscribed.graph_id, "subscriptionRemoved")
    assert emulator.wait_notifications(timeout_s=10)
    (lifecycle,) = [r for r in emulator.notifications() if r["kind"] == "lifecycle"]
    assert lifecycle["status"] == 202
    # What the queued task does in a worker:
    live_updates.handle_lifecycle_event(
        user_id=sync_user.pk, event="subscriptionRemoved", graph_id=subscribed.graph_id
    )
    recreated = GraphSubscription.objects.get(user=sync_user)
    assert recreated.graph_id != subscribed.graph_id and recreated.status == SubscriptionStatus.ACTIVE
    assert [s["id"] for s in emulator.subscriptions()] == [recreated.graph_id]
    assert live_runs(sync_user)[-1].status == RunStatus.QUEUED


def test_reauthorization_required_reauthorizes_and_syncs(subscribed, sync_user, emulator):
    finish_live_runs(sync_user)
    emulator.fire_lifecycle(subscribed.graph_id, "reauthorizationRequired")
    live_updates.handle_lifecycle_event(
        user_id=sync_user.pk, event="reauthorizationRequired", graph_id=subscribed.graph_id
    )
    assert GraphSubscription.objects.get(user=sync_user).graph_id == subscribed.graph_id
    assert live_runs(sync_user)[-1].status == RunStatus.QUEUED


def test_switching_background_sync_off_removes_the_subscription(subscribed, sync_user, emulator):
    finish_live_runs(sync_user)
    job_queue.set_background_sync(user=sync_user, enabled=False)
    live_updates.subscribe(user_id=sync_user.pk)  # the task set_background_sync queued
    assert emulator.subscriptions() == []
    assert not GraphSubscription.objects.filter(user=sync_user).exists()


def test_a_failure_to_subscribe_is_recorded_for_the_setup_page(sync_user, emulator, settings):
    settings.PUBLIC_BASE_URL = "https://unreachable.invalid"
    enable_background_sync(sync_user)
    ok(sync(sync_user))
    assert live_updates.maintain_subscriptions()["failed"] == 1
    row = GraphSubscription.objects.get(user=sync_user)
    assert row.status == SubscriptionStatus.FAILED and "validation" in row.last_error
    assert live_updates.status_of(user=sync_user)["on"] is False
