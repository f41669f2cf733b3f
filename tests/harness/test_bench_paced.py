"""Smoke test of `manage.py bench_paced`: a first Full Sync of 300 contacts against an emulator
limited to 300 requests per 2 s, with the product's budget set to match. Checks what it reports and
that pacing kept the run clear of the limit; never times."""

import json

from django.core.management import call_command

N = 300


def test_the_paced_first_sync_is_never_throttled_and_reports_its_budget_bound(tmp_path):
    out = tmp_path / "paced.json"
    call_command(
        "bench_paced",
        size=N,
        rate_limit=300,
        rate_window_s=2.0,
        latency_ms=0.0,
        item_latency_ms=0.0,
        json=out,
    )
    result = json.loads(out.read_text())
    assert result["contacts"] == N
    assert result["throttled"] == 0
    assert result["inner_requests"] == N  # one create per contact, each counted
    assert result["mailbox_requests"] >= N
    assert (result["burst"], result["rate_per_s"]) == (27.0, 121.5)
    assert result["bound_s"] == round((result["mailbox_requests"] - 27.0) / 121.5, 1)
    assert result["slices"] == 1
