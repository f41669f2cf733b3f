"""One run per entry and one sync per user across real processes: two `manage.py qcluster` workers
(as on two hosts) and racing requests, all against the test database (SQLite file or PostgreSQL)
and a live Microsoft 365 emulator. Rows must be committed for the children to see them, hence
transaction=True."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.models import Task
from django_q.tasks import async_task

from exchange_sync.models import (
    ConnectionStatus,
    ContactSyncSetup,
    ExchangeSyncSetup,
    JobQueueEntry,
    JobStatus,
    RunStatus,
    SyncRun,
    SyncTrigger,
)
from exchange_sync.services import job_queue
from exchange_sync.services.contact_sync import setups_for
from tests.factories import PersonFactory, UserCardFactory, UserFactory
from tests.processes import child_environment, start, stop

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEADLINE_SECONDS = 120


@pytest.fixture
def child_env(m365, tmp_path) -> dict[str, str]:
    """A child process's environment with this test's emulator."""
    return child_environment(
        tmp_path,
        M365_EMULATOR_URL=m365.url,
        M365_TENANT_ID=settings.M365_TENANT_ID,
        M365_CLIENT_ID=settings.M365_CLIENT_ID,
        M365_CLIENT_SECRET=settings.M365_CLIENT_SECRET,
        Q_WORKERS="2",
        Q_SYNC="false",
    )


def background_users(m365, count: int) -> list:
    users = []
    for n in range(count):
        card = UserCardFactory(user=UserFactory(username=f"sp{n:02d}"))
        m365.emulator.add_mailbox(card.microsoft_365_email)
        exchange, _ = setups_for(user=card.user)
        ExchangeSyncSetup.objects.filter(pk=exchange.pk).update(connection_status=ConnectionStatus.CONNECTED)
        users.append(card.user)
    return users


def test_two_clusters_and_a_duplicate_delivery_sync_every_user_exactly_once(m365, child_env, tmp_path):
    contacts = PersonFactory.create_batch(5)
    users = background_users(m365, 20)
    for user in users:
        job_queue.set_background_sync(user=user, enabled=True)
    entry = JobQueueEntry.objects.get()
    assert entry.next_run_at <= timezone.now()  # due: the schedule may fire too, a third delivery

    clusters = [start(["manage.py", "qcluster"], child_env, tmp_path / f"qcluster-{n}.log") for n in (1, 2)]
    try:
        task_ids = [
            async_task("exchange_sync.tasks.run_job_queue_entry_task", entry.pk, task_name=f"delivery-{n}")
            for n in (1, 2)
        ]
        deadline = time.monotonic() + DEADLINE_SECONDS
        while Task.objects.filter(id__in=task_ids).count() < 2:
            crashed = [c for c in clusters if c.poll() is not None]
            assert not crashed, (tmp_path / "qcluster-1.log").read_text() + (
                tmp_path / "qcluster-2.log"
            ).read_text()
            assert time.monotonic() < deadline, "the two deliveries did not finish in time"
            time.sleep(0.25)
    finally:
        stop(*clusters)

    results = sorted(Task.objects.filter(id__in=task_ids).values_list("result", flat=True))
    assert results[0] == JobStatus.READY and results[1].startswith("skipped")
    entry.refresh_from_db()
    assert (entry.status, entry.last_error, entry.claimed_at) == (JobStatus.READY, "", None)
    assert entry.next_run_at > timezone.now()

    runs = SyncRun.objects.filter(job_queue_entry=entry)
    assert runs.count() == 20
    assert sorted(runs.values_list("user__username", flat=True)) == sorted(u.username for u in users)
    assert set(runs.values_list("status", "trigger")) == {(RunStatus.SUCCEEDED, SyncTrigger.JOB_QUEUE)}
    expected = sorted(c.email for c in contacts)
    for user in users:
        items = m365.emulator.outlook(user.user_card.microsoft_365_email).list_contacts("Business Central")
        assert sorted(a["address"] for item in items for a in item["emailAddresses"]) == expected, user


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
