"""Proof under stress: the crash soak and the fault soak (harness/soak.py) as tests.

Each trial edits both sides at random, SIGKILLs `manage.py sync_contacts` processes at random moments
against an emulator process with latency (so kills land while reading, inside a $batch Graph has
already applied, and after links were written), reruns to completion, and checks: no duplicate email,
one to one field for field, no edit lost except Business Central winning a logged conflict, and a
quiet fault-free Sync afterwards. The child processes open this test's database (a file on SQLite,
the test database on PostgreSQL), hence transaction=True.

The seed is printed and in every failure message; replay with SOAK_SEED=<seed>.
"""

from __future__ import annotations

import os
import random

import pytest

from harness.soak import SoakOptions, Tally, run_soak

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _seed() -> int:
    return int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(10**6))


def _soak(options: SoakOptions) -> Tally:
    print(f"SOAK_SEED={options.seed}")
    return run_soak(options)


def test_crash_soak_kills_syncs_at_random_and_every_invariant_holds():
    seed = _seed()
    tally = _soak(SoakOptions(trials=20, seed=seed, contacts=15, edits=(2, 6)))

    assert tally.trials == 20, seed
    assert tally.kills >= 15, (seed, tally.line())
    # The kills spread over the run: some while reading, some after Graph applied a batch.
    assert tally.kill_phases["reading"] + tally.kill_phases["startup"] > 0, (seed, tally.line())
    assert tally.kill_phases["inside_batch"] + tally.kill_phases["after_write"] > 0, (seed, tally.line())
    assert tally.edits["bc_edit"] and tally.edits["outlook_edit"], (seed, tally.line())


def test_fault_soak_throttling_unavailability_and_expiring_tokens_and_delta_links():
    """30 % of Graph requests (top level and inside $batch) answer 429 with Retry-After: 0, 10 % answer
    503 with Retry-After: 0 (0 s keeps the test fast; the client honours the header either way);
    every trial starts with expired access tokens and an expired delta link, and more expire mid-run."""
    seed = _seed()
    tally = _soak(
        SoakOptions(
            trials=5,
            seed=seed,
            contacts=15,
            edits=(2, 6),
            faults=True,
            fault_rate_429=0.30,
            fault_rate_503=0.10,
            retry_after_s=0,
            max_kills=2,
        )
    )

    assert tally.trials == 5, seed
    assert tally.token_expiries >= 5 and tally.delta_expiries >= 5, (seed, tally.line())
    assert tally.kills >= 5, (seed, tally.line())
