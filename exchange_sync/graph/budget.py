"""Pacing within Outlook's request budget per app and mailbox (10,000 requests per 10 minutes, every
request inside a ``$batch`` counted on its own).

A token bucket per mailbox: one token per request, at most `BucketRates.capacity` saved up, refilled
at `BucketRates.rate` per second. In any window of ``window_s`` it lets through at most
``capacity + rate * window_s`` requests, which the rates keep a margin under the limit. Where the
bucket is kept (the database, so that every host shares it) is the caller's business: `GraphClient`
only needs a `MailboxBudget`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Held back from Microsoft's limit: clocks, requests Microsoft counts that we do not (a retry of a
# request that never reached us), and other apps' use of the same registration.
MARGIN = 0.1
# The share of the usable budget that may go at once, e.g. a small first sync that never waits.
BURST_SHARE = 0.1


@dataclass(frozen=True)
class BucketRates:
    capacity: float
    rate: float  # tokens per second

    @classmethod
    def for_limit(cls, *, limit: int, window_s: float) -> BucketRates:
        """Rates that keep any window of `window_s` under `limit` requests, with `MARGIN` spare."""
        usable = limit * (1 - MARGIN)
        capacity = max(1.0, usable * BURST_SHARE)
        return cls(capacity=capacity, rate=(usable - capacity) / window_s)

    def refill(self, *, tokens: float, refilled_at: float, now: float) -> float:
        """The tokens a bucket holds at `now`, from what it held at `refilled_at`."""
        return min(self.capacity, tokens + max(0.0, now - refilled_at) * self.rate)

    def wait_s(self, *, tokens: float, wanted: int) -> float:
        """How long until a bucket holding `tokens` holds `wanted` (0 if it already does). A request
        larger than the capacity waits for a full bucket and then takes it all."""
        return max(0.0, min(float(wanted), self.capacity) - tokens) / self.rate


class MailboxBudget(Protocol):
    """A mailbox's request budget, shared by everyone who sends to that mailbox."""

    def take(self, *, mailbox: str, requests: int) -> float:
        """Take `requests` tokens and return 0, or take nothing and return the seconds to wait first."""
        ...

    def block(self, *, mailbox: str, seconds: float) -> None:
        """Microsoft answered 429 with this Retry-After: nobody sends to the mailbox before then."""
        ...
