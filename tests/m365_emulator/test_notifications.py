"""Change notifications: what the emulator POSTs when contacts change (Graph, $batch, the Outlook page,
the back door), batching, retries, slow and dropped endpoints, the knobs, lifecycle events and expiry."""

from __future__ import annotations

import re
import threading
import time

import pytest
import requests

from m365_emulator.auth import tenant_id
from m365_emulator.control import EmulatorControl

from .conftest import ADA, BOB, IMMUTABLE, TENANT
from .subscriber import running_subscriber
from .test_subscriptions import body


@pytest.fixture
def subscriber():
    with running_subscriber() as receiver:
        yield receiver


@pytest.fixture
def em(emulator):
    # Short batching window and retry backoff keep the tests quick; each test sets what it studies.
    emulator.emulator.configure(notification_batch_ms=20, notification_retry_base_s=0.05)
    return emulator.emulator


def subscribe(graph, subscriber, folder, headers=None, **overrides):
    created = graph.post("/subscriptions", json=body(subscriber, folder, **overrides), headers=headers or {})
    assert created.status_code == 201, created.text
    return created.json()


def test_graph_writes_notify_with_graphs_fields(graph, em, subscriber):
    folder = graph.folder()
    sub = subscribe(graph, subscriber, folder, headers=IMMUTABLE)
    contact = graph.create(folder, givenName="Ada")
    graph.patch(f"/users/{ADA}/contactFolders/{folder}/contacts/{contact['id']}", json={"surname": "L"})
    changed = graph.get(f"/users/{ADA}/contacts/{contact['id']}", headers=IMMUTABLE).json()
    graph.delete(f"/users/{ADA}/contacts/{contact['id']}")
    items = subscriber.wait_items(3)
    assert [item["changeType"] for item in items] == ["created", "updated", "deleted"]
    resource = f"Users/{ADA}/Contacts/{contact['id']}"
    assert items[1] == {
        "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "changeType": "updated",
        "resource": resource,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Contact",
            "@odata.id": resource,
            "@odata.etag": changed["@odata.etag"],
            "id": contact["id"],
        },
        "clientState": "s3cret",
        "tenantId": tenant_id(TENANT),
    }
    assert items[0]["resourceData"]["@odata.etag"] == contact["@odata.etag"]
    post = subscriber.posts[0]
    assert (post["path"], post["query"]) == ("/hook", "tenant=1")
    assert post["content_type"].startswith("application/json")


def test_delivery_never_blocks_the_graph_request(graph, em, subscriber):
    em.configure(notification_timeout_s=10)
    folder = graph.folder()
    subscribe(graph, subscriber, folder)
    subscriber.gate = threading.Event()
    graph.create(folder, givenName="Ada")  # answered while the subscriber still holds the POST
    assert graph.create(folder, givenName="Grace")["givenName"] == "Grace"
    with subscriber.changed:
        assert subscriber.changed.wait_for(lambda: subscriber.held >= 1, 10)
    assert subscriber.posts == []
    subscriber.gate.set()
    assert {item["changeType"] for item in subscriber.wait_items(2)} == {"created"}


def test_regular_ids_unless_immutable_was_asked_on_create(graph, em, subscriber):
    folder = graph.folder()
    subscribe(graph, subscriber, folder)
    contact = graph.create(folder, givenName="Ada")  # immutable id
    [item] = subscriber.wait_items(1)
    assert item["resourceData"]["id"] != contact["id"]
    regular = graph.get(f"/users/{ADA}/contacts/{item['resourceData']['id']}")
    assert regular.status_code == 200
    assert regular.json()["givenName"] == "Ada"


def test_only_the_subscribed_folder_and_change_types(graph, em, subscriber):
    folder = graph.folder()
    other = graph.folder(name="Private")
    subscribe(graph, subscriber, folder, changeType="updated")
    contact = graph.create(folder, givenName="Ada")
    graph.create(other, givenName="Not watched")
    graph.create(graph.folder(upn=BOB), upn=BOB, givenName="Other mailbox")
    graph.patch(f"/users/{ADA}/contacts/{contact['id']}", json={"surname": "L"})
    subscriber.wait_items(1)
    assert em.wait_notifications(10)
    assert [item["changeType"] for item in subscriber.items()] == ["updated"]


def test_batch_writes_notify_and_share_one_post(graph, em, subscriber):
    em.configure(notification_batch_ms=300)
    folder = graph.folder()
    subscribe(graph, subscriber, folder)
    answer = graph.batch(
        [
            {
                "id": str(index),
                "method": "POST",
                "url": f"/users/{ADA}/contactFolders/{folder}/contacts",
                "headers": {"Content-Type": "application/json"},
                "body": {"givenName": f"Person {index}"},
            }
            for index in range(5)
        ]
    )
    assert answer.status_code == 200
    assert len(subscriber.wait_items(5)) == 5
    assert len(subscriber.posts) == 1


