"""error_from_response is a pure function: Graph's status + envelope in, typed error out."""

import pytest

from exchange_sync.graph.errors import (
    AccessDenied,
    BadRequest,
    FolderExists,
    GraphError,
    InvalidToken,
    ItemNotFound,
    MailboxNotFound,
    PreconditionFailed,
    ServiceUnavailable,
    SyncStateExpired,
    Throttled,
    error_from_response,
)


def envelope(code: str, message: str = "Something happened.", inner_key: str = "innerError") -> dict:
    return {"error": {"code": code, "message": message, inner_key: {"request-id": "req-1", "date": "2026"}}}


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "ErrorInvalidIdMalformed", BadRequest),
        (400, "ErrorFolderExists", FolderExists),
        (409, "ErrorFolderExists", FolderExists),
        (401, "InvalidAuthenticationToken", InvalidToken),
        (403, "ErrorAccessDenied", AccessDenied),
        (403, "ErrorQuotaExceeded", BadRequest),
        (404, "ErrorItemNotFound", ItemNotFound),
        (404, "ErrorInvalidUser", MailboxNotFound),
        (404, "MailboxNotEnabledForRESTAPI", MailboxNotFound),
        (410, "syncStateNotFound", SyncStateExpired),
        (410, "", SyncStateExpired),
        (400, "SyncStateNotFound", SyncStateExpired),
        (400, "resyncRequired", SyncStateExpired),
        (412, "ErrorIrresolvableConflict", PreconditionFailed),
        (424, "FailedDependency", BadRequest),
        (429, "ApplicationThrottled", Throttled),
        (503, "serviceNotAvailable", ServiceUnavailable),
        (504, "gatewayTimeout", ServiceUnavailable),
        (500, "generalException", GraphError),
    ],
)
def test_status_and_code_pick_the_error_class(status, code, expected):
    error = error_from_response(status=status, body=envelope(code))

    assert type(error) is expected
    assert (error.status, error.code, error.request_id) == (status, code, "req-1")
    assert "Something happened." in str(error)


def test_inner_error_key_is_matched_case_insensitively():
    error = error_from_response(status=404, body=envelope("ErrorItemNotFound", inner_key="innererror"))

    assert error.request_id == "req-1"


def test_request_id_falls_back_to_the_response_header():
    body = {"error": {"code": "ErrorItemNotFound", "message": "Gone."}}

    error = error_from_response(status=404, body=body, headers={"Request-Id": "hdr-1"})

    assert error.request_id == "hdr-1"


def test_a_body_that_is_not_json_still_maps_by_status():
    error = error_from_response(status=503, body="<html>Service Unavailable</html>")

    assert isinstance(error, ServiceUnavailable)
    assert error.code == ""
    assert "Service Unavailable" in error.message


def test_unknown_mailbox_message_names_the_mailbox_and_the_fix():
    error = error_from_response(status=404, body=envelope("ErrorInvalidUser"), mailbox="nobody@contoso.test")

    assert isinstance(error, MailboxNotFound)
    assert "nobody@contoso.test" in str(error)
    assert "check the Microsoft 365 email on the User Card" in str(error)


def test_repr_shows_status_code_and_request_id():
    error = error_from_response(status=412, body=envelope("ErrorIrresolvableConflict"))

    assert repr(error).startswith("PreconditionFailed(status=412, code='ErrorIrresolvableConflict'")


def test_a_mailbox_outside_the_apps_scope_names_rbac_for_applications():
    error = error_from_response(
        status=403,
        body=envelope("ErrorAccessDenied", "Access to OData is disabled."),
        mailbox="eve@contoso.test",
    )

    assert str(error).startswith(
        "Microsoft 365 denied access for eve@contoso.test (403 ErrorAccessDenied: Access to OData is "
        "disabled.): the mailbox is outside the app's scope."
    )
    assert 'New-ManagementRoleAssignment -App <client id> -Role "Application Contacts.ReadWrite"' in str(
        error
    )
