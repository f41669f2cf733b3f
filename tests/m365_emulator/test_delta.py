"""Per-folder contact delta: rounds, @removed, paging, token expiry (410) and replays."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import ADA, IMMUTABLE, Graph


def delta_url(folder_id: str) -> str:
    return f"/users/{ADA}/contactFolders/{folder_id}/contacts/delta"


def run_round(graph: Graph, url: str, page_size: int | None = None) -> tuple[list[list[dict[str, Any]]], str]:
    """Follow nextLinks to the end of a round: (pages of items, deltaLink)."""
    prefer = 'IdType="ImmutableId"' + (f", odata.maxpagesize={page_size}" if page_size else "")
    pages = []
    while True:
        response = graph.get(url, headers={"Prefer": prefer})
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["value"])
        assert ("@odata.nextLink" in body) != ("@odata.deltaLink" in body)
        if "@odata.deltaLink" in body:
            return pages, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]
        assert "/delta?$skiptoken=" in url


@pytest.fixture
def folder(graph):
    return graph.folder()


def test_initial_round_is_current_state(graph, folder):
    created = [graph.create(folder, givenName=f"C{i}") for i in range(3)]
    graph.delete(f"/users/{ADA}/contacts/{created[0]['id']}")
    pages, delta_link = run_round(graph, delta_url(folder))
    items = [item for page in pages for item in page]
    assert [item["givenName"] for item in items] == ["C1", "C2"]
    assert all("@removed" not in item for item in items)
    assert delta_link.startswith("https://graph.microsoft.com/v1.0/users/")
    assert "/delta?$deltatoken=" in delta_link


def test_incremental_round_collapses_changes_and_reports_deletions(graph, emulator, folder):
    keep = graph.create(folder, givenName="Keep")
    edit = graph.create(folder, givenName="Edit")
    gone = graph.create(folder, givenName="Gone")
    moved = graph.create(folder, givenName="Moved")
    _, delta_link = run_round(graph, delta_url(folder))
    graph.patch(f"/users/{ADA}/contacts/{edit['id']}", json={"jobTitle": "one"})
    graph.patch(f"/users/{ADA}/contacts/{edit['id']}", json={"jobTitle": "two"})
    graph.delete(f"/users/{ADA}/contacts/{gone['id']}")
    emulator.emulator.outlook(ADA).move_contact(moved["id"], "Contacts")
    new = graph.create(folder, givenName="New")
    pages, next_link = run_round(graph, delta_link)
    items = {item["id"]: item for page in pages for item in page}
    assert keep["id"] not in items
    assert items[edit["id"]]["jobTitle"] == "two"
    assert items[gone["id"]] == {
        "@odata.type": "#microsoft.graph.contact",
        "id": gone["id"],
        "@removed": {"reason": "deleted"},
    }
    assert items[moved["id"]]["@removed"] == {"reason": "deleted"}
    assert items[new["id"]]["givenName"] == "New"
    assert len(items) == 4
    quiet, _ = run_round(graph, next_link)
    assert quiet == [[]]


def test_outlook_edits_show_up_in_delta(graph, emulator, folder):
    _, delta_link = run_round(graph, delta_url(folder))
    person = emulator.emulator.outlook(ADA).create_contact("Business Central", {"givenName": "Typed"})
    pages, _ = run_round(graph, delta_link)
    assert [item["id"] for page in pages for item in page] == [person["id"]]


def test_maxpagesize_pages_the_round(graph, folder):
    for index in range(7):
        graph.create(folder, givenName=f"C{index}")
    response = graph.get(delta_url(folder), headers={"Prefer": "odata.maxpagesize=3"})
    assert response.headers["Preference-Applied"] == "odata.maxpagesize=3"
    pages, delta_link = run_round(graph, delta_url(folder), page_size=3)
    assert [len(page) for page in pages] == [3, 3, 1]
    for contact in graph.get(f"/users/{ADA}/contactFolders/{folder}/contacts", headers=IMMUTABLE).json()[
        "value"
    ]:
        graph.patch(f"/users/{ADA}/contacts/{contact['id']}", json={"jobTitle": "x"})
    pages, _ = run_round(graph, delta_link, page_size=4)
    assert [len(page) for page in pages] == [4, 3]


def test_page_size_is_capped(graph, emulator, folder):
    emulator.emulator.configure(delta_page_size=2)
    for index in range(3):
        graph.create(folder, givenName=f"C{index}")
    pages, _ = run_round(graph, delta_url(folder), page_size=50)
    assert [len(page) for page in pages] == [2, 1]


def test_select_on_first_call_is_kept_by_the_tokens(graph, folder):
    graph.create(folder, givenName="Ada", surname="Lovelace")
    _, delta_link = run_round(graph, f"{delta_url(folder)}?$select=givenName")
    graph.create(folder, givenName="Bob", surname="Builder")
    pages, _ = run_round(graph, delta_link)
    assert set(pages[0][0]) == {"@odata.etag", "id", "givenName"}


def test_expired_tokens_answer_410_sync_state_not_found(graph, emulator, folder):
    graph.create(folder, givenName="Ada")
    _, delta_link = run_round(graph, delta_url(folder))
    emulator.emulator.configure(expire_delta_tokens_now=True)
    expired = graph.get(delta_link)
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "syncStateNotFound"
    assert "/delta" in expired.headers["Location"]
    _, fresh_link = run_round(graph, delta_url(folder))
    assert graph.get(fresh_link).status_code == 200


def test_tokens_older_than_max_age_expire(graph, emulator, folder):
    _, delta_link = run_round(graph, delta_url(folder))
    emulator.emulator.configure(delta_token_max_age_s=0)
    assert graph.get(delta_link).status_code == 410
    emulator.emulator.configure(delta_token_max_age_s=None)
    assert graph.get(delta_link).status_code == 200


def test_tampered_token_is_410(graph, folder):
    _, delta_link = run_round(graph, delta_url(folder))
    assert graph.get(delta_link[:-4] + "AAAA").status_code == 410


def test_replay_resends_the_previous_round(graph, emulator, folder):
    first = graph.create(folder, givenName="First")
    _, link_1 = run_round(graph, delta_url(folder))
    graph.patch(f"/users/{ADA}/contacts/{first['id']}", json={"jobTitle": "changed"})
    pages, link_2 = run_round(graph, link_1)
    assert [item["id"] for page in pages for item in page] == [first["id"]]
    second = graph.create(folder, givenName="Second")
    emulator.emulator.configure(delta_replay=True)
    pages, _ = run_round(graph, link_2)
    assert {item["id"] for page in pages for item in page} == {first["id"], second["id"]}


def test_quiet_delta_costs_no_item_time(graph, emulator, folder):
    _, delta_link = run_round(graph, delta_url(folder))
    emulator.emulator.configure(item_latency_ms=60_000)  # any charged item would block this test for a minute
    pages, _ = run_round(graph, delta_link)
    assert pages == [[]]


def test_default_folder_delta(graph):
    graph.post(f"/users/{ADA}/contacts", json={"givenName": "Root"})
    pages, _ = run_round(graph, f"/users/{ADA}/contacts/delta")
    assert [item["givenName"] for page in pages for item in page] == ["Root"]
