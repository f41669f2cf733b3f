import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections
from django.utils import timezone

from contacts.models import Contact, ContactType, CountryRegion, NumberSeries, normalize_email
from tests.factories import CompanyFactory, PersonFactory

pytestmark = pytest.mark.django_db


def test_country_regions_are_loaded_from_iso_3166():
    assert CountryRegion.objects.count() == 249
    assert CountryRegion.objects.get(code="DK").name == "Denmark"


def test_contact_numbers_follow_the_series():
    first, second = PersonFactory(), PersonFactory()
    assert first.no == "CT000001"
    assert second.no == "CT000002"


def test_number_series_reserves_consecutive_blocks():
    assert NumberSeries.take("CONT", 3) == ["CT000001", "CT000002", "CT000003"]
    assert NumberSeries.take("CONT") == ["CT000004"]


def test_unknown_number_series_is_an_error():
    with pytest.raises(LookupError):
        NumberSeries.take("NOPE")


@pytest.mark.django_db(transaction=True)
def test_number_series_stays_unique_when_writers_race():
    """Eight threads, each on its own connection, save contacts at the same time."""
    per_thread, threads = 10, 8
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def create_contacts() -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                Contact.objects.create(first_name="Race", surname=f"Writer{i}")
        except BaseException as exc:  # reported below, so the test says what went wrong
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=create_contacts) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    numbers = list(Contact.objects.values_list("no", flat=True))
    assert len(numbers) == per_thread * threads
    assert len(set(numbers)) == len(numbers)
    assert NumberSeries.objects.get(code="CONT").last_no == per_thread * threads
    assert connection.vendor in ("sqlite", "postgresql")


def test_person_name_is_built_from_its_parts_when_left_blank():
    person = Contact.objects.create(first_name="Ada", middle_name="King", surname="Lovelace")
    assert person.name == "Ada King Lovelace"


def test_an_explicit_name_is_kept():
    person = Contact.objects.create(name="Countess of Lovelace", first_name="Ada", surname="Lovelace")
    assert person.name == "Countess of Lovelace"


def test_search_email_is_normalised():
    person = PersonFactory(email="  Ada.Lovelace@Example.COM ")
    assert person.search_email == "ada.lovelace@example.com"
    assert normalize_email(None) == ""


def test_last_modified_is_stamped_in_utc_on_every_save():
    person = PersonFactory()
    before = person.last_modified
    person.job_title = "Engineer"
    person.save(update_fields=["job_title"])
    person.refresh_from_db()
    assert person.last_modified > before
    assert person.last_modified.utcoffset() == timedelta(0)


def test_bulk_update_paths_stamp_last_modified():
    person = PersonFactory()
    old = timezone.now() - timedelta(days=3)
    Contact.objects.filter(pk=person.pk).update(last_modified=old)
    Contact.objects.filter(pk=person.pk).update(city="Paris")
    person.refresh_from_db()
    assert person.last_modified > old

    Contact.objects.filter(pk=person.pk).update(last_modified=old)
    person.refresh_from_db()
    person.email = "NEW@Example.com"
    Contact.objects.bulk_update([person], ["email"])
    person.refresh_from_db()
    assert person.last_modified > old
    assert person.search_email == "new@example.com"


def test_bulk_create_numbers_and_derives():
    created = Contact.objects.bulk_create(
        [Contact(first_name="A", surname="One", email="A@X.test"), Contact(first_name="B", surname="Two")]
    )
    assert [c.no for c in created] == ["CT000001", "CT000002"]
    assert Contact.objects.get(no="CT000001").search_email == "a@x.test"
    assert Contact.objects.get(no="CT000002").name == "B Two"


def test_company_name_follows_the_company():
    company = CompanyFactory(name="Analytical Engines")
    person = PersonFactory(company=company)
    assert person.company_name == "Analytical Engines"
    company.name = "Difference Engines"
    company.save()
    person.refresh_from_db()
    assert person.company_name == "Difference Engines"


