import pytest

from exchange_sync.graph import FolderExists, MailboxNotFound


def test_find_create_and_get_a_folder(client, mailbox):
    assert client.find_contact_folder(mailbox=mailbox, display_name="Business Central") is None

    created = client.create_contact_folder(mailbox=mailbox, display_name="Business Central")

    assert client.find_contact_folder(mailbox=mailbox, display_name="Business Central")["id"] == created["id"]
    assert (
        client.get_contact_folder(mailbox=mailbox, folder_id=created["id"])["displayName"]
        == "Business Central"
    )


def test_creating_a_folder_someone_else_just_created_returns_theirs(emulator, client, mailbox):
    theirs = emulator.emulator.outlook(mailbox).create_folder("Business Central")

    ours = client.create_contact_folder(mailbox=mailbox, display_name="Business Central")

    assert ours["id"] == theirs["id"]


def test_folder_names_with_quotes_are_escaped_in_the_filter(client, mailbox):
    created = client.create_contact_folder(mailbox=mailbox, display_name="O'Brien's & Co")

    assert client.find_contact_folder(mailbox=mailbox, display_name="O'Brien's & Co")["id"] == created["id"]
    assert client.find_contact_folder(mailbox=mailbox, display_name="O'Brien") is None


def test_a_folder_that_is_not_in_the_mailbox_is_none(emulator, client, mailbox):
    emulator.emulator.add_mailbox("grace@contoso.test")
    elsewhere = emulator.emulator.outlook("grace@contoso.test").create_folder("Business Central")

    assert client.get_contact_folder(mailbox=mailbox, folder_id=elsewhere["id"]) is None


def test_check_mailbox_passes_for_a_mailbox_that_answers(client, mailbox):
    client.check_mailbox(mailbox=mailbox)


@pytest.mark.parametrize("rest_enabled", [True, False])
def test_unknown_or_unlicensed_mailbox_raises_mailbox_not_found_naming_the_fix(
    emulator, client, rest_enabled
):
    upn = "nobody@contoso.test"
    if not rest_enabled:
        emulator.emulator.add_mailbox(upn, rest_enabled=False)

    with pytest.raises(MailboxNotFound) as raised:
        client.check_mailbox(mailbox=upn)

    assert raised.value.status == 404
    assert upn in str(raised.value)
    assert "check the Microsoft 365 email on the User Card" in str(raised.value)


def test_renaming_a_folder_keeps_its_id_and_contacts(emulator, client, mailbox):
    folder = client.create_contact_folder(mailbox=mailbox, display_name="Business Central")
    contact = client.create_contact(mailbox=mailbox, folder_id=folder["id"], contact={"givenName": "Ann"})

    renamed = client.rename_contact_folder(mailbox=mailbox, folder_id=folder["id"], display_name="BC")

    assert renamed["id"] == folder["id"]
    assert client.find_contact_folder(mailbox=mailbox, display_name="BC")["id"] == folder["id"]
    assert client.find_contact_folder(mailbox=mailbox, display_name="Business Central") is None
    assert client.get_contact(mailbox=mailbox, folder_id=folder["id"], contact_id=contact["id"])


def test_renaming_onto_a_sibling_s_name_raises_folder_exists(client, mailbox):
    folder = client.create_contact_folder(mailbox=mailbox, display_name="Business Central")
    client.create_contact_folder(mailbox=mailbox, display_name="BC")

    with pytest.raises(FolderExists):
        client.rename_contact_folder(mailbox=mailbox, folder_id=folder["id"], display_name="BC")


def test_a_deleted_folder_is_gone(client, mailbox):
    folder = client.create_contact_folder(mailbox=mailbox, display_name="Old")

    client.delete_contact_folder(mailbox=mailbox, folder_id=folder["id"])

    assert client.get_contact_folder(mailbox=mailbox, folder_id=folder["id"]) is None
