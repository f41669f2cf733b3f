"""Announcing contact changes: every write path of Contact (save, delete, the bulk and queryset
methods) reports the contacts it created, changed or deleted, once per committed transaction, through
the `contacts_changed` signal. The contact master knows nothing of who listens.

A writer acting for someone (bcsync's own sync writing Outlook's changes for a user) says so with
`written_by(origin)`; the announcement carries the origin so a listener can leave its own echoes out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.dispatch import Signal

# Sent after commit with contact_ids (frozenset[int]), contact_nos (frozenset[str]: deleted contacts
# are known by number only afterwards) and origins (frozenset: who wrote them; None for anyone else).
contacts_changed = Signal()

_origin: ContextVar[object | None] = ContextVar("contact_change_origin", default=None)


@contextmanager
def written_by(origin: object) -> Iterator[None]:
    """Contact writes inside this block are announced as made by `origin`."""
    token = _origin.set(origin)
    try:
        yield
    finally:
        _origin.reset(token)


@dataclass(eq=False)
class _Batch:
    """The changes of one transaction, sent by one on_commit callback."""

    ids: set[int] = field(default_factory=set)
    nos: set[str] = field(default_factory=set)
    origins: set[object | None] = field(default_factory=set)
    sent: bool = False

    def send(self) -> None:
        from .models import Contact

        self.sent = True
        contacts_changed.send(
            sender=Contact,
            contact_ids=frozenset(self.ids),
            contact_nos=frozenset(self.nos),
            origins=frozenset(self.origins),
        )


# Per thread, as Django's connections are.
_local = threading.local()


def _batch_of_transaction(using: str) -> _Batch:
    """The batch of the open transaction at its current savepoint, registered with on_commit when
    first needed. Kept per savepoint, so rolling one back drops exactly its writes' batch (Django
    drops the callback); the writers announce outside their own atomic blocks, so a loop of saves
    in one transaction shares one batch."""
    connection = connections[using]
    batches: dict[str, _Batch] = _local.__dict__.setdefault("batches", {})
    batch = batches.get(using)
    level = set(connection.savepoint_ids)
    if (
        batch is None
        or batch.sent
        or (level, batch.send) not in ((sids, func) for sids, func, _ in connection.run_on_commit)
    ):
        batch = _Batch()
        batches[using] = batch
        transaction.on_commit(batch.send, using=using)
    return batch


def announce(*, pairs: Iterable[tuple[int | None, str]], using: str = DEFAULT_DB_ALIAS) -> None:
    """Record that the contacts given as (id, number) changed; sent when the transaction commits
    (at once outside one). Nothing is sent for a transaction rolled back."""
    pairs = list(pairs)
    if not pairs:
        return
    in_transaction = connections[using].in_atomic_block
    batch = _batch_of_transaction(using) if in_transaction else _Batch()
    batch.ids.update(pk for pk, _ in pairs if pk is not None)
    batch.nos.update(no for _, no in pairs if no)
    batch.origins.add(_origin.get())
    if not in_transaction:
        batch.send()
