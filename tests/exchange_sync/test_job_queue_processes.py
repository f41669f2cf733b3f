"""A pass and one sync per user across real processes: two default `manage.py qcluster`s (as on
two hosts, one of them killed mid-pass), the interactive cluster a button's run goes to, and racing
requests, all against the test database (SQLite file or PostgreSQL) and a live Microsoft 365
emulator. Rows must be committed for the children to see them, hence transaction=True."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from django_q.tasks import async_task

from exchange_sync.models import (
    ConnectionStatus,
    ContactSyncSetup,
    ExchangeSyncSetup,
    JobQueueEntry,
    JobQueueLogEntry,
    JobStatus,
    LogStatus,
    PassUser,
    RunStatus,
    SyncMode,
    SyncRun,
    SyncTrigger,
)
from exchange_sync.services import contact_sync, job_queue
from exchange_sync.services.contact_sync import setups_for
from tests.factories import PersonFactory, UserCardFactory, UserFactory
from tests.processes import emulator_child_environment, start, stop

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEADLINE_SECONDS = 120


@pytest.fixture
def child_env(m365, tmp_path) -> dict[str, str]:
    """A child process's environment with this test's emulator."""
    return emulator_child_environment(
        tmp_path,
        m365.url,
        Q_WORKERS="2",
        Q_SYNC="false",
    )


def background_users(m365, count: int, *, prefix: str = "sp") -> list:
    users = []
    for n in range(count):
        card = UserCardFactory(user=UserFactory(username=f"{prefix}{n:02d}"))
        m365.emulator.add_mailbox(card.microsoft_365_email)
        exchange, _ = setups_for(user=card.user)
        ExchangeSyncSetup.objects.filter(pk=exchange.pk).update(connection_status=ConnectionStatus.CONNECTED)
        users.append(card.user)
    return users


def cluster(child_env: dict[str, str], log: Path, *, name: str = "", **variables: str) -> subprocess.Popen:
    env = {**child_env, **variables, **({"Q_CLUSTER_NAME": name} if name else {})}
    return start(["manage.py", "qcluster"], env, log)


def logs(tmp_path: Path) -> str:
    return "".join(log.read_text() for log in sorted(tmp_path.glob("qcluster-*.log")))


def wait_for(condition, what: str, clusters, tmp_path: Path, *, each=None) -> None:
    """Poll until condition() holds; a cluster that stopped fails the test with the clusters' logs."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert not [c for c in clusters if c.poll() is not None], logs(tmp_path)
        assert time.monotonic() < deadline, f"{what} did not happen in time\n" + logs(tmp_path)
        if each is not None:
            each()
        time.sleep(0.25)


def assert_every_folder_holds_each_contact_once(m365, users, contacts) -> None:
    expected = sorted(c.email for c in contacts)
    for user in users:
        items = m365.emulator.outlook(user.user_card.microsoft_365_email).list_contacts("Business Central")
        assert sorted(a["address"] for item in items for a in item["emailAddresses"]) == expected, user


def test_a_pass_over_30_users_on_two_clusters_syncs_each_once_and_a_button_press_does_not_wait(
    m365, child_env, tmp_path
):
    contacts = PersonFactory.create_batch(3)
    users = background_users(m365, 30)
    for user in users:
        job_queue.set_background_sync(user=user, enabled=True)
    walk_in = background_users(m365, 1, prefix="walkin")[0]  # background sync off: not in the pass
    entry = JobQueueEntry.objects.get()
    assert entry.next_run_at <= timezone.now()  # due: the schedule may fire too, a third delivery

    clusters = [cluster(child_env, tmp_path / f"qcluster-{n}.log") for n in (1, 2)]
    clusters.append(cluster(child_env, tmp_path / "qcluster-interactive.log", name="interactive"))
    try:
        for n in (1, 2):  # delivered twice, as a schedule and a retry may
            async_task("exchange_sync.tasks.run_job_queue_entry_task", entry.pk, task_name=f"delivery-{n}")
        wait_for(
            lambda: PassUser.objects.filter(finished_at__isnull=False).exists(),
            "a first user",
            clusters,
            tmp_path,
        )
        pressed = contact_sync.request_contact_sync(
            user=walk_in, mode=SyncMode.SYNC, trigger=SyncTrigger.BUTTON
        )
        log = JobQueueLogEntry.objects.get()
        wait_for(
            lambda: (
                JobQueueLogEntry.objects.filter(pk=log.pk, ended_at__isnull=False).exists()
                and SyncRun.objects.filter(pk=pressed.pk, status=RunStatus.SUCCEEDED).exists()
            ),
            "the pass and the button's run",
            clusters,
            tmp_path,
        )
    finally:
        stop(*clusters)

    log.refresh_from_db()
    pressed.refresh_from_db()
    assert pressed.started_at < log.ended_at  # it ran while the pass was still going
    assert (log.status, log.users_total, log.users_synced, log.users_skipped, log.users_failed) == (
        LogStatus.SUCCESS,
        30,
        30,
        0,
        0,
    )
    entry.refresh_from_db()
    assert (entry.status, entry.last_error, entry.claimed_at) == (JobStatus.READY, "", None)
    assert entry.next_run_at > timezone.now()
    runs = SyncRun.objects.filter(job_queue_entry=entry)
    assert sorted(runs.values_list("user__username", flat=True)) == sorted(u.username for u in users)
    assert set(runs.values_list("status", "trigger")) == {(RunStatus.SUCCEEDED, SyncTrigger.JOB_QUEUE)}
    assert_every_folder_holds_each_contact_once(m365, [*users, walk_in], contacts)
    assert "interactive" in (tmp_path / "qcluster-interactive.log").read_text()
    assert f"contact-sync-{pressed.pk}" in (tmp_path / "qcluster-interactive.log").read_text()


