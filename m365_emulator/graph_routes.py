"""Graph v1.0 contact endpoints: routing, limits, and the handlers.

Top-level requests and $batch items both come through Router.run, so they share validation, faults,
rate windows and item timing; only the concurrency slot and the sleeping differ (a batch holds one slot
per mailbox it touches and sleeps once for all its items).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode

from . import delta, odata, subscriptions
from .auth import me_as_user, user_object_id
from .batch import run_batch
from .contacts import parse_contact_body
from .errors import GraphError, bad_request, body_read_error
from .messages import Context, Response
from .render import contact_json, etag, folder_json, removed_json
from .schema import CONTACT_PROPERTIES, FOLDER_PROPERTIES
from .state import Contact, Folder, Mailbox

if TYPE_CHECKING:
    from .auth import Principal
    from .emulator import Emulator

MAX_PAGE_PREFERENCE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)
USER_ROUTE = "/users/{upn}"


Handler = Callable[["Router", Context, Mailbox, dict[str, str]], Response]


@dataclass
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler


def _compile(template: str) -> re.Pattern[str]:
    # Literal segments match case-insensitively (Graph's own links vary in case); ids stay case-sensitive.
    # A function segment such as delta() also matches with its parentheses percent-encoded.
    parts = []
    for segment in template.strip("/").split("/"):
        if segment.startswith("{"):
            parts.append(f"(?P<{segment[1:-1]}>[^/]+)")
        elif segment.endswith("()"):
            parts.append(f"(?i:{re.escape(segment[:-2])}(?:\\(\\)|%28%29))")
        else:
            parts.append(f"(?i:{re.escape(segment)})")
    return re.compile("^/" + "/".join(parts) + "/?$")


def access_denied() -> GraphError:
    return GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")


def check_access(principal: Principal | None, route: Route, params: dict[str, str]) -> None:
    """Graph's 403 unless the token may use this mailbox: an app-only token needs the Contacts.ReadWrite
    role; a delegated one reaches only its own user (by UPN or object id) and needs a matching scope."""
    if principal is None or "upn" not in params:
        return
    if route.template == USER_ROUTE:
        if not principal.delegated:
            raise GraphError(
                403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
            )
        needed = {"User.Read"}
    elif route.method == "GET":
        needed = {"Contacts.Read", "Contacts.ReadWrite"}
    else:
        needed = {"Contacts.ReadWrite"}
    if not principal.delegated:
        if not principal.roles & needed:
            raise access_denied()
        return
    assert principal.upn is not None
    if params["upn"].lower() not in (principal.upn.lower(), principal.oid):
        raise access_denied()
    params["upn"] = principal.upn
    if not principal.scopes & needed:
        if route.template == USER_ROUTE:
            raise GraphError(
                403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
            )
        raise access_denied()


class Router:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.store = emulator.store
        self.routes: list[Route] = []
        for method, template, handler in ROUTE_TABLE:
            self.routes.append(Route(method, template, _compile(template), handler))

    # ---- entry points ---------------------------------------------------------------------------

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, {name: unquote(value) for name, value in found.groupdict().items()}
            allowed = True
        if allowed:
            raise GraphError(
                405, "BadRequest", f"The HTTP method '{method}' is not allowed for this resource."
            )
        if re.match(r"^/me(/|$)", path, re.IGNORECASE):
            raise bad_request("/me request is only valid with delegated authentication flow.")
        segment = next((part for part in path.split("/") if part), "")
        raise bad_request(f"Resource not found for the segment '{unquote(segment)}'.")

    def run(self, ctx: Context) -> Response:
        """Serve one Graph request (auth already checked). Errors propagate as GraphError.

        A top-level mailbox request holds a concurrency slot while it waits out `latency_ms` and its item
        time; a $batch item only records its item deadline in ctx.done_at for the batch to wait on."""
        emulator = self.emulator
        route, params = self.match(ctx.request.method, me_as_user(ctx.request.path, ctx.principal))
        ctx.route = f"{route.method} {route.template}"
        check_access(ctx.principal, route, params)
        ctx.upn = params.get("upn")
        fault = emulator.throttle.maybe_fault()
        if fault is not None:
            ctx.outcome = "faulted"
            raise fault
        if "upn" not in params:  # $batch, /subscriptions
            emulator.sleep_latency()
            return route.handler(self, ctx, None, params)  # type: ignore[arg-type]
        with self.store.lock:
            mailbox = self.store.mailbox(params["upn"])
        try:
            emulator.throttle.count_request(mailbox.upn)
            denial = ctx.batch_slots.get(mailbox.upn.lower())
            if denial is not None:
                raise denial
            if not ctx.inner:
                emulator.throttle.acquire(mailbox.upn)
        except GraphError:
            ctx.outcome = "throttled"
            raise
        if ctx.inner:
            return route.handler(self, ctx, mailbox, params)
        try:
            emulator.sleep_latency()
            response = route.handler(self, ctx, mailbox, params)
            emulator.sleep_until(ctx.done_at)
            return response
        finally:
            emulator.throttle.release(mailbox.upn)

    # ---- helpers shared by handlers -------------------------------------------------------------

    def charge(self, ctx: Context, mailbox: Mailbox, items: int) -> None:
        finish = self.emulator.throttle.charge_items(mailbox.upn, items, ctx.not_before)
        ctx.done_at = max(ctx.done_at, finish)

    def link(self, ctx: Context, params: dict[str, str]) -> str:
        query = urlencode(params, safe="$'(),:/@=", quote_via=quote)
        base = f"{self.emulator.config.graph_url.rstrip('/')}/v1.0{ctx.request.path}"
        return f"{base}?{query}" if query else base

    def context_url(self, upn: str, tail: str) -> str:
        base = self.emulator.config.graph_url.rstrip("/")
        return f"{base}/v1.0/$metadata#users('{quote(upn, safe='')}')/{tail}"

    def body(self, ctx: Context) -> Any:
        try:
            return ctx.request.json_body()
        except (ValueError, UnicodeDecodeError):
            raise body_read_error(
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload "
                "is of valid JSON format."
            ) from None


# ---- folders ------------------------------------------------------------------------------------


def _folder_page(router: Router, ctx: Context, mailbox: Mailbox, parent: Folder) -> Response:
    query = odata.parse_query(ctx.request.query, FOLDER_PROPERTIES, "contactFolder")
    with router.store.lock:
        folders = mailbox.child_folders(parent)
        for condition in query.filter:
            if condition.collection is not None or condition.path.lower() != "displayname":
                raise odata.invalid_filter()
            folders = [f for f in folders if f.display_name.lower() == condition.value.lower()]
        for name, descending in reversed(query.orderby):
            folders.sort(key=lambda f, n=name: (folder_json(f)[n] or "").lower(), reverse=descending)
        total = len(folders)
        page = folders[query.skip : query.skip + query.top]
        value = [folder_json(f, query.select) for f in page]
    tail = "contactFolders" if parent is mailbox.root else f"contactFolders('{parent.id}')/childFolders"
    payload: dict[str, Any] = {"@odata.context": router.context_url(mailbox.upn, tail)}
    if query.count:
        payload["@odata.count"] = total
    payload["value"] = value
    if query.skip + query.top < total:
        payload["@odata.nextLink"] = router.link(
            ctx, {**ctx.request.query, "$skip": str(query.skip + query.top)}
        )
    return Response.json(200, payload)


def _create_folder(router: Router, ctx: Context, mailbox: Mailbox, parent: Folder) -> Response:
    body = router.body(ctx)
    if not isinstance(body, dict):
        raise body_read_error(
            "The request body must be a JSON object of type 'microsoft.graph.contactFolder'."
        )
    for name in body:
        if name not in FOLDER_PROPERTIES and not name.startswith("@odata."):
            raise body_read_error(
                f"The property '{name}' does not exist on type 'microsoft.graph.contactFolder'."
            )
    name = body.get("displayName")
    if not isinstance(name, str):
        raise body_read_error("The property 'displayName' of type 'Edm.String' is required.")
    with router.store.change():
        folder = mailbox.create_folder(name, parent)
        payload = folder_json(folder)
    tail = (
        "contactFolders/$entity"
        if parent is mailbox.root
        else f"contactFolders('{parent.id}')/childFolders/$entity"
    )
    return Response.json(201, {"@odata.context": router.context_url(mailbox.upn, tail), **payload})


def list_folders(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    return _folder_page(router, ctx, mailbox, mailbox.root)


def create_folder(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    return _create_folder(router, ctx, mailbox, mailbox.root)


def list_child_folders(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    with router.store.lock:
        parent = mailbox.folder(params["fid"])
    return _folder_page(router, ctx, mailbox, parent)


def create_child_folder(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    with router.store.lock:
        parent = mailbox.folder(params["fid"])
    return _create_folder(router, ctx, mailbox, parent)


def get_folder(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    query = odata.parse_query(ctx.request.query, FOLDER_PROPERTIES, "contactFolder")
    with router.store.lock:
        payload = folder_json(mailbox.folder(params["fid"]), query.select)
    return Response.json(
        200, {"@odata.context": router.context_url(mailbox.upn, "contactFolders/$entity"), **payload}
    )


def update_folder(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    body = router.body(ctx)
    if not isinstance(body, dict) or not isinstance(body.get("displayName"), str):
        raise body_read_error("The property 'displayName' of type 'Edm.String' is required.")
    with router.store.change():
        folder = mailbox.folder(params["fid"])
        mailbox.rename_folder(folder, body["displayName"])
        payload = folder_json(folder)
    return Response.json(
        200, {"@odata.context": router.context_url(mailbox.upn, "contactFolders/$entity"), **payload}
    )


def delete_folder(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    with router.store.change():
        mailbox.delete_folder(mailbox.folder(params["fid"]))
    return Response.empty(204)


# ---- contacts -----------------------------------------------------------------------------------


def _target_folder(mailbox: Mailbox, params: dict[str, str]) -> Folder:
    return mailbox.folder(params["fid"]) if "fid" in params else mailbox.root


def _contacts_tail(mailbox: Mailbox, params: dict[str, str]) -> str:
    return f"contactFolders('{params['fid']}')/contacts" if "fid" in params else "contacts"


def _candidates(folder: Folder, mailbox: Mailbox, query: odata.Query) -> Iterable[Contact]:
    """The folder's contacts that pass $filter, in folder order (or $orderby order)."""
    address = odata.email_filter_address(query.filter)
    if address is not None:
        keys = sorted(folder.emails.get(address, ()), key=folder.members.__getitem__)
        found: Iterable[Contact] = (mailbox.contacts[key] for key in keys)
    else:
        found = (mailbox.contacts[key] for _, key in folder.keys_after(0))
    if query.filter:
        matches = odata.contact_matcher(query.filter)
        found = (contact for contact in found if matches(contact))
    if query.orderby:
        ordered = list(found)
        for name, descending in reversed(query.orderby):
            ordered.sort(key=lambda c, n=name: _sort_key(c, n), reverse=descending)
        return ordered
    return found


