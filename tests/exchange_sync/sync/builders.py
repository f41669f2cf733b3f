"""Small builders for planner and mapping tests: plain values, no database, no network.

Outlook contacts are always built through `outlook_contact(graph_item(...), COUNTRIES)`, so every
planner test also runs the Graph -> record mapping.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from exchange_sync.sync.mapping import Countries, OutlookContact, outlook_contact, record_hash
from exchange_sync.sync.planner import ActionKind, BcContact, BcMatch, LinkState, Plan, PlanInput

COUNTRIES = Countries(
    codes=frozenset({"DK", "GB", "US", "FR", "DE"}),
    code_by_name={"denmark": "DK", "united kingdom": "GB", "united states": "US", "france": "FR"},
)

_UNSET: Any = object()


def no(contact_id: int) -> str:
    """Business Central's contact No. for an id: CT000001, CT000002, ..."""
    return f"CT{contact_id:06d}"


def email_of(contact_id: int) -> str:
    return f"person{contact_id}@example.com"


def graph_item(
    graph_id: str,
    *,
    name: str = "Ann Lee",
    email: str | None = _UNSET,
    **fields: Any,
) -> dict[str, Any]:
    """A Graph contact as Graph returns it. `email=None` or "" leaves emailAddresses empty."""
    if email is _UNSET:
        email = f"{graph_id}@example.com"
    item: dict[str, Any] = {
        "id": graph_id,
        "changeKey": f"ck-{graph_id}",
        "displayName": name,
        "emailAddresses": [{"address": email, "name": name}] if email else [],
    }
    item.update(fields)
    return item


def outlook(graph_id: str, **kwargs: Any) -> OutlookContact:
    return outlook_contact(graph_item(graph_id, **kwargs), COUNTRIES)


def bc(
    contact_id: int, *, email: str | None = None, version: int = 1, record: dict[str, str] | None = None
) -> BcContact:
    """A Business Central contact at a given version (its hash changes with the version), with its
    record when a merge needs it."""
    return BcContact(
        contact_id=contact_id,
        no=no(contact_id),
        email=email if email is not None else email_of(contact_id),
        hash=f"bc-{contact_id}-v{version}",
        record=record,
    )


def link(
    link_id: int,
    contact_id: int | None,
    graph_id: str,
    *,
    bc_version: int = 1,
    synced_item: OutlookContact | None = None,
    detached: bool = False,
    pending: bool = False,
    bc_synced: dict[str, str] | None = None,
    with_synced_records: bool = False,
) -> LinkState:
    """A link as the last sync left it: BC at `bc_version`, Outlook as `synced_item` (or a default
    item with the contact's email). `with_synced_records` keeps both sides' records as a sync since
    the per-field merge does: Outlook's as `synced_item`, Business Central's as `bc_synced`."""
    if synced_item is None:
        synced_item = outlook(graph_id, email=email_of(contact_id or 0))
    return LinkState(
        link_id=link_id,
        contact_id=contact_id,
        graph_id=graph_id,
        bc_hash=f"bc-{contact_id}-v{bc_version}",
        m365_hash=record_hash(synced_item.record),
        detached=detached,
        pending=pending,
        bc_synced=bc_synced if with_synced_records else None,
        m365_synced=dict(synced_item.record) if with_synced_records else None,
    )


def match(contact_id: int, *, privacy_blocked: bool = False) -> BcMatch:
    return BcMatch(contact_id=contact_id, no=no(contact_id), privacy_blocked=privacy_blocked)


def given(
    *,
    links: Iterable[LinkState] = (),
    in_scope: Iterable[int] = (),
    bc: Iterable[BcContact] = (),
    outlook: Iterable[OutlookContact] = (),
    seen: Iterable[str] = (),
    removed: Iterable[str] = (),
    bc_matches: dict[str, list[BcMatch]] | None = None,
    **kwargs: Any,
) -> PlanInput:
    return PlanInput(
        links=list(links),
        in_scope=frozenset(in_scope),
        privacy_blocked=frozenset(kwargs.pop("privacy_blocked", ())),
        bc={c.contact_id: c for c in bc},
        outlook={o.graph_id: o for o in outlook},
        seen=frozenset(seen),
        removed=frozenset(removed),
        bc_matches=bc_matches or {},
        **kwargs,
    )


def actions(result: Plan) -> list[tuple[ActionKind, int | None, str | None]]:
    """The plan as (kind, contact id, graph id), in plan order."""
    return [(a.kind, a.contact_id, a.graph_id) for a in result.actions]


def only(result: Plan):
    """The plan's single action."""
    assert len(result.actions) == 1, result.actions
    return result.actions[0]
