"""Graph /v1.0/subscriptions: change-notification subscriptions on contact folders.

Create validates the body as Graph does (resource, changeType, URLs, expiration, clientState, TLS
version), runs the validation handshake against notificationUrl and lifecycleNotificationUrl outside the
store's lock, and stores the subscription with the state. Delivery lives in notify.py.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import GraphError, bad_request, body_read_error
from .messages import Context, Response
from .notify import graph_time, live_subscriptions
from .state import Mailbox, Subscription

if TYPE_CHECKING:
    from .graph_routes import Router

CHANGE_TYPES = ("created", "updated", "deleted")
TLS_VERSIONS = ("v1_0", "v1_1", "v1_2", "v1_3")
MIN_MINUTES = 45  # shorter requests are raised to this
MAX_CLIENT_STATE = 128
MAX_PER_MAILBOX = 1000
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
PROPERTIES = frozenset(
    {
        "changeType",
        "notificationUrl",
        "lifecycleNotificationUrl",
        "resource",
        "expirationDateTime",
        "clientState",
        "latestSupportedTlsVersion",
        "includeResourceData",
        "encryptionCertificate",
        "encryptionCertificateId",
        "notificationUrlAppId",
        "notificationQueryOptions",
    }
)
# users/{user}/contacts, users/{user}/contactFolders/{id}/contacts, and the same under me; keys also in
# OData's ('…') form.
_RESOURCE = re.compile(
    r"^/?(?:(?P<me>me)|users(?:/(?P<user>[^/()]+)|\('(?P<quoted_user>[^']+)'\)))"
    r"(?:/contactFolders(?:/(?P<folder>[^/()]+)|\('(?P<quoted_folder>[^']+)'\)))?/contacts/?$",
    re.IGNORECASE,
)


def not_found() -> GraphError:
    return GraphError(404, "ResourceNotFound", "The object was not found.")


def _invalid(message: str) -> GraphError:
    return GraphError(400, "InvalidRequest", message)


def _required(body: dict[str, Any], name: str) -> Any:
    value = body.get(name)
    if value is None or value == "":
        raise _invalid(f"{name} is a required property for subscription creation.")
    return value


def _check_url(value: Any, label: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"Invalid {label.lower()}='{value}'.")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _invalid(f"Invalid {label.lower()}='{value}'.")
    # Graph needs https; plain http to this machine is accepted so that local subscribers work.
    if parts.scheme.lower() == "http" and parts.hostname.lower() not in LOCAL_HOSTS:
        raise _invalid(f"{label} scheme='http' is not supported.")
    return value


def _change_types(value: Any) -> list[str]:
    if not isinstance(value, str):
        raise _invalid("changeType is a required property for subscription creation.")
    types = [part.strip() for part in value.split(",")]
    for part in types:
        if part.lower() not in CHANGE_TYPES:
            raise _invalid(f"'{part}' is not a valid change type. Valid values: created, updated, deleted.")
    return sorted({part.lower() for part in types}, key=CHANGE_TYPES.index)


def _expiration(router: Router, value: Any) -> float:
    if not isinstance(value, str):
        raise _invalid("expirationDateTime is a required property for subscription creation.")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise body_read_error(
            f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    expiration = moment.timestamp()
    now = time.time()
    if expiration <= now:
        raise GraphError(400, "ExtensionError", "Subscription expiration can only be in the future.")
    cap = router.emulator.config.subscription_max_minutes
    if expiration > now + cap * 60:
        raise GraphError(
            400, "ExtensionError", f"Subscription expiration can only be {cap} minutes in the future."
        )
    return max(expiration, now + MIN_MINUTES * 60)


def _resource(router: Router, ctx: Context, value: Any) -> tuple[str, Mailbox, str]:
    """(user as written, mailbox, folder id) of a contacts resource."""
    if not isinstance(value, str):
        raise _invalid("resource is a required property for subscription creation.")
    found = _RESOURCE.match(value.strip())
    if found is None:
        raise _invalid(f"The resource '{value}' is not supported for subscriptions by this emulator.")
    principal = ctx.principal
    delegated = principal is not None and principal.delegated
    if found["me"]:
        if not delegated:
            raise bad_request("/me request is only valid with delegated authentication flow.")
        user = principal.upn
    else:
        user = found["user"] or found["quoted_user"]
        if delegated:
            # A delegated token reaches only its own user's mailbox, named by UPN or object id.
            if user.lower() not in (principal.upn.lower(), principal.oid):
                raise GraphError(
                    403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
                )
            user = principal.upn
    store = router.store
    with store.lock:
        mailbox = store.mailbox(user)
        folder_id = found["folder"] or found["quoted_folder"]
        folder = mailbox.folder(folder_id) if folder_id else mailbox.root
    return user, mailbox, folder.id


def subscription_json(sub: Subscription, with_client_state: bool) -> dict[str, Any]:
    return {
        "id": sub.id,
        "resource": sub.resource,
        "applicationId": sub.application_id,
        "changeType": ",".join(sub.change_types),
        "clientState": sub.client_state if with_client_state else None,
        "notificationUrl": sub.notification_url,
        "notificationQueryOptions": None,
        "lifecycleNotificationUrl": sub.lifecycle_url,
        "expirationDateTime": graph_time(sub.expiration),
        "creatorId": sub.creator_id,
        "includeResourceData": False,
        "latestSupportedTlsVersion": sub.tls_version,
        "encryptionCertificate": None,
        "encryptionCertificateId": None,
        "notificationUrlAppId": None,
    }


def _entity(router: Router, sub: Subscription, status: int, with_client_state: bool) -> Response:
    context = f"{router.emulator.config.graph_url.rstrip('/')}/v1.0/$metadata#subscriptions/$entity"
    return Response.json(status, {"@odata.context": context, **subscription_json(sub, with_client_state)})


def _body(router: Router, ctx: Context) -> dict[str, Any]:
    body = router.body(ctx)
    if not isinstance(body, dict):
        raise body_read_error(
            "The request body must be a JSON object of type 'microsoft.graph.subscription'."
        )
    for name in body:
        if name not in PROPERTIES and not name.startswith("@odata."):
            raise body_read_error(
                f"The property '{name}' does not exist on type 'microsoft.graph.subscription'."
            )
    return body


def _lookup(router: Router, sub_id: str) -> Subscription:
    """The live subscription `sub_id` (caller holds the store's lock)."""
    live_subscriptions(router.store, time.time())
    sub = router.store.subscriptions.get(sub_id)
    if sub is None:
        raise not_found()
    return sub


def create(router: Router, ctx: Context, mailbox: Mailbox | None, params: dict[str, str]) -> Response:
    emulator = router.emulator
    body = _body(router, ctx)
    change_types = _change_types(_required(body, "changeType"))
    notification_url = _check_url(_required(body, "notificationUrl"), "NotificationUrl")
    lifecycle_url = body.get("lifecycleNotificationUrl")
    if lifecycle_url is not None:
        lifecycle_url = _check_url(lifecycle_url, "LifecycleNotificationUrl")
    resource = _required(body, "resource")
    user, target, folder_id = _resource(router, ctx, resource)
    expiration = _expiration(router, _required(body, "expirationDateTime"))
    client_state = body.get("clientState")
    if client_state is not None and (
        not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE
    ):
        raise _invalid(f"clientState must be a string of at most {MAX_CLIENT_STATE} characters.")
    tls_version = body.get("latestSupportedTlsVersion") or "v1_2"
    if tls_version not in TLS_VERSIONS:
        raise _invalid(
            f"Invalid latestSupportedTlsVersion '{tls_version}'. Valid values: {', '.join(TLS_VERSIONS)}."
        )
    if body.get("includeResourceData"):
        raise _invalid("includeResourceData (rich notifications) is not supported by this emulator.")
    client_id = emulator.config.client_id
    sub = Subscription(
        id=str(uuid.uuid4()),
        resource=resource,
        user=user,
        upn=target.upn.lower(),
        folder_id=folder_id,
        change_types=change_types,
        notification_url=notification_url,
        lifecycle_url=lifecycle_url,
        client_state=client_state,
        expiration=expiration,
        tls_version=tls_version,
        application_id=client_id,
        creator_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"serviceprincipal:{client_id}")),
        immutable=ctx.immutable,
    )
    with router.store.lock:
        _check_room(router, sub)
    # The handshakes call the subscriber, which may call Graph back: never while holding the lock.
    emulator.notifier.validate(notification_url)
    if lifecycle_url is not None:
        emulator.notifier.validate(lifecycle_url)
    with router.store.change():
        _check_room(router, sub)
        router.store.subscriptions[sub.id] = sub
    if sub.immutable:
        ctx.preferences_applied.append('IdType="ImmutableId"')
    return _entity(router, sub, 201, with_client_state=True)