def test_outlook_page_and_back_door_edits_notify_and_moves_are_delete_plus_create(
    graph, emulator, em, subscriber
):
    folder = graph.folder()
    private = graph.folder(name="Private")
    watched = subscribe(graph, subscriber, folder, notificationUrl=f"{subscriber.url}/watched")
    target = subscribe(graph, subscriber, private, notificationUrl=f"{subscriber.url}/private")
    session = requests.Session()
    page = session.get(f"{emulator.url}/", timeout=10).text
    csrf = re.search(r"name='csrf' value='([^']+)'", page).group(1)
    created = session.post(
        f"{emulator.url}/_ui/create",
        data={"csrf": csrf, "upn": ADA, "folder": folder, "givenName": "Grace"},
        allow_redirects=False,
        timeout=10,
    )
    assert created.status_code == 303
    [item] = subscriber.wait_items(1, path="/watched")
    assert (item["subscriptionId"], item["changeType"]) == (watched["id"], "created")
    outlook = em.outlook(ADA)
    [contact] = outlook.list_contacts(folder)
    edited = session.post(
        f"{emulator.url}/_ui/update",
        data={"csrf": csrf, "upn": ADA, "id": contact["id"], "givenName": "Grace", "surname": "Hopper"},
        allow_redirects=False,
        timeout=10,
    )
    assert edited.status_code == 303
    EmulatorControl(emulator.url).outlook(ADA).move_contact(contact["id"], "Private")
    watched_items = subscriber.wait_items(3, path="/watched")
    assert [i["changeType"] for i in watched_items] == ["created", "updated", "deleted"]
    [moved_in] = subscriber.wait_items(1, path="/private")
    assert (moved_in["subscriptionId"], moved_in["changeType"]) == (target["id"], "created")
    outlook.delete_contact(contact["id"])
    [deleted] = subscriber.wait_items(2, path="/private")[1:]
    assert deleted["changeType"] == "deleted"
    # The page says which folders are watched, without the subscriber's URL or clientState.
    page = session.get(f"{emulator.url}/", timeout=10).text
    assert page.count("Change notifications: created,updated,deleted until ") == 2
    assert subscriber.url not in page
    assert "s3cret" not in page


def test_duplicate_and_drop_knobs(graph, em, subscriber):
    folder = graph.folder()
    subscribe(graph, subscriber, folder)
    em.configure(notification_duplicate_rate=1.0)
    graph.create(folder, givenName="Twice")
    items = subscriber.wait_items(2)
    assert items[0] == items[1]
    em.configure(notification_duplicate_rate=0.0, notification_drop_rate=1.0)
    graph.create(folder, givenName="Never")
    assert em.wait_notifications(10)
    assert len(subscriber.items()) == 2
    dropped = [record for record in em.notifications() if record["kind"] == "dropped"]
    assert [record["error"] for record in dropped] == ["notification_drop_rate"]
    assert dropped[0]["body"]["value"][0]["changeType"] == "created"


def test_seeded_drops_repeat(graph, em, subscriber):
    folder = graph.folder()
    subscribe(graph, subscriber, folder)

    def dropped_pattern() -> list[bool]:
        em.configure(fault_seed=11, notification_drop_rate=0.5)
        pattern = []
        for index in range(8):
            before = len(em.notifications())
            graph.create(folder, givenName=f"P{index}")
            # A drop is decided and recorded before the Graph request answers.
            pattern.append(any(record["kind"] == "dropped" for record in em.notifications()[before:]))
        assert em.wait_notifications(10)
        return pattern

    first = dropped_pattern()
    assert first == dropped_pattern()
    assert True in first and False in first


def test_delay_knob_holds_notifications(graph, em, subscriber):
    folder = graph.folder()
    subscribe(graph, subscriber, folder)
    em.configure(notification_delay_ms=60_000)
    graph.create(folder, givenName="Later")
    assert em.wait_notifications(0.3) is False  # still queued
    assert subscriber.posts == []
    em.reset()  # forgets what is queued
    assert em.wait_notifications(1)


def test_failures_are_retried_with_backoff_then_dropped(graph, em, subscriber):
    folder = graph.folder()
    subscribe(graph, subscriber, folder)
    subscriber.statuses = [500, 503]
    graph.create(folder, givenName="Ada")
    assert em.wait_notifications(10)
    changes = [record for record in em.notifications() if record["kind"] == "change"]
    assert [(record["attempt"], record["status"]) for record in changes] == [(1, 500), (2, 503), (3, 202)]
    assert len(subscriber.items()) == 3  # every attempt carried the same notification
    em.configure(notification_max_attempts=2)
    em.reset_notifications()
    subscriber.status = 500
    graph.create(folder, givenName="Grace")
    assert em.wait_notifications(10)
    assert [record["attempt"] for record in em.notifications()] == [1, 2]


def test_an_answer_slower_than_the_timeout_fails_and_is_retried(graph, em, subscriber):
    em.configure(notification_timeout_s=0.2, notification_retry_timeout_s=5)
    folder = graph.folder()
    subscribe(graph, subscriber, folder)
    subscriber.delay_s = 0.5
    graph.create(folder, givenName="Ada")
    assert em.wait_notifications(10)
    changes = [record for record in em.notifications() if record["kind"] == "change"]
    assert [(record["status"], record["error"]) for record in changes] == [(None, "timeout"), (202, None)]


