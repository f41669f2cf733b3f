"""Mailboxes, folders and contacts in memory, plus the change journal delta reads.

Every mutation goes through the functions here, whether a Graph request, the Outlook back door or the
HTML page asked for it, so change keys, timestamps and the journal behave the same for all of them.
Callers hold Store.lock; writers take it with `with store.change():`. Lookups by id are dict hits; each
folder keeps its members in insertion order (an append-only list with lazily purged tombstones) so
paging never copies a whole folder.
"""

from __future__ import annotations

import base64
import bisect
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from . import ids
from .contacts import apply_changes, blank_props, now_iso
from .errors import GraphError, not_found_item

ROOT_FOLDER_NAME = "Contacts"
_COMPACT_MIN_DEAD = 256


def new_change_key() -> str:
    # Outlook change keys are base64 blobs starting with the same few bytes.
    return "EQAAABYAAAA" + base64.b64encode(secrets.token_bytes(12)).decode("ascii")


class ContactEvent(NamedTuple):
    """One contact write as change notifications see it: which folder, which item, what happened."""

    mailbox: Mailbox
    folder: Folder
    key: str  # immutable id
    change_type: str  # "created" | "updated" | "deleted"
    change_key: str


@dataclass
class Subscription:
    """A Graph change-notification subscription on one mailbox folder's contacts."""

    id: str
    resource: str  # as the client sent it
    user: str  # the user segment as the client wrote it (the notification's resource repeats it)
    upn: str  # lower-case mailbox key
    folder_id: str
    change_types: list[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: float  # epoch seconds
    tls_version: str
    application_id: str
    creator_id: str
    immutable: bool
    needs_reauthorization: bool = False


class Contact:
    __slots__ = ("change_key", "created", "extended", "folder", "item", "key", "modified", "props")

    def __init__(self, key: str, item: bytes, folder: Folder, props: dict[str, Any]) -> None:
        self.key = key  # the immutable id
        self.item = item
        self.folder = folder
        self.props = props
        self.extended: dict[str, tuple[str, str]] = {}  # canonical key -> (id as sent, value)
        self.change_key = new_change_key()
        self.created = now_iso()
        self.modified = self.created

    def emails(self) -> set[str]:
        return {(entry.get("address") or "").lower() for entry in self.props["emailAddresses"]} - {""}


class Folder:
    __slots__ = (
        "dead",
        "display_name",
        "emails",
        "id",
        "journal_keys",
        "journal_seqs",
        "key",
        "members",
        "order",
        "parent_id",
    )

    def __init__(self, folder_id: str, key: bytes, display_name: str, parent_id: str | None) -> None:
        self.id = folder_id
        self.key = key
        self.display_name = display_name
        self.parent_id = parent_id
        self.members: dict[str, int] = {}  # contact key -> sequence number it joined the folder with
        self.order: list[tuple[int, str]] = []  # (join seq, key), ascending; may hold dead entries
        self.dead = 0
        self.journal_seqs: list[int] = []  # every write touching the folder: (seq, contact key)
        self.journal_keys: list[str] = []
        self.emails: dict[str, set[str]] = {}  # lower-case address -> contact keys, for $filter

    def __len__(self) -> int:
        return len(self.members)

    def add(self, contact: Contact, seq: int) -> None:
        self.members[contact.key] = seq
        self.order.append((seq, contact.key))
        self.index(contact)

    def remove(self, contact: Contact) -> None:
        del self.members[contact.key]
        self.unindex(contact)
        self.dead += 1
        if self.dead > _COMPACT_MIN_DEAD and self.dead * 2 > len(self.order):
            self.order = [(seq, key) for seq, key in self.order if self.members.get(key) == seq]
            self.dead = 0

    def index(self, contact: Contact) -> None:
        for address in contact.emails():
            self.emails.setdefault(address, set()).add(contact.key)

    def unindex(self, contact: Contact) -> None:
        for address in contact.emails():
            keys = self.emails.get(address)
            if keys is not None:
                keys.discard(contact.key)
                if not keys:
                    del self.emails[address]

    def keys_after(self, join_seq: int) -> Iterator[tuple[int, str]]:
        """Live members that joined after `join_seq`, oldest first."""
        start = bisect.bisect_right(self.order, join_seq, key=lambda entry: entry[0])
        for index in range(start, len(self.order)):
            seq, key = self.order[index]
            if self.members.get(key) == seq:
                yield seq, key

    def record(self, seq: int, key: str) -> None:
        self.journal_seqs.append(seq)
        self.journal_keys.append(key)

    def changed_keys(self, after_seq: int, up_to_seq: int) -> list[str]:
        """Keys written in (after_seq, up_to_seq], each once, ordered by its last write."""
        start = bisect.bisect_right(self.journal_seqs, after_seq)
        end = bisect.bisect_right(self.journal_seqs, up_to_seq)
        latest: dict[str, None] = {}
        for key in self.journal_keys[start:end]:
            latest.pop(key, None)
            latest[key] = None
        return list(latest)


class Mailbox:
    def __init__(self, upn: str, key: bytes, rest_enabled: bool = True) -> None:
        self.upn = upn
        self.key = key
        self.rest_enabled = rest_enabled
        self.seq = 0
        self.folders: dict[str, Folder] = {}
        self.contacts: dict[str, Contact] = {}
        self.root = self._new_folder(ROOT_FOLDER_NAME, None)
        self.events: list[ContactEvent] = []  # the Store's shared list, once the Store adopts the mailbox

    def _new_folder(self, display_name: str, parent_id: str | None) -> Folder:
        key = ids.new_key()
        folder = Folder(ids.folder_id(self.key, key), key, display_name, parent_id)
        self.folders[folder.id] = folder
        return folder

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # ---- lookups -------------------------------------------------------------------------------------

    def folder(self, folder_id: str) -> Folder:
        folder = self.folders.get(folder_id)
        if folder is None:
            ids.check_folder_id(folder_id)
            raise not_found_item()
        return folder

    def folder_by_name_or_id(self, name_or_id: str) -> Folder:
        if name_or_id in self.folders:
            return self.folders[name_or_id]
        for folder in self.folders.values():
            if folder.display_name.lower() == name_or_id.lower():
                return folder
        raise not_found_item()

    def child_folders(self, parent: Folder) -> list[Folder]:
        return [folder for folder in self.folders.values() if folder.parent_id == parent.id]

    def contact(self, item_id: str, folder: Folder | None = None) -> Contact:
        """The contact behind an immutable or regular id; a regular id of a moved item no longer resolves."""
        ref = ids.parse_item_id(item_id)
        contact = (
            self.contacts.get(ref.immutable) if ref is not None and ref.mailbox_key == self.key else None
        )
        if contact is None or (ref.folder_key is not None and ref.folder_key != contact.folder.key):
            raise not_found_item()
        if folder is not None and contact.folder is not folder:
            raise not_found_item()
        return contact

    def item_id(self, contact_key: str, folder: Folder, immutable: bool) -> str:
        if immutable:
            return contact_key
        ref = ids.parse_item_id(contact_key)
        assert ref is not None
        return ids.regular_id(self.key, folder.key, ref.item)

    # ---- mutations -----------------------------------------------------------------------------------

    def create_folder(self, display_name: str, parent: Folder) -> Folder:
        if not display_name.strip():
            raise GraphError(400, "ErrorInvalidRequest", "The folder display name cannot be empty.")
        if any(f.display_name.lower() == display_name.lower() for f in self.child_folders(parent)):
            raise GraphError(400, "ErrorFolderExists", "A folder with the specified name already exists.")
        return self._new_folder(display_name, parent.id)

    def rename_folder(self, folder: Folder, display_name: str) -> None:
        siblings = self.child_folders(self.folders[folder.parent_id]) if folder.parent_id else []
        if any(f is not folder and f.display_name.lower() == display_name.lower() for f in siblings):
            raise GraphError(400, "ErrorFolderExists", "A folder with the specified name already exists.")
        folder.display_name = display_name

    def delete_folder(self, folder: Folder) -> None:
        if folder is self.root:
            raise GraphError(
                403, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted."
            )
        for child in self.child_folders(folder):
            self.delete_folder(child)
        for key in list(folder.members):
            self._event(folder, self.contacts.pop(key), "deleted")
        del self.folders[folder.id]

    def create_contact(
        self, folder: Folder, changes: dict[str, Any], extended: dict[str, tuple[str, str]]
    ) -> Contact:
        item = ids.new_item_bytes()
        props = blank_props()
        apply_changes(props, changes, regenerate_display_name=True)
        contact = Contact(ids.immutable_id(self.key, item), item, folder, props)
        contact.extended.update(extended)
        self.contacts[contact.key] = contact
        seq = self.next_seq()
        folder.add(contact, seq)
        folder.record(seq, contact.key)
        self._event(folder, contact, "created")
        return contact

    def update_contact(
        self, contact: Contact, changes: dict[str, Any], extended: dict[str, tuple[str, str]]
    ) -> None:
        contact.folder.unindex(contact)
        regenerate = any(name in changes for name in ("givenName", "middleName", "surname", "generation"))
        apply_changes(contact.props, changes, regenerate_display_name=regenerate)
        contact.folder.index(contact)
        contact.extended.update(extended)
        self._touch(contact)
        contact.folder.record(self.next_seq(), contact.key)
        self._event(contact.folder, contact, "updated")

    def delete_contact(self, contact: Contact) -> None:
        del self.contacts[contact.key]
        contact.folder.remove(contact)
        contact.folder.record(self.next_seq(), contact.key)
        self._event(contact.folder, contact, "deleted")

    def move_contact(self, contact: Contact, target: Folder) -> None:
        source = contact.folder
        if source is target:
            return
        source.remove(contact)
        source.record(self.next_seq(), contact.key)
        self._event(source, contact, "deleted")
        contact.folder = target
        self._touch(contact)
        seq = self.next_seq()
        target.add(contact, seq)
        target.record(seq, contact.key)
        self._event(target, contact, "created")

    def _event(self, folder: Folder, contact: Contact, change_type: str) -> None:
        self.events.append(ContactEvent(self, folder, contact.key, change_type, contact.change_key))

    @staticmethod
    def _touch(contact: Contact) -> None:
        contact.change_key = new_change_key()
        contact.modified = now_iso()

    # ---- persistence ---------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A snapshot that shares no mutable containers with live state, so it can be encoded after the
        lock is released."""
        folders = []
        for folder in self.folders.values():
            folders.append(
                {
                    "id": folder.id,
                    "key": folder.key.hex(),
                    "displayName": folder.display_name,
                    "parentFolderId": folder.parent_id,
                    "members": [[seq, key] for seq, key in folder.keys_after(0)],
                    "journal": [list(folder.journal_seqs), list(folder.journal_keys)],
                }
            )
        contacts = [
            {
                "key": c.key,
                "item": c.item.hex(),
                "folder": c.folder.id,
                # sparse (most properties are empty); a new dict, and stored values are never mutated
                "props": {name: value for name, value in c.props.items() if value not in (None, [], {})},
                "extended": {k: list(v) for k, v in c.extended.items()},
                "changeKey": c.change_key,
                "created": c.created,
                "modified": c.modified,
            }
            for c in self.contacts.values()
        ]
        return {
            "upn": self.upn,
            "key": self.key.hex(),
            "restEnabled": self.rest_enabled,
            "seq": self.seq,
            "root": self.root.id,
            "folders": folders,
            "contacts": contacts,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mailbox:
        mailbox = cls.__new__(cls)
        mailbox.upn = data["upn"]
        mailbox.key = bytes.fromhex(data["key"])
        mailbox.rest_enabled = data["restEnabled"]
        mailbox.seq = data["seq"]
        mailbox.folders = {}
        mailbox.contacts = {}
        mailbox.events = []
        for entry in data["folders"]:
            folder = Folder(
                entry["id"], bytes.fromhex(entry["key"]), entry["displayName"], entry["parentFolderId"]
            )
            folder.journal_seqs, folder.journal_keys = entry["journal"]
            mailbox.folders[folder.id] = folder
        mailbox.root = mailbox.folders[data["root"]]
        for entry in data["contacts"]:
            folder = mailbox.folders[entry["folder"]]
            contact = Contact(
                entry["key"], bytes.fromhex(entry["item"]), folder, {**blank_props(), **entry["props"]}
            )
            contact.extended = {k: (v[0], v[1]) for k, v in entry["extended"].items()}
            contact.change_key = entry["changeKey"]
            contact.created = entry["created"]
            contact.modified = entry["modified"]
            mailbox.contacts[contact.key] = contact
        for entry in data["folders"]:
            folder = mailbox.folders[entry["id"]]
            for seq, key in entry["members"]:
                folder.add(mailbox.contacts[key], seq)
        return mailbox


class Store:
    """All mailboxes of the tenant, keyed by lower-case UPN, and the secret that signs delta tokens.

    `lock` guards everything here. Writers use `with store.change():`, which holds the lock and, once
    the write succeeded, calls `on_change` (the state file's saver, when there is one) and hands the
    contact writes it made to `on_events` (change notifications), outside the lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.on_change: Callable[[], None] | None = None
        self.on_events: Callable[[list[ContactEvent]], None] | None = None
        self.mailbox_domain: str | None = None  # every address here is a mailbox, created on first use
        self.mailboxes: dict[str, Mailbox] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.events: list[ContactEvent] = []  # shared by every mailbox; drained by change()
        self.secret = secrets.token_bytes(32)

    @contextmanager
    def change(self) -> Iterator[None]:
        with self.lock:
            yield
            events = self.events[:]
            del self.events[:]
        if self.on_change is not None:
            self.on_change()
        if events and self.on_events is not None:
            self.on_events(events)

    def reset(self, upns: list[str]) -> None:
        """Empty again, with a fresh mailbox per UPN and a new delta-token secret (so tokens issued
        before no longer decode). In place, so whoever holds this Store sees the reset."""
        with self.change():
            self.mailboxes = {}
            self.subscriptions = {}
            self.secret = secrets.token_bytes(32)
            for upn in upns:
                self.add_mailbox(upn)

    def add_mailbox(self, upn: str, rest_enabled: bool = True) -> Mailbox:
        existing = self.mailboxes.get(upn.lower())
        if existing is not None:
            existing.rest_enabled = rest_enabled
            return existing
        mailbox = Mailbox(upn, ids.new_key(), rest_enabled)
        mailbox.events = self.events
        self.mailboxes[upn.lower()] = mailbox
        return mailbox

    def lookup(self, upn: str) -> Mailbox | None:
        """The mailbox of `upn`, if the tenant has one; in the mailbox domain it is created on first use,
        as a licensed user's mailbox that exists before anyone opens it."""
        mailbox = self.mailboxes.get(upn.lower())
        if mailbox is None and self.mailbox_domain:
            local, _, domain = upn.rpartition("@")
            if local and domain.lower() == self.mailbox_domain.lower():
                with self.change():
                    mailbox = self.add_mailbox(upn)
        return mailbox

    def mailbox(self, upn: str) -> Mailbox:
        """The mailbox a Graph request addresses; Graph's 404s for unknown users and non-REST mailboxes."""
        mailbox = self.lookup(upn)
        if mailbox is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{upn}' is invalid.")
        if not mailbox.rest_enabled:
            raise GraphError(
                404, "MailboxNotEnabledForRESTAPI", "REST API is not yet supported for this mailbox."
            )
        return mailbox

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            return {
                "version": 1,
                "secret": self.secret.hex(),
                "mailboxes": [mailbox.to_json() for mailbox in self.mailboxes.values()],
                "subscriptions": [asdict(sub) for sub in self.subscriptions.values()],
            }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Store:
        store = cls()
        store.secret = bytes.fromhex(data["secret"])
        for entry in data["mailboxes"]:
            mailbox = Mailbox.from_json(entry)
            mailbox.events = store.events
            store.mailboxes[mailbox.upn.lower()] = mailbox
        for entry in data.get("subscriptions", []):  # files saved before subscriptions existed have none
            store.subscriptions[entry["id"]] = Subscription(**entry)
        return store
