"""Sync health: per user, whether their sync works and what needs attention, and the runs of the last
days for the charts above it. Every function reads in a fixed number of queries, whatever the number
of users."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from ..models import (
    CodeunitId,
    ConnectionStatus,
    ExchangeSyncSetup,
    JobQueueEntry,
    JobStatus,
    RunStatus,
    SyncIncident,
    SyncMode,
    SyncRun,
)

NEVER = datetime(1970, 1, 1, tzinfo=UTC)
CHART_DAYS = 14
DURATION_RUNS = 50  # the finished runs the duration chart shows, latest last
# A free interactive worker takes a run within a second or two (0.45 s measured mid-pass); one that
# waits this long has no interactive worker to go to.
UNTAKEN_AFTER_S = 60


def last_success_at(*, user) -> Subquery:
    """When the user's last successful run (Previews aside) finished; `user` is an OuterRef."""
    return Subquery(
        SyncRun.objects.filter(user=user, status=RunStatus.SUCCEEDED)
        .exclude(mode=SyncMode.PREVIEW)
        .order_by("-finished_at")
        .values("finished_at")[:1]
    )


def failures_since_last_success(*, user) -> QuerySet[SyncRun]:
    """The user's failed runs since their last successful one, Previews aside: its failures in a row.
    `user` may be an OuterRef."""
    return (
        SyncRun.objects.filter(user=user, status=RunStatus.FAILED)
        .exclude(mode=SyncMode.PREVIEW)
        .filter(finished_at__gt=Coalesce(last_success_at(user=OuterRef("user")), Value(NEVER)))
    )


@dataclass(frozen=True)
class HealthRow:
    user: AbstractBaseUser
    microsoft_365_email: str
    connection_status: str
    connection_label: str
    background_sync: bool
    last_run: SyncRun | None
    last_success_at: datetime | None
    failures_in_a_row: int
    next_run_at: datetime | None
    alerted_since: datetime | None  # an alert email went out then and the incident is still open
    problems: tuple[str, ...]  # what needs attention, in words; empty when all is well

    @property
    def needs_attention(self) -> bool:
        return bool(self.problems)

    @property
    def last_run_seconds(self) -> float | None:
        return run_seconds(self.last_run) if self.last_run else None


def run_seconds(run: SyncRun) -> float | None:
    if run.started_at and run.finished_at:
        return (run.finished_at - run.started_at).total_seconds()
    return None


def health_rows(*, users: QuerySet | None = None, now: datetime | None = None) -> list[HealthRow]:
    """One row per active user who has a User Card or a setup (or per user of `users`), in five
    queries."""
    now = now or timezone.now()
    if users is None:
        users = (
            get_user_model()
            .objects.filter(is_active=True)
            .filter(Q(user_card__isnull=False) | Q(exchange_sync_setup__isnull=False))
        )
    failures = (
        failures_since_last_success(user=OuterRef("pk"))
        .order_by()
        .values("user")
        .annotate(n=Count("pk"))
        .values("n")
    )
    users = list(
        users.select_related("user_card", "exchange_sync_setup")
        .annotate(
            last_run_id=Subquery(
                SyncRun.objects.filter(user=OuterRef("pk")).order_by("-queued_at", "-id").values("id")[:1]
            ),
            last_success_at=last_success_at(user=OuterRef("pk")),
            failures_in_a_row=Coalesce(Subquery(failures), 0),
        )
        .order_by("username")
    )
    runs = SyncRun.objects.in_bulk([u.last_run_id for u in users if u.last_run_id])
    entries = list(
        JobQueueEntry.objects.filter(object_id_to_run=CodeunitId.CONTACT_SYNC).order_by("next_run_at")
    )
    alerted: dict[int, datetime] = {}
    for incident in SyncIncident.objects.filter(
        resolved_at__isnull=True, user__in=[u.pk for u in users]
    ).order_by("-opened_at"):
        alerted[incident.user_id] = incident.opened_at
    return [
        _row(user, runs.get(user.last_run_id), entries=entries, alerted_since=alerted.get(user.pk), now=now)
        for user in users
    ]


def health_row(*, user: AbstractBaseUser) -> HealthRow:
    """The same facts for one user, for their own setup page."""
    return health_rows(users=get_user_model().objects.filter(pk=user.pk))[0]


def _row(user, last_run: SyncRun | None, *, entries, alerted_since, now: datetime) -> HealthRow:
    card = getattr(user, "user_card", None)
    email = card.microsoft_365_email if card else ""
    setup = getattr(user, "exchange_sync_setup", None) or ExchangeSyncSetup(user=user)
    ready = [e for e in entries if e.status in (JobStatus.READY, JobStatus.IN_PROCESS) and e.next_run_at]
    next_run_at = ready[0].next_run_at if setup.enabled and ready else None
    problems = []
    if not email:
        problems.append("No Microsoft 365 email: enter it on the User Card.")
    if setup.connection_status == ConnectionStatus.FAILED:
        problems.append(f"Validate Exchange Connection failed: {setup.last_validation_message}")
    if last_run is not None and last_run.status == RunStatus.FAILED:
        times = "once" if user.failures_in_a_row <= 1 else f"{user.failures_in_a_row} times in a row"
        problems.append(f"The sync failed {times}: {last_run.error}")
    if last_run is not None and not last_run.is_finished and last_run.heartbeat_at:
        silent = now - last_run.heartbeat_at
        if silent > timedelta(seconds=settings.SYNC_CLAIM_STALE_SECONDS):
            problems.append(
                f"Run #{last_run.pk} has given no sign of life for {int(silent.total_seconds())} s."
            )
    if last_run is not None and (waiting := untaken_run_message(run=last_run, now=now)):
        problems.append(waiting)
    if setup.enabled and not ready:
        held = [e.get_status_display() for e in entries]
        problems.append(
            "Background synchronization is on, but "
            + (f"its Job Queue Entry is {', '.join(held)}." if held else "there is no Job Queue Entry 6700.")
        )
    return HealthRow(
        user=user,
        microsoft_365_email=email,
        connection_status=setup.connection_status,
        connection_label=setup.get_connection_status_display(),
        background_sync=setup.enabled,
        last_run=last_run,
        last_success_at=user.last_success_at,
        failures_in_a_row=user.failures_in_a_row,
        next_run_at=next_run_at,
        alerted_since=alerted_since,
        problems=tuple(problems),
    )


