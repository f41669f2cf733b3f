"""The crash and fault soak behind `manage.py soak_sync` and tests/harness/test_soak.py.

One Business Central user syncs one mailbox of a Microsoft 365 emulator started as a process of its
own. Each trial makes random edits on both sides (Business Central through the ORM, Outlook through the
emulator's back door, as a person editing in Outlook), then starts Sync or Full Sync as a separate
`manage.py sync_contacts` process and SIGKILLs it at a random moment, edits some more, kills again,
and finally reruns to completion (a killed run's claim is taken over: SYNC_CLAIM_STALE_SECONDS=0).
With faults on, the emulator answers a share of requests 429/503, access tokens expire mid-run and
the delta link expires.

After each trial, with faults off, the invariants are checked:

- no email twice in the folder, nor among the Business Central persons;
- Business Central's in-scope persons and the folder are one to one, field for field (fax aside);
- no edit lost: every field ends with the value of its last edit, whichever side made it; the only
  exception is Business Central winning a conflict, and that overwrite must be in the Activity Log
  (`details["outlook_values_overwritten"]` naming the field and Outlook's value);
- deleted contacts stay deleted; a contact deleted in Outlook only is recreated from Business Central;
- one more fault-free Sync changes nothing (every count 0).

The driver process holds no transaction while a child runs, so both see committed data only.
"""

from __future__ import annotations

import functools
import json
import random
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from contacts.models import Contact, ContactType, normalize_email
from exchange_sync.models import (
    ActivityLog,
    ContactLink,
    ContactSyncSetup,
    RunStatus,
    SyncMode,
    SyncRun,
    UserCard,
)
from exchange_sync.services.contact_sync import setups_for
from exchange_sync.sync.mapping import bc_record, outlook_contact, record_hash
from exchange_sync.sync.reader import load_countries, scope_queryset
from m365_emulator.control import EmulatorControl, emulator_process

from .child import child_env, emulator_login, manage_py

SOAK_USER = "soak"
MAILBOX = "soak@contoso.test"
TENANT, CLIENT_ID, CLIENT_SECRET = "bcsync-soak", "bcsync-soak-app", "soak-secret"
IGNORED_FIELDS = frozenset({"fax_no"})  # Graph's delta never returns the fax extended property
RUN_TIMEOUT_S = 120.0
MAX_COMPLETION_ATTEMPTS = 15

# Fields the soak edits, grouped as one edit changes them; the name moves as a whole.
EDIT_GROUPS: tuple[tuple[str, ...], ...] = (
    ("job_title",),
    ("city",),
    ("post_code",),
    ("address",),
    ("mobile_phone_no",),
    ("phone_no",),
    ("company_name",),
    ("initials",),
    ("home_page",),
    ("first_name", "surname", "name"),
)


class SoakFailed(Exception):
    """An invariant was violated; the message says which, and how to replay."""


@dataclass
class SoakOptions:
    trials: int = 20
    seed: int = 0
    kill_prob: float = 0.75  # chance of each further killed attempt before the run to completion
    max_kills: int = 3
    faults: bool = False
    fault_rate_429: float = 0.30
    fault_rate_503: float = 0.10
    retry_after_s: int = 0
    contacts: int = 20  # Business Central persons at the start; the world stays around this size
    edits: tuple[int, int] = (3, 8)  # edits per round, both sides together
    latency_ms: float = 40.0
    item_latency_ms: float = 15.0
    full_sync_share: float = 0.3

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SoakOptions:
        values = json.loads(text)
        return cls(**{**values, "edits": tuple(values["edits"])})


@dataclass(frozen=True)
class Edit:
    seq: int
    side: str  # "bc" or "outlook"
    key: str  # record field
    value: str
    optional: bool = False  # may or may not land (an Outlook edit to a contact later deleted in Outlook)


@dataclass
class Tracked:
    """One contact of the soak world, whichever side it was born on."""

    ident: int
    origin: str  # "bc" or "outlook"
    bc_id: int | None = None
    graph_id: str | None = None
    base: dict[str, str] | None = None  # the agreed record at the start of the trial
    edits: list[Edit] = field(default_factory=list)
    gone: bool = False  # deleted in Business Central, or in Outlook before it was ever imported
    label: str = ""

    def describe(self) -> str:
        return (
            f"#{self.ident} ({self.origin}-born, {self.label}, bc_id={self.bc_id}, graph_id={self.graph_id})"
        )


