"""HTTP front end: Front routes every request (sign-in, Graph, /_emulator, the Outlook page), and a
stdlib ThreadingHTTPServer hands each request to it."""

from __future__ import annotations

import re
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import control_routes, html
from .config import EmulatorConfig
from .emulator import Emulator
from .errors import GraphError
from .graph_routes import Router
from .jose import SigningKey
from .messages import Context, Request, Response, new_request_id
from .signin import SignIn

_OPENID = re.compile(r"^/([^/]+)(?:/v2\.0)?/\.well-known/openid-configuration$", re.IGNORECASE)
_TOKEN = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$", re.IGNORECASE)
_AUTHORIZE = re.compile(r"^/([^/]+)/oauth2/v2\.0/authorize$", re.IGNORECASE)
_LOGOUT = re.compile(r"^/([^/]+)/oauth2/v2\.0/logout$", re.IGNORECASE)
_KEYS = re.compile(r"^/([^/]+)/discovery/v2\.0/keys$", re.IGNORECASE)
_INSTANCE_DISCOVERY = re.compile(r"^/common/discovery/instance$", re.IGNORECASE)
_GRAPH = re.compile(r"^/v1\.0(?=/|$)", re.IGNORECASE)


class Front:
    """The top-level dispatch of every HTTP request to one Emulator; owns the Graph Router."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.router = Router(emulator)
        self.sign_in = SignIn(emulator)

    def handle(self, request: Request) -> Response:
        request_id = new_request_id()
        client_request_id = request.header("client-request-id") or request_id
        try:
            response = self._dispatch(request, request_id, client_request_id)
        except GraphError as error:
            response = Response.error(error, request_id, client_request_id)
        except Exception:
            # A bug must not drop the connection: the client gets Graph's 500 and the server log the cause.
            traceback.print_exc()
            failure = GraphError(500, "generalException", "An unspecified error has occurred.")
            response = Response.error(failure, request_id, client_request_id)
        response.headers.setdefault("request-id", request_id)
        response.headers.setdefault("client-request-id", client_request_id)
        return response

    def _dispatch(self, request: Request, request_id: str, client_request_id: str) -> Response:
        path = request.path
        if path == "/_emulator" or path.startswith("/_emulator/"):
            return control_routes.handle(self.emulator, request)
        if path == "/" or path.startswith("/_ui/"):
            return html.handle(self.emulator, request)
        graph = _GRAPH.match(path)
        if graph:
            return self._graph(request, path[graph.end() :] or "/", request_id, client_request_id)
        return self._sign_in(request)

    def _graph(self, request: Request, path: str, request_id: str, client_request_id: str) -> Response:
        emulator = self.emulator
        ctx = Context(Request(request.method, path, request.query, request.headers, request.body))
        try:
            ctx.principal = emulator.auth.check_bearer(request)
            response = self.router.run(ctx)
        except GraphError as error:
            response = Response.error(error, request_id, client_request_id)
        if ctx.preferences_applied and response.status < 400:
            response.headers["Preference-Applied"] = ", ".join(ctx.preferences_applied)
        emulator.stats_.record(
            kind="graph",
            route=ctx.route or f"{request.method} (unmatched)",
            status=response.status,
            mailbox=ctx.upn,
            outcome=ctx.outcome,
        )
        return response

    def _sign_in(self, request: Request) -> Response:
        emulator = self.emulator
        path = request.path
        token = _TOKEN.match(path)
        if token and request.method == "POST":
            emulator.sleep_latency()
            response = emulator.auth.token(token.group(1), request)
            emulator.stats_.record(
                kind="token", route="POST /{tenant}/oauth2/v2.0/token", status=response.status
            )
            return response
        if request.method in ("GET", "POST") and (authorize := _AUTHORIZE.match(path)):
            response = self.sign_in.authorize(authorize.group(1), request)
            route = f"{request.method} /{{tenant}}/oauth2/v2.0/authorize"
        elif request.method == "GET" and (logout := _LOGOUT.match(path)):
            response = self.sign_in.logout(logout.group(1), request)
            route = "GET /{tenant}/oauth2/v2.0/logout"
        elif request.method == "GET" and _INSTANCE_DISCOVERY.match(path):
            response = emulator.auth.instance_discovery(request)
            route = "GET /common/discovery/instance"
        elif request.method == "GET" and (openid := _OPENID.match(path)):
            response = emulator.auth.openid_configuration(openid.group(1), request)
            route = "GET /{tenant}/v2.0/.well-known/openid-configuration"
        elif request.method == "GET" and (keys := _KEYS.match(path)):
            response = emulator.auth.jwks(keys.group(1))
            route = "GET /{tenant}/discovery/v2.0/keys"
        else:
            raise GraphError(404, "NotFound", f"No emulated endpoint at {request.method} {path}.")
        emulator.sleep_latency()
        emulator.stats_.record(kind="auth", route=route, status=response.status)
        return response


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections as they do with Graph
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle + delayed ACK add ~40 ms each.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        request = Request.from_target(self.command, self.path, headers, body)
        response = self.server.front.handle(request)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # concurrency tests open many connections at once

    def __init__(self, emulator: Emulator, host: str, port: int, verbose: bool = False) -> None:
        super().__init__((host, port), _Handler)
        self.emulator = emulator
        self.front = Front(emulator)
        self.verbose = verbose


class RunningEmulator:
    """A server started by serve_in_thread."""

    def __init__(self, server: EmulatorHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.emulator = server.emulator
        self.front = server.front  # tests wrap front.router.run to intercept Graph requests

    def wait(self) -> None:
        """Block until the server stops (used by the command line)."""
        self._thread.join()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.emulator.close()


def serve_in_thread(
    config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0, verbose: bool = False
) -> RunningEmulator:
    """Start the emulator on a daemon thread; port 0 picks a free port (see .url)."""
    server = EmulatorHTTPServer(Emulator(config), host, port, verbose)
    # The first signed token would otherwise wait for the key to be made.
    threading.Thread(target=SigningKey.get, name="m365-emulator-key", daemon=True).start()
    # A short poll interval makes stop() quick, which matters for tests that start a server each.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="m365-emulator", daemon=True
    )
    thread.start()
    return RunningEmulator(server, thread)
