"""A small synchronous Microsoft Graph client for Outlook contact folders.

Every request carries a bearer token, ``Prefer: IdType="ImmutableId"`` (ids survive moves) and a
``client-request-id``. Graph's throttling rules are honoured here so callers need not think about
them: at most ``max_in_flight`` requests in flight per mailbox, each request (each inner request of a
``$batch``) paid for from the mailbox's `MailboxBudget` when one is given, 429/503/504 retried after
``Retry-After`` (exponential backoff with jitter without it), one token refresh on 401. Failures
raise the typed errors of `exchange_sync.graph.errors`; inside ``$batch`` they are returned per item.
"""

import contextlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from requests import RequestException, Response, Session

from .auth import TokenProvider
from .budget import MailboxBudget
from .errors import (
    APP_ACCESS_DENIED_HINT,
    FolderExists,
    GraphConnectionError,
    GraphError,
    ItemNotFound,
    error_from_response,
)

logger = logging.getLogger(__name__)

GRAPH_V1_URL = "https://graph.microsoft.com/v1.0"
IMMUTABLE_ID_PREFERENCE = 'IdType="ImmutableId"'
MAX_BATCH_SIZE = 20  # Graph's limit per $batch
RETRYABLE_STATUSES = frozenset({429, 503, 504})

# Characters left readable in query strings: OData needs $ ' ( ) : / and Graph accepts them as is.
# Everything else (space, &, +, #, =) is percent-encoded.
_QUERY_SAFE = "$'(),:/@"


@dataclass(frozen=True)
class BatchRequest:
    """One request inside a ``$batch``. ``url`` is relative to the version root, e.g.
    ``/users/ada@contoso.com/contactFolders/{fid}/contacts``; build it with the ``contact_*_request``
    helpers rather than by hand. ``id`` must be unique (case-insensitively) within one call."""

    id: str
    method: str
    url: str
    body: dict[str, Any] | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class BatchResult:
    """Graph's answer to one `BatchRequest`. ``error`` is set (and ``body`` is Graph's error
    envelope) when ``status`` is 400 or above."""

    id: str
    status: int
    body: Any
    error: GraphError | None = None


@dataclass
class DeltaPage:
    """One page of a delta round. ``delta_link`` is set only on the last page: store it and pass it
    to the next `GraphClient.delta` call."""

    changed: list[dict[str, Any]] = field(default_factory=list)
    removed_ids: list[str] = field(default_factory=list)
    delta_link: str | None = None


def _segment(value: str) -> str:
    # Ids may hold '=', '+' or '/'; UPNs hold '@', which is legal in a path segment.
    return quote(value, safe="@")


def _query(params: Mapping[str, str]) -> str:
    return urlencode(params, safe=_QUERY_SAFE, quote_via=quote)


def _odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def mailbox_path(mailbox: str) -> str:
    return f"/users/{_segment(mailbox)}"


def folder_path(mailbox: str, folder_id: str) -> str:
    return f"{mailbox_path(mailbox)}/contactFolders/{_segment(folder_id)}"


def contacts_path(mailbox: str, folder_id: str) -> str:
    return f"{folder_path(mailbox, folder_id)}/contacts"


def contact_path(mailbox: str, folder_id: str, contact_id: str) -> str:
    return f"{contacts_path(mailbox, folder_id)}/{_segment(contact_id)}"


def folder_resource(mailbox: str, folder_id: str) -> str:
    """The resource a subscription on the folder's contacts names (no leading slash, as Graph shows it)."""
    return contacts_path(mailbox, folder_id).lstrip("/")


def _graph_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def contact_create_request(*, id: str, mailbox: str, folder_id: str, contact: dict[str, Any]) -> BatchRequest:
    return BatchRequest(id=id, method="POST", url=contacts_path(mailbox, folder_id), body=contact)


