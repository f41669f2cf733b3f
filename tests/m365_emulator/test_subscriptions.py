"""/v1.0/subscriptions: create with the validation handshake, get, list, renew, delete, reauthorize,
their errors, and the delta() function-call form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from m365_emulator import serve_in_thread
from m365_emulator.auth import Principal, user_object_id
from m365_emulator.control import EmulatorControl

from .conftest import ADA, BOB, TENANT, Graph, make_config
from .subscriber import running_subscriber


@pytest.fixture
def subscriber():
    with running_subscriber() as receiver:
        yield receiver


def in_minutes(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def body(subscriber, folder_id: str, **overrides):
    values = {
        "changeType": "created,updated,deleted",
        "notificationUrl": f"{subscriber.url}/hook?tenant=1",
        "resource": f"users/{ADA}/contactFolders/{folder_id}/contacts",
        "expirationDateTime": in_minutes(10_000),
        "clientState": "s3cret",
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def test_create_validates_then_returns_the_subscription(graph, subscriber):
    folder = graph.folder()
    created = graph.post("/subscriptions", json=body(subscriber, folder))
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["@odata.context"].endswith("$metadata#subscriptions/$entity")
    assert sub["resource"] == f"users/{ADA}/contactFolders/{folder}/contacts"
    assert sub["changeType"] == "created,updated,deleted"
    assert sub["clientState"] == "s3cret"
    assert sub["notificationUrl"] == f"{subscriber.url}/hook?tenant=1"
    assert sub["latestSupportedTlsVersion"] == "v1_2"
    assert sub["includeResourceData"] is False
    assert sub["lifecycleNotificationUrl"] is None
    assert abs(
        parse(sub["expirationDateTime"]) - (datetime.now(UTC) + timedelta(minutes=10_000))
    ) < timedelta(minutes=1)
    [validation] = subscriber.validations
    # The token arrives URL-encoded and decodes to Graph's opaque text; the query string is kept.
    assert validation["path"] == "/hook"
    assert validation["token"].startswith("Validation: ")
    assert validation["content_type"].startswith("text/plain")


def test_lifecycle_url_is_validated_too_and_short_lifetimes_are_raised_to_45_minutes(graph, subscriber):
    folder = graph.folder()
    created = graph.post(
        "/subscriptions",
        json=body(
            subscriber,
            folder,
            lifecycleNotificationUrl=f"{subscriber.url}/lifecycle",
            expirationDateTime=in_minutes(5),
            latestSupportedTlsVersion="v1_3",
        ),
    )
    assert created.status_code == 201, created.text
    assert [v["path"] for v in subscriber.validations] == ["/hook", "/lifecycle"]
    sub = created.json()
    assert sub["lifecycleNotificationUrl"] == f"{subscriber.url}/lifecycle"
    assert sub["latestSupportedTlsVersion"] == "v1_3"
    assert parse(sub["expirationDateTime"]) > datetime.now(UTC) + timedelta(minutes=44)


@pytest.mark.parametrize(
    ("mode", "code", "message"),
    [
        (
            "status",
            "ValidationError",
            "Subscription validation request failed. Notification endpoint must respond with 200 OK to "
            "validation request.",
        ),
        (
            "wrong",
            "ValidationError",
            "Subscription validation request failed. Response must exactly match validationToken query "
            "parameter.",
        ),
        ("hang", "InvalidRequest", "Subscription validation request timed out."),
    ],
)
def test_failed_validation_creates_nothing(graph, emulator, subscriber, mode, code, message):
    emulator.emulator.configure(validation_timeout_s=0.3)
    subscriber.validation, subscriber.delay_s = mode, 1.0
    failed = graph.post("/subscriptions", json=body(subscriber, graph.folder()))
    assert failed.status_code == 400
    assert failed.json()["error"]["code"] == code
    assert failed.json()["error"]["message"] == message
    assert graph.get("/subscriptions").json()["value"] == []


def test_unreachable_endpoint_fails_validation(graph):
    with running_subscriber() as gone:
        url = gone.url
    failed = graph.post("/subscriptions", json=body(gone, graph.folder(), notificationUrl=f"{url}/hook"))
    assert failed.status_code == 400
    assert failed.json()["error"]["code"] == "ValidationError"


def test_get_list_renew_reauthorize_delete(graph, subscriber):
    folder = graph.folder()
    sub = graph.post("/subscriptions", json=body(subscriber, folder)).json()
    other = graph.post(
        "/subscriptions",
        json=body(subscriber, folder, resource=f"users/{BOB}/contacts", changeType="created"),
    ).json()
    got = graph.get(f"/subscriptions/{sub['id']}")
    assert got.status_code == 200
    assert got.json()["clientState"] is None  # Graph never reads clientState back
    assert got.json()["expirationDateTime"] == sub["expirationDateTime"]
    listed = graph.get("/subscriptions").json()
    assert listed["@odata.context"].endswith("$metadata#subscriptions")
    assert sorted(item["id"] for item in listed["value"]) == sorted([sub["id"], other["id"]])
    assert {item["clientState"] for item in listed["value"]} == {None}

    renewed = graph.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": in_minutes(2000)})
    assert renewed.status_code == 200, renewed.text
    assert abs(
        parse(renewed.json()["expirationDateTime"]) - (datetime.now(UTC) + timedelta(minutes=2000))
    ) < (timedelta(minutes=1))
    assert len(subscriber.validations) == 2  # renewing does not validate again

    reauthorized = graph.post(f"/subscriptions/{sub['id']}/reauthorize")
    assert (reauthorized.status_code, reauthorized.content) == (200, b"")

    deleted = graph.delete(f"/subscriptions/{sub['id']}")
    assert deleted.status_code == 204
    for method, path, kwargs in [
        ("GET", f"/subscriptions/{sub['id']}", {}),
        ("PATCH", f"/subscriptions/{sub['id']}", {"json": {"expirationDateTime": in_minutes(60)}}),
        ("DELETE", f"/subscriptions/{sub['id']}", {}),
        ("POST", f"/subscriptions/{sub['id']}/reauthorize", {}),
    ]:
        gone = graph.request(method, path, **kwargs)
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "ResourceNotFound"
    assert [item["id"] for item in graph.get("/subscriptions").json()["value"]] == [other["id"]]


def test_patch_can_move_the_notification_url_but_not_add_a_lifecycle_url(graph, subscriber):
    sub = graph.post("/subscriptions", json=body(subscriber, graph.folder())).json()
    moved = graph.patch(f"/subscriptions/{sub['id']}", json={"notificationUrl": f"{subscriber.url}/new"})
    assert moved.status_code == 200
    assert moved.json()["notificationUrl"] == f"{subscriber.url}/new"
    assert subscriber.validations[-1]["path"] == "/new"
    refused = graph.patch(
        f"/subscriptions/{sub['id']}", json={"lifecycleNotificationUrl": f"{subscriber.url}/lifecycle"}
    )
    assert refused.status_code == 400


@pytest.mark.parametrize(
    ("overrides", "status", "code", "message"),
    [
        (
            {"expirationDateTime": "far"},
            400,
            "RequestBodyRead",
            "Cannot convert the literal 'far' to the expected type 'Edm.DateTimeOffset'.",
        ),
        (
            {"expirationDateTime": None},
            400,
            "InvalidRequest",
            "expirationDateTime is a required property for subscription creation.",
        ),
        (
            {"expirationDateTime": "MAX"},
            400,
            "ExtensionError",
            "Subscription expiration can only be 10070 minutes in the future.",
        ),
        (
            {"expirationDateTime": "PAST"},
            400,
            "ExtensionError",
            "Subscription expiration can only be in the future.",
        ),
        (
            {"notificationUrl": "http://example.com/hook"},
            400,
            "InvalidRequest",
            "NotificationUrl scheme='http' is not supported.",
        ),
        ({"notificationUrl": "ftp://x/y"}, 400, "InvalidRequest", "Invalid notificationurl='ftp://x/y'."),
        (
            {"lifecycleNotificationUrl": "http://example.com/l"},
            400,
            "InvalidRequest",
            "LifecycleNotificationUrl scheme='http' is not supported.",
        ),
        (
            {"changeType": "created,moved"},
            400,
            "InvalidRequest",
            "'moved' is not a valid change type. Valid values: created, updated, deleted.",
        ),
        (
            {"clientState": "x" * 129},
            400,
            "InvalidRequest",
            "clientState must be a string of at most 128 characters.",
        ),
        ({"latestSupportedTlsVersion": "v2"}, 400, "InvalidRequest", None),
        ({"resource": "users/ada@contoso.test/messages"}, 400, "InvalidRequest", None),
        (
            {"resource": "me/contacts"},
            400,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        ),
        ({"resource": "users/nobody@contoso.test/contacts"}, 404, "ErrorInvalidUser", None),
        (
            {"resource": "users/ada@contoso.test/contactFolders/AAMkADmissing/contacts"},
            400,
            "ErrorInvalidIdMalformed",
            None,
        ),
        ({"unknownProperty": 1}, 400, "RequestBodyRead", None),
        ({"includeResourceData": True}, 400, "InvalidRequest", None),
    ],
)
def test_create_errors(graph, subscriber, overrides, status, code, message):
    if overrides.get("expirationDateTime") == "MAX":
        overrides["expirationDateTime"] = in_minutes(10_071)
    if overrides.get("expirationDateTime") == "PAST":
        overrides["expirationDateTime"] = in_minutes(-1)
    payload = body(subscriber, graph.folder(), **overrides)
    if "expirationDateTime" in overrides and overrides["expirationDateTime"] is None:
        payload.pop("expirationDateTime", None)
    failed = graph.post("/subscriptions", json=payload)
    assert failed.status_code == status, failed.text
    error = failed.json()["error"]
    if code is not None:
        assert error["code"] == code
    if message is not None:
        assert error["message"] == message
    assert subscriber.validations == []  # a refused body never reaches the subscriber


def test_resource_forms_duplicates_and_the_cap_is_a_knob(graph, emulator, subscriber):
    folder = graph.folder()
    quoted = graph.post(
        "/subscriptions",
        json=body(subscriber, folder, resource=f"/Users('{ADA}')/ContactFolders('{folder}')/Contacts"),
    )
    assert quoted.status_code == 201, quoted.text
    duplicate = graph.post(
        "/subscriptions", json=body(subscriber, folder, changeType="deleted,updated,created")
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["message"] == (
        f"Subscription Id {quoted.json()['id']} already exists for the requested combination"
    )
    other_types = graph.post("/subscriptions", json=body(subscriber, folder, changeType="updated"))
    assert other_types.status_code == 201
    emulator.emulator.configure(subscription_max_minutes=4230)
    capped = graph.post(
        "/subscriptions",
        json=body(subscriber, folder, changeType="created", expirationDateTime=in_minutes(5000)),
    )
    assert (
        capped.json()["error"]["message"] == "Subscription expiration can only be 4230 minutes in the future."
    )


def test_localhost_and_https_urls_are_accepted_as_urls(graph, emulator, subscriber):
    emulator.emulator.configure(validation_timeout_s=0.5)
    port = subscriber.url.rsplit(":", 1)[1]
    local = graph.post(
        "/subscriptions", json=body(subscriber, graph.folder(), notificationUrl=f"http://localhost:{port}/h")
    )
    assert local.status_code == 201, local.text
    # https passes the URL check; nothing listens there, so only the handshake fails.
    remote = graph.post(
        "/subscriptions",
        json=body(subscriber, graph.folder(name="Other"), notificationUrl="https://127.0.0.1:9/hook"),
    )
    assert remote.status_code == 400
    assert remote.json()["error"]["code"] == "ValidationError"


def test_expired_subscription_is_gone(graph, emulator, subscriber):
    sub = graph.post("/subscriptions", json=body(subscriber, graph.folder())).json()
    control = EmulatorControl(emulator.url)
    assert [item["id"] for item in control.subscriptions()] == [sub["id"]]
    assert control.subscriptions()[0]["client_state"] == "s3cret"
    control.expire_subscription(sub["id"])
    assert graph.get(f"/subscriptions/{sub['id']}").status_code == 404
    renewed = graph.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": in_minutes(60)})
    assert renewed.status_code == 404
    assert control.subscriptions() == []


def test_subscriptions_survive_a_restart_and_a_reset_removes_them(tmp_path, subscriber):
    state = str(tmp_path / "m365.json")
    server = serve_in_thread(make_config(state_file=state))
    try:
        graph = Graph(server)
        sub = graph.post("/subscriptions", json=body(subscriber, graph.folder())).json()
    finally:
        server.stop()
    server = serve_in_thread(make_config(state_file=state))
    try:
        graph = Graph(server)
        again = graph.get(f"/subscriptions/{sub['id']}")
        assert again.status_code == 200
        assert again.json()["expirationDateTime"] == sub["expirationDateTime"]
        server.emulator.reset()
        assert graph.get("/subscriptions").json()["value"] == []
    finally:
        server.stop()


def test_delta_function_call_form(graph, emulator):
    folder = graph.folder()
    graph.create(folder, givenName="Ada")
    plain = graph.get(f"/users/{ADA}/contactFolders/{folder}/contacts/delta").json()
    for path in (
        f"/users/{ADA}/contactFolders/{folder}/contacts/delta()",
        f"/users/{ADA}/contactFolders/{folder}/contacts/delta%28%29",
        f"/users/{ADA}/contactFolders/{folder}/contacts/delta()?$select=givenName",
    ):
        answer = graph.get(path)
        assert answer.status_code == 200, answer.text
        assert [item["givenName"] for item in answer.json()["value"]] == ["Ada"]
        assert "@odata.deltaLink" in answer.json()
    assert [item["givenName"] for item in plain["value"]] == ["Ada"]
    # The next round follows the deltaLink of the function form and sees only what changed.
    link = graph.get(f"/users/{ADA}/contactFolders/{folder}/contacts/delta()").json()["@odata.deltaLink"]
    graph.create(folder, givenName="Grace")
    assert [item["givenName"] for item in graph.get(link).json()["value"]] == ["Grace"]
    root = graph.get(f"/users/{ADA}/contacts/delta()")
    assert root.status_code == 200
    assert root.json()["value"] == []


def test_unknown_folder_and_the_per_mailbox_quota(graph, subscriber, monkeypatch):
    gone = graph.folder(name="Gone")
    assert graph.delete(f"/users/{ADA}/contactFolders/{gone}").status_code == 204
    missing = graph.post("/subscriptions", json=body(subscriber, gone))
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "ErrorItemNotFound")
    monkeypatch.setattr("m365_emulator.subscriptions.MAX_PER_MAILBOX", 2)
    folder = graph.folder()
    for change_type in ("created", "updated"):
        assert (
            graph.post("/subscriptions", json=body(subscriber, folder, changeType=change_type)).status_code
            == 201
        )
    over = graph.post("/subscriptions", json=body(subscriber, folder, changeType="deleted"))
    assert over.status_code == 403
    other_mailbox = graph.post(
        "/subscriptions", json=body(subscriber, folder, resource=f"users/{BOB}/contacts")
    )
    assert other_mailbox.status_code == 201


def test_me_resources_follow_the_signed_in_user(graph, emulator, subscriber):
    auth = emulator.emulator.auth
    token = "a-delegated-token-for-ada"
    with auth._lock:
        auth._tokens[token] = Principal(
            ADA,
            user_object_id(TENANT, ADA),
            frozenset({"Contacts.ReadWrite"}),
            frozenset(),
            auth.now() + 3600,
        )
    folder = graph.folder()
    headers = {"Authorization": f"Bearer {token}"}
    sub = graph.post(
        "/subscriptions",
        json=body(subscriber, folder, resource=f"me/contactFolders/{folder}/contacts"),
        headers=headers,
    )
    assert sub.status_code == 201, sub.text
    stored = EmulatorControl(emulator.url).subscriptions()[0]
    assert (stored["upn"], stored["folder_id"]) == (ADA, folder)
    other = graph.post(
        "/subscriptions", json=body(subscriber, folder, resource=f"users/{BOB}/contacts"), headers=headers
    )
    assert (other.status_code, other.json()["error"]["code"]) == (403, "ErrorAccessDenied")
