"""HTTP front end: a stdlib ThreadingHTTPServer that hands every request to Emulator.handle."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .config import EmulatorConfig
from .emulator import Emulator
from .messages import Request


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
        response = self.server.emulator.handle(request)
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
        self.verbose = verbose


class RunningEmulator:
    """A server started by serve_in_thread."""

    def __init__(self, server: EmulatorHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.emulator = server.emulator

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
    # A short poll interval makes stop() quick, which matters for tests that start a server each.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="m365-emulator", daemon=True
    )
    thread.start()
    return RunningEmulator(server, thread)
