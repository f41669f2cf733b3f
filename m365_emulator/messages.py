"""Transport-neutral request and response values.

The HTTP server, the $batch executor and the in-process helpers all speak these, so an inner batch
request goes through exactly the same router as a top-level one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

JSON_CONTENT_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"


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
        return json.loads(self.body.decode("utf-8"))


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
