"""The Job Queue Entry (Codeunit 6700) on django-q2: its one Schedule, its next run, its registry,
and what a pass does (claims, per-user tasks run inline, Job Queue Log Entries, back-off, errors)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from exchange_sync.models import (
    ContactSyncSetup,
    ExchangeSyncSetup,
    JobQueueEntry,
    JobQueueLogEntry,
    JobStatus,
    LogStatus,
    PassOutcome,
    PassUser,
    RunStatus,
    SyncMode,
    SyncRun,
    SyncTrigger,
    UserCard,
)
from exchange_sync.services import job_queue
from exchange_sync.services.contact_sync import request_contact_sync
from tests.factories import PersonFactory, UserCardFactory, UserFactory, job_queue_schedules

ALL_WEEKDAYS = dict.fromkeys(JobQueueEntry.WEEKDAY_FIELDS, True)


def new_entry(user, **fields) -> JobQueueEntry:
    values = {
        "object_id_to_run": 6700,
        "description": "Contact sync",
        "recurring": True,
        "minutes_between_runs": 60,
        "earliest_start_at": timezone.now() - timedelta(minutes=1),
        **ALL_WEEKDAYS,
        **fields,
    }
    return job_queue.save_job_queue_entry(entry=JobQueueEntry(user=user, **values))


def the_schedule(entry: JobQueueEntry) -> Schedule:
    schedules = list(job_queue_schedules().all())
    assert len(schedules) == 1, schedules
    entry.refresh_from_db()
    assert entry.schedule_id == schedules[0].pk
    assert schedules[0].name == f"job-queue-entry-{entry.pk}"
    return schedules[0]


def background_user(m365, username: str, *, mailbox: bool = True):
    card = UserCardFactory(user=UserFactory(username=username))
    if mailbox:
        m365.emulator.add_mailbox(card.microsoft_365_email)
    ExchangeSyncSetup.objects.update_or_create(user=card.user, defaults={"enabled": True})
    return card.user


def folder_emails(m365, user) -> list[str]:
    items = m365.emulator.outlook(user.user_card.microsoft_365_email).list_contacts("Business Central")
    return sorted(address["address"] for item in items for address in item["emailAddresses"])


# --- one Schedule per entry, through every change -------------------------------------------------


@pytest.mark.django_db
def test_a_new_entry_gets_one_schedule_that_runs_its_task(staff_user):
    entry = new_entry(staff_user)
    schedule = the_schedule(entry)
    assert schedule.func == "exchange_sync.tasks.run_job_queue_entry_task"
    assert schedule.args == f"({entry.pk},)"
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 60, -1)
    assert entry.next_run_at is not None and schedule.next_run == entry.next_run_at
    assert entry.next_run_at <= timezone.now()  # never ran, earliest start passed: due now


@pytest.mark.django_db
def test_editing_minutes_and_weekdays_reshapes_the_same_schedule(staff_user):
    entry = new_entry(staff_user)
    first = the_schedule(entry)
    entry.minutes_between_runs = 5
    entry.run_on_saturdays = entry.run_on_sundays = False
    entry.earliest_start_at = timezone.now() + timedelta(days=3)
    job_queue.save_job_queue_entry(entry=entry)
    schedule = the_schedule(entry)
    assert schedule.pk == first.pk
    assert schedule.minutes == 5
    assert schedule.next_run == entry.next_run_at
    assert timezone.localtime(entry.next_run_at).weekday() < 5
    assert entry.next_run_at >= entry.earliest_start_at


@pytest.mark.django_db
def test_saving_five_times_leaves_one_schedule(staff_user):
    entry = new_entry(staff_user)
    for minutes in (1, 2, 3, 4, 5):
        entry.minutes_between_runs = minutes
        job_queue.save_job_queue_entry(entry=entry)
    assert the_schedule(entry).minutes == 5


@pytest.mark.django_db
def test_on_hold_pauses_the_schedule_and_ready_resumes_it(staff_user):
    entry = new_entry(staff_user)
    entry = job_queue.set_job_queue_entry_on_hold(entry=entry)
    assert entry.status == JobStatus.ON_HOLD
    assert the_schedule(entry).repeats == 0
    entry.description = "edited while on hold"
    job_queue.save_job_queue_entry(entry=entry)
    assert the_schedule(entry).repeats == 0
    entry = job_queue.set_job_queue_entry_ready(entry=entry)
    schedule = the_schedule(entry)
    assert (entry.status, schedule.repeats) == (JobStatus.READY, -1)
    assert schedule.next_run == entry.next_run_at


@pytest.mark.django_db
def test_deleting_the_entry_deletes_its_schedule(staff_user):
    entry = new_entry(staff_user)
    new_entry(staff_user, description="another")
    job_queue.delete_job_queue_entry(entry=entry)
    assert list(job_queue_schedules().values_list("name", flat=True)) == [
        f"job-queue-entry-{JobQueueEntry.objects.get().pk}"
    ]


@pytest.mark.django_db
def test_a_lost_or_duplicated_schedule_is_repaired_to_exactly_one(staff_user):
    entry = new_entry(staff_user)
    job_queue_schedules().all().delete()  # deleted by hand in the Django Q admin
    job_queue.save_job_queue_entry(entry=entry)
    kept = the_schedule(entry)
    Schedule.objects.create(name=kept.name, func=kept.func, args=kept.args)  # e.g. an old deploy's copy
    job_queue.save_job_queue_entry(entry=entry)
    assert the_schedule(entry).pk == kept.pk


@pytest.mark.django_db
def test_a_one_off_entry_has_a_once_schedule_that_django_q_keeps(staff_user):
    entry = new_entry(staff_user, recurring=False, earliest_start_at=timezone.now() + timedelta(hours=1))
    schedule = the_schedule(entry)
    assert (schedule.schedule_type, schedule.repeats) == (Schedule.ONCE, 1)
    assert schedule.next_run == entry.earliest_start_at


# --- next run ---------------------------------------------------------------------------------------

UTC = ZoneInfo("UTC")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def unsaved(**fields) -> JobQueueEntry:
    values = {"minutes_between_runs": 60, "earliest_start_at": at("2026-01-01T00:00"), **ALL_WEEKDAYS}
    return JobQueueEntry(**{**values, **fields})


def test_next_run_after_a_run_skips_missed_slots_and_keeps_the_cadence():
    entry = unsaved(minutes_between_runs=60)
    now = at("2026-11-25T10:20")  # a Wednesday
    assert entry.next_run(anchor=at("2026-11-25T10:00"), now=now) == at("2026-11-25T11:00")
    assert entry.next_run(anchor=at("2026-11-25T07:00"), now=now) == at("2026-11-25T11:00")


def test_a_slot_on_a_day_the_entry_does_not_run_moves_to_the_start_of_the_next_run_day(settings):
    settings.TIME_ZONE = "UTC"
    entry = unsaved(minutes_between_runs=1440, run_on_saturdays=False, run_on_sundays=False)
    friday = at("2026-11-27T09:00")
    assert entry.next_run(anchor=friday, now=friday) == at("2026-11-30T00:00")


def test_a_new_entry_runs_at_its_earliest_start_or_now_and_never_on_an_off_day(settings):
    settings.TIME_ZONE = "UTC"
    later = at("2026-12-01T08:00")
    now = at("2026-11-25T10:00")  # Wednesday
    assert unsaved(earliest_start_at=later).next_run(anchor=None, now=now) == later
    assert unsaved().next_run(anchor=None, now=now) == now
    not_wednesday = unsaved(run_on_wednesdays=False)
    assert not_wednesday.next_run(anchor=None, now=now) == at("2026-11-26T00:00")


def test_a_one_off_entry_has_no_next_run_once_it_ran():
    entry = unsaved(recurring=False)
    now = at("2026-11-25T10:00")
    assert entry.next_run(anchor=None, now=now) == now
    assert entry.next_run(anchor=now, now=now) is None


# --- the runners --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_object_id_is_refused_with_the_known_ones(staff_user):
    entry = JobQueueEntry(user=staff_user, object_id_to_run=1234, **ALL_WEEKDAYS)
    with pytest.raises(ValidationError) as refused:
        entry.full_clean()
    message = refused.value.message_dict["object_id_to_run"][0]
    assert "There is no Codeunit 1234 to run" in message
    assert "6700 (Exchange Sync – contact sync of every user" in message  # noqa: RUF001
    with pytest.raises(ValidationError):
        job_queue.save_job_queue_entry(entry=entry)
    assert not JobQueueEntry.objects.exists() and not job_queue_schedules().exists()


@pytest.mark.django_db
def test_a_recurring_entry_needs_minutes_and_a_weekday(staff_user):
    entry = JobQueueEntry(
        user=staff_user, minutes_between_runs=0, **dict.fromkeys(JobQueueEntry.WEEKDAY_FIELDS, False)
    )
    with pytest.raises(ValidationError) as refused:
        entry.full_clean()
    assert set(refused.value.message_dict) == {"minutes_between_runs", "run_on_mondays"}


# --- a run ----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _tasks_run_inline(inline_tasks):
    """tests/exchange_sync/test_job_queue_processes.py runs a pass's user tasks on real clusters."""


