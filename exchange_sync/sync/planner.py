"""Decide a sync, without touching the network or the database.

`plan()` takes what the engine read from both sides and the links of the last sync, and returns the
actions that make them agree, under Business Central's rules:

- only in-scope persons go to Outlook; from Outlook come only contacts with a name and an email;
- a contact changed on one side takes that side's changed fields; when both sides changed it, the
  fields are merged one by one against what was last synced: a field only Outlook changed goes to
  Business Central, a field only Business Central changed goes to Outlook, and a field both changed
  keeps Business Central's value (Outlook's is logged). A link synced before the last-synced values
  were kept, or one coming back into scope, has nothing to merge against: Business Central wins;
- an Outlook change to a contact outside the scope is not synced, and the plan says so;
- a linked contact deleted in Outlook while still in scope is recreated, unless it is in scope only
  because it was imported from the folder (outside the filter): then it stops syncing;
- the link (Graph immutable id) is the identity; unlinked contacts are matched by normalised email
  before anything is created, lowest No. first;
- a contact deleted in Business Central is deleted from the folder; one that leaves the scope is
  detached (policy "keep") or removed (policy "remove", and always when privacy blocked);
- a plan that deletes more than max(20, 30 %) of the folder is blocked unless allowed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Set
from dataclasses import dataclass, field

from .mapping import OutlookContact, record_hash

# The graph_id of a link written just before a create is sent to Outlook, until its answer is recorded.
# A link still holding one after a run stopped may have a copy in Outlook that nothing points at.
CREATING = "creating:"
MASS_DELETE_MINIMUM = 20
MASS_DELETE_SHARE = 0.30


class ActionKind(enum.StrEnum):
    CREATE_IN_M365 = "create_in_m365"
    UPDATE_M365 = "update_m365"
    RECREATE_IN_M365 = "recreate_in_m365"
    DELETE_IN_M365 = "delete_in_m365"
    LINK = "link"  # matched by email: link them, then Business Central's values go to Outlook
    MERGE = "merge"  # both sides changed: Outlook's fields go to Business Central, then all to Outlook
    IMPORT_TO_BC = "import_to_bc"
    UPDATE_BC = "update_bc"
    DETACH = "detach"  # left the scope, Outlook copy kept: stop syncing it
    DROP_LINK = "drop_link"  # nothing left to sync on either side
    SKIP = "skip"


@dataclass(frozen=True)
class LinkState:
    link_id: int
    contact_id: int | None  # None: the Business Central contact was deleted
    graph_id: str
    bc_hash: str
    m365_hash: str
    detached: bool = False
    pending: bool = False  # the last push failed: send Business Central's values again
    change_key: str = ""  # Outlook's version of the contact as we last wrote or read it
    email: str = ""  # the contact's normalised email when linked (kept when the contact is deleted)
    # Each side's record as last synced (bc_hash and m365_hash are their hashes), to tell which fields
    # changed. None for a link synced before they were kept, and where the reader did not load them
    # (Outlook's copy did not change).
    bc_synced: Mapping[str, str] | None = None
    m365_synced: Mapping[str, str] | None = None


@dataclass(frozen=True)
class BcContact:
    contact_id: int
    no: str
    email: str  # normalised
    hash: str
    record: Mapping[str, str] | None = None  # given where Outlook's copy changed too, for a merge


@dataclass(frozen=True)
class BcMatch:
    """A Business Central person whose email an unlinked Outlook contact carries."""

    contact_id: int
    no: str
    privacy_blocked: bool


@dataclass
class PlanInput:
    links: list[LinkState]
    in_scope: Set[int]  # every contact id in scope now
    privacy_blocked: Set[int]  # linked contact ids that are privacy blocked now
    bc: Mapping[int, BcContact]  # Business Central contacts to compare (changed, unlinked, or all)
    outlook: Mapping[str, OutlookContact]  # Outlook contacts that changed or are not linked
    seen: Set[str] = frozenset()  # every Graph id read this run, changed or not
    removed: Set[str] = frozenset()  # Graph ids reported deleted
    whole_folder: bool = False  # the whole folder was read: linked ids not seen are gone
    # In scope only because they were imported from this folder: the filter does not select them.
    kept_imported: Set[int] = frozenset()
    bc_matches: Mapping[str, list[BcMatch]] = field(default_factory=dict)  # email -> persons, by No.
    linked_emails: Mapping[str, str] = field(default_factory=dict)  # email of a linked contact -> its No.
    remove_out_of_scope: bool = False
    allow_mass_delete: bool = False


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    contact_id: int | None = None
    graph_id: str | None = None
    link_id: int | None = None
    outlook: OutlookContact | None = None
    reason: str = ""
    conflict: bool = False  # both sides changed a field: Business Central's value overwrites Outlook's
    # UPDATE_BC and MERGE: the Outlook values Business Central takes, by record field. None for
    # UPDATE_BC of a link with no last-synced values: the whole Outlook record is taken.
    from_outlook: Mapping[str, str] | None = None
    # UPDATE_M365 and MERGE after a per-field merge: the Outlook values Business Central overrules
    # (fields both sides changed). None without a merge: every differing Outlook value is overruled.
    overruled: Mapping[str, str] | None = None
    # What the action assumes of the other side when it is applied, so an edit made while the run
    # is going is never overwritten unseen: Outlook's change key for a write to Outlook (If-Match),
    # and Business Central's hash for a write to Business Central.
    change_key: str = ""
    expected_bc_hash: str = ""


@dataclass
class Plan:
    actions: list[Action]
    folder_size: int
    blocked: str = ""  # why nothing may be written (mass-delete guard)

    def of(self, kind: ActionKind) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]

    @property
    def deletes(self) -> int:
        return len(self.of(ActionKind.DELETE_IN_M365))


class MassDeleteBlocked(Exception):
    """A plan's deletes exceed the mass-delete guard; nothing was written. The message says why."""