def contact_update_request(
    *,
    id: str,
    mailbox: str,
    folder_id: str,
    contact_id: str,
    changes: dict[str, Any],
    if_match: str | None = None,
) -> BatchRequest:
    """``if_match`` is the contact's ``@odata.etag`` as last read; Graph answers 412 if it changed."""
    return BatchRequest(
        id=id,
        method="PATCH",
        url=contact_path(mailbox, folder_id, contact_id),
        body=changes,
        headers={"If-Match": if_match} if if_match else None,
    )


def contact_delete_request(*, id: str, mailbox: str, folder_id: str, contact_id: str) -> BatchRequest:
    return BatchRequest(id=id, method="DELETE", url=contact_path(mailbox, folder_id, contact_id))


def _contact_query(select: list[str] | None, expand_extended: list[str] | None) -> dict[str, str]:
    params = {}
    if select:
        params["$select"] = ",".join(select)
    if expand_extended:
        wanted = " or ".join(f"id eq {_odata_string(property_id)}" for property_id in expand_extended)
        params["$expand"] = f"singleValueExtendedProperties($filter={wanted})"
    return params


def _parse_body(response: Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None  # an HTTP date; Graph sends seconds, so fall back to backoff
    return None


class GraphClient:
    """Microsoft Graph, v1.0, for one application. Thread-safe; share one per sync run (the
    per-mailbox in-flight limit and the request counters are per client)."""

    def __init__(
        self,
        *,
        token_provider: TokenProvider,
        session: Session,
        access_denied_hint: str = APP_ACCESS_DENIED_HINT,
        base_url: str = GRAPH_V1_URL,
        max_in_flight: int = 4,
        max_retries: int = 5,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        budget: MailboxBudget | None = None,
    ) -> None:
        self.token_provider = token_provider
        self.session = session
        self.access_denied_hint = access_denied_hint
        self.base_url = base_url.rstrip("/")
        self.max_in_flight = max_in_flight
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.sleep = sleep
        self.budget = budget
        self._mailbox_slots: dict[str, threading.BoundedSemaphore] = {}
        # Budget use not yet paid and 429 blocks not yet shared, by mailbox: $batch threads note them
        # and the calling thread settles them, so only the caller's database connection is used.
        self._unpaid: dict[str, int] = {}
        self._blocked_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._requests_sent = 0
        self._batch_items_sent = 0
        self._read_ahead: dict[str, Future[dict[str, Any]]] = {}  # delta link -> its first page

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent to Graph so far, retries included (a ``$batch`` counts as one)."""
        with self._lock:
            return self._requests_sent

    @property
    def batch_items_sent(self) -> int:
        """Requests sent inside ``$batch`` calls so far, retried items included."""
        with self._lock:
            return self._batch_items_sent

    # --- folders -------------------------------------------------------------------------------

    def check_mailbox(self, *, mailbox: str) -> None:
        """Prove the mailbox answers for this app (raises `MailboxNotFound`, `AccessDenied`, ...)."""
        self._call("GET", f"{mailbox_path(mailbox)}/contactFolders?$top=1", mailbox=mailbox)

    def find_contact_folder(self, *, mailbox: str, display_name: str) -> dict[str, Any] | None:
        """The child folder of the default Contacts folder with this name, or None."""
        query = _query({"$filter": f"displayName eq {_odata_string(display_name)}"})
        body = self._call("GET", f"{mailbox_path(mailbox)}/contactFolders?{query}", mailbox=mailbox)
        folders = body.get("value", [])
        return folders[0] if folders else None

    def create_contact_folder(self, *, mailbox: str, display_name: str) -> dict[str, Any]:
        """Create the folder under the default Contacts folder; if another run created it meanwhile,
        return that one."""
        try:
            return self._call(
                "POST",
                f"{mailbox_path(mailbox)}/contactFolders",
                mailbox=mailbox,
                json={"displayName": display_name},
            )
        except FolderExists:
            folder = self.find_contact_folder(mailbox=mailbox, display_name=display_name)
            if folder is None:
                raise
            return folder

    def rename_contact_folder(self, *, mailbox: str, folder_id: str, display_name: str) -> dict[str, Any]:
        """Rename the folder; its contacts, their ids and the folder's delta links stay valid. Raises
        `FolderExists` when a sibling already has the name."""
        return self._call(
            "PATCH", folder_path(mailbox, folder_id), mailbox=mailbox, json={"displayName": display_name}
        )

    def delete_contact_folder(self, *, mailbox: str, folder_id: str) -> None:
        self._call("DELETE", folder_path(mailbox, folder_id), mailbox=mailbox)

    def get_contact_folder(self, *, mailbox: str, folder_id: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", folder_path(mailbox, folder_id), mailbox=mailbox)
        except ItemNotFound:
            return None

    # --- contacts --------------------------------------------------------------------------------

    def list_contacts(
        self,
        *,
        mailbox: str,
        folder_id: str,
        select: list[str] | None = None,
        page_size: int = 1000,
        expand_extended: list[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every contact in the folder, page by page. ``expand_extended`` names single-value extended
        property ids to return under ``singleValueExtendedProperties``."""
        query = _query({"$top": str(page_size), **_contact_query(select, expand_extended)})
        for page in self._pages(f"{contacts_path(mailbox, folder_id)}?{query}", mailbox=mailbox):
            yield from page.get("value", [])

    def get_contact(
        self,
        *,
        mailbox: str,
        folder_id: str,
        contact_id: str,
        select: list[str] | None = None,
        expand_extended: list[str] | None = None,
    ) -> dict[str, Any] | None:
        """The contact, or None if it no longer exists."""
        url = contact_path(mailbox, folder_id, contact_id)
        params = _contact_query(select, expand_extended)
        if params:
            url = f"{url}?{_query(params)}"
        try:
            return self._call("GET", url, mailbox=mailbox)
        except ItemNotFound:
            return None

    def create_contact(self, *, mailbox: str, folder_id: str, contact: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", contacts_path(mailbox, folder_id), mailbox=mailbox, json=contact)

    def update_contact(
        self,
        *,
        mailbox: str,
        folder_id: str,
        contact_id: str,
        changes: dict[str, Any],
        if_match: str | None = None,
    ) -> dict[str, Any]:
        """PATCH the contact; with ``if_match`` (its ``@odata.etag``) a concurrent change raises
        `PreconditionFailed` instead of being overwritten."""
        headers = {"If-Match": if_match} if if_match else None
        return self._call(
            "PATCH",
            contact_path(mailbox, folder_id, contact_id),
            mailbox=mailbox,
            json=changes,
            headers=headers,
        )

    def delete_contact(self, *, mailbox: str, folder_id: str, contact_id: str) -> None:
        """Delete the contact; raises `ItemNotFound` if it was already gone."""
        self._call("DELETE", contact_path(mailbox, folder_id, contact_id), mailbox=mailbox)

    # --- change notifications --------------------------------------------------------------------

    def create_subscription(
        self,
        *,
        mailbox: str,
        resource: str,
        notification_url: str,
        lifecycle_url: str,
        client_state: str,
        expires_at: datetime,
    ) -> dict[str, Any]:
        """Subscribe to created, updated and deleted contacts of `resource` (see `folder_resource`).
        Graph first POSTs a validation request to both URLs and answers 400 if one does not echo it."""
        return self._call(
            "POST",
            "/subscriptions",
            mailbox=mailbox,
            json={
                "changeType": "created,updated,deleted",
                "resource": resource,
                "notificationUrl": notification_url,
                "lifecycleNotificationUrl": lifecycle_url,
                "clientState": client_state,
                "expirationDateTime": _graph_datetime(expires_at),
            },
        )

    def renew_subscription(
        self, *, mailbox: str, subscription_id: str, expires_at: datetime
    ) -> dict[str, Any]:
        """Move the expiry; raises `ItemNotFound` when Graph has already removed the subscription."""
        return self._call(
            "PATCH",
            f"/subscriptions/{_segment(subscription_id)}",
            mailbox=mailbox,
            json={"expirationDateTime": _graph_datetime(expires_at)},
        )

    def reauthorize_subscription(self, *, mailbox: str, subscription_id: str) -> None:
        self._call("POST", f"/subscriptions/{_segment(subscription_id)}/reauthorize", mailbox=mailbox)

    def delete_subscription(self, *, mailbox: str, subscription_id: str) -> None:
        """Delete the subscription; one Graph has already removed is gone all the same."""
        with contextlib.suppress(ItemNotFound):
            self._call("DELETE", f"/subscriptions/{_segment(subscription_id)}", mailbox=mailbox)

    def list_subscriptions(self, *, mailbox: str) -> list[dict[str, Any]]:
        """This app's subscriptions (Graph leaves their clientState out)."""
        return [
            item for page in self._pages("/subscriptions", mailbox=mailbox) for item in page.get("value", [])
        ]

    def delta(
        self,
        *,
        mailbox: str,
        folder_id: str,
        delta_link: str | None,
        select: list[str] | None = None,
        page_size: int = 200,
    ) -> Iterator[DeltaPage]:
        """Changes in the folder since ``delta_link`` (everything, when it is None), one page at a
        time so a 100k-contact folder never sits in memory. Only the last page carries the new
        ``delta_link``; store it only after the whole round was processed.

        Raises `SyncStateExpired` when Graph no longer knows the link: do a full resync (call again
        with ``delta_link=None``). ``select`` applies to the first round only; the link keeps it.
        """
        first_page = None
        if delta_link:
            url = delta_link
            first_page = self._read_ahead.pop(delta_link, None)
        else:
            url = f"{contacts_path(mailbox, folder_id)}/delta"
            if select:
                url = f"{url}?{_query({'$select': ','.join(select)})}"
        for page in self._pages(url, mailbox=mailbox, max_page_size=page_size, first_page=first_page):
            changed: list[dict[str, Any]] = []
            removed_ids: list[str] = []
            for item in page.get("value", []):
                if "@removed" in item:
                    removed_ids.append(item["id"])
                else:
                    changed.append(item)
            yield DeltaPage(changed=changed, removed_ids=removed_ids, delta_link=page.get("@odata.deltaLink"))

    def read_ahead_delta(self, *, mailbox: str, delta_link: str, page_size: int = 200) -> None:
        """Ask for the first page of a delta round from `delta_link` now, in a thread of its own: the
        next `delta` from that link starts with its answer (or raises its error). A caller that must
        check something first, such as the folder, then waits for both round trips at once. The
        request is paid for from the budget here, in the calling thread; the thread uses no database."""
        self.token_provider.access_token()  # a refresh writes a delegated token cache: not in the thread
        self._note_use(mailbox, 1)
        self._settle(mailbox)
        pool = ThreadPoolExecutor(max_workers=1)
        self._read_ahead[delta_link] = pool.submit(
            self._call, "GET", delta_link, mailbox=mailbox, max_page_size=page_size, from_pool=True
        )
        pool.shutdown(wait=False)

    # --- $batch ----------------------------------------------------------------------------------

    def batch(self, *, mailbox: str, requests: Sequence[BatchRequest]) -> list[BatchResult]:
        """Send ``requests`` for one mailbox as ``$batch`` calls and return one result per request,
        in input order. See `batch_iter` for the behaviour; use it instead to act on results as
        each ``$batch`` lands."""
        by_id: dict[str, BatchResult] = {}
        for results in self.batch_iter(mailbox=mailbox, requests=requests):
            by_id.update((result.id, result) for result in results)
        return [by_id[request.id] for request in requests]

    def batch_iter(
        self,
        *,
        mailbox: str,
        requests: Sequence[BatchRequest],
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[list[BatchResult]]:
        """Send ``requests`` for one mailbox in ``$batch`` calls of at most 20, up to
        ``max_in_flight`` calls at once, and yield each call's results as soon as it has landed.

        Each yielded list holds the results of one chunk of consecutive input requests, in input
        order; chunks arrive in the order they finish. Write your bookkeeping for a chunk before
        pulling the next one: if the process dies, everything already yielded is done in Graph.
        (Other chunks keep going meanwhile, so a few not yet yielded may be done too; a rerun must
        reconcile them, e.g. by matching unlinked contacts by email.)

        Per-item failures come back as `BatchResult.error`, never raised, so one bad item never
        fails its neighbours. Items answered 429/503/504 are resent (only they) after the longest
        inner ``Retry-After``, up to ``max_retries`` times; items answered 401 are resent once
        with a fresh token. A failure of a whole ``$batch`` call (network, 401 after refresh,
        throttling beyond the retries) raises; results already yielded stand. Stopping the
        iteration early cancels the chunks not yet sent. Once ``stop()`` is true, chunks not yet sent
        are not sent and yield nothing: the requests missing from the results never reached Graph.
        """
        seen: set[str] = set()
        for request in requests:
            if request.id.lower() in seen:
                raise ValueError(f"Duplicate batch request id {request.id!r} (ids are case-insensitive)")
            seen.add(request.id.lower())
        chunks = [
            requests[start : start + MAX_BATCH_SIZE] for start in range(0, len(requests), MAX_BATCH_SIZE)
        ]
        if not chunks:
            return
        # Chunks are paid for here, in the calling thread, as they are handed to the pool; a few wait
        # in the pool beyond those in flight, so a thread that frees up never waits for this loop.
        lookahead = 2 * self.max_in_flight
        with ThreadPoolExecutor(max_workers=min(self.max_in_flight, len(chunks))) as pool:
            queued: set[Future[list[BatchResult]]] = set()
            try:
                for chunk in chunks:
                    if len(queued) >= lookahead:
                        done, queued = wait(queued, return_when=FIRST_COMPLETED)
                        yield from (future.result() for future in done)
                    if stop is not None and stop():
                        break
                    self._note_use(mailbox, len(chunk))
                    self._settle(mailbox)
                    queued.add(pool.submit(self._send_batch_chunk, mailbox, chunk))
                if stop is not None and stop():
                    queued = {future for future in queued if not future.cancel()}
                for future in as_completed(queued):
                    yield future.result()
            finally:
                for future in queued:
                    future.cancel()
        self._settle(mailbox)

    def _send_batch_chunk(self, mailbox: str, chunk: Sequence[BatchRequest]) -> list[BatchResult]:
        """Runs in a pool thread: no database here (see `_settle`)."""
        pending = {request.id: request for request in chunk}
        results: dict[str, BatchResult] = {}
        attempt = 0
        token_refreshed = False
        while pending:
            if attempt or token_refreshed:
                self._note_use(mailbox, len(pending))  # a resend costs again; the caller pays it later
            answers = self._post_batch(mailbox, list(pending.values()))
            retry_delays: list[float] = []
            unauthorized = False
            for request_id in list(pending):
                answer = answers.get(request_id.lower())
                if answer is None:
                    # Resending could duplicate a create that did happen; report it instead.
                    error = GraphError(
                        f"Microsoft 365 did not answer request {request_id} of a $batch for {mailbox}.",
                        status=None,
                    )
                    results[request_id] = BatchResult(id=request_id, status=0, body=None, error=error)
                    del pending[request_id]
                    continue
                status = int(answer.get("status", 0))
                headers = answer.get("headers") or {}
                if status in RETRYABLE_STATUSES and attempt < self.max_retries:
                    retry_delays.append(self._retry_delay_s(headers, attempt))
                    continue
                if status == 401 and not token_refreshed:
                    unauthorized = True
                    continue
                body = answer.get("body")
                error = (
                    error_from_response(
                        status=status,
                        body=body,
                        headers=headers,
                        mailbox=mailbox,
                        access_denied_hint=self.access_denied_hint,
                    )
                    if status >= 400
                    else None
                )
                results[request_id] = BatchResult(id=request_id, status=status, body=body, error=error)
                del pending[request_id]
            if unauthorized:
                self.token_provider.access_token(force_refresh=True)
                token_refreshed = True
            if retry_delays and pending:
                delay = max(retry_delays)
                if any(int((answers.get(key.lower()) or {}).get("status", 0)) == 429 for key in pending):
                    self._block(mailbox, delay)
                logger.info(
                    "Graph throttled %d of a $batch for %s; resending them in %.1fs (attempt %d of %d)",
                    len(retry_delays),
                    mailbox,
                    delay,
                    attempt + 1,
                    self.max_retries,
                )
                self.sleep(delay)
                attempt += 1
        return [results[request.id] for request in chunk]

    def _post_batch(self, mailbox: str, requests: list[BatchRequest]) -> dict[str, dict[str, Any]]:
        """POST one $batch; Graph's answers keyed by lower-cased id (they come in any order)."""
        payload = {"requests": [self._batch_entry(request) for request in requests]}
        with self._lock:
            self._batch_items_sent += len(requests)
        body = self._call(
            "POST", "/$batch", mailbox=mailbox, json=payload, cost=len(requests), from_pool=True
        )
        return {str(answer.get("id")).lower(): answer for answer in body.get("responses", [])}

    @staticmethod
    def _batch_entry(request: BatchRequest) -> dict[str, Any]:
        # Outer headers do not reach inner requests, so each carries its own Prefer.
        headers = {"Prefer": IMMUTABLE_ID_PREFERENCE}
        entry: dict[str, Any] = {"id": request.id, "method": request.method, "url": request.url}
        if request.body is not None:
            headers["Content-Type"] = "application/json"
            entry["body"] = request.body
        entry["headers"] = {**headers, **(request.headers or {})}
        return entry

    # --- HTTP ------------------------------------------------------------------------------------

    def _pages(
        self,
        url: str,
        *,
        mailbox: str,
        max_page_size: int | None = None,
        first_page: Future[dict[str, Any]] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Each page of a collection, following ``@odata.nextLink`` verbatim (it is opaque);
        `first_page`: the answer to `url` already asked for."""
        next_url: str | None = url
        while next_url:
            if first_page is not None:
                page, first_page = first_page.result(), None
            else:
                page = self._call("GET", next_url, mailbox=mailbox, max_page_size=max_page_size)
            yield page
            next_url = page.get("@odata.nextLink")

    def _call(
        self,
        method: str,
        url: str,
        *,
        mailbox: str,
        json: Any = None,
        headers: dict[str, str] | None = None,
        max_page_size: int | None = None,
        cost: int = 1,
        from_pool: bool = False,
    ) -> Any:
        """Send with retries and return the parsed body, or raise the typed error. ``cost``: the
        requests Outlook counts (a ``$batch`` counts those inside it). ``from_pool``: sent from a pool
        thread (no database): its first attempt is already noted, and the caller settles the rest."""
        response = self._send(
            method,
            url,
            mailbox=mailbox,
            json=json,
            headers=headers,
            max_page_size=max_page_size,
            cost=cost,
            from_pool=from_pool,
        )
        body = _parse_body(response)
        if response.status_code >= 400:
            raise error_from_response(
                status=response.status_code,
                body=body,
                headers=response.headers,
                mailbox=mailbox,
                access_denied_hint=self.access_denied_hint,
            )
        return body

    def _send(
        self,
        method: str,
        url: str,
        *,
        mailbox: str,
        json: Any,
        headers: dict[str, str] | None,
        max_page_size: int | None,
        cost: int,
        from_pool: bool,
    ) -> Response:
        """One logical request: refreshes the token once on 401 and retries 429/503/504 with
        backoff. Returns the last response, successful or not."""
        if url.startswith("/"):  # ours are relative; Graph's own links are absolute
            url = self.base_url + url
        prefer = IMMUTABLE_ID_PREFERENCE
        if max_page_size:
            prefer = f"{prefer}, odata.maxpagesize={max_page_size}"
        # One id for all attempts, so Microsoft support can follow a request through its retries.
        request_headers = {"Prefer": prefer, "client-request-id": str(uuid.uuid4()), **(headers or {})}
        attempt = 0
        token_refreshed = False
        force_refresh = False
        while True:
            token = self.token_provider.access_token(force_refresh=force_refresh)
            force_refresh = False
            if attempt or token_refreshed or not from_pool:
                self._note_use(mailbox, cost)
            if not from_pool:
                self._settle(mailbox)
            response = self._send_once(
                method,
                url,
                mailbox=mailbox,
                json=json,
                headers={**request_headers, "Authorization": f"Bearer {token}"},
            )
            status = response.status_code
            if status == 401 and not token_refreshed:
                token_refreshed = force_refresh = True
                logger.info("Graph rejected the access token for %s; refreshing it once", mailbox)
                continue
            if status == 429:
                # Whether or not this client retries, nobody else should send before Retry-After.
                self._block(mailbox, self._retry_delay_s(response.headers, attempt))
                if not from_pool:
                    self._settle(mailbox)  # tell the other hosts now, not after the wait
            if status not in RETRYABLE_STATUSES or attempt >= self.max_retries:
                return response
            delay = self._retry_delay_s(response.headers, attempt)
            logger.info(
                "Graph answered %d to %s %s for %s; retrying in %.1fs (attempt %d of %d)",
                status,
                method,
                urlsplit(url).path,
                mailbox,
                delay,
                attempt + 1,
                self.max_retries,
            )
            self.sleep(delay)
            attempt += 1

    def _send_once(
        self, method: str, url: str, *, mailbox: str, json: Any, headers: dict[str, str]
    ) -> Response:
        with self._mailbox_slot(mailbox):
            with self._lock:
                self._requests_sent += 1
            try:
                return self.session.request(method, url, json=json, headers=headers)
            except RequestException as exc:
                raise GraphConnectionError(
                    f"Could not reach Microsoft 365 for {mailbox} ({method} {urlsplit(url).path}): "
                    f"{type(exc).__name__}. Check the network, then try again."
                ) from exc

    def _note_use(self, mailbox: str, cost: int) -> None:
        if self.budget is not None:
            with self._lock:
                self._unpaid[mailbox] = self._unpaid.get(mailbox, 0) + cost

    def _block(self, mailbox: str, seconds: float) -> None:
        if self.budget is not None:
            with self._lock:
                until = time.monotonic() + seconds
                self._blocked_until[mailbox] = max(until, self._blocked_until.get(mailbox, 0.0))

    def _settle(self, mailbox: str) -> None:
        """In the calling thread: share the 429 blocks noted so far, then wait until the mailbox's
        budget has the requests noted to spare and spend them."""
        if self.budget is None:
            return
        with self._lock:
            unpaid = self._unpaid.pop(mailbox, 0)
            blocked_until = self._blocked_until.pop(mailbox, None)
        if blocked_until is not None and blocked_until > time.monotonic():
            self.budget.block(mailbox=mailbox, seconds=blocked_until - time.monotonic())
        while unpaid and (delay := self.budget.take(mailbox=mailbox, requests=unpaid)) > 0:
            self.sleep(delay)

    def _mailbox_slot(self, mailbox: str) -> threading.BoundedSemaphore:
        # Outlook allows 4 concurrent requests per app and mailbox; more just earn 429s.
        key = mailbox.casefold()
        with self._lock:
            slot = self._mailbox_slots.get(key)
            if slot is None:
                slot = self._mailbox_slots[key] = threading.BoundedSemaphore(self.max_in_flight)
            return slot

    def _retry_delay_s(self, headers: Mapping[str, str], attempt: int) -> float:
        """Graph's ``Retry-After`` when given (every retry counts against the quota, so wait exactly
        that), else exponential backoff with jitter so parallel workers do not retry in step."""
        retry_after = _retry_after_s(headers)
        if retry_after is not None:
            return retry_after
        delay = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        return delay * random.uniform(0.5, 1.0)
