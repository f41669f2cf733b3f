"""A run's Activity Log: its entries, its counts and its heartbeat, and the words they use.

The writers say what happened (`RunLog.add`); the names of actions and the sentences that recur live
here, so one kind of action is worded the same in a preview, in an intent and once it is done.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from contacts.models import Contact
from exchange_sync.models import ActivityLog, ContactSyncSetup, Direction, Outcome, SyncRun

from .mapping import OutlookContact, caption
from .planner import Action, ActionKind, Plan

DB_CHUNK = 500  # rows per database transaction for Business Central-side writes and preview entries

ACTION_NAMES = {
    ActionKind.CREATE_IN_M365: "Create Outlook contact",
    ActionKind.UPDATE_M365: "Update Outlook contact",
    ActionKind.RECREATE_IN_M365: "Recreate Outlook contact",
    ActionKind.DELETE_IN_M365: "Delete Outlook contact",
    ActionKind.LINK: "Link by email",
    ActionKind.IMPORT_TO_BC: "Import Outlook contact",
    ActionKind.UPDATE_BC: "Update from Outlook",
    ActionKind.MERGE: "Merge changes",
    ActionKind.DETACH: "Stop syncing",
    ActionKind.SKIP: "Skip",
}
# The SyncRun counts each kind of action adds to once done (a merge writes both sides). A Preview
# counts its plan under the same names, so its run page and summary say what a Sync would do.
COUNT_NAMES = {
    ActionKind.CREATE_IN_M365: ("created",),
    ActionKind.UPDATE_M365: ("updated",),
    ActionKind.RECREATE_IN_M365: ("recreated",),
    ActionKind.DELETE_IN_M365: ("deleted",),
    ActionKind.LINK: ("linked",),
    ActionKind.IMPORT_TO_BC: ("imported",),
    ActionKind.UPDATE_BC: ("bc_updated",),
    ActionKind.MERGE: ("bc_updated", "updated"),
    ActionKind.DETACH: ("skipped",),
    ActionKind.SKIP: ("skipped",),
}
# An applied skip of a Business Central contact is named after what it did not do.
SKIPPED_SEND = "Send to Outlook"


class RunLog:
    """The entries and counts of one run, held until `flush()` writes them in the caller's transaction."""

    def __init__(self, *, run: SyncRun, setup: ContactSyncSetup, requests_sent: Callable[[], int]) -> None:
        self.run = run
        self.setup = setup
        self.requests_sent = requests_sent
        # A later slice of the run goes on counting from what the earlier ones recorded.
        self.tally: Counter[str] = Counter({name: getattr(run, name) for name in SyncRun.COUNT_FIELDS})
        self.requests_before = run.graph_requests
        self.pending: list[ActivityLog] = []
        self.deleted_nos: dict[int, str] = {}  # link id -> No. of its contact deleted in Business Central
        self.phase, self.phase_started_at, self.phase_done, self.phase_total = "", None, 0, 0

    def start_phase(self, phase: str, *, total: int = 0) -> None:
        """Say what the run does now and how many items it has (0: not known), at once."""
        self.phase, self.phase_started_at, self.phase_done, self.phase_total = phase, timezone.now(), 0, total
        self.flush()

    def advance(self, count: int) -> None:
        """`count` more items of the phase are done; the next flush writes it with the counts."""
        self.phase_done += count

    def add(self, **fields: Any) -> None:
        """Hold one entry for the next flush, and count it. Takes `entry()`'s arguments."""
        self.tally[_count_name(fields["outcome"], fields.get("direction", Direction.NONE))] += 1
        self.pending.append(self.entry(**fields))

    def entry(
        self,
        *,
        action: str,
        outcome: str,
        message: str,
        contact: Contact | None = None,
        contact_no: str = "",
        email: str = "",
        graph_id: str = "",
        direction: str = Direction.NONE,
        details: dict[str, Any] | None = None,
    ) -> ActivityLog:
        """One unsaved entry of this run; `add()` holds it for the next flush and counts it."""
        return ActivityLog(
            run=self.run,
            user_id=self.run.user_id,
            contact=contact,
            contact_no=contact.no if contact else contact_no,
            email=email or (contact.email if contact else ""),
            graph_id=graph_id,
            direction=direction,
            action=action,
            outcome=outcome,
            message=message,
            details=details or {},
        )

    def flush(self) -> None:
        """Write the entries, counts and progress so far, and prove the run is alive (heartbeat)."""
        ActivityLog.objects.bulk_create(self.pending)
        self.pending = []
        now = timezone.now()
        SyncRun.objects.filter(pk=self.run.pk).update(
            heartbeat_at=now,
            phase=self.phase,
            phase_started_at=self.phase_started_at,
            phase_done=self.phase_done,
            phase_total=self.phase_total,
            **self.counts(),
        )
        ContactSyncSetup.objects.renew_claim(setup=self.setup, run=self.run, now=now)

    def counts(self) -> dict[str, int]:
        return {
            **{name: self.tally[name] for name in SyncRun.COUNT_FIELDS},
            "graph_requests": self.requests_before + self.requests_sent(),
        }

    def label(self, contact: Contact | None, action: Action) -> str:
        if contact is None and action.link_id in self.deleted_nos:
            return f"Contact {self.deleted_nos[action.link_id]}"
        return contact_label(contact, action)

    def deleted_no(self, action: Action) -> str:
        return self.deleted_nos.get(action.link_id, "") if action.link_id else ""

    def preview(self, the_plan: Plan) -> None:
        contacts = Contact.objects.in_bulk(
            [a.contact_id for a in the_plan.actions if a.contact_id is not None]
        )
        if the_plan.blocked:
            # About the whole run, not a contact: held without counting, so "would skip" counts contacts.
            guard = self.entry(action="Mass-delete guard", outcome=Outcome.SKIPPED, message=the_plan.blocked)
            self.pending.append(guard)
        for action in the_plan.actions:
            if action.kind == ActionKind.DROP_LINK:
                continue
            contact = contacts.get(action.contact_id) if action.contact_id is not None else None
            direction = (
                Direction.TO_BC
                if action.kind in (ActionKind.IMPORT_TO_BC, ActionKind.UPDATE_BC)
                else (Direction.TO_M365)
            )
            self.add(
                contact=contact,
                graph_id=action.graph_id or "",
                email=(
                    contact.email if contact else action.outlook.record["email"] if action.outlook else ""
                ),
                direction=direction,
                action=ACTION_NAMES[action.kind],
                outcome=Outcome.PLANNED,
                contact_no=self.deleted_no(action),
                message=_preview_message(action, self.label(contact, action)),
            )
            self.tally.update(COUNT_NAMES[action.kind])
            if len(self.pending) >= DB_CHUNK:
                self.flush()
        self.flush()


