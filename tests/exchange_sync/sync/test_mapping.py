"""Business Central record <-> Graph contact (mapping.py): pure, no database, no network."""

from __future__ import annotations

import pytest

from exchange_sync.sync.mapping import (
    FAX_PROPERTY_ID,
    FIELD_LENGTHS,
    caption,
    changed_fields,
    graph_body,
    outlook_contact,
    record_hash,
)

from .builders import COUNTRIES, graph_item


def full_record(**overrides: str) -> dict[str, str]:
    record = {
        "company_name": "Fabrikam Ltd",
        "first_name": "Ann",
        "middle_name": "Marie",
        "surname": "Lee",
        "initials": "AML",
        "name": "Ann Marie Lee",
        "email": "ann.lee@fabrikam.example",
        "email_2": "ann@home.example",
        "home_page": "https://fabrikam.example",
        "phone_no": "+44 20 7946 0001",
        "mobile_phone_no": "+44 7700 900123",
        "fax_no": "+44 20 7946 0002",
        "address": "1 Main Street",
        "address_2": "Floor 3",
        "city": "London",
        "post_code": "EC1A 1BB",
        "county": "Greater London",
        "country_region": "GB",
        "job_title": "Buyer",
    }
    record.update(overrides)
    return record


def empty_record() -> dict[str, str]:
    return {key: "" for key in FIELD_LENGTHS}


def from_graph(item: dict):
    return outlook_contact(item, COUNTRIES)


# --- Business Central -> Graph ----------------------------------------------------------------------


def test_graph_body_maps_every_field():
    body = graph_body(full_record())

    assert body == {
        "displayName": "Ann Marie Lee",
        "givenName": "Ann",
        "middleName": "Marie",
        "surname": "Lee",
        "initials": "AML",
        "jobTitle": "Buyer",
        "companyName": "Fabrikam Ltd",
        "emailAddresses": [
            {"address": "ann.lee@fabrikam.example", "name": "Ann Marie Lee"},
            {"address": "ann@home.example", "name": "Ann Marie Lee"},
        ],
        "businessPhones": ["+44 20 7946 0001"],
        "mobilePhone": "+44 7700 900123",
        "businessHomePage": "https://fabrikam.example",
        "businessAddress": {
            "street": "1 Main Street\r\nFloor 3",
            "city": "London",
            "state": "Greater London",
            "postalCode": "EC1A 1BB",
            "countryOrRegion": "GB",
        },
        "singleValueExtendedProperties": [{"id": "String 0x3A24", "value": "+44 20 7946 0002"}],
    }


def test_graph_body_of_an_empty_record_clears_every_field():
    body = graph_body(empty_record())

    assert body == {
        "displayName": "",
        "givenName": None,
        "middleName": None,
        "surname": None,
        "initials": None,
        "jobTitle": None,
        "companyName": None,
        "emailAddresses": [],
        "businessPhones": [],
        "mobilePhone": None,
        "businessHomePage": None,
        "businessAddress": {
            "street": None,
            "city": None,
            "state": None,
            "postalCode": None,
            "countryOrRegion": None,
        },
        "singleValueExtendedProperties": [{"id": FAX_PROPERTY_ID, "value": ""}],
    }


def test_graph_body_street_without_a_second_line_has_no_line_break():
    assert graph_body(full_record(address_2=""))["businessAddress"]["street"] == "1 Main Street"


def test_graph_body_with_only_the_second_email_sends_just_that_one():
    body = graph_body(full_record(email="", email_2="second@example.com", name=""))

    assert body["emailAddresses"] == [{"address": "second@example.com", "name": "second@example.com"}]


# --- Graph -> Business Central ----------------------------------------------------------------------