def test_slow_then_dropping_endpoint(graph, em, subscriber):
    em.configure(
        notification_timeout_s=0.1,
        notification_retry_timeout_s=2,
        notification_max_attempts=2,
        slow_endpoint_delay_s=60,
    )
    folder = graph.folder()
    subscribe(graph, subscriber, folder)
    subscriber.delay_s = 0.2
    # Each notification: a first attempt that times out, then a retry answered, but later than 0.1 s.
    for index in range(5):
        graph.create(folder, givenName=f"P{index}")
        assert em.wait_notifications(10)
    [health] = em.endpoints().values()
    assert (health["state"], health["answers"], health["slow"], health["unanswered"]) == ("slow", 10, 10, 0)
    graph.create(folder, givenName="Held")
    assert em.wait_notifications(0.3) is False  # delayed by slow_endpoint_delay_s
    em.reset()
    em.configure(notification_retry_timeout_s=0.1, dropped_endpoint_s=60, notification_batch_ms=0)
    sub = subscribe(graph, subscriber, graph.folder(name="Again"))
    subscriber.delay_s = 0.3
    for index in range(5):
        em.outlook(ADA).create_contact("Again", {"givenName": f"Q{index}"})
        assert em.wait_notifications(10)
    [health] = em.endpoints().values()
    assert health["state"] == "drop"
    em.outlook(ADA).create_contact("Again", {"givenName": "Lost"})
    assert em.notifications()[-1]["kind"] == "dropped"
    assert em.notifications()[-1]["error"] == "endpoint dropped"
    assert em.notifications()[-1]["subscriptionIds"] == [sub["id"]]


def test_lifecycle_events_on_demand(graph, emulator, em, subscriber):
    folder = graph.folder()
    sub = subscribe(graph, subscriber, folder, lifecycleNotificationUrl=f"{subscriber.url}/lifecycle")
    control = EmulatorControl(emulator.url)
    for event in ("reauthorizationRequired", "missed"):
        item = control.fire_lifecycle(sub["id"], event)
        assert item["lifecycleEvent"] == event
    assert control.subscriptions()[0]["needs_reauthorization"] is True
    assert graph.post(f"/subscriptions/{sub['id']}/reauthorize").status_code == 200
    assert control.subscriptions()[0]["needs_reauthorization"] is False
    control.fire_lifecycle(sub["id"], "subscriptionRemoved")
    items = subscriber.wait_items(3, path="/lifecycle")
    assert [item["lifecycleEvent"] for item in items] == [
        "reauthorizationRequired",
        "missed",
        "subscriptionRemoved",
    ]
    assert items[0] == {
        "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "tenantId": tenant_id(TENANT),
        "clientState": "s3cret",
        "lifecycleEvent": "reauthorizationRequired",
    }
    assert graph.get(f"/subscriptions/{sub['id']}").status_code == 404  # removed
    graph.create(folder, givenName="Unheard")
    assert control.wait_notifications(10)
    assert subscriber.items("/hook") == []
    with pytest.raises(Exception, match="404"):
        control.fire_lifecycle(sub["id"], "missed")


def test_no_lifecycle_url_means_no_lifecycle_notifications(graph, emulator, em, subscriber):
    sub = subscribe(graph, subscriber, graph.folder())
    control = EmulatorControl(emulator.url)
    assert control.fire_lifecycle(sub["id"], "missed") is None
    with pytest.raises(Exception, match="400"):
        control.fire_lifecycle(sub["id"], "somethingElse")
    assert control.wait_notifications(5)
    assert subscriber.posts == []


def test_expiry_stops_delivery_silently(graph, emulator, em, subscriber):
    folder = graph.folder()
    sub = subscribe(graph, subscriber, folder, lifecycleNotificationUrl=f"{subscriber.url}/lifecycle")
    control = EmulatorControl(emulator.url)
    graph.create(folder, givenName="Heard")
    subscriber.wait_items(1)
    control.expire_subscription(sub["id"])
    graph.create(folder, givenName="Unheard")
    assert control.wait_notifications(10)
    assert len(subscriber.items()) == 1
    assert [record["kind"] for record in control.notifications()] == ["validation", "validation", "change"]
    control.reset_notifications()
    assert control.notifications() == []
    assert control.endpoints()[f"{subscriber.url}/hook?tenant=1"]["state"] == "ok"


def test_expiry_by_time(graph, em, subscriber):
    folder = graph.folder()
    sub = subscribe(graph, subscriber, folder)
    with em.store.lock:
        em.store.subscriptions[sub["id"]].expiration = time.time() + 0.2
    time.sleep(0.3)
    graph.create(folder, givenName="Too late")
    assert em.wait_notifications(10)
    assert subscriber.posts == []
    assert graph.get(f"/subscriptions/{sub['id']}").status_code == 404
