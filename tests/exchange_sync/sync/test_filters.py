import pytest
from django.db import transaction
from django.db.models import Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contacts.models import Contact, CountryRegion
from exchange_sync.forms import ContactFilterForm
from exchange_sync.sync.filters import (
    FILTER_FIELDS,
    FilterError,
    compile_filter,
    describe_filter,
    imported_kept_filter,
    pinned_values,
    validate_filter,
)
from tests.factories import CompanyFactory, PersonFactory

ALL = {"Alpine", "Contoso", "Ann", "Ben", "Cid", "Dee", "Eve", "Fay", "Gus"}


@pytest.fixture
def contacts(db):
    """A handful of contacts, each name telling which filters should pick it."""
    dk, gb, us = (CountryRegion.objects.get(code=code) for code in ("DK", "GB", "US"))
    alpine = CompanyFactory(
        no="C00010", name="Alpine", city="København", territory_code="EU", salesperson_code="JO",
        post_code="1050", country_region=dk,
    )  # fmt: skip
    contoso = CompanyFactory(
        no="C00020", name="Contoso", city="Seattle", territory_code="NA", salesperson_code="LT",
        county="WA", post_code="98052", country_region=us,
    )  # fmt: skip
    people = [
        dict(name="Ann", city="London", territory_code="EU", salesperson_code="JO",
             county="Greater London", post_code="N1 9GU", country_region=gb, company=alpine),
        dict(name="Ben", city="london", territory_code="EU", salesperson_code="",
             county="", post_code="EC1A", country_region=gb, company=alpine),
        dict(name="Cid", city="Londonderry", territory_code="UK", salesperson_code="LT",
             county="Derry", post_code="BT48", country_region=gb, company=None),
        dict(name="Dee", city="Redmond", territory_code="NA", salesperson_code="LT",
             county="WA", post_code="98052", country_region=us, company=contoso),
        dict(name="Eve", city="", territory_code="", salesperson_code="",
             county="", post_code="", country_region=None, company=None),
        dict(name="Fay", city="KØBENHAVN", territory_code="EU", salesperson_code="JO",
             county="", post_code="1050", country_region=dk, company=alpine),
        dict(name="Gus", city="St. Albans", territory_code="EU", salesperson_code="",
             county="Herts", post_code="AL1", country_region=gb, company=None),
    ]  # fmt: skip
    for fields in people:
        PersonFactory(**fields)
    Contact.objects.filter(name="Gus").update(name="Star*Dust|Gus")


