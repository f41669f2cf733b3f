"""Run one contact sync: read both sides, plan, apply.

Reads go first (Graph delta, then the database); the pure planner decides; then Graph writes go in
$batch calls of at most 20, up to 4 in flight, and the links, log entries and counts of each batch
are written in one short transaction as the batch lands. No transaction is ever held open across an
HTTP call. A run killed at any moment leaves the watermark and delta link where they were, so the
next run reads the same changes again, and email matching links what the killed run had created.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from contacts.models import Contact, ContactType, CountryRegion, normalize_email, phone_validator
from exchange_sync.graph.client import (
    BatchRequest,
    BatchResult,
    GraphClient,
    contact_create_request,
    contact_delete_request,
    contact_update_request,
)
from exchange_sync.graph.errors import (
    AccessDenied,
    InvalidToken,
    ItemNotFound,
    MailboxNotFound,
    PreconditionFailed,
    SyncStateExpired,
)
from exchange_sync.models import (
    ActivityLog,
    ContactLink,
    ContactSyncSetup,
    Direction,
    Outcome,
    SyncMode,
    SyncRun,
)

from .filters import compile_filter, imported_kept_filter, pinned_values
from .mapping import (
    Countries,
    OutlookContact,
    bc_record,
    changed_fields,
    graph_body,
    is_valid_email,
    outlook_contact,
    record_hash,
)
from .planner import CREATING, Action, ActionKind, BcContact, BcMatch, LinkState, Plan, PlanInput, plan

logger = logging.getLogger(__name__)

# Actions whose Graph requests are built and sent together (100 batches of 20). Between windows the
# pipeline drains and Outlook's workers idle for a round trip, so windows are as large as memory
# comfortably allows: 2,000 contacts and their request bodies are a few MB.
GRAPH_WINDOW = 2000
DB_CHUNK = 500  # rows per database transaction for Business Central-side writes
DELTA_PAGE_SIZE = 1000
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


def scope_queryset(setup: ContactSyncSetup) -> QuerySet[Contact]:
    """Business Central's rule: persons with an email, not privacy blocked, in the user's filter;
    and the contacts imported from the user's folder, unless moved out of the filter on purpose."""
    selected = compile_filter(filters=setup.contact_filter)
    if selected:  # an empty filter selects every person already
        imported = ContactLink.objects.filter(setup=setup, imported=True).values("contact_id")
        selected |= Q(id__in=imported) & imported_kept_filter(filters=setup.contact_filter)
    return (
        Contact.objects.filter(type=ContactType.PERSON, privacy_blocked=False)
        .exclude(email="")
        .filter(selected)
    )


@dataclass
class OutlookRead:
    changed: dict[str, OutlookContact] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    delta_link: str = ""
    whole_folder: bool = False
    change_keys: dict[str, str] = field(default_factory=dict)  # unchanged contacts whose version moved


@dataclass
class PendingLinks:
    """The link changes of the $batch being recorded. flush() writes them with its log entries, a
    few statements per batch instead of several per contact."""

    saved: list[ContactLink] = field(default_factory=list)  # existing links, by primary key
    created: list[ContactLink] = field(default_factory=list)  # new links, by (setup, contact)
    failed_ids: list[int] = field(default_factory=list)  # to send again next run
    # Outlook's version moved on (412): send again next run, with the change key read then.
    outlook_moved_ids: list[int] = field(default_factory=list)
    deleted_ids: list[int] = field(default_factory=list)


def _count_name(outcome: str, direction: str) -> str:
    """The SyncRun count a log entry adds to ("" for none): what went to Business Central has names
    of its own; a preview's plans count nothing."""
    if outcome in (Outcome.SKIPPED, Outcome.FAILED):
        return outcome
    if direction == Direction.TO_BC:
        return {Outcome.CREATED: "imported", Outcome.UPDATED: "bc_updated"}.get(outcome, "")
    return "" if outcome == Outcome.PLANNED else outcome