def test_company_no_must_point_at_a_company():
    not_a_company = PersonFactory()
    person = PersonFactory.build(company=not_a_company)
    with pytest.raises(ValidationError) as info:
        person.full_clean()
    assert "company" in info.value.message_dict


def test_a_company_cannot_be_its_own_company():
    company = CompanyFactory()
    company.type = ContactType.PERSON
    company.company = company
    with pytest.raises(ValidationError):
        company.full_clean()


@pytest.mark.parametrize("email", ["a@", "@b", "A B@C", "not-an-email"])
def test_invalid_email_is_refused(email):
    with pytest.raises(ValidationError) as info:
        PersonFactory.build(email=email).full_clean(exclude=["no"])
    assert "email" in info.value.message_dict


def test_phone_numbers_refuse_letters():
    with pytest.raises(ValidationError) as info:
        PersonFactory.build(phone_no="+44 CALL ME").full_clean(exclude=["no"])
    assert info.value.message_dict["phone_no"] == ["A phone number cannot contain letters."]
    PersonFactory.build(phone_no="+44 (20) 7946-0000").full_clean(exclude=["no"])


def test_a_person_needs_some_name():
    with pytest.raises(ValidationError) as info:
        Contact(type=ContactType.PERSON).full_clean(exclude=["no"])
    assert "name" in info.value.message_dict


def test_field_lengths_are_business_centrals():
    lengths = {f.name: f.max_length for f in Contact._meta.fields if getattr(f, "max_length", None)}
    assert lengths["name"] == 100
    assert lengths["first_name"] == lengths["surname"] == lengths["job_title"] == 30
    assert lengths["email"] == lengths["email_2"] == 80
    assert lengths["address"] == 100 and lengths["address_2"] == 50
    assert lengths["post_code"] == 20 and lengths["county"] == 30


NUL_NAME = "Nul\x00 Byte\x07"  # NUL fails a PostgreSQL statement; BEL has no place in Outlook's XML


def test_every_write_path_removes_characters_no_database_can_store():
    saved = Contact.objects.create(first_name="Ann\x00", surname="Lee", job_title="Sales\x00\x1b")
    [created] = Contact.objects.bulk_create([Contact(name=NUL_NAME, email="nul\x00@example.com")])
    created = Contact.objects.get(pk=created.pk)
    bulk_updated = PersonFactory()
    bulk_updated.city = "Lon\x00don"
    Contact.objects.bulk_update([bulk_updated], ["city"])
    updated = PersonFactory()
    Contact.objects.filter(pk=updated.pk).update(county="Kent\x00")

    saved.refresh_from_db()
    assert (saved.first_name, saved.name, saved.job_title) == ("Ann", "Ann Lee", "Sales")
    assert (created.name, created.email, created.search_email) == (
        "Nul Byte",
        "nul@example.com",
        "nul@example.com",
    )
    assert Contact.objects.get(pk=bulk_updated.pk).city == "London"
    assert Contact.objects.get(pk=updated.pk).county == "Kent"


def test_tab_and_line_breaks_are_kept():
    contact = Contact.objects.create(name="Ann", address="Line\tone\r\nLine two")
    contact.refresh_from_db()
    assert contact.address == "Line\tone\r\nLine two"


def test_the_contact_admin_form_saves_without_control_characters(admin_client):
    response = admin_client.post(
        "/admin/contacts/contact/add/",
        {
            "type": "person",
            "first_name": "Esc\x1bape",
            "surname": "Bell\x07",
            "job_title": "Sales\x1b",
            "persons-TOTAL_FORMS": "0",
            "persons-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    contact = Contact.objects.get()
    assert (contact.first_name, contact.surname, contact.name, contact.job_title) == (
        "Escape",
        "Bell",
        "Escape Bell",
        "Sales",
    )
