"""contactFolders: list (children of Contacts only), $filter/$top/$select, create, duplicates, delete."""

from __future__ import annotations

from .conftest import ADA


def test_list_starts_empty_and_shows_only_children_of_contacts(graph):
    response = graph.get(f"/users/{ADA}/contactFolders")
    assert response.status_code == 200
    assert response.json()["value"] == []
    folder_id = graph.folder()
    graph.post(f"/users/{ADA}/contactFolders/{folder_id}/childFolders", json={"displayName": "Nested"})
    folders = graph.get(f"/users/{ADA}/contactFolders").json()["value"]
    assert [f["displayName"] for f in folders] == ["Business Central"]
    root = graph.server.emulator.outlook(ADA).list_folders()[0]
    assert folders[0]["parentFolderId"] == root["id"]
    assert root["displayName"] == "Contacts"


def test_create_returns_201_with_folder(graph):
    response = graph.post(f"/users/{ADA}/contactFolders", json={"displayName": "Business Central"})
    assert response.status_code == 201
    body = response.json()
    assert body["displayName"] == "Business Central"
    assert body["@odata.context"].startswith("https://graph.microsoft.com/v1.0/$metadata#users(")
    assert graph.get(f"/users/{ADA}/contactFolders/{body['id']}").json()["id"] == body["id"]


def test_duplicate_name_is_error_folder_exists(graph):
    graph.folder()
    response = graph.post(f"/users/{ADA}/contactFolders", json={"displayName": "business central"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ErrorFolderExists"
    assert response.json()["error"]["message"] == "A folder with the specified name already exists."


def test_filter_by_display_name_with_quote_escaping(graph):
    graph.folder(name="O'Brien's")
    graph.folder(name="Other")
    response = graph.get(f"/users/{ADA}/contactFolders", params={"$filter": "displayName eq 'O''Brien''s'"})
    assert [f["displayName"] for f in response.json()["value"]] == ["O'Brien's"]
    bad = graph.get(f"/users/{ADA}/contactFolders", params={"$filter": "displayName gt 'x'"})
    assert bad.status_code == 400


def test_top_select_and_paging(graph):
    for index in range(3):
        graph.folder(name=f"F{index}")
    first = graph.get(f"/users/{ADA}/contactFolders", params={"$top": "2", "$select": "displayName"}).json()
    assert [set(f) for f in first["value"]] == [{"id", "displayName"}] * 2
    assert "$skip=2" in first["@odata.nextLink"]
    second = graph.get(first["@odata.nextLink"]).json()
    assert [f["displayName"] for f in second["value"]] == ["F2"]
    assert "@odata.nextLink" not in second


def test_delete_folder_and_its_contacts(graph):
    folder_id = graph.folder()
    contact = graph.create(folder_id, givenName="Ada")
    assert graph.delete(f"/users/{ADA}/contactFolders/{folder_id}").status_code == 204
    assert graph.get(f"/users/{ADA}/contactFolders/{folder_id}").status_code == 404
    assert graph.get(f"/users/{ADA}/contacts/{contact['id']}").status_code == 404


def test_default_folder_cannot_be_deleted(graph):
    root = graph.server.emulator.outlook(ADA).list_folders()[0]["id"]
    assert graph.delete(f"/users/{ADA}/contactFolders/{root}").status_code == 403


def test_unknown_and_malformed_folder_ids(graph):
    folder_id = graph.folder()
    graph.delete(f"/users/{ADA}/contactFolders/{folder_id}")
    gone = graph.get(f"/users/{ADA}/contactFolders/{folder_id}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "ErrorItemNotFound"
    malformed = graph.get(f"/users/{ADA}/contactFolders/not-an-id!")
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "ErrorInvalidIdMalformed"


def test_path_segments_are_case_insensitive(graph):
    folder_id = graph.folder()
    assert graph.get(f"/USERS/{ADA}/contactfolders/{folder_id}/CONTACTS").status_code == 200


def test_unknown_mailbox_and_rest_disabled_mailbox(graph, emulator):
    unknown = graph.get("/users/nobody@contoso.test/contactFolders")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "ErrorInvalidUser"
    assert unknown.json()["error"]["message"] == "The requested user 'nobody@contoso.test' is invalid."
    emulator.emulator.add_mailbox("onprem@contoso.test", rest_enabled=False)
    disabled = graph.get("/users/onprem@contoso.test/contactFolders")
    assert disabled.status_code == 404
    assert disabled.json()["error"]["code"] == "MailboxNotEnabledForRESTAPI"


def test_me_needs_delegated_auth(graph):
    response = graph.get("/me/contactFolders")
    assert response.status_code == 400
