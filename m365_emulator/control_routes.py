"""/_emulator/*: knobs, counters, resets, mailboxes, the Outlook back door and change-notification
subscriptions, deliveries and lifecycle events, as plain JSON.

No auth, no faults, no limits and not counted in the Graph stats. Errors use Graph's envelope.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .config import config_as_dict
from .errors import GraphError, bad_request
from .messages import Request, Response, new_request_id

if TYPE_CHECKING:
    from .emulator import Emulator

Action = Callable[["Emulator", dict[str, str], Any], Any]


def _body(request: Request) -> Any:
    if not request.body:
        return {}
    try:
        return request.json_body()
    except ValueError:
        raise bad_request("The request body is not valid JSON.") from None


def _configure(emulator: Emulator, params: dict[str, str], body: Any) -> Any:
    if not isinstance(body, dict):
        raise bad_request("Send a JSON object of knobs.")
    try:
        return emulator.configure(**body)
    except (ValueError, TypeError) as error:
        raise bad_request(str(error)) from None


def _add_mailbox(emulator: Emulator, params: dict[str, str], body: Any) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("upn"), str) or not body["upn"].strip():
        raise bad_request('Send {"upn": "...", "rest_enabled": true}.')
    emulator.add_mailbox(body["upn"].strip(), bool(body.get("rest_enabled", True)))
    return {"upn": body["upn"].strip(), "rest_enabled": bool(body.get("rest_enabled", True))}


def _create_folder(emulator: Emulator, params: dict[str, str], body: Any) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("displayName"), str):
        raise bad_request('Send {"displayName": "...", "parent": null}.')
    return emulator.outlook(params["upn"]).create_folder(body["displayName"], body.get("parent"))


def _lifecycle(emulator: Emulator, params: dict[str, str], body: Any) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("event"), str):
        raise bad_request('Send {"event": "reauthorizationRequired" | "subscriptionRemoved" | "missed"}.')
    try:
        item = emulator.fire_lifecycle(params["id"], body["event"])
    except ValueError as error:
        raise bad_request(str(error)) from None
    return {"sent": item is not None, "item": item}


def _wait_notifications(emulator: Emulator, params: dict[str, str], body: Any) -> Any:
    timeout = body.get("timeout_s", 10) if isinstance(body, dict) else None
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 <= timeout <= 600:
        raise bad_request('Send {"timeout_s": <seconds, 0..600>}.')
    return {"idle": emulator.wait_notifications(float(timeout))}


def _contact_data(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("Send the contact as a JSON object.")
    return body


def _password(emulator: Emulator, params: dict[str, str], body: Any) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("password"), str | None):
        raise bad_request('Send {"password": "..."} (null: sign in by address alone).')
    emulator.auth.set_password(params["upn"], body.get("password"))
    return emulator.auth.user_state(params["upn"])


def _clock(emulator: Emulator, params: dict[str, str], body: Any) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("advance_s", 0), int | float):
        raise bad_request('Send {"advance_s": seconds}.')
    emulator.auth.advance_clock(float(body.get("advance_s", 0)))
    return _clock_state(emulator)


def _clock_state(emulator: Emulator) -> dict[str, Any]:
    now = emulator.auth.now()
    return {
        "now": datetime.fromtimestamp(now, UTC).isoformat(),
        "epoch": now,
        "offset_s": emulator.auth.clock_offset_s,
    }


def _add_certificate(emulator: Emulator, params: dict[str, str], body: Any) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("pem"), str):
        raise bad_request('Send {"pem": "-----BEGIN CERTIFICATE-----..."}.')
    try:
        return emulator.auth.add_certificate(body["pem"])
    except ValueError as error:
        raise bad_request(f"Not a usable certificate: {error}.") from None


def _user_switch(switch: Callable[[Emulator, str], None]) -> Action:
    def action(emulator: Emulator, params: dict[str, str], body: Any) -> Any:
        switch(emulator, params["upn"])
        return emulator.auth.user_state(params["upn"])

    return action


ROUTES: list[tuple[str, str, Action]] = [
    ("GET", "/config", lambda e, p, b: config_as_dict(e.config)),
    ("POST", "/config", _configure),
    ("GET", "/stats", lambda e, p, b: e.stats()),
    ("POST", "/stats/reset", lambda e, p, b: e.reset_stats()),
    ("POST", "/reset", lambda e, p, b: e.reset()),
    ("GET", "/subscriptions", lambda e, p, b: e.subscriptions()),
    ("POST", "/subscriptions/{id}/expire", lambda e, p, b: e.expire_subscription(p["id"])),
    ("POST", "/subscriptions/{id}/lifecycle", _lifecycle),
    ("GET", "/notifications", lambda e, p, b: e.notifications()),
    ("POST", "/notifications/reset", lambda e, p, b: e.reset_notifications()),
    ("POST", "/notifications/wait", _wait_notifications),
    ("GET", "/endpoints", lambda e, p, b: e.endpoints()),
    ("GET", "/mailboxes", lambda e, p, b: e.mailboxes()),
    ("POST", "/mailboxes", _add_mailbox),
    ("GET", "/mailboxes/{upn}/folders", lambda e, p, b: e.outlook(p["upn"]).list_folders()),
    ("POST", "/mailboxes/{upn}/folders", _create_folder),
    (
        "GET",
        "/mailboxes/{upn}/folders/{folder}/contacts",
        lambda e, p, b: e.outlook(p["upn"]).list_contacts(p["folder"]),
    ),
    (
        "POST",
        "/mailboxes/{upn}/folders/{folder}/contacts",
        lambda e, p, b: e.outlook(p["upn"]).create_contact(p["folder"], _contact_data(b)),
    ),
    ("GET", "/mailboxes/{upn}/contacts/{id}", lambda e, p, b: e.outlook(p["upn"]).get_contact(p["id"])),
    (
        "PATCH",
        "/mailboxes/{upn}/contacts/{id}",
        lambda e, p, b: e.outlook(p["upn"]).update_contact(p["id"], _contact_data(b)),
    ),
    ("DELETE", "/mailboxes/{upn}/contacts/{id}", lambda e, p, b: e.outlook(p["upn"]).delete_contact(p["id"])),
    ("GET", "/users/{upn}", lambda e, p, b: e.auth.user_state(p["upn"])),
    ("POST", "/users/{upn}/revoke-sessions", _user_switch(lambda e, upn: e.auth.revoke_sessions(upn))),
    ("POST", "/users/{upn}/password", _password),
    ("POST", "/users/{upn}/revoke-consent", _user_switch(lambda e, upn: e.auth.revoke_consent(upn))),
    ("POST", "/users/{upn}/require-mfa", _user_switch(lambda e, upn: e.auth.require_mfa(upn))),
    (
        "POST",
        "/users/{upn}/require-mfa-registration",
        _user_switch(lambda e, upn: e.auth.require_mfa_registration(upn)),
    ),
    (
        "POST",
        "/users/{upn}/sign-in-frequency",
        _user_switch(lambda e, upn: e.auth.enforce_sign_in_frequency(upn)),
    ),
    ("POST", "/users/{upn}/disable", _user_switch(lambda e, upn: e.auth.set_disabled(upn, True))),
    ("POST", "/users/{upn}/enable", _user_switch(lambda e, upn: e.auth.set_disabled(upn, False))),
    ("GET", "/clock", lambda e, p, b: _clock_state(e)),
    ("POST", "/clock", _clock),
    ("GET", "/certificates", lambda e, p, b: [e.auth.describe_certificate(c) for c in e.auth.certificates]),
    ("POST", "/certificates", _add_certificate),
    (
        "POST",
        "/mailboxes/{upn}/contacts/{id}/move",
        lambda e, p, b: e.outlook(p["upn"]).move_contact(p["id"], str(_contact_data(b).get("folder", ""))),
    ),
]
_COMPILED = [
    (method, re.compile("^/_emulator" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "/?$"), action)
    for method, template, action in ROUTES
]


def handle(emulator: Emulator, request: Request) -> Response:
    for method, pattern, action in _COMPILED:
        match = pattern.match(request.path)
        if match and method == request.method:
            params = {name: unquote(value) for name, value in match.groupdict().items()}
            try:
                result = action(emulator, params, _body(request))
            except GraphError as error:
                return Response.error(error, new_request_id())
            if result is None:
                return Response.empty(204)
            return Response.json(200, result)
    return Response.error(
        GraphError(404, "NotFound", f"No control endpoint at {request.method} {request.path}."),
        new_request_id(),
    )