def matching(filters: dict[str, str]) -> set[str]:
    names = Contact.objects.filter(compile_filter(filters=filters)).values_list("name", flat=True)
    return {"Gus" if name == "Star*Dust|Gus" else name for name in names}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        # exact values, case-sensitive unless "@"
        ({"city": "London"}, {"Ann"}),
        ({"city": "london"}, {"Ben"}),
        ({"city": "@LONDON"}, {"Ann", "Ben"}),
        ({"city": "=London"}, {"Ann"}),
        ({"city": "  London  "}, {"Ann"}),
        ({"city": "St. Albans"}, {"Gus"}),
        # non-ASCII letters ignore case too
        ({"city": "@københavn"}, {"Alpine", "Fay"}),
        ({"city": "@KØB*"}, {"Alpine", "Fay"}),
        ({"city": "København"}, {"Alpine"}),
        ({"city": "@*ØBEN*"}, {"Alpine", "Fay"}),
        ({"city": "@k?benhavn"}, {"Alpine", "Fay"}),
        ({"city": "'@København'"}, set()),
        # wildcards in every position
        ({"city": "Lon*"}, {"Ann", "Cid"}),
        ({"city": "@lon*"}, {"Ann", "Ben", "Cid"}),
        ({"city": "*don"}, {"Ann", "Ben"}),
        ({"city": "@*DON"}, {"Ann", "Ben"}),
        ({"city": "*ond*"}, {"Ann", "Ben", "Cid", "Dee"}),
        ({"city": "@*OND*"}, {"Ann", "Ben", "Cid", "Dee"}),
        ({"city": "L*n"}, {"Ann"}),
        ({"city": "@l*n"}, {"Ann", "Ben"}),
        ({"city": "*o*d*r*"}, {"Cid"}),
        ({"city": "R*d*d"}, {"Dee"}),
        ({"city": "?ondon"}, {"Ann", "Ben"}),
        ({"city": "Lond??"}, {"Ann"}),
        ({"city": "@?ONDON"}, {"Ann", "Ben"}),
        ({"city": "*"}, ALL),
        ({"city": "?*"}, ALL - {"Eve"}),
        ({"city": "<>Lon*"}, ALL - {"Ann", "Cid"}),
        # regex metacharacters in a pattern are literal
        ({"city": "St. *"}, {"Gus"}),
        ({"city": "St.*s"}, {"Gus"}),
        ({"city": "S.*"}, set()),
        # ranges compare as strings, inclusive
        ({"post_code": "1000..2000"}, {"Alpine", "Fay"}),
        ({"post_code": "A..C"}, {"Gus", "Cid"}),
        ({"post_code": "E.."}, {"Ann", "Ben"}),
        ({"post_code": "..1050"}, {"Alpine", "Fay", "Eve"}),
        ({"post_code": "<1050"}, {"Eve"}),
        ({"post_code": "<=1050"}, {"Alpine", "Fay", "Eve"}),
        ({"post_code": ">98052"}, {"Ann", "Ben", "Cid", "Gus"}),
        ({"post_code": ">=98052"}, {"Contoso", "Dee", "Ann", "Ben", "Cid", "Gus"}),
        ({"territory_code": ">=A&<=M"}, {"Alpine", "Ann", "Ben", "Fay", "Gus"}),
        # not equal, blank, not blank
        ({"territory_code": "<>EU"}, {"Contoso", "Cid", "Dee", "Eve"}),
        ({"salesperson_code": "''"}, {"Ben", "Eve", "Gus"}),
        ({"salesperson_code": "<>''"}, {"Alpine", "Contoso", "Ann", "Cid", "Dee", "Fay"}),
        ({"county": "''|WA"}, {"Alpine", "Ben", "Contoso", "Dee", "Eve", "Fay"}),
        # alternatives, AND, parentheses
        ({"territory_code": "EU|NA"}, {"Alpine", "Contoso", "Ann", "Ben", "Dee", "Fay", "Gus"}),
        ({"territory_code": " EU | UK "}, {"Alpine", "Ann", "Ben", "Cid", "Fay", "Gus"}),
        ({"territory_code": "EU|NA&<>NA"}, {"Alpine", "Ann", "Ben", "Fay", "Gus"}),
        ({"city": "(Lon*|Red*)&<>London"}, {"Cid", "Dee"}),
        ({"territory_code": "EU|NA", "salesperson_code": "LT"}, {"Contoso", "Dee"}),
        # quoted literals keep special characters
        ({"name": "'Star*Dust|Gus'"}, {"Gus"}),
        ({"name": "Star*"}, {"Gus"}),
        ({"name": "'Star*'"}, set()),
        # Company No.: blank means no company
        ({"company_no": "C00010"}, {"Ann", "Ben", "Fay"}),
        ({"company_no": "C00010|C00020"}, {"Ann", "Ben", "Fay", "Dee"}),
        ({"company_no": "''"}, {"Alpine", "Contoso", "Cid", "Eve", "Gus"}),
        ({"company_no": "<>''"}, {"Ann", "Ben", "Fay", "Dee"}),
        ({"company_no": "<>C00010"}, ALL - {"Ann", "Ben", "Fay"}),
        ({"company_no": "C*20"}, {"Dee"}),
        ({"company_no": "..C00015"}, ALL - {"Dee"}),
        ({"company_no": "C00015.."}, {"Dee"}),
        # Country/Region Code: blank means none
        ({"country_region_code": "DK|GB"}, {"Alpine", "Ann", "Ben", "Cid", "Fay", "Gus"}),
        ({"country_region_code": "''"}, {"Eve"}),
        ({"country_region_code": "<>GB"}, {"Alpine", "Contoso", "Dee", "Eve", "Fay"}),
        ({"country_region_code": "@dk"}, {"Alpine", "Fay"}),
        ({"country_region_code": "A..E"}, {"Alpine", "Fay"}),
        # Type
        ({"type": "Company"}, {"Alpine", "Contoso"}),
        ({"type": "person"}, ALL - {"Alpine", "Contoso"}),
        ({"type": "<>PERSON"}, {"Alpine", "Contoso"}),
        ({"type": "Person|Company"}, ALL),
        # nothing, or only empty expressions: everyone
        ({}, ALL),
        ({"city": "", "name": "   "}, ALL),
    ],
)
def test_filters_select_exactly_the_matching_contacts(contacts, filters, expected):
    assert matching(filters) == expected


