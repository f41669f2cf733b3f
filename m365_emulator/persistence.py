"""Optional state file: loaded at start, saved atomically at most once per debounce window."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .text import has_lone_surrogate, may_hold_surrogates, without_lone_surrogates


def load_state(path: str) -> dict[str, Any] | None:
    """The saved state (Store.to_json, plus the sign-in state under "signIn"), or None without a file."""
    file = Path(path)
    if not file.exists():
        return None
    text = file.read_text(encoding="utf-8")
    data = json.loads(text)
    if may_hold_surrogates(text) and has_lone_surrogate(data):  # saved before they were refused
        data = without_lone_surrogates(data)
    return data


def write_atomically(path: str, payload: Any) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(payload, stream, separators=(",", ":"))
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class DebouncedSaver:
    """Coalesces many mutations into one write, so a benchmark pushing 100,000 contacts does not rewrite
    a large file per request. A write waits `delay_s` after the first unsaved change, or four times as
    long as the previous write took if that is longer, which caps the time spent saving at about 20%."""

    def __init__(self, path: str, delay_s: float, snapshot: Callable[[], Any]) -> None:
        self.path = path
        self.delay_s = delay_s
        self.snapshot = snapshot
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._write_lock = threading.Lock()
        self._last_write_s = 0.0

    def mark_dirty(self) -> None:
        with self._lock:
            if self._timer is None:
                self._timer = threading.Timer(max(self.delay_s, 4 * self._last_write_s), self.save)
                self._timer.daemon = True
                self._timer.start()

    def save(self) -> None:
        with self._lock:
            self._timer = None
        self._write()

    def flush(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            self._write()

    def _write(self) -> None:
        with self._write_lock:
            started = time.monotonic()
            write_atomically(self.path, self.snapshot())
            self._last_write_s = time.monotonic() - started
