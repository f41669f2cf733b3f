"""GET / : a minimal "Outlook on the web" over the emulator's state, with forms to add, edit and
delete contacts. Writes go through the Outlook back door; every value is HTML-escaped."""

from __future__ import annotations

import secrets
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from .errors import GraphError
from .messages import Request, Response

if TYPE_CHECKING:
    from .emulator import Emulator

ROWS_PER_FOLDER = 200  # keeps the page usable when a benchmark has loaded 100,000 contacts
CSRF_TOKEN = secrets.token_urlsafe(24)  # per process: forms must come from a page this process served

# (form field, label)
FIELDS = [
    ("givenName", "First name"),
    ("surname", "Last name"),
    ("displayName", "Display name"),
    ("email1", "Email"),
    ("email2", "Email 2"),
    ("email3", "Email 3"),
    ("companyName", "Company"),
    ("jobTitle", "Job title"),
    ("businessPhone", "Business phone"),
    ("mobilePhone", "Mobile"),
    ("street", "Street"),
    ("city", "City"),
    ("postalCode", "Postal code"),
    ("countryOrRegion", "Country/region"),
]

STYLE = """
body{font-family:Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#f3f2f1;color:#201f1e}
header{background:#0f6cbd;color:#fff;padding:12px 24px;font-size:20px}
main{padding:16px 24px}
section{background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.15);margin-bottom:20px;
  padding:12px 16px}
h2{margin:4px 0 8px;font-size:18px} h3{margin:16px 0 6px;font-size:15px;color:#0f6cbd}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #edebe9;vertical-align:top}
th{background:#faf9f8;font-weight:600}
form.inline{display:inline} .muted{color:#605e5c;font-size:12px}
input[type=text]{padding:4px 6px;border:1px solid #8a8886;border-radius:3px;width:150px}
button{background:#0f6cbd;color:#fff;border:0;border-radius:3px;padding:4px 10px;cursor:pointer}
button.danger{background:#c50f1f} details{margin-top:8px}
.grid{display:grid;grid-template-columns:repeat(4,auto);gap:6px 12px;align-items:center;max-width:900px}
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><header>Outlook (M365 emulator)</header><main>{body}</main>"
        "</body></html>"
    )


def _fields_form(values: dict[str, str]) -> str:
    cells = "".join(
        f"<label for='{name}'>{escape(label)}</label>"
        f"<input type='text' id='{name}' name='{name}' value='{escape(values.get(name, ''), quote=True)}'>"
        for name, label in FIELDS
    )
    return f"<input type='hidden' name='csrf' value='{CSRF_TOKEN}'><div class='grid'>{cells}</div>"


def _form_values(contact: dict[str, Any]) -> dict[str, str]:
    emails = [entry.get("address") or "" for entry in contact.get("emailAddresses", [])]
    address = contact.get("businessAddress") or {}
    values = {
        name: contact.get(name) or ""
        for name in ("givenName", "surname", "displayName", "companyName", "jobTitle", "mobilePhone")
    }
    values.update({f"email{index + 1}": email for index, email in enumerate(emails)})
    values["businessPhone"] = (contact.get("businessPhones") or [""])[0]
    values.update(
        {key: address.get(key) or "" for key in ("street", "city", "postalCode", "countryOrRegion")}
    )
    return values


def _contact_data(form: dict[str, str], existing: dict[str, Any] | None) -> dict[str, Any]:
    """Graph JSON for the form. Name fields are always sent; an empty display name lets Outlook
    regenerate it from the name parts."""
    data: dict[str, Any] = {
        name: form.get(name, "").strip() or None
        for name in ("givenName", "surname", "companyName", "jobTitle", "mobilePhone")
    }
    if form.get("displayName", "").strip():
        data["displayName"] = form["displayName"].strip()
    data["emailAddresses"] = [
        {"address": form[f"email{i}"].strip()} for i in (1, 2, 3) if form.get(f"email{i}", "").strip()
    ]
    phones = [form.get("businessPhone", "").strip()]
    if existing:
        phones += (existing.get("businessPhones") or [])[1:]
    data["businessPhones"] = [phone for phone in phones if phone]
    address = dict((existing or {}).get("businessAddress") or {})
    address.update(
        {
            key: form.get(key, "").strip() or None
            for key in ("street", "city", "postalCode", "countryOrRegion")
        }
    )
    data["businessAddress"] = address
    return data


def _subscriptions_note(subscriptions: list[dict[str, Any]]) -> str:
    """Which change-notification subscriptions watch a folder (never their URLs or clientState)."""
    if not subscriptions:
        return ""
    watched = "; ".join(
        f"{','.join(sub['change_types'])} until {sub['expirationDateTime'][:16].replace('T', ' ')} UTC"
        for sub in subscriptions
    )
    return f"<p class='muted'>Change notifications: {escape(watched)}</p>"


def _contacts_table(
    emulator: Emulator, upn: str, folder: dict[str, Any], subscriptions: list[dict[str, Any]]
) -> str:
    contacts = emulator.outlook(upn).list_contacts(folder["id"], limit=ROWS_PER_FOLDER + 1)
    rows = []
    for contact in contacts[:ROWS_PER_FOLDER]:
        emails = ", ".join(entry.get("address") or "" for entry in contact["emailAddresses"])
        phones = ", ".join([*contact["businessPhones"], *filter(None, [contact["mobilePhone"]])])
        city = (contact["businessAddress"] or {}).get("city") or ""
        edit = f"/_ui/edit?upn={quote(upn)}&id={quote(contact['id'])}"
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{escape(str(value))}</td>"
                for value in (
                    contact["displayName"] or "",
                    emails,
                    contact["companyName"] or "",
                    phones,
                    city,
                    contact["lastModifiedDateTime"],
                )
            )
            + f"<td><a href='{escape(edit, quote=True)}'>Edit</a> "
            f"<form class='inline' method='post' action='/_ui/delete'>"
            f"<input type='hidden' name='csrf' value='{CSRF_TOKEN}'>"
            f"<input type='hidden' name='upn' value='{escape(upn, quote=True)}'>"
            f"<input type='hidden' name='id' value='{escape(contact['id'], quote=True)}'>"
            "<button class='danger' type='submit'>Delete</button></form></td></tr>"
        )
    more = (
        f"<p class='muted'>Showing the first {ROWS_PER_FOLDER} contacts.</p>"
        if len(contacts) > ROWS_PER_FOLDER
        else ""
    )
    head = "".join(
        f"<th>{label}</th>" for label in ("Name", "Email", "Company", "Phones", "City", "Last modified", "")
    )
    add = (
        f"<details><summary>Add a contact to {escape(folder['displayName'])}</summary>"
        "<form method='post' action='/_ui/create'>"
        f"<input type='hidden' name='upn' value='{escape(upn, quote=True)}'>"
        f"<input type='hidden' name='folder' value='{escape(folder['id'], quote=True)}'>"
        f"{_fields_form({})}<p><button type='submit'>Add contact</button></p></form></details>"
    )
    table = f"<table><tr>{head}</tr>{''.join(rows)}</table>" if rows else "<p class='muted'>No contacts.</p>"
    note = _subscriptions_note(subscriptions)
    return f"<h3>{escape(folder['displayName'])}</h3>{note}{table}{more}{add}"


def _overview(emulator: Emulator) -> Response:
    sections = []
    subscriptions = emulator.subscriptions()
    for mailbox in emulator.mailboxes():
        upn = mailbox["upn"]
        note = "" if mailbox["rest_enabled"] else " <span class='muted'>(not enabled for REST)</span>"
        folders = "".join(
            _contacts_table(
                emulator,
                upn,
                folder,
                [s for s in subscriptions if s["upn"] == upn.lower() and s["folder_id"] == folder["id"]],
            )
            for folder in emulator.outlook(upn).list_folders()
        )
        sections.append(
            f"<section id='{escape(upn, quote=True)}'><h2>{escape(upn)}{note}</h2>{folders}</section>"
        )
    body = "".join(sections) or '<p>No mailboxes yet. POST /_emulator/mailboxes {"upn": ...} to add one.</p>'
    return Response.html(200, _page("Outlook (M365 emulator)", body))


def _edit_page(emulator: Emulator, request: Request) -> Response:
    upn, contact_id = request.query.get("upn", ""), request.query.get("id", "")
    contact = emulator.outlook(upn).get_contact(contact_id)
    body = (
        f"<section><h2>Edit {escape(contact['displayName'] or '(no name)')}</h2>"
        "<form method='post' action='/_ui/update'>"
        f"<input type='hidden' name='upn' value='{escape(upn, quote=True)}'>"
        f"<input type='hidden' name='id' value='{escape(contact_id, quote=True)}'>"
        f"{_fields_form(_form_values(contact))}"
        "<p><button type='submit'>Save</button> <a href='/'>Cancel</a></p></form></section>"
    )
    return Response.html(200, _page("Edit contact", body))


def _post(emulator: Emulator, request: Request) -> Response:
    form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    if not secrets.compare_digest(form.get("csrf", ""), CSRF_TOKEN):
        return Response.html(403, _page("Forbidden", "<p>The form is stale. <a href='/'>Reload</a>.</p>"))
    outlook = emulator.outlook(form.get("upn", ""))
    if request.path == "/_ui/create":
        outlook.create_contact(form.get("folder", ""), _contact_data(form, None))
    elif request.path == "/_ui/update":
        existing = outlook.get_contact(form.get("id", ""))
        outlook.update_contact(form.get("id", ""), _contact_data(form, existing))
    elif request.path == "/_ui/delete":
        outlook.delete_contact(form.get("id", ""))
    else:
        return Response.html(404, _page("Not found", "<p>No such page.</p>"))
    return Response.redirect(f"/#{quote(form.get('upn', ''))}")


def handle(emulator: Emulator, request: Request) -> Response:
    try:
        if request.method == "GET" and request.path == "/":
            return _overview(emulator)
        if request.method == "GET" and request.path == "/_ui/edit":
            return _edit_page(emulator, request)
        if request.method == "POST":
            return _post(emulator, request)
    except GraphError as error:
        message = f"<p>{escape(error.code)}: {escape(error.message)}</p><p><a href='/'>Back</a></p>"
        return Response.html(error.status, _page("Error", message))
    return Response.html(404, _page("Not found", "<p>No such page.</p>"))
