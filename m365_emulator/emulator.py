"""The Emulator: the tenant's state, knobs and counters, and their Python API (tests, the control
routes and the Outlook page use it). HTTP dispatch lives in server.Front."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from .auth import Auth, tenant_id
from .config import ACTIONS, EmulatorConfig, coerce_knob, config_as_dict
from .errors import GraphError
from .notify import Notifier, live_subscriptions
from .outlook import Outlook
from .persistence import DebouncedSaver, load_state
from .state import Store, Subscription
from .stats import Stats
from .subscriptions import control_json
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
        self.notifier = Notifier(config, self.store, tenant_id(config.tenant))
        self.store.on_events = self.notifier.on_events

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
            self.notifier.reseed()
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
        """Back to the configured, empty mailboxes without subscriptions or queued notifications; knobs
        and issued access tokens stay."""
        self.store.reset(self.config.mailboxes)
        self.throttle.reset()
        self.notifier.reset()

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

    # ---- change notifications ----------------------------------------------------------------------

    def subscriptions(self) -> list[dict[str, Any]]:
        """Every live subscription with all it holds (clientState included), oldest first."""
        with self.store.lock:
            return [control_json(sub) for sub in live_subscriptions(self.store, time.time())]

    def expire_subscription(self, subscription_id: str) -> None:
        """Expire now: Graph deletes it, GET/PATCH answer 404 and nothing more is delivered."""
        with self.store.change():
            self._subscription(subscription_id).expiration = time.time()
            live_subscriptions(self.store, time.time())

    def fire_lifecycle(self, subscription_id: str, event: str) -> dict[str, Any] | None:
        """Send a lifecycle notification (reauthorizationRequired, subscriptionRemoved, missed) to the
        subscription's lifecycleNotificationUrl; returns the item, or None when it has no such URL.
        subscriptionRemoved also removes the subscription, as Graph does."""
        with self.store.change():
            sub = self._subscription(subscription_id)
            item = self.notifier.fire_lifecycle(sub, event)
            if event == "reauthorizationRequired":
                sub.needs_reauthorization = True
            elif event == "subscriptionRemoved":
                del self.store.subscriptions[sub.id]
        return item

    def _subscription(self, subscription_id: str) -> Subscription:
        sub = self.store.subscriptions.get(subscription_id)
        if sub is None or sub.expiration <= time.time():
            raise GraphError(404, "ResourceNotFound", "The object was not found.")
        return sub

    def notifications(self) -> list[dict[str, Any]]:
        """Every validation, delivery attempt and drop, oldest first."""
        return self.notifier.records()

    def reset_notifications(self) -> None:
        self.notifier.reset_records()

    def wait_notifications(self, timeout_s: float = 10.0) -> bool:
        """Wait until no notification is queued (retries included) or in flight; False on timeout."""
        return self.notifier.wait_idle(timeout_s)

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """Health of each notification URL: state ok / slow / drop and the answers behind it."""
        return self.notifier.endpoints()

    def close(self) -> None:
        """Stop delivering notifications and write any pending state to the state file."""
        self.notifier.close()
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