def _check_room(router: Router, new: Subscription) -> None:
    """409 for the same change types on the same resource, 403 above the per-mailbox quota."""
    same_mailbox = [sub for sub in live_subscriptions(router.store, time.time()) if sub.upn == new.upn]
    for sub in same_mailbox:
        if sub.folder_id == new.folder_id and set(sub.change_types) == set(new.change_types):
            raise GraphError(
                409,
                "ExtensionError",
                f"Subscription Id {sub.id} already exists for the requested combination",
            )
    if len(same_mailbox) >= MAX_PER_MAILBOX:
        raise GraphError(
            403,
            "ExtensionError",
            f"The maximum number of {MAX_PER_MAILBOX} subscriptions per mailbox has been reached.",
        )


def list_all(router: Router, ctx: Context, mailbox: Mailbox | None, params: dict[str, str]) -> Response:
    client_id = router.emulator.config.client_id
    with router.store.lock:
        value = [
            subscription_json(sub, with_client_state=False)
            for sub in live_subscriptions(router.store, time.time())
            if sub.application_id == client_id
        ]
    context = f"{router.emulator.config.graph_url.rstrip('/')}/v1.0/$metadata#subscriptions"
    return Response.json(200, {"@odata.context": context, "value": value})


def get(router: Router, ctx: Context, mailbox: Mailbox | None, params: dict[str, str]) -> Response:
    with router.store.lock:
        sub = _lookup(router, params["sid"])
        return _entity(router, sub, 200, with_client_state=False)


