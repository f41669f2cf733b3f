"""Contacts import and export from the Contacts admin, as an administrator uses them: export in
CSV and XLSX, a dry run that shows what would change, a confirm step, row errors in words, and
nothing imported when any row is bad."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest
import tablib
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from contacts.models import Contact, ContactType, NumberSeries
from contacts.resources import COLUMNS, ContactResource, caption
from tests.factories import CompanyFactory, PersonFactory, UserFactory
from tests.http_client import csrf_client, post

pytestmark = pytest.mark.django_db

IMPORT_URL = reverse("admin:contacts_contact_import")
PROCESS_URL = reverse("admin:contacts_contact_process_import")
EXPORT_URL = reverse("admin:contacts_contact_export")
FORMATS = {"csv": "0", "xlsx": "1"}
HEADER = [caption(name) for name in COLUMNS]


def export(client, file_format: str) -> bytes:
    form = client.get(EXPORT_URL).context["form"]
    fields = {name: "on" for name, f in form.fields.items() if getattr(f, "is_selectable_field", False)}
    response = post(client, EXPORT_URL, {"format": FORMATS[file_format], "resource": "0", **fields})
    assert response.status_code == 200, response.content[:500]
    return response.content


def csv_file(rows: list[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HEADER)
    writer.writeheader()
    for row in rows:
        writer.writerow({caption(name): value for name, value in row.items()})
    return buffer.getvalue().encode()


def dry_run(client, content: bytes, file_format: str = "csv"):
    upload = SimpleUploadedFile(f"contacts.{file_format}", content)
    data = {"import_file": upload, "format": FORMATS[file_format], "resource": "0"}
    response = post(client, IMPORT_URL, data)
    assert response.status_code == 200
    return response


def confirm(client, dry_run_response):
    return post(client, PROCESS_URL, dry_run_response.context["confirm_form"].initial)


def counts(result) -> dict[str, int]:
    return {kind: total for kind, total in result.totals.items() if total}


@pytest.fixture
def admin(admin_user):
    return csrf_client(admin_user)


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_an_export_imported_again_changes_nothing(admin, file_format):
    company = CompanyFactory(name="Contoso Ltd", country_region_id="GB")
    PersonFactory(company=company, email="ada@example.com", country_region_id="DK")
    PersonFactory(company_name="Free text company")
    before = {c.no: c.last_modified for c in Contact.objects.all()}

    content = export(admin, file_format)
    if file_format == "csv":
        rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    else:
        sheet = openpyxl.load_workbook(io.BytesIO(content)).active
        rows = [[cell or "" for cell in row] for row in sheet.values]
    assert rows[0] == HEADER
    assert len(rows) == 4 and rows[1][1:3] == ["Company", "Contoso Ltd"]

    response = dry_run(admin, content, file_format)
    result = response.context["result"]
    assert not result.has_errors() and not result.has_validation_errors()
    assert counts(result) == {"skip": 3}
    confirm(admin, response)
    assert {c.no: c.last_modified for c in Contact.objects.all()} == before


def test_good_rows_create_contacts_from_the_number_series_and_update_others(admin):
    company = CompanyFactory(name="Contoso Ltd")
    existing = PersonFactory(first_name="Ada", surname="Lovelace", email="ada@example.com")
    old_stamp = existing.last_modified
    content = csv_file(
        [
            {
                "no": existing.no,
                "type": "Person",
                "first_name": "Ada",
                "surname": "Lovelace",
                "email": "ada.new@example.com",
                "city": "London",
            },
            {
                "type": "Person",
                "first_name": "Grace",
                "surname": "Hopper",
                "email": "grace@example.com",
                "company_name": "contoso ltd",
                "country_region": "us",
            },
            {"type": "Company", "name": "Fabrikam Inc", "city": "Seattle"},
        ]
    )

    response = dry_run(admin, content)
    result = response.context["result"]
    assert counts(result) == {"new": 2, "update": 1}, [r.error.message_dict for r in result.invalid_rows]
    page = response.content.decode()
    # The diff of what would change: the new part of Ada's address, and Grace's row.
    assert "<ins" in page and ".new" in page and "Grace" in page
    assert Contact.objects.count() == 2 and NumberSeries.objects.get(code="CONT").last_no == 2

    assert confirm(admin, response).status_code == 302
    existing.refresh_from_db()
    assert existing.email == "ada.new@example.com" and existing.last_modified > old_stamp
    grace = Contact.objects.get(first_name="Grace")
    assert grace.no == "CT000003" and grace.name == "Grace Hopper"
    assert grace.company == company and grace.company_name == "Contoso Ltd"
    assert grace.country_region_id == "US"
    fabrikam = Contact.objects.get(name="Fabrikam Inc")
    assert fabrikam.no == "CT000004" and fabrikam.type == ContactType.COMPANY


def test_bad_rows_are_reported_in_words_and_nothing_is_imported(admin):
    CompanyFactory(name="Contoso Ltd")
    CompanyFactory(name="Twin Corp")
    CompanyFactory(name="Twin Corp")
    existing = PersonFactory(first_name="Ada", surname="Lovelace")
    content = csv_file(
        [
            {"no": existing.no, "first_name": "Augusta", "surname": "Lovelace"},  # good on its own
            {"first_name": "Bad", "surname": "Email", "email": "not-an-address"},
            {"first_name": "Far", "surname": "Away", "country_region": "XX"},
            {"first_name": "No", "surname": "Company", "company_name": "Nobody Ltd"},
            {"first_name": "Two", "surname": "Companies", "company_name": "Twin Corp"},
            {"first_name": "L" * 31, "surname": "Long"},
            {"no": "CT999999", "first_name": "Ghost"},
            {"type": "Vendor", "name": "Wrong Type"},
        ]
    )

    response = dry_run(admin, content)
    result = response.context["result"]
    errors = {row.number: row.error.message_dict for row in result.invalid_rows}
    assert errors == {
        2: {"email": ["E-Mail: Enter a valid email address."]},
        3: {"country_region": ["Country/Region Code: There is no country/region with the code 'XX'."]},
        4: {"company_name": ["Company Name: No company contact is named 'Nobody Ltd'."]},
        5: {
            "company_name": [
                "Company Name: Several company contacts are named 'Twin Corp'; enter the Company No."
            ]
        },
        6: {"first_name": ["First Name: Ensure this value has at most 30 characters (it has 31)."]},
        7: {"no": ["No.: There is no contact with the No. 'CT999999'; leave No. empty to create one."]},
        8: {"type": ["Type: 'Vendor' is not a type; enter Person or Company."]},
    }
    page = response.content.decode()
    assert "Enter a valid email address." in page and "Several company contacts are named" in page
    assert "confirm_form" not in response.context or response.context["confirm_form"] is None
    existing.refresh_from_db()
    assert existing.first_name == "Ada" and Contact.objects.count() == 4
    assert NumberSeries.objects.get(code="CONT").last_no == 4


def test_resource_rolls_back_every_row_when_one_is_bad():
    """The same outside the admin: a real import (no dry run) with one bad row saves none."""
    existing = PersonFactory(first_name="Ada", surname="Lovelace")
    dataset = tablib.Dataset(headers=[caption(name) for name in ("no", "first_name", "surname", "email")])
    dataset.append([existing.no, "Augusta", "Lovelace", ""])
    dataset.append(["", "New", "Person", ""])
    dataset.append(["", "Bad", "Email", "nope"])
    result = ContactResource().import_data(dataset, dry_run=False)
    assert result.has_validation_errors()
    existing.refresh_from_db()
    assert existing.first_name == "Ada" and Contact.objects.count() == 1


def test_salespeople_export_but_do_not_import():
    salesperson = UserFactory()
    client = csrf_client(salesperson)
    assert client.get(EXPORT_URL).status_code == 200
    assert client.get(IMPORT_URL).status_code == 403
    changelist = client.get(reverse("admin:contacts_contact_changelist")).content.decode()
    assert EXPORT_URL in changelist and IMPORT_URL not in changelist
    salesperson.user_permissions.add(Permission.objects.get(codename="add_contact"))
    assert csrf_client(salesperson).get(IMPORT_URL).status_code == 200