def test_a_graph_contact_maps_to_a_record():
    item = graph_item(
        "AAMk1",
        name="Ann Marie Lee",
        email="ann.lee@fabrikam.example",
        emailAddresses=[{"address": " ann.lee@fabrikam.example "}, {"address": "ann@home.example"}],
        givenName="Ann",
        middleName="Marie",
        surname="Lee",
        initials="AML",
        jobTitle="Buyer",
        companyName="Fabrikam Ltd",
        businessPhones=["+44 20 7946 0001", "+44 20 7946 0009"],
        mobilePhone="+44 7700 900123",
        businessHomePage="https://fabrikam.example",
        businessAddress={
            "street": "1 Main Street\r\nFloor 3",
            "city": "London",
            "state": "Greater London",
            "postalCode": "EC1A 1BB",
            "countryOrRegion": "GB",
        },
        singleValueExtendedProperties=[{"id": "String 0x3A24", "value": "+44 20 7946 0002"}],
    )

    contact = from_graph(item)

    assert (contact.graph_id, contact.change_key) == ("AAMk1", "ck-AAMk1")
    assert contact.record == full_record()
    assert contact.problems == []
    assert contact.originals == {}
    assert contact.email == "ann.lee@fabrikam.example"
    assert contact.has_valid_email


@pytest.mark.parametrize(
    "street, address, address_2",
    [
        ("1 Main Street\r\nFloor 3", "1 Main Street", "Floor 3"),
        ("1 Main Street\nFloor 3", "1 Main Street", "Floor 3"),
        ("1 Main Street\r\nFloor 3\r\nRoom 12", "1 Main Street", "Floor 3 Room 12"),
        ("1 Main Street\nFloor 3\nRoom 12", "1 Main Street", "Floor 3 Room 12"),
        ("1 Main Street", "1 Main Street", ""),
        ("  1 Main Street  \r\n  Floor 3  ", "1 Main Street", "Floor 3"),
        ("", "", ""),
    ],
)
def test_the_street_splits_on_the_first_line_break(street, address, address_2):
    contact = from_graph(graph_item("g1", businessAddress={"street": street}))

    assert (contact.record["address"], contact.record["address_2"]) == (address, address_2)


@pytest.mark.parametrize(
    "country, code",
    [
        ("GB", "GB"),
        ("gb", "GB"),
        (" dk ", "DK"),
        ("Denmark", "DK"),
        ("DENMARK", "DK"),
        ("united kingdom", "GB"),
    ],
)
def test_the_country_is_found_by_code_or_by_name(country, code):
    contact = from_graph(graph_item("g1", businessAddress={"countryOrRegion": country}))

    assert contact.record["country_region"] == code
    assert contact.problems == []


def test_an_unknown_country_is_left_blank_and_named():
    contact = from_graph(graph_item("g1", businessAddress={"countryOrRegion": "Atlantis"}))

    assert contact.record["country_region"] == ""
    assert contact.problems == [
        "Country/Region 'Atlantis' is neither a code nor a name in Business Central; left blank."
    ]


@pytest.mark.parametrize(
    "graph_field, key",
    [
        ("givenName", "first_name"),
        ("surname", "surname"),
        ("jobTitle", "job_title"),
        ("companyName", "company_name"),
        ("mobilePhone", "mobile_phone_no"),
        ("businessHomePage", "home_page"),
    ],
)
def test_a_value_too_long_for_business_central_is_cut_and_kept_whole(graph_field, key):
    limit = FIELD_LENGTHS[key]
    value = "x" * (limit + 15)

    contact = from_graph(graph_item("g1", **{graph_field: value}))

    assert contact.record[key] == "x" * limit
    assert contact.originals == {key: value}
    assert contact.problems == [f"Cut to fit Business Central: {caption(key)} ({limit + 15} characters)"]


def test_a_value_exactly_the_field_length_is_not_cut():
    contact = from_graph(graph_item("g1", jobTitle="j" * 30, businessAddress={"city": "c" * 30}))

    assert (contact.record["job_title"], contact.record["city"]) == ("j" * 30, "c" * 30)
    assert contact.originals == {}
    assert contact.problems == []


def test_address_fields_too_long_are_cut():
    contact = from_graph(
        graph_item("g1", businessAddress={"street": "a" * 120 + "\n" + "b" * 60, "postalCode": "9" * 25})
    )

    assert contact.record["address"] == "a" * 100
    assert contact.record["address_2"] == "b" * 50
    assert contact.record["post_code"] == "9" * 20
    assert set(contact.originals) == {"address", "address_2", "post_code"}
    assert contact.problems == [
        "Cut to fit Business Central: "
        "Address (120 characters), Address 2 (60 characters), Post Code (25 characters)"
    ]


