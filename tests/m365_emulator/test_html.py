"""GET /: the mini Outlook on the web, its forms, CSRF check and escaping."""

from __future__ import annotations

import re

import requests

from .conftest import ADA


def csrf(page: str) -> str:
    return re.search(r"name='csrf' value='([^']+)'", page).group(1)


def test_page_lists_mailboxes_folders_and_contacts_escaped(emulator):
    emulator.emulator.outlook(ADA).create_contact(
        "Contacts",
        {
            "givenName": "<script>alert(1)</script>",
            "companyName": "Analytical & Co",
            "emailAddresses": [{"address": "ada@example.com"}],
            "businessPhones": ["+44 1"],
            "businessAddress": {"city": "London"},
        },
    )
    page = requests.get(f"{emulator.url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    for text in (ADA, "Contacts", "ada@example.com", "Analytical &amp; Co", "+44 1", "London"):
        assert text in page.text


def test_forms_create_edit_and_delete(emulator):
    outlook = emulator.emulator.outlook(ADA)
    root = outlook.list_folders()[0]["id"]
    session = requests.Session()
    token = csrf(session.get(f"{emulator.url}/", timeout=10).text)
    created = session.post(
        f"{emulator.url}/_ui/create",
        timeout=10,
        allow_redirects=False,
        data={
            "csrf": token,
            "upn": ADA,
            "folder": root,
            "givenName": "Grace",
            "surname": "Hopper",
            "email1": "grace@example.com",
            "city": "Arlington",
        },
    )
    assert created.status_code == 303
    contact = outlook.list_contacts("Contacts")[0]
    assert contact["displayName"] == "Grace Hopper"
    assert contact["businessAddress"]["city"] == "Arlington"

    edit_page = session.get(f"{emulator.url}/_ui/edit", params={"upn": ADA, "id": contact["id"]}, timeout=10)
    assert edit_page.status_code == 200
    assert "value='Grace'" in edit_page.text
    edited = session.post(
        f"{emulator.url}/_ui/update",
        timeout=10,
        data={
            "csrf": token,
            "upn": ADA,
            "id": contact["id"],
            "givenName": "Grace",
            "surname": "Murray",
            "email1": "grace@example.com",
            "companyName": "Navy",
        },
    )
    assert edited.status_code == 200  # followed the redirect back to the overview
    updated = outlook.get_contact(contact["id"])
    assert (updated["displayName"], updated["companyName"]) == ("Grace Murray", "Navy")
    assert updated["changeKey"] != contact["changeKey"]

    session.post(
        f"{emulator.url}/_ui/delete", timeout=10, data={"csrf": token, "upn": ADA, "id": contact["id"]}
    )
    assert outlook.list_contacts("Contacts") == []


def test_forms_need_the_csrf_token(emulator):
    response = requests.post(
        f"{emulator.url}/_ui/create", timeout=10, data={"upn": ADA, "folder": "Contacts", "givenName": "X"}
    )
    assert response.status_code == 403
    assert emulator.emulator.outlook(ADA).list_contacts("Contacts") == []


def test_form_errors_are_shown_not_crashed(emulator):
    session = requests.Session()
    token = csrf(session.get(f"{emulator.url}/", timeout=10).text)
    response = session.get(f"{emulator.url}/_ui/edit", params={"upn": ADA, "id": "bogus"}, timeout=10)
    assert response.status_code == 400
    assert "ErrorInvalidIdMalformed" in response.text
    assert (
        session.post(
            f"{emulator.url}/_ui/delete", timeout=10, data={"csrf": token, "upn": ADA, "id": "bogus"}
        ).status_code
        == 400
    )
