import pytest

from exchange_sync.graph import (
    BatchRequest,
    ItemNotFound,
    PreconditionFailed,
    contact_create_request,
    contact_delete_request,
    contact_update_request,
)


def person(number: int) -> dict:
    return {"givenName": f"Person{number}", "emailAddresses": [{"address": f"person{number}@example.com"}]}


def create_contacts(client, mailbox, folder_id, count: int) -> list[dict]:
    requests = [
        contact_create_request(id=f"seed{n}", mailbox=mailbox, folder_id=folder_id, contact=person(n))
        for n in range(count)
    ]
    return [result.body for result in client.batch(mailbox=mailbox, requests=requests)]


def test_mixed_batch_of_45_returns_every_result_in_input_order_with_failures_per_item(
    emulator, client, mailbox, folder_id
):
    existing = create_contacts(client, mailbox, folder_id, 15)
    stale, gone = existing[0], existing[14]
    emulator.emulator.outlook(mailbox).update_contact(stale["id"], {"jobTitle": "Changed in Outlook"})
    emulator.emulator.outlook(mailbox).delete_contact(gone["id"])
    creates = [
        contact_create_request(id=f"c{n}", mailbox=mailbox, folder_id=folder_id, contact=person(100 + n))
        for n in range(30)
    ]
    updates = [
        contact_update_request(
            id=f"u{n}",
            mailbox=mailbox,
            folder_id=folder_id,
            contact_id=contact["id"],
            changes={"jobTitle": "Synced"},
            if_match=contact["@odata.etag"],
        )
        for n, contact in enumerate(existing[:10])
    ]
    deletes = [
        contact_delete_request(id=f"d{n}", mailbox=mailbox, folder_id=folder_id, contact_id=contact["id"])
        for n, contact in enumerate(existing[10:])
    ]
    requests = [*creates[:10], *updates, *creates[10:20], *deletes, *creates[20:]]
    sent_before = client.requests_sent

    results = client.batch(mailbox=mailbox, requests=requests)

    assert [result.id for result in results] == [request.id for request in requests]
    by_id = {result.id: result for result in results}
    assert {by_id[f"c{n}"].status for n in range(30)} == {201}
    assert all(by_id[f"c{n}"].error is None and by_id[f"c{n}"].body["id"] for n in range(30))
    assert isinstance(by_id["u0"].error, PreconditionFailed)
    assert {by_id[f"u{n}"].status for n in range(1, 10)} == {200}
    assert {by_id[f"d{n}"].status for n in range(4)} == {204}
    assert isinstance(by_id["d4"].error, ItemNotFound)
    assert client.requests_sent - sent_before == 3  # 45 requests in three $batch calls
    listed = list(client.list_contacts(mailbox=mailbox, folder_id=folder_id, select=["givenName"]))
    assert len(listed) == 15 - 5 + 30


def test_batch_iter_yields_each_chunk_as_it_lands(client, mailbox, folder_id):
    requests = [
        contact_create_request(id=str(n), mailbox=mailbox, folder_id=folder_id, contact=person(n))
        for n in range(45)
    ]

    chunks = list(client.batch_iter(mailbox=mailbox, requests=requests))

    assert sorted(len(chunk) for chunk in chunks) == [5, 20, 20]
    for chunk in chunks:
        first = int(chunk[0].id)
        assert [result.id for result in chunk] == [str(n) for n in range(first, first + len(chunk))]
    assert client.batch_items_sent == 45


def test_duplicate_ids_are_refused_before_anything_is_sent(client, mailbox):
    requests = [
        BatchRequest(id="a", method="GET", url="/users/x"),
        BatchRequest(id="A", method="GET", url="/users/y"),
    ]

    with pytest.raises(ValueError, match="Duplicate batch request id"):
        client.batch(mailbox=mailbox, requests=requests)

    assert client.requests_sent == 0