@pytest.mark.django_db
def test_one_failing_user_does_not_stop_the_others_is_named_on_the_pass_and_the_entry_stays_ready(m365):
    PersonFactory.create_batch(3)
    ann = background_user(m365, "ann")
    carl = background_user(m365, "carl", mailbox=False)  # his mailbox does not exist in Microsoft 365
    bob = background_user(m365, "bob")
    UserCardFactory(user=UserFactory(username="dora"))  # background sync off: not part of the job
    entry = new_entry(ann)

    before = timezone.now()
    entry = job_queue.run_job_queue_entry(entry_id=entry.pk)

    assert (entry.status, entry.last_error, entry.claimed_at) == (JobStatus.READY, "", None)
    assert entry.last_run_at >= before and entry.next_run_at > timezone.now()
    assert the_schedule(entry).repeats == -1  # the schedule goes on for everyone
    log = entry.log_entries.get()
    assert (log.status, log.users_total, log.users_synced, log.users_skipped, log.users_failed) == (
        LogStatus.SUCCESS_WITH_FAILURES,
        3,
        2,
        0,
        1,
    )
    assert log.ended_at >= log.started_at >= before
    assert "Contact sync failed for 1 users: carl (sync run #" in log.error_message
    assert "ann" not in log.error_message and "bob" not in log.error_message
    runs = SyncRun.objects.filter(job_queue_entry=entry)
    assert {(run.user.username, run.status) for run in runs} == {
        ("ann", RunStatus.SUCCEEDED),
        ("bob", RunStatus.SUCCEEDED),
        ("carl", RunStatus.FAILED),
    }
    assert {(run.mode, run.trigger) for run in runs} == {(SyncMode.SYNC, SyncTrigger.JOB_QUEUE)}
    assert len(folder_emails(m365, ann)) == len(folder_emails(m365, bob)) == 3
    assert ContactSyncSetup.objects.filter(user=carl, active_run__isnull=False).count() == 0
    assert "Backed off after 1 failed" in job_queue.describe_backoff(
        setup=ExchangeSyncSetup.objects.get(user=carl)
    )


