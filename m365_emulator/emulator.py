"""The Emulator: the tenant's state, knobs and counters, and their Python API (tests, the control
routes and the Outlook page use it). HTTP dispatch lives in server.Front."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from .auth import Auth
from .config import ACTIONS, EmulatorConfig, coerce_knob, config_as_dict
from .outlook import Outlook
from .persistence import DebouncedSaver, load_state
from .state import Store
from .stats import Stats
from .throttle import Throttle


class Emulator:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.auth = Auth(config)
        self.throttle = Throttle(config)
        self.stats_ = Stats()
        self.delta_valid_after = 0.0  # delta tokens issued before this (epoch seconds) are expired
        self._shuffle_random = random.Random(config.fault_seed)
        self._shuffle_lock = threading.Lock()  # concurrent batches draw from one seeded sequence
        loaded = load_state(config.state_file) if config.state_file else None
        self.store = Store.from_json(loaded) if loaded else Store()
        # Refresh tokens and consent survive a restart, as Entra's do.
        self.auth.load_json((loaded or {}).get("signIn", {}))
        self.store.mailbox_domain = config.mailbox_domain
        for upn in config.mailboxes:
            if upn.lower() not in self.store.mailboxes:
                self.store.add_mailbox(upn)
        self._saver = (
            DebouncedSaver(config.state_file, config.save_debounce_s, self._snapshot)
            if config.state_file
            else None
        )
        if self._saver is not None:
            self.store.on_change = self._saver.mark_dirty
            self.auth.on_change = self._saver.mark_dirty

    def _snapshot(self) -> dict[str, Any]:
        return {**self.store.to_json(), "signIn": self.auth.to_json()}

    # ---- public API ------------------------------------------------------------------------------

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at runtime and run one-shot actions (expire_tokens_now, expire_delta_tokens_now).
        Raises ValueError for an unknown knob or a value of the wrong type; returns the new config."""
        actions = {name for name in knobs if name in ACTIONS and knobs[name]}
        values = {name: coerce_knob(name, value) for name, value in knobs.items() if name not in ACTIONS}
        for name, value in values.items():
            setattr(self.config, name, value)
        if "fault_seed" in values:
            self.throttle.reseed()
            self._shuffle_random = random.Random(self.config.fault_seed)
        if "expire_tokens_now" in actions:
            self.auth.expire_all()
        if "expire_delta_tokens_now" in actions:
            self.delta_valid_after = time.time()
        return config_as_dict(self.config)

    def stats(self) -> dict[str, Any]:
        return self.stats_.snapshot()

    def reset_stats(self) -> None:
        self.stats_.reset()

    def reset(self) -> None:
        """Back to the configured, empty mailboxes; knobs and issued access tokens stay."""
        self.store.reset(self.config.mailboxes)
        self.throttle.reset()

    def add_mailbox(self, upn: str, rest_enabled: bool = True) -> None:
        with self.store.change():
            self.store.add_mailbox(upn, rest_enabled)

    def mailboxes(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return [
                {
                    "upn": m.upn,
                    "rest_enabled": m.rest_enabled,
                    "contacts": len(m.contacts),
                    "folders": len(m.folders),
                }
                for m in self.store.mailboxes.values()
            ]

    def outlook(self, upn: str) -> Outlook:
        return Outlook(self.store, upn)

    def close(self) -> None:
        """Write any pending state to the state file."""
        if self._saver is not None:
            self._saver.flush()

    # ---- hooks used by the routes -----------------------------------------------------------------

    def sleep_latency(self) -> None:
        if self.config.latency_ms > 0:
            time.sleep(self.config.latency_ms / 1000.0)

    @staticmethod
    def sleep_until(deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    def shuffle(self, items: list[Any]) -> None:
        if self.config.shuffle_batch_responses:
            with self._shuffle_lock:
                self._shuffle_random.shuffle(items)