def update(router: Router, ctx: Context, mailbox: Mailbox | None, params: dict[str, str]) -> Response:
    body = _body(router, ctx)
    if "lifecycleNotificationUrl" in body:
        raise _invalid("lifecycleNotificationUrl can only be set when the subscription is created.")
    changeable = {"expirationDateTime", "notificationUrl"}
    for name in body:
        if name not in changeable and not name.startswith("@odata."):
            raise _invalid(f"The property '{name}' cannot be updated.")
    with router.store.lock:
        _lookup(router, params["sid"])
    expiration = _expiration(router, body["expirationDateTime"]) if "expirationDateTime" in body else None
    url = _check_url(body["notificationUrl"], "NotificationUrl") if "notificationUrl" in body else None
    if url is not None:
        router.emulator.notifier.validate(url)
    with router.store.change():
        sub = _lookup(router, params["sid"])
        if expiration is not None:
            sub.expiration = expiration
        if url is not None:
            sub.notification_url = url
        # Renewing also reauthorizes the subscription.
        sub.needs_reauthorization = False
        return _entity(router, sub, 200, with_client_state=True)


def delete(router: Router, ctx: Context, mailbox: Mailbox | None, params: dict[str, str]) -> Response:
    with router.store.change():
        _lookup(router, params["sid"])
        del router.store.subscriptions[params["sid"]]
    return Response.empty(204)


def reauthorize(router: Router, ctx: Context, mailbox: Mailbox | None, params: dict[str, str]) -> Response:
    with router.store.change():
        _lookup(router, params["sid"]).needs_reauthorization = False
    return Response.empty(200)


def control_json(sub: Subscription) -> dict[str, Any]:
    """Everything the emulator knows about a subscription, for /_emulator/subscriptions."""
    data = asdict(sub)
    data["expirationDateTime"] = graph_time(sub.expiration)
    return data