def test_a_pattern_with_many_pieces_does_not_backtrack_for_ever(db):
    """Python's regex engine (Django's REGEXP on SQLite) would try every placement of the pieces."""
    PersonFactory(name="a" * 100)
    assert matching({"name": "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"}) == set()
    assert matching({"name": "a*a*a*a*a*a*a*a*a*a*a*a*a*a*a"}) == {"a" * 100}


def test_wildcards_span_line_breaks_and_anchor_at_the_very_end(db):
    r"""Python's "$" also matches before a final line break; "\Z" does not, in either database."""
    PersonFactory(name="Hal", city="Lon\ndon")
    PersonFactory(name="Ivy", city="London\n")
    assert matching({"city": "Lon?don"}) == {"Hal"}
    assert matching({"city": "L*n"}) == {"Hal"}
    assert matching({"city": "@l*N"}) == {"Hal"}
    assert matching({"city": "*n?"}) == {"Ivy"}


def test_an_apostrophe_needs_quoting_only_at_the_start():
    assert compile_filter(filters={"name": "O'Brien"}) == Q(name="O'Brien")
    assert compile_filter(filters={"name": "'O''Brien'"}) == Q(name="O'Brien")
    assert compile_filter(filters={"name": "''''"}) == Q(name="'")


def test_compile_filter_builds_a_q_not_sql():
    query = compile_filter(filters={"territory_code": "EU|NA", "city": "@lon*"})
    assert isinstance(query, Q)
    assert query == (Q(territory_code="EU") | Q(territory_code="NA")) & Q(city__istartswith="lon")


@pytest.mark.parametrize(
    ("expression", "position", "fragment"),
    [
        ("..", 0, 'a range needs a value on at least one side ("x..y", "x.." or "..y")'),
        ("a..b..c", 4, 'a range takes two values ("x..y"); unexpected ".."'),
        ("Lon..*..x", 6, 'a range takes two values ("x..y"); unexpected ".."'),
        ("a....b", 3, 'a range takes two values ("x..y")'),
        ("<>", 2, 'expected a value after "<>"'),
        (">", 1, 'expected a value after ">"'),
        ("a||b", 2, 'expected a value; unexpected "|"'),
        ("|a", 0, 'expected a value; unexpected "|"'),
        ("a|", 2, 'expected a value after "|"'),
        ("'unterminated", 0, "unterminated quote"),
        ("'it''s", 0, "unterminated quote"),
        ("((a)", 0, 'unclosed "("'),
        ("(a))", 3, 'unexpected ")"'),
        ("()", 1, 'expected a value; unexpected ")"'),
        ("@", 1, 'expected a value after "@"'),
        ("a&", 2, 'expected a value after "&"'),
        ("&a", 0, 'expected a value; unexpected "&"'),
        ("'a'b", 3, 'expected "|", "&" or the end; unexpected "b"'),
        ("a=b", 1, 'unexpected "="'),
        ("A..M*", 4, "a range or comparison takes a plain value, not a wildcard"),
        ("<L?n", 2, "not a wildcard"),
        ("<@a", 1, '"@" (ignore case) works with values and wildcards'),
        ("@a..c", 0, '"@" (ignore case)'),
    ],
)
def test_malformed_expressions_are_refused_pointing_at_the_bad_part(expression, position, fragment):
    with pytest.raises(FilterError) as info:
        compile_filter(filters={"city": expression})
    error = info.value
    assert isinstance(error, ValueError)
    assert (error.field, error.caption, error.expression, error.position) == (
        "city",
        "City",
        expression,
        position,
    )
    assert fragment in str(error)
    assert str(error).startswith(f'City: "{expression}" — ')
    assert str(error).endswith(f" at position {position}")


