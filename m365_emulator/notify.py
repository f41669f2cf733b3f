"""Change notifications, the delivery side: the validation handshake, and POSTs of change and lifecycle
notifications to subscribers from background threads, never inside the Graph request that caused them.

Contact writes reach `Notifier.on_events` from `Store.change()`. Each notification joins the open batch
of its URL (one POST carries everything that fell due within `notification_batch_ms`), waits
`notification_delay_ms`, and is POSTed by a small thread pool. A 2xx within `notification_timeout_s`
is delivered; anything else is retried with exponential backoff, retries waiting up to
`notification_retry_timeout_s`, until `notification_max_attempts`. Each notification URL's answers over
the last 10 minutes decide its health, as Graph documents it: more than 10% slower than the timeout marks
it "slow" (new notifications wait `slow_endpoint_delay_s` more), more than 15% unanswered within the
retry timeout marks it "drop" (its notifications are dropped for `dropped_endpoint_s`). Every attempt,
validation and drop is recorded for tests.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from .config import EmulatorConfig
from .errors import GraphError
from .render import etag
from .state import ContactEvent, Store, Subscription

HEALTH_WINDOW_S = 600.0
HEALTH_MIN_ANSWERS = 10  # no verdict on an endpoint before this many answers in the window
SLOW_SHARE = 0.10
DROP_SHARE = 0.15
MAX_BATCH_ITEMS = 1000
MAX_RECORDS = 10_000  # the oldest records are forgotten beyond this
DELIVERY_THREADS = 8
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")

# Subscribers are local or reached directly: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def graph_time(epoch: float) -> str:
    """Graph's timestamp form, with seven fractional digits."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


@dataclass
class Answer:
    status: int | None  # None: no answer
    error: str | None  # "timeout" or the connection failure
    body: bytes
    elapsed_s: float


