"""The contact sync benchmark behind `manage.py bench_sync` (README.md, "Performance").

The parent process starts the Microsoft 365 emulator as a process of its own with a realistic profile,
then measures each size N in a fresh child process (`bench_sync --worker-size N`) whose database is a
throwaway SQLite file in a temporary directory. So the user's database is never opened, the emulator's
CPU never competes with the sync for the GIL, and each child's peak memory is its own.

In the child, four scenarios run against one mailbox, each timed around request_contact_sync +
run_contact_sync, as the sync_contacts command runs them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management import call_command
from django.db import connection

from contacts.models import Contact, ContactType
from exchange_sync.graph import graph_client_from_settings
from exchange_sync.graph.client import MAX_BATCH_SIZE
from exchange_sync.models import ContactLink, RunStatus, SyncMode, SyncRun, SyncTrigger, UserCard
from exchange_sync.services import contact_sync
from m365_emulator.config import EmulatorConfig
from m365_emulator.control import EmulatorControl, emulator_process

from .child import child_env, emulator_login, manage_py

MAILBOX = "bench@contoso.test"
SEED_CHUNK = 5000
SQLITE_PARAMS = 500  # ids per IN (...) clause: SQLite limits the parameters of one statement
# Graph answers contact delta in pages of at most 200, however many are asked for; the emulator too.
DELTA_PAGE_CAP = EmulatorConfig().delta_page_size
# Graph's 10,000 requests per 10 minutes per mailbox is switched off: at the default profile a single
# 10,000-contact Full Sync would spend ~8 minutes waiting out the window, which measures the limit, not
# the engine. README.md explains what the limit means for large folders.
RATE_LIMIT_OFF = 10**9


@dataclass(frozen=True)
class Profile:
    latency_ms: float
    item_latency_ms: float
    max_concurrency: int

    def emulator_args(self) -> list[str]:
        return [
            "--latency-ms", str(self.latency_ms),
            "--item-latency-ms", str(self.item_latency_ms),
            "--max-concurrency", str(self.max_concurrency),
            "--rate-limit", str(RATE_LIMIT_OFF),
        ]  # fmt: skip


@dataclass(frozen=True)
class Result:
    scenario: str
    n: int
    wall_s: float
    graph_requests: int
    graph_inner_requests: int
    db_queries: int
    peak_rss_mb: float
    lower_bound_s: float
    ratio_to_bound: float | None  # None when the bound is 0 (a zero-latency profile)


# --- the parent ----------------------------------------------------------------------------------


def run_benchmark(*, sizes: Sequence[int], profile: Profile, progress: Callable[[str], None]) -> list[Result]:
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="bcsync-bench-") as scratch,
        emulator_process(*profile.emulator_args()) as url,
    ):
        for n in sizes:
            progress(f"N={n}: measuring in a child process against {url}")
            results.extend(_measure_in_child(n=n, emulator_url=url, profile=profile, scratch=Path(scratch)))
    return results


def _measure_in_child(*, n: int, emulator_url: str, profile: Profile, scratch: Path) -> list[Result]:
    var_dir = scratch / f"n{n}"
    var_dir.mkdir()
    out = var_dir / "results.json"
    config = EmulatorConfig()
    login = emulator_login(
        url=emulator_url, tenant=config.tenant, client_id=config.client_id, client_secret=config.client_secret
    )
    # The product's pacing is off too (GRAPH_MAILBOX_BUDGET=0): bench_paced measures it.
    env = child_env(var_dir=var_dir, **login, LOG_LEVEL="WARNING", GRAPH_MAILBOX_BUDGET="0")
    command = manage_py(
        "bench_sync",
        "--worker-size", str(n), "--worker-emulator-url", emulator_url, "--worker-out", str(out),
        "--latency-ms", str(profile.latency_ms), "--item-latency-ms", str(profile.item_latency_ms),
        "--max-concurrency", str(profile.max_concurrency),
    )  # fmt: skip
    subprocess.run(command, env=env, check=True, cwd=settings.BASE_DIR)  # noqa: S603 - our own command
    return [Result(**row) for row in json.loads(out.read_text())]


def write_json(*, path: Path, results: Sequence[Result]) -> None:
    path.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")


def format_table(*, results: Sequence[Result]) -> str:
    header = (
        f"{'scenario':<17}{'n':>8}{'wall s':>10}{'graph':>8}{'inner':>8}{'db q':>8}"
        f"{'RSS MB':>9}{'bound s':>10}{'ratio':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        ratio = "-" if r.ratio_to_bound is None else f"{r.ratio_to_bound:.2f}"
        lines.append(
            f"{r.scenario:<17}{r.n:>8}{r.wall_s:>10.2f}{r.graph_requests:>8}{r.graph_inner_requests:>8}"
            f"{r.db_queries:>8}{r.peak_rss_mb:>9.1f}{r.lower_bound_s:>10.2f}{ratio:>8}"
        )
    return "\n".join(lines)


def lower_bound_s(*, profile: Profile, reads: int, writes: int) -> float:
    """The least time the emulator's profile allows a read-then-write sync (README.md, "Performance").

    One folder call, then the delta pages one after another (each pays the request latency, its items
    share the mailbox's workers), then the writes: the first $batch pays the latency before any worker
    starts, later ones overlap it with the items in flight, and every wave of max_concurrency batches
    needs at least one latency."""
    latency = profile.latency_ms / 1000
    per_item = profile.item_latency_ms / 1000 / profile.max_concurrency
    pages = max(1, math.ceil(reads / DELTA_PAGE_CAP))
    bound = latency + pages * latency + reads * per_item
    if writes:
        waves = math.ceil(math.ceil(writes / MAX_BATCH_SIZE) / profile.max_concurrency)
        bound += max(latency + writes * per_item, waves * latency)
    return bound


# --- the child -----------------------------------------------------------------------------------


def measure_size(
    *, n: int, emulator_url: str, profile: Profile, progress: Callable[[str], None]
) -> list[Result]:
    """Every scenario for N contacts. Runs in the child, whose settings already point at a scratch
    database and the emulator; the parent made sure of both."""
    control, user = prepare_child(n=n, emulator_url=emulator_url)
    bench = _Scenarios(user=user, n=n, profile=profile, control=control, progress=progress)
    # resync_full runs second: it reads the whole folder and so ends with a delta link newer than the
    # initial Full Sync's own writes. Straight after initial_full, a Sync would read all N of them back
    # (Graph's delta reports our writes too): that is a one-off cost, not a quiet Sync (README.md).
    return [bench.initial_full(), bench.resync_full(), bench.quiet_sync(), bench.one_percent_sync()]


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's latency profile: the same three flags in every benchmark command."""
    parser.add_argument("--latency-ms", type=float, default=150.0, help="per HTTP request (default 150)")
    parser.add_argument(
        "--item-latency-ms", type=float, default=40.0, help="per item read or written (default 40)"
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=4,
        help="concurrent requests and item workers per mailbox (default 4)",
    )


def profile_from_options(options: dict[str, Any]) -> Profile:
    return Profile(
        latency_ms=options["latency_ms"],
        item_latency_ms=options["item_latency_ms"],
        max_concurrency=options["max_concurrency"],
    )


def prepare_child(*, n: int, emulator_url: str) -> tuple[EmulatorControl, AbstractBaseUser]:
    """In the child: a migrated scratch database, an empty emulator with the bench mailbox, its
    user and N Business Central contacts, signed in already (a worker process keeps its access token
    for an hour, so sign-in is not part of what is timed)."""
    call_command("migrate", verbosity=0)
    control = EmulatorControl(emulator_url)
    control.reset()
    control.add_mailbox(MAILBOX)
    user = get_user_model().objects.create_user(username="bench", email=MAILBOX)
    UserCard.objects.create(user=user, microsoft_365_email=MAILBOX)
    _seed_contacts(n=n)
    graph_client_from_settings().token_provider.access_token()
    return control, user


def _seed_contacts(*, n: int) -> None:
    for start in range(0, n, SEED_CHUNK):
        Contact.objects.bulk_create(
            [
                Contact(
                    type=ContactType.PERSON,
                    first_name=f"First{i}",
                    surname=f"Surname{i}",
                    email=f"person{i}@bench.test",
                    job_title="Buyer",
                    company_name="Bench Ltd",
                    address=f"{i} Bench Street",
                    city="Leeds",
                    post_code="LS1 1AA",
                    phone_no=f"+44 113 {i:07d}",
                )
                for i in range(start, min(n, start + SEED_CHUNK))
            ]
        )


class _QueryCounter:
    """A connection.execute_wrapper that counts every query the sync sends."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


class _Scenarios:
    def __init__(
        self,
        *,
        user: Any,
        n: int,
        profile: Profile,
        control: EmulatorControl,
        progress: Callable[[str], None],
    ) -> None:
        self.user = user
        self.n = n
        self.profile = profile
        self.control = control
        self.progress = progress
        self.changes = max(1, n // 100)

    def initial_full(self) -> Result:
        result, run = self._measure("initial_full", SyncMode.FULL, reads=0, writes=self.n)
        self._expect(run, created=self.n)
        return result

    def resync_full(self) -> Result:
        result, run = self._measure("resync_full", SyncMode.FULL, reads=self.n, writes=0)
        self._expect(run)
        return result

    def quiet_sync(self) -> Result:
        result, run = self._measure("quiet_sync", SyncMode.SYNC, reads=0, writes=0)
        self._expect(run)
        return result

    def one_percent_sync(self) -> Result:
        """1 % of the contacts edited in Business Central and another 1 % in Outlook."""
        ids = list(Contact.objects.order_by("pk").values_list("pk", flat=True)[: 2 * self.changes])
        in_bc, in_outlook = ids[: self.changes], ids[self.changes :]
        for start in range(0, len(in_bc), SQLITE_PARAMS):
            Contact.objects.filter(pk__in=in_bc[start : start + SQLITE_PARAMS]).update(
                job_title="Edited in BC"
            )
        outlook = self.control.outlook(MAILBOX)  # the back door: not Graph requests, not counted
        for start in range(0, len(in_outlook), SQLITE_PARAMS):
            chunk = in_outlook[start : start + SQLITE_PARAMS]
            for graph_id in ContactLink.objects.filter(contact_id__in=chunk).values_list(
                "graph_id", flat=True
            ):
                outlook.update_contact(graph_id, {"jobTitle": "Edited in Outlook"})
        result, run = self._measure(
            "one_percent_sync", SyncMode.SYNC, reads=len(in_outlook), writes=len(in_bc)
        )
        self._expect(run, updated=len(in_bc), bc_updated=len(in_outlook))
        return result

    def _measure(self, scenario: str, mode: str, *, reads: int, writes: int) -> tuple[Result, SyncRun]:
        self.progress(f"N={self.n}: {scenario} ...")
        self.control.reset_stats()
        queries = _QueryCounter()
        _reset_peak_rss()
        started = time.perf_counter()
        with connection.execute_wrapper(queries):
            run = contact_sync.request_contact_sync(
                user=self.user, mode=mode, trigger=SyncTrigger.COMMAND, enqueue=False
            )
            run = contact_sync.run_contact_sync_to_end(run_id=run.pk)
        wall_s = time.perf_counter() - started
        peak_mb = _peak_rss_mb()
        stats = self.control.stats()
        bound = lower_bound_s(profile=self.profile, reads=reads, writes=writes)
        result = Result(
            scenario=scenario,
            n=self.n,
            wall_s=round(wall_s, 3),
            graph_requests=stats["graph_requests"],
            graph_inner_requests=stats["inner_requests"],
            db_queries=queries.count,
            peak_rss_mb=round(peak_mb, 1),
            lower_bound_s=round(bound, 3),
            ratio_to_bound=round(wall_s / bound, 2) if bound else None,
        )
        self.progress(f"N={self.n}: {scenario} {wall_s:.2f} s ({run.summary_line()})")
        return result, run

    @staticmethod
    def _expect(run: SyncRun, **counts: int) -> None:
        """A benchmark of a run that did the wrong thing is worthless: check what it did."""
        expected = {"created": 0, "updated": 0, "deleted": 0, "bc_updated": 0, "failed": 0, **counts}
        actual = {name: getattr(run, name) for name in expected}
        if run.status != RunStatus.SUCCEEDED or actual != expected:
            raise RuntimeError(
                f"Run {run.pk} ({run.mode}) {run.status}: {actual}, expected {expected}. {run.error}"
            )


def _reset_peak_rss() -> None:
    """Reset the kernel's high-water mark of this process's RSS (VmHWM), so each scenario reads its own
    peak. Linux only; elsewhere VmHWM is not read either (see _peak_rss_mb)."""
    # Where it cannot be reset, the peak covers the child's life so far: an upper bound, still per size.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # not on Windows; macOS reports bytes, Linux kilobytes

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
