"""--state FILE: state survives a restart; saves are debounced and atomic."""

from __future__ import annotations

import json

from m365_emulator import serve_in_thread

from .conftest import ADA, Graph, make_config


def test_state_survives_restart(tmp_path):
    state = tmp_path / "state.json"
    first = serve_in_thread(make_config(state_file=str(state)))
    graph = Graph(first)
    folder = graph.folder()
    contact = graph.create(
        folder, givenName="Ada", singleValueExtendedProperties=[{"id": "String 0x3A24", "value": "+44 fax"}]
    )
    delta = graph.get(f"/users/{ADA}/contactFolders/{folder}/contacts/delta").json()["@odata.deltaLink"]
    first.stop()
    assert json.loads(state.read_text())["mailboxes"]

    second = serve_in_thread(make_config(state_file=str(state)))
    try:
        graph = Graph(second)
        again = graph.get(
            f"/users/{ADA}/contacts/{contact['id']}",
            params={"$expand": "singleValueExtendedProperties($filter=id eq 'String 0x3A24')"},
        ).json()
        assert again["changeKey"] == contact["changeKey"]
        assert again["singleValueExtendedProperties"][0]["value"] == "+44 fax"
        graph.patch(f"/users/{ADA}/contacts/{contact['id']}", json={"jobTitle": "Countess"})
        changes = graph.get(delta).json()
        assert [item["jobTitle"] for item in changes["value"]] == ["Countess"]
        assert (
            graph.post(f"/users/{ADA}/contactFolders", json={"displayName": "Business Central"}).status_code
            == 400
        )
    finally:
        second.stop()


def test_saves_are_debounced(tmp_path):
    state = tmp_path / "state.json"
    server = serve_in_thread(make_config(state_file=str(state), save_debounce_s=60))
    try:
        graph = Graph(server)
        graph.create(graph.folder(), givenName="Ada")
        assert not state.exists()  # nothing written yet: the save waits for the debounce window
    finally:
        server.stop()
    assert len(json.loads(state.read_text())["mailboxes"][0]["contacts"]) == 1
    assert [path.name for path in tmp_path.iterdir()] == ["state.json"]  # no temp files left behind
