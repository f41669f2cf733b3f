"""What a sync did: Sync Runs, the Activity Log (table 710) and the incidents that alerts are sent for."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from contacts.text import storable_json, storable_text


class RunPhase(models.TextChoices):
    READING_OUTLOOK = "reading_outlook", "Reading Outlook"
    PLANNING = "planning", "Planning"
    WRITING_OUTLOOK = "writing_outlook", "Writing to Outlook"
    WRITING_BC = "writing_bc", "Writing to Business Central"


class SyncMode(models.TextChoices):
    SYNC = "sync", "Sync with Microsoft 365"
    FULL = "full", "Full Sync with Microsoft 365"
    PREVIEW = "preview", "Preview"


class SyncTrigger(models.TextChoices):
    BUTTON = "button", "Button"
    ADMIN_ACTION = "admin_action", "Admin action"
    JOB_QUEUE = "job_queue", "Job queue"
    COMMAND = "command", "Command"
    LIVE = "live", "Live update"


# Runs a person started and waits for; live updates and passes are nobody's to wait for.
PERSON_TRIGGERS = (SyncTrigger.BUTTON, SyncTrigger.ADMIN_ACTION, SyncTrigger.COMMAND)


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class SyncRun(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sync_runs")
    mode = models.CharField(max_length=10, choices=SyncMode.choices)
    trigger = models.CharField(max_length=20, choices=SyncTrigger.choices, default=SyncTrigger.BUTTON)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    allow_mass_delete = models.BooleanField(default=False)
    job_queue_entry = models.ForeignKey(
        "JobQueueEntry", null=True, blank=True, on_delete=models.SET_NULL, related_name="sync_runs"
    )
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created = models.PositiveIntegerField("Created in Outlook", default=0)
    updated = models.PositiveIntegerField("Updated in Outlook", default=0)
    deleted = models.PositiveIntegerField("Deleted from Outlook", default=0)
    recreated = models.PositiveIntegerField("Recreated in Outlook", default=0)
    imported = models.PositiveIntegerField("Created in Business Central", default=0)
    bc_updated = models.PositiveIntegerField("Updated in Business Central", default=0)
    linked = models.PositiveIntegerField("Matched by email", default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    graph_requests = models.PositiveIntegerField("Graph requests", default=0)
    summary = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # Where a running run is: written with its counts at each per-batch flush.
    phase = models.CharField(max_length=20, choices=RunPhase.choices, blank=True)
    phase_started_at = models.DateTimeField(null=True, blank=True)
    phase_done = models.PositiveIntegerField(default=0)
    phase_total = models.PositiveIntegerField(default=0, help_text="0 when not known in advance.")
    # A run longer than one task may take goes on in slices, each a task of its own: the slice now
    # running or queued, and when it started (None while it waits for a worker).
    slice = models.PositiveIntegerField(default=1)
    slice_started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-queued_at"], name="syncrun_user_recent_idx"),
            # A user's last successful run and the failures since (Sync health, alerts).
            models.Index(fields=["user", "status", "-finished_at"], name="syncrun_user_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_mode_display()} #{self.pk} ({self.get_status_display()})"

    @property
    def is_finished(self) -> bool:
        return self.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)

    @property
    def interactive_cluster(self) -> str | None:
        """The django-q2 cluster that takes this run's tasks when it is the interactive one, else None
        (the default cluster). django-q2 has no priorities: a run a person asked for (and its later
        slices) goes to the interactive cluster, whose workers never hold a pass's user runs, so it never
        waits behind a pass."""
        if self.trigger in PERSON_TRIGGERS and settings.Q_INTERACTIVE_CLUSTER:
            return settings.Q_INTERACTIVE_CLUSTER
        return None

    COUNT_FIELDS = (
        "created",
        "updated",
        "deleted",
        "recreated",
        "imported",
        "bc_updated",
        "linked",
        "skipped",
        "failed",
    )

    def moved(self) -> dict[str, int]:
        """The counts this run moved, by name; empty when it changed nothing."""
        return {name: getattr(self, name) for name in self.COUNT_FIELDS if getattr(self, name)}

    def _worded_counts(self, *, nonzero_only: bool) -> list[str]:
        """Each count as the summary words it: "would create 3" for a Preview (its plan), "created=3"
        for a Sync; a Preview has no failures to count."""
        counts = {
            "created": ("create", self.created),
            "updated": ("update", self.updated + self.bc_updated),
            "linked": ("link", self.linked),
            "deleted": ("delete", self.deleted),
            "recreated": ("recreate", self.recreated),
            "imported": ("import", self.imported),
            "skipped": ("skip", self.skipped),
            "failed": ("", self.failed),
        }
        preview = self.mode == SyncMode.PREVIEW
        return [
            f"would {verb} {count}" if preview else f"{name}={count}"
            for name, (verb, count) in counts.items()
            if (count or not nonzero_only) and (verb or not preview)
        ]

    def _joined(self, parts: list[str]) -> str:
        return (", " if self.mode == SyncMode.PREVIEW else " ").join(parts)

    def summary_line(self) -> str:
        """The run's counts on one line (run page, command line). A Preview's counts are its plan, so
        they are worded as what a Sync would do."""
        separator = "; " if self.mode == SyncMode.PREVIEW else " "
        return (
            self._joined(self._worded_counts(nonzero_only=False))
            + f"{separator}graph_requests={self.graph_requests}"
        )

    def result_line(self) -> str:
        """The counts that are not zero, worded as in the summary line (the Sync runs list)."""
        parts = self._worded_counts(nonzero_only=True)
        if parts:
            return self._joined(parts)
        if self.status == RunStatus.FAILED:
            return "failed, nothing changed"
        return "nothing to change" if self.is_finished else ""


class Direction(models.TextChoices):
    TO_M365 = "to_m365", "To Outlook"
    TO_BC = "to_bc", "To Business Central"
    NONE = "none", "—"


class Outcome(models.TextChoices):
    CREATED = "created", "Created"
    UPDATED = "updated", "Updated"
    DELETED = "deleted", "Deleted"
    RECREATED = "recreated", "Recreated"
    LINKED = "linked", "Linked"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"
    PLANNED = "planned", "Planned (preview)"


class ActivityLogQuerySet(models.QuerySet["ActivityLog"]):
    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for obj in objs:
            obj.make_storable()
        return super().bulk_create(objs, *args, **kwargs)


class ActivityLog(models.Model):
    """Business Central's Activity Log (710), with successes logged too. Messages and details quote
    Outlook's values, so what a database cannot store is removed from them on every write."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="log_entries")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey(
        "contacts.Contact", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    contact_no = models.CharField(max_length=20, blank=True)
    email = models.CharField(max_length=320, blank=True)
    graph_id = models.CharField(max_length=512, blank=True)
    direction = models.CharField(max_length=10, choices=Direction.choices, default=Direction.NONE)
    action = models.CharField(max_length=30)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = ActivityLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "activity log entry"
        verbose_name_plural = "activity log"
        indexes = [models.Index(fields=["user", "-created_at"], name="activitylog_user_recent_idx")]

    def __str__(self) -> str:
        return self.message[:80]

    def save(self, *args, **kwargs) -> None:
        self.make_storable()
        super().save(*args, **kwargs)

    def make_storable(self) -> None:
        for name in ("contact_no", "email", "graph_id", "action", "message"):
            setattr(self, name, storable_text(getattr(self, name)))
        self.details = storable_json(self.details)


class IncidentKind(models.TextChoices):
    BACKGROUND_SYNC_FAILING = "background_sync_failing", "Background sync failing"
    CONNECTION_FAILED = "connection_failed", "Connection needs attention"


class SyncIncident(models.Model):
    """Something wrong with one user's sync that the user and the administrators were told about by
    email: opened once, resolved once, however many runs fail in between. At most one is open per user
    and kind, which is what keeps a restarted worker, or two workers, from telling them twice."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sync_incidents"
    )
    kind = models.CharField(max_length=30, choices=IncidentKind.choices)
    reason = models.TextField(help_text="Why, in words, as the alert said.")
    run = models.ForeignKey(
        SyncRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The run that opened it, if a run did.",
    )
    opened_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "kind"],
                condition=models.Q(resolved_at__isnull=True),
                name="incident_one_open_per_user_and_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.user} since {self.opened_at:%Y-%m-%d %H:%M}"