@dataclass
class Tally:
    trials: int = 0
    runs: int = 0
    kills: int = 0
    completed_before_kill: int = 0
    failed_runs_retried: int = 0
    kill_phases: Counter[str] = field(default_factory=Counter)
    edits: Counter[str] = field(default_factory=Counter)
    conflicts_logged: int = 0
    token_expiries: int = 0
    delta_expiries: int = 0
    wall_s: float = 0.0

    def line(self) -> str:
        phases = ", ".join(f"{k}={v}" for k, v in sorted(self.kill_phases.items())) or "-"
        edits = ", ".join(f"{k}={v}" for k, v in sorted(self.edits.items())) or "-"
        return (
            f"trials={self.trials} runs={self.runs} kills={self.kills} "
            f"(landed: {phases}) finished_before_kill={self.completed_before_kill} "
            f"failed_runs_retried={self.failed_runs_retried} conflicts_logged={self.conflicts_logged} "
            f"token_expiries={self.token_expiries} delta_expiries={self.delta_expiries} edits: {edits} "
            f"wall={self.wall_s:.1f}s"
        )


def database_url_of(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL naming the database this process is connected to (the test database in tests)."""
    engine = settings_dict["ENGINE"]
    name = str(settings_dict["NAME"])
    if engine.endswith("sqlite3"):
        return f"sqlite:///{name}"
    if engine.endswith(("postgresql", "postgis")):
        user = quote(settings_dict.get("USER") or "", safe="")
        password = settings_dict.get("PASSWORD") or ""
        auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "localhost"
        port = settings_dict.get("PORT") or "5432"
        return f"postgres://{auth}{host}:{port}/{quote(name, safe='')}"
    raise SoakFailed(f"The soak supports SQLite and PostgreSQL, not {engine}.")


def emulator_args(options: SoakOptions, scratch: Path) -> list[str]:
    """The emulator of a soak: a state file, the soak's tenant and mailbox, its latency, no rate limit."""
    return [
        "--state", str(scratch / "emulator-state.json"), "--save-debounce-s", "5",
        "--tenant", TENANT, "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
        "--mailbox", MAILBOX,
        "--latency-ms", str(options.latency_ms), "--item-latency-ms", str(options.item_latency_ms),
        "--rate-limit", str(10**9), "--fault-seed", str(options.seed),
    ]  # fmt: skip


@dataclass
class RunResult:
    killed: bool
    returncode: int
    run: SyncRun | None
    wall_s: float
    stderr: str


class Soak:
    def __init__(
        self, options: SoakOptions, *, emulator_url: str, out: Callable[[str], None] = print
    ) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        self.out = out
        self.control = EmulatorControl(emulator_url)
        self.outlook = self.control.outlook(MAILBOX)
        # The sync processes open this process's database (the test database in tests).
        self.env = child_env(
            var_dir=settings.VAR_DIR,
            database_url=database_url_of(connection.settings_dict),
            **emulator_login(
                url=emulator_url, tenant=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
            ),
            SYNC_CLAIM_STALE_SECONDS="0",
            LOG_LEVEL="WARNING",
            PYTHONHASHSEED="0",
        )
        self.tracked: list[Tracked] = []
        self.faults_on = False
        self.delta_expired_in_run = False
        self.events: list[str] = []  # runs in the edit sequence, for diagnostics
        self.tally = Tally()
        self.counter = 0
        self.seq = 0
        self.run_estimate_s = 0.5
        self.run_wall_s = 0.0
        self.startup_s = 0.5
        self.trial_started_run = 0
        self.user = None
        self.setup: ContactSyncSetup | None = None
        self.folder_id = ""

    # --- the world ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        if Contact.objects.exists():
            raise SoakFailed(
                "The soak needs a database without contacts: every person would be in the soak user's scope."
            )
        user_model = get_user_model()
        self.user, _ = user_model.objects.get_or_create(username=SOAK_USER, defaults={"is_staff": True})
        UserCard.objects.update_or_create(user=self.user, defaults={"microsoft_365_email": MAILBOX})
        _, self.setup = setups_for(user=self.user)
        for _ in range(self.options.contacts):
            self.bc_create()
        folder = self.outlook.create_folder(self.setup.folder_name)
        self.folder_id = folder["id"]
        for _ in range(max(2, self.options.contacts // 6)):
            self.outlook_create()
        self.startup_s = self.measure_startup()

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def new_values(self, keys: tuple[str, ...]) -> dict[str, str]:
        n = self.fresh("")
        values = {
            "job_title": f"Role {n}",
            "city": f"City {n}",
            "post_code": f"PC{n}",
            "address": f"{n} Soak Street",
            "mobile_phone_no": f"+44 7700 {int(n):06d}",
            "phone_no": f"+44 20 {int(n):07d}",
            "company_name": f"Company {n}",
            "initials": f"I{n}",
            "home_page": f"https://example.com/{n}",
        }
        if "name" in keys:
            first, surname = f"First{n}", f"Last{n}"
            values.update(first_name=first, surname=surname, name=f"{first} {surname}")
        wanted = {*keys, "first_name", "surname"} if "name" in keys else set(keys)
        return {key: values[key] for key in wanted}

    def fresh_email(self) -> str:
        return f"{self.fresh('soak')}@example.com"

    def bc_create(self) -> Tracked:
        values = self.new_values(("job_title", "city", "post_code", "phone_no", "name"))
        contact = Contact(type=ContactType.PERSON, email=self.fresh_email(), **values)
        contact.save()
        tracked = Tracked(ident=len(self.tracked) + 1, origin="bc", bc_id=contact.pk, label=contact.email)
        self.record_edits(tracked, "bc", bc_record(contact))
        self.tracked.append(tracked)
        self.tally.edits["bc_create"] += 1
        return tracked

    def outlook_create(self) -> Tracked:
        values = self.new_values(("job_title", "city", "mobile_phone_no", "name"))
        email = self.fresh_email()
        item = self.outlook.create_contact(
            self.folder_id,
            {
                "displayName": values["name"],
                "givenName": values["first_name"],
                "surname": values["surname"],
                "jobTitle": values["job_title"],
                "mobilePhone": values["mobile_phone_no"],
                "emailAddresses": [{"address": email, "name": values["name"]}],
                "businessAddress": {"city": values["city"]},
            },
        )
        tracked = Tracked(ident=len(self.tracked) + 1, origin="outlook", graph_id=item["id"], label=email)
        self.record_edits(tracked, "outlook", self.outlook_record(item))
        self.tracked.append(tracked)
        self.tally.edits["outlook_create"] += 1
        return tracked

    def record_edits(self, tracked: Tracked, side: str, values: dict[str, str]) -> None:
        seq = self.next_seq()
        tracked.edits.extend(
            Edit(seq, side, key, value) for key, value in values.items() if key not in IGNORED_FIELDS
        )

    def outlook_record(self, item: dict[str, Any]) -> dict[str, str]:
        return outlook_contact(item, self.countries).record

    @functools.cached_property
    def countries(self):
        return load_countries()

    def resolve(self) -> tuple[dict[int, ContactLink], dict[str, ContactLink], dict[str, dict[str, Any]]]:
        """Current links and folder; fills in what the model learns from them (ids of imports and
        recreations)."""
        links = list(ContactLink.objects.filter(setup=self.setup))
        by_contact = {link.contact_id: link for link in links if link.contact_id}
        by_graph = {link.graph_id: link for link in links}
        folder = {item["id"]: item for item in self.outlook.list_contacts(self.folder_id)}
        for tracked in self.tracked:
            if tracked.gone:
                continue
            if tracked.bc_id is None and tracked.graph_id in by_graph:
                tracked.bc_id = by_graph[tracked.graph_id].contact_id
            if tracked.bc_id is not None and tracked.bc_id in by_contact:
                tracked.graph_id = by_contact[tracked.bc_id].graph_id
        return by_contact, by_graph, folder

    # --- edits ---------------------------------------------------------------------------------------

    def edit_round(self, count: int) -> None:
        for _ in range(count):
            by_contact, by_graph, folder = self.resolve()
            alive = [t for t in self.tracked if not t.gone]
            in_bc = [t for t in alive if t.bc_id is not None]
            in_outlook = [
                t
                for t in alive
                if t.graph_id in folder
                and (t.graph_id in by_graph or (t.bc_id is None and t.origin == "outlook"))
            ]
            size = len(alive)
            roll = self.rng.random()
            low, high = self.options.contacts * 3 // 4, self.options.contacts * 5 // 4
            if roll < 0.10 and size < high:
                self.bc_create()
            elif roll < 0.18 and size < high:
                self.outlook_create()
            elif roll < 0.24 and size > low and in_bc:
                self.bc_delete(self.rng.choice(in_bc), by_contact, folder)
            elif roll < 0.30 and size > low and in_outlook:
                self.outlook_delete(self.rng.choice(in_outlook), by_graph)
            elif roll < 0.38 and in_bc:
                self.bc_edit(self.rng.choice(in_bc), email=True)
            elif roll < 0.42 and in_outlook:
                self.outlook_edit(self.rng.choice(in_outlook), folder, email=True)
            elif roll < 0.72 and in_bc:
                self.bc_edit(self.rng.choice(in_bc))
            elif in_outlook:
                self.outlook_edit(self.rng.choice(in_outlook), folder)

    def edit_keys(self) -> tuple[str, ...]:
        groups = self.rng.sample(EDIT_GROUPS, self.rng.randint(1, 3))
        return tuple(key for group in groups for key in group)

    def bc_edit(self, tracked: Tracked, *, email: bool = False) -> None:
        contact = Contact.objects.get(pk=tracked.bc_id)
        values = {"email": self.fresh_email()} if email else self.new_values(self.edit_keys())
        for key, value in values.items():
            setattr(contact, key, value)
        contact.save()
        seq = self.next_seq()
        tracked.edits.extend(Edit(seq, "bc", key, value) for key, value in values.items())
        self.tally.edits["bc_email" if email else "bc_edit"] += 1

    def bc_delete(
        self, tracked: Tracked, by_contact: dict[int, ContactLink], folder: dict[str, dict]
    ) -> None:
        contact = Contact.objects.get(pk=tracked.bc_id)
        orphan = None
        if tracked.bc_id not in by_contact:
            # A killed run may have created its Outlook copy without linking it: that copy now looks
            # like a contact made in Outlook, and the next run imports it (it cannot tell them apart).
            email = normalize_email(contact.email)
            orphan = next(
                (i for i in folder.values() if normalize_email(self.outlook_record(i)["email"]) == email),
                None,
            )
        contact.delete()
        tracked.gone = True
        self.tally.edits["bc_delete"] += 1
        if orphan is not None:
            self.tally.edits["bc_delete_of_unlinked_pushed_copy"] += 1
            reborn = Tracked(
                ident=len(self.tracked) + 1, origin="outlook", graph_id=orphan["id"], label=contact.email
            )
            self.record_edits(reborn, "outlook", self.outlook_record(orphan))
            self.tracked.append(reborn)

    def outlook_edit(self, tracked: Tracked, folder: dict[str, dict], *, email: bool = False) -> None:
        assert tracked.graph_id is not None
        item = folder[tracked.graph_id]
        values = {"email": self.fresh_email()} if email else self.new_values(self.edit_keys())
        record = self.outlook_record(item)
        patch: dict[str, Any] = {}
        address = dict(item.get("businessAddress") or {})
        for key, value in values.items():
            if key == "email":
                patch["emailAddresses"] = [{"address": value, "name": record["name"]}]
            elif key == "name":
                patch["displayName"] = value
            elif key in ("city", "post_code", "address"):
                address[{"city": "city", "post_code": "postalCode", "address": "street"}[key]] = value
                patch["businessAddress"] = address
            elif key == "phone_no":
                patch["businessPhones"] = [value]
            else:
                graph_name = {
                    "job_title": "jobTitle",
                    "mobile_phone_no": "mobilePhone",
                    "company_name": "companyName",
                    "initials": "initials",
                    "home_page": "businessHomePage",
                    "first_name": "givenName",
                    "surname": "surname",
                }[key]
                patch[graph_name] = value
        updated = self.outlook.update_contact(tracked.graph_id, patch)
        after = self.outlook_record(updated)
        seq = self.next_seq()
        tracked.edits.extend(
            Edit(seq, "outlook", key, after[key]) for key in after if after[key] != record[key]
        )
        self.tally.edits["outlook_email" if email else "outlook_edit"] += 1

    def outlook_delete(self, tracked: Tracked, by_graph: dict[str, ContactLink]) -> None:
        assert tracked.graph_id is not None
        linked = tracked.graph_id in by_graph
        self.outlook.delete_contact(tracked.graph_id)
        if linked:
            # Still in Business Central: recreated in Outlook. Outlook edits not yet imported die with it.
            tracked.edits = [
                Edit(e.seq, e.side, e.key, e.value, optional=True) if e.side == "outlook" else e
                for e in tracked.edits
            ]
            self.tally.edits["outlook_delete_linked"] += 1
        else:
            tracked.gone = True
            self.tally.edits["outlook_delete_unimported"] += 1

    # --- runs ---------------------------------------------------------------------------------------

    def command(self, mode: str) -> list[str]:
        command = manage_py("sync_contacts", "--user", SOAK_USER)
        return [*command, "--full"] if mode == SyncMode.FULL else command

    def measure_startup(self) -> float:
        started = time.monotonic()
        subprocess.run(  # noqa: S603 - our own interpreter and manage.py
            [*self.command(SyncMode.SYNC)[:-1], "-no-such-user-"],
            env=self.env, capture_output=True, check=False, timeout=RUN_TIMEOUT_S,
        )  # fmt: skip
        return time.monotonic() - started

    def pick_mode(self) -> str:
        return SyncMode.FULL if self.rng.random() < self.options.full_sync_share else SyncMode.SYNC

    def start_run(self, mode: str, kill_after_s: float | None) -> RunResult:
        last_id = (
            SyncRun.objects.filter(user=self.user).order_by("-id").values_list("id", flat=True).first() or 0
        )
        timers = self.fault_timers() if self.faults_on else []
        self.delta_expired_in_run = False
        started = time.monotonic()
        with tempfile.TemporaryFile(mode="w+") as stderr:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
                self.command(mode),
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=settings.BASE_DIR,
            )
            for timer in timers:
                timer.start()
            killed = False
            run_started = started
            if kill_after_s is not None:
                # The kill clock starts when the run exists (Django's start-up is not interesting).
                while process.poll() is None and time.monotonic() - started < RUN_TIMEOUT_S:
                    if SyncRun.objects.filter(user=self.user, id__gt=last_id).exists():
                        break
                    time.sleep(0.005)
                run_started = time.monotonic()
            try:
                process.wait(timeout=kill_after_s if kill_after_s is not None else RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                if kill_after_s is None:
                    process.kill()
                    process.wait()
                    raise SoakFailed(f"A {mode} run did not finish within {RUN_TIMEOUT_S:.0f}s.") from None
                process.send_signal(signal.SIGKILL)
                process.wait()
                killed = True
            for timer in timers:
                timer.cancel()
                timer.join()  # one already firing finishes first, so delta_expired_in_run is settled
            stderr.seek(0)
            text = stderr.read()
        wall = time.monotonic() - started
        if kill_after_s is None:
            run_started = started + self.startup_s
        self.run_wall_s = time.monotonic() - run_started
        self.tally.runs += 1
        run = SyncRun.objects.filter(user=self.user, id__gt=last_id).order_by("-id").first()
        self.events.append(
            f"{self.next_seq()}: {mode} run {run.pk if run else '-'} {'killed' if killed else 'ended'}"
        )
        return RunResult(killed=killed, returncode=process.returncode, run=run, wall_s=wall, stderr=text)

    def fault_timers(self) -> list[threading.Timer]:
        timers = []
        low, high = self.startup_s * 0.9, self.startup_s + self.run_estimate_s
        if self.rng.random() < 0.5:
            timers.append(threading.Timer(self.rng.uniform(low, high), self.expire_tokens))
        if self.rng.random() < 0.25:
            timers.append(threading.Timer(self.rng.uniform(low, high), self.expire_delta))
        return timers

    def expire_tokens(self) -> None:
        self.control.configure(expire_tokens_now=True)
        self.tally.token_expiries += 1

    def expire_delta(self) -> None:
        self.control.configure(expire_delta_tokens_now=True)
        self.tally.delta_expiries += 1
        self.delta_expired_in_run = True

    def set_faults(self, on: bool) -> None:
        self.faults_on = on  # mid-run token and delta link expiry too: the quiet check runs fault-free
        rates = (self.options.fault_rate_429, self.options.fault_rate_503) if on else (0.0, 0.0)
        self.control.configure(
            fault_rate_429=rates[0], fault_rate_503=rates[1], retry_after_s=self.options.retry_after_s
        )

    def killed_attempt(self) -> None:
        mode = self.pick_mode()
        if self.options.faults and self.rng.random() < 0.3:
            self.expire_delta()
        delay = self.rng.uniform(0.0, self.run_estimate_s * 1.1)
        self.control.reset_stats()
        result = self.start_run(mode, kill_after_s=delay)
        if not result.killed:
            self.tally.completed_before_kill += 1
            self.judge_finished(result, mode)
            return
        self.tally.kills += 1
        self.tally.kill_phases[self.kill_phase(result)] += 1

    def kill_phase(self, result: RunResult) -> str:
        if result.run is None or result.run.status == RunStatus.QUEUED:
            return "startup"
        time.sleep(self.options.latency_ms / 1000 + 0.05)  # let a batch in flight land in the emulator
        logged = ActivityLog.objects.filter(run=result.run).exists()
        batches = self.control.stats()["by_route"].get("POST /$batch", 0)
        if logged:
            return "after_write"
        return "inside_batch" if batches else "reading"

    def judge_finished(self, result: RunResult, mode: str) -> bool:
        """True when the run succeeded with every item written. Raises on a crash."""
        run = result.run
        if run is None:
            raise SoakFailed(
                f"The {mode} run left no SyncRun (exit {result.returncode}): {result.stderr[-2000:]}"
            )
        if run.status == RunStatus.SUCCEEDED:
            self.run_estimate_s = 0.7 * self.run_estimate_s + 0.3 * max(0.05, self.run_wall_s)
            return run.failed == 0
        if (
            run.error.startswith("Unexpected error")
            or "Traceback" in result.stderr
            or not self.options.faults
        ):
            raise SoakFailed(f"Run {run.pk} ({mode}) failed: {run.error}\n{result.stderr[-4000:]}")
        return False

    def run_to_completion(self) -> None:
        for _ in range(MAX_COMPLETION_ATTEMPTS):
            mode = self.pick_mode()
            result = self.start_run(mode, kill_after_s=None)
            # A delta link expired during the run may be the one it just stored: go round once more.
            if self.judge_finished(result, mode) and not self.delta_expired_in_run:
                return
            self.tally.failed_runs_retried += 1
        raise SoakFailed(f"No run finished cleanly in {MAX_COMPLETION_ATTEMPTS} attempts.")

    # --- a trial ------------------------------------------------------------------------------------

    def trial(self, number: int) -> None:
        started = time.monotonic()
        self.trial_started_run = (
            SyncRun.objects.filter(user=self.user).order_by("-id").values_list("id", flat=True).first() or 0
        )
        kills_before = self.tally.kills
        if number > 1:
            self.edit_round(self.rng.randint(*self.options.edits))
        self.set_faults(self.options.faults)
        if self.options.faults:
            # Every fault trial starts with a stale token and an expired delta link; more expire mid-run.
            self.expire_tokens()
            self.expire_delta()
        attempts = 0
        while attempts < self.options.max_kills and (
            attempts == 0 or self.rng.random() < self.options.kill_prob
        ):
            attempts += 1
            self.killed_attempt()
            if self.rng.random() < 0.7:
                self.edit_round(self.rng.randint(1, 3))
        self.run_to_completion()
        self.set_faults(False)
        problems = self.check()
        quiet = self.quiet_sync()
        problems += quiet
        self.tally.trials += 1
        alive = sum(1 for t in self.tracked if not t.gone)
        self.out(
            f"trial {number}: {alive} contacts, {attempts} attempts, "
            f"{self.tally.kills - kills_before} killed, "
            f"{time.monotonic() - started:.1f}s - {'OK' if not problems else 'VIOLATION'}"
        )
        if problems:
            raise SoakFailed(
                f"Trial {number} (seed {self.options.seed}) broke an invariant:\n- " + "\n- ".join(problems)
            )
        self.rebase()

    def quiet_sync(self) -> list[str]:
        result = self.start_run(SyncMode.SYNC, kill_after_s=None)
        run = result.run
        if run is None or run.status != RunStatus.SUCCEEDED:
            return [
                f"The fault-free Sync after the trial failed: {run.error if run else result.stderr[-2000:]}"
            ]
        counts = run.moved()
        if counts:
            messages = list(ActivityLog.objects.filter(run=run).values_list("message", flat=True)[:10])
            return [f"One more fault-free Sync was not quiet: {counts}; {messages}"]
        return []

    def rebase(self) -> None:
        self.resolve()
        contacts = Contact.objects.in_bulk([t.bc_id for t in self.tracked if not t.gone and t.bc_id])
        for tracked in self.tracked:
            if tracked.gone:
                continue
            tracked.base = _comparable(bc_record(contacts[tracked.bc_id]))
            tracked.edits = []

    # --- the invariants ------------------------------------------------------------------------------

    def check(self) -> list[str]:
        problems: list[str] = []
        by_contact, by_graph, folder = self.resolve()
        records = {gid: self.outlook_record(item) for gid, item in folder.items()}
        emails = Counter(normalize_email(r["email"]) for r in records.values())
        problems += [
            f"{n} contacts with email {e!r} in the Outlook folder" for e, n in emails.items() if n > 1
        ]
        assert self.setup is not None
        persons = {c.pk: c for c in scope_queryset(ContactSyncSetup.objects.get(pk=self.setup.pk))}
        all_persons = Counter(
            Contact.objects.persons().exclude(search_email="").values_list("search_email", flat=True)
        )
        problems += [
            f"{n} Business Central persons with email {e!r}" for e, n in all_persons.items() if n > 1
        ]
        for link in by_graph.values():
            if link.contact_id is None or link.pending or link.detached:
                problems.append(
                    f"link {link.pk} left behind (contact {link.contact_id}, pending {link.pending})"
                )
        for pk, contact in persons.items():
            link = by_contact.get(pk)
            if link is None or link.graph_id not in records:
                problems.append(f"{contact.no} {contact.email} has no linked contact in the Outlook folder")
                continue
            bc, ol = _comparable(bc_record(contact)), _comparable(records[link.graph_id])
            if bc != ol:
                diff = {k: (bc[k], ol.get(k)) for k in bc if bc[k] != ol.get(k)}
                problems.append(f"{contact.no} differs from its Outlook contact (BC, Outlook): {diff}")
        for graph_id, record in records.items():
            link = by_graph.get(graph_id)
            if link is None or link.contact_id not in persons:
                problems.append(
                    f"Outlook contact {record['email']!r} ({graph_id[:12]}…) has no Business Central person"
                )
        alive = [t for t in self.tracked if not t.gone]
        if len(alive) != len(persons) or len(alive) != len(records):
            problems.append(
                f"expected {len(alive)} contacts; Business Central has {len(persons)}, "
                f"the folder {len(records)}"
            )
        logs = self.overwrite_logs()
        for tracked in self.tracked:
            problems += self.check_tracked(tracked, persons, logs)
        return problems

    def overwrite_logs(self) -> dict[int, list[dict[str, str]]]:
        found: dict[int, list[dict[str, str]]] = {}
        for contact_id, details in ActivityLog.objects.filter(
            user=self.user, run_id__gt=self.trial_started_run, contact__isnull=False
        ).values_list("contact_id", "details"):
            overwritten = (details or {}).get("outlook_values_overwritten")
            if overwritten:
                found.setdefault(contact_id, []).append(overwritten)
        return found

    def check_tracked(
        self, tracked: Tracked, persons: dict[int, Contact], logs: dict[int, list]
    ) -> list[str]:
        if tracked.gone:
            if tracked.bc_id is not None and Contact.objects.filter(pk=tracked.bc_id).exists():
                return [f"{tracked.describe()} was deleted but is still in Business Central"]
            return []
        if tracked.bc_id is None or tracked.bc_id not in persons:
            return [f"{tracked.describe()} is missing from Business Central"]
        final = _comparable(bc_record(persons[tracked.bc_id]))
        problems = []
        by_key: dict[str, list[Edit]] = {}
        for edit in tracked.edits:
            by_key.setdefault(edit.key, []).append(edit)
        for key, value in final.items():
            edits = by_key.get(key, [])
            required = [e for e in edits if not e.optional]
            allowed = {e.value for e in edits} | ({tracked.base[key]} if tracked.base else set())
            if not required:
                expected = tracked.base[key] if tracked.base else None
                if tracked.base is not None and value not in allowed:
                    problems.append(
                        f"{tracked.describe()}: {key} is {value!r}, expected {expected!r} (no edit)"
                    )
                continue
            last = required[-1]
            if value == last.value:
                continue
            logged = last.side == "outlook" and any(
                entry.get(key) == last.value for entry in logs.get(tracked.bc_id, [])
            )
            if logged and value in allowed:
                self.tally.conflicts_logged += 1
                continue
            problems.append(
                f"{tracked.describe()}: the {last.side} edit of {key} to {last.value!r} was lost "
                f"(now {value!r}); edits of {key}: {[(e.seq, e.side, e.value) for e in edits]}"
                + (
                    ""
                    if last.side == "bc"
                    else "; no Activity Log entry names it in outlook_values_overwritten"
                )
            )
        if problems:
            problems.append(f"  history of {tracked.describe()}: {self.history(tracked)}")
        return problems

    def history(self, tracked: Tracked) -> str:
        """The trial's Activity Log entries for the contact and the edit sequence, to diagnose."""
        entries = ActivityLog.objects.filter(
            user=self.user, run_id__gt=self.trial_started_run, contact_id=tracked.bc_id
        ).order_by("id")
        lines = [f"run {e.run_id} [{e.run.status}] {e.action}/{e.outcome}: {e.message}" for e in entries]
        link = ContactLink.objects.filter(contact_id=tracked.bc_id).first()
        contact = Contact.objects.filter(pk=tracked.bc_id).first()
        if link is not None and contact is not None:
            lines.append(
                f"link bc_hash={link.bc_hash[:8]} m365_hash={link.m365_hash[:8]} "
                f"synced_at={link.synced_at:%H:%M:%S.%f} now: bc={record_hash(bc_record(contact))[:8]} "
                f"last_modified={contact.last_modified:%H:%M:%S.%f}"
            )
        for run in SyncRun.objects.filter(user=self.user, id__gt=self.trial_started_run).order_by("id"):
            lines.append(
                f"run {run.pk} {run.mode} {run.status} "
                f"started={run.started_at and f'{run.started_at:%H:%M:%S.%f}'} "
                f"{run.summary_line()} {run.error[:80]}"
            )
        edits = [(e.seq, e.side, e.key, e.value) for e in tracked.edits]
        return (
            "\n    runs "
            + ", ".join(self.events[-12:])
            + "\n    edits "
            + repr(edits)
            + "\n    "
            + "\n    ".join(lines)
        )

    # --- all trials -----------------------------------------------------------------------------------

    def run(self) -> Tally:
        began = time.monotonic()
        self.prepare()
        for number in range(1, self.options.trials + 1):
            self.trial(number)
        self.tally.wall_s = time.monotonic() - began
        return self.tally


def _comparable(record: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in record.items() if key not in IGNORED_FIELDS}


def run_soak(options: SoakOptions, *, out: Callable[[str], None] = print) -> Tally:
    """Start an emulator process, run the trials against this process's database, print tallies.
    Raises SoakFailed on the first violated invariant."""
    out(
        f"soak seed={options.seed} trials={options.trials} faults={'on' if options.faults else 'off'} "
        f"(replay: --seed {options.seed})"
    )
    with (
        tempfile.TemporaryDirectory(prefix="bcsync-soak-") as scratch,
        emulator_process(*emulator_args(options, Path(scratch))) as url,
    ):
        soak = Soak(options, emulator_url=url, out=out)
        try:
            tally = soak.run()
        finally:
            soak.tally.wall_s = soak.tally.wall_s or 0.0
            out(f"tallies: {soak.tally.line()}")
    return tally


def run_soak_in_scratch_database(options: SoakOptions, *, database_url: str = "") -> None:
    """Migrate a throwaway SQLite database (or the empty one `database_url` names) and run the soak in a
    child `soak_sync` pointed at it, so the caller's own database, whose persons would all be in the
    soak user's scope, is never touched. Raises SoakFailed when the child finds a problem."""
    with tempfile.TemporaryDirectory(prefix="bcsync-soak-db-") as scratch:
        env = child_env(var_dir=Path(scratch), database_url=database_url)
        migrate = manage_py("migrate", "--noinput", "-v", "0")
        if subprocess.run(migrate, env=env, check=False).returncode:  # noqa: S603 - our own manage.py
            raise SoakFailed("Could not migrate the soak database.")
        soak = manage_py("soak_sync", "--in-place", options.to_json())
        child = subprocess.run(soak, env=env, check=False)  # noqa: S603 - our own manage.py
        if child.returncode:
            raise SoakFailed(
                f"The soak found a problem (exit status {child.returncode}); seed {options.seed}."
            )
