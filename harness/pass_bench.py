"""The pass benchmark behind `manage.py bench_pass` (README.md, "Performance").

The parent creates a scratch PostgreSQL database (its name must contain "bench"; it is dropped at
the end), starts the Microsoft 365 emulator as a process of its own with the default latency profile
and Microsoft's per-mailbox rate limit, and runs a driver child (`bench_pass --worker-out ...`) on the
scratch database. The driver seeds U users with background synchronization on and C contacts, starts
two default clusters of K/2 workers each (two hosts) and one interactive cluster of one worker, runs
one pass of the Codeunit 6700 entry (every user's first sync: C creates each), presses one person's
Sync button when half the users are done, and reads the figures back from the database and the
emulator's counters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from contacts.changes import contacts_changed
from contacts.models import Contact, ContactType
from exchange_sync.models import (
    ConnectionStatus,
    ExchangeSyncSetup,
    JobQueueEntry,
    JobQueueLogEntry,
    PassUser,
    RunStatus,
    SyncMode,
    SyncRun,
    SyncTrigger,
    UserCard,
)
from exchange_sync.services import contact_sync, job_queue, live_updates
from m365_emulator.config import EmulatorConfig
from m365_emulator.control import EmulatorControl, emulator_process

from .bench import Profile, lower_bound_s
from .child import child_env, emulator_login, manage_py

DOMAIN = "bench.test"
WALK_IN = "walkin"
READY_TIMEOUT_S = 60
PASS_TIMEOUT_S = 3600


@dataclass(frozen=True)
class PassResult:
    users: int
    contacts: int
    workers: int
    pass_wall_s: float
    sum_user_runs_s: float
    longest_user_run_s: float
    user_bound_s: float
    pass_bound_s: float
    ratio_to_bound: float | None  # None when the bound is 0 (a zero-latency profile)
    # The pass's wall time against its user runs as they really took, spread over K workers (never less
    # than the longest): how much the fan-out itself loses, whatever each run costs.
    ratio_to_runs: float | None
    graph_requests: int
    graph_inner_requests: int
    throttled: int
    inner_throttled: int
    db_queries_per_user: int
    button_start_delay_s: float
    button_started_before_pass_end: bool
    users_synced: int
    # The next pass reads back the first sync's creations; the one after is an everyday one (1 % of the
    # contacts changed), for the capacity table.
    read_back_pass_wall_s: float = 0.0
    read_back_sum_user_runs_s: float = 0.0
    steady_changed_contacts: int = 0
    steady_pass_wall_s: float = 0.0
    steady_sum_user_runs_s: float = 0.0
    steady_graph_requests: int = 0
    steady_graph_inner_requests: int = 0
    steady_throttled: int = 0
    steady_users_synced: int = 0
    # Every process's CPU (the clusters' workers and the emulator), and what it means on this machine's
    # cores: a pass can be no shorter than cpu_s / cores, whatever the latencies.
    workers_cpu_s: float = 0.0  # every process of the three clusters, all three passes
    emulator_cpu_s: float = 0.0
    cores: int = 1
    load_average_at_start: float = 0.0


# --- the parent ----------------------------------------------------------------------------------


def run_pass_benchmark(
    *,
    database_url: str,
    users: int,
    contacts: int,
    workers: int,
    profile: Profile,
    progress: Callable[[str], None],
) -> PassResult:
    """`database_url`: a PostgreSQL database to create and drop, or "" for a scratch SQLite file
    (one host; the smoke test's choice, not the benchmark's)."""
    config = EmulatorConfig()
    emulator_args = [
        "--latency-ms", str(profile.latency_ms),
        "--item-latency-ms", str(profile.item_latency_ms),
        "--max-concurrency", str(profile.max_concurrency),
        "--mailbox-domain", DOMAIN,
    ]  # fmt: skip
    load = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="bcsync-bench-pass-") as scratch,
        _scratch_database(database_url),
        emulator_process(*emulator_args) as url,
    ):
        out = Path(scratch) / "result.json"
        login = emulator_login(
            url=url, tenant=config.tenant, client_id=config.client_id, client_secret=config.client_secret
        )
        env = child_env(var_dir=Path(scratch), database_url=database_url, **login, LOG_LEVEL="WARNING")
        command = manage_py(
            "bench_pass",
            "--users", str(users), "--contacts", str(contacts), "--workers", str(workers),
            "--latency-ms", str(profile.latency_ms), "--item-latency-ms", str(profile.item_latency_ms),
            "--max-concurrency", str(profile.max_concurrency),
            "--worker-emulator-url", url, "--worker-out", str(out),
        )  # fmt: skip
        progress(f"Pass over {users} users x {contacts} contacts, {workers} workers, emulator at {url}")
        subprocess.run(command, env=env, check=True, cwd=settings.BASE_DIR)  # noqa: S603 - our own command
        figures = json.loads(out.read_text())
        emulator_cpu = sum(
            cpu for pid, cpu in _process_cpu_s(parent=os.getpid()).items() if "m365_emulator" in _cmdline(pid)
        )
    return dataclasses.replace(
        PassResult(**figures),
        emulator_cpu_s=round(emulator_cpu, 1),
        cores=os.cpu_count() or 1,
        load_average_at_start=round(load, 1),
    )


def _process_cpu_s(*, process_groups: set[int] | None = None, parent: int | None = None) -> dict[int, float]:
    """CPU seconds (user + system) of the live processes in `process_groups`, or the children of
    `parent`, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        # After the command's name: state, ppid, pgrp, ..., utime and stime are fields 14 and 15.
        if (process_groups and int(fields[2]) in process_groups) or (parent and int(fields[1]) == parent):
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@contextlib.contextmanager
def _scratch_database(database_url: str) -> Iterator[None]:
    """The PostgreSQL database named by `database_url`, created empty and dropped afterwards. Its
    name must contain "bench", so that a real database can never be named by mistake."""
    if not database_url:
        yield
        return
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if parts.scheme not in ("postgres", "postgresql") or "bench" not in name or not name.isidentifier():
        raise ValueError(
            "--database-url must name a PostgreSQL database whose name contains 'bench' (it is dropped "
            f"and recreated), not one named {name!r}."
        )
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def format_result(result: PassResult) -> str:
    rows = [
        ("users x contacts, workers", f"{result.users} x {result.contacts}, {result.workers}"),
        ("pass wall time", f"{result.pass_wall_s:.1f} s"),
        ("sum of user runs", f"{result.sum_user_runs_s:.1f} s (longest {result.longest_user_run_s:.2f} s)"),
        ("user run bound", f"{result.user_bound_s:.2f} s each"),
        ("pass lower bound", f"{result.pass_bound_s:.1f} s"),
        ("ratio to bound", "-" if result.ratio_to_bound is None else f"{result.ratio_to_bound:.2f}"),
        (
            "ratio to runs / K",
            "-" if result.ratio_to_runs is None else f"{result.ratio_to_runs:.2f} (the fan-out's own loss)",
        ),
        ("Graph requests", f"{result.graph_requests} HTTP, {result.graph_inner_requests} inner"),
        ("throttled", f"{result.throttled} HTTP, {result.inner_throttled} inner"),
        ("DB queries per user", str(result.db_queries_per_user)),
        ("button start delay", f"{result.button_start_delay_s:.2f} s"),
        ("button ran before the pass ended", "yes" if result.button_started_before_pass_end else "NO"),
        ("users synced", f"{result.users_synced} of {result.users}"),
        (
            "next pass (reads back the creations)",
            f"{result.read_back_pass_wall_s:.1f} s, "
            f"user runs {result.read_back_sum_user_runs_s:.1f} s in all",
        ),
        (
            f"everyday pass ({result.steady_changed_contacts} contacts changed)",
            f"{result.steady_pass_wall_s:.1f} s, user runs {result.steady_sum_user_runs_s:.1f} s in all, "
            f"{result.steady_graph_requests} HTTP + {result.steady_graph_inner_requests} inner requests, "
            f"{result.steady_throttled} throttled, {result.steady_users_synced} users synced",
        ),
        (
            "CPU, all three passes",
            f"clusters {result.workers_cpu_s:.0f} s, emulator {result.emulator_cpu_s:.0f} s, on "
            f"{result.cores} cores (load average {result.load_average_at_start} at start)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# --- the driver (a child on the scratch database) --------------------------------------------------


class _QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def drive_pass(
    *,
    users: int,
    contacts: int,
    workers: int,
    emulator_url: str,
    profile: Profile,
    progress: Callable[[str], None],
) -> PassResult:
    call_command("migrate", verbosity=0)
    control = EmulatorControl(emulator_url)
    entry, walk_in = _seed(users=users, contacts=contacts)
    var_dir = Path(settings.VAR_DIR)
    clusters = _start_clusters(workers=workers, var_dir=var_dir)
    try:
        control.reset_stats()
        progress("Clusters ready; the pass starts")
        delivered = time.time()
        job_queue.run_job_queue_entry(entry_id=entry.pk)  # the Schedule's delivery, done here
        log = JobQueueLogEntry.objects.get()
        # One user's part measured in this process, for its database queries; the clusters skip it.
        probe = PassUser.objects.filter(log_entry=log).order_by("-user_id").first()
        queries = _QueryCounter()
        with connection.execute_wrapper(queries):
            job_queue.run_pass_user(log_entry_id=log.pk, user_id=probe.user_id)
        pressed = None
        while not JobQueueLogEntry.objects.filter(pk=log.pk, ended_at__isnull=False).exists():
            _check_alive(clusters, var_dir)
            done = PassUser.objects.filter(log_entry=log, finished_at__isnull=False).count()
            if pressed is None and done >= users // 2:
                progress(f"{done} of {users} users done: {WALK_IN} presses Sync")
                pressed = contact_sync.request_contact_sync(
                    user=walk_in, mode=SyncMode.SYNC, trigger=SyncTrigger.BUTTON
                )
            if time.time() - delivered > PASS_TIMEOUT_S:
                raise RuntimeError("The pass did not end within an hour.")
            time.sleep(0.5)
        while (
            pressed is not None
            and not SyncRun.objects.filter(
                pk=pressed.pk, status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED]
            ).exists()
        ):
            _check_alive(clusters, var_dir)
            time.sleep(0.2)
        stats = control.stats()
        later = _next_two_passes(
            entry=entry, contacts=contacts, control=control, clusters=clusters, var_dir=var_dir
        )
        progress(f"Next two passes: {later}")
        groups = {process.pid for process, _ in clusters}  # each started as its own process group
        later["workers_cpu_s"] = round(sum(_process_cpu_s(process_groups=groups).values()), 1)
    finally:
        _stop(clusters)
    figures = _figures(
        log=JobQueueLogEntry.objects.get(pk=log.pk),
        delivered=delivered,
        pressed=SyncRun.objects.get(pk=pressed.pk) if pressed else None,
        users=users,
        contacts=contacts,
        workers=workers,
        profile=profile,
        stats=stats,
        queries=queries.count,
    )
    return dataclasses.replace(figures, **later)


def _next_two_passes(*, entry, contacts: int, control: EmulatorControl, clusters, var_dir: Path) -> dict:
    """The next two passes. The second pass reads back each user's first-sync creations (Graph's delta
    reports an app's own writes too): a one-off cost, measured on its own. The third is an everyday
    one, 1 % of the contacts edited in Business Central since, so each user's run reads one delta page
    and writes those few. Its per-user costs feed the capacity table."""
    read_back = _measured_pass(entry=entry, control=control, clusters=clusters, var_dir=var_dir)
    changed = max(1, contacts // 100)
    ids = list(Contact.objects.order_by("pk").values_list("pk", flat=True)[:changed])
    # Unannounced: live updates would sync these edits at once, one live run per user on the same
    # workers, and the pass would find every user synced already. This way the pass's own runs do the
    # writing, as where live updates are off or a change was missed.
    contacts_changed.disconnect(dispatch_uid=live_updates.CONTACTS_RECEIVER)
    try:
        Contact.objects.filter(pk__in=ids).update(job_title="Edited in BC")
    finally:
        contacts_changed.connect(live_updates.contacts_changed, dispatch_uid=live_updates.CONTACTS_RECEIVER)
    everyday = _measured_pass(entry=entry, control=control, clusters=clusters, var_dir=var_dir)
    return {
        "read_back_pass_wall_s": read_back["pass_wall_s"],
        "read_back_sum_user_runs_s": read_back["sum_user_runs_s"],
        "steady_changed_contacts": changed,
        **{f"steady_{name}": value for name, value in everyday.items()},
    }


def _measured_pass(*, entry, control: EmulatorControl, clusters, var_dir: Path) -> dict:
    """Deliver the entry's next run, wait for the pass to end, and return its figures."""
    control.reset_stats()
    JobQueueEntry.objects.filter(pk=entry.pk).update(next_run_at=timezone.now())
    delivered = time.time()
    job_queue.run_job_queue_entry(entry_id=entry.pk)
    log = JobQueueLogEntry.objects.order_by("-pk").first()
    while not JobQueueLogEntry.objects.filter(pk=log.pk, ended_at__isnull=False).exists():
        _check_alive(clusters, var_dir)
        if time.time() - delivered > PASS_TIMEOUT_S:
            raise RuntimeError("A pass did not end within an hour.")
        time.sleep(0.5)
    log.refresh_from_db()
    stats = control.stats()
    durations = [
        (end - start).total_seconds()
        for start, end in SyncRun.objects.filter(
            job_queue_entry=entry, trigger=SyncTrigger.JOB_QUEUE, queued_at__gte=log.started_at
        ).values_list("started_at", "finished_at")
        if start and end
    ]
    return {
        "pass_wall_s": round(log.ended_at.timestamp() - delivered, 2),
        "sum_user_runs_s": round(sum(durations), 2),
        "graph_requests": stats["graph_requests"],
        "graph_inner_requests": stats["inner_requests"],
        "throttled": stats["throttled"] + stats["inner_throttled"],
        "users_synced": log.users_synced,
    }


def _seed(*, users: int, contacts: int) -> tuple[JobQueueEntry, object]:
    User = get_user_model()
    with transaction.atomic():
        Contact.objects.bulk_create(
            Contact(
                type=ContactType.PERSON,
                first_name=f"First{i}",
                surname=f"Surname{i}",
                email=f"person{i}@customers.test",
                company_name="Bench Ltd",
                city="Leeds",
            )
            for i in range(contacts)
        )
        people = User.objects.bulk_create(User(username=f"sp{n:05d}", is_staff=True) for n in range(users))
        walk_in = User.objects.create(username=WALK_IN, is_staff=True)
        UserCard.objects.bulk_create(
            UserCard(user=user, microsoft_365_email=f"{user.username}@{DOMAIN}")
            for user in [*people, walk_in]
        )
        ExchangeSyncSetup.objects.bulk_create(
            ExchangeSyncSetup(
                user=user, connection_status=ConnectionStatus.CONNECTED, enabled=user is not walk_in
            )
            for user in [*people, walk_in]
        )
        entry = job_queue.ensure_contact_sync_entry(user=people[0])
    # The walk-in's first sync is done before the pass, so their button press is an everyday Sync.
    run = contact_sync.request_contact_sync(
        user=walk_in, mode=SyncMode.SYNC, trigger=SyncTrigger.COMMAND, enqueue=False
    )
    contact_sync.run_contact_sync(run_id=run.pk)
    return entry, walk_in


def _start_clusters(*, workers: int, var_dir: Path) -> list[tuple[subprocess.Popen, Path]]:
    base = {**os.environ, "LOG_LEVEL": "INFO"}
    half = max(1, workers // 2)
    specs = [
        ("host-1", {"Q_WORKERS": str(half)}),
        ("host-2", {"Q_WORKERS": str(workers - half)}),
        ("interactive", {"Q_CLUSTER_NAME": "interactive", "Q_INTERACTIVE_WORKERS": "1"}),
    ]
    clusters = []
    for name, variables in specs:
        log = var_dir / f"qcluster-{name}.log"
        process = subprocess.Popen(  # noqa: S603 - our own command
            manage_py("qcluster"),
            env={**base, **variables},
            cwd=settings.BASE_DIR,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        clusters.append((process, log))
    deadline = time.time() + READY_TIMEOUT_S
    while not all("running." in log.read_text() for _, log in clusters):
        _check_alive(clusters, var_dir)
        if time.time() > deadline:
            raise RuntimeError("The clusters did not start in time.")
        time.sleep(0.2)
    return clusters


def _check_alive(clusters, var_dir: Path) -> None:
    for process, log in clusters:
        if process.poll() is not None:
            raise RuntimeError(f"A cluster stopped: {log.read_text()[-2000:]}")


def _stop(clusters) -> None:
    for process, _ in clusters:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.time() + 10  # the figures are in the database by now: no long graceful stop
    for process, _ in clusters:
        try:
            process.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _figures(*, log, delivered, pressed, users, contacts, workers, profile, stats, queries) -> PassResult:
    runs = list(
        SyncRun.objects.filter(
            job_queue_entry=log.entry,
            trigger=SyncTrigger.JOB_QUEUE,
            started_at__isnull=False,
            queued_at__lte=log.ended_at,  # this pass's runs, not the later passes'
        ).values_list("started_at", "finished_at")
    )
    durations = [(end - start).total_seconds() for start, end in runs if end]
    user_bound = lower_bound_s(profile=profile, reads=0, writes=contacts)
    pass_bound = max(user_bound * users / workers, user_bound)
    wall = log.ended_at.timestamp() - delivered
    runs_bound = max(sum(durations) / workers, max(durations, default=0.0))
    return PassResult(
        users=users,
        contacts=contacts,
        workers=workers,
        pass_wall_s=round(wall, 2),
        sum_user_runs_s=round(sum(durations), 2),
        longest_user_run_s=round(max(durations, default=0.0), 2),
        user_bound_s=round(user_bound, 3),
        pass_bound_s=round(pass_bound, 2),
        ratio_to_bound=round(wall / pass_bound, 2) if pass_bound else None,
        ratio_to_runs=round(wall / runs_bound, 2) if runs_bound else None,
        graph_requests=stats["graph_requests"],
        graph_inner_requests=stats["inner_requests"],
        throttled=stats["throttled"],
        inner_throttled=stats["inner_throttled"],
        db_queries_per_user=queries,
        button_start_delay_s=round((pressed.started_at - pressed.queued_at).total_seconds(), 2)
        if pressed
        else math.nan,
        button_started_before_pass_end=bool(pressed and pressed.started_at < log.ended_at),
        users_synced=log.users_synced,
    )


def write_json(*, path: Path, result: PassResult) -> None:
    path.write_text(json.dumps(asdict(result), indent=2) + "\n")