def test_the_message_reads_like_the_dialog():
    with pytest.raises(FilterError) as info:
        validate_filter(filters={"city": "Lon..*..x"})
    assert str(info.value) == (
        'City: "Lon..*..x" — a range takes two values ("x..y"); unexpected ".." at position 6'
    )


@pytest.mark.parametrize(
    ("expression", "position"), [("Person|Robot", 7), ("Pers*", 0), ("<Person", 1), ("''", 0), ("A..Z", 0)]
)
def test_type_takes_only_person_or_company(expression, position):
    with pytest.raises(FilterError) as info:
        validate_filter(filters={"type": expression})
    assert info.value.position == position
    assert 'Type takes Person or Company (with "|" and "<>")' in str(info.value)


def test_an_unknown_field_is_refused_with_the_fields_there_are():
    with pytest.raises(FilterError) as info:
        validate_filter(filters={"colour": "red"})
    assert info.value.field == "colour"
    assert str(info.value) == (
        'Unknown filter field "colour"; filterable fields: Territory Code, Company No., Salesperson Code, '
        "City, County, Post Code, Country/Region Code, Name, Type"
    )


@pytest.mark.parametrize("value", [42, None, ["EU"]])
def test_an_expression_must_be_text(value):
    with pytest.raises(FilterError, match=r"^Territory Code: .* the filter must be text"):
        validate_filter(filters={"territory_code": value})


def test_a_filter_must_be_a_mapping():
    with pytest.raises(FilterError, match="mapping of field to expression, not list"):
        validate_filter(filters=["city"])  # type: ignore[arg-type]


def test_enormous_input_is_refused_before_parsing():
    expression = "(" * 5_000 + "a" + ")" * 5_000
    with pytest.raises(FilterError) as info:
        compile_filter(filters={"name": expression})
    assert info.value.position == 250
    assert "the filter is 10001 characters long; at most 250 are allowed" in str(info.value)
    assert len(str(info.value)) < 200  # the message does not repeat the whole input


def test_too_many_alternatives_are_refused():
    assert validate_filter(filters={"city": "|".join("a" * 100)})
    with pytest.raises(FilterError) as info:
        validate_filter(filters={"city": "|".join("a" * 101)})
    assert info.value.position == 199
    assert 'too many alternatives; at most 100 values may be joined with "|"' in str(info.value)


def test_deep_parentheses_within_the_limit_parse():
    assert validate_filter(filters={"city": "(" * 124 + "a" + ")" * 124})


def test_validate_filter_trims_and_drops_empty_expressions():
    assert validate_filter(filters={"city": "  @lon* ", "county": "", "name": "  "}) == {"city": "@lon*"}


def test_describe_filter():
    filters = {"territory_code": "EU|NA", "city": " @lon* ", "county": ""}
    assert describe_filter(filters=filters) == "Territory Code: EU|NA; City: @lon*"
    assert describe_filter(filters={}) == "All contacts"
    assert describe_filter(filters={"county": " "}) == "All contacts"


def test_filter_fields_are_the_dialogs_fields_in_order():
    assert [(f.key, f.caption) for f in FILTER_FIELDS.values()] == [
        ("territory_code", "Territory Code"),
        ("company_no", "Company No."),
        ("salesperson_code", "Salesperson Code"),
        ("city", "City"),
        ("county", "County"),
        ("post_code", "Post Code"),
        ("country_region_code", "Country/Region Code"),
        ("name", "Name"),
        ("type", "Type"),
    ]


def test_the_form_offers_one_input_per_field_filled_from_the_stored_filter():
    form = ContactFilterForm(initial={"territory_code": "EU|NA"})
    assert list(form.fields) == list(FILTER_FIELDS)
    assert form.fields["company_no"].label == "Company No."
    assert "@lon*" in form.fields["city"].help_text
    assert "Person or Company" in form.fields["type"].help_text
    assert 'value="EU|NA"' in str(form["territory_code"])


def test_the_form_returns_the_filter_to_store():
    form = ContactFilterForm(data={"territory_code": " EU|NA ", "city": "@lon*", "type": "person"})
    assert form.is_valid(), form.errors
    assert form.filters == {"territory_code": "EU|NA", "city": "@lon*", "type": "person"}