def test_a_cut_that_ends_in_a_space_is_trimmed():
    contact = from_graph(graph_item("g1", jobTitle="a" * 29 + " " + "b" * 10))

    assert contact.record["job_title"] == "a" * 29


def test_a_third_email_address_is_named_as_a_problem():
    addresses = [{"address": a} for a in ("one@example.com", "two@example.com", "three@example.com")]

    contact = from_graph(graph_item("g1", emailAddresses=addresses))

    assert (contact.record["email"], contact.record["email_2"]) == ("one@example.com", "two@example.com")
    assert contact.problems == [
        "Only two email addresses are synced: the third, 'three@example.com', is recorded here and not "
        "kept in Outlook when Business Central's values are sent."
    ]


def test_a_1000_character_name_is_cut_to_business_centrals_lengths():
    long = "N" * 1000

    contact = from_graph(graph_item("g1", name=long, givenName=long, surname=long))

    assert contact.record["name"] == "N" * 100
    assert contact.record["first_name"] == "N" * 30
    assert contact.record["surname"] == "N" * 30
    assert contact.originals == {"name": long, "first_name": long, "surname": long}
    assert "name (1000 characters)" in contact.problems[0]


@pytest.mark.parametrize(
    "name",
    [
        "Zoë 😀 Lee",  # emoji outside the Basic Multilingual Plane
        "שרה כהן",  # right to left
        "سارة",  # right to left, Arabic
        "\u202eeeL nnA",  # right-to-left override
        "Ann\u200bLee",  # zero-width space
        "Ann\u200dLee\ufeff",  # zero-width joiner, byte order mark (neither is whitespace)
        "👩\u200d👩\u200d👧 family",  # one grapheme made of several code points
    ],
)
def test_unusual_characters_pass_through(name):
    contact = from_graph(graph_item("g1", name=name, givenName=name, email="ann@example.com"))

    assert contact.record["name"] == name
    assert contact.record["first_name"] == name
    assert contact.problems == []
    assert len(record_hash(contact.record)) == 64


def test_emoji_are_counted_as_characters_when_cut():
    emoji = "😀" * 40

    contact = from_graph(graph_item("g1", givenName=emoji))

    assert contact.record["first_name"] == "😀" * 30
    assert contact.originals == {"first_name": emoji}


def test_a_lone_surrogate_from_graph_is_replaced_so_the_record_can_be_hashed():
    """Graph's JSON may carry half an emoji ("\\ud83d"); it cannot be encoded as UTF-8."""
    contact = from_graph(graph_item("g1", name="Ann \ud83d", givenName="\ud83d\ude00Ann"))

    assert contact.record["name"] == "Ann \ufffd"
    assert contact.record["first_name"] == "😀Ann"
    assert len(record_hash(contact.record)) == 64


def test_a_graph_contact_with_every_field_null_maps_to_an_empty_record():
    item = {
        "id": "g1",
        "changeKey": None,
        "displayName": None,
        "givenName": None,
        "middleName": None,
        "surname": None,
        "initials": None,
        "jobTitle": None,
        "companyName": None,
        "emailAddresses": None,
        "businessPhones": None,
        "mobilePhone": None,
        "businessHomePage": None,
        "businessAddress": None,
        "singleValueExtendedProperties": None,
    }

    contact = from_graph(item)

    expected = empty_record()
    del expected["fax_no"]  # not returned: unknown, so not synced
    assert contact.record == expected
    assert (contact.change_key, contact.problems, contact.originals) == ("", [], {})
    assert (contact.email, contact.has_valid_email, contact.label) == ("", False, "(no name)")


def test_an_empty_graph_contact_maps_without_raising():
    contact = from_graph({"id": "x"})

    assert contact.graph_id == "x"
    assert set(contact.record) == set(FIELD_LENGTHS) - {"fax_no"}
    assert set(contact.record.values()) == {""}
    assert contact.problems == []


