"""The Emulator: state, knobs, counters, and the top-level dispatch of every HTTP request."""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from . import control_routes, html
from .auth import Auth
from .config import ACTIONS, EmulatorConfig, coerce_knob, config_as_dict
from .errors import GraphError
from .graph_routes import Router
from .messages import Context, Request, Response
from .outlook import Outlook
from .persistence import DebouncedSaver, load_store
from .state import Store
from .stats import Stats
from .throttle import Throttle

_OPENID = re.compile(r"^/([^/]+)(?:/v2\.0)?/\.well-known/openid-configuration$", re.IGNORECASE)
_TOKEN = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$", re.IGNORECASE)
_INSTANCE_DISCOVERY = re.compile(r"^/common/discovery/instance$", re.IGNORECASE)
_GRAPH = re.compile(r"^/v1\.0(?=/|$)", re.IGNORECASE)


class Emulator:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.lock = threading.RLock()  # guards self.store
        self.auth = Auth(config)
        self.throttle = Throttle(config)
        self.stats_ = Stats()
        self.router = Router(self)
        self.delta_valid_after = 0.0  # delta tokens issued before this (epoch seconds) are expired
        self._shuffle_random = random.Random(config.fault_seed)
        loaded = load_store(config.state_file) if config.state_file else None
        self.store = loaded or Store()
        for upn in config.mailboxes:
            if upn.lower() not in self.store.mailboxes:
                self.store.add_mailbox(upn)
        self._saver = (
            DebouncedSaver(config.state_file, config.save_debounce_s, self._snapshot)
            if config.state_file
            else None
        )

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
        with self.lock:
            self.store = Store()
            for upn in self.config.mailboxes:
                self.store.add_mailbox(upn)
        self.throttle.reset()
        self.mutated()

    def add_mailbox(self, upn: str, rest_enabled: bool = True) -> None:
        with self.lock:
            self.store.add_mailbox(upn, rest_enabled)
        self.mutated()

    def mailboxes(self) -> list[dict[str, Any]]:
        with self.lock:
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
        return Outlook(self, upn)

    def close(self) -> None:
        """Write any pending state to the state file."""
        if self._saver is not None:
            self._saver.flush()

    # ---- hooks used by the routes -----------------------------------------------------------------

    def mutated(self) -> None:
        if self._saver is not None:
            self._saver.mark_dirty()

    def _snapshot(self) -> dict[str, Any]:
        with self.lock:
            return self.store.to_json()

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
            with self.lock:
                self._shuffle_random.shuffle(items)

    @staticmethod
    def new_request_id() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def error_response(error: GraphError, request_id: str, client_request_id: str) -> Response:
        inner = {
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": client_request_id or request_id,
        }
        body = {"error": {"code": error.code, "message": error.message, "innerError": inner}}
        return Response.json(error.status, body, error.headers)

    # ---- HTTP entry point -------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        request_id = self.new_request_id()
        client_request_id = request.header("client-request-id") or request_id
        try:
            response = self._dispatch(request, request_id, client_request_id)
        except GraphError as error:
            response = self.error_response(error, request_id, client_request_id)
        response.headers.setdefault("request-id", request_id)
        response.headers.setdefault("client-request-id", client_request_id)
        return response

    def _dispatch(self, request: Request, request_id: str, client_request_id: str) -> Response:
        path = request.path
        if path == "/_emulator" or path.startswith("/_emulator/"):
            return control_routes.handle(self, request)
        if path == "/" or path.startswith("/_ui/"):
            return html.handle(self, request)
        graph = _GRAPH.match(path)
        if graph:
            return self._graph(request, path[graph.end() :] or "/", request_id, client_request_id)
        return self._sign_in(request)

    def _graph(self, request: Request, path: str, request_id: str, client_request_id: str) -> Response:
        ctx = Context(Request(request.method, path, request.query, request.headers, request.body))
        try:
            self.auth.check_bearer(request)
            response = self.router.run(ctx)
        except GraphError as error:
            response = self.error_response(error, request_id, client_request_id)
        if ctx.preferences_applied and response.status < 400:
            response.headers["Preference-Applied"] = ", ".join(ctx.preferences_applied)
        self.stats_.record(
            kind="graph",
            route=ctx.route or f"{request.method} (unmatched)",
            status=response.status,
            mailbox=ctx.upn,
            outcome=ctx.outcome,
        )
        return response

    def _sign_in(self, request: Request) -> Response:
        path = request.path
        token = _TOKEN.match(path)
        if token and request.method == "POST":
            self.sleep_latency()
            response = self.auth.token(token.group(1), request)
            self.stats_.record(kind="token", route="POST /{tenant}/oauth2/v2.0/token", status=response.status)
            return response
        if request.method == "GET" and _INSTANCE_DISCOVERY.match(path):
            response = self.auth.instance_discovery(request)
            route = "GET /common/discovery/instance"
        elif request.method == "GET" and (openid := _OPENID.match(path)):
            response = self.auth.openid_configuration(openid.group(1))
            route = "GET /{tenant}/v2.0/.well-known/openid-configuration"
        else:
            raise GraphError(404, "NotFound", f"No emulated endpoint at {request.method} {path}.")
        self.sleep_latency()
        self.stats_.record(kind="auth", route=route, status=response.status)
        return response
