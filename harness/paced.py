"""The paced first-sync benchmark behind `manage.py bench_paced` (README.md, "Performance").

A very large first Full Sync of one mailbox against the emulator as a process of its own, with its
request limit scaled down (`--rate-limit` per `--rate-window-s`) and the product's mailbox budget set
to the same limit. Like bench_sync, the run happens in a child process on a scratch SQLite database.

The bound is what the budget allows: the requests the mailbox was charged (every request inside a
$batch counted), less the bucket's initial burst, at the bucket's refill rate.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings

from exchange_sync.graph import BucketRates
from exchange_sync.models import RunStatus, SyncMode, SyncRun, SyncTrigger
from exchange_sync.services import contact_sync
from m365_emulator.config import EmulatorConfig
from m365_emulator.control import emulator_process

from .bench import MAILBOX, Profile, prepare_child
from .child import child_env, emulator_login, manage_py


@dataclass(frozen=True)
class PacedResult:
    contacts: int
    wall_s: float
    limit: int
    window_s: float
    burst: float
    rate_per_s: float
    mailbox_requests: int  # what the emulator counted against the mailbox (inner requests included)
    bound_s: float
    ratio_to_bound: float
    graph_requests: int  # HTTP requests (a $batch is one)
    inner_requests: int
    throttled: int  # top-level and inner requests answered 429 by the limits
    slices: int


def run_paced(
    *, n: int, limit: int, window_s: float, profile: Profile, progress: Callable[[str], None]
) -> PacedResult:
    args = [
        "--latency-ms", str(profile.latency_ms), "--item-latency-ms", str(profile.item_latency_ms),
        "--max-concurrency", str(profile.max_concurrency),
        "--rate-limit", str(limit), "--rate-window-s", str(window_s),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bcsync-paced-") as scratch, emulator_process(*args) as url:
        progress(f"N={n}: paced first Full Sync against {url}, {limit} requests per {window_s:g} s")
        out = Path(scratch) / "result.json"
        config = EmulatorConfig()
        login = emulator_login(
            url=url, tenant=config.tenant, client_id=config.client_id, client_secret=config.client_secret
        )
        env = child_env(
            var_dir=Path(scratch),
            **login,
            LOG_LEVEL="WARNING",
            GRAPH_MAILBOX_BUDGET=str(limit),
            GRAPH_MAILBOX_WINDOW_S=str(window_s),
        )
        command = manage_py(
            "bench_paced", "--worker-size", str(n), "--worker-emulator-url", url, "--worker-out", str(out),
            "--rate-limit", str(limit), "--rate-window-s", str(window_s),
        )  # fmt: skip
        subprocess.run(command, env=env, check=True, cwd=settings.BASE_DIR)  # noqa: S603 - our own command
        return PacedResult(**json.loads(out.read_text()))


def measure_paced(
    *, n: int, emulator_url: str, limit: int, window_s: float, progress: Callable[[str], None]
) -> PacedResult:
    """In the child: seed N contacts, then one first Full Sync, slices and all, timed."""
    control, user = prepare_child(n=n, emulator_url=emulator_url)
    control.reset_stats()
    started = time.perf_counter()
    run = contact_sync.request_contact_sync(
        user=user, mode=SyncMode.FULL, trigger=SyncTrigger.COMMAND, enqueue=False
    )
    run = contact_sync.run_contact_sync_to_end(run_id=run.pk)
    wall_s = time.perf_counter() - started
    _expect(run, n=n)
    stats = control.stats()
    key = MAILBOX.lower()
    charged = stats["by_mailbox"].get(key, 0) + stats["inner_by_mailbox"].get(key, 0)
    rates = BucketRates.for_limit(limit=limit, window_s=window_s)
    bound = max(0.0, charged - rates.capacity) / rates.rate
    result = PacedResult(
        contacts=n,
        wall_s=round(wall_s, 1),
        limit=limit,
        window_s=window_s,
        burst=round(rates.capacity, 1),
        rate_per_s=round(rates.rate, 2),
        mailbox_requests=charged,
        bound_s=round(bound, 1),
        ratio_to_bound=round(wall_s / bound, 3) if bound else 0.0,
        graph_requests=stats["graph_requests"],
        inner_requests=stats["inner_requests"],
        throttled=stats["throttled"] + stats["inner_throttled"],
        slices=run.slice,
    )
    progress(f"N={n}: {wall_s:.1f} s against a bound of {bound:.1f} s ({run.summary_line()})")
    return result


def _expect(run: SyncRun, *, n: int) -> None:
    if run.status != RunStatus.SUCCEEDED or run.created != n or run.failed:
        raise RuntimeError(
            f"Run {run.pk} {run.status}: created={run.created} failed={run.failed}. {run.error}"
        )


def write_json(*, path: Path, result: PacedResult) -> None:
    path.write_text(json.dumps(asdict(result), indent=2) + "\n")


def format_result(result: PacedResult) -> str:
    rows = [
        ("contacts", f"{result.contacts:,}"),
        ("wall time", f"{result.wall_s:,.1f} s"),
        ("budget", f"{result.limit:,} per {result.window_s:g} s (burst {result.burst:,.0f}, "
                   f"then {result.rate_per_s:,.2f}/s)"),
        ("requests charged", f"{result.mailbox_requests:,} (inner $batch requests counted)"),
        ("budget bound", f"{result.bound_s:,.1f} s"),
        ("ratio to bound", f"{result.ratio_to_bound:.3f}"),
        ("Graph requests", f"{result.graph_requests:,} HTTP, {result.inner_requests:,} inside $batch"),
        ("throttled", f"{result.throttled:,}"),
        ("slices", f"{result.slices}"),
    ]  # fmt: skip
    return "\n".join(f"{name:<18}{value}" for name, value in rows)
