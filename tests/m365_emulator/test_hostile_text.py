"""Strings no UTF-8 text can hold (lone surrogates) are refused, never stored; NUL is a string like any
other. Whatever happens, the emulator answers every request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from m365_emulator import serve_in_thread
from m365_emulator.control import EmulatorControl
from m365_emulator.errors import GraphError

from .conftest import ADA, IMMUTABLE, Graph, make_config

JSON = {"Content-Type": "application/json"}
LONE_SURROGATE_BODY = b'{"givenName": "Sur\\ud800rogate", "emailAddresses": [{"address": "s@example.com"}]}'


def contacts_url(folder_id: str) -> str:
    return f"/users/{ADA}/contactFolders/{folder_id}/contacts"


def assert_folder_answers(graph: Graph, folder_id: str) -> list[dict]:
    listing = graph.get(contacts_url(folder_id))
    assert listing.status_code == 200
    delta = graph.get(f"{contacts_url(folder_id)}/delta")
    assert delta.status_code == 200
    assert [c["id"] for c in delta.json()["value"]] == [c["id"] for c in listing.json()["value"]]
    return listing.json()["value"]


def test_a_lone_surrogate_is_refused_with_graphs_envelope_and_the_folder_keeps_answering(graph):
    folder = graph.folder()
    kept = graph.create(folder, givenName="Kept")

    created = graph.post(contacts_url(folder), data=LONE_SURROGATE_BODY, headers=JSON)
    updated = graph.patch(
        f"/users/{ADA}/contacts/{kept['id']}", data=b'{"jobTitle": "\\udfff"}', headers=JSON
    )
    renamed = graph.patch(
        f"/users/{ADA}/contactFolders/{folder}", data=b'{"displayName": "F\\ud83d"}', headers=JSON
    )

    for response in (created, updated, renamed):
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "RequestBodyRead"
        assert error["innerError"]["request-id"] == response.headers["request-id"]
    assert [c["givenName"] for c in assert_folder_answers(graph, folder)] == ["Kept"]
    assert graph.get(f"/users/{ADA}/contacts/{kept['id']}").json()["jobTitle"] is None


def test_a_lone_surrogate_in_a_batch_is_refused_as_a_whole(graph):
    folder = graph.folder()
    body = json.dumps(
        {"requests": [{"id": "1", "method": "POST", "url": contacts_url(folder), "headers": JSON}]}
    )
    body = body.replace('"headers"', '"body": {"givenName": "\\ud800"}, "headers"').encode()

    response = graph.post("/$batch", data=body, headers=JSON)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert assert_folder_answers(graph, folder) == []


def test_the_back_door_over_http_refuses_a_lone_surrogate(emulator, graph):
    folder = graph.folder()
    control = EmulatorControl(emulator.url)
    request = f"/mailboxes/{ADA}/folders/{folder}/contacts"
    try:
        control.call("POST", request, json.loads(LONE_SURROGATE_BODY))
    except GraphError as refused:
        assert (refused.status, refused.code) == (400, "BadRequest")
    else:
        raise AssertionError("the back door stored a lone surrogate")
    assert assert_folder_answers(graph, folder) == []


@contextmanager
def serving(state: Path) -> Iterator[Graph]:
    """An emulator on `state`, stopped (and its state saved) on exit."""
    server = serve_in_thread(make_config(state_file=str(state)))
    try:
        yield Graph(server)
    finally:
        server.stop()


def test_a_state_file_that_already_holds_a_lone_surrogate_loads_and_serves(tmp_path):
    state = tmp_path / "state.json"
    with serving(state) as graph:
        folder = graph.folder()
        graph.create(folder, givenName="Surrogate")
    # What an emulator that stored the string wrote: json.dump escapes it as \ud800.
    state.write_text(state.read_text().replace('"Surrogate"', '"Sur\\ud800rogate"'))

    with serving(state) as graph:
        [contact] = assert_folder_answers(graph, folder)
    assert contact["givenName"] == "Sur\ufffdrogate"


def test_nul_is_stored_and_returned_as_sent_like_graph(tmp_path):
    state = tmp_path / "state.json"
    with serving(state) as graph:
        folder = graph.folder()
        body = b'{"givenName": "Nu\\u0000l", "jobTitle": "\\u0000"}'
        created = graph.post(contacts_url(folder), data=body, headers=IMMUTABLE | JSON)
    assert created.status_code == 201
    assert (created.json()["givenName"], created.json()["jobTitle"]) == ("Nu\x00l", "\x00")

    with serving(state) as graph:  # and the state file keeps it
        [contact] = assert_folder_answers(graph, folder)
    assert (contact["givenName"], contact["displayName"]) == ("Nu\x00l", "Nu\x00l")


def test_an_unexpected_failure_answers_500_in_graphs_envelope_instead_of_dropping_the_connection(
    emulator, graph
):
    router = emulator.front.router
    original = router.run

    def fail_on_contacts(ctx):
        if ctx.request.path.endswith("/contacts"):
            raise RuntimeError("a bug in a handler")
        return original(ctx)

    router.run = fail_on_contacts
    try:
        folder = graph.folder()
        response = graph.get(contacts_url(folder))
    finally:
        router.run = original

    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "generalException"
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    assert graph.get(contacts_url(folder)).status_code == 200