def plan(state: PlanInput) -> Plan:
    actions: list[Action] = []
    linked_contacts: set[int] = set()
    linked_graph_ids = {link.graph_id for link in state.links}
    unlinked_items = _index_unlinked_items(state, linked_graph_ids)
    for link in state.links:
        if link.contact_id is not None:
            linked_contacts.add(link.contact_id)
        actions.extend(_plan_link(state, link, unlinked_items))

    taken_emails = dict(state.linked_emails)
    for bc in sorted(
        (
            b
            for b in state.bc.values()
            if b.contact_id in state.in_scope and b.contact_id not in linked_contacts
        ),
        key=lambda b: b.no,
    ):
        if bc.email in taken_emails:
            actions.append(
                Action(
                    ActionKind.SKIP,
                    contact_id=bc.contact_id,
                    reason=f"shares its email with {taken_emails[bc.email]}, which is synced; "
                    "not sent to Outlook",
                )
            )
            continue
        taken_emails[bc.email] = bc.no
        matches = unlinked_items.pop(bc.email, [])
        if not matches:
            actions.append(Action(ActionKind.CREATE_IN_M365, contact_id=bc.contact_id))
            continue
        first, *others = matches
        actions.append(
            Action(
                ActionKind.LINK,
                contact_id=bc.contact_id,
                graph_id=first.graph_id,
                outlook=first,
                change_key=first.change_key,
            )
        )
        actions.extend(
            Action(
                ActionKind.SKIP,
                graph_id=other.graph_id,
                outlook=other,
                reason=f"has the same email as the Outlook contact linked to {bc.no}; not imported",
            )
            for other in others
        )

    for email, items in unlinked_items.items():
        actions.extend(_plan_unlinked_outlook(state, email, items, taken_emails))
    for item in state.outlook.values():
        if item.graph_id not in linked_graph_ids and not item.has_valid_email:
            reason = f"{_why_not_importable(item)}; not imported"
            actions.append(Action(ActionKind.SKIP, graph_id=item.graph_id, outlook=item, reason=reason))

    folder_size = sum(1 for link in state.links if not link.detached)
    result = Plan(actions=actions, folder_size=folder_size)
    limit = max(MASS_DELETE_MINIMUM, MASS_DELETE_SHARE * folder_size)
    if result.deletes > limit and not state.allow_mass_delete:
        result.blocked = (
            f"This run would delete {result.deletes} of the {folder_size} contacts in the Outlook folder, "
            f"more than max({MASS_DELETE_MINIMUM}, {MASS_DELETE_SHARE:.0%}) allows. Nothing was written. "
            "Check the Preview, "
            "then run Full Sync allowing mass deletion to confirm."
        )
    return result


