"""Transport-neutral request and response values.

The HTTP server, the $batch executor and the in-process helpers all speak these, so an inner batch
request goes through exactly the same router as a top-level one.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .errors import GraphError
from .text import has_lone_surrogate, may_hold_surrogates

if TYPE_CHECKING:
    from .auth import Principal

IMMUTABLE_PREFERENCE = re.compile(r'IdType\s*=\s*"?ImmutableId"?', re.IGNORECASE)
JSON_CONTENT_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"


def new_request_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Request:
    method: str
    path: str  # percent-encoded path as sent, without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes = b""

    @classmethod
    def from_target(cls, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Request:
        parts = urlsplit(target)
        return cls(
            method=method.upper(),
            path=parts.path or "/",
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in headers.items()},
            body=body,
        )

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json_body(self) -> Any:
        """The body as JSON; ValueError when it is not JSON or a string in it is not valid Unicode."""
        text = self.body.decode("utf-8")
        value = json.loads(text)
        if may_hold_surrogates(text) and has_lone_surrogate(value):
            raise ValueError("a string in the body holds a lone UTF-16 surrogate")
        return value


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        all_headers = {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})}
        return cls(status, all_headers, json.dumps(payload, ensure_ascii=False).encode("utf-8"))

    @classmethod
    def error(cls, error: GraphError, request_id: str, client_request_id: str = "") -> Response:
        """Graph's error envelope; a client that sent no client-request-id gets the request id echoed."""
        inner = {
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": client_request_id or request_id,
        }
        body = {"error": {"code": error.code, "message": error.message, "innerError": inner}}
        return cls.json(error.status, body, error.headers)

    @classmethod
    def empty(cls, status: int = 204, headers: dict[str, str] | None = None) -> Response:
        return cls(status, dict(headers or {}), b"")

    @classmethod
    def html(cls, status: int, text: str) -> Response:
        return cls(status, {"Content-Type": "text/html; charset=utf-8"}, text.encode("utf-8"))

    @classmethod
    def redirect(cls, location: str) -> Response:
        return cls(303, {"Location": location}, b"")

    def json_payload(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Context:
    """One Graph request in flight (top-level or a $batch item)."""

    request: Request
    inner: bool = False
    not_before: float = field(default_factory=time.monotonic)  # items may start from here (monotonic)
    done_at: float = 0.0  # when the request's last item finishes
    route: str = ""  # matched template, e.g. "GET /users/{upn}/contacts", for stats
    upn: str | None = None
    outcome: str = ""  # "throttled" / "faulted" for stats
    preferences_applied: list[str] = field(default_factory=list)
    batch_slots: dict[str, GraphError | None] = field(default_factory=dict)  # upn -> denial, for batch items
    principal: Principal | None = None  # whom the access token speaks for (a batch's items share it)

    @property
    def immutable(self) -> bool:
        return bool(IMMUTABLE_PREFERENCE.search(self.request.header("prefer")))
