import pytest

from exchange_sync.graph import SyncStateExpired


def run_round(client, mailbox, folder_id, delta_link, page_size=200):
    pages = list(
        client.delta(
            mailbox=mailbox,
            folder_id=folder_id,
            delta_link=delta_link,
            select=["givenName"],
            page_size=page_size,
        )
    )
    changed = {item["id"]: item for page in pages for item in page.changed}
    removed = {item_id for page in pages for item_id in page.removed_ids}
    return pages, changed, removed


def test_initial_round_pages_through_the_folder_and_ends_with_a_delta_link(
    emulator, client, mailbox, folder_id
):
    outlook = emulator.emulator.outlook(mailbox)
    ids = {outlook.create_contact(folder_id, {"givenName": f"P{n}"})["id"] for n in range(12)}

    pages, changed, removed = run_round(client, mailbox, folder_id, None, page_size=5)

    assert len(pages) >= 3
    assert set(changed) == ids
    assert removed == set()
    assert all(page.delta_link is None for page in pages[:-1])
    assert pages[-1].delta_link.startswith("https://graph.microsoft.com/")


def test_incremental_round_reports_changes_and_removals_only(emulator, client, mailbox, folder_id):
    outlook = emulator.emulator.outlook(mailbox)
    kept, edited, deleted = (outlook.create_contact(folder_id, {"givenName": name})["id"] for name in "ABC")
    pages, _, _ = run_round(client, mailbox, folder_id, None)

    outlook.update_contact(edited, {"givenName": "B2"})
    outlook.delete_contact(deleted)
    added = outlook.create_contact(folder_id, {"givenName": "D"})["id"]
    pages, changed, removed = run_round(client, mailbox, folder_id, pages[-1].delta_link)

    assert set(changed) == {edited, added}
    assert changed[edited]["givenName"] == "B2"
    assert removed == {deleted}
    assert kept not in changed
    _, changed, removed = run_round(client, mailbox, folder_id, pages[-1].delta_link)
    assert (changed, removed) == ({}, set())


def test_expired_delta_link_raises_sync_state_expired(emulator, client, mailbox, folder_id):
    pages, _, _ = run_round(client, mailbox, folder_id, None)
    emulator.emulator.configure(expire_delta_tokens_now=True)

    with pytest.raises(SyncStateExpired):
        run_round(client, mailbox, folder_id, pages[-1].delta_link)
