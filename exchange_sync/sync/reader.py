"""Read both sides into a PlanInput: Outlook's changes through Graph delta, then the database's scope,
links and email matches. Nothing here writes, except the log entry of an expired delta link."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from contacts.models import Contact, ContactType, CountryRegion
from exchange_sync.graph import GraphClient, SyncStateExpired
from exchange_sync.models import ContactLink, ContactSyncSetup, Outcome, RunPhase, SyncRun

from .activity_log import RunLog
from .filters import compile_filter, imported_kept_filter
from .mapping import Countries, OutlookContact, bc_record, outlook_contact, record_hash
from .planner import Action, BcContact, BcMatch, LinkState, PlanInput

DELTA_PAGE_SIZE = 1000
# Past this many Business Central contacts modified since the watermark, a Sync reads as usual.
QUIET_CHANGES_LIMIT = 500


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


def load_countries() -> Countries:
    rows = list(CountryRegion.objects.values_list("code", "name"))
    return Countries(
        codes=frozenset(code for code, _ in rows), code_by_name={name.casefold(): code for code, name in rows}
    )


@dataclass
class OutlookRead:
    changed: dict[str, OutlookContact] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    delta_link: str = ""
    whole_folder: bool = False
    change_keys: dict[str, str] = field(default_factory=dict)  # unchanged contacts whose version moved


def read_outlook(
    *,
    client: GraphClient,
    setup: ContactSyncSetup,
    mailbox: str,
    folder_id: str,
    countries: Countries,
    log: RunLog,
    from_scratch: bool,
) -> OutlookRead:
    """What changed in the folder (everything, `from_scratch`); nothing when `folder_id` is ""."""
    where = {
        "client": client,
        "setup": setup,
        "mailbox": mailbox,
        "folder_id": folder_id,
        "countries": countries,
        "log": log,
    }
    # Reading the whole folder, its links say about how many contacts come; a delta does not know.
    log.start_phase(RunPhase.READING_OUTLOOK, total=_link_count(setup) if from_scratch else 0)
    try:
        return _read_delta(**where, delta_link=None if from_scratch else setup.delta_link)
    except SyncStateExpired:
        log.add(
            action="Read Outlook changes",
            outcome=Outcome.SKIPPED,
            message="Microsoft 365 no longer knows the last sync point (the delta link expired); "
            "the whole folder was compared instead.",
        )
        log.start_phase(RunPhase.READING_OUTLOOK, total=_link_count(setup))
        return _read_delta(**where, delta_link=None)


def _link_count(setup: ContactSyncSetup) -> int:
    return ContactLink.objects.filter(setup=setup).count()


def _read_delta(
    *,
    client: GraphClient,
    setup: ContactSyncSetup,
    mailbox: str,
    folder_id: str,
    countries: Countries,
    delta_link: str | None,
    log: RunLog,
) -> OutlookRead:
    read = OutlookRead(whole_folder=delta_link is None)
    if not folder_id:
        return read
    for page in client.delta(
        mailbox=mailbox, folder_id=folder_id, delta_link=delta_link, page_size=DELTA_PAGE_SIZE
    ):
        contacts = [outlook_contact(item, countries) for item in page.changed]
        # Only the links of this page's contacts are read: an empty page reads none, whatever the folder.
        links = {
            graph_id: (m365_hash, change_key)
            for graph_id, m365_hash, change_key in in_chunks(
                [contact.graph_id for contact in contacts],
                lambda ids: ContactLink.objects.filter(setup=setup, graph_id__in=ids).values_list(
                    "graph_id", "m365_hash", "change_key"
                ),
            )
        }
        for contact in contacts:
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
        log.advance(len(page.changed) + len(page.removed_ids))
        log.flush()
    return read


def settings_key(*, setup: ContactSyncSetup) -> str:
    """A fingerprint of the setup's settings that decide what a Sync does: filter, folder, policies."""
    settings = [
        setup.contact_filter,
        setup.out_of_scope_policy,
        setup.existing_folder_policy,
        setup.folder_name,
        setup.folder_id,
        setup.folder_mailbox,
    ]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def nothing_to_sync(*, setup: ContactSyncSetup, outlook: OutlookRead) -> bool:
    """Whether a Sync after this read of Outlook would plan nothing, asked in a few indexed queries
    that read no more rows when the folder grows: it would plan nothing when Outlook reported no
    change, the last run left nothing to try again under the same settings (`settled_key`), no link
    waits for a retry (pending: a failed write, a create not yet answered, a match not yet sent) or
    points at a contact deleted in Business Central, and no Business Central contact that is, or may
    be, in scope or linked was modified since the watermark (saving a company renames its persons'
    Company Name through a stamped update, so they count as modified)."""
    if outlook.whole_folder or outlook.seen or outlook.removed:
        return False
    if setup.watermark is None or not setup.settled_key or setup.settled_key != settings_key(setup=setup):
        return False
    links = ContactLink.objects.filter(setup=setup)
    if links.filter(pending=True).exists() or links.filter(contact__isnull=True).exists():
        return False
    changed = list(
        Contact.objects.filter(last_modified__gte=setup.watermark)
        .order_by()
        .values_list("id", flat=True)[: QUIET_CHANGES_LIMIT + 1]
    )
    if len(changed) > QUIET_CHANGES_LIMIT:
        return False
    # The filter alone, not scope_queryset(): the contacts in scope only as imports are linked.
    selected = (
        Contact.objects.filter(id__in=changed, type=ContactType.PERSON, privacy_blocked=False)
        .exclude(email="")
        .filter(compile_filter(filters=setup.contact_filter))
    )
    return not changed or not (selected.exists() or links.filter(contact_id__in=changed).exists())