def post(url: str, body: bytes, content_type: str, timeout_s: float) -> Answer:
    started = time.monotonic()
    request = urllib.request.Request(  # noqa: S310 - notification URLs are checked to be http(s)
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            return Answer(response.status, None, response.read(), time.monotonic() - started)
    except urllib.error.HTTPError as failure:
        return Answer(failure.code, None, failure.read(), time.monotonic() - started)
    except urllib.error.URLError as failure:
        reason = failure.reason
        error = "timeout" if isinstance(reason, TimeoutError) else str(reason)
        return Answer(None, error, b"", time.monotonic() - started)
    except TimeoutError:
        return Answer(None, "timeout", b"", time.monotonic() - started)
    except OSError as failure:  # reset or refused mid-answer
        return Answer(None, str(failure) or type(failure).__name__, b"", time.monotonic() - started)


def with_query(url: str, name: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{name}={quote(value, safe='')}"


@dataclass
class Batch:
    kind: str  # "change" | "lifecycle"
    url: str
    items: list[dict[str, Any]]
    due: float  # monotonic
    generation: int
    attempt: int = 1
    open: bool = True  # still accepting items (a first attempt not yet taken by the dispatcher)


@dataclass
class Endpoint:
    """One notification URL's recent answers: (monotonic time, slower than the timeout, unanswered
    within the retry timeout), and the verdict they led to."""

    answers: deque[tuple[float, bool, bool]] = field(default_factory=deque)
    state: str = "ok"
    until: float = 0.0

    def current(self, now: float) -> str:
        return self.state if self.until > now else "ok"

    def observe(self, now: float, slow: bool, unanswered: bool, config: EmulatorConfig) -> None:
        self.answers.append((now, slow, unanswered))
        while self.answers and self.answers[0][0] < now - HEALTH_WINDOW_S:
            self.answers.popleft()
        total = len(self.answers)
        if total < HEALTH_MIN_ANSWERS or self.until > now:
            return
        if sum(entry[2] for entry in self.answers) > DROP_SHARE * total:
            self.state, self.until = "drop", now + config.dropped_endpoint_s
        elif sum(entry[1] for entry in self.answers) > SLOW_SHARE * total:
            self.state, self.until = "slow", now + config.slow_endpoint_delay_s


class Notifier:
    def __init__(self, config: EmulatorConfig, store: Store, tenant_id: str) -> None:
        self.config = config
        self.store = store
        self.tenant_id = tenant_id
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Batch]] = []
        self._open: dict[tuple[str, str], Batch] = {}
        self._order = itertools.count()
        self._in_flight = 0
        self._generation = 0
        self._records: list[dict[str, Any]] = []
        self._record_seq = itertools.count(1)
        self._endpoints: dict[str, Endpoint] = {}
        self._random = random.Random(config.fault_seed)
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    # ---- validation ------------------------------------------------------------------------------

    def validate(self, url: str) -> None:
        """Graph's handshake: POST ?validationToken=…; the subscriber must echo it with 200 in time."""
        token = f"Validation: Testing client application reachability for subscription {time.time_ns()}"
        answer = post(
            with_query(url, "validationToken", token),
            b"",
            "text/plain; charset=utf-8",
            self.config.validation_timeout_s,
        )
        self._record("validation", url, [], 1, answer, {"validationToken": token})
        if answer.error == "timeout":
            raise GraphError(400, "InvalidRequest", "Subscription validation request timed out.")
        if answer.status != 200:
            reason = "Notification endpoint must respond with 200 OK to validation request."
        elif answer.body.decode("utf-8", "replace") != token:
            reason = "Response must exactly match validationToken query parameter."
        else:
            return
        raise GraphError(400, "ValidationError", f"Subscription validation request failed. {reason}")

    # ---- producing notifications ------------------------------------------------------------------

    def on_events(self, events: list[ContactEvent]) -> None:
        """Contact writes, after their Store.change() ended: queue a notification per subscription that
        watches the folder and the change type."""
        now = time.time()
        with self.store.lock:
            if not self.store.subscriptions:
                return
            subscriptions = live_subscriptions(self.store, now)
            pending = [
                (sub, change_item(sub, event, self.tenant_id))
                for event in events
                for sub in subscriptions
                if sub.upn == event.mailbox.upn.lower()
                and sub.folder_id == event.folder.id
                and event.change_type in sub.change_types
            ]
        for sub, item in pending:
            copies = 1
            with self._cond:
                if self._happens(self.config.notification_drop_rate):
                    copies = 0
                elif self._happens(self.config.notification_duplicate_rate):
                    copies = 2
            if copies == 0:
                self._record_drop(sub.notification_url, [item], "notification_drop_rate")
            for _ in range(copies):
                self._enqueue("change", sub.notification_url, item)

    def _happens(self, probability: float) -> bool:
        # No draw at probability 0, so a seeded sequence only advances when the knob is in use.
        return probability > 0 and self._random.random() < probability

    def fire_lifecycle(self, sub: Subscription, event: str) -> dict[str, Any] | None:
        """Queue a lifecycle notification to the subscription's lifecycleNotificationUrl; None when it has
        none (Graph then sends no lifecycle notifications)."""
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"lifecycle event must be one of {', '.join(LIFECYCLE_EVENTS)}")
        if sub.lifecycle_url is None:
            return None
        item = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": graph_time(sub.expiration),
            "tenantId": self.tenant_id,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        }
        self._enqueue("lifecycle", sub.lifecycle_url, item)
        return item

    def _enqueue(self, kind: str, url: str, item: dict[str, Any]) -> None:
        config = self.config
        now = time.monotonic()
        with self._cond:
            endpoint = self._endpoints.setdefault(url, Endpoint())
            state = endpoint.current(now)
            if state == "drop":
                dropped = True
            else:
                dropped = False
                batch = self._open.get((kind, url))
                if batch is None or len(batch.items) >= MAX_BATCH_ITEMS:
                    delay = (config.notification_delay_ms + config.notification_batch_ms) / 1000.0
                    if state == "slow":
                        delay += config.slow_endpoint_delay_s
                    batch = Batch(kind, url, [], now + delay, self._generation)
                    self._open[(kind, url)] = batch
                    self._push(batch)
                batch.items.append(item)
        if dropped:
            self._record_drop(url, [item], "endpoint dropped")

    def _push(self, batch: Batch) -> None:
        """Queue a batch (caller holds _cond) and make sure the dispatcher runs."""
        heapq.heappush(self._heap, (batch.due, next(self._order), batch))
        if self._thread is None and not self._closed:
            self._pool = ThreadPoolExecutor(DELIVERY_THREADS, thread_name_prefix="m365-notify")
            self._thread = threading.Thread(target=self._dispatch, name="m365-notifier", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    # ---- delivering ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._closed:
                    return
                _, _, batch = heapq.heappop(self._heap)
                if batch.open:
                    batch.open = False
                    if self._open.get((batch.kind, batch.url)) is batch:
                        del self._open[(batch.kind, batch.url)]
                self._in_flight += 1
                pool = self._pool
            assert pool is not None
            try:
                pool.submit(self._send, batch)
            except RuntimeError:  # close() shut the pool down meanwhile
                return

    def _send(self, batch: Batch) -> None:
        config = self.config
        try:
            first = batch.attempt == 1
            timeout = config.notification_timeout_s if first else config.notification_retry_timeout_s
            body = {"value": batch.items}
            answer = post(
                batch.url,
                json.dumps(body, ensure_ascii=False).encode("utf-8"),
                "application/json; charset=utf-8",
                timeout,
            )
            delivered = (
                answer.status is not None and 200 <= answer.status < 300 and answer.elapsed_s <= timeout
            )
            with self._cond:
                if batch.generation != self._generation:
                    return
                self._record(
                    "change" if batch.kind == "change" else "lifecycle",
                    batch.url,
                    batch.items,
                    batch.attempt,
                    answer,
                    body,
                )
                self._endpoints.setdefault(batch.url, Endpoint()).observe(
                    time.monotonic(),
                    slow=answer.status is None or answer.elapsed_s > config.notification_timeout_s,
                    unanswered=answer.status is None and batch.attempt > 1,
                    config=config,
                )
                if not delivered and batch.attempt < config.notification_max_attempts:
                    batch.due = time.monotonic() + config.notification_retry_base_s * 2 ** (batch.attempt - 1)
                    batch.attempt += 1
                    self._push(batch)
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    # ---- records, waiting, reset -----------------------------------------------------------------

    def _record(
        self,
        kind: str,
        url: str,
        items: list[dict[str, Any]],
        attempt: int,
        answer: Answer | None,
        body: Any,
        error: str | None = None,
    ) -> None:
        with self._cond:
            self._records.append(
                {
                    "seq": next(self._record_seq),
                    "kind": kind,
                    "url": url,
                    "subscriptionIds": sorted({item["subscriptionId"] for item in items}),
                    "attempt": attempt,
                    "status": answer.status if answer else None,
                    "error": answer.error if answer else error,
                    "elapsedMs": round(answer.elapsed_s * 1000, 1) if answer else 0.0,
                    "at": graph_time(time.time()),
                    "body": body,
                }
            )
            del self._records[:-MAX_RECORDS]

    def _record_drop(self, url: str, items: list[dict[str, Any]], reason: str) -> None:
        self._record("dropped", url, items, 0, None, {"value": items}, reason)

    def records(self) -> list[dict[str, Any]]:
        with self._cond:
            return json.loads(json.dumps(self._records))  # copies callers may change

    def reset_records(self) -> None:
        with self._cond:
            self._records = []

    def endpoints(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        with self._cond:
            return {
                url: {
                    "state": endpoint.current(now),
                    "answers": len(endpoint.answers),
                    "slow": sum(entry[1] for entry in endpoint.answers),
                    "unanswered": sum(entry[2] for entry in endpoint.answers),
                    "secondsLeft": round(max(0.0, endpoint.until - now), 1),
                }
                for url, endpoint in self._endpoints.items()
            }

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until nothing is queued (retries included) or in flight; False if `timeout_s` passed."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._heap or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def reseed(self) -> None:
        with self._cond:
            self._random = random.Random(self.config.fault_seed)

    def reset(self) -> None:
        """Forget queued deliveries, records and endpoint health; POSTs in flight finish unrecorded."""
        with self._cond:
            self._generation += 1
            self._heap = []
            self._open = {}
            self._records = []
            self._endpoints = {}
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            pool = self._pool
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def live_subscriptions(store: Store, now: float) -> list[Subscription]:
    """Subscriptions not yet expired; expired ones are deleted, as Graph deletes them (caller holds the
    store's lock)."""
    for sub_id in [sub.id for sub in store.subscriptions.values() if sub.expiration <= now]:
        del store.subscriptions[sub_id]
    return list(store.subscriptions.values())


def change_item(sub: Subscription, event: ContactEvent, tenant_id: str) -> dict[str, Any]:
    contact_id = event.mailbox.item_id(event.key, event.folder, sub.immutable)
    resource = f"Users/{sub.user}/Contacts/{contact_id}"
    return {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": graph_time(sub.expiration),
        "changeType": event.change_type,
        "resource": resource,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Contact",
            "@odata.id": resource,
            "@odata.etag": etag(event.change_key),
            "id": contact_id,
        },
        "clientState": sub.client_state,
        "tenantId": tenant_id,
    }
