"""A user's setup, after Business Central's pages: the User Card's Microsoft 365 email, the Exchange
Sync Setup (table 6700), the Contact Sync Setup and the link of each synced contact."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from contacts.models import normalize_email

if TYPE_CHECKING:
    from .runs import SyncRun


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
    # Back-off of background synchronization after failed passes (services/job_queue.py): the user is
    # skipped for 1, 2, 4, ... passes until the setup's fingerprint changes or a person runs a sync.
    background_failures = models.PositiveIntegerField(default=0, editable=False)
    background_skips_left = models.PositiveIntegerField(default=0, editable=False)
    background_failed_at = models.DateTimeField(null=True, blank=True, editable=False)
    background_failure_key = models.CharField(max_length=64, blank=True, editable=False)
    background_failure = models.TextField(blank=True, editable=False)

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
    # The settings a Sync depends on (filter, folder, policies) as of the end of the last successful run
    # that left nothing to try again; "" otherwise. While they are unchanged, a Sync that finds no
    # change on either side has nothing to do and reads no links (see sync.engine).
    settled_key = models.CharField(max_length=64, blank=True, editable=False)
    active_run = models.ForeignKey(
        "SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Live updates coalesce here: each request stamps sync_requested_at; only the request that sets
    # sync_pending_at queues a run, and a run that ends finds any request made after it started.
    sync_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    sync_pending_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ContactSyncSetupManager()

    class Meta:
        verbose_name = "contact sync setup"

    def __str__(self) -> str:
        return f"Contact Sync Setup of {self.user}"

    def has_folder_in(self, mailbox: str) -> bool:
        """Whether the setup has found or made its folder in this mailbox (the User Card's email may
        have changed since)."""
        return bool(self.folder_id) and self.folder_mailbox == mailbox


class ContactLinkQuerySet(models.QuerySet["ContactLink"]):
    def write_fields(self, links: list[ContactLink], fields: list[str]) -> None:
        """Write `fields` of links read or saved before, by primary key, in one statement per 500: an
        upsert on the primary key rather than `bulk_update`, which builds a CASE expression per link
        and field and cost a sync run most of its CPU. A link deleted meanwhile would be inserted
        again, whole; only the run holding the user's claim deletes the user's links."""
        if links:
            self.bulk_create(
                links, batch_size=500, update_conflicts=True, unique_fields=["pk"], update_fields=fields
            )


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

    objects = ContactLinkQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["setup", "graph_id"], name="link_unique_graph_id"),
            models.UniqueConstraint(fields=["setup", "contact"], name="link_unique_contact"),
        ]
        # A Sync asks whether the user has links to send again, and reads their imported contacts.
        indexes = [
            models.Index(fields=["setup", "pending"], name="link_setup_pending_idx"),
            models.Index(fields=["setup", "imported"], name="link_setup_imported_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_no or '(deleted)'} <-> {self.graph_id[:16]}..."


class SyncHealth(ExchangeSyncSetup):
    """The Sync health page's place in the admin's app list; the page itself lists users, not rows
    of this model."""

    class Meta:
        proxy = True
        verbose_name = "sync health"
        verbose_name_plural = "sync health"
