"""The Outlook half of a plan: Graph writes in $batch windows, each batch's results recorded as it lands.

Before a create is sent its link says so, and before Business Central's values go over Outlook's the
log says which values they replace, each in its own short transaction; no transaction is held open
across an HTTP call.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import transaction
from django.utils import timezone

from contacts.models import Contact
from exchange_sync.graph import (
    AccessDenied,
    BatchRequest,
    BatchResult,
    GraphClient,
    InvalidToken,
    ItemNotFound,
    MailboxNotFound,
    PreconditionFailed,
    contact_create_request,
    contact_delete_request,
    contact_update_request,
)
from exchange_sync.models import ActivityLog, ContactLink, ContactSyncSetup, Direction, Outcome

from .activity_log import ACTION_NAMES, DB_CHUNK, RunLog, done_message, overwritten_text
from .mapping import (
    Countries,
    OutlookContact,
    bc_record,
    changed_fields,
    graph_body,
    outlook_contact,
    record_hash,
)
from .planner import CREATING, Action, ActionKind
from .reader import chunks, outlook_values_before

# The kinds that send Business Central's values over an Outlook contact that exists.
OVERWRITING_KINDS = (ActionKind.UPDATE_M365, ActionKind.LINK, ActionKind.MERGE)
# The kinds of action this writer applies; the others change only Business Central's side.
OUTLOOK_KINDS = frozenset(
    {*OVERWRITING_KINDS, ActionKind.CREATE_IN_M365, ActionKind.RECREATE_IN_M365, ActionKind.DELETE_IN_M365}
)
# Actions whose Graph requests are built and sent together (100 batches of 20). Between windows the
# pipeline drains and Outlook's workers idle for a round trip, so windows are as large as memory
# comfortably allows: 2,000 contacts and their request bodies are a few MB.
GRAPH_WINDOW = 2000
# What a written contact's link holds; the same for a new link and an existing one.
LINK_FIELDS = [
    "contact",
    "contact_no",
    "email",
    "graph_id",
    "change_key",
    "bc_hash",
    "m365_hash",
    "bc_synced",
    "m365_synced",
    "detached",
    "pending",
    "synced_at",
]
# Inner $batch answers that concern the mailbox or the app, not the item: every further request
# would fail the same way, so the run stops (FAILED, watermark and delta link kept) instead of
# logging one failure per contact and reporting success.
RUN_STOPPING_ERRORS = (MailboxNotFound, AccessDenied, InvalidToken)

Requests = dict[str, tuple[Action, dict[str, str] | None]]  # request id -> action, record to send


@dataclass
class PendingLinks:
    """The link changes of the $batch being recorded. flush_links() writes them with the batch's log
    entries, a few statements per batch instead of several per contact."""

    saved: list[ContactLink] = field(default_factory=list)  # existing links, by primary key
    created: list[ContactLink] = field(default_factory=list)  # new links, by (setup, contact)
    failed_ids: list[int] = field(default_factory=list)  # to send again next run
    # Outlook's version moved on (412): send again next run, with the change key read then.
    outlook_moved_ids: list[int] = field(default_factory=list)
    deleted_ids: list[int] = field(default_factory=list)


def overruled_fields(action: Action, record: dict[str, str]) -> dict[str, str]:
    """The Outlook values that sending `record` replaces and that were Outlook's own edits: after a
    per-field merge only the fields both sides changed, otherwise every value that differs."""
    assert action.outlook is not None
    differing = changed_fields(action.outlook.record, record)
    if action.overruled is None:
        return differing
    return {key: value for key, value in differing.items() if key in action.overruled}


class OutlookWriter:
    def __init__(
        self,
        *,
        setup: ContactSyncSetup,
        client: GraphClient,
        mailbox: str,
        countries: Countries,
        log: RunLog,
        deadline: float | None = None,
    ) -> None:
        """`deadline` (time.monotonic()): when to send no further $batch, once one has landed (so that
        every slice moves on). What was sent is recorded all the same; `stopped` then says that some
        actions were not applied."""
        self.setup = setup
        self.client = client
        self.mailbox = mailbox
        self.folder_id = setup.folder_id
        self.countries = countries
        self.log = log
        self.pending_links = PendingLinks()
        self.deadline = deadline
        self.batches_landed = 0
        self.stopped = False

    def refresh_change_keys(self, change_keys: dict[str, str]) -> None:
        """Links keep Outlook's current version, so a later write's If-Match is not refused."""
        for chunk in chunks(sorted(change_keys), DB_CHUNK):
            links = list(ContactLink.objects.filter(setup=self.setup, graph_id__in=chunk))
            for link in links:
                link.change_key = change_keys[link.graph_id]
            with transaction.atomic():
                ContactLink.objects.write_fields(links, ["change_key"])

    def apply(self, actions: list[Action]) -> None:
        for window in chunks(actions, GRAPH_WINDOW):
            if self.stop():
                self.stopped = True
                return
            self._apply_window(window)

    def stop(self) -> bool:
        return self.deadline is not None and self.batches_landed > 0 and time.monotonic() >= self.deadline

    def flush_links(self) -> None:
        """Write the link changes of the batches recorded so far."""
        links, self.pending_links = self.pending_links, PendingLinks()
        if links.deleted_ids:
            ContactLink.objects.filter(pk__in=links.deleted_ids).delete()
        if links.failed_ids:
            ContactLink.objects.filter(pk__in=links.failed_ids).update(pending=True)
        if links.outlook_moved_ids:
            ContactLink.objects.filter(pk__in=links.outlook_moved_ids).update(pending=True, change_key="")
        if links.saved:
            ContactLink.objects.write_fields(links.saved, LINK_FIELDS)
        if links.created:
            # An upsert on the link's unique (setup, contact): a link left for this contact is taken over.
            ContactLink.objects.bulk_create(
                links.created,
                update_conflicts=True,
                unique_fields=["setup", "contact"],
                update_fields=LINK_FIELDS,
            )

    def _apply_window(self, actions: list[Action]) -> None:
        contacts = Contact.objects.select_related("company").in_bulk(
            [a.contact_id for a in actions if a.contact_id is not None]
        )
        by_request: Requests = {}
        for index, action in enumerate(actions):
            contact = contacts.get(action.contact_id) if action.contact_id is not None else None
            record = bc_record(contact) if contact is not None else None
            if action.kind != ActionKind.DELETE_IN_M365 and record is None:
                self.log.advance(1)
                continue  # deleted meanwhile; the next run sees the tombstone
            by_request[str(index + 1)] = (action, record)
        overwrites = [a for a in actions if a.kind in OVERWRITING_KINDS]
        gone = self._send(by_request, contacts, before=outlook_values_before(actions=overwrites))
        if gone:
            # Deleted in Outlook after we last looked: recreate it (Business Central's rule).
            self.log.phase_total += len(gone)
            recreates: Requests = {
                f"r{index + 1}": (
                    Action(
                        ActionKind.RECREATE_IN_M365,
                        contact_id=action.contact_id,
                        graph_id=action.graph_id,
                        link_id=action.link_id,
                        reason="deleted in Outlook",
                    ),
                    record,
                )
                for index, (action, record) in enumerate(gone)
            }
            self._send(recreates, contacts, before={})

    def _send(
        self, by_request: Requests, contacts: dict[int, Contact], *, before: dict[int, dict[str, str]]
    ) -> list[tuple[Action, dict[str, str]]]:
        """Send the requests and record each $batch as it lands (`before`: what Outlook holds of the
        contacts updated, by link id). Returns the updates Outlook answered 404 to (deleted there
        meanwhile), for the caller to recreate."""
        by_request = self._record_create_intents(by_request, contacts)
        intents = self._log_overwrite_intents(by_request, contacts)
        requests = [
            self._request(request_id, action, record) for request_id, (action, record) in by_request.items()
        ]
        gone: list[tuple[Action, dict[str, str]]] = []
        unsent = set(by_request)
        for results in self.client.batch_iter(mailbox=self.mailbox, requests=requests, stop=self.stop):
            unsent.difference_update(result.id for result in results)
            self.batches_landed += 1
            with transaction.atomic():
                landed = [intents[result.id] for result in results if result.id in intents]
                if landed:
                    ActivityLog.objects.filter(pk__in=landed).delete()
                for result in results:
                    action, record = by_request[result.id]
                    if isinstance(result.error, RUN_STOPPING_ERRORS):
                        continue
                    if isinstance(result.error, ItemNotFound) and action.kind in OVERWRITING_KINDS:
                        assert record is not None
                        gone.append((action, record))
                        continue
                    contact = contacts.get(action.contact_id)
                    self._record_result(action, record, result, contact, before.get(action.link_id))
                self.flush_links()
                self.log.advance(len(results))
                self.log.flush()
            _raise_run_stopping_error(results)
        if unsent:
            # Never sent: nothing of Outlook's was replaced. A create's link stays "creating", so the
            # next slice finds no copy by its email and creates the contact.
            self.stopped = True
            ActivityLog.objects.filter(pk__in=[intents[rid] for rid in unsent if rid in intents]).delete()
        return gone

    def _record_create_intents(self, by_request: Requests, contacts: dict[int, Contact]) -> Requests:
        """Before a create is sent, its link says so (graph_id "creating:..."), in its own short
        transaction. If the run stops before the answer is recorded, the next run finds the copy
        Outlook made by the link's email, and links or deletes it; it never imports it back."""
        links: dict[str, ContactLink] = {}
        for request_id, (action, _) in by_request.items():
            if action.kind in (ActionKind.CREATE_IN_M365, ActionKind.RECREATE_IN_M365):
                contact = contacts[action.contact_id]
                links[request_id] = ContactLink(
                    pk=action.link_id,
                    setup=self.setup,
                    contact=contact,
                    contact_no=contact.no,
                    email=contact.search_email,
                    graph_id=f"{CREATING}{uuid.uuid4().hex}",
                    pending=True,
                )
        if not links:
            return by_request
        # Split before writing: bulk_create sets the primary keys of the links it inserts.
        new = [link for link in links.values() if link.pk is None]
        existing = [link for link in links.values() if link.pk is not None]
        with transaction.atomic():
            ContactLink.objects.bulk_create(new)
            ContactLink.objects.write_fields(existing, ["contact_no", "email", "graph_id", "pending"])
        return {
            request_id: (replace(action, link_id=links[request_id].pk), record)
            if request_id in links
            else (action, record)
            for request_id, (action, record) in by_request.items()
        }

    def _log_overwrite_intents(self, by_request: Requests, contacts: dict[int, Contact]) -> dict[str, int]:
        """Before Business Central's values go over Outlook's, say so in the log (ids by request id).
        Each entry is replaced by the real one as its $batch lands; it stays only when the run stopped
        in between, when Outlook may have been overwritten with no other trace of its values."""
        intents: dict[str, ActivityLog] = {}
        for request_id, (action, record) in by_request.items():
            if action.outlook is None or record is None or action.kind not in OVERWRITING_KINDS:
                continue
            overwritten = overruled_fields(action, record)
            if not overwritten:
                continue
            contact = contacts.get(action.contact_id) if action.contact_id is not None else None
            intents[request_id] = self.log.entry(
                contact=contact,
                graph_id=action.graph_id or "",
                direction=Direction.TO_M365,
                action=ACTION_NAMES[action.kind],
                outcome=Outcome.PLANNED,
                message=f"{self.log.label(contact, action)}: Business Central's values were being sent to "
                f"Outlook, replacing {overwritten_text(overwritten)}, when the run stopped; Outlook may "
                "already show Business Central's values.",
                details={"outlook_values_overwritten": overwritten},
            )
        if not intents:
            return {}
        with transaction.atomic():
            ActivityLog.objects.bulk_create(intents.values())
        return {request_id: entry.pk for request_id, entry in intents.items()}

    def _request(self, request_id: str, action: Action, record: dict[str, str] | None) -> BatchRequest:
        where = {"id": request_id, "mailbox": self.mailbox, "folder_id": self.folder_id}
        if action.kind == ActionKind.DELETE_IN_M365:
            return contact_delete_request(**where, contact_id=action.graph_id)
        assert record is not None
        if action.kind in (ActionKind.CREATE_IN_M365, ActionKind.RECREATE_IN_M365):
            return contact_create_request(**where, contact=graph_body(record))
        return contact_update_request(
            **where,
            contact_id=action.graph_id,
            changes=graph_body(record),
            if_match=f'W/"{action.change_key}"' if action.change_key else None,
        )

    def _record_result(
        self,
        action: Action,
        record: dict[str, str] | None,
        result: BatchResult,
        contact: Contact | None,
        before: dict[str, str] | None,
    ) -> None:
        label = self.log.label(contact, action)
        log = {
            "contact": contact,
            "contact_no": self.log.deleted_no(action),
            "graph_id": action.graph_id or "",
            "direction": Direction.TO_M365,
            "action": ACTION_NAMES[action.kind],
        }
        if action.kind == ActionKind.DELETE_IN_M365:
            if result.error is None or isinstance(result.error, ItemNotFound):
                assert action.link_id is not None
                self.pending_links.deleted_ids.append(action.link_id)
                self.log.add(
                    **log,
                    outcome=Outcome.DELETED,
                    message=f"{label} was removed from the Outlook folder: {action.reason}.",
                )
            else:
                self.log.add(
                    **log,
                    outcome=Outcome.FAILED,
                    message=f"Could not remove {label} from Outlook; it is tried again next run. "
                    f"{result.error}",
                )
            return
        assert record is not None and contact is not None
        if isinstance(result.error, PreconditionFailed):
            # Edited in Outlook after we read it. Nothing was overwritten; the next run reads that
            # edit through the delta link, logs what Business Central's values replace, and sends them.
            if action.link_id is not None:
                self.pending_links.outlook_moved_ids.append(action.link_id)
            self.log.add(
                **log,
                outcome=Outcome.SKIPPED,
                message=f"{label} was edited in Outlook while this run was sending it; Business Central's "
                "values go out on the next run, which logs the Outlook values they replace.",
            )
            return
        if result.error is not None:
            if action.kind == ActionKind.LINK and action.outlook is not None:
                # Keep the match: a later delta read will not show this Outlook contact again, and
                # without the link the next run would create a second one. Pending: send again.
                self._save_link(action, contact, record=None, outlook=action.outlook, pending=True)
            elif action.link_id is not None:
                self.pending_links.failed_ids.append(action.link_id)
            self.log.add(
                **log,
                outcome=Outcome.FAILED,
                message=f"Could not write {label} to Outlook; it is tried again next run. {result.error}",
            )
            return
        written = outlook_contact(result.body, self.countries)
        self._save_link(action, contact, record=record, outlook=written)
        outcome, message = done_message(action, label, record, before)
        details: dict[str, Any] = {}
        if action.outlook is not None and action.kind in OVERWRITING_KINDS:
            overwritten = overruled_fields(action, record)
            if overwritten:
                details["outlook_values_overwritten"] = overwritten
                message += f" Outlook's differing values were replaced: {overwritten_text(overwritten)}."
        self.log.add(
            **{**log, "graph_id": written.graph_id},
            outcome=outcome,
            message=message,
            details=details,
        )

    def _save_link(
        self,
        action: Action,
        contact: Contact,
        *,
        record: dict[str, str] | None,
        outlook: OutlookContact,
        pending: bool = False,
    ) -> None:
        """Record what was sent (`record`, None when it did not arrive) and what Outlook holds."""
        link = ContactLink(
            pk=action.link_id,
            setup=self.setup,
            contact=contact,
            contact_no=contact.no,
            email=contact.search_email,
            graph_id=outlook.graph_id,
            change_key=outlook.change_key,
            bc_hash=record_hash(record) if record is not None else "",
            m365_hash=record_hash(outlook.record),
            bc_synced=record,
            m365_synced=outlook.record,
            detached=False,
            pending=pending,
            synced_at=timezone.now(),
        )
        if action.link_id is not None:
            self.pending_links.saved.append(link)
        else:
            self.pending_links.created.append(link)


def _raise_run_stopping_error(results: list[BatchResult]) -> None:
    for result in results:
        if isinstance(result.error, RUN_STOPPING_ERRORS):
            raise result.error