def run_pass(entry: JobQueueEntry) -> JobQueueLogEntry:
    JobQueueEntry.objects.filter(pk=entry.pk).update(next_run_at=timezone.now())  # due now
    job_queue.run_job_queue_entry(entry_id=entry.pk)
    return entry.log_entries.order_by("-started_at", "-pk").first()


@pytest.mark.django_db
def test_a_failing_user_is_backed_off_1_then_2_passes_until_the_setup_changes(m365):
    ann = background_user(m365, "ann")
    carl = background_user(m365, "carl", mailbox=False)
    entry = new_entry(ann)

    def carls_part(log):
        return log.users.get(user=carl)

    outcomes = []
    for _ in range(5):
        part = carls_part(run_pass(entry))
        outcomes.append(part.outcome)
    # failed, skipped 1, failed again, skipped 2
    assert outcomes == [
        PassOutcome.FAILED,
        PassOutcome.SKIPPED,
        PassOutcome.FAILED,
        PassOutcome.SKIPPED,
        PassOutcome.SKIPPED,
    ]
    log = entry.log_entries.order_by("-started_at", "-pk").first()
    assert log.status == LogStatus.SUCCESS and log.users_skipped == 1
    assert "Skipped 1 users: carl (Backed off after 2 failed" in log.error_message
    assert SyncRun.objects.filter(user=carl).count() == 2  # the skipped passes cost nothing
    assert JobQueueEntry.objects.get(pk=entry.pk).status == JobStatus.READY

    # His mailbox is created and his email corrected: the next pass syncs him.
    m365.emulator.add_mailbox("carl@contoso.test")
    UserCard.objects.filter(user=carl).update(microsoft_365_email="carl@contoso.test")
    assert carls_part(run_pass(entry)).outcome == PassOutcome.SYNCED
    carl.exchange_sync_setup.refresh_from_db()
    assert (
        carl.exchange_sync_setup.background_failures,
        job_queue.describe_backoff(setup=carl.exchange_sync_setup),
    ) == (0, "")


