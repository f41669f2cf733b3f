"""Smoke test of `manage.py bench_pass`: the real benchmark (U = 200, C = 200, K = 8) is too slow for
the suite, so this runs a pass over 4 users x 3 contacts on a zero-latency profile, on a scratch
database of the test run's kind, and checks the figures' shape and counts, never times."""

import json

import pytest
from django.core.management import call_command
from django.db import connection

from harness import pass_bench

pytestmark = pytest.mark.slow

USERS, CONTACTS, WORKERS = 4, 3, 2


def scratch_database_url() -> str:
    """A PostgreSQL database beside the test database when the tests run on PostgreSQL (the command
    creates and drops it); else "" for the command's scratch SQLite file."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return ""
    server = f"{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{server}/{db['NAME']}_bench"


@pytest.mark.django_db
def test_a_small_pass_reports_every_figure_and_syncs_every_user_once(tmp_path):
    out = tmp_path / "pass.json"
    call_command(
        "bench_pass",
        users=USERS,
        contacts=CONTACTS,
        workers=WORKERS,
        database_url=scratch_database_url(),
        json=out,
        latency_ms=0.0,
        item_latency_ms=0.0,
    )
    figures = json.loads(out.read_text())
    assert set(figures) == set(pass_bench.PassResult.__dataclass_fields__)
    assert (figures["users"], figures["contacts"], figures["workers"]) == (USERS, CONTACTS, WORKERS)
    assert figures["users_synced"] == USERS
    assert figures["graph_inner_requests"] == USERS * CONTACTS  # each contact created once, in $batches
    assert figures["throttled"] == figures["inner_throttled"] == 0
    assert figures["db_queries_per_user"] > 0
    assert figures["pass_bound_s"] == 0 and figures["ratio_to_bound"] is None  # zero latency
    assert figures["sum_user_runs_s"] >= figures["longest_user_run_s"] > 0
    # The everyday pass: the pass's own runs send each user's edited contact, no live run beat them to it.
    assert figures["steady_users_synced"] == USERS
    assert figures["steady_graph_inner_requests"] == USERS * figures["steady_changed_contacts"]
    assert figures["read_back_sum_user_runs_s"] > 0


def test_a_database_whose_name_does_not_say_bench_is_refused():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="contains 'bench'"):
        call_command("bench_pass", users=1, contacts=1, workers=1, database_url="postgres://u@h:5432/bcsync")