def test_null_and_junk_inside_lists_and_the_address_are_ignored():
    item = graph_item(
        "g1",
        emailAddresses=[
            None,
            "x@example.com",
            {"address": None},
            {"address": "  "},
            {"address": "ok@example.com"},
        ],
        businessPhones=[None, "", "  ", "+45 1234"],
        businessAddress={"street": None, "city": 7, "countryOrRegion": None},
        singleValueExtendedProperties=[None, {"id": None}, {"id": "string 0x3a24", "value": None}],
    )

    contact = from_graph(item)

    assert contact.record["email"] == "ok@example.com"
    assert contact.record["email_2"] == ""
    assert contact.record["phone_no"] == "+45 1234"
    assert (contact.record["address"], contact.record["city"], contact.record["country_region"]) == (
        "",
        "",
        "",
    )
    assert contact.record["fax_no"] == ""
    assert contact.problems == []


def test_the_name_falls_back_to_the_name_parts():
    contact = from_graph(graph_item("g1", name="  ", givenName=" Ann ", middleName="", surname="Lee"))

    assert contact.record["name"] == "Ann Lee"
    assert contact.label == "Ann Lee"


def test_the_fax_is_read_from_the_extended_property_case_insensitively():
    with_fax = from_graph(
        graph_item("g1", singleValueExtendedProperties=[{"id": "STRING 0X3A24", "value": " 123 "}])
    )
    other_property = from_graph(
        graph_item("g1", singleValueExtendedProperties=[{"id": "String 0x1234", "value": "x"}])
    )
    not_expanded = from_graph(graph_item("g1"))

    assert with_fax.record["fax_no"] == "123"
    assert other_property.record["fax_no"] == ""  # expanded, no fax set in Outlook
    assert "fax_no" not in not_expanded.record


def test_the_email_is_compared_normalised():
    contact = from_graph(graph_item("g1", email="  Ann.Lee@Example.COM "))

    assert contact.record["email"] == "Ann.Lee@Example.COM"
    assert contact.email == "ann.lee@example.com"


# --- Round trip -------------------------------------------------------------------------------------


def _echo(body: dict, graph_id: str = "AAMkNew") -> dict:
    """What Graph returns for a body it stored: the same fields plus an id, and no extended
    properties unless $expand asks for them."""
    echoed = {key: value for key, value in body.items() if key != "singleValueExtendedProperties"}
    return {**echoed, "id": graph_id, "changeKey": "ck1"}


@pytest.mark.parametrize(
    "record",
    [
        full_record(),
        full_record(address_2="", email_2="", middle_name="", name="Ann Lee", initials=""),
        full_record(first_name="Zoë", name="Zoë Marie Lee", city="København", country_region="DK"),
        full_record(company_name="", phone_no="", mobile_phone_no="", fax_no="", home_page=""),
    ],
)
def test_a_record_round_trips_through_graph_except_the_fax(record):
    back = from_graph(_echo(graph_body(record)))

    assert back.record == {key: value for key, value in record.items() if key != "fax_no"}
    assert back.problems == []


def test_a_record_round_trips_with_the_fax_when_graph_returns_it():
    record = full_record()

    back = from_graph({**graph_body(record), "id": "AAMkNew"})

    assert back.record == record


# --- record_hash and changed_fields -----------------------------------------------------------------


def test_record_hash_is_stable_and_ignores_key_order():
    record = full_record()
    reversed_record = dict(reversed(list(record.items())))

    assert record_hash(record) == record_hash(reversed_record) == record_hash(full_record())
    assert len(record_hash(record)) == 64


def test_record_hash_changes_with_any_value_and_with_a_missing_key():
    record = full_record()
    without_fax = {key: value for key, value in record.items() if key != "fax_no"}

    assert record_hash(full_record(job_title="Seller")) != record_hash(record)
    assert record_hash(full_record(job_title="Buyer ")) != record_hash(record)
    assert record_hash(without_fax) != record_hash(record)


def test_an_unchanged_graph_contact_hashes_the_same_on_every_read():
    item = graph_item("g1", jobTitle="Buyer", businessAddress={"street": "1 Main St\r\nFloor 3"})

    assert record_hash(from_graph(item).record) == record_hash(from_graph(dict(item)).record)


def test_changed_fields_names_what_would_be_overwritten():
    old = full_record()
    new = {
        key: value for key, value in full_record(city="Leeds", job_title="Buyer").items() if key != "fax_no"
    }

    assert changed_fields(old, new) == {"city": "London"}