@pytest.mark.django_db
def test_a_sync_pressed_by_a_person_ends_the_back_off(m365, django_capture_on_commit_callbacks):
    ann = background_user(m365, "ann")
    carl = background_user(m365, "carl", mailbox=False)
    entry = new_entry(ann)
    assert run_pass(entry).users.get(user=carl).outcome == PassOutcome.FAILED
    m365.emulator.add_mailbox(carl.user_card.microsoft_365_email)
    with django_capture_on_commit_callbacks(execute=True):
        request_contact_sync(user=carl, mode=SyncMode.SYNC)  # his Sync button (runs inline)
    part = run_pass(entry).users.get(user=carl)
    # His own run since the pass started did the work; the back-off is over either way.
    assert part.outcome == PassOutcome.SYNCED
    carl.exchange_sync_setup.refresh_from_db()
    assert carl.exchange_sync_setup.background_failures == 0


@pytest.mark.django_db
def test_a_user_without_a_microsoft_365_email_fails_and_a_busy_user_is_skipped_as_already_running(m365):
    PersonFactory.create_batch(2)
    ann = background_user(m365, "ann")
    busy = background_user(m365, "bob")
    request_contact_sync(user=busy, mode=SyncMode.FULL, enqueue=False)  # his own sync holds his claim
    no_email = UserFactory(username="eve")
    ExchangeSyncSetup.objects.create(user=no_email, enabled=True)
    entry = job_queue.run_job_queue_entry(entry_id=new_entry(ann).pk)

    assert entry.status == JobStatus.READY
    log = entry.log_entries.get()
    assert (log.users_synced, log.users_skipped, log.users_failed) == (1, 1, 1)
    assert "1 users: eve (sync run #" in log.error_message and "no Microsoft 365 email" in log.error_message
    assert "bob (A Full Sync with Microsoft 365 is already queued for bob" in log.error_message
    assert SyncRun.objects.get(user=no_email).status == RunStatus.FAILED
    assert not SyncRun.objects.filter(user=busy, job_queue_entry=entry).exists()
    assert len(folder_emails(m365, ann)) == 2


