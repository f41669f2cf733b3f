"""A tiny local webhook receiver for the emulator's change notifications (a real HTTP server, port 0)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Subscriber:
    """Answers the validation handshake and records every notification POST.

    Behaviour is set per instance: `validation` is "echo" (200 + token), "status" (500), "wrong" (200
    with another body) or "hang" (no answer for `delay_s`); `status` and `delay_s` shape the answer to
    notification POSTs; `statuses` (a list) overrides `status` for the next POSTs, one each; while
    `gate` is set to an unset Event, notification POSTs are held (counted in `held`) until it is set."""

    def __init__(self) -> None:
        self.validation = "echo"
        self.status = 202
        self.statuses: list[int] = []
        self.delay_s = 0.0
        self.gate: threading.Event | None = None
        self.held = 0
        self.validations: list[dict[str, str]] = []
        self.posts: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        subscriber = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                token = parse_qs(parts.query).get("validationToken")
                if token is not None:
                    subscriber._validate(self, parts.path, token[0])
                else:
                    subscriber._notification(self, parts, body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    def _answer(self, handler: BaseHTTPRequestHandler, status: int, body: bytes = b"") -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "text/plain; charset=utf-8")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:  # the emulator gave up waiting and closed the connection
            pass

    def _validate(self, handler: BaseHTTPRequestHandler, path: str, token: str) -> None:
        with self.changed:
            self.validations.append(
                {"path": path, "token": token, "content_type": handler.headers.get("Content-Type", "")}
            )
            self.changed.notify_all()
        if self.validation == "hang":
            time.sleep(self.delay_s)
        if self.validation == "status":
            self._answer(handler, 500)
        elif self.validation == "wrong":
            self._answer(handler, 200, b"not the token")
        else:
            self._answer(handler, 200, token.encode("utf-8"))

    def _notification(self, handler: BaseHTTPRequestHandler, parts: Any, body: bytes) -> None:
        with self.changed:
            status = self.statuses.pop(0) if self.statuses else self.status
            delay, gate = self.delay_s, self.gate
            self.held += gate is not None
            self.changed.notify_all()
        if gate is not None:
            gate.wait(10)
        if delay:
            time.sleep(delay)
        with self.changed:
            self.posts.append(
                {
                    "path": parts.path,
                    "query": parts.query,
                    "content_type": handler.headers.get("Content-Type", ""),
                    "body": json.loads(body),
                }
            )
            self.changed.notify_all()
        self._answer(handler, status)

    def items(self, path: str | None = None) -> list[dict[str, Any]]:
        """Every notification item received (on `path`, if given), in arrival order."""
        with self.changed:
            return [
                item
                for post in self.posts
                if path is None or post["path"] == path
                for item in post["body"]["value"]
            ]

    def wait_items(
        self, count: int, timeout_s: float = 10.0, path: str | None = None
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while len(self.items(path)) < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"expected {count} notifications, got {self.items(path)}"
                self.changed.wait(remaining)
            return self.items(path)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def running_subscriber() -> Iterator[Subscriber]:
    subscriber = Subscriber()
    try:
        yield subscriber
    finally:
        subscriber.stop()
