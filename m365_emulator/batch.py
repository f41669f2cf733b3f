"""POST /v1.0/$batch: up to 20 Graph requests in one, each answered on its own.

Items run through the same Router.run as top-level requests (faults, rate windows and item time apply
per item). The batch holds one concurrency slot per mailbox it touches; items for a mailbox whose slot
was refused answer 429 themselves, and the outer status stays 200. Items whose dependsOn prerequisite
failed answer 424. Responses come back shuffled unless shuffle_batch_responses is off.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .auth import me_as_user
from .config import MAX_BATCH_REQUESTS
from .errors import GraphError, bad_request
from .messages import Context, Request, Response, new_request_id

if TYPE_CHECKING:
    from .auth import Principal
    from .graph_routes import Router

_MAILBOX_IN_URL = re.compile(r"^/?users/([^/?]+)", re.IGNORECASE)


def _validate(payload: Any) -> list[dict[str, Any]]:
    if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
        raise bad_request("Invalid batch payload format.")
    items = payload["requests"]
    if not items:
        raise bad_request("Invalid batch payload format: the requests array is empty.")
    if len(items) > MAX_BATCH_REQUESTS:
        raise bad_request(f"Number of batch request steps exceeds the maximum of {MAX_BATCH_REQUESTS}.")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(key), str) for key in ("id", "method", "url")
        ):
            raise bad_request("Invalid batch payload format: each request needs string id, method and url.")
        if item["id"].lower() in seen:
            raise bad_request(f"Batch request step id '{item['id']}' is not unique.")
        seen.add(item["id"].lower())
    for item in items:
        depends = item.get("dependsOn", [])
        if not isinstance(depends, list) or any(
            not isinstance(dep, str) or dep.lower() not in seen or dep.lower() == item["id"].lower()
            for dep in depends
        ):
            raise bad_request(f"Batch request step '{item['id']}' has an invalid dependsOn.")
    return items


def _mailboxes(items: list[dict[str, Any]], principal: Principal | None) -> set[str]:
    found = set()
    for item in items:
        url = me_as_user("/" + item["url"].lstrip("/"), principal)
        match = _MAILBOX_IN_URL.match(url)
        if match:
            found.add(unquote(match.group(1)).lower())
    return found


def run_batch(router: Router, ctx: Context) -> Response:
    # Each item re-enters router.run, the same entry a top-level request takes, so items get the same
    # validation, faults, limits and stats. That makes this module and graph_routes call each other: the
    # Router routes POST /$batch here, and this calls the Router back.
    emulator = router.emulator
    try:
        items = _validate(ctx.request.json_body())
    except (ValueError, UnicodeDecodeError):
        raise bad_request("Invalid batch payload format.") from None
    by_id = {item["id"].lower(): item for item in items}
    slots: dict[str, GraphError | None] = {}
    for upn in sorted(_mailboxes(items, ctx.principal)):
        try:
            emulator.throttle.acquire(upn)
            slots[upn] = None
        except GraphError as refused:
            slots[upn] = refused
    results: dict[str, dict[str, Any]] = {}
    finish: dict[str, float] = {}
    try:

        def execute(key: str, visiting: frozenset[str]) -> None:
            if key in results:
                return
            if key in visiting:
                raise bad_request("Batch requests have a circular dependsOn.")
            item = by_id[key]
            depends = [dep.lower() for dep in item.get("dependsOn", [])]
            for dep in depends:
                execute(dep, visiting | {key})
            if any(results[dep]["status"] >= 400 for dep in depends):
                results[key] = _inner_error(
                    item["id"],
                    GraphError(
                        424,
                        "FailedDependency",
                        "The request could not be executed because a request it depends on failed.",
                    ),
                )
                finish[key] = ctx.not_before
                return
            inner = Context(_inner_request(item), inner=True, batch_slots=slots, principal=ctx.principal)
            inner.not_before = max([ctx.not_before, *(finish[dep] for dep in depends)])
            inner.done_at = inner.not_before
            results[key] = _run_inner(router, inner, item)
            finish[key] = inner.done_at

        for key in by_id:
            execute(key, frozenset())
    finally:
        for upn, refused in slots.items():
            if refused is None:
                emulator.throttle.release(upn)
    emulator.sleep_until(max(finish.values(), default=0.0))
    responses = list(results.values())
    emulator.shuffle(responses)
    return Response.json(200, {"responses": responses})


def _inner_request(item: dict[str, Any]) -> Request:
    headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
    body = item.get("body")
    raw = b"" if body is None else json.dumps(body).encode("utf-8")
    url = item["url"] if item["url"].startswith("/") else "/" + item["url"]
    return Request.from_target(item["method"], url, headers, raw)


def _run_inner(router: Router, inner: Context, item: dict[str, Any]) -> dict[str, Any]:
    emulator = router.emulator
    try:
        if item["url"].lower().startswith(("http:", "https:")):
            raise bad_request("Invalid request URI: batch request URLs must be relative to the version root.")
        if inner.request.body and not inner.request.header("content-type"):
            raise bad_request("Content-Type header must be specified when the request has a body.")
        response = router.run(inner)
        entry = _entry(item["id"], response)
    except GraphError as error:
        entry = _inner_error(item["id"], error)
    emulator.stats_.record(
        kind="inner",
        route=inner.route or f"{item['method'].upper()} (unmatched)",
        status=entry["status"],
        mailbox=inner.upn,
        outcome=inner.outcome,
    )
    if inner.preferences_applied:
        entry["headers"]["Preference-Applied"] = ", ".join(inner.preferences_applied)
    return entry


def _entry(item_id: str, response: Response) -> dict[str, Any]:
    headers = {name: value for name, value in response.headers.items() if name.lower() != "content-type"}
    entry: dict[str, Any] = {"id": item_id, "status": response.status, "headers": headers}
    if response.body:
        headers["Content-Type"] = "application/json"
        entry["body"] = response.json_payload()
    return entry


def _inner_error(item_id: str, error: GraphError) -> dict[str, Any]:
    return _entry(item_id, Response.error(error, new_request_id()))
