"""The Sync health page: a row per user in each state, built from real runs against the emulator; the
"needs attention" filter and sort; the charts; who may see it; and its queries, fixed per page."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from exchange_sync.models import (
    ConnectionStatus,
    ExchangeSyncSetup,
    IncidentKind,
    JobQueueEntry,
    RunStatus,
    SyncIncident,
    SyncMode,
    SyncRun,
    SyncTrigger,
)
from exchange_sync.services import contact_sync, job_queue
from tests.factories import (
    PersonFactory,
    SyncRunFactory,
    UserCardFactory,
    UserFactory,
    enable_background_sync,
)

pytestmark = pytest.mark.django_db

HEALTH_URL = reverse("admin:exchange_sync_synchealth_changelist")


@pytest.fixture
def boss_client(client):
    client.force_login(UserFactory(username="boss", is_superuser=True))
    return client


def rows(page: str) -> dict[str, str]:
    """The health table's rows by username, as text (tags dropped, spaces collapsed), in page order."""
    found = re.findall(r'<tr class="[^"]*" data-user="([^"]+)">(.*?)</tr>', page, flags=re.S)
    return {user: " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split()) for user, body in found}


def row_classes(page: str) -> dict[str, str]:
    return dict((user, cls) for cls, user in re.findall(r'<tr class="([^"]*)" data-user="([^"]+)">', page))


@pytest.fixture
def four_users(m365, inline_tasks):
    """ann syncs in the background; carl's mailbox does not exist, so his scheduled runs fail; dora has
    no Microsoft 365 email; eve's validation failed before her mailbox existed, and syncs since."""
    PersonFactory.create_batch(2)
    ann = UserCardFactory(user=UserFactory(username="ann")).user
    carl = UserCardFactory(user=UserFactory(username="carl")).user
    dora = UserFactory(username="dora")
    eve = UserCardFactory(user=UserFactory(username="eve")).user
    m365.emulator.add_mailbox("ann@contoso.test")
    assert contact_sync.validate_exchange_connection(user=ann).ok
    for user in (ann, carl):
        enable_background_sync(user)
    contact_sync.setups_for(user=dora)
    entry = JobQueueEntry.objects.get()
    for _ in range(2):  # carl fails twice (his back-off's skipped pass goes by in between)
        JobQueueEntry.objects.filter(pk=entry.pk).update(status="ready", next_run_at=timezone.now())
        ExchangeSyncSetup.objects.update(background_skips_left=0)
        job_queue.run_job_queue_entry(entry_id=entry.pk)
    assert not contact_sync.validate_exchange_connection(user=eve).ok
    m365.emulator.add_mailbox("eve@contoso.test")
    run = contact_sync.request_contact_sync(user=eve, mode=SyncMode.FULL, enqueue=False)
    assert contact_sync.run_contact_sync(run_id=run.pk).status == RunStatus.SUCCEEDED
    return JobQueueEntry.objects.get(pk=entry.pk)


def test_each_user_in_each_state(boss_client, four_users):
    page = boss_client.get(HEALTH_URL).content.decode()
    found = rows(page)
    assert list(found) == ["carl", "dora", "eve", "ann"]  # who needs attention first, most failures first

    next_run = f"{timezone.localtime(four_users.next_run_at):%Y-%m-%d %H:%M:%S}"
    ann_runs = SyncRun.objects.filter(user__username="ann", status=RunStatus.SUCCEEDED)
    assert ann_runs.count() == 2
    last = ann_runs.latest("finished_at")
    assert found["ann"] == (
        f"ann ann@contoso.test Connected On Sync with Microsoft 365 : Succeeded , "
        f"{timezone.localtime(last.queued_at):%Y-%m-%d %H:%M:%S}, "
        f"{(last.finished_at - last.started_at).total_seconds():.1f} s "
        f"{timezone.localtime(last.finished_at):%Y-%m-%d %H:%M:%S} 0 {next_run} No"
    )
    carl_error = SyncRun.objects.filter(user__username="carl").latest("pk").error
    assert "carl@contoso.test" in carl_error
    assert found["carl"].startswith(
        "carl carl@contoso.test Not validated On Sync with Microsoft 365 : Failed"
    )
    assert f"never 2 {next_run} The sync failed 2 times in a row: {carl_error}" in found["carl"]
    assert found["dora"] == (
        "dora — Not validated Off never never 0 — (background sync off) "
        "No Microsoft 365 email: enter it on the User Card."
    )
    eve_message = ExchangeSyncSetup.objects.get(user__username="eve").last_validation_message
    assert found["eve"].startswith("eve eve@contoso.test Failed Off Full Sync with Microsoft 365 : Succeeded")
    assert f"Validate Exchange Connection failed: {eve_message} Alert emailed " in found["eve"]
    assert row_classes(page) == {
        "ann": "healthy",
        "carl": "needs-attention",
        "dora": "needs-attention",
        "eve": "needs-attention",
    }
    assert "3 users need attention." in page


def test_the_needs_attention_filter_and_the_sorts(boss_client, four_users):
    page = boss_client.get(HEALTH_URL, {"attention": "1"}).content.decode()
    assert list(rows(page)) == ["carl", "dora", "eve"]
    assert "Showing the 3 users who need attention." in page
    assert list(rows(boss_client.get(HEALTH_URL, {"o": "user"}).content.decode())) == [
        "ann",
        "carl",
        "dora",
        "eve",
    ]
    by_failures = boss_client.get(HEALTH_URL, {"o": "failures", "attention": "1"}).content.decode()
    assert list(rows(by_failures)) == ["carl", "dora", "eve"]
    assert 'href="?o=user&amp;attention=1"' in by_failures  # the sorts keep the filter


def test_a_stalled_run_and_a_paused_job_queue_entry_need_attention(boss_client, m365, settings):
    ann = UserCardFactory(user=UserFactory(username="ann")).user
    enable_background_sync(ann)
    job_queue.set_job_queue_entry_on_hold(entry=JobQueueEntry.objects.get())
    silent = timezone.now() - timedelta(seconds=settings.SYNC_CLAIM_STALE_SECONDS + 30)
    run = SyncRunFactory(user=ann, status=RunStatus.RUNNING, finished_at=None, heartbeat_at=silent)
    found = rows(boss_client.get(HEALTH_URL).content.decode())["ann"]
    assert f"Run #{run.pk} has given no sign of life for" in found
    assert "Background synchronization is on, but its Job Queue Entry is On Hold." in found
    assert "none" in found  # no next scheduled run


def waiting_run(user, *, trigger: str, waited_s: int, **fields) -> SyncRun:
    """A run queued `waited_s` ago that no worker has finished (`fields` change the rest)."""
    return SyncRunFactory(
        **{
            "user": user,
            "trigger": trigger,
            "status": RunStatus.QUEUED,
            "queued_at": timezone.now() - timedelta(seconds=waited_s),
            "started_at": None,
            "finished_at": None,
            **fields,
        }
    )


def test_a_persons_run_no_interactive_worker_took_needs_attention_and_says_why(boss_client):
    ann = UserCardFactory(user=UserFactory(username="ann")).user
    run = waiting_run(ann, trigger=SyncTrigger.BUTTON, waited_s=95)

    found = rows(boss_client.get(HEALTH_URL).content.decode())["ann"]

    assert (
        f"Run #{run.pk} has waited 95 s for a worker: the runs people start are taken by the "
        "'interactive' workers (Q_CLUSTER_NAME=interactive manage.py qcluster), and none is running or "
        "all are busy." in found
    )


def test_a_later_slice_no_interactive_worker_took_needs_attention_too(boss_client):
    ann = UserCardFactory(user=UserFactory(username="ann")).user
    handed_on = timezone.now() - timedelta(seconds=120)
    run = waiting_run(
        ann,
        trigger=SyncTrigger.ADMIN_ACTION,
        waited_s=300,
        status=RunStatus.RUNNING,
        slice=2,
        heartbeat_at=handed_on,
    )

    assert (
        f"Run #{run.pk} has waited 120 s for a worker"
        in rows(boss_client.get(HEALTH_URL).content.decode())["ann"]
    )


@pytest.mark.parametrize(
    ("trigger", "waited_s", "interactive_cluster"),
    [
        (SyncTrigger.BUTTON, 20, "interactive"),  # a free worker takes it within seconds
        (SyncTrigger.LIVE, 600, "interactive"),  # the default cluster's: it may wait behind a pass
        (SyncTrigger.BUTTON, 600, ""),  # one cluster for everything: likewise
    ],
)
def test_a_run_that_may_rightly_wait_is_no_problem(
    boss_client, settings, trigger, waited_s, interactive_cluster
):
    settings.Q_INTERACTIVE_CLUSTER = interactive_cluster
    ann = UserCardFactory(user=UserFactory(username="ann")).user
    waiting_run(ann, trigger=trigger, waited_s=waited_s)

    assert "for a worker" not in rows(boss_client.get(HEALTH_URL).content.decode())["ann"]


def test_an_open_alert_is_shown_with_its_time(boss_client):
    ann = UserCardFactory(user=UserFactory(username="ann")).user
    opened = SyncIncident.objects.create(user=ann, kind=IncidentKind.CONNECTION_FAILED, reason="x").opened_at
    SyncIncident.objects.create(
        user=ann, kind=IncidentKind.BACKGROUND_SYNC_FAILING, reason="y", resolved_at=timezone.now()
    )
    found = rows(boss_client.get(HEALTH_URL).content.decode())["ann"]
    assert found.endswith(f"Alert emailed {timezone.localtime(opened):%Y-%m-%d %H:%M:%S}.")


def test_the_charts_count_the_runs_of_each_day_by_outcome_and_show_each_durations(boss_client):
    ann = UserFactory(username="ann")
    now = timezone.now()
    for status in (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED, RunStatus.FAILED):
        SyncRunFactory(user=ann, status=status, queued_at=now)
    SyncRunFactory(user=ann, queued_at=now - timedelta(days=3))
    SyncRunFactory(user=ann, queued_at=now - timedelta(days=20))  # outside the 14 days
    # Five minutes earlier, but never yesterday: the day chart counts it today.
    start_of_today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    earlier = max(now - timedelta(minutes=5), start_of_today)
    slow = SyncRunFactory(user=ann, queued_at=earlier, mode=SyncMode.FULL)
    SyncRun.objects.filter(pk=slow.pk).update(finished_at=slow.started_at + timedelta(seconds=42))
    page = boss_client.get(HEALTH_URL).content.decode()

    today, three_days_ago = timezone.localdate(now), timezone.localdate(now - timedelta(days=3))
    day_chart = page.split('id="runs-per-day"')[1].split("</figure>")[0]
    assert "Runs per day, last 14 days (5 runs)" in day_chart
    titles = re.findall(r"<title>(.*?)</title>", day_chart)
    assert titles == [
        f"{three_days_ago:%a %d %b}: 1 succeeded",
        f"{today:%a %d %b}: 3 succeeded",
        f"{today:%a %d %b}: 1 failed",
    ]
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', day_chart)]
    assert heights == [80 / 4, 80 * 3 / 4, 80 / 4]  # scaled to the busiest day, 4 runs

    durations = page.split('id="run-durations"')[1].split("</figure>")[0]
    assert "Duration of the last 6 runs (longest 42.0 s)" in durations
    assert f"<title>#{slow.pk} ann Full Sync with Microsoft 365: 42.0 s, succeeded</title>" in durations
    assert durations.count("5.0 s, ") == 5


def test_only_administrators_see_the_page_and_its_link(client, boss_client, staff_user):
    assert f'href="{HEALTH_URL}"' in boss_client.get(reverse("admin:index")).content.decode()
    app_list = boss_client.get(reverse("admin:app_list", args=["exchange_sync"])).content.decode()
    assert f'href="{HEALTH_URL}"' in app_list and "Sync health" in app_list

    client.force_login(staff_user)
    assert client.get(HEALTH_URL).status_code == 403
    assert HEALTH_URL not in client.get(reverse("admin:index")).content.decode()


def test_a_salesperson_sees_their_own_row_on_their_setup_page(client, staff_user, other_staff_user):
    UserCardFactory(user=staff_user)
    UserCardFactory(user=other_staff_user)
    SyncRunFactory(user=other_staff_user, status=RunStatus.FAILED, error="bob's secret trouble")
    failed = SyncRunFactory(user=staff_user, status=RunStatus.FAILED, error="The mailbox was not found.")
    _, setup = contact_sync.setups_for(user=staff_user)
    client.force_login(staff_user)
    page = client.get(
        reverse("admin:exchange_sync_contactsyncsetup_change", args=[setup.pk])
    ).content.decode()
    assert '<div class="module" id="sync-health">' in page
    found = rows(page)
    assert list(found) == ["ann"]
    assert "ann ann@contoso.test Not validated Off Sync with Microsoft 365 : Failed" in found["ann"]
    assert found["ann"].endswith("The sync failed once: The mailbox was not found.")
    assert f'href="/admin/exchange_sync/syncrun/{failed.pk}/change/"' in page
    assert "bob" not in page


def many_users(count: int, *, start: int = 0) -> None:
    """Users with everything a row shows: a card, setups, a success and a failure, an open alert."""
    for i in range(start, start + count):
        user = UserCardFactory(user=UserFactory(username=f"user{i:03d}")).user
        ExchangeSyncSetup.objects.create(
            user=user, enabled=True, connection_status=ConnectionStatus.CONNECTED
        )
        SyncRunFactory(user=user, queued_at=timezone.now() - timedelta(hours=1))
        SyncRunFactory(user=user, status=RunStatus.FAILED, error="The mailbox was not found.")
        SyncIncident.objects.create(user=user, kind=IncidentKind.CONNECTION_FAILED, reason="x")


def test_the_page_reads_a_fixed_number_of_queries_whatever_the_number_of_users(
    boss_client, django_assert_max_num_queries
):
    job_queue.ensure_contact_sync_entry(user=UserFactory(username="root"))
    boss_client.get(HEALTH_URL)  # the session and the like, once

    many_users(2)
    with CaptureQueriesContext(connection) as two:
        page = boss_client.get(HEALTH_URL).content.decode()
    assert len(rows(page)) == 2

    many_users(48, start=2)
    with django_assert_max_num_queries(len(two)), CaptureQueriesContext(connection) as fifty:
        page = boss_client.get(HEALTH_URL).content.decode()
    assert len(rows(page)) == 50
    assert len(fifty) == len(two) <= 12
    assert "The sync failed once: The mailbox was not found." in rows(page)["user049"]
