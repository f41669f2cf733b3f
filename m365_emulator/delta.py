"""Per-folder contact delta: opaque signed tokens over the folder's change journal.

A round starts with a call without token (initial sync: the folder's current members, paged by join
order) or with a $deltatoken (the journal since the previous round, each id collapsed to its final
state, items gone from the folder reported as @removed). Pages in between carry a $skiptoken. Every
token records when it was issued, so "expire all tokens issued before now" and a maximum age can
answer 410 syncStateNotFound, which makes clients resync.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from .errors import GraphError


@dataclass
class DeltaToken:
    mailbox: str  # mailbox key (hex): a reset mailbox invalidates old tokens
    folder: str
    kind: str  # "initial": paging the folder's members; "changes": paging journal entries
    start: int  # changes: journal seq after which changes count; initial: 0
    end: int  # journal seq the round reads up to (fixed at its first page)
    cursor: int  # initial: last join seq delivered; changes: index into the collapsed change list
    previous: int  # where the previous round started, for the replay knob
    select: list[str] | None
    page_size: int | None
    issued: float


def sync_state_not_found(location: str | None = None) -> GraphError:
    headers = {"Location": location} if location else {}
    return GraphError(
        410,
        "syncStateNotFound",
        "The sync state generation is not found or has expired. A resync is required.",
        headers,
    )


def encode(token: DeltaToken, secret: bytes) -> str:
    payload = json.dumps(asdict(token), separators=(",", ":")).encode("utf-8")
    signature = hmac.new(secret, payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(signature + payload).decode("ascii").rstrip("=")


def decode(text: str, secret: bytes, location: str) -> DeltaToken:
    """Parse and verify a token; anything unreadable is a lost sync state (410), as Graph treats it."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        signature, payload = raw[:16], raw[16:]
        if not hmac.compare_digest(signature, hmac.new(secret, payload, hashlib.sha256).digest()[:16]):
            raise ValueError("bad signature")
        data: dict[str, Any] = json.loads(payload)
        return DeltaToken(**data)
    except (ValueError, TypeError):
        raise sync_state_not_found(location) from None


def check_age(token: DeltaToken, valid_after: float, max_age_s: float | None, location: str) -> None:
    if token.issued < valid_after or (max_age_s is not None and time.time() - token.issued > max_age_s):
        raise sync_state_not_found(location)
