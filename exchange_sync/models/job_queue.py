"""Business Central's Job Queue Entry (table 472), with its own calendar rules and known Object IDs."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


class JobStatus(models.TextChoices):
    READY = "ready", "Ready"
    IN_PROCESS = "in_process", "In Process"
    ERROR = "error", "Error"
    ON_HOLD = "on_hold", "On Hold"


class ObjectType(models.TextChoices):
    CODEUNIT = "codeunit", "Codeunit"


class CodeunitId(models.IntegerChoices):
    """The Object IDs to Run that bcsync knows. Checked by JobQueueEntry.clean() rather than set as the
    field's choices, so the card keeps Business Central's number field."""

    CONTACT_SYNC = (
        6700,
        "Exchange Sync – contact sync of every user with background synchronization enabled",  # noqa: RUF001
    )


class JobQueueEntry(models.Model):
    """Business Central's Job Queue Entry (472). Object ID 6700 syncs every user whose background
    synchronization is enabled. Each entry owns exactly one django-q2 Schedule."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="job_queue_entries"
    )
    object_type_to_run = models.CharField(
        "Object Type to Run", max_length=20, choices=ObjectType.choices, default=ObjectType.CODEUNIT
    )
    object_id_to_run = models.PositiveIntegerField("Object ID to Run", default=CodeunitId.CONTACT_SYNC)
    description = models.CharField(max_length=250, blank=True)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.READY)
    recurring = models.BooleanField("Recurring Job", default=True)
    minutes_between_runs = models.PositiveIntegerField("No. of Minutes between Runs", default=1440)
    run_on_mondays = models.BooleanField(default=True)
    run_on_tuesdays = models.BooleanField(default=True)
    run_on_wednesdays = models.BooleanField(default=True)
    run_on_thursdays = models.BooleanField(default=True)
    run_on_fridays = models.BooleanField(default=True)
    run_on_saturdays = models.BooleanField(default=True)
    run_on_sundays = models.BooleanField(default=True)
    earliest_start_at = models.DateTimeField("Earliest Start Date/Time", default=timezone.now)
    last_run_at = models.DateTimeField("Last run", null=True, blank=True, editable=False)
    next_run_at = models.DateTimeField("Next run", null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    schedule = models.OneToOneField(
        "django_q.Schedule",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )

    class Meta:
        verbose_name = "job queue entry"
        verbose_name_plural = "job queue entries"

    def __str__(self) -> str:
        return f"{self.get_object_type_to_run_display()} {self.object_id_to_run} {self.description}".strip()

    WEEKDAY_FIELDS = (
        "run_on_mondays",
        "run_on_tuesdays",
        "run_on_wednesdays",
        "run_on_thursdays",
        "run_on_fridays",
        "run_on_saturdays",
        "run_on_sundays",
    )

    @property
    def label(self) -> str:
        return f"Job Queue Entry {self.get_object_type_to_run_display()} {self.object_id_to_run}"

    def unknown_object_message(self) -> str:
        known = ", ".join(f"{code.value} ({code.label})" for code in sorted(CodeunitId))
        return f"There is no Codeunit {self.object_id_to_run} to run. Known Object IDs: {known}."

    def run_weekdays(self) -> set[int]:
        """The weekdays (Monday = 0) the entry runs on."""
        return {day for day, field in enumerate(self.WEEKDAY_FIELDS) if getattr(self, field)}

    def _on_a_run_day(self, moment: datetime) -> datetime | None:
        """`moment` if it falls on a day the entry runs (in TIME_ZONE), else the start of the next such
        day."""
        days = self.run_weekdays()
        if not days:
            return None
        local = timezone.localtime(moment)
        if local.weekday() in days:
            return moment
        for offset in range(1, 8):
            day = local.date() + timedelta(days=offset)
            if day.weekday() in days:
                return timezone.make_aware(datetime.combine(day, time.min))
        return None  # unreachable: days is not empty

    def next_run(self, *, anchor: datetime | None, now: datetime) -> datetime | None:
        """When the entry should run next, never before `now` (missed slots are skipped, as with
        catch_up off). `anchor` is when the last run was due (or started); None if it never ran.

        A one-off entry runs once at its earliest start. A recurring one runs every No. of Minutes
        between Runs after `anchor`, not before its earliest start, and only on its weekdays: a slot on
        another day moves to the start of the next day it runs, as Business Central does.
        """
        if not self.recurring:
            return None if anchor else max(self.earliest_start_at, now)
        candidate = self.earliest_start_at
        if anchor is not None:
            step = timedelta(minutes=self.minutes_between_runs)
            candidate = anchor + step
            if candidate <= now:
                candidate += step * ((now - candidate) // step + 1)
            candidate = max(candidate, self.earliest_start_at)
        return self._on_a_run_day(max(candidate, now))

    def clean(self) -> None:
        errors = {}
        if self.object_id_to_run not in CodeunitId.values:
            errors["object_id_to_run"] = ValidationError(
                self.unknown_object_message(), code="unknown_object_id"
            )
        if self.recurring and not self.minutes_between_runs:
            errors["minutes_between_runs"] = "A recurring job needs at least 1 minute between runs."
        if self.recurring and not any(getattr(self, field) for field in self.WEEKDAY_FIELDS):
            errors["run_on_mondays"] = "A recurring job needs at least one weekday to run on."
        if errors:
            raise ValidationError(errors)


class LogStatus(models.TextChoices):
    IN_PROCESS = "in_process", "In Process"
    SUCCESS = "success", "Success"
    # The pass ran for everyone; some users' syncs failed (named in Error Message). The entry stays
    # Ready: one user's failure never pauses the others' schedule.
    SUCCESS_WITH_FAILURES = "partial", "Success, some users failed"
    ERROR = "error", "Error"


class JobQueueLogEntry(models.Model):
    """Business Central's Job Queue Log Entry (474): one pass of an entry, start to end."""

    entry = models.ForeignKey(JobQueueEntry, on_delete=models.CASCADE, related_name="log_entries")
    started_at = models.DateTimeField("Start Date/Time", default=timezone.now)
    ended_at = models.DateTimeField("End Date/Time", null=True, blank=True)
    status = models.CharField(max_length=20, choices=LogStatus.choices, default=LogStatus.IN_PROCESS)
    users_total = models.PositiveIntegerField("Users", default=0)
    users_synced = models.PositiveIntegerField("Synced", default=0)
    users_skipped = models.PositiveIntegerField("Skipped", default=0)
    users_failed = models.PositiveIntegerField("Failed", default=0)
    error_message = models.TextField("Error Message", blank=True)

    class Meta:
        verbose_name = "job queue log entry"
        verbose_name_plural = "job queue log entries"
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["entry", "-started_at"], name="jqlog_entry_recent_idx")]

    def __str__(self) -> str:
        return f"Job Queue Log Entry #{self.pk} ({self.get_status_display()})"


class PassOutcome(models.TextChoices):
    SYNCED = "synced", "Synced"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"


class PassUser(models.Model):
    """One user's part of a pass. Delivered at least once: a delivery first claims this row with a
    conditional UPDATE (unclaimed, or claimed longer ago than SYNC_CLAIM_STALE_SECONDS), and the first
    to record an outcome wins, so a user is synced once per pass whoever delivers twice."""

    log_entry = models.ForeignKey(JobQueueLogEntry, on_delete=models.CASCADE, related_name="users")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    claimed_at = models.DateTimeField(null=True, blank=True)
    run = models.ForeignKey("SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=PassOutcome.choices, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["log_entry", "user"], name="passuser_once_per_pass")]
        indexes = [models.Index(fields=["log_entry", "finished_at"], name="passuser_open_idx")]

    def __str__(self) -> str:
        return f"{self.user} in pass #{self.log_entry_id}"