def test_the_form_puts_each_error_on_its_field():
    form = ContactFilterForm(
        data={"territory_code": "EU|", "city": "London", "type": "Robot", "post_code": ".."}
    )
    assert not form.is_valid()
    assert set(form.errors) == {"territory_code", "type", "post_code"}
    assert form.errors["territory_code"] == [
        'Territory Code: "EU|" — expected a value after "|" at position 3'
    ]
    assert "Type takes Person or Company" in form.errors["type"][0]
    assert "a range needs a value" in form.errors["post_code"][0]


def test_the_form_refuses_an_over_long_expression_on_its_field():
    form = ContactFilterForm(data={"name": "x" * 251})
    assert not form.is_valid()
    assert list(form.errors) == ["name"]


@pytest.mark.parametrize(
    ("expression", "character", "position"),
    [("Lon\x00don", "U+0000", 3), ("\x07Bell", "U+0007", 0), ("Half \ud83d", "U+D83D", 5)],
)
def test_a_character_no_database_can_store_is_refused_and_not_echoed(expression, character, position):
    with pytest.raises(FilterError) as info:
        validate_filter(filters={"city": expression})

    assert info.value.position == position
    assert f"contains the character {character}, which cannot be stored" in str(info.value)
    assert str(info.value).encode("utf-8")  # a lone surrogate would not encode
    assert "\x00" not in str(info.value) and "\x07" not in str(info.value)


def test_an_unknown_field_named_with_a_nul_is_refused_without_it():
    with pytest.raises(FilterError) as info:
        validate_filter(filters={"ci\x00ty": "x"})
    assert str(info.value).startswith('Unknown filter field "city"')


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(FILTER_FIELDS)), expression=st.text(max_size=30))
def test_any_text_is_refused_or_selects_contacts_on_this_database(db, key, expression):
    """Whatever is typed, validation refuses it or the database runs it: never a database error."""
    try:
        query = compile_filter(filters={key: expression})
    except FilterError:
        return
    with transaction.atomic():  # on PostgreSQL an error would abort the test's transaction
        list(Contact.objects.filter(query).values_list("id", flat=True))


@pytest.mark.parametrize(
    ("filters", "pinned"),
    [
        ({"salesperson_code": "JR"}, {"salesperson_code": "JR"}),
        (
            {"salesperson_code": " =JR ", "territory_code": "EU"},
            {"salesperson_code": "JR", "territory_code": "EU"},
        ),
        ({"territory_code": "'E|U'"}, {"territory_code": "E|U"}),
        ({"territory_code": "EU|NA"}, {}),
        ({"territory_code": "E*"}, {}),
        ({"territory_code": "@eu"}, {}),
        ({"territory_code": "<>EU"}, {}),
        ({"territory_code": "A..M"}, {}),
        ({"territory_code": "''"}, {}),
        ({"city": "London", "name": "Ann"}, {}),  # Outlook gives these; the import keeps Outlook's
    ],
)
def test_an_import_takes_only_the_values_a_filter_pins_exactly_on_business_central_only_fields(
    filters, pinned
):
    assert pinned_values(filters=filters) == pinned


@pytest.mark.parametrize(
    ("filters", "kept"),
    [
        # Blank Territory Code (as imported) is kept; EU passes; UK and NA were set deliberately.
        ({"territory_code": "EU"}, {"Ann", "Ben", "Eve", "Fay", "Gus", "Alpine"}),
        ({"territory_code": "EU|NA"}, {"Ann", "Ben", "Dee", "Eve", "Fay", "Gus", "Alpine", "Contoso"}),
        ({"salesperson_code": "LT", "territory_code": "UK"}, {"Cid", "Eve"}),
        # Fields Outlook gives never exclude an imported contact.
        ({"city": "Nowhere"}, ALL),
    ],
)
def test_imported_contacts_stay_unless_a_business_central_only_field_was_set_outside_the_filter(
    contacts, filters, kept
):
    names = Contact.objects.filter(imported_kept_filter(filters=filters)).values_list("name", flat=True)

    assert {"Gus" if name == "Star*Dust|Gus" else name for name in names} == kept
