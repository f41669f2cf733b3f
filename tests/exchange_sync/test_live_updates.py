"""Live updates in one process: the notification endpoint (handshake, clientState, unknown
subscriptions, malformed and oversized bodies, floods, echoes, lifecycle events), coalescing (one run
queued plus one trailing run per user), the Business Central changes that do and do not concern a
user, and what the setup pages show."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from contacts.changes import written_by
from contacts.models import Contact
from exchange_sync.models import (
    ContactLink,
    ContactSyncSetup,
    GraphSubscription,
    RunStatus,
    SubscriptionStatus,
    SyncRun,
    SyncTrigger,
    UnconfirmedChange,
)
from exchange_sync.services import contact_sync, live_updates
from tests.exchange_sync.test_sync_rules import ok, sync
from tests.factories import PersonFactory, UserCardFactory, UserFactory, enable_background_sync
from tests.http_client import csrf_client

pytestmark = pytest.mark.django_db

NOTIFY = reverse("graph_notifications")
LIFECYCLE = reverse("graph_lifecycle")
SECRET = "s3cret-client-state-never-shown"


def live_runs(user) -> list[SyncRun]:
    return list(SyncRun.objects.filter(user=user, trigger=SyncTrigger.LIVE).order_by("pk"))


def queued_tasks(func: str) -> list:
    return [task for task in OrmQ.objects.all() if task.func() == func]


@pytest.fixture
def live_user(db, settings):
    """A salesperson with background synchronization on and a subscription on their folder."""
    settings.PUBLIC_BASE_URL = "https://bcsync.example.com"
    card = UserCardFactory(user=UserFactory(username="cleo"))
    enable_background_sync(card.user)
    ContactSyncSetup.objects.update_or_create(user=card.user, defaults={"folder_id": "F1"})
    GraphSubscription.objects.create(
        user=card.user, graph_id="sub-1", client_state=SECRET, expires_at=timezone.now() + timedelta(days=5)
    )
    return card.user


def notification(subscription_id: str = "sub-1", client_state: str = SECRET, **extra) -> dict:
    return {
        "subscriptionId": subscription_id,
        "clientState": client_state,
        "changeType": "updated",
        "resource": "Users/cleo@contoso.test/Contacts/AAA",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Contact", "id": "AAA", "@odata.etag": 'W/"CK1"'},
        **extra,
    }


def post_json(url: str, body, **headers):
    return Client().post(url, data=json.dumps(body), content_type="application/json", **headers)


# --- the endpoint -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [NOTIFY, LIFECYCLE])
def test_validation_handshake_echoes_the_decoded_token_as_plain_text(url):
    response = Client().post(f"{url}?validationToken=Validation%3A%20a%26b%3Cc%3E", content_type="text/plain")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == "Validation: a&b<c>"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("url", [NOTIFY, LIFECYCLE])
def test_the_endpoint_takes_post_only_and_needs_no_csrf_token(url, live_user):
    assert Client().get(url).status_code == 405
    response = Client(enforce_csrf_checks=True).post(
        url, data=json.dumps({"value": []}), content_type="application/json"
    )
    assert response.status_code == 202


def test_a_notification_is_acknowledged_recorded_and_requests_a_sync(live_user):
    response = post_json(NOTIFY, {"value": [notification()]})
    assert (response.status_code, response.content) == (202, b"")
    assert GraphSubscription.objects.get(user=live_user).last_notification_at is not None
    assert [run.status for run in live_runs(live_user)] == [RunStatus.QUEUED]


def test_a_wrong_client_state_is_ignored_and_logged_without_the_secret(live_user, caplog):
    with caplog.at_level(logging.WARNING, logger="exchange_sync.services.live_updates"):
        response = post_json(NOTIFY, {"value": [notification(client_state="guess")]})
    assert response.status_code == 202
    assert live_runs(live_user) == []
    assert GraphSubscription.objects.get(user=live_user).last_notification_at is None
    assert "wrong clientState" in caplog.text
    assert SECRET not in caplog.text and "guess" not in caplog.text


def test_a_missing_client_state_is_ignored(live_user):
    post_json(NOTIFY, {"value": [notification(client_state=None)]})
    assert live_runs(live_user) == []


def test_an_unknown_subscription_is_ignored_and_logged(live_user, caplog):
    with caplog.at_level(logging.WARNING, logger="exchange_sync.services.live_updates"):
        response = post_json(NOTIFY, {"value": [notification(subscription_id="sub-unknown")]})
    assert response.status_code == 202
    assert live_runs(live_user) == []
    assert "unknown subscription sub-unknown" in caplog.text


@pytest.mark.parametrize(
    "body",
    [b"not json", b"", b"[]", b'{"value": {}}', b'{"value": [1]}', b'{"value": [{"clientState": "x"}]}'],
)
def test_a_malformed_body_is_refused_without_detail(body, live_user):
    response = Client().post(NOTIFY, data=body, content_type="application/json")
    assert (response.status_code, response.content) == (400, b"")
    assert live_runs(live_user) == []


def test_an_oversized_body_is_refused(live_user):
    padding = "x" * (1_000_001)
    response = post_json(NOTIFY, {"value": [notification(padding=padding)]})
    assert (response.status_code, response.content) == (400, b"")
    assert live_runs(live_user) == []


def test_a_flood_of_notifications_is_each_acknowledged_and_coalesced(live_user):
    other = UserCardFactory(user=UserFactory(username="dora")).user
    enable_background_sync(other)
    GraphSubscription.objects.create(user=other, graph_id="sub-2", client_state="other-secret")
    for index in range(150):
        duplicate = notification(changeType="created" if index % 2 else "updated")
        response = post_json(NOTIFY, {"value": [duplicate, notification("sub-2", "other-secret")]})
        assert response.status_code == 202
    assert len(live_runs(live_user)) == 1
    assert len(live_runs(other)) == 1


def test_an_echo_of_bcsyncs_own_write_requests_no_sync(live_user):
    setup = ContactSyncSetup.objects.get(user=live_user)
    ContactLink.objects.create(setup=setup, graph_id="AAA", change_key="CK1")
    post_json(NOTIFY, {"value": [notification()]})
    assert live_runs(live_user) == []
    assert GraphSubscription.objects.get(user=live_user).last_notification_at is not None
    post_json(NOTIFY, {"value": [notification(resourceData={"id": "AAA", "@odata.etag": 'W/"CK2"'})]})
    assert len(live_runs(live_user)) == 1


def a_running_run(user) -> SyncRun:
    setup = ContactSyncSetup.objects.get(user=user)
    now = timezone.now()
    run = SyncRun.objects.create(
        user=user, mode="sync", status=RunStatus.RUNNING, started_at=now, heartbeat_at=now
    )
    ContactSyncSetup.objects.filter(pk=setup.pk).update(active_run=run, claimed_at=now)
    return run


@pytest.mark.parametrize(("stored_key", "trailing"), [("CK1", False), ("CK0", True)])
def test_a_notification_while_a_run_writes_is_settled_at_its_end(stored_key, trailing, live_user):
    """The run's own write is notified before it stored the change key: no trailing run for it; an
    edit made in Outlook meanwhile (another version) gets one."""
    run = a_running_run(live_user)
    post_json(NOTIFY, {"value": [notification()]})
    assert UnconfirmedChange.objects.filter(user=live_user).count() == 1
    assert live_runs(live_user) == []
    ContactLink.objects.create(
        setup=ContactSyncSetup.objects.get(user=live_user), graph_id="AAA", change_key=stored_key
    )
    SyncRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    ContactSyncSetup.objects.filter(user=live_user).update(active_run=None, claimed_at=None)
    contact_sync._queue_trailing_run(SyncRun.objects.get(pk=run.pk))
    assert len(live_runs(live_user)) == int(trailing)
    assert not UnconfirmedChange.objects.exists()


def test_a_run_whose_worker_died_defers_nothing(live_user, settings):
    run = a_running_run(live_user)
    stale = timezone.now() - timedelta(seconds=settings.SYNC_CLAIM_STALE_SECONDS + 1)
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=stale)
    ContactSyncSetup.objects.filter(user=live_user).update(claimed_at=stale)
    post_json(NOTIFY, {"value": [notification()]})
    assert not UnconfirmedChange.objects.exists()
    assert [r.status for r in live_runs(live_user)] == [RunStatus.QUEUED]


@pytest.mark.parametrize("event", live_updates.LIFECYCLE_EVENTS)
def test_lifecycle_events_are_acknowledged_and_handed_to_a_worker(event, live_user):
    response = post_json(
        LIFECYCLE, {"value": [{"subscriptionId": "sub-1", "clientState": SECRET, "lifecycleEvent": event}]}
    )
    assert response.status_code == 202
    (task,) = queued_tasks(live_updates.LIFECYCLE_TASK_FUNC)
    assert task.task["args"] == (live_user.pk, event, "sub-1")


def test_a_lifecycle_event_with_a_wrong_client_state_is_ignored(live_user):
    post_json(
        LIFECYCLE, {"value": [{"subscriptionId": "sub-1", "clientState": "x", "lifecycleEvent": "missed"}]}
    )
    assert queued_tasks(live_updates.LIFECYCLE_TASK_FUNC) == []


def test_missed_requests_a_sync(live_user):
    live_updates.handle_lifecycle_event(user_id=live_user.pk, event="missed", graph_id="sub-1")
    assert len(live_runs(live_user)) == 1


# --- coalescing ---------------------------------------------------------------------------------------


def requests_during_runs(monkeypatch, user, count: int) -> None:
    """Every run from now on receives `count` requests while it runs, after it started."""
    original_execute = contact_sync.SyncEngine.execute

    def execute_while_edits_arrive(engine):
        for _ in range(count):
            assert contact_sync.request_coalesced_sync(user_id=user.pk) is None
        return original_execute(engine)

    monkeypatch.setattr(contact_sync.SyncEngine, "execute", execute_while_edits_arrive)


def test_requests_while_a_run_runs_give_exactly_one_trailing_run(sync_user, monkeypatch, settings):
    settings.LIVE_SYNC_SETTLE_SECONDS = 0.2
    enable_background_sync(sync_user)
    first = contact_sync.request_coalesced_sync(user_id=sync_user.pk)
    assert first is not None
    for _ in range(20):  # while it is queued: it will read them, no further run
        assert contact_sync.request_coalesced_sync(user_id=sync_user.pk) is None
    ok(contact_sync.run_contact_sync(run_id=first.pk))
    assert len(live_runs(sync_user)) == 1

    second = contact_sync.request_coalesced_sync(user_id=sync_user.pk)
    requests_during_runs(monkeypatch, sync_user, 30)
    ok(contact_sync.run_contact_sync(run_id=second.pk))
    runs = live_runs(sync_user)
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED, RunStatus.QUEUED]
    monkeypatch.undo()
    ok(contact_sync.run_contact_sync(run_id=runs[-1].pk))
    assert len(live_runs(sync_user)) == 3  # nothing came while the trailing run ran: no further run


def test_a_burst_still_arriving_when_a_live_run_ends_is_waited_out_for_one_trailing_run(
    sync_user, monkeypatch, settings
):
    settings.LIVE_SYNC_SETTLE_SECONDS = 0.3
    run = contact_sync.request_coalesced_sync(user_id=sync_user.pk)
    requests_during_runs(monkeypatch, sync_user, 1)
    real_sleep = contact_sync.time.sleep
    waits = []

    def sleep_while_edits_arrive(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) <= 5:  # the burst goes on for five more waits
            assert contact_sync.request_coalesced_sync(user_id=sync_user.pk) is None
        real_sleep(min(seconds, 0.05))

    monkeypatch.setattr(contact_sync.time, "sleep", sleep_while_edits_arrive)
    ok(contact_sync.run_contact_sync(run_id=run.pk))
    assert len(waits) > 5
    assert [r.status for r in live_runs(sync_user)] == [RunStatus.SUCCEEDED, RunStatus.QUEUED]


def test_a_request_while_a_button_run_runs_is_picked_up_at_its_end(sync_user, monkeypatch):
    button = contact_sync.request_contact_sync(user=sync_user, mode="sync", enqueue=False)
    requests_during_runs(monkeypatch, sync_user, 3)
    ok(contact_sync.run_contact_sync(run_id=button.pk))
    assert [run.status for run in live_runs(sync_user)] == [RunStatus.QUEUED]


def test_a_run_lost_with_its_worker_is_taken_over_by_the_next_request(sync_user, settings):
    lost = contact_sync.request_coalesced_sync(user_id=sync_user.pk)
    assert contact_sync.request_coalesced_sync(user_id=sync_user.pk) is None
    # The worker died: its claim is no longer renewed and goes stale.
    stale = timezone.now() - timedelta(seconds=settings.SYNC_CLAIM_STALE_SECONDS + 1)
    ContactSyncSetup.objects.filter(user=sync_user).update(claimed_at=stale, sync_pending_at=stale)
    taken_over = contact_sync.request_coalesced_sync(user_id=sync_user.pk)
    assert taken_over is not None
    assert SyncRun.objects.get(pk=lost.pk).status == RunStatus.FAILED
    ok(contact_sync.run_contact_sync(run_id=taken_over.pk))


# --- Business Central changes --------------------------------------------------------------------------


@pytest.fixture
def two_salespeople(sync_user):
    """ann (territory EU) and bob (territory NA), both with background synchronization on."""
    bob = UserCardFactory(user=UserFactory(username="bob")).user
    for user, territory in ((sync_user, "EU"), (bob, "NA")):
        enable_background_sync(user)
        contact_sync.set_sync_filter(user=user, filters={"territory_code": territory})
    return sync_user, bob


def users_with_a_live_run(*users) -> set[str]:
    return {user.username for user in users if live_runs(user)}


def test_a_change_concerns_the_users_whose_scope_takes_it(
    two_salespeople, django_capture_on_commit_callbacks
):
    ann, bob = two_salespeople
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        PersonFactory(territory_code="EU")
    assert users_with_a_live_run(ann, bob) == {"ann"}


def test_a_change_outside_every_scope_before_and_after_requests_nothing(
    two_salespeople, django_capture_on_commit_callbacks
):
    ann, bob = two_salespeople
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        person = PersonFactory(territory_code="ASIA")
        Contact.objects.filter(pk=person.pk).update(city="Tokyo")
    assert users_with_a_live_run(ann, bob) == set()


def test_a_contact_leaving_a_scope_concerns_the_user_it_was_synced_to(
    two_salespeople, django_capture_on_commit_callbacks
):
    ann, bob = two_salespeople
    person = PersonFactory(territory_code="EU", email="eu@example.com")
    ok(sync(ann))
    SyncRun.objects.filter(user=ann).delete()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        Contact.objects.filter(pk=person.pk).update(territory_code="NA")
    assert users_with_a_live_run(ann, bob) == {"ann", "bob"}


def test_a_deleted_contact_concerns_the_user_it_was_synced_to(
    two_salespeople, django_capture_on_commit_callbacks
):
    ann, bob = two_salespeople
    person = PersonFactory(territory_code="EU", email="eu@example.com")
    ok(sync(ann))
    SyncRun.objects.filter(user=ann).delete()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        person.delete()
    assert users_with_a_live_run(ann, bob) == {"ann"}


def test_a_rolled_back_change_requests_nothing(two_salespeople, django_capture_on_commit_callbacks):
    ann, bob = two_salespeople
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        PersonFactory(territory_code="EU")
        raise RuntimeError("rolled back")
    assert users_with_a_live_run(ann, bob) == set()


def test_a_users_own_sync_writes_request_nothing_for_them_but_do_for_others(
    two_salespeople, django_capture_on_commit_callbacks
):
    ann, bob = two_salespeople
    contact_sync.set_sync_filter(user=bob, filters={"territory_code": "EU|NA"})
    with django_capture_on_commit_callbacks(execute=True), written_by(ann.pk), transaction.atomic():
        PersonFactory(territory_code="EU")
    assert users_with_a_live_run(ann, bob) == {"bob"}


def test_users_without_background_sync_get_no_live_run(sync_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        PersonFactory()
    assert live_runs(sync_user) == []


def test_a_burst_of_edits_gives_each_user_one_run(two_salespeople, django_capture_on_commit_callbacks):
    ann, bob = two_salespeople
    contact_sync.set_sync_filter(user=bob, filters={})
    people = PersonFactory.create_batch(40, territory_code="EU")
    for index in range(300):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            person = people[index % len(people)]
            person.city = f"City {index}"
            person.save()
    assert (len(live_runs(ann)), len(live_runs(bob))) == (1, 1)


# --- what people see ---------------------------------------------------------------------------------


def test_without_public_base_url_the_setup_page_says_live_updates_are_off(sync_user, settings):
    settings.PUBLIC_BASE_URL = ""
    enable_background_sync(sync_user)
    client = csrf_client(sync_user)
    _, setup = contact_sync.setups_for(user=sync_user)
    page = client.get(
        reverse("admin:exchange_sync_contactsyncsetup_change", args=[setup.pk])
    ).content.decode()
    assert "Live updates are off: PUBLIC_BASE_URL is not set" in page


@pytest.mark.parametrize(
    ("url", "on"),
    [
        ("https://bcsync.example.com", True),
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://bcsync.example.com", False),
        ("ftp://bcsync.example.com", False),
    ],
)
def test_public_base_url_must_be_https_except_locally(url, on, settings):
    settings.PUBLIC_BASE_URL = url
    assert (live_updates.off_reason() == "") is on


def test_the_setup_page_shows_expiry_and_last_notification_but_never_the_secret(live_user):
    GraphSubscription.objects.filter(user=live_user).update(last_notification_at=timezone.now())
    client = csrf_client(live_user)
    _, setup = contact_sync.setups_for(user=live_user)
    page = client.get(
        reverse("admin:exchange_sync_contactsyncsetup_change", args=[setup.pk])
    ).content.decode()
    assert "On: Microsoft 365 notifies bcsync" in page
    assert "Subscription expires" in page and "Last notification received" in page
    assert "never" not in page.split('id="live-updates"')[1].split("</div>")[0]
    assert SECRET not in page


def test_an_administrator_filters_the_users_without_live_updates(live_user, admin_client):
    without = UserCardFactory(user=UserFactory(username="eve")).user
    enable_background_sync(without)
    contact_sync.setups_for(user=without)
    GraphSubscription.objects.create(user=without, status=SubscriptionStatus.FAILED, last_error="403")
    url = reverse("admin:exchange_sync_contactsyncsetup_changelist")
    none = admin_client.get(url, {"live": "none"}).context["cl"].result_list
    on = admin_client.get(url, {"live": "on"}).context["cl"].result_list
    assert [s.user.username for s in none] == ["eve"]
    assert [s.user.username for s in on] == ["cleo"]
