"""Smoke test of `manage.py bench_sync`: the real benchmark (make bench) is too slow for the suite, so this
runs it at N=50 and N=200 on a zero-latency profile and checks the shape and sanity of the numbers,
never times."""

import json

import pytest
from django.core.management import call_command

N = 50
LARGER = 200
SCENARIOS = {"initial_full", "quiet_sync", "one_percent_sync", "resync_full"}
KEYS = {
    "scenario",
    "n",
    "wall_s",
    "graph_requests",
    "graph_inner_requests",
    "db_queries",
    "peak_rss_mb",
    "lower_bound_s",
    "ratio_to_bound",
}


@pytest.fixture(scope="module")
def all_rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    call_command(
        "bench_sync", sizes=f"{N},{LARGER}", json=out, latency_ms=0.0, item_latency_ms=0.0, max_concurrency=4
    )
    return {(row["scenario"], row["n"]): row for row in json.loads(out.read_text())}


@pytest.fixture(scope="module")
def rows(all_rows):
    return {scenario: row for (scenario, n), row in all_rows.items() if n == N}


def test_every_scenario_is_reported_with_exactly_the_documented_fields(rows):
    assert set(rows) == SCENARIOS
    for row in rows.values():
        assert set(row) == KEYS
        assert row["n"] == N
        assert row["wall_s"] > 0
        assert row["peak_rss_mb"] > 0
        assert row["lower_bound_s"] == 0  # zero latency: no time is unavoidable
        assert row["ratio_to_bound"] is None


def test_initial_full_sync_writes_every_contact_once_in_batches(rows):
    initial = rows["initial_full"]
    assert initial["graph_inner_requests"] == N
    assert initial["graph_requests"] <= -(-N // 20) + 4  # the batches, plus folder and delta calls


def test_quiet_sync_costs_a_folder_check_and_one_delta_page(rows):
    quiet = rows["quiet_sync"]
    assert quiet["graph_requests"] <= 3
    assert quiet["graph_inner_requests"] == 0


def test_one_percent_sync_writes_only_the_business_central_edit(rows):
    one_percent = rows["one_percent_sync"]
    assert one_percent["graph_inner_requests"] == 1  # N // 100 edits on each side; Outlook's go to BC
    assert one_percent["graph_requests"] <= 1 + 3


def test_full_resync_of_a_synced_folder_writes_nothing(rows):
    assert rows["resync_full"]["graph_inner_requests"] == 0


def test_database_queries_of_a_full_sync_grow_per_batch_not_per_contact(all_rows):
    # 150 more contacts are 7.5 more $batch calls: a handful of queries each, far below one per contact.
    grown = all_rows[("initial_full", LARGER)]["db_queries"] - all_rows[("initial_full", N)]["db_queries"]
    assert grown <= (LARGER - N) // 20 * 6


def test_database_queries_of_a_quiet_sync_do_not_grow_with_the_folder(all_rows):
    assert all_rows[("quiet_sync", LARGER)]["db_queries"] == all_rows[("quiet_sync", N)]["db_queries"]
