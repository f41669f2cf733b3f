"""Graph JSON for stored contacts and folders."""

from __future__ import annotations

from typing import Any

from .contacts import EMAIL_SLOTS
from .state import Contact, Folder, Mailbox

ALWAYS_SELECTED = ("id",)


def etag(change_key: str) -> str:
    return f'W/"{change_key}"'


def contact_json(
    mailbox: Mailbox,
    contact: Contact,
    immutable: bool,
    select: list[str] | None = None,
    expand: list[str] | None = None,
) -> dict[str, Any]:
    """The contact as Graph returns it: every schema property (nulls, {} and [] included) unless `select`
    narrows it; `expand` lists the canonical extended-property keys asked for with $expand (None: no
    expansion, [] with the $expand present: every stored property).

    The result shares values with the stored contact. That is safe because stored values are replaced,
    never mutated in place, and Graph responses are encoded at once; the Outlook helper deep-copies."""
    emails = contact.props["emailAddresses"]
    result: dict[str, Any] = {
        "@odata.etag": etag(contact.change_key),
        "id": mailbox.item_id(contact.key, contact.folder, immutable),
        "changeKey": contact.change_key,
        "createdDateTime": contact.created,
        "lastModifiedDateTime": contact.modified,
        "parentFolderId": contact.folder.id,
    }
    for index, slot in enumerate(EMAIL_SLOTS):
        result[slot] = emails[index] if index < len(emails) else {}
    result.update(contact.props)
    if select is not None:
        result = {name: result[name] for name in ("@odata.etag", *ALWAYS_SELECTED, *select)}
    if expand is not None:
        result["singleValueExtendedProperties"] = [
            {"id": prop_id, "value": value}
            for key, (prop_id, value) in contact.extended.items()
            if not expand or key in expand
        ]
    return result


def removed_json(contact_id: str) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.contact", "id": contact_id, "@removed": {"reason": "deleted"}}


def folder_json(folder: Folder, select: list[str] | None = None) -> dict[str, Any]:
    full = {"id": folder.id, "displayName": folder.display_name, "parentFolderId": folder.parent_id}
    if select is None:
        return full
    return {name: full[name] for name in [*ALWAYS_SELECTED, *select] if name in full}