def read_plan_input(
    *, setup: ContactSyncSetup, run: SyncRun, outlook: OutlookRead, full: bool
) -> tuple[PlanInput, dict[int, str]]:
    """The planner's input, and the Nos. of the linked contacts deleted in Business Central (by link
    id): the link keeps the No., so the log can say which one left the folder."""
    scope = scope_queryset(setup)
    rows = list(
        ContactLink.objects.filter(setup=setup).values_list(
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
        for graph_id, bc_synced, m365_synced in in_chunks(
            sorted(outlook.changed),
            lambda ids: ContactLink.objects.filter(setup=setup, graph_id__in=ids).values_list(
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
    deleted_nos = {row[0]: row[7] for row in rows if row[1] is None and row[7]}
    in_scope = set(scope.values_list("id", flat=True))
    kept_imported: set[int] = set()
    if ContactLink.objects.filter(setup=setup, imported=True).exists():
        by_filter = scope.filter(compile_filter(filters=setup.contact_filter))
        kept_imported = in_scope - set(by_filter.values_list("id", flat=True))
    linked_out_of_scope = [lk.contact_id for lk in links if lk.contact_id and lk.contact_id not in in_scope]
    privacy_blocked = set(
        in_chunks(
            linked_out_of_scope,
            lambda ids: Contact.objects.filter(id__in=ids, privacy_blocked=True).values_list("id", flat=True),
        )
    )
    linked_ids = ContactLink.objects.filter(setup=setup, contact__isnull=False)
    candidates = scope
    if not full:
        # Changed since the last successful run started, never linked, or waiting for a retry.
        watermark = setup.watermark or datetime.min.replace(tzinfo=timezone.utc)
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
    plan_input = PlanInput(
        links=links,
        in_scope=in_scope,
        kept_imported=kept_imported,
        privacy_blocked=privacy_blocked,
        bc=bc,
        outlook=outlook.changed,
        seen=outlook.seen,
        removed=outlook.removed,
        whole_folder=outlook.whole_folder,
        bc_matches=_bc_matches(outlook, {lk.graph_id for lk in links}),
        linked_emails=linked_emails,
        remove_out_of_scope=setup.out_of_scope_policy == "remove",
        allow_mass_delete=run.allow_mass_delete,
    )
    return plan_input, deleted_nos


def outlook_values_before(*, actions: list[Action]) -> dict[int, dict[str, str]]:
    """What Outlook holds of the linked contacts these actions overwrite, by link id, so the log can
    name the fields a write changes: the values read this run, else those last sent (Outlook's copy
    has not changed since; a link synced before they were kept has none)."""
    unread = [a.link_id for a in actions if a.link_id is not None and a.outlook is None]
    rows = in_chunks(
        unread, lambda ids: ContactLink.objects.filter(pk__in=ids).values_list("pk", "bc_synced")
    )
    read = {a.link_id: a.outlook.record for a in actions if a.link_id is not None and a.outlook is not None}
    return {link_id: sent for link_id, sent in rows if sent is not None} | read


def _bc_contact(contact: Contact, *, with_record: bool) -> BcContact:
    record = bc_record(contact)
    return BcContact(
        contact_id=contact.id,
        no=contact.no,
        email=contact.search_email,
        hash=record_hash(record),
        record=record if with_record else None,
    )


def _bc_matches(outlook: OutlookRead, linked: set[str]) -> dict[str, list[BcMatch]]:
    emails = sorted({c.email for gid, c in outlook.changed.items() if gid not in linked and c.email})
    matches: dict[str, list[BcMatch]] = {}
    rows = in_chunks(
        emails,
        lambda chunk: (
            Contact.objects.persons()
            .filter(search_email__in=chunk)
            .order_by("no")
            .values_list("id", "no", "search_email", "privacy_blocked")
        ),
    )
    for contact_id, no, email, blocked in rows:
        matches.setdefault(email, []).append(BcMatch(contact_id=contact_id, no=no, privacy_blocked=blocked))
    return matches


def chunks(values: list, size: int) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def in_chunks(values: list, query) -> Iterable:
    """Run `query` over `values` in chunks: SQLite limits the parameters of one statement."""
    for chunk in chunks(values, 500):
        yield from query(chunk)
