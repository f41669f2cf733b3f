"""Typed errors for everything that can go wrong talking to Microsoft 365.

Graph answers errors in one envelope, ``{"error": {"code", "message", "innerError": {...}}}``,
both for whole responses and for each inner response of a ``$batch``. `error_from_response`
turns either into the matching `GraphError` subclass; callers branch on the class (or on
``code``), never on message text. Messages are written for the person who has to fix things.
"""

from collections.abc import Mapping
from typing import Any


class GraphError(Exception):
    """A failed call to Microsoft 365. ``code`` is Graph's ``error.code`` ("" when there was none)."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str = "", request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"request_id={self.request_id!r}, message={self.message!r})"
        )


class M365NotConfigured(GraphError):
    """Neither tenant credentials nor the local emulator are configured."""


class AuthenticationFailed(GraphError):
    """Microsoft Entra refused to issue a token (wrong tenant, client id or secret)."""


class SignInRequired(AuthenticationFailed):
    """The user's delegated sign-in no longer works (expired, revoked, MFA or consent changed): only
    the user signing in again helps. ``reason`` says why in words."""

    def __init__(self, message: str, *, reason: str, code: str = "") -> None:
        super().__init__(message, code=code)
        self.reason = reason

    @classmethod
    def for_reason(cls, reason: str, *, code: str) -> "SignInRequired":
        return cls(
            f"Reconnect to Microsoft 365: {reason}. Open your Exchange Sync Setup and press Reconnect "
            "to Microsoft 365.",
            reason=reason,
            code=code,
        )


class InvalidToken(GraphError):
    """401: Graph rejected the access token even after one refresh."""


class AccessDenied(GraphError):
    """403: the application lacks permission for this mailbox or operation."""


class MailboxNotFound(GraphError):
    """404 ErrorInvalidUser / MailboxNotEnabledForRESTAPI: no Exchange Online mailbox answers."""


class ItemNotFound(GraphError):
    """404: the contact or folder does not exist (any more)."""


class FolderExists(GraphError):
    """ErrorFolderExists: a contact folder with that name already exists."""


class PreconditionFailed(GraphError):
    """412 ErrorIrresolvableConflict: the item changed since the change key we sent in If-Match."""


class SyncStateExpired(GraphError):
    """410 / syncStateNotFound / resyncRequired: the delta link is no longer valid; resync in full."""


class Throttled(GraphError):
    """429 that was still being returned when our retries ran out."""


class ServiceUnavailable(GraphError):
    """503/504 that was still being returned when our retries ran out."""


class BadRequest(GraphError):
    """Any other 4xx: Graph refused the request as sent."""


class GraphConnectionError(GraphError):
    """The network failed before Graph could answer (DNS, refused connection, timeout)."""


# A 403 on a mailbox in app mode: the app lacks the permission, or Exchange Online scopes it to
# other mailboxes (RBAC for Applications, or a legacy application access policy).
APP_ACCESS_DENIED_HINT = (
    "the mailbox is outside the app's scope. An Exchange administrator adds it to the app's RBAC for "
    'Applications scope (New-ManagementRoleAssignment -App <client id> -Role "Application '
    'Contacts.ReadWrite" -CustomResourceScope <scope>; README "Limiting the app to some mailboxes"), '
    "or, without scoping, grants the Contacts.ReadWrite application permission with admin consent."
)
DELEGATED_ACCESS_DENIED_HINT = (
    "a signed-in user reaches only their own mailbox: connect to Microsoft 365 as the account on your "
    "User Card, with the Contacts.ReadWrite permission consented."
)

_SYNC_STATE_CODES = {"syncstatenotfound", "resyncrequired"}
_MAILBOX_CODES = {"errorinvaliduser", "mailboxnotenabledforrestapi"}


def _get_case_insensitive(mapping: Mapping[str, Any], key: str) -> Any:
    # Real responses say "innerError", the schema says "innererror"; header names vary in case too.
    wanted = key.lower()
    for name, value in mapping.items():
        if name.lower() == wanted:
            return value
    return None


def error_from_response(
    *,
    status: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
    mailbox: str | None = None,
    access_denied_hint: str = APP_ACCESS_DENIED_HINT,
) -> GraphError:
    """Map one Graph response (top-level or an inner ``$batch`` response) to a typed error.

    ``body`` is the parsed JSON (a dict) or, when Graph sent something that is not JSON, the raw
    text. ``mailbox`` only improves the message; ``access_denied_hint`` is what a 403 should make
    someone do, which depends on how the app signs in.
    """
    error = _get_case_insensitive(body, "error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        code = str(error.get("code") or "")
        graph_message = str(error.get("message") or "")
        inner = _get_case_insensitive(error, "innerError")
        request_id = _get_case_insensitive(inner, "request-id") if isinstance(inner, Mapping) else None
    else:
        code = ""
        graph_message = body.strip()[:200] if isinstance(body, str) else ""
        request_id = None
    if request_id is None and headers is not None:
        request_id = _get_case_insensitive(headers, "request-id")

    lowered = code.lower()
    where = f" for {mailbox}" if mailbox else ""
    detail = f"{status} {code}: {graph_message}" if code else f"{status}: {graph_message}"
    error_class: type[GraphError]
    if status == 410 or lowered in _SYNC_STATE_CODES:
        error_class = SyncStateExpired
        message = f"The Outlook change-tracking state{where} expired; a full sync is needed ({detail})."
    elif lowered in _MAILBOX_CODES:
        error_class = MailboxNotFound
        message = (
            f"Microsoft 365 has no Exchange Online mailbox for {mailbox or 'this user'} ({detail}): "
            "check the Microsoft 365 email on the User Card and that the user has an Exchange Online licence."
        )
    elif lowered == "errorfolderexists":
        error_class = FolderExists
        message = f"A contact folder with that name already exists{where} ({detail})."
    elif status == 412 or lowered == "errorirresolvableconflict":
        error_class = PreconditionFailed
        message = f"The Outlook contact was changed by someone else since it was read{where} ({detail})."
    elif status == 404:
        error_class = ItemNotFound
        message = f"The Outlook item was not found{where}; it may have been deleted ({detail})."
    elif status == 401:
        error_class = InvalidToken
        message = (
            f"Microsoft Graph rejected the access token ({detail}): check that the app registration "
            "in M365_CLIENT_ID belongs to M365_TENANT_ID."
        )
    elif status == 403 and lowered != "errorquotaexceeded":
        error_class = AccessDenied
        message = f"Microsoft 365 denied access{where} ({detail}): {access_denied_hint}"
    elif status == 429:
        error_class = Throttled
        message = f"Microsoft 365 kept throttling requests{where}; try again in a few minutes ({detail})."
    elif status in (503, 504):
        error_class = ServiceUnavailable
        message = f"Microsoft 365 was unavailable{where}; try again in a few minutes ({detail})."
    elif 400 <= status < 500:
        error_class = BadRequest
        message = f"Microsoft 365 refused the request{where} ({detail})."
    else:
        error_class = GraphError
        message = f"Microsoft 365 failed the request{where} ({detail})."
    return error_class(message, status=status, code=code, request_id=request_id)
