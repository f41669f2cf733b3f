"""How requests are addressed: paths, query strings and $batch entries (no HTTP)."""

from exchange_sync.graph.client import (
    GraphClient,
    contact_create_request,
    contact_delete_request,
    contact_update_request,
    contacts_path,
)


def test_ids_and_mailboxes_are_encoded_as_path_segments():
    path = contacts_path("ada.l+x@contoso.test", "AAMk/Ad+b_c-d==")

    assert path == "/users/ada.l%2Bx@contoso.test/contactFolders/AAMk%2FAd%2Bb_c-d%3D%3D/contacts"


def test_builders_make_batch_requests_without_hand_built_urls():
    create = contact_create_request(
        id="1", mailbox="ada@contoso.test", folder_id="F=", contact={"givenName": "A"}
    )
    update = contact_update_request(
        id="2", mailbox="ada@contoso.test", folder_id="F=", contact_id="C_1", changes={}, if_match='W/"ck"'
    )
    delete = contact_delete_request(id="3", mailbox="ada@contoso.test", folder_id="F=", contact_id="C_1")

    assert (create.method, create.url) == ("POST", "/users/ada@contoso.test/contactFolders/F%3D/contacts")
    assert (update.method, update.url, update.headers) == (
        "PATCH",
        "/users/ada@contoso.test/contactFolders/F%3D/contacts/C_1",
        {"If-Match": 'W/"ck"'},
    )
    assert (delete.method, delete.body, delete.headers) == ("DELETE", None, None)


def test_batch_entries_carry_their_own_prefer_and_content_type():
    update = contact_update_request(
        id="2", mailbox="a@b.c", folder_id="F", contact_id="C", changes={"surname": "L"}, if_match='W/"x"'
    )
    delete = contact_delete_request(id="3", mailbox="a@b.c", folder_id="F", contact_id="C")

    assert GraphClient._batch_entry(update) == {
        "id": "2",
        "method": "PATCH",
        "url": "/users/a@b.c/contactFolders/F/contacts/C",
        "body": {"surname": "L"},
        "headers": {
            "Prefer": 'IdType="ImmutableId"',
            "Content-Type": "application/json",
            "If-Match": 'W/"x"',
        },
    }
    assert "body" not in GraphClient._batch_entry(delete)