def _plan_link(
    state: PlanInput, link: LinkState, unlinked_items: dict[str, list[OutlookContact]]
) -> list[Action]:
    item = state.outlook.get(link.graph_id)
    gone_in_outlook = link.graph_id in state.removed or (
        state.whole_folder and link.graph_id not in state.seen
    )
    here = {"contact_id": link.contact_id, "graph_id": link.graph_id, "link_id": link.link_id}
    if link.graph_id.startswith(CREATING):
        return _plan_unfinished_create(state, link, unlinked_items)
    if link.contact_id is None:
        if gone_in_outlook:
            return [Action(ActionKind.DROP_LINK, **here, reason="deleted on both sides")]
        return [Action(ActionKind.DELETE_IN_M365, **here, reason="deleted in Business Central")]

    if link.contact_id not in state.in_scope:
        if gone_in_outlook:
            return [Action(ActionKind.DROP_LINK, **here, reason="out of scope and deleted in Outlook")]
        if link.contact_id in state.privacy_blocked:  # even when detached: no personal data left behind
            return [Action(ActionKind.DELETE_IN_M365, **here, reason="privacy blocked in Business Central")]
        if state.remove_out_of_scope and not link.detached:
            return [Action(ActionKind.DELETE_IN_M365, **here, reason="no longer in the sync filter")]
        # An Outlook edit to a contact outside the scope is not applied, and says so (once per edit).
        edited = item if item is not None and record_hash(item.record) != link.m365_hash else None
        if link.detached:
            if edited is None:
                return []
            return [
                Action(
                    ActionKind.SKIP,
                    **here,
                    outlook=edited,
                    reason="was changed in Outlook, but it is outside your filter: not synced",
                )
            ]
        reason = "no longer in scope; the Outlook copy is kept"
        if edited is not None:
            reason += ", and its Outlook changes are not synced"
        return [Action(ActionKind.DETACH, **here, outlook=edited, reason=reason)]

    if gone_in_outlook and link.contact_id in state.kept_imported:
        # Added in Outlook, outside the filter, and now deleted there: it is not brought back.
        return [
            Action(
                ActionKind.DROP_LINK,
                **here,
                reason="deleted in Outlook, where it was added; outside your filter, so not recreated",
            )
        ]
    if gone_in_outlook:
        return [Action(ActionKind.RECREATE_IN_M365, **here, reason="deleted in Outlook")]
    bc = state.bc.get(link.contact_id)
    bc_changed = link.detached or link.pending or (bc is not None and bc.hash != link.bc_hash)
    outlook_changed = item is not None and record_hash(item.record) != link.m365_hash
    change_key = item.change_key if item is not None else link.change_key
    if outlook_changed and not _importable(item):
        # Business Central must not lose its Name or E-Mail to a bad Outlook edit.
        return [
            Action(
                ActionKind.UPDATE_M365,
                **here,
                outlook=item,
                change_key=change_key,
                reason=f"the Outlook copy {_why_not_importable(item)}; "
                "Business Central's values were restored",
            )
        ]
    if bc_changed:
        merge = _merge(link, bc, item) if outlook_changed else None
        if merge is not None and merge.from_outlook:
            # Both sides changed, and Outlook changed fields Business Central did not: they are kept.
            assert bc is not None
            return [
                Action(
                    ActionKind.MERGE,
                    **here,
                    outlook=item,
                    conflict=bool(merge.conflicts),
                    change_key=change_key,
                    from_outlook=merge.from_outlook,
                    overruled=merge.conflicts,
                    expected_bc_hash=bc.hash,
                )
            ]
        conflict = bool(merge.conflicts) if merge is not None else outlook_changed
        overruled = merge.conflicts if merge is not None else None
        return [
            Action(
                ActionKind.UPDATE_M365,
                **here,
                outlook=item,
                conflict=conflict,
                change_key=change_key,
                overruled=overruled,
            )
        ]
    if outlook_changed:
        assert item is not None
        return [
            Action(
                ActionKind.UPDATE_BC,
                **here,
                outlook=item,
                from_outlook=_changed_in(item.record, link.m365_synced),
                expected_bc_hash=link.bc_hash,
            )
        ]
    return []


@dataclass(frozen=True)
class FieldMerge:
    from_outlook: dict[str, str]  # fields only Outlook changed: Outlook's values
    conflicts: dict[str, str]  # fields both changed, to different values: Outlook's values, overruled


def merge_fields(
    *,
    bc_synced: Mapping[str, str],
    bc_now: Mapping[str, str],
    m365_synced: Mapping[str, str],
    outlook_now: Mapping[str, str],
) -> FieldMerge:
    """A three-way merge per field, each side against its own record as last synced (the two may
    differ where a value reads back differently from Outlook, so neither side is compared with the
    other's old values)."""
    from_outlook: dict[str, str] = {}
    conflicts: dict[str, str] = {}
    for key in _changed_in(outlook_now, m365_synced) or {}:
        value = outlook_now[key]
        if value == bc_now.get(key):
            continue  # both sides already hold it
        if bc_now.get(key) != bc_synced.get(key):
            conflicts[key] = value
        else:
            from_outlook[key] = value
    return FieldMerge(from_outlook=from_outlook, conflicts=conflicts)


