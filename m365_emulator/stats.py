"""Counters of requests served, readable at GET /_emulator/stats."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, Counter[str]] = {}
        self._totals: Counter[str] = Counter()

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()
            self._totals.clear()

    def record(
        self, *, kind: str, route: str, status: int, mailbox: str | None = None, outcome: str = ""
    ) -> None:
        """Count one request. kind: "graph", "inner" (a $batch item), "token" or "auth" (discovery);
        outcome: "throttled" (limits), "faulted" (injected) or ""."""
        prefix = "inner_" if kind == "inner" else ""
        with self._lock:
            if kind == "inner":
                self._totals["inner_requests"] += 1
            else:
                self._totals["requests"] += 1
                self._totals[f"{kind}_requests"] += 1
            if outcome:
                self._totals[f"{prefix}{outcome}"] += 1
            self._bump(f"{prefix}by_route", route)
            self._bump(f"{prefix}by_status", str(status))
            if mailbox:
                self._bump(f"{prefix}by_mailbox", mailbox.lower())

    def _bump(self, name: str, key: str) -> None:
        self._counters.setdefault(name, Counter())[key] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            result: dict[str, Any] = {
                name: self._totals[name]
                for name in (
                    "requests",
                    "graph_requests",
                    "token_requests",
                    "auth_requests",
                    "throttled",
                    "faulted",
                    "inner_requests",
                    "inner_throttled",
                    "inner_faulted",
                )
            }
            for name in (
                "by_route",
                "by_status",
                "by_mailbox",
                "inner_by_route",
                "inner_by_status",
                "inner_by_mailbox",
            ):
                result[name] = dict(self._counters.get(name, {}))
            return result
