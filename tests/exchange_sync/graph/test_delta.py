import threading

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


DELTA_ROUTE = "GET /users/{upn}/contactFolders/{fid}/contacts/delta"


def delta_requests(emulator) -> int:
    return emulator.emulator.stats()["by_route"].get(DELTA_ROUTE, 0)


class RecordingBudget:
    """A MailboxBudget that grants everything and remembers what was taken, and in which thread."""

    def __init__(self) -> None:
        self.taken: list[tuple[int, int]] = []

    def take(self, *, mailbox: str, requests: int) -> float:
        self.taken.append((requests, threading.get_ident()))
        return 0.0

    def block(self, *, mailbox: str, seconds: float) -> None:
        raise AssertionError("nothing is throttled here")


def test_a_round_from_a_link_read_ahead_starts_with_the_page_already_asked_for(
    emulator, make_client, mailbox, folder_id
):
    budget = RecordingBudget()
    client = make_client(budget=budget)
    outlook = emulator.emulator.outlook(mailbox)
    pages, _, _ = run_round(client, mailbox, folder_id, None)
    edited = outlook.create_contact(folder_id, {"givenName": "A"})["id"]
    emulator.emulator.reset_stats()
    budget.taken.clear()

    client.read_ahead_delta(mailbox=mailbox, delta_link=pages[-1].delta_link)
    client.get_contact_folder(mailbox=mailbox, folder_id=folder_id)  # what a Sync checks meanwhile
    _, changed, removed = run_round(client, mailbox, folder_id, pages[-1].delta_link)

    assert (set(changed), removed) == ({edited}, set())
    assert delta_requests(emulator) == 1
    # Both requests were paid for, each in the calling thread, never in the read-ahead's.
    assert budget.taken == [(1, threading.get_ident()), (1, threading.get_ident())]


def test_a_read_ahead_serves_only_the_next_round_from_its_own_link(emulator, client, mailbox, folder_id):
    pages, _, _ = run_round(client, mailbox, folder_id, None)
    emulator.emulator.reset_stats()

    client.read_ahead_delta(mailbox=mailbox, delta_link=pages[-1].delta_link)
    _, changed, _ = run_round(client, mailbox, folder_id, None)  # a new round: the folder was switched
    run_round(client, mailbox, folder_id, pages[-1].delta_link)
    run_round(client, mailbox, folder_id, pages[-1].delta_link)  # used once only

    assert changed == {}
    assert delta_requests(emulator) == 1 + 1 + 1  # the read-ahead, the new round, the last round


def test_a_read_aheads_error_is_raised_by_the_round_that_uses_it(emulator, client, mailbox, folder_id):
    pages, _, _ = run_round(client, mailbox, folder_id, None)
    emulator.emulator.configure(expire_delta_tokens_now=True)

    client.read_ahead_delta(mailbox=mailbox, delta_link=pages[-1].delta_link)

    with pytest.raises(SyncStateExpired):
        run_round(client, mailbox, folder_id, pages[-1].delta_link)