def _sort_key(contact: Contact, name: str) -> str:
    value = {"createdDateTime": contact.created, "lastModifiedDateTime": contact.modified}.get(name)
    if value is None:
        value = contact.props.get(name)
    return value.lower() if isinstance(value, str) else ""


def list_contacts(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    query = odata.parse_query(ctx.request.query, CONTACT_PROPERTIES, "contact")
    immutable = ctx.immutable
    with router.store.lock:
        folder = _target_folder(mailbox, params)
        candidates = _candidates(folder, mailbox, query)
        if query.count:
            candidates = list(candidates)
            total = len(candidates)
        page = list(islice(candidates, query.skip, query.skip + query.top + 1))
        more = len(page) > query.top
        value = [contact_json(mailbox, c, immutable, query.select, query.expand) for c in page[: query.top]]
    router.charge(ctx, mailbox, len(value))
    if immutable:
        ctx.preferences_applied.append('IdType="ImmutableId"')
    tail = _contacts_tail(mailbox, params)
    if query.select:
        tail += f"({','.join(query.select)})"
    payload: dict[str, Any] = {"@odata.context": router.context_url(mailbox.upn, tail)}
    if query.count:
        payload["@odata.count"] = total
    payload["value"] = value
    if more:
        payload["@odata.nextLink"] = router.link(
            ctx, {**ctx.request.query, "$skip": str(query.skip + query.top)}
        )
    return Response.json(200, payload)


def _entity(
    router: Router,
    ctx: Context,
    mailbox: Mailbox,
    params: dict[str, str],
    contact: Contact,
    status: int,
    query: odata.Query | None = None,
) -> Response:
    immutable = ctx.immutable
    if immutable:
        ctx.preferences_applied.append('IdType="ImmutableId"')
    payload = contact_json(
        mailbox, contact, immutable, query.select if query else None, query.expand if query else None
    )
    context = router.context_url(mailbox.upn, f"{_contacts_tail(mailbox, params)}/$entity")
    return Response.json(status, {"@odata.context": context, **payload}, {"ETag": etag(contact.change_key)})


def create_contact(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    changes, extended = parse_contact_body(router.body(ctx))
    with router.store.change():
        contact = mailbox.create_contact(_target_folder(mailbox, params), changes, extended)
        response = _entity(router, ctx, mailbox, params, contact, 201)
    router.charge(ctx, mailbox, 1)
    return response


def _find(mailbox: Mailbox, params: dict[str, str]) -> Contact:
    folder = mailbox.folder(params["fid"]) if "fid" in params else None
    return mailbox.contact(params["id"], folder)


def get_contact(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    query = odata.parse_query(ctx.request.query, CONTACT_PROPERTIES, "contact")
    with router.store.lock:
        response = _entity(router, ctx, mailbox, params, _find(mailbox, params), 200, query)
    router.charge(ctx, mailbox, 1)
    return response


def _check_if_match(ctx: Context, contact: Contact) -> None:
    wanted = ctx.request.header("if-match").strip()
    if not wanted or wanted == "*":
        return
    bare = wanted.removeprefix("W/").strip('"')
    if bare != contact.change_key:
        raise GraphError(
            412,
            "ErrorIrresolvableConflict",
            "The send or update operation could not be performed because the change key passed "
            "in the request does not match the current change key for the item.",
        )


def update_contact(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    changes, extended = parse_contact_body(router.body(ctx))
    with router.store.change():
        contact = _find(mailbox, params)
        _check_if_match(ctx, contact)
        mailbox.update_contact(contact, changes, extended)
        response = _entity(router, ctx, mailbox, params, contact, 200)
    router.charge(ctx, mailbox, 1)
    return response


def delete_contact(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    with router.store.change():
        contact = _find(mailbox, params)
        _check_if_match(ctx, contact)
        mailbox.delete_contact(contact)
    router.charge(ctx, mailbox, 1)
    return Response.empty(204)


# ---- delta --------------------------------------------------------------------------------------


def contacts_delta(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    emulator = router.emulator
    config = emulator.config
    request = ctx.request
    location = router.link(ctx, {})
    requested = MAX_PAGE_PREFERENCE.search(request.header("prefer"))
    immutable = ctx.immutable
    with router.store.lock:
        folder = _target_folder(mailbox, params)
        text = request.query.get("$skiptoken") or request.query.get("$deltatoken")
        if text is None:
            query = odata.parse_query(
                {k: v for k, v in request.query.items() if k == "$select"}, CONTACT_PROPERTIES, "contact"
            )
            token = delta.DeltaToken(
                mailbox.key.hex(), folder.id, "initial", 0, mailbox.seq, 0, 0, query.select, None, time.time()
            )
        else:
            token = delta.decode(text, router.store.secret, location)
            delta.check_age(token, emulator.delta_valid_after, config.delta_token_max_age_s, location)
            if (token.mailbox, token.folder) != (mailbox.key.hex(), folder.id) or max(
                token.start, token.end
            ) > mailbox.seq:
                raise delta.sync_state_not_found(location)
            if "$deltatoken" in request.query:
                start = token.previous if config.delta_replay else token.start
                token = delta.DeltaToken(
                    token.mailbox,
                    token.folder,
                    "changes",
                    start,
                    mailbox.seq,
                    0,
                    token.start,
                    token.select,
                    token.page_size,
                    time.time(),
                )
        page_size = min(int(requested.group(1)), config.delta_page_size) if requested else None
        page_size = max(1, page_size or token.page_size or config.delta_page_size)
        if requested:
            token.page_size = page_size
            ctx.preferences_applied.append(f"odata.maxpagesize={page_size}")
        value, token.cursor, more = _delta_page(mailbox, folder, token, page_size, immutable)
    router.charge(ctx, mailbox, len(value))
    if immutable:
        ctx.preferences_applied.append('IdType="ImmutableId"')
    token.issued = time.time()
    if more:
        link_name, link_token = "@odata.nextLink", "$skiptoken"
    else:
        link_name, link_token = "@odata.deltaLink", "$deltatoken"
        token = delta.DeltaToken(
            token.mailbox,
            token.folder,
            "changes",
            token.end,
            0,
            0,
            token.start,
            token.select,
            token.page_size,
            token.issued,
        )
    encoded = delta.encode(token, router.store.secret)
    return Response.json(
        200,
        {
            "@odata.context": f"{config.graph_url.rstrip('/')}/v1.0/$metadata#Collection(contact)",
            "value": value,
            link_name: f"{location}?{link_token}={encoded}",
        },
    )


def _delta_page(
    mailbox: Mailbox, folder: Folder, token: delta.DeltaToken, size: int, immutable: bool
) -> tuple[list[dict[str, Any]], int, bool]:
    """One page of a round: (entries, new cursor, more pages follow)."""
    if token.kind == "initial":
        entries = list(islice(folder.keys_after(token.cursor), size + 1))
        value = [
            contact_json(mailbox, mailbox.contacts[key], immutable, token.select) for _, key in entries[:size]
        ]
        cursor = entries[min(size, len(entries)) - 1][0] if entries else token.cursor
        return value, cursor, len(entries) > size
    keys = folder.changed_keys(token.start, token.end)
    value = []
    for key in keys[token.cursor : token.cursor + size]:
        contact = mailbox.contacts.get(key)
        if contact is not None and contact.folder is folder:
            value.append(contact_json(mailbox, contact, immutable, token.select))
        else:
            value.append(removed_json(mailbox.item_id(key, folder, immutable)))
    cursor = token.cursor + size
    return value, cursor, cursor < len(keys)


def get_user(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    config = router.emulator.config
    local = mailbox.upn.split("@")[0]
    return Response.json(
        200,
        {
            "@odata.context": f"{config.graph_url.rstrip('/')}/v1.0/$metadata#users/$entity",
            "businessPhones": [],
            "displayName": local.replace(".", " ").title(),
            "givenName": None,
            "jobTitle": None,
            "mail": mailbox.upn,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": None,
            "userPrincipalName": mailbox.upn,
            "id": user_object_id(config.tenant, mailbox.upn),
        },
    )


def _batch(router: Router, ctx: Context, mailbox: Mailbox, params: dict[str, str]) -> Response:
    return run_batch(router, ctx)


ROUTE_TABLE: list[tuple[str, str, Handler]] = [
    ("POST", "/$batch", _batch),
    ("GET", USER_ROUTE, get_user),
    ("GET", "/users/{upn}/contactFolders", list_folders),
    ("POST", "/users/{upn}/contactFolders", create_folder),
    ("GET", "/users/{upn}/contactFolders/{fid}", get_folder),
    ("PATCH", "/users/{upn}/contactFolders/{fid}", update_folder),
    ("DELETE", "/users/{upn}/contactFolders/{fid}", delete_folder),
    ("GET", "/users/{upn}/contactFolders/{fid}/childFolders", list_child_folders),
    ("POST", "/users/{upn}/contactFolders/{fid}/childFolders", create_child_folder),
    ("GET", "/users/{upn}/contactFolders/{fid}/contacts/delta", contacts_delta),
    # The function-call form Microsoft's SDKs send; without it delta() would be read as a contact id.
    ("GET", "/users/{upn}/contactFolders/{fid}/contacts/delta()", contacts_delta),
    ("GET", "/users/{upn}/contactFolders/{fid}/contacts", list_contacts),
    ("POST", "/users/{upn}/contactFolders/{fid}/contacts", create_contact),
    ("GET", "/users/{upn}/contactFolders/{fid}/contacts/{id}", get_contact),
    ("PATCH", "/users/{upn}/contactFolders/{fid}/contacts/{id}", update_contact),
    ("DELETE", "/users/{upn}/contactFolders/{fid}/contacts/{id}", delete_contact),
    ("GET", "/users/{upn}/contacts/delta", contacts_delta),
    ("GET", "/users/{upn}/contacts/delta()", contacts_delta),
    ("GET", "/users/{upn}/contacts", list_contacts),
    ("POST", "/users/{upn}/contacts", create_contact),
    ("GET", "/users/{upn}/contacts/{id}", get_contact),
    ("PATCH", "/users/{upn}/contacts/{id}", update_contact),
    ("DELETE", "/users/{upn}/contacts/{id}", delete_contact),
    ("POST", "/subscriptions", subscriptions.create),
    ("GET", "/subscriptions", subscriptions.list_all),
    ("GET", "/subscriptions/{sid}", subscriptions.get),
    ("PATCH", "/subscriptions/{sid}", subscriptions.update),
    ("DELETE", "/subscriptions/{sid}", subscriptions.delete),
    ("POST", "/subscriptions/{sid}/reauthorize", subscriptions.reauthorize),
]
