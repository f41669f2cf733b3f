"""/_emulator/* endpoints and the EmulatorControl client: knobs, stats, resets, mailboxes, back door."""

from __future__ import annotations

import pytest

from m365_emulator import GraphError, serve_in_thread
from m365_emulator.control import EmulatorControl
from m365_emulator.schema import validate_contact_shape, validate_folder_shape

from .conftest import ADA, Graph, make_config


@pytest.fixture
def control(emulator):
    return EmulatorControl(emulator.url)


def test_config_read_and_write(control, emulator):
    assert control.config()["max_concurrency"] == 4
    updated = control.configure(latency_ms=5, fault_rate_503="0.5", delta_replay="true")
    assert updated["latency_ms"] == 5.0
    assert emulator.emulator.config.fault_rate_503 == 0.5
    assert emulator.emulator.config.delta_replay is True
    with pytest.raises(GraphError) as failure:
        control.configure(no_such_knob=1)
    assert failure.value.status == 400
    with pytest.raises(GraphError):
        control.configure(mailboxes=["x@y"])


def test_defaults_match_the_brief():
    from m365_emulator import EmulatorConfig

    config = EmulatorConfig()
    assert (config.tenant, config.client_id, config.client_secret) == (
        "bcsync-demo",
        "bcsync-local",
        "local-emulator-secret",
    )
    assert (
        config.latency_ms,
        config.max_concurrency,
        config.rate_limit,
        config.rate_window_s,
        config.token_lifetime_s,
    ) == (0, 4, 10_000, 600, 3600)


def test_stats_and_reset(control, graph):
    graph.get(f"/users/{ADA}/contactFolders")
    stats = control.stats()
    assert stats["graph_requests"] == 1
    assert stats["token_requests"] == 1
    assert stats["by_route"]["GET /users/{upn}/contactFolders"] == 1
    control.reset_stats()
    assert control.stats()["requests"] == 0


def test_back_door_is_not_counted_and_not_faulted(control, graph):
    control.reset_stats()
    control.configure(fault_rate_503=1.0)
    outlook = control.outlook(ADA)
    contact = outlook.create_contact("Contacts", {"givenName": "Ada"})
    assert outlook.list_contacts("Contacts")[0]["id"] == contact["id"]
    assert control.stats()["requests"] == 0


def test_back_door_operations(control, graph):
    graph.folder()
    outlook = control.outlook(ADA)
    folders = outlook.list_folders()
    assert [f["displayName"] for f in folders] == ["Contacts", "Business Central"]
    assert all(validate_folder_shape(f) == [] for f in folders)
    contact = outlook.create_contact(
        "business central",
        {"givenName": "Ada", "singleValueExtendedProperties": [{"id": "String 0x3A24", "value": "fax"}]},
    )
    assert validate_contact_shape(contact) == []
    assert contact["singleValueExtendedProperties"] == [{"id": "String 0x3A24", "value": "fax"}]
    updated = outlook.update_contact(contact["id"], {"surname": "Lovelace"})
    assert updated["displayName"] == "Ada Lovelace"
    assert updated["changeKey"] != contact["changeKey"]
    assert outlook.get_contact(contact["id"])["surname"] == "Lovelace"
    moved = outlook.move_contact(contact["id"], "Contacts")
    assert moved["parentFolderId"] == folders[0]["id"]
    outlook.delete_contact(contact["id"])
    assert outlook.list_contacts("Contacts") == []
    with pytest.raises(GraphError) as failure:
        outlook.get_contact(contact["id"])
    assert failure.value.status == 404
    assert outlook.create_folder("Private")["displayName"] == "Private"


def test_back_door_validates_like_graph(control):
    with pytest.raises(GraphError) as failure:
        control.outlook(ADA).create_contact("Contacts", {"businessPhones": ["1", "2", "3"]})
    assert failure.value.status == 400


def test_reset_wipes_back_to_configured_mailboxes(control, graph):
    graph.folder()
    control.add_mailbox("extra@contoso.test")
    control.reset()
    assert sorted(m["upn"] for m in control.mailboxes()) == ["ada@contoso.test", "bob@contoso.test"]
    assert graph.get(f"/users/{ADA}/contactFolders").json()["value"] == []


def test_a_held_outlook_and_delta_link_see_the_reset(emulator, graph):
    outlook = emulator.emulator.outlook(ADA)
    folder = graph.folder()
    outlook.create_contact(folder, {"givenName": "Before"})
    delta = graph.get(f"/users/{ADA}/contactFolders/{folder}/contacts/delta").json()["@odata.deltaLink"]
    emulator.emulator.reset()
    assert [f["displayName"] for f in outlook.list_folders()] == ["Contacts"]
    assert graph.get(delta).json()["error"]["code"] == "ErrorItemNotFound"  # its folder is gone
    again = outlook.create_folder("Business Central")
    assert outlook.create_contact(again["id"], {"givenName": "After"})["givenName"] == "After"


def test_add_mailbox(control, graph):
    control.add_mailbox("new@contoso.test")
    assert graph.get("/users/new@contoso.test/contactFolders").status_code == 200
    control.add_mailbox("legacy@contoso.test", rest_enabled=False)
    assert graph.get("/users/legacy@contoso.test/contactFolders").json()["error"]["code"] == (
        "MailboxNotEnabledForRESTAPI"
    )


def test_in_process_outlook_matches_remote(emulator, control):
    local = emulator.emulator.outlook(ADA).create_contact("Contacts", {"givenName": "Local"})
    assert control.outlook(ADA).get_contact(local["id"]) == local


def test_unknown_control_endpoint_is_404(control):
    with pytest.raises(GraphError) as failure:
        control.call("GET", "/nope")
    assert failure.value.status == 404


def test_every_address_in_the_mailbox_domain_is_a_mailbox_created_on_first_use(tmp_path):
    state = tmp_path / "state.json"
    first = serve_in_thread(make_config(mailboxes=[], mailbox_domain="Demo.test", state_file=str(state)))
    try:
        graph = Graph(first)
        assert graph.get("/users/sally@demo.test/contactFolders").status_code == 200
        assert (
            graph.post("/users/SAM@DEMO.TEST/contactFolders", json={"displayName": "BC"}).status_code == 201
        )
        outlook = first.emulator.outlook("nina@demo.test")  # a person opening Outlook for the first time
        assert [f["displayName"] for f in outlook.list_folders()] == ["Contacts"]
        for elsewhere in ("x@other.test", "x@sub.demo.test", "@demo.test"):
            response = graph.get(f"/users/{elsewhere}/contactFolders")
            assert response.json()["error"]["code"] == "ErrorInvalidUser", elsewhere
        upns = ["sally@demo.test", "SAM@DEMO.TEST", "nina@demo.test"]
        assert [m["upn"] for m in first.emulator.mailboxes()] == upns
    finally:
        first.stop()
    second = serve_in_thread(make_config(mailboxes=[], state_file=str(state)))
    try:
        assert [m["folders"] for m in second.emulator.mailboxes()] == [1, 2, 1]  # kept, not recreated
    finally:
        second.stop()
