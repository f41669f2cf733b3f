"""Per-mailbox concurrency, rate windows, item time and injected faults (asserted on counters, not clocks)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from m365_emulator.config import EmulatorConfig
from m365_emulator.throttle import Throttle
from tests.m365_emulator.transport import emulator_session

from .conftest import ADA, BOB, GRAPH, Graph


def fire(graph: Graph, url: str, count: int) -> list[int]:
    """`count` simultaneous GETs, each on its own connection."""
    headers = {"Authorization": f"Bearer {graph.token}"}

    def one(_: int) -> int:
        return emulator_session(graph.server.url).get(f"{GRAPH}{url}", headers=headers).status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_more_than_four_in_flight_per_mailbox_get_429(graph, emulator):
    emulator.emulator.configure(latency_ms=400)
    statuses = fire(graph, f"/users/{ADA}/contactFolders", 10)
    stats = emulator.emulator.stats()
    assert stats["throttled"] == statuses.count(429) > 0
    assert stats["by_status"]["429"] == statuses.count(429)
    assert statuses.count(200) + statuses.count(429) == 10
    assert stats["by_mailbox"][ADA] == 10


def test_concurrency_is_per_mailbox(graph, emulator):
    emulator.emulator.configure(latency_ms=300, max_concurrency=1)
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(fire, graph, f"/users/{ADA}/contactFolders", 1)
        second = pool.submit(fire, graph, f"/users/{BOB}/contactFolders", 1)
        assert first.result() == second.result() == [200]


def test_throttled_body_and_retry_after(graph, emulator):
    emulator.emulator.configure(max_concurrency=0, retry_after_s=3)
    response = graph.get(f"/users/{ADA}/contactFolders")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == "ApplicationThrottled"
    assert response.json()["error"]["message"] == "Application is over its MailboxConcurrency limit."


def test_rate_window_per_mailbox(graph, emulator):
    emulator.emulator.configure(rate_limit=3, rate_window_s=120)
    statuses = [graph.get(f"/users/{ADA}/contactFolders").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    blocked = graph.get(f"/users/{ADA}/contactFolders")
    assert 1 <= int(blocked.headers["Retry-After"]) <= 120
    assert graph.get(f"/users/{BOB}/contactFolders").status_code == 200
    assert emulator.emulator.stats()["throttled"] == 3


def test_fault_rates_are_roughly_honoured_and_seeded(graph, emulator):
    def run() -> list[int]:
        emulator.emulator.configure(fault_seed=42, fault_rate_503=0.2, fault_rate_504=0.1, fault_rate_429=0.1)
        return [graph.get(f"/users/{ADA}/contactFolders").status_code for _ in range(300)]

    first = run()
    assert 30 <= first.count(503) <= 90
    assert 10 <= first.count(504) <= 50
    assert 10 <= first.count(429) <= 50
    stats = emulator.emulator.stats()
    assert stats["faulted"] == 300 - first.count(200)
    assert run() == first  # same seed, same sequence


def test_fault_responses_look_like_graph(graph, emulator):
    emulator.emulator.configure(fault_rate_503=1.0, retry_after_s=0)
    response = graph.get(f"/users/{ADA}/contactFolders")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "serviceNotAvailable"
    assert response.headers["Retry-After"] == "0"
    emulator.emulator.configure(fault_rate_503=0.0, fault_rate_429=1.0)
    throttled = graph.get(f"/users/{ADA}/contactFolders")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "0"


def test_faults_never_hit_control_or_sign_in(graph, emulator):
    emulator.emulator.configure(fault_rate_503=1.0)
    assert graph.session.get(f"{emulator.url}/_emulator/stats").status_code == 200
    assert graph.fetch_token()
    assert emulator.emulator.outlook(ADA).list_folders()


def test_item_time_uses_the_earliest_free_of_four_workers():
    config = EmulatorConfig(item_latency_ms=1000)
    throttle = Throttle(config)
    start = 10**9  # far in the future of time.monotonic(), so the result depends on the model only
    assert throttle.charge_items(ADA, 8, start) == start + 2.0
    assert throttle.charge_items(ADA, 1, start) == start + 3.0  # all four workers busy until +2
    assert throttle.charge_items(BOB, 1, start) == start + 1.0  # another mailbox has its own workers
    assert throttle.charge_items(ADA, 0, start) == start


def test_item_latency_slows_requests_by_items(graph, emulator):
    folder = graph.folder()
    for index in range(3):
        graph.create(folder, givenName=f"C{index}")
    emulator.emulator.configure(item_latency_ms=1)
    page = graph.get(f"/users/{ADA}/contactFolders/{folder}/contacts")
    assert page.status_code == 200
    assert len(page.json()["value"]) == 3
