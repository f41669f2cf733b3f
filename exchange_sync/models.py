"""Microsoft 365 sync state per user, after Business Central's pages and tables: User Card,
Exchange Sync Setup (6700), Contact Sync Setup, Activity Log (710) and Job Queue Entry (472)."""

from __future__ import annotations

import unicodedata
from datetime import datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from contacts.models import normalize_email
from contacts.text import storable_json, storable_text

DEFAULT_FOLDER_NAME = "Business Central"
# Business Central's Folder ID is Text[30]. Outlook's address book cannot show a contacts folder whose
# name holds any of these characters.
FOLDER_NAME_MAX_LENGTH = 30
FOLDER_NAME_REFUSED = '[]/\\&~?*|<>";:+'


def validate_folder_name(value: str) -> None:
    if len(value) > FOLDER_NAME_MAX_LENGTH:
        raise ValidationError(
            f"A folder name has at most {FOLDER_NAME_MAX_LENGTH} characters (this one has {len(value)}).",
            code="too_long",
        )
    refused = sorted({c for c in value if c in FOLDER_NAME_REFUSED})
    if refused:
        raise ValidationError(
            f"Outlook does not accept {' '.join(refused)} in a folder name; these cannot be used: "
            f"{' '.join(FOLDER_NAME_REFUSED)}",
            code="refused_characters",
        )
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise ValidationError("A folder name cannot hold control characters.", code="control_characters")


class UserCard(models.Model):
    """The Microsoft 365 section of Business Central's User Card."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="user_card")
    microsoft_365_email = models.EmailField(
        "Microsoft 365 email",
        max_length=250,
        blank=True,
        help_text="The mailbox whose contacts this user syncs (Business Central: Authentication Email).",
    )

    class Meta:
        verbose_name = "user card"
        # Which mailbox a user syncs is an administrator's decision, as Business Central's
        # Authentication Email is: the app may reach every mailbox of the tenant.
        permissions = [("change_microsoft_365_email", "Can change the Microsoft 365 email of a user")]
        constraints = [
            models.UniqueConstraint(
                Lower("microsoft_365_email"),
                name="usercard_unique_m365_email_ci",
                condition=~models.Q(microsoft_365_email=""),
                violation_error_message="Another user already has this Microsoft 365 email.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} <{self.microsoft_365_email or 'no Microsoft 365 email'}>"

    def save(self, *args, **kwargs) -> None:
        self.microsoft_365_email = normalize_email(self.microsoft_365_email)
        super().save(*args, **kwargs)


class ConnectionStatus(models.TextChoices):
    NOT_VALIDATED = "not_validated", "Not validated"
    CONNECTED = "connected", "Connected"
    FAILED = "failed", "Failed"


class RunPhase(models.TextChoices):
    READING_OUTLOOK = "reading_outlook", "Reading Outlook"
    PLANNING = "planning", "Planning"
    WRITING_OUTLOOK = "writing_outlook", "Writing to Outlook"
    WRITING_BC = "writing_bc", "Writing to Business Central"


class ExchangeSyncSetup(models.Model):
    """Page 6700 "Exchange Sync. Setup": one per user."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="exchange_sync_setup"
    )
    connection_status = models.CharField(
        max_length=20, choices=ConnectionStatus.choices, default=ConnectionStatus.NOT_VALIDATED
    )
    last_validated_at = models.DateTimeField("Last validated", null=True, blank=True)
    last_validation_message = models.TextField("Last validation result", blank=True)
    enabled = models.BooleanField("Enable Background Synchronization", default=False)

    class Meta:
        verbose_name = "Exchange sync setup"
        permissions = [("run_contact_sync", "Can run contact sync")]

    def __str__(self) -> str:
        return f"Exchange Sync Setup of {self.user}"


class OutOfScopePolicy(models.TextChoices):
    KEEP = "keep", "Keep the Outlook copy (stop syncing it)"
    REMOVE = "remove", "Remove it from the Outlook folder"


class ContactSyncSetupManager(models.Manager):
    """The claim behind one run per user: a run holds the setup (active_run) from its request to its
    end and renews claimed_at as it writes, so that the claim of a process that died goes stale."""

    def claim(self, *, setup: ContactSyncSetup, run: SyncRun, now: datetime, stale_before: datetime) -> bool:
        """Take the claim for `run`, unless another run holds one renewed since `stale_before`."""
        return bool(
            self.filter(pk=setup.pk)
            .filter(models.Q(active_run__isnull=True) | models.Q(claimed_at__lt=stale_before))
            .update(active_run=run, claimed_at=now)
        )

    def renew_claim(self, *, setup: ContactSyncSetup, run: SyncRun, now: datetime) -> None:
        self.filter(pk=setup.pk, active_run=run).update(claimed_at=now)

    def release_claim(self, *, setup: ContactSyncSetup, run: SyncRun) -> None:
        self.filter(pk=setup.pk, active_run=run).update(active_run=None, claimed_at=None)


class ExistingFolderPolicy(models.TextChoices):
    MOVE = "move", "Move them into it, with everything Outlook holds on them"
    REMOVE = "remove", "Remove them from Outlook; the next Sync fills the folder from Business Central"


