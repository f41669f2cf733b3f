"""Long runs go on in slices of one SyncRun: a tiny SYNC_SLICE_SECONDS cuts a first sync into
several, in this process and in a real qcluster worker, and a worker SIGKILLed mid-slice is replaced
by the redelivered task. Each converges: every contact once in the folder, one run, counts added up."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from exchange_sync.models import (
    ContactLink,
    ContactSyncSetup,
    ExchangeSyncSetup,
    JobQueueEntry,
    JobStatus,
    LogStatus,
    PassOutcome,
    RunStatus,
    SyncMode,
    SyncRun,
    SyncTrigger,
)
from exchange_sync.services import contact_sync, job_queue
from exchange_sync.services.health import run_progress
from tests.factories import PersonFactory
from tests.processes import emulator_child_environment, start, stop

FOLDER = "Business Central"
DEADLINE_SECONDS = 120


def folder_emails(m365, user) -> list[str]:
    items = m365.emulator.outlook(user.user_card.microsoft_365_email).list_contacts(FOLDER)
    return sorted(a["address"] for item in items for a in item["emailAddresses"])


def assert_converged(m365, user, contacts, run: SyncRun) -> None:
    """Every contact exactly once in the folder, linked once, and the one run says so."""
    assert folder_emails(m365, user) == sorted(c.email for c in contacts)
    assert ContactLink.objects.filter(setup__user=user).count() == len(contacts)
    assert not ContactLink.objects.filter(setup__user=user, graph_id__startswith="creating:").exists()
    assert SyncRun.objects.filter(user=user).count() == 1
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert (run.created + run.linked, run.failed) == (len(contacts), 0)
    setup = ContactSyncSetup.objects.get(user=user)
    assert (setup.delta_link != "", setup.watermark, setup.active_run_id) == (True, run.started_at, None)


@pytest.mark.django_db
def test_a_run_cut_into_slices_goes_on_where_it_stopped_and_moves_the_watermark_at_the_end(
    settings, m365, sync_user
):
    settings.SYNC_SLICE_SECONDS = 0  # each slice stops once one $batch has landed
    contacts = PersonFactory.create_batch(400)
    run = contact_sync.request_contact_sync(user=sync_user, mode=SyncMode.FULL, enqueue=False)

    run = contact_sync.run_contact_sync(run_id=run.pk, queue_next=False)
    assert (run.status, run.slice, run.slice_started_at) == (RunStatus.RUNNING, 2, None)
    assert 0 < run.created < len(contacts)
    setup = ContactSyncSetup.objects.get(user=sync_user)
    assert (setup.active_run_id, setup.delta_link, setup.watermark) == (run.pk, "", None)  # held, not moved
    first_slice_requests = run.graph_requests
    assert run_progress(run=run).text == "slice 2 is queued and goes on where slice 1 stopped"
    # A second delivery of the finished slice is a no-op.
    assert contact_sync.run_contact_sync(run_id=run.pk, slice_no=1).slice == 2

    run = contact_sync.run_contact_sync_to_end(run_id=run.pk)
    assert run.slice > 2
    assert run.graph_requests > first_slice_requests  # counted over every slice
    assert_converged(m365, sync_user, contacts, run)
    assert (run.created, run.linked) == (len(contacts), 0)


@pytest.mark.django_db
def test_a_pass_users_run_in_slices_counts_for_the_pass_when_its_last_slice_ends(settings, m365, sync_user):
    settings.SYNC_SLICE_SECONDS = 0
    contacts = PersonFactory.create_batch(400)
    ExchangeSyncSetup.objects.update_or_create(user=sync_user, defaults={"enabled": True})
    entry = job_queue.save_job_queue_entry(
        entry=JobQueueEntry(
            user=sync_user,
            object_id_to_run=6700,
            description="Contact sync",
            recurring=True,
            minutes_between_runs=60,
            earliest_start_at=timezone.now() - timedelta(minutes=1),
            **dict.fromkeys(JobQueueEntry.WEEKDAY_FIELDS, True),
        )
    )
    job_queue.run_job_queue_entry(entry_id=entry.pk)  # queues the user's task (no worker here)
    log = entry.log_entries.get()

    # The user's task runs the first slice, which hands on (its next slice is a task of its own).
    job_queue.run_pass_user(log_entry_id=log.pk, user_id=sync_user.pk)
    run = SyncRun.objects.get(user=sync_user)
    assert (run.status, run.slice) == (RunStatus.RUNNING, 2)
    log.refresh_from_db()
    assert (log.status, log.users_failed) == (LogStatus.IN_PROCESS, 0)
    assert JobQueueEntry.objects.get(pk=entry.pk).status == JobStatus.IN_PROCESS

    while run.status == RunStatus.RUNNING:
        run = contact_sync.run_contact_sync(run_id=run.pk, slice_no=run.slice, queue_next=False)
    assert_converged(m365, sync_user, contacts, run)
    log.refresh_from_db()
    assert (log.status, log.users_synced, log.users_failed) == (LogStatus.SUCCESS, 1, 0)
    assert log.users.get().outcome == PassOutcome.SYNCED
    assert JobQueueEntry.objects.get(pk=entry.pk).status == JobStatus.READY


@pytest.fixture
def worker_env(m365, tmp_path) -> dict[str, str]:
    return emulator_child_environment(
        tmp_path,
        m365.url,
        Q_WORKERS="1",
        Q_SYNC="false",
        Q_CLUSTER_NAME="interactive",  # a button's run, and each of its slices, goes to this cluster
    )


def wait_for(condition, clusters, tmp_path, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        crashed = [c for c in clusters if c.poll() is not None]
        assert not crashed, "\n".join(p.read_text() for p in tmp_path.glob("qcluster-*.log"))
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_qcluster_worker_runs_each_slice_as_a_task_of_its_own(m365, sync_user, worker_env, tmp_path):
    contacts = PersonFactory.create_batch(300)
    cluster = start(
        ["manage.py", "qcluster"], {**worker_env, "SYNC_SLICE_SECONDS": "0"}, tmp_path / "qcluster-1.log"
    )
    try:
        run = contact_sync.request_contact_sync(
            user=sync_user, mode=SyncMode.FULL, trigger=SyncTrigger.BUTTON
        )
        wait_for(
            lambda: SyncRun.objects.get(pk=run.pk).is_finished, [cluster], tmp_path, "the run did not finish"
        )
    finally:
        stop(cluster)
    run.refresh_from_db()
    assert run.slice > 1
    assert_converged(m365, sync_user, contacts, run)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_slice_whose_worker_is_killed_is_taken_up_again_when_redelivered(
    m365, sync_user, worker_env, tmp_path
):
    contacts = PersonFactory.create_batch(300)
    m365.emulator.configure(item_latency_ms=20)  # about 4 s of Outlook time: time to kill it mid-way
    env = {**worker_env, "SYNC_CLAIM_STALE_SECONDS": "2", "Q_TIMEOUT": "60", "Q_RETRY": "5"}
    first = start(["manage.py", "qcluster"], env, tmp_path / "qcluster-1.log")
    second = None
    try:
        run = contact_sync.request_contact_sync(
            user=sync_user, mode=SyncMode.FULL, trigger=SyncTrigger.BUTTON
        )
        wait_for(
            lambda: SyncRun.objects.get(pk=run.pk).created >= 40, [first], tmp_path, "the run did not start"
        )
        os.killpg(first.pid, signal.SIGKILL)  # the whole host: cluster, its worker, mid-slice
        first.wait(timeout=10)
        killed = SyncRun.objects.get(pk=run.pk)
        assert killed.status == RunStatus.RUNNING and killed.created < len(contacts)
        m365.emulator.configure(item_latency_ms=0)
        second = start(["manage.py", "qcluster"], env, tmp_path / "qcluster-2.log")
        wait_for(
            lambda: SyncRun.objects.get(pk=run.pk).is_finished, [second], tmp_path, "the run was not taken up"
        )
    finally:
        stop(*[c for c in (first, second) if c is not None])
    run.refresh_from_db()
    assert_converged(m365, sync_user, contacts, run)