@pytest.mark.django_db
def test_a_user_delivered_twice_in_one_pass_is_synced_once(m365):
    ann = background_user(m365, "ann")
    entry = new_entry(ann)
    log = run_pass(entry)
    part = log.users.get()
    assert job_queue.run_pass_user(log_entry_id=log.pk, user_id=ann.pk).startswith("skipped")
    assert SyncRun.objects.filter(user=ann).count() == 1
    # A delivery whose claim went stale before it recorded anything: the next one records the run.
    PassUser.objects.filter(pk=part.pk).update(finished_at=None, outcome="", claimed_at=None)
    JobQueueLogEntry.objects.filter(pk=log.pk).update(status=LogStatus.IN_PROCESS, ended_at=None)
    assert job_queue.run_pass_user(log_entry_id=log.pk, user_id=ann.pk).startswith("synced: sync run #")
    assert SyncRun.objects.filter(user=ann).count() == 1
    assert JobQueueLogEntry.objects.get(pk=log.pk).status == LogStatus.SUCCESS


@pytest.mark.django_db
def test_a_stale_pass_is_resumed_by_the_next_delivery_and_finishes_only_the_missing_users(m365, settings):
    ann = background_user(m365, "ann")
    bob = background_user(m365, "bob")
    entry = new_entry(ann)
    # A pass whose worker died after ann: bob's task was lost with it.
    JobQueueEntry.objects.filter(pk=entry.pk).update(
        status=JobStatus.IN_PROCESS,
        claimed_at=timezone.now() - timedelta(seconds=settings.SYNC_CLAIM_STALE_SECONDS + 5),
    )
    log = JobQueueLogEntry.objects.create(entry=entry, users_total=2)
    PassUser.objects.create(log_entry=log, user=ann, finished_at=timezone.now(), outcome=PassOutcome.SYNCED)
    PassUser.objects.create(log_entry=log, user=bob)

    entry = job_queue.run_job_queue_entry(entry_id=entry.pk)
    assert entry.status == JobStatus.READY
    log.refresh_from_db()
    assert (log.status, log.users_synced) == (LogStatus.SUCCESS, 2)
    assert list(SyncRun.objects.values_list("user__username", flat=True)) == ["bob"]


@pytest.mark.django_db
def test_a_clean_run_leaves_the_entry_ready_and_a_second_delivery_changes_nothing(m365):
    PersonFactory.create_batch(2)
    ann = background_user(m365, "ann")
    entry = new_entry(ann, minutes_between_runs=1)
    due = entry.next_run_at

    entry = job_queue.run_job_queue_entry(entry_id=entry.pk)
    assert (entry.status, entry.last_error) == (JobStatus.READY, "")
    assert entry.next_run_at > timezone.now() and entry.next_run_at <= due + timedelta(minutes=2)
    schedule = the_schedule(entry)
    assert (schedule.repeats, schedule.next_run) == (-1, entry.next_run_at)

    assert job_queue.run_job_queue_entry(entry_id=entry.pk) is None  # the same run delivered again
    assert SyncRun.objects.count() == 1
    assert len(folder_emails(m365, ann)) == 2  # and no duplicates from the second delivery


@pytest.mark.django_db
def test_a_run_while_another_holds_the_claim_exits_without_syncing(m365):
    ann = background_user(m365, "ann")
    entry = new_entry(ann)
    JobQueueEntry.objects.filter(pk=entry.pk).update(status=JobStatus.IN_PROCESS, claimed_at=timezone.now())
    assert job_queue.run_job_queue_entry(entry_id=entry.pk) is None
    assert not SyncRun.objects.exists()
    assert JobQueueEntry.objects.get(pk=entry.pk).status == JobStatus.IN_PROCESS


@pytest.mark.django_db
def test_a_stale_claim_is_taken_over(m365, settings):
    ann = background_user(m365, "ann")
    entry = new_entry(ann)
    stale = timezone.now() - timedelta(seconds=settings.SYNC_CLAIM_STALE_SECONDS + 5)
    JobQueueEntry.objects.filter(pk=entry.pk).update(status=JobStatus.IN_PROCESS, claimed_at=stale)
    entry = job_queue.run_job_queue_entry(entry_id=entry.pk)
    assert entry.status == JobStatus.READY
    assert SyncRun.objects.get().status == RunStatus.SUCCEEDED


