"""Smoke test of `manage.py bench_quiet` at N=40 and N=400 on a zero-latency profile: the seeded folder
is synced quietly in 2 Graph requests and the same number of statements at both sizes, while the
reading path reads more. Never times."""

import json

from django.core.management import call_command


def test_bench_quiet_reports_two_graph_requests_and_the_same_queries_at_every_size(tmp_path):
    out = tmp_path / "quiet.json"
    call_command(
        "bench_quiet",
        sizes="40,400",
        repeat=1,
        json=out,
        latency_ms=0.0,
        item_latency_ms=0.0,
        max_concurrency=4,
    )
    rows = {(row["scenario"], row["n"]): row for row in json.loads(out.read_text())}

    assert set(rows) == {(s, n) for s in ("quiet_sync", "quiet_sync_reading") for n in (40, 400)}
    assert {row["graph_requests"] for row in rows.values()} == {2}
    assert rows["quiet_sync", 40]["db_queries"] == rows["quiet_sync", 400]["db_queries"]
    assert rows["quiet_sync_reading", 40]["db_queries"] > rows["quiet_sync", 40]["db_queries"]
    assert all(row["ratio_to_bound"] is None for row in rows.values())  # zero latency: no bound