def done_message(
    action: Action, label: str, record: dict[str, str], before: dict[str, str] | None
) -> tuple[str, str]:
    """The outcome and sentence of a write to Outlook that Outlook accepted; `before`: what Outlook
    held, when known, to name the fields an update changed."""
    if action.kind == ActionKind.CREATE_IN_M365:
        return Outcome.CREATED, f"{label} was added to the Outlook folder."
    if action.kind == ActionKind.RECREATE_IN_M365:
        return (
            Outcome.RECREATED,
            f"{label} was deleted in Outlook and recreated, as it still exists in Business Central.",
        )
    if action.kind == ActionKind.LINK:
        return Outcome.LINKED, (
            f"{label} was matched by email to the Outlook contact that already had {record['email']}; "
            "they are now linked and Business Central's values were sent."
        )
    if action.conflict:
        return Outcome.UPDATED, f"{label} changed on both sides; Business Central's values won."
    if action.reason:
        return Outcome.UPDATED, f"{label}: {action.reason}."
    changed = [caption(key) for key in record if before and key in before and before[key] != record[key]]
    return Outcome.UPDATED, f"{label} was updated in Outlook" + (
        f": {', '.join(changed)}." if changed else "."
    )


def overwritten_text(overwritten: dict[str, str]) -> str:
    """Outlook's values that Business Central's replace, as a log message lists them."""
    return ", ".join(f"{caption(key)} '{value}'" for key, value in overwritten.items())


def contact_label(contact: Contact | None, action: Action) -> str:
    if contact is not None:
        return f"{contact.no} {contact.name}"
    if action.outlook is not None:
        return f"Outlook contact '{action.outlook.label}'"
    return "The Outlook contact"


def problems_text(problems: list[str]) -> str:
    return (" " + " ".join(problems)) if problems else ""


def import_details(item: OutlookContact, problems: list[str]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if item.originals:
        details["original_values"] = item.originals
    if problems:
        details["problems"] = problems
    return details


def _count_name(outcome: str, direction: str) -> str:
    """The SyncRun count a log entry adds to ("" for none): what went to Business Central has names
    of its own; a planned entry counts nothing here, as preview() counts it by its action's kind."""
    if outcome in (Outcome.SKIPPED, Outcome.FAILED):
        return outcome
    if direction == Direction.TO_BC:
        return {Outcome.CREATED: "imported", Outcome.UPDATED: "bc_updated"}.get(outcome, "")
    return "" if outcome == Outcome.PLANNED else outcome


def _preview_message(action: Action, label: str) -> str:
    return {
        ActionKind.CREATE_IN_M365: f"{label} would be added to the Outlook folder.",
        ActionKind.UPDATE_M365: f"{label} would be updated in Outlook"
        + (" (changed on both sides; Business Central wins)." if action.conflict else "."),
        ActionKind.RECREATE_IN_M365: f"{label} was deleted in Outlook and would be recreated.",
        ActionKind.DELETE_IN_M365: f"{label} would be removed from the Outlook folder: {action.reason}.",
        ActionKind.LINK: f"{label} would be linked by email to the existing Outlook contact, "
        "Business Central's values sent.",
        ActionKind.IMPORT_TO_BC: f"{label} would be added to Business Central.",
        ActionKind.UPDATE_BC: f"{label} would be updated from Outlook.",
        ActionKind.MERGE: f"{label} changed on both sides: Outlook's "
        + ", ".join(caption(key) for key in action.from_outlook or {})
        + " would go to Business Central, then Business Central's values to Outlook"
        + ("; where both changed a field, Business Central wins." if action.conflict else "."),
        ActionKind.DETACH: f"{label} would stop syncing: {action.reason}.",
        ActionKind.SKIP: f"{label} {action.reason}.",
    }[action.kind]
