"""Throttling, faults and the per-mailbox concurrency limit, judged by the emulator's counters."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from exchange_sync.graph import Throttled, contact_create_request


def test_work_completes_through_injected_429s_and_503s(emulator, make_client, mailbox):
    client = make_client(max_retries=30)
    folder_id = client.create_contact_folder(mailbox=mailbox, display_name="Business Central")["id"]
    emulator.emulator.configure(fault_rate_429=0.3, fault_rate_503=0.1, retry_after_s=0, fault_seed=7)
    requests = [
        contact_create_request(
            id=str(n), mailbox=mailbox, folder_id=folder_id, contact={"givenName": "P", "surname": f"S{n:03}"}
        )
        for n in range(200)
    ]

    results = client.batch(mailbox=mailbox, requests=requests)
    listed = list(
        client.list_contacts(mailbox=mailbox, folder_id=folder_id, select=["surname"], page_size=50)
    )
    delta = list(client.delta(mailbox=mailbox, folder_id=folder_id, delta_link=None, page_size=50))

    assert [result.status for result in results] == [201] * 200
    expected = Counter(f"S{n:03}" for n in range(200))
    assert Counter(contact["surname"] for contact in listed) == expected
    assert sorted(item["id"] for page in delta for item in page.changed) == sorted(
        r.body["id"] for r in results
    )
    assert delta[-1].delta_link
    stats = emulator.emulator.stats()
    assert stats["by_status"].get("429", 0) > 0
    assert stats["inner_by_status"].get("429", 0) > 0
    assert stats["faulted"] > 0  # whole requests (the $batch calls, list and delta pages) were failed
    assert stats["inner_faulted"] > 0  # and items inside $batch calls
    assert client.batch_items_sent > 200  # only the failed items were resent


def test_client_never_has_more_than_four_requests_in_flight_per_mailbox(emulator, make_client, mailbox):
    emulator.emulator.configure(latency_ms=40)
    client = make_client()
    folder_id = client.create_contact_folder(mailbox=mailbox, display_name="Business Central")["id"]
    requests = [
        contact_create_request(
            id=str(n), mailbox=mailbox, folder_id=folder_id, contact={"givenName": f"P{n}"}
        )
        for n in range(120)
    ]

    # Twelve threads of reads plus six $batch calls: work for far more than four at a time.
    with ThreadPoolExecutor(max_workers=12) as pool:
        batch = pool.submit(client.batch, mailbox=mailbox, requests=requests)
        reads = [pool.submit(client.check_mailbox, mailbox=mailbox) for _ in range(24)]
        for future in [batch, *reads]:
            future.result()

    stats = emulator.emulator.stats()
    assert stats["throttled"] == 0
    assert stats["inner_throttled"] == 0
    assert all(result.status == 201 for result in batch.result())


def test_without_the_limit_the_same_reads_are_throttled(emulator, make_client, mailbox):
    # The control for the test above: the workload really does exceed the emulator's limit of four.
    emulator.emulator.configure(latency_ms=40)
    client = make_client(max_in_flight=12, max_retries=0)

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = [pool.submit(client.check_mailbox, mailbox=mailbox) for _ in range(24)]
    errors = [future.exception() for future in outcomes]

    assert any(isinstance(error, Throttled) for error in errors)
    assert emulator.emulator.stats()["throttled"] > 0
