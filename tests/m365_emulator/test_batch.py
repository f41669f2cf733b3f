"""JSON batching: limits, ids, dependsOn, inner throttling, any order, shared router and stats."""

from __future__ import annotations

from .conftest import ADA, BOB

JSON = {"Content-Type": "application/json"}


def create_item(item_id: str, folder: str, name: str, **extra) -> dict:
    return {
        "id": item_id,
        "method": "POST",
        "url": f"/users/{ADA}/contactFolders/{folder}/contacts",
        "headers": {**JSON, "Prefer": 'IdType="ImmutableId"'},
        "body": {"givenName": name},
        **extra,
    }


def by_id(response) -> dict:
    return {entry["id"]: entry for entry in response.json()["responses"]}


def test_batch_creates_and_reads(graph):
    folder = graph.folder()
    response = graph.batch(
        [create_item(str(i), folder, f"N{i}") for i in range(5)]
        + [
            {
                "id": "list",
                "method": "GET",
                "url": f"/users/{ADA}/contactFolders/{folder}/contacts",
                "dependsOn": ["0", "1", "2", "3", "4"],
            }
        ]
    )
    assert response.status_code == 200
    entries = by_id(response)
    assert all(entries[str(i)]["status"] == 201 for i in range(5))
    assert entries["0"]["headers"]["Content-Type"] == "application/json"
    assert entries["0"]["headers"]["Preference-Applied"] == 'IdType="ImmutableId"'
    assert len(entries["list"]["body"]["value"]) == 5
    assert entries["0"]["body"]["id"].startswith("AAkA")


def test_more_than_20_is_400(graph):
    folder = graph.folder()
    response = graph.batch([create_item(str(i), folder, "x") for i in range(21)])
    assert response.status_code == 400
    assert graph.get(f"/users/{ADA}/contactFolders/{folder}/contacts").json()["value"] == []


def test_ids_must_be_unique_case_insensitively(graph):
    folder = graph.folder()
    response = graph.batch([create_item("a", folder, "x"), create_item("A", folder, "y")])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_malformed_payloads_are_400(graph):
    assert graph.post("/$batch", json={"nope": []}).status_code == 400
    assert graph.post("/$batch", json={"requests": [{"id": "1", "method": "GET"}]}).status_code == 400
    assert (
        graph.post(
            "/$batch",
            json={"requests": [{"id": "1", "method": "GET", "url": "/users/x/contacts", "dependsOn": ["9"]}]},
        ).status_code
        == 400
    )


def test_body_without_content_type_is_inner_400(graph):
    folder = graph.folder()
    item = create_item("1", folder, "x")
    item["headers"] = {}
    response = graph.batch([item])
    assert response.status_code == 200
    assert by_id(response)["1"]["status"] == 400


def test_absolute_url_is_inner_400(graph):
    response = graph.batch(
        [{"id": "1", "method": "GET", "url": f"https://graph.microsoft.com/v1.0/users/{ADA}/contacts"}]
    )
    assert by_id(response)["1"]["status"] == 400


def test_failed_dependency_gives_424(graph):
    folder = graph.folder()
    response = graph.batch(
        [
            {"id": "1", "method": "GET", "url": f"/users/{ADA}/contacts/abc"},
            {**create_item("2", folder, "x"), "dependsOn": ["1"]},
            {**create_item("3", folder, "y"), "dependsOn": ["2"]},
        ]
    )
    entries = by_id(response)
    assert entries["1"]["status"] == 400
    assert entries["2"]["status"] == 424
    assert entries["3"]["status"] == 424
    assert graph.get(f"/users/{ADA}/contactFolders/{folder}/contacts").json()["value"] == []


def test_inner_throttling_has_its_own_retry_after(graph, emulator):
    folder = graph.folder()
    emulator.emulator.configure(rate_limit=3, rate_window_s=60)
    response = graph.batch([create_item(str(i), folder, f"N{i}") for i in range(5)])
    assert response.status_code == 200
    statuses = sorted(entry["status"] for entry in response.json()["responses"])
    assert statuses == [201, 201, 429, 429, 429]  # the folder POST used one request of the window
    throttled = [entry for entry in response.json()["responses"] if entry["status"] == 429]
    assert all(int(entry["headers"]["Retry-After"]) >= 1 for entry in throttled)
    assert throttled[0]["body"]["error"]["code"] == "ApplicationThrottled"
    stats = emulator.emulator.stats()
    assert stats["inner_throttled"] == 3
    assert stats["inner_requests"] == 5
    assert stats["inner_by_route"]["POST /users/{upn}/contactFolders/{fid}/contacts"] == 5
    assert stats["by_route"]["POST /$batch"] == 1


def test_inner_requests_of_a_busy_mailbox_get_429(graph, emulator):
    emulator.emulator.configure(max_concurrency=0)
    response = graph.batch([{"id": "1", "method": "GET", "url": f"/users/{BOB}/contactFolders"}])
    entry = by_id(response)["1"]
    assert response.status_code == 200
    assert entry["status"] == 429
    assert entry["body"]["error"]["message"] == "Application is over its MailboxConcurrency limit."
    assert "Retry-After" in entry["headers"]


def test_responses_come_in_any_order_unless_shuffling_is_off(graph, emulator):
    items = [{"id": str(i), "method": "GET", "url": f"/users/{ADA}/contactFolders"} for i in range(20)]
    shuffled = [entry["id"] for entry in graph.batch(items).json()["responses"]]
    assert sorted(shuffled, key=int) == [str(i) for i in range(20)]
    assert shuffled != [str(i) for i in range(20)]
    emulator.emulator.configure(shuffle_batch_responses=False)
    ordered = [entry["id"] for entry in graph.batch(items).json()["responses"]]
    assert ordered == [str(i) for i in range(20)]


def test_batch_patch_and_delete_use_if_match(graph):
    folder = graph.folder()
    contact = graph.create(folder, givenName="Ada")
    url = f"/users/{ADA}/contacts/{contact['id']}"
    response = graph.batch(
        [
            {
                "id": "p",
                "method": "PATCH",
                "url": url,
                "headers": {**JSON, "If-Match": contact["@odata.etag"]},
                "body": {"surname": "Lovelace"},
            },
            {
                "id": "d",
                "method": "DELETE",
                "url": url,
                "headers": {"If-Match": contact["@odata.etag"]},
                "dependsOn": ["p"],
            },
        ]
    )
    entries = by_id(response)
    assert entries["p"]["status"] == 200
    assert entries["p"]["body"]["displayName"] == "Ada Lovelace"
    assert entries["d"]["status"] == 412
