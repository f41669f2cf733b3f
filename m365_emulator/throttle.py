"""Outlook's per-mailbox limits and injected faults.

- Concurrency: at most `max_concurrency` requests in flight per mailbox, else 429 MailboxConcurrency.
- Rate: at most `rate_limit` accepted requests per sliding `rate_window_s` per mailbox.
- Item time: a mailbox has `max_concurrency` workers; each item read or written occupies the earliest
  free worker for `item_latency_ms`, and the request finishes when its last item does. Deterministic,
  no extra threads: the caller sleeps until the returned deadline.
- Faults: seeded random 429/503/504 on Graph requests.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .config import EmulatorConfig
from .errors import GraphError, throttled


@dataclass
class _MailboxLoad:
    in_flight: int = 0
    accepted: deque[float] = field(default_factory=deque)
    workers: list[float] = field(default_factory=list)


class Throttle:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._loads: dict[str, _MailboxLoad] = {}
        self._random = random.Random(config.fault_seed)

    def _load(self, upn: str) -> _MailboxLoad:
        return self._loads.setdefault(upn.lower(), _MailboxLoad())

    def reseed(self) -> None:
        with self._lock:
            self._random = random.Random(self.config.fault_seed)

    def reset(self) -> None:
        """Forget rate windows and worker times; in-flight counts stay, their requests are still running."""
        with self._lock:
            for load in self._loads.values():
                load.accepted.clear()
                load.workers.clear()

    def acquire(self, upn: str) -> None:
        """Take a concurrency slot for the mailbox or raise 429 ApplicationThrottled."""
        with self._lock:
            load = self._load(upn)
            if load.in_flight >= self.config.max_concurrency:
                raise throttled(
                    "Application is over its MailboxConcurrency limit.", self.config.retry_after_s
                )
            load.in_flight += 1

    def release(self, upn: str) -> None:
        with self._lock:
            self._load(upn).in_flight -= 1

    def count_request(self, upn: str) -> None:
        """Admit one request into the mailbox's rate window or raise 429 with the wait until it frees."""
        now = time.monotonic()
        with self._lock:
            load = self._load(upn)
            window = self.config.rate_window_s
            while load.accepted and load.accepted[0] <= now - window:
                load.accepted.popleft()
            if len(load.accepted) >= self.config.rate_limit:
                wait = load.accepted[0] + window - now
                raise throttled(
                    "Application is over its MailboxRequestsPerWindow limit.", max(1, math.ceil(wait))
                )
            load.accepted.append(now)

    def charge_items(self, upn: str, count: int, not_before: float) -> float:
        """Occupy workers for `count` items starting no earlier than `not_before` (monotonic seconds);
        returns when the last item finishes."""
        cost = self.config.item_latency_ms / 1000.0
        if count <= 0 or cost <= 0:
            return not_before
        with self._lock:
            workers = self._load(upn).workers
            size = max(1, self.config.max_concurrency)
            workers[:] = (workers + [0.0] * size)[:size]
            finish = not_before
            for _ in range(count):
                index = min(range(size), key=workers.__getitem__)
                start = max(workers[index], not_before, time.monotonic())
                workers[index] = start + cost
                finish = max(finish, workers[index])
            return finish

    def maybe_fault(self) -> GraphError | None:
        """A random injected failure for this Graph request, or None."""
        config = self.config
        with self._lock:
            roll = self._random.random()
        if roll < config.fault_rate_429:
            return throttled("Application is over its resource limit.", config.retry_after_s)
        roll -= config.fault_rate_429
        if roll < config.fault_rate_503:
            headers = {"Retry-After": str(config.retry_after_s)} if config.retry_after_on_503 else {}
            return GraphError(
                503,
                "serviceNotAvailable",
                "Service Unavailable, please retry after the time in the Retry-After header.",
                headers,
            )
        roll -= config.fault_rate_503
        if roll < config.fault_rate_504:
            return GraphError(504, "UnknownError", "The request timed out at the gateway.")
        return None