@dataclass(frozen=True)
class DayOfRuns:
    day: date
    by_status: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


def runs_per_day(*, days: int = CHART_DAYS, now: datetime | None = None) -> list[DayOfRuns]:
    """Runs queued on each of the last `days` days (today included, in TIME_ZONE), by status."""
    today = timezone.localdate(now or timezone.now())
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    counted: dict[date, dict[str, int]] = defaultdict(dict)
    for row in (
        SyncRun.objects.filter(queued_at__gte=start)
        .annotate(day=TruncDate("queued_at", tzinfo=timezone.get_current_timezone()))
        .values("day", "status")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        counted[row["day"]][row["status"]] = row["n"]
    return [
        DayOfRuns(day=first + timedelta(days=i), by_status=counted[first + timedelta(days=i)])
        for i in range(days)
    ]


def recent_durations(*, limit: int = DURATION_RUNS) -> list[SyncRun]:
    """The last `limit` finished runs that started, oldest first."""
    runs = (
        SyncRun.objects.filter(started_at__isnull=False, finished_at__isnull=False)
        .select_related("user")
        .order_by("-finished_at", "-id")[:limit]
    )
    return list(reversed(runs))


@dataclass(frozen=True)
class RunProgress:
    """Where a running run is, from what its last per-batch flush wrote: no query of its own."""

    phase: str
    done: int
    total: int  # 0 when not known (a delta read does not know how many changes come)
    seconds_left: float | None
    slice: int = 1  # a run longer than one task goes on in slices (services.contact_sync)
    waiting: bool = False  # its next slice waits for a worker

    @property
    def percent(self) -> int | None:
        return min(100, self.done * 100 // self.total) if self.total else None

    @property
    def text(self) -> str:
        if self.slice > 1:
            if self.waiting:
                return f"slice {self.slice} is queued and goes on where slice {self.slice - 1} stopped"
            return f"slice {self.slice}, {self._phase_text()}"
        return self._phase_text()

    def _phase_text(self) -> str:
        if self.total:
            return f"{self.phase}: {self.done:,} of {self.total:,}"
        return f"{self.phase}: {self.done:,} so far" if self.done else f"{self.phase}…"

    @property
    def time_left(self) -> str:
        if self.seconds_left is None:
            return ""
        minutes, seconds = divmod(round(self.seconds_left), 60)
        if not minutes:
            return f"about {max(seconds, 1)} s left"
        return f"about {minutes} min {seconds} s left" if seconds else f"about {minutes} min left"


def untaken_run_message(*, run: SyncRun, now: datetime | None = None) -> str:
    """Why a run a person started has not started, when no worker has taken it (or its next slice) for
    UNTAKEN_AFTER_S: the interactive cluster that takes such runs is not running, or too small. ""
    otherwise, and for runs of the default cluster, which may rightly wait behind a pass."""
    cluster = run.interactive_cluster
    if cluster is None:
        return ""
    if run.status == RunStatus.QUEUED:
        waiting_since = run.queued_at
    elif run.status == RunStatus.RUNNING and run.slice_started_at is None:
        waiting_since = run.heartbeat_at  # set when the last slice handed on
    else:
        return ""
    waited = ((now or timezone.now()) - waiting_since).total_seconds() if waiting_since else 0
    if waited < UNTAKEN_AFTER_S:
        return ""
    return (
        f"Run #{run.pk} has waited {int(waited)} s for a worker: the runs people start are taken by the "
        f"'{cluster}' workers (Q_CLUSTER_NAME={cluster} manage.py qcluster), and none is running or all "
        "are busy. It starts as soon as one is; ask an administrator to start them."
    )


def run_progress(*, run: SyncRun, now: datetime | None = None) -> RunProgress | None:
    """The progress of a running run, None once it has finished or before it starts. The time left
    is the phase's pace so far applied to what remains of it."""
    if run.status != RunStatus.RUNNING or not run.phase:
        return None
    seconds_left = None
    if run.phase_total and run.phase_done and run.phase_started_at:
        elapsed = ((now or timezone.now()) - run.phase_started_at).total_seconds()
        seconds_left = max(elapsed, 0) / run.phase_done * max(run.phase_total - run.phase_done, 0)
    return RunProgress(
        phase=run.get_phase_display(),
        done=run.phase_done,
        total=run.phase_total,
        seconds_left=seconds_left,
        slice=run.slice,
        waiting=run.slice_started_at is None,
    )
