import pytest

from exchange_sync.graph import ItemNotFound, PreconditionFailed, contact_create_request

TAG = "String {6f9a1c2e-0000-4000-8000-000000000001} Name BcsyncContactNo"


def person(number: int) -> dict:
    return {
        "givenName": f"Person{number}",
        "surname": "Test",
        "emailAddresses": [{"address": f"person{number}@example.com", "name": f"Person{number}"}],
    }


def test_create_get_update_delete_one_contact(client, mailbox, folder_id):
    created = client.create_contact(mailbox=mailbox, folder_id=folder_id, contact=person(1))

    fetched = client.get_contact(mailbox=mailbox, folder_id=folder_id, contact_id=created["id"])
    updated = client.update_contact(
        mailbox=mailbox,
        folder_id=folder_id,
        contact_id=created["id"],
        changes={"jobTitle": "Engineer"},
        if_match=fetched["@odata.etag"],
    )
    client.delete_contact(mailbox=mailbox, folder_id=folder_id, contact_id=created["id"])

    assert fetched["givenName"] == "Person1"
    assert updated["jobTitle"] == "Engineer"
    assert updated["id"] == created["id"]
    assert client.get_contact(mailbox=mailbox, folder_id=folder_id, contact_id=created["id"]) is None
    with pytest.raises(ItemNotFound):
        client.delete_contact(mailbox=mailbox, folder_id=folder_id, contact_id=created["id"])


def test_update_with_a_stale_change_key_raises_precondition_failed(emulator, client, mailbox, folder_id):
    created = client.create_contact(mailbox=mailbox, folder_id=folder_id, contact=person(1))
    emulator.emulator.outlook(mailbox).update_contact(created["id"], {"jobTitle": "Changed in Outlook"})

    with pytest.raises(PreconditionFailed) as raised:
        client.update_contact(
            mailbox=mailbox,
            folder_id=folder_id,
            contact_id=created["id"],
            changes={"jobTitle": "Ours"},
            if_match=created["@odata.etag"],
        )

    assert raised.value.status == 412


def test_list_follows_next_links_across_pages(client, mailbox, folder_id):
    requests = [
        contact_create_request(id=str(n), mailbox=mailbox, folder_id=folder_id, contact=person(n))
        for n in range(25)
    ]
    client.batch(mailbox=mailbox, requests=requests)
    sent_before = client.requests_sent

    listed = list(
        client.list_contacts(mailbox=mailbox, folder_id=folder_id, select=["givenName"], page_size=10)
    )

    assert sorted(contact["givenName"] for contact in listed) == sorted(f"Person{n}" for n in range(25))
    assert client.requests_sent - sent_before == 3
    assert "surname" not in listed[0]


def test_extended_properties_come_back_when_expanded(client, mailbox, folder_id):
    contact = {**person(1), "singleValueExtendedProperties": [{"id": TAG, "value": "CT000001"}]}
    created = client.create_contact(mailbox=mailbox, folder_id=folder_id, contact=contact)

    [listed] = client.list_contacts(mailbox=mailbox, folder_id=folder_id, expand_extended=[TAG])
    fetched = client.get_contact(
        mailbox=mailbox, folder_id=folder_id, contact_id=created["id"], expand_extended=[TAG]
    )

    for found in (listed, fetched):
        assert [(p["id"].lower(), p["value"]) for p in found["singleValueExtendedProperties"]] == [
            (TAG.lower(), "CT000001")
        ]