class ContactSyncSetup(models.Model):
    """Page "Contact Sync. Setup": folder, filter and the sync state of one user."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="contact_sync_setup"
    )
    # The column is wider than the limit, so names saved before the check still load.
    folder_name = models.CharField(
        "Folder name",
        max_length=250,
        default=DEFAULT_FOLDER_NAME,
        validators=[validate_folder_name],
        help_text="The Outlook contacts folder this user's contacts are synced into. Changing it "
        "renames that folder in Outlook on the next Sync, its contacts kept; if a folder of the new "
        "name already exists, the next Sync moves the synced contacts into it or removes them, as "
        "chosen below. Preview and Validate change nothing in Outlook.",
    )
    folder_id = models.CharField("Graph folder id", max_length=512, blank=True, editable=False)
    folder_mailbox = models.CharField(max_length=250, blank=True, editable=False)
    contact_filter = models.JSONField(
        "Sync filter",
        default=dict,
        blank=True,
        help_text='Business Central filter expressions per field, e.g. {"territory_code": "EU|NA"}.',
    )
    out_of_scope_policy = models.CharField(
        "When a contact leaves the filter",
        max_length=10,
        choices=OutOfScopePolicy.choices,
        default=OutOfScopePolicy.KEEP,
    )
    existing_folder_policy = models.CharField(
        "When the new folder name is taken",
        max_length=10,
        choices=ExistingFolderPolicy.choices,
        default=ExistingFolderPolicy.MOVE,
        help_text="What the next Sync does with the synced contacts of the old folder when a folder "
        "with the new name already exists in Outlook. Either way none is left behind as a duplicate.",
    )
    last_sync_at = models.DateTimeField("Last Sync Date Time", null=True, blank=True, editable=False)
    watermark = models.DateTimeField(
        "Changes synced up to",
        null=True,
        blank=True,
        editable=False,
        help_text="Start of the last successful run: Business Central edits after it go in the next Sync.",
    )
    delta_link = models.TextField(blank=True, editable=False)
    active_run = models.ForeignKey(
        "SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ContactSyncSetupManager()

    class Meta:
        verbose_name = "contact sync setup"

    def __str__(self) -> str:
        return f"Contact Sync Setup of {self.user}"


class ContactLink(models.Model):
    """One synced pair: a Business Central contact and the Outlook contact in the user's folder.
    The Graph immutable id is the identity; the email address never is. A link whose contact is
    gone (contact = NULL) is the tombstone that deletes the Outlook copy on the next run. A link
    whose graph_id starts with "creating:" records a create sent to Outlook whose answer has not
    been recorded yet (see sync.planner.CREATING)."""

    setup = models.ForeignKey(ContactSyncSetup, on_delete=models.CASCADE, related_name="links")
    contact = models.ForeignKey(
        "contacts.Contact", null=True, blank=True, on_delete=models.SET_NULL, related_name="sync_links"
    )
    contact_no = models.CharField(max_length=20, blank=True)
    email = models.CharField(
        max_length=80, blank=True, help_text="Normalised email of the contact when linked."
    )
    graph_id = models.CharField(max_length=512)
    change_key = models.CharField(max_length=256, blank=True)
    bc_hash = models.CharField(max_length=64, blank=True)
    m365_hash = models.CharField(max_length=64, blank=True)
    # The records whose hashes are bc_hash and m365_hash, for a per-field merge when both sides
    # changed. NULL on links last synced before they were kept: those merge as a whole contact.
    bc_synced = models.JSONField(
        null=True, blank=True, help_text="Business Central's synced fields as last synced."
    )
    m365_synced = models.JSONField(null=True, blank=True, help_text="Outlook's synced fields as last synced.")
    imported = models.BooleanField(
        default=False,
        help_text="Added to Business Central from this user's folder: it stays synced for this user "
        "outside the sync filter, until its Territory Code or Salesperson Code is set to a value the "
        "filter refuses.",
    )
    detached = models.BooleanField(
        default=False, help_text="Left the scope; its Outlook copy is kept but no longer synced."
    )
    pending = models.BooleanField(default=False, help_text="The last push failed; it is sent again next run.")
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["setup", "graph_id"], name="link_unique_graph_id"),
            models.UniqueConstraint(fields=["setup", "contact"], name="link_unique_contact"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_no or '(deleted)'} <-> {self.graph_id[:16]}..."


class SyncMode(models.TextChoices):
    SYNC = "sync", "Sync with Microsoft 365"
    FULL = "full", "Full Sync with Microsoft 365"
    PREVIEW = "preview", "Preview"


class SyncTrigger(models.TextChoices):
    BUTTON = "button", "Button"
    ADMIN_ACTION = "admin_action", "Admin action"
    JOB_QUEUE = "job_queue", "Job queue"
    COMMAND = "command", "Command"


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

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [models.Index(fields=["user", "-queued_at"], name="syncrun_user_recent_idx")]

    def __str__(self) -> str:
        return f"{self.get_mode_display()} #{self.pk} ({self.get_status_display()})"

    @property
    def is_finished(self) -> bool:
        return self.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)

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


class SyncHealth(ExchangeSyncSetup):
    """The Sync health page's place in the admin's app list; the page itself lists users, not rows
    of this model."""

    class Meta:
        proxy = True
        verbose_name = "sync health"
        verbose_name_plural = "sync health"
