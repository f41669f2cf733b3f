"""The live-updates benchmark behind `manage.py bench_live` (README.md, "Performance").

The command re-runs itself as a child on a scratch database (a SQLite file in a temporary directory, or
--database-url), so the user's database is never opened. The child starts, each as a process of its
own: the Microsoft 365 emulator with the benchmark's latency profile, `manage.py runserver` (the
notification endpoint the emulator POSTs to) and `manage.py qcluster` (the workers that sync). Then:

- BC → Outlook: a Business Central edit saved, until the Outlook copy holds it (read through the
  emulator's back door, which is neither a Graph request nor a notification);
- Outlook → BC: an edit in Outlook (the back door, which notifies as the Outlook page does), until
  Business Central holds it;
- a burst of 1,000 Business Central edits: the runs each user got and the time until every folder
  matches;
- idle cost: the Graph requests of one renewal and of one quiet polling Sync, measured, scaled to 100
  users for an hour.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import close_old_connections
from django.utils import timezone

from contacts.models import Contact, ContactType
from exchange_sync.models import (
    ConnectionStatus,
    ContactLink,
    ExchangeSyncSetup,
    GraphSubscription,
    RunStatus,
    SubscriptionStatus,
    SyncMode,
    SyncRun,
    SyncTrigger,
    UserCard,
)
from exchange_sync.services import contact_sync, job_queue, live_updates
from m365_emulator.config import EmulatorConfig
from m365_emulator.control import EmulatorControl, emulator_process

from .bench import Profile
from .child import child_env, emulator_login, manage_py

DEADLINE_S = 300
POLL_S = 0.05
IDLE_USERS = 100
BURST_EDITS = 1000


@dataclass(frozen=True)
class LiveResult:
    users: int
    contacts_per_user: int
    bc_to_outlook_p50_s: float
    bc_to_outlook_p95_s: float
    outlook_to_bc_p50_s: float
    outlook_to_bc_p95_s: float
    edits_each_way: int
    burst_edits: int
    burst_runs_per_user_max: int
    burst_runs_per_user_mean: float
    burst_converged_s: float
    renewal_graph_requests: int
    poll_graph_requests: int
    idle_live_requests_per_hour: float
    idle_polling_requests_per_hour: float


# --- the parent ----------------------------------------------------------------------------------


def run_benchmark(
    *, users: int, contacts_per_user: int, edits: int, profile: Profile, database_url: str, progress
) -> LiveResult:
    with tempfile.TemporaryDirectory(prefix="bcsync-live-bench-") as scratch:
        out = Path(scratch) / "result.json"
        env = child_env(var_dir=Path(scratch), database_url=database_url, LOG_LEVEL="WARNING")
        command = manage_py(
            "bench_live", "--worker-out", str(out), "--users", str(users),
            "--contacts-per-user", str(contacts_per_user), "--edits", str(edits),
            "--latency-ms", str(profile.latency_ms), "--item-latency-ms", str(profile.item_latency_ms),
            "--max-concurrency", str(profile.max_concurrency),
        )  # fmt: skip
        progress(f"Measuring in a child process on a scratch database ({database_url or 'SQLite'})")
        subprocess.run(command, env=env, check=True, cwd=settings.BASE_DIR)  # noqa: S603 - our own command
        return LiveResult(**json.loads(out.read_text()))


def format_result(result: LiveResult) -> str:
    return "\n".join(
        [
            f"{result.users} users, {result.contacts_per_user} contacts each",
            f"BC -> Outlook   p50 {result.bc_to_outlook_p50_s:.2f} s   p95 {result.bc_to_outlook_p95_s:.2f} s"
            f"   ({result.edits_each_way} edits)",
            f"Outlook -> BC   p50 {result.outlook_to_bc_p50_s:.2f} s   p95 {result.outlook_to_bc_p95_s:.2f} s"
            f"   ({result.edits_each_way} edits)",
            f"Burst of {result.burst_edits} BC edits: at most {result.burst_runs_per_user_max} runs per user "
            f"(mean {result.burst_runs_per_user_mean:.2f}), every folder matching after "
            f"{result.burst_converged_s:.1f} s",
            f"Idle, {IDLE_USERS} users: live updates {result.idle_live_requests_per_hour:.1f} Graph "
            f"requests/hour (renewals: {result.renewal_graph_requests} request each) vs hourly polling "
            f"{result.idle_polling_requests_per_hour:.0f} requests/hour "
            f"({result.poll_graph_requests} per quiet Sync)",
        ]
    )


# --- the child -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _processes(*, emulator_url: str, var_dir: Path, public_url: str, port: int) -> Iterator[None]:
    config = EmulatorConfig()
    env = child_env(
        var_dir=var_dir,
        database_url=_database_url(),
        **emulator_login(
            url=emulator_url,
            tenant=config.tenant,
            client_id=config.client_id,
            client_secret=config.client_secret,
        ),
        PUBLIC_BASE_URL=public_url,
        LOG_LEVEL="WARNING",
        Q_WORKERS="4",
    )
    started = [
        subprocess.Popen(  # noqa: S603 - our own command
            manage_py(*args), env=env, cwd=settings.BASE_DIR, stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        for args, log in (
            (("runserver", f"127.0.0.1:{port}", "--noreload"), var_dir / "runserver.log"),
            (("qcluster",), var_dir / "qcluster.log"),
        )
    ]
    try:
        yield
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _wait(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> float:
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > deadline_s:
            raise RuntimeError(f"Timed out waiting for {what}")
        time.sleep(POLL_S)
        close_old_connections()
    return time.perf_counter() - started


def _percentile(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 3)


def _idle() -> bool:
    return not SyncRun.objects.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).exists()


def measure(*, users: int, contacts_per_user: int, edits: int, profile: Profile, progress) -> LiveResult:
    call_command("migrate", verbosity=0)
    if get_user_model().objects.exists():
        raise RuntimeError("--database-url must name an empty scratch database: this one has users.")
    var_dir = Path(settings.VAR_DIR)
    port = _free_port()
    public_url = f"http://127.0.0.1:{port}"
    settings.PUBLIC_BASE_URL = public_url
    with emulator_process(*profile.emulator_args()) as emulator_url:
        config = EmulatorConfig()
        for name, value in emulator_login(
            url=emulator_url,
            tenant=config.tenant,
            client_id=config.client_id,
            client_secret=config.client_secret,
        ).items():
            setattr(settings, name, value)
        from exchange_sync.graph import reset_graph_client_cache

        reset_graph_client_cache()
        control = EmulatorControl(emulator_url)
        control.reset()
        people = _seed(control=control, users=users, contacts_per_user=contacts_per_user)
        with _processes(emulator_url=emulator_url, var_dir=var_dir, public_url=public_url, port=port):
            _wait(lambda: _listening(port), "runserver")
            for user in people:
                job_queue.set_background_sync(user=user, enabled=True)
            progress(f"Waiting for {users} subscriptions and the first Syncs")
            _wait(
                lambda: (
                    GraphSubscription.objects.filter(status=SubscriptionStatus.ACTIVE)
                    .exclude(graph_id="")
                    .count()
                    == users
                    and _idle()
                ),
                "the subscriptions",
            )
            time.sleep(2)
            _wait(_idle, "the first Syncs")
            to_outlook = _bc_to_outlook(control=control, people=people, edits=edits, progress=progress)
            to_bc = _outlook_to_bc(control=control, people=people, edits=edits, progress=progress)
            burst = _burst(control=control, people=people, progress=progress)
        renewal, poll = _idle_costs(control=control, user=people[0])
    hours_between_renewals = (
        timedelta(minutes=live_updates.SUBSCRIPTION_MINUTES) - live_updates.RENEW_WITHIN
    ) / timedelta(hours=1)
    return LiveResult(
        users=users,
        contacts_per_user=contacts_per_user,
        bc_to_outlook_p50_s=_percentile(to_outlook, 50),
        bc_to_outlook_p95_s=_percentile(to_outlook, 95),
        outlook_to_bc_p50_s=_percentile(to_bc, 50),
        outlook_to_bc_p95_s=_percentile(to_bc, 95),
        edits_each_way=edits,
        burst_edits=BURST_EDITS,
        burst_runs_per_user_max=max(burst["runs"].values()),
        burst_runs_per_user_mean=round(statistics.mean(burst["runs"].values()), 2),
        burst_converged_s=round(burst["converged_s"], 2),
        renewal_graph_requests=renewal,
        poll_graph_requests=poll,
        idle_live_requests_per_hour=round(IDLE_USERS * renewal / hours_between_renewals, 2),
        idle_polling_requests_per_hour=float(IDLE_USERS * poll),
    )


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _seed(*, control: EmulatorControl, users: int, contacts_per_user: int) -> list:
    """Users each with their own territory (their sync filter) and their contacts."""
    people = []
    for n in range(users):
        upn = f"live{n:02d}@contoso.test"
        control.add_mailbox(upn)
        user = get_user_model().objects.create_user(username=f"live{n:02d}", email=upn)
        UserCard.objects.create(user=user, microsoft_365_email=upn)
        exchange, _ = contact_sync.setups_for(user=user)
        ExchangeSyncSetup.objects.filter(pk=exchange.pk).update(connection_status=ConnectionStatus.CONNECTED)
        contact_sync.set_sync_filter(user=user, filters={"territory_code": f"T{n:02d}"})
        Contact.objects.bulk_create(
            Contact(
                type=ContactType.PERSON,
                first_name=f"First{n}-{i}",
                surname=f"Surname{i}",
                email=f"p{n}-{i}@live.test",
                job_title="Buyer",
                territory_code=f"T{n:02d}",
            )
            for i in range(contacts_per_user)
        )
        people.append(user)
    return people


def _link(user, index: int) -> ContactLink:
    links = ContactLink.objects.filter(setup__user=user, contact__isnull=False).order_by("pk")
    return links[index % links.count()]


def _bc_to_outlook(*, control: EmulatorControl, people: list, edits: int, progress) -> list[float]:
    progress(f"BC -> Outlook: {edits} edits")
    latencies = []
    for n in range(edits):
        user = people[n % len(people)]
        link = _link(user, n)
        marker = f"BC edit {n}"
        contact = Contact.objects.get(pk=link.contact_id)
        contact.job_title = marker
        outlook = control.outlook(user.user_card.microsoft_365_email)
        started = time.perf_counter()
        contact.save()  # its commit requests the Sync
        _wait(lambda o=outlook, g=link.graph_id, m=marker: o.get_contact(g).get("jobTitle") == m, "the edit")
        latencies.append(time.perf_counter() - started)
        _wait(_idle, "the runs to end")
    return latencies


def _outlook_to_bc(*, control: EmulatorControl, people: list, edits: int, progress) -> list[float]:
    progress(f"Outlook -> BC: {edits} edits")
    latencies = []
    for n in range(edits):
        user = people[n % len(people)]
        link = _link(user, n + 1)
        marker = f"Outlook edit {n}"
        control.outlook(user.user_card.microsoft_365_email).update_contact(
            link.graph_id, {"jobTitle": marker}
        )
        latencies.append(
            _wait(
                lambda pk=link.contact_id, m=marker: Contact.objects.filter(pk=pk, job_title=m).exists(),
                "the edit in Business Central",
            )
        )
        _wait(_idle, "the runs to end")
    return latencies


def _burst(*, control: EmulatorControl, people: list, progress) -> dict[str, Any]:
    progress(f"Burst: {BURST_EDITS} BC edits")
    contacts = list(Contact.objects.filter(sync_links__isnull=False).order_by("pk"))
    # Many people editing at once: every user's contacts throughout the burst, in no order.
    order = random.Random(14).choices(range(len(contacts)), k=BURST_EDITS)
    started_at = timezone.now()
    started = time.perf_counter()
    for n, index in enumerate(order):
        contact = contacts[index]
        contact.job_title = f"Burst {n}"
        contact.save()
    progress(f"Burst: {BURST_EDITS} edits saved in {time.perf_counter() - started:.1f} s")

    def every_folder_matches() -> bool:
        if not _idle():
            return False
        for user in people:
            outlook = control.outlook(user.user_card.microsoft_365_email)
            wanted = dict(
                ContactLink.objects.filter(setup__user=user, contact__isnull=False).values_list(
                    "graph_id", "contact__job_title"
                )
            )
            folder = (
                ContactLink.objects.filter(setup__user=user)
                .values_list("setup__folder_id", flat=True)
                .first()
            )
            actual = {c["id"]: c.get("jobTitle") for c in outlook.list_contacts(folder)}
            if any(actual.get(graph_id) != title for graph_id, title in wanted.items()):
                return False
        return True

    _wait(every_folder_matches, "every folder to match")
    converged = time.perf_counter() - started
    runs = {
        user.username: SyncRun.objects.filter(
            user=user, queued_at__gte=started_at, mode=SyncMode.SYNC
        ).count()
        for user in people
    }
    return {"runs": runs, "converged_s": converged}


def _idle_costs(*, control: EmulatorControl, user) -> tuple[int, int]:
    """Graph requests of one renewal and of one quiet polling Sync, counted by the emulator."""
    GraphSubscription.objects.filter(user=user).update(expires_at=timezone.now() + timedelta(hours=1))
    control.reset_stats()
    live_updates.ensure_subscription(user=user)
    renewal = control.stats()["graph_requests"]
    control.reset_stats()
    run = contact_sync.request_contact_sync(
        user=user, mode=SyncMode.SYNC, trigger=SyncTrigger.JOB_QUEUE, enqueue=False
    )
    run = contact_sync.run_contact_sync(run_id=run.pk)
    if run.status != RunStatus.SUCCEEDED:
        raise RuntimeError(f"The quiet Sync failed: {run.error}")
    poll = control.stats()["graph_requests"]
    return renewal, poll


def write_result(*, path: Path, result: LiveResult) -> None:
    path.write_text(json.dumps(asdict(result), indent=2) + "\n")
