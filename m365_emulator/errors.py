"""Graph-style errors raised anywhere in the emulator and turned into Graph's error envelope."""

from __future__ import annotations


class GraphError(Exception):
    """An error response: HTTP status, Graph `error.code`, message and extra response headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def not_found_item() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def malformed_id() -> GraphError:
    return GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")


def bad_request(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


def body_read_error(message: str) -> GraphError:
    return GraphError(400, "RequestBodyRead", message)


def throttled(message: str, retry_after_s: int) -> GraphError:
    return GraphError(429, "ApplicationThrottled", message, {"Retry-After": str(retry_after_s)})
