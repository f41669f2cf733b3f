"""A person working in Outlook: direct edits that bypass auth, faults, limits and Graph stats but go
through the same state functions as Graph requests (so change keys, timestamps and delta see them)."""

from __future__ import annotations

import copy
from itertools import islice
from typing import Any

from .contacts import parse_contact_body
from .errors import GraphError
from .render import contact_json, folder_json
from .state import Mailbox, Store


class Outlook:
    def __init__(self, store: Store, upn: str) -> None:
        self.store = store
        self.upn = upn

    def _mailbox(self) -> Mailbox:
        mailbox = self.store.lookup(self.upn)
        if mailbox is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{self.upn}' is invalid.")
        return mailbox

    def _json(self, mailbox: Mailbox, contact: Any) -> dict[str, Any]:
        # Immutable ids and every stored extended property: tests want to see what the app wrote. A deep
        # copy, because callers get Python objects they may change, unlike encoded Graph responses.
        return copy.deepcopy(contact_json(mailbox, contact, immutable=True, expand=[]))

    def list_folders(self) -> list[dict[str, Any]]:
        """Every folder of the mailbox, the default Contacts folder first."""
        with self.store.lock:
            return [folder_json(folder) for folder in self._mailbox().folders.values()]

    def create_folder(self, display_name: str, parent: str | None = None) -> dict[str, Any]:
        with self.store.change():
            mailbox = self._mailbox()
            parent_folder = mailbox.folder_by_name_or_id(parent) if parent else mailbox.root
            result = folder_json(mailbox.create_folder(display_name, parent_folder))
        return result

    def list_contacts(self, folder: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Contacts of a folder (display name or id), oldest first; at most `limit` of them."""
        with self.store.lock:
            mailbox = self._mailbox()
            keys = islice(mailbox.folder_by_name_or_id(folder).keys_after(0), limit)
            return [self._json(mailbox, mailbox.contacts[key]) for _, key in keys]

    def get_contact(self, contact_id: str) -> dict[str, Any]:
        with self.store.lock:
            mailbox = self._mailbox()
            return self._json(mailbox, mailbox.contact(contact_id))

    def create_contact(self, folder: str, data: dict[str, Any]) -> dict[str, Any]:
        changes, extended = parse_contact_body(data)
        with self.store.change():
            mailbox = self._mailbox()
            contact = mailbox.create_contact(mailbox.folder_by_name_or_id(folder), changes, extended)
            result = self._json(mailbox, contact)
        return result

    def update_contact(self, contact_id: str, data: dict[str, Any]) -> dict[str, Any]:
        changes, extended = parse_contact_body(data)
        with self.store.change():
            mailbox = self._mailbox()
            contact = mailbox.contact(contact_id)
            mailbox.update_contact(contact, changes, extended)
            result = self._json(mailbox, contact)
        return result

    def move_contact(self, contact_id: str, folder: str) -> dict[str, Any]:
        with self.store.change():
            mailbox = self._mailbox()
            contact = mailbox.contact(contact_id)
            mailbox.move_contact(contact, mailbox.folder_by_name_or_id(folder))
            result = self._json(mailbox, contact)
        return result

    def delete_contact(self, contact_id: str) -> None:
        with self.store.change():
            mailbox = self._mailbox()
            mailbox.delete_contact(mailbox.contact(contact_id))