def _merge(link: LinkState, bc: BcContact | None, item: OutlookContact | None) -> FieldMerge | None:
    """The per-field merge of a contact changed on both sides, or None when there is nothing to merge
    against: the link predates the last-synced values, or the contact comes back into scope (its
    Outlook copy was not synced meanwhile, so Business Central's values are restored whole)."""
    if (
        link.detached
        or item is None
        or bc is None
        or bc.record is None
        or link.bc_synced is None
        or link.m365_synced is None
    ):
        return None
    return merge_fields(
        bc_synced=link.bc_synced, bc_now=bc.record, m365_synced=link.m365_synced, outlook_now=item.record
    )


def _changed_in(record: Mapping[str, str], synced: Mapping[str, str] | None) -> dict[str, str] | None:
    """The fields of `record` that differ from `synced`, with their new values (None: not known).
    A field `synced` lacks (Fax No., which Outlook's delta does not return) is not compared."""
    if synced is None:
        return None
    return {key: value for key, value in record.items() if key in synced and synced[key] != value}


def _importable(item: OutlookContact | None) -> bool:
    return item is None or (item.has_valid_email and bool(item.record["name"]))


def _plan_unfinished_create(
    state: PlanInput, link: LinkState, unlinked_items: dict[str, list[OutlookContact]]
) -> list[Action]:
    """A create whose answer was never recorded (the run stopped). Its copy, if Outlook made one,
    is an unlinked contact with the link's email: link it while the contact is still wanted,
    delete it when the contact has since been deleted or left the scope; never import it back."""
    wanted = link.contact_id is not None and link.contact_id in state.in_scope
    copies = unlinked_items.pop(link.email, []) if link.email else []
    first, others = (copies[0], copies[1:]) if copies else (None, [])
    duplicates = [
        Action(
            ActionKind.SKIP,
            graph_id=other.graph_id,
            outlook=other,
            reason="has the same email as another Outlook contact in the folder; not imported",
        )
        for other in others
    ]
    here = {"contact_id": link.contact_id, "link_id": link.link_id}
    if first is None:
        if wanted:
            return [Action(ActionKind.CREATE_IN_M365, **here)]
        return [Action(ActionKind.DROP_LINK, **here, reason="its create never reached Outlook")]
    if wanted:
        action = Action(
            ActionKind.LINK, **here, graph_id=first.graph_id, outlook=first, change_key=first.change_key
        )
    else:
        action = Action(
            ActionKind.DELETE_IN_M365,
            **here,
            graph_id=first.graph_id,
            reason="a stopped run had created it, and the contact has since left Business Central's scope",
        )
    return [action, *duplicates]


def _why_not_importable(item: OutlookContact) -> str:
    if not item.email:
        return "has no email address"
    if not item.has_valid_email:
        return f"has an email address Business Central cannot use ('{item.record['email']}')"
    return "has no name"


def _index_unlinked_items(state: PlanInput, linked_graph_ids: set[str]) -> dict[str, list[OutlookContact]]:
    by_email: dict[str, list[OutlookContact]] = {}
    for item in sorted(state.outlook.values(), key=lambda i: i.graph_id):
        if item.graph_id not in linked_graph_ids and item.has_valid_email:
            by_email.setdefault(item.email, []).append(item)
    return by_email


def _plan_unlinked_outlook(
    state: PlanInput, email: str, items: list[OutlookContact], taken_emails: Mapping[str, str]
) -> list[Action]:
    first, *others = items
    actions = [
        Action(
            ActionKind.SKIP,
            graph_id=other.graph_id,
            outlook=other,
            reason="has the same email as another Outlook contact in the folder; not imported",
        )
        for other in others
    ]
    matches = state.bc_matches.get(email, [])
    usable = sorted(matches, key=lambda m: (m.privacy_blocked, m.no))
    if email in taken_emails:
        reason = f"has the email of {taken_emails[email]}, synced with another Outlook contact; not imported"
    elif not first.record["name"]:
        reason = "has no name; not imported"
    elif not usable:
        return [*actions, Action(ActionKind.IMPORT_TO_BC, graph_id=first.graph_id, outlook=first)]
    elif usable[0].privacy_blocked:
        reason = f"matches {usable[0].no}, which is privacy blocked; not imported"
    else:
        reason = f"matches {usable[0].no}, which is outside your sync filter; not imported"
    return [*actions, Action(ActionKind.SKIP, graph_id=first.graph_id, outlook=first, reason=reason)]
