"""The quiet-sync benchmark behind `manage.py bench_quiet` (README.md, "Performance").

For each N, a child process seeds N linked contacts in bulk into a scratch database (SQLite, or a
PostgreSQL database created for it and dropped after) and writes the emulator's state file with the
folder already holding their copies; no Graph request is sent for them. The emulator then starts from
that file as a process of its own with the default profile, and a second child runs a Sync that reads
the whole folder once at zero latency (there is no delta link yet; it finds everything in step and
settles the setup), then times quiet Syncs at the profile's latency. The bound of a quiet Sync is its
two Graph requests (the folder, one empty delta page): twice the per-request latency.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from exchange_sync.graph import graph_client_from_settings
from exchange_sync.models import ContactSyncSetup, SyncMode, UserCard
from exchange_sync.services import contact_sync
from m365_emulator.config import EmulatorConfig
from m365_emulator.control import EmulatorControl, emulator_process
from m365_emulator.outlook import Outlook
from m365_emulator.persistence import write_atomically
from m365_emulator.state import Store

from .bench import MAILBOX, Profile, Result, _Scenarios
from .child import child_env, emulator_login, manage_py
from .seeding import seed_linked

SCENARIO = "quiet_sync"
# The path every quiet Sync took before the shortcut, measured once for comparison: the same Sync
# with the setup's settled_key cleared reads every link and every in-scope id.
READ_SCENARIO = "quiet_sync_reading"


def run_quiet_benchmark(
    *,
    sizes: Sequence[int],
    profile: Profile,
    repeat: int,
    postgres: str,
    progress: Callable[[str], None],
) -> list[Result]:
    """`postgres` is a server URL (postgres://user@host:port) to measure PostgreSQL on, "" for SQLite."""
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bcsync-bench-quiet-") as scratch:
        for n in sizes:
            var_dir = Path(scratch) / f"n{n}"
            var_dir.mkdir()
            with _scratch_database(postgres=postgres, n=n) as database_url:
                env = child_env(var_dir=var_dir, database_url=database_url, LOG_LEVEL="WARNING")
                state = var_dir / "emulator-state.json"
                progress(f"N={n}: seeding {n:,} linked contacts ({'PostgreSQL' if postgres else 'SQLite'})")
                _child(env, "--worker-seed", str(n), "--worker-state", str(state))
                with emulator_process("--state", str(state), *profile.emulator_args()) as url:
                    config = EmulatorConfig()
                    login = emulator_login(
                        url=url,
                        tenant=config.tenant,
                        client_id=config.client_id,
                        client_secret=config.client_secret,
                    )
                    out = var_dir / "results.json"
                    progress(f"N={n}: measuring against {url}")
                    _child(
                        {**env, **login},
                        "--worker-measure", str(n), "--worker-out", str(out), "--repeat", str(repeat),
                        "--latency-ms", str(profile.latency_ms),
                        "--item-latency-ms", str(profile.item_latency_ms),
                        "--max-concurrency", str(profile.max_concurrency),
                    )  # fmt: skip
                    results.extend(Result(**row) for row in json.loads(out.read_text()))
    return results


def _child(env: dict[str, str], *args: str) -> None:
    command = manage_py("bench_quiet", *args)
    subprocess.run(command, env=env, check=True, cwd=settings.BASE_DIR)  # noqa: S603 - our own command


@contextmanager
def _scratch_database(*, postgres: str, n: int) -> Iterator[str]:
    """A DATABASE_URL for a database of this benchmark's own: a PostgreSQL database created here and
    dropped after, or "" (the child's scratch SQLite file)."""
    if not postgres:
        yield ""
        return
    server = postgres.rstrip("/")
    name = f"bcsync_bench_quiet_{os.getpid()}_{n}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the children ---------------------------------------------------------------------------------


def seed(*, n: int, state_file: Path) -> None:
    """Migrate the scratch database, seed N linked contacts and write the emulator's state file."""
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(username="bench", email=MAILBOX)
    UserCard.objects.create(user=user, microsoft_365_email=MAILBOX)
    _, setup = contact_sync.setups_for(user=user)
    store = Store()
    store.add_mailbox(MAILBOX)
    seed_linked(setup=setup, outlook=Outlook(store, MAILBOX), mailbox=MAILBOX, n=n)
    write_atomically(str(state_file), store.to_json())


def measure(
    *, n: int, profile: Profile, repeat: int, emulator_url: str, progress: Callable[[str], None]
) -> list[Result]:
    """The settling Sync at zero latency, then `repeat` quiet Syncs and one that reads, at the profile's."""
    user = get_user_model().objects.get(username="bench")
    control = EmulatorControl(emulator_url)
    graph_client_from_settings().token_provider.access_token()
    bench = _Scenarios(user=user, n=n, profile=profile, control=control, progress=progress)
    control.configure(latency_ms=0, item_latency_ms=0)
    _, settling = bench._measure("settle", SyncMode.SYNC, reads=n, writes=0)
    bench._expect(settling)
    if not ContactSyncSetup.objects.get(user=user).settled_key:
        raise RuntimeError(f"The settling Sync did not settle the setup: {settling.summary_line()}")
    control.configure(latency_ms=profile.latency_ms, item_latency_ms=profile.item_latency_ms)
    quiet = [bench.quiet_sync() for _ in range(repeat)]
    for result in quiet:
        if result.graph_requests != 2:
            raise RuntimeError(f"A quiet Sync sent {result.graph_requests} Graph requests, not 2.")
    ContactSyncSetup.objects.filter(user=user).update(settled_key="")
    reading, run = bench._measure(READ_SCENARIO, SyncMode.SYNC, reads=0, writes=0)
    bench._expect(run)
    median = sorted(quiet, key=lambda r: r.wall_s)[len(quiet) // 2]
    progress(
        f"N={n}: quiet Sync wall s over {repeat} runs: median {median.wall_s:.3f}, "
        f"min {min(r.wall_s for r in quiet):.3f}, max {max(r.wall_s for r in quiet):.3f}, "
        f"mean {statistics.mean(r.wall_s for r in quiet):.3f}"
    )
    return [median, reading]
