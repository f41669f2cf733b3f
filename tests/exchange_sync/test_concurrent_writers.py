"""`make run`'s worker and web process writing one database at once: a real qcluster of two workers
syncs three users (twice each) while this process, as the web server, saves contacts and setups
through the same code the admin pages call. On SQLite that is where "database is locked" would
appear (WAL, BEGIN IMMEDIATE and a 30 s busy timeout prevent it); on PostgreSQL it checks the same
concurrency. Rows must be committed for the cluster to see them, hence transaction=True."""

from __future__ import annotations

import time

import pytest

from contacts.models import Contact
from exchange_sync.models import RunStatus, SyncMode, SyncRun
from exchange_sync.services import contact_sync
from tests.factories import PersonFactory, UserCardFactory, UserFactory
from tests.processes import emulator_child_environment, start, stop

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEADLINE_SECONDS = 120
USERS = 3


def test_a_two_worker_cluster_syncing_while_the_web_process_writes_never_finds_the_database_locked(
    m365, tmp_path
):
    env = emulator_child_environment(
        tmp_path,
        m365.url,
        Q_SYNC="false",
        # The buttons' runs go to make run's interactive cluster.
        Q_CLUSTER_NAME="interactive",
        Q_INTERACTIVE_WORKERS="2",
    )
    PersonFactory.create_batch(200)
    users = []
    for n in range(USERS):
        card = UserCardFactory(user=UserFactory(username=f"sp{n}"))
        m365.emulator.add_mailbox(card.microsoft_365_email)
        users.append(card.user)
    log = tmp_path / "qcluster.log"
    cluster = start(["manage.py", "qcluster"], env, log)
    writes = 0
    try:
        for mode in (SyncMode.FULL, SyncMode.SYNC):
            runs = [contact_sync.request_contact_sync(user=user, mode=mode) for user in users]
            deadline = time.monotonic() + DEADLINE_SECONDS
            while SyncRun.objects.filter(pk__in=[r.pk for r in runs], finished_at__isnull=True).exists():
                assert cluster.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the runs did not finish in time"
                # The web process's writes, each its own transaction, as an admin save is.
                contact = Contact.objects.order_by("?").first()
                contact.job_title = f"Edit {writes}"
                contact.save()
                PersonFactory()
                contact_sync.set_sync_filter(user=users[writes % USERS], filters={})
                writes += 1
    finally:
        stop(cluster)

    assert writes > 0
    finished = SyncRun.objects.filter(user__in=users)
    assert finished.count() == 2 * USERS
    assert set(finished.values_list("status", "error")) == {(RunStatus.SUCCEEDED, "")}
    assert "locked" not in log.read_text()