class SyncEngine:
    """One run for one user. `execute()` returns the plan it applied (or would apply, in preview)."""

    def __init__(self, *, run: SyncRun, setup: ContactSyncSetup, client: GraphClient, mailbox: str) -> None:
        self.run = run
        self.setup = setup
        self.client = client
        self.mailbox = mailbox
        self.folder_id = setup.folder_id
        self.tally: Counter[str] = Counter()
        self.countries = _countries()
        self.pending_logs: list[ActivityLog] = []
        self.pending_links = PendingLinks()
        self.deleted_nos: dict[int, str] = {}  # link id -> No. of its contact deleted in Business Central
        self.kept_imported: set[int] = set()  # in scope only as imported from this folder

    # --- the run ---------------------------------------------------------------------------------

    def execute(self) -> Plan:
        full = self.run.mode == SyncMode.FULL
        outlook = self.read_outlook(from_scratch=full or not self.setup.delta_link)
        the_plan = plan(self.plan_input(outlook, full=full or outlook.whole_folder))
        if self.run.mode == SyncMode.PREVIEW:
            self.log_preview(the_plan)
        elif the_plan.blocked:
            raise MassDeleteBlocked(the_plan.blocked)
        else:
            self.refresh_change_keys(outlook.change_keys)
            self.apply(the_plan)
            self.flush()  # what reading logged (an expired delta link) when the plan had nothing to write
        self.delta_link = outlook.delta_link
        return the_plan

    def read_outlook(self, *, from_scratch: bool) -> OutlookRead:
        links = {
            graph_id: (m365_hash, change_key)
            for graph_id, m365_hash, change_key in ContactLink.objects.filter(setup=self.setup).values_list(
                "graph_id", "m365_hash", "change_key"
            )
        }
        try:
            return self._read_delta(None if from_scratch else self.setup.delta_link, links)
        except SyncStateExpired:
            self.log(
                action="Read Outlook changes",
                outcome=Outcome.SKIPPED,
                message="Microsoft 365 no longer knows the last sync point (the delta link expired); "
                "the whole folder was compared instead.",
            )
            return self._read_delta(None, links)

    def _read_delta(self, delta_link: str | None, links: dict[str, tuple[str, str]]) -> OutlookRead:
        read = OutlookRead(whole_folder=delta_link is None)
        for page in self.client.delta(
            mailbox=self.mailbox, folder_id=self.folder_id, delta_link=delta_link, page_size=DELTA_PAGE_SIZE
        ):
            for item in page.changed:
                contact = outlook_contact(item, self.countries)
                read.seen.add(contact.graph_id)
                read.removed.discard(contact.graph_id)
                # Unchanged linked contacts are not kept: a 100k-contact folder stays small in memory.
                # Only their change key is, when Outlook touched a field we do not sync.
                known_hash, known_change_key = links.get(contact.graph_id, ("", ""))
                if known_hash != record_hash(contact.record):
                    read.changed[contact.graph_id] = contact
                else:
                    read.changed.pop(contact.graph_id, None)
                    if contact.change_key != known_change_key:
                        read.change_keys[contact.graph_id] = contact.change_key
            for graph_id in page.removed_ids:
                read.removed.add(graph_id)
                read.changed.pop(graph_id, None)
                read.change_keys.pop(graph_id, None)
            if page.delta_link:
                read.delta_link = page.delta_link
        return read

    def refresh_change_keys(self, change_keys: dict[str, str]) -> None:
        """Links keep Outlook's current version, so a later write's If-Match is not refused."""
        for chunk in _chunks(sorted(change_keys), DB_CHUNK):
            links = list(ContactLink.objects.filter(setup=self.setup, graph_id__in=chunk))
            for link in links:
                link.change_key = change_keys[link.graph_id]
            with transaction.atomic():
                ContactLink.objects.bulk_update(links, ["change_key"])

    def plan_input(self, outlook: OutlookRead, *, full: bool) -> PlanInput:
        scope = scope_queryset(self.setup)
        rows = list(
            ContactLink.objects.filter(setup=self.setup).values_list(
                "id",
                "contact_id",
                "graph_id",
                "bc_hash",
                "m365_hash",
                "detached",
                "pending",
                "contact_no",
                "email",
                "change_key",
            )
        )
        # Both sides' last-synced records, only where Outlook's copy changed: a merge needs them there.
        synced = {
            graph_id: (bc_synced, m365_synced)
            for graph_id, bc_synced, m365_synced in _in_chunks(
                sorted(outlook.changed),
                lambda ids: ContactLink.objects.filter(setup=self.setup, graph_id__in=ids).values_list(
                    "graph_id", "bc_synced", "m365_synced"
                ),
            )
        }
        links = [
            LinkState(
                link_id=row[0],
                contact_id=row[1],
                graph_id=row[2],
                bc_hash=row[3],
                m365_hash=row[4],
                detached=row[5],
                pending=row[6],
                email=row[8],
                change_key=outlook.change_keys.get(row[2], row[9]),
                bc_synced=synced.get(row[2], (None, None))[0],
                m365_synced=synced.get(row[2], (None, None))[1],
            )
            for row in rows
        ]
        outlook_changed_contacts = {lk.contact_id for lk in links if lk.graph_id in synced}
        # The link keeps the No. of a deleted contact, so the log can say which one left the folder.
        self.deleted_nos = {row[0]: row[7] for row in rows if row[1] is None and row[7]}
        in_scope = set(scope.values_list("id", flat=True))
        if ContactLink.objects.filter(setup=self.setup, imported=True).exists():
            by_filter = scope.filter(compile_filter(filters=self.setup.contact_filter))
            self.kept_imported = in_scope - set(by_filter.values_list("id", flat=True))
        linked_out_of_scope = [
            lk.contact_id for lk in links if lk.contact_id and lk.contact_id not in in_scope
        ]
        privacy_blocked = set(
            _in_chunks(
                linked_out_of_scope,
                lambda ids: Contact.objects.filter(id__in=ids, privacy_blocked=True).values_list(
                    "id", flat=True
                ),
            )
        )
        linked_ids = ContactLink.objects.filter(setup=self.setup, contact__isnull=False)
        candidates = scope
        if not full:
            # Changed since the last successful run started, never linked, or waiting for a retry.
            watermark = self.setup.watermark or datetime.min.replace(tzinfo=timezone.utc)
            candidates = scope.filter(
                Q(last_modified__gte=watermark)
                | ~Q(id__in=linked_ids.values("contact_id"))
                | Q(id__in=linked_ids.filter(Q(pending=True) | Q(detached=True)).values("contact_id"))
            )
        bc = {
            c.id: _bc_contact(c, with_record=c.id in outlook_changed_contacts)
            for c in candidates.iterator(chunk_size=2000)
        }
        linked_emails = {
            email: no
            for email, no, contact_id in linked_ids.filter(detached=False).values_list(
                "contact__search_email", "contact__no", "contact_id"
            )
            if contact_id in in_scope
        }
        return PlanInput(
            links=links,
            in_scope=in_scope,
            kept_imported=self.kept_imported,
            privacy_blocked=privacy_blocked,
            bc=bc,
            outlook=outlook.changed,
            seen=outlook.seen,
            removed=outlook.removed,
            whole_folder=outlook.whole_folder,
            bc_matches=self._bc_matches(outlook, {lk.graph_id for lk in links}),
            linked_emails=linked_emails,
            remove_out_of_scope=self.setup.out_of_scope_policy == "remove",
            allow_mass_delete=self.run.allow_mass_delete,
        )

    def _bc_matches(self, outlook: OutlookRead, linked: set[str]) -> dict[str, list[BcMatch]]:
        emails = sorted({c.email for gid, c in outlook.changed.items() if gid not in linked and c.email})
        matches: dict[str, list[BcMatch]] = {}
        rows = _in_chunks(
            emails,
            lambda chunk: (
                Contact.objects.persons()
                .filter(search_email__in=chunk)
                .order_by("no")
                .values_list("id", "no", "search_email", "privacy_blocked")
            ),
        )
        for contact_id, no, email, blocked in rows:
            matches.setdefault(email, []).append(
                BcMatch(contact_id=contact_id, no=no, privacy_blocked=blocked)
            )
        return matches

    # --- applying --------------------------------------------------------------------------------

    def apply(self, the_plan: Plan) -> None:
        graph_kinds = {
            ActionKind.CREATE_IN_M365,
            ActionKind.UPDATE_M365,
            ActionKind.RECREATE_IN_M365,
            ActionKind.DELETE_IN_M365,
            ActionKind.LINK,
            ActionKind.MERGE,
        }
        graph_actions = [a for a in the_plan.actions if a.kind in graph_kinds]
        for start in range(0, len(graph_actions), GRAPH_WINDOW):
            self.apply_graph_window(graph_actions[start : start + GRAPH_WINDOW])
        local = [a for a in the_plan.actions if a.kind not in graph_kinds]
        for start in range(0, len(local), DB_CHUNK):
            self.apply_local_chunk(local[start : start + DB_CHUNK])

    def apply_graph_window(self, actions: list[Action]) -> None:
        merges = [a for a in actions if a.kind == ActionKind.MERGE]
        if merges:
            self.take_outlook_fields(merges)  # first, so that what goes to Outlook holds them
        contacts = Contact.objects.select_related("company").in_bulk(
            [a.contact_id for a in actions if a.contact_id is not None]
        )
        by_request: dict[str, tuple[Action, dict[str, str] | None]] = {}
        for index, action in enumerate(actions):
            contact = contacts.get(action.contact_id) if action.contact_id is not None else None
            record = bc_record(contact) if contact is not None else None
            if action.kind != ActionKind.DELETE_IN_M365 and record is None:
                continue  # deleted meanwhile; the next run sees the tombstone
            by_request[str(index + 1)] = (action, record)
        gone = self._send(by_request, contacts)
        if gone:
            # Deleted in Outlook after we last looked: recreate it (Business Central's rule).
            recreates = {
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
            self._send(recreates, contacts)

    def _send(
        self, by_request: dict[str, tuple[Action, dict[str, str] | None]], contacts: dict[int, Contact]
    ) -> list[tuple[Action, dict[str, str]]]:
        """Send the requests and record each $batch as it lands. Returns the updates Outlook answered
        404 to (deleted there meanwhile), for the caller to recreate."""
        by_request = self._record_create_intents(by_request, contacts)
        intents = self._log_overwrite_intents(by_request, contacts)
        requests = [
            self._request(request_id, action, record) for request_id, (action, record) in by_request.items()
        ]
        gone: list[tuple[Action, dict[str, str]]] = []
        for results in self.client.batch_iter(mailbox=self.mailbox, requests=requests):
            with transaction.atomic():
                landed = [intents[result.id] for result in results if result.id in intents]
                if landed:
                    ActivityLog.objects.filter(pk__in=landed).delete()
                for result in results:
                    action, record = by_request[result.id]
                    if isinstance(result.error, RUN_STOPPING_ERRORS):
                        continue
                    if isinstance(result.error, ItemNotFound) and action.kind in (
                        ActionKind.UPDATE_M365,
                        ActionKind.LINK,
                        ActionKind.MERGE,
                    ):
                        assert record is not None
                        gone.append((action, record))
                        continue
                    self.record_graph_result(action, record, result, contacts.get(action.contact_id))
                self.flush()
            _raise_run_stopping_error(results)
        return gone

    def _record_create_intents(
        self, by_request: dict[str, tuple[Action, dict[str, str] | None]], contacts: dict[int, Contact]
    ) -> dict[str, tuple[Action, dict[str, str] | None]]:
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
        with transaction.atomic():
            ContactLink.objects.bulk_create([link for link in links.values() if link.pk is None])
            ContactLink.objects.bulk_update(
                [link for link in links.values() if link.pk is not None],
                ["contact_no", "email", "graph_id", "pending"],
            )
        return {
            request_id: (replace(action, link_id=links[request_id].pk), record)
            if request_id in links
            else (
                action,
                record,
            )
            for request_id, (action, record) in by_request.items()
        }

    def _log_overwrite_intents(
        self, by_request: dict[str, tuple[Action, dict[str, str] | None]], contacts: dict[int, Contact]
    ) -> dict[str, int]:
        """Before Business Central's values go over Outlook's, say so in the log (ids by request id).
        Each entry is replaced by the real one as its $batch lands; it stays only when the run stopped
        in between, when Outlook may have been overwritten with no other trace of its values."""
        intents: dict[str, ActivityLog] = {}
        for request_id, (action, record) in by_request.items():
            if (
                action.outlook is None
                or record is None
                or action.kind
                not in (
                    ActionKind.UPDATE_M365,
                    ActionKind.LINK,
                    ActionKind.MERGE,
                )
            ):
                continue
            overwritten = changed_fields(action.outlook.record, record)
            if not overwritten:
                continue
            contact = contacts.get(action.contact_id) if action.contact_id is not None else None
            intents[request_id] = ActivityLog(
                run=self.run,
                user_id=self.run.user_id,
                contact=contact,
                contact_no=contact.no if contact else "",
                email=contact.email if contact else "",
                graph_id=action.graph_id or "",
                direction=Direction.TO_M365,
                action=_write_action(action),
                outcome=Outcome.PLANNED,
                message=f"{self.label(contact, action)}: Business Central's values were being sent to "
                "Outlook, replacing "
                + ", ".join(f"{k} '{v}'" for k, v in overwritten.items())
                + ", when the run stopped; Outlook may already show Business Central's values.",
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

    def record_graph_result(
        self, action: Action, record: dict[str, str] | None, result: BatchResult, contact: Contact | None
    ) -> None:
        label = self.label(contact, action)
        log = {
            "contact": contact,
            "contact_no": self.deleted_nos.get(action.link_id, "") if action.link_id else "",
            "graph_id": action.graph_id or "",
            "direction": Direction.TO_M365,
        }
        if action.kind == ActionKind.DELETE_IN_M365:
            if result.error is None or isinstance(result.error, ItemNotFound):
                assert action.link_id is not None
                self.pending_links.deleted_ids.append(action.link_id)
                self.log(
                    **log,
                    action="Delete Outlook contact",
                    outcome=Outcome.DELETED,
                    message=f"{label} was removed from the Outlook folder: {action.reason}.",
                )
            else:
                self.log(
                    **log,
                    action="Delete Outlook contact",
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
            self.log(
                **log,
                action=_write_action(action),
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
            self.log(
                **log,
                action=_write_action(action),
                outcome=Outcome.FAILED,
                message=f"Could not write {label} to Outlook; it is tried again next run. {result.error}",
            )
            return
        written = outlook_contact(result.body, self.countries)
        self._save_link(action, contact, record=record, outlook=written)
        outcome, message = self._success(action, label, record)
        details: dict[str, Any] = {}
        if action.outlook is not None and action.kind in (
            ActionKind.UPDATE_M365,
            ActionKind.LINK,
            ActionKind.MERGE,
        ):
            overwritten = changed_fields(action.outlook.record, record)
            if overwritten:
                details["outlook_values_overwritten"] = overwritten
                message += (
                    " Outlook's differing values were replaced: "
                    + ", ".join(f"{k} '{v}'" for k, v in overwritten.items())
                    + "."
                )
        self.log(
            **{**log, "graph_id": written.graph_id},
            action=_write_action(action),
            outcome=outcome,
            message=message,
            details=details,
        )

    def _success(self, action: Action, label: str, record: dict[str, str]) -> tuple[str, str]:
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
        return Outcome.UPDATED, f"{label} was updated in Outlook."

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

    def apply_local_chunk(self, actions: list[Action]) -> None:
        contact_ids = [a.contact_id for a in actions if a.contact_id is not None]
        companies = self._companies_for(actions)
        with transaction.atomic():
            # Read under lock in the writing transaction: an edit made since the plan is either
            # seen here (and kept) or waits for this transaction, never lost in between.
            contacts = Contact.objects.select_for_update().in_bulk(contact_ids)
            for action in actions:
                contact = contacts.get(action.contact_id) if action.contact_id is not None else None
                if action.kind == ActionKind.IMPORT_TO_BC:
                    self._import(action, companies)
                elif action.kind == ActionKind.UPDATE_BC:
                    self._update_bc(action, contact, companies)
                elif action.kind == ActionKind.DETACH:
                    ContactLink.objects.filter(pk=action.link_id).update(detached=True)
                    self._note_outlook_edit(action)
                    self.log(
                        contact=contact,
                        graph_id=action.graph_id or "",
                        direction=Direction.NONE,
                        action="Stop syncing",
                        outcome=Outcome.SKIPPED,
                        message=f"{_contact_label(contact, action)} is {action.reason}.",
                    )
                elif action.kind == ActionKind.DROP_LINK:
                    ContactLink.objects.filter(pk=action.link_id).delete()
                    if action.contact_id in self.kept_imported:  # Business Central keeps it: say why
                        self.log(
                            contact=contact,
                            graph_id=action.graph_id or "",
                            action="Stop syncing",
                            outcome=Outcome.SKIPPED,
                            message=f"{_contact_label(contact, action)} was {action.reason}.",
                        )
                elif action.kind == ActionKind.SKIP:
                    self._skip(action, contact)
            self.flush()

    def take_outlook_fields(self, merges: list[Action]) -> None:
        """The Business Central half of merges: Outlook's fields that only Outlook changed, under
        lock, each merge's contact unchanged since the plan (else Business Central's values win, and
        what they overwrite in Outlook is logged as they are sent). The links keep their last-synced
        records until Outlook has the merged values, so a run stopped in between merges again."""
        companies = self._companies_for(merges)
        with transaction.atomic():
            contacts = Contact.objects.select_for_update().in_bulk([a.contact_id for a in merges])
            for action in merges:
                contact = contacts.get(action.contact_id)
                if contact is None or record_hash(bc_record(contact)) != action.expected_bc_hash:
                    continue
                assert action.outlook is not None and action.from_outlook is not None
                before = bc_record(contact)
                problems = self._apply_record(contact, action.outlook, companies, keys=action.from_outlook)
                contact.save()
                self._log_update_from_outlook(contact, action.outlook, before, problems)
            self.flush()

    def _note_outlook_edit(self, action: Action) -> None:
        """An Outlook edit to a contact outside the scope, logged as not synced: the link records
        Outlook's copy as seen, so the same edit is said once."""
        if action.outlook is not None:
            ContactLink.objects.filter(pk=action.link_id).update(
                m365_hash=record_hash(action.outlook.record),
                m365_synced=action.outlook.record,
                change_key=action.outlook.change_key,
            )

    def _skip(self, action: Action, contact: Contact | None) -> None:
        if action.outlook is not None and action.link_id is not None:
            self._note_outlook_edit(action)
            self.log(
                contact=contact,
                graph_id=action.graph_id or "",
                direction=Direction.TO_BC,
                action="Update from Outlook",
                outcome=Outcome.SKIPPED,
                message=f"{_contact_label(contact, action)} {action.reason}.",
            )
        elif action.outlook is not None:
            self.log(
                graph_id=action.graph_id or "",
                email=action.outlook.record["email"],
                direction=Direction.TO_BC,
                action="Import Outlook contact",
                outcome=Outcome.SKIPPED,
                message=f"Outlook contact '{action.outlook.label}' {action.reason}.",
            )
        else:
            self.log(
                contact=contact,
                direction=Direction.TO_M365,
                action="Send to Outlook",
                outcome=Outcome.SKIPPED,
                message=f"{_contact_label(contact, action)} {action.reason}.",
            )

    def _import(self, action: Action, companies: dict[str, list[Contact]]) -> None:
        item = action.outlook
        assert item is not None
        # Fields Outlook has no counterpart for take the one value the user's filter pins, if any.
        contact = Contact(type=ContactType.PERSON, **pinned_values(filters=self.setup.contact_filter))
        problems = self._apply_record(contact, item, companies)
        contact.save()
        self._link_to_outlook(action, contact, item, imported=True)
        self.log(
            contact=contact,
            graph_id=item.graph_id,
            direction=Direction.TO_BC,
            action="Import Outlook contact",
            outcome=Outcome.CREATED,
            message=f"Outlook contact '{item.label}' was added to Business Central as "
            f"{contact.no}." + _problems_text(problems),
            details=_details(item, problems),
        )

    def _update_bc(
        self, action: Action, contact: Contact | None, companies: dict[str, list[Contact]]
    ) -> None:
        item = action.outlook
        assert item is not None
        if contact is None:
            return  # deleted meanwhile; the next run removes the Outlook copy
        before = bc_record(contact)
        if record_hash(before) != action.expected_bc_hash:
            self._keep_bc_edit(action, contact, item, before)
            return
        problems = self._apply_record(contact, item, companies, keys=action.from_outlook)
        contact.save()
        self._link_to_outlook(action, contact, item)
        self._log_update_from_outlook(contact, item, before, problems)

    def _log_update_from_outlook(
        self, contact: Contact, item: OutlookContact, before: dict[str, str], problems: list[str]
    ) -> None:
        changes = changed_fields(before, bc_record(contact))
        self.log(
            contact=contact,
            graph_id=item.graph_id,
            direction=Direction.TO_BC,
            action="Update from Outlook",
            outcome=Outcome.UPDATED,
            message=f"{contact.no} {contact.name} was updated from Outlook: "
            + (", ".join(_caption(key) for key in changes) or "no field changed")
            + "."
            + _problems_text(problems),
            details={**_details(item, problems), "previous_values": changes},
        )

    def _keep_bc_edit(
        self, action: Action, contact: Contact, item: OutlookContact, record: dict[str, str]
    ) -> None:
        """Both sides changed, Business Central during this run: Business Central wins. Its values go
        out next run; Outlook's, which they will replace, are logged now, as the next run's delta will
        not show them again."""
        ContactLink.objects.filter(pk=action.link_id).update(pending=True, change_key=item.change_key)
        overwritten = changed_fields(item.record, record)
        self.log(
            contact=contact,
            graph_id=item.graph_id,
            direction=Direction.TO_M365,
            action="Update from Outlook",
            outcome=Outcome.SKIPPED,
            message=f"{contact.no} {contact.name} changed on both sides (in Business Central during this "
            "run); Business Central's values win and go to Outlook on the next run, replacing "
            + (", ".join(f"{k} '{v}'" for k, v in overwritten.items()) or "nothing")
            + ".",
            details={"outlook_values_overwritten": overwritten},
        )

    def _link_to_outlook(
        self, action: Action, contact: Contact, item: OutlookContact, *, imported: bool = False
    ) -> None:
        record = bc_record(contact)
        values = {
            "contact": contact,
            "contact_no": contact.no,
            "email": contact.search_email,
            "graph_id": item.graph_id,
            "change_key": item.change_key,
            "bc_hash": record_hash(record),
            "m365_hash": record_hash(item.record),
            "bc_synced": record,
            "m365_synced": item.record,
            "pending": False,
            "synced_at": timezone.now(),
        }
        if action.link_id is not None:
            ContactLink.objects.filter(pk=action.link_id).update(**values)
        else:
            ContactLink.objects.create(setup=self.setup, imported=imported, **values)

    def _apply_record(
        self,
        contact: Contact,
        item: OutlookContact,
        companies: dict[str, list[Contact]],
        *,
        keys: Iterable[str] | None = None,
    ) -> list[str]:
        """Copy Outlook's values onto the contact field by field (only `keys`, when given), as
        Business Central's transfer does: a value Business Central refuses is left out and named,
        the rest still goes in."""
        problems = list(item.problems)
        record = item.record if keys is None else {k: v for k, v in item.record.items() if k in set(keys)}
        for key in (
            "first_name",
            "middle_name",
            "surname",
            "initials",
            "job_title",
            "email_2",
            "home_page",
            "address",
            "address_2",
            "city",
            "post_code",
            "county",
            "name",
            "email",
        ):
            if key in record:
                setattr(contact, key, record[key])
        if "country_region" in record:
            contact.country_region_id = record["country_region"] or None
        for key in ("phone_no", "mobile_phone_no", "fax_no"):
            if key not in record:
                continue
            try:
                phone_validator(record[key])
                setattr(contact, key, record[key])
            except ValidationError:
                problems.append(f"{_caption(key)} '{record[key]}' contains letters; not copied.")
        if normalize_email(contact.email_2) and not is_valid_email(contact.email_2):
            problems.append(f"E-Mail 2 '{contact.email_2}' is not a valid address; not copied.")
            contact.email_2 = ""
        if "company_name" not in record:
            return problems
        name = record["company_name"]
        matches = companies.get(name.casefold(), []) if name else []
        if len(matches) == 1:
            contact.company = matches[0]
        else:
            contact.company = None
            contact.company_name = name
            if len(matches) > 1:
                problems.append(
                    f"The company name '{name}' is not unique in Business Central; Company No. left blank."
                )
        return problems

    def _companies_for(self, actions: list[Action]) -> dict[str, list[Contact]]:
        """The companies named by the actions' Outlook contacts, by lower-case name."""
        return self._companies_named(
            {
                a.outlook.record["company_name"]
                for a in actions
                if a.outlook is not None and a.outlook.record["company_name"]
            }
        )

    def _companies_named(self, names: set[str]) -> dict[str, list[Contact]]:
        found: dict[str, list[Contact]] = {}
        lowered = {n.casefold() for n in names}
        for chunk in _chunks(sorted(names), 500):
            for company in Contact.objects.filter(type=ContactType.COMPANY, name__in=chunk):
                found.setdefault(company.name.casefold(), []).append(company)
        return {k: v for k, v in found.items() if k in lowered}

    # --- preview and logging ---------------------------------------------------------------------

    def log_preview(self, the_plan: Plan) -> None:
        contacts = Contact.objects.in_bulk(
            [a.contact_id for a in the_plan.actions if a.contact_id is not None]
        )
        if the_plan.blocked:
            self.log(action="Mass-delete guard", outcome=Outcome.SKIPPED, message=the_plan.blocked)
        for action in the_plan.actions:
            if action.kind == ActionKind.DROP_LINK:
                continue
            contact = contacts.get(action.contact_id) if action.contact_id is not None else None
            direction = (
                Direction.TO_BC
                if action.kind in (ActionKind.IMPORT_TO_BC, ActionKind.UPDATE_BC)
                else (Direction.TO_M365)
            )
            self.log(
                contact=contact,
                graph_id=action.graph_id or "",
                email=(
                    contact.email if contact else action.outlook.record["email"] if action.outlook else ""
                ),
                direction=direction,
                action=_preview_action(action),
                outcome=Outcome.PLANNED,
                contact_no=self.deleted_nos.get(action.link_id, "") if action.link_id else "",
                message=_preview_message(action, self.label(contact, action)),
            )
            if len(self.pending_logs) >= DB_CHUNK:
                self.flush()
        self.flush()

    def log(
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
    ) -> None:
        self.tally[_count_name(outcome, direction)] += 1
        self.pending_logs.append(
            ActivityLog(
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
        )

    def flush(self) -> None:
        """Write the link changes, log entries and counts so far, and prove the run is alive (heartbeat)."""
        links, self.pending_links = self.pending_links, PendingLinks()
        if links.deleted_ids:
            ContactLink.objects.filter(pk__in=links.deleted_ids).delete()
        if links.failed_ids:
            ContactLink.objects.filter(pk__in=links.failed_ids).update(pending=True)
        if links.outlook_moved_ids:
            ContactLink.objects.filter(pk__in=links.outlook_moved_ids).update(pending=True, change_key="")
        if links.saved:
            ContactLink.objects.bulk_update(links.saved, LINK_FIELDS)
        if links.created:
            # An upsert, as update_or_create was: a link left for this contact is taken over.
            ContactLink.objects.bulk_create(
                links.created,
                update_conflicts=True,
                unique_fields=["setup", "contact"],
                update_fields=LINK_FIELDS,
            )
        ActivityLog.objects.bulk_create(self.pending_logs)
        self.pending_logs = []
        now = timezone.now()
        SyncRun.objects.filter(pk=self.run.pk).update(heartbeat_at=now, **self.counts())
        ContactSyncSetup.objects.filter(pk=self.setup.pk, active_run=self.run).update(claimed_at=now)

    def label(self, contact: Contact | None, action: Action) -> str:
        if contact is None and action.link_id in self.deleted_nos:
            return f"Contact {self.deleted_nos[action.link_id]}"
        return _contact_label(contact, action)

    def counts(self) -> dict[str, int]:
        return {
            **{name: self.tally[name] for name in SyncRun.COUNT_FIELDS},
            "graph_requests": self.client.requests_sent,
        }


class MassDeleteBlocked(Exception):
    pass


# Inner $batch answers that concern the mailbox or the app, not the item: every further request
# would fail the same way, so the run stops (FAILED, watermark and delta link kept) instead of
# logging one failure per contact and reporting success.
RUN_STOPPING_ERRORS = (MailboxNotFound, AccessDenied, InvalidToken)


def _raise_run_stopping_error(results: list[BatchResult]) -> None:
    for result in results:
        if isinstance(result.error, RUN_STOPPING_ERRORS):
            raise result.error


def _bc_contact(contact: Contact, *, with_record: bool) -> BcContact:
    record = bc_record(contact)
    return BcContact(
        contact_id=contact.id,
        no=contact.no,
        email=contact.search_email,
        hash=record_hash(record),
        record=record if with_record else None,
    )


def _countries() -> Countries:
    rows = list(CountryRegion.objects.values_list("code", "name"))
    return Countries(
        codes=frozenset(code for code, _ in rows), code_by_name={name.casefold(): code for code, name in rows}
    )


def _contact_label(contact: Contact | None, action: Action) -> str:
    if contact is not None:
        return f"{contact.no} {contact.name}"
    if action.outlook is not None:
        return f"Outlook contact '{action.outlook.label}'"
    return "The Outlook contact"


def _write_action(action: Action) -> str:
    return {
        ActionKind.CREATE_IN_M365: "Create Outlook contact",
        ActionKind.RECREATE_IN_M365: "Recreate Outlook contact",
        ActionKind.LINK: "Link by email",
    }.get(action.kind, "Update Outlook contact")


def _preview_action(action: Action) -> str:
    return {
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
    }[action.kind]


def _preview_message(action: Action, label: str) -> str:
    text = {
        ActionKind.CREATE_IN_M365: f"{label} would be added to the Outlook folder.",
        ActionKind.UPDATE_M365: f"{label} would be updated in Outlook"
        + (" (changed on both sides; Business Central wins)." if action.conflict else "."),
        ActionKind.RECREATE_IN_M365: f"{label} was deleted in Outlook and would be recreated.",
        ActionKind.DELETE_IN_M365: f"{label} would be removed from the Outlook folder: {action.reason}.",
        ActionKind.LINK: f"{label} would be linked by email to the existing Outlook contact, "
        "Business Central's "
        "values sent.",
        ActionKind.IMPORT_TO_BC: f"{label} would be added to Business Central.",
        ActionKind.UPDATE_BC: f"{label} would be updated from Outlook.",
        ActionKind.MERGE: f"{label} changed on both sides: Outlook's "
        + ", ".join(_caption(key) for key in action.from_outlook or {})
        + " would go to Business Central, then Business Central's values to Outlook"
        + ("; where both changed a field, Business Central wins." if action.conflict else "."),
        ActionKind.DETACH: f"{label} would stop syncing: {action.reason}.",
        ActionKind.SKIP: f"{label} {action.reason}.",
    }[action.kind]
    return text


def _caption(record_key: str) -> str:
    return str(Contact._meta.get_field(record_key).verbose_name)


def _problems_text(problems: list[str]) -> str:
    return (" " + " ".join(problems)) if problems else ""


def _details(item: OutlookContact, problems: list[str]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if item.originals:
        details["original_values"] = item.originals
    if problems:
        details["problems"] = problems
    return details


def _chunks(values: list, size: int) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _in_chunks(values: list, query) -> Iterable:
    """Run `query` over `values` in chunks: SQLite limits the parameters of one statement."""
    for chunk in _chunks(values, 500):
        yield from query(chunk)