def test_a_cluster_killed_mid_pass_leaves_the_pass_to_the_other_once_its_claim_is_stale(
    m365, child_env, tmp_path
):
    stale = 3
    contacts = PersonFactory.create_batch(3)
    users = background_users(m365, 30)
    for user in users:
        job_queue.set_background_sync(user=user, enabled=True)
    entry = JobQueueEntry.objects.get()
    env = {**child_env, "SYNC_CLAIM_STALE_SECONDS": str(stale), "Q_WORKERS": "1"}
    survivor = cluster(env, tmp_path / "qcluster-1.log")
    doomed = cluster(env, tmp_path / "qcluster-2.log")
    try:
        async_task("exchange_sync.tasks.run_job_queue_entry_task", entry.pk, task_name="delivery")
        wait_for(
            lambda: PassUser.objects.filter(finished_at__isnull=False).count() >= 5,
            "five users",
            [survivor, doomed],
            tmp_path,
        )
        os.killpg(doomed.pid, signal.SIGKILL)  # the host dies: its running and prefetched tasks are lost
        doomed.wait(timeout=10)
        log = JobQueueLogEntry.objects.get()
        delivered = []

        def deliver_once_stale() -> None:
            """The entry's next delivery (the Schedule's, a broker's retry), once its claim is stale."""
            claimed = JobQueueEntry.objects.filter(pk=entry.pk).values_list("claimed_at", flat=True).first()
            if claimed and claimed < timezone.now() - timedelta(seconds=stale + 1) and len(delivered) < 20:
                delivered.append(
                    async_task(
                        "exchange_sync.tasks.run_job_queue_entry_task", entry.pk, task_name="redelivery"
                    )
                )

        wait_for(
            lambda: JobQueueLogEntry.objects.filter(pk=log.pk, ended_at__isnull=False).exists(),
            "the pass's end",
            [survivor],
            tmp_path,
            each=deliver_once_stale,
        )
    finally:
        stop(survivor, doomed)

    log.refresh_from_db()
    assert (log.status, log.users_synced, log.users_failed) == (LogStatus.SUCCESS, 30, 0), log.error_message
    assert delivered  # the pass did need the later delivery
    assert JobQueueEntry.objects.get(pk=entry.pk).status == JobStatus.READY
    for user in users:  # each user synced; a run the kill cut short was taken over, not repeated
        assert SyncRun.objects.filter(user=user, status=RunStatus.SUCCEEDED).count() == 1, user
    assert_every_folder_holds_each_contact_once(m365, users, contacts)


RACE_SCRIPT = """
import sys, time
import django
django.setup()
from django.contrib.auth import get_user_model
from exchange_sync.services import contact_sync
start, names = float(sys.argv[1]), sys.argv[2:]
for i, name in enumerate(names):
    user = get_user_model().objects.get(username=name)
    while time.time() < start + i * 0.3:
        pass
    try:
        run = contact_sync.request_contact_sync(user=user, mode="sync", trigger="command", enqueue=False)
        print(name, "run", run.pk, flush=True)
    except contact_sync.SyncRefused:
        print(name, "refused", flush=True)
"""


def test_two_processes_requesting_one_users_sync_at_the_same_instant_get_one_run_and_one_refusal(
    m365, child_env, tmp_path
):
    users = background_users(m365, 10)
    names = [u.username for u in users]
    script = tmp_path / "race.py"
    script.write_text(RACE_SCRIPT)
    at = str(time.time() + 4)  # both processes are set up by then, and spin until each instant
    racers = [start([str(script), at, *names], child_env, tmp_path / f"racer-{n}.log") for n in (1, 2)]
    try:
        for racer in racers:
            assert racer.wait(timeout=DEADLINE_SECONDS) == 0, (tmp_path / "racer-1.log").read_text()
    finally:
        stop(*racers)

    outcomes: dict[str, list[str]] = {name: [] for name in names}
    for n in (1, 2):
        for line in (tmp_path / f"racer-{n}.log").read_text().splitlines():
            name, outcome, *_ = [*line.split(), "", ""]
            if name in outcomes:  # not a log line
                outcomes[name].append(outcome)
    assert {name: sorted(found) for name, found in outcomes.items()} == {
        name: ["refused", "run"] for name in names
    }
    for user in users:
        run = SyncRun.objects.get(user=user)  # the refused request left no run behind
        assert ContactSyncSetup.objects.get(user=user).active_run_id == run.pk
