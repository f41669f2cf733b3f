"""Every mailbox's Graph request budget, kept in the database so that all runs, processes and hosts
that write to one mailbox draw on the same bucket. Each change is a compare-and-swap UPDATE on the
mailbox's row, on its version (no lock is held, no Redis needed); a loser of a race reads the row
again."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from ..graph import BucketRates
from ..models import MailboxBudget


class DatabaseMailboxBudget:
    """A `exchange_sync.graph.MailboxBudget` on the MailboxBudget table, for one client's calling
    thread. It remembers each row as it last wrote it, so that a take is one UPDATE while nobody else
    touches the mailbox; when another process has changed the row, the UPDATE matches nothing and
    the row is read again."""

    def __init__(self, *, rates: BucketRates, clock: Callable[[], float] = time.time) -> None:
        self.rates = rates
        self.clock = clock
        self._known: dict[str, MailboxBudget] = {}

    def take(self, *, mailbox: str, requests: int) -> float:
        key = mailbox.casefold()
        row = self._known.get(key) or self._row(key)
        while True:
            now = self.clock()
            if row.blocked_until > now:
                return row.blocked_until - now
            tokens = self.rates.refill(tokens=row.tokens, refilled_at=row.refilled_at, now=now)
            wait = self.rates.wait_s(tokens=tokens, wanted=requests)
            if wait > 0:
                self._known.pop(key, None)  # by the time it is over, others may have changed the row
                return wait
            if MailboxBudget.objects.filter(pk=row.pk, version=row.version).update(
                tokens=tokens - requests, refilled_at=now, version=F("version") + 1
            ):
                row.tokens, row.refilled_at, row.version = tokens - requests, now, row.version + 1
                self._known[key] = row
                return 0.0
            row = self._row(key)

    def block(self, *, mailbox: str, seconds: float) -> None:
        key = mailbox.casefold()
        until = self.clock() + seconds
        row = self._row(key)
        MailboxBudget.objects.filter(pk=row.pk, blocked_until__lt=until).update(
            blocked_until=until, version=F("version") + 1
        )
        self._known.pop(key, None)

    def _row(self, key: str) -> MailboxBudget:
        row = MailboxBudget.objects.filter(mailbox=key).first()
        if row is not None:
            return row
        try:
            with transaction.atomic():
                # A new mailbox starts with a full bucket, like one that has been idle.
                return MailboxBudget.objects.create(
                    mailbox=key, tokens=self.rates.capacity, refilled_at=self.clock()
                )
        except IntegrityError:  # another process created it first
            return MailboxBudget.objects.get(mailbox=key)


def budget_from_settings() -> DatabaseMailboxBudget | None:
    """The budget of GRAPH_MAILBOX_BUDGET requests per GRAPH_MAILBOX_WINDOW_S seconds per mailbox;
    None (no pacing) when GRAPH_MAILBOX_BUDGET is 0, as for benchmarks of the engine itself."""
    if not settings.GRAPH_MAILBOX_BUDGET:
        return None
    return DatabaseMailboxBudget(
        rates=BucketRates.for_limit(
            limit=settings.GRAPH_MAILBOX_BUDGET, window_s=settings.GRAPH_MAILBOX_WINDOW_S
        )
    )