@pytest.mark.django_db
@pytest.mark.parametrize("status", [JobStatus.ON_HOLD, JobStatus.ERROR])
def test_an_entry_on_hold_or_in_error_is_not_run_by_its_schedule(m365, status):
    ann = background_user(m365, "ann")
    entry = new_entry(ann)
    JobQueueEntry.objects.filter(pk=entry.pk).update(status=status)
    assert job_queue.run_job_queue_entry(entry_id=entry.pk) is None
    assert not SyncRun.objects.exists()


@pytest.mark.django_db
def test_an_entry_that_is_not_due_is_not_run(m365):
    ann = background_user(m365, "ann")
    entry = new_entry(ann, earliest_start_at=timezone.now() + timedelta(hours=1))
    assert job_queue.run_job_queue_entry(entry_id=entry.pk) is None
    assert not SyncRun.objects.exists()


@pytest.mark.django_db
def test_run_now_queues_the_task_which_runs_the_entry(m365, monkeypatch, django_capture_on_commit_callbacks):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
    ann = background_user(m365, "ann")
    entry = new_entry(ann, earliest_start_at=timezone.now() + timedelta(hours=1))  # not due by itself
    with django_capture_on_commit_callbacks(execute=True) as queued:
        job_queue.run_job_queue_entry_now(entry=entry)
    assert len(queued) == 1
    entry.refresh_from_db()
    assert entry.status == JobStatus.READY and entry.last_run_at is not None
    assert SyncRun.objects.get().job_queue_entry_id == entry.pk


@pytest.mark.django_db
def test_the_task_reports_a_skipped_delivery(m365):
    ann = background_user(m365, "ann")
    entry = new_entry(ann, earliest_start_at=timezone.now() + timedelta(hours=1))
    task_id = async_task("exchange_sync.tasks.run_job_queue_entry_task", entry.pk, sync=True)
    from django_q.models import Task

    assert Task.objects.get(id=task_id).result.startswith("skipped")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("service", "status"),
    [
        (job_queue.run_job_queue_entry_now, JobStatus.ON_HOLD),
        (job_queue.run_job_queue_entry_now, JobStatus.IN_PROCESS),
        (job_queue.set_job_queue_entry_on_hold, JobStatus.IN_PROCESS),
        (job_queue.set_job_queue_entry_ready, JobStatus.IN_PROCESS),
    ],
)
def test_actions_the_status_does_not_allow_are_refused(staff_user, service, status):
    entry = new_entry(staff_user)
    JobQueueEntry.objects.filter(pk=entry.pk).update(status=status)
    with pytest.raises(job_queue.JobQueueRefused):
        service(entry=entry)
    assert JobQueueEntry.objects.get(pk=entry.pk).status == status


@pytest.mark.django_db
def test_an_unexpected_error_leaves_the_entry_in_error_with_a_readable_message(staff_user, monkeypatch):
    def boom(entry, claim):
        raise RuntimeError("secret internals")

    monkeypatch.setitem(job_queue.RUNNERS, 6700, boom)
    entry = job_queue.run_job_queue_entry(entry_id=new_entry(staff_user).pk)
    assert entry.status == JobStatus.ERROR
    assert entry.last_error == "Unexpected error (RuntimeError); the details are in the server log."


@pytest.mark.django_db
def test_an_entry_deleted_during_its_run_is_left_deleted(staff_user, monkeypatch):
    def delete_me(entry, claim):
        job_queue.delete_job_queue_entry(entry=entry)

    monkeypatch.setitem(job_queue.RUNNERS, 6700, delete_me)
    assert job_queue.run_job_queue_entry(entry_id=new_entry(staff_user).pk) is None
    assert not JobQueueEntry.objects.exists() and not job_queue_schedules().exists()
