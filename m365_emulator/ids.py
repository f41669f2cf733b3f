"""Outlook-like item and folder ids.

An immutable id encodes (mailbox, item). A regular id also encodes the folder the item sits in, so it
changes when the item moves, as Outlook's regular ids do; both decode in O(1) without an extra index.
Both are URL-safe base64 like Graph's ids, and case-sensitive.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass

from .errors import malformed_id

KEY_BYTES = 8  # mailbox and folder keys
ITEM_BYTES = 16
IMMUTABLE_PREFIX = "AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A"
REGULAR_PREFIX = "AAMkAG"
FOLDER_PREFIX = "AAMkAD"


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def new_item_bytes() -> bytes:
    return secrets.token_bytes(ITEM_BYTES)


def _padding(size: int) -> int:
    # zero bytes that make the length a multiple of 3, so no "=" ends up in ids
    return -size % 3


def _encode(prefix: str, raw: bytes) -> str:
    return prefix + base64.urlsafe_b64encode(raw + b"\x00" * _padding(len(raw))).decode("ascii")


def immutable_id(mailbox_key: bytes, item: bytes) -> str:
    return _encode(IMMUTABLE_PREFIX, mailbox_key + item)


def regular_id(mailbox_key: bytes, folder_key: bytes, item: bytes) -> str:
    return _encode(REGULAR_PREFIX, mailbox_key + folder_key + item)


def folder_id(mailbox_key: bytes, folder_key: bytes) -> str:
    return _encode(FOLDER_PREFIX, b"\x01" + mailbox_key + folder_key)


@dataclass(frozen=True)
class ItemRef:
    mailbox_key: bytes
    item: bytes
    folder_key: bytes | None  # only regular ids name a folder

    @property
    def immutable(self) -> str:
        return immutable_id(self.mailbox_key, self.item)


def _decode(text: str, prefix: str, size: int) -> bytes | None:
    if not text.startswith(prefix):
        return None
    try:
        raw = base64.b64decode(text[len(prefix) :], altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise malformed_id() from None
    if len(raw) != size + _padding(size):
        raise malformed_id()
    return raw[:size]


def parse_item_id(text: str) -> ItemRef | None:
    """ItemRef for a contact id; None for a well-formed id that is not an item (e.g. a folder id).

    Raises ErrorInvalidIdMalformed for anything that is not an Outlook-style id at all.
    """
    raw = _decode(text, IMMUTABLE_PREFIX, KEY_BYTES + ITEM_BYTES)
    if raw is not None:
        return ItemRef(raw[:KEY_BYTES], raw[KEY_BYTES:], None)
    raw = _decode(text, REGULAR_PREFIX, 2 * KEY_BYTES + ITEM_BYTES)
    if raw is not None:
        return ItemRef(raw[:KEY_BYTES], raw[2 * KEY_BYTES :], raw[KEY_BYTES : 2 * KEY_BYTES])
    if _decode(text, FOLDER_PREFIX, 1 + 2 * KEY_BYTES) is not None:
        return None
    raise malformed_id()


def check_folder_id(text: str) -> None:
    """Raise ErrorInvalidIdMalformed unless `text` looks like an Outlook id."""
    for prefix, size in (
        (FOLDER_PREFIX, 1 + 2 * KEY_BYTES),
        (IMMUTABLE_PREFIX, KEY_BYTES + ITEM_BYTES),
        (REGULAR_PREFIX, 2 * KEY_BYTES + ITEM_BYTES),
    ):
        if _decode(text, prefix, size) is not None:
            return
    raise malformed_id()
