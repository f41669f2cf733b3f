"""Hostile input: odd Outlook contacts are each logged and the run goes on for the others; broken
filters, a mailbox that does not exist and a wrong client secret fail the run cleanly, with a message
that says what to fix, and nothing written.

Runs in this process against the emulator (real Graph client, real HTTP), through the services.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from contacts.models import Contact
from exchange_sync.graph import reset_graph_client_cache
from exchange_sync.models import (
    ActivityLog,
    ContactLink,
    ContactSyncSetup,
    Direction,
    Outcome,
    RunStatus,
    SyncMode,
    SyncRun,
    UserCard,
)
from exchange_sync.services import contact_sync
from exchange_sync.sync.filters import FilterError
from tests.factories import PersonFactory

pytestmark = pytest.mark.django_db

FOLDER = "Business Central"
MAILBOX = "ann@contoso.test"
LONG_NAME = "Ann " + "Verylongname" * 83  # 1,000 characters
WRONG_SECRET = "wrong-secret-Zq93xK"
HEBREW = "\u202e\u05e9\u05dc\u05d5\u05dd\u202c"  # right-to-left override around a Hebrew word


def sync(user, mode: str = SyncMode.SYNC) -> SyncRun:
    run = contact_sync.request_contact_sync(user=user, mode=mode, enqueue=False)
    return contact_sync.run_contact_sync(run_id=run.pk)


def person(name: str, email: str | None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"displayName": name, **fields}
    if email is not None:
        body["emailAddresses"] = [{"address": email, "name": name}]
    return body


@pytest.fixture
def outlook(m365, sync_user):
    return m365.emulator.outlook(MAILBOX)


@pytest.fixture
def folder_id(outlook) -> str:
    return outlook.create_folder(FOLDER)["id"]


@pytest.fixture
def neighbours(outlook, folder_id, sync_user):
    """One ordinary contact on each side: they must sync whatever their odd neighbours do."""
    bc = PersonFactory(email="bc.neighbour@example.com", first_name="Bea", surname="Neighbour", name="")
    item = outlook.create_contact(folder_id, person("Otto Neighbour", "otto.neighbour@example.com"))
    return bc, item


def assert_neighbours_synced(outlook, neighbours) -> None:
    bc, item = neighbours
    emails = {c["emailAddresses"][0]["address"] for c in outlook.list_contacts(FOLDER) if c["emailAddresses"]}
    assert "bc.neighbour@example.com" in emails
    assert ContactLink.objects.filter(contact=bc, graph_id__isnull=False).exists()
    imported = Contact.objects.get(search_email="otto.neighbour@example.com")
    assert imported.name == "Otto Neighbour"
    assert ContactLink.objects.get(contact=imported).graph_id == item["id"]


def import_entry(run: SyncRun, graph_id: str) -> ActivityLog:
    found = list(ActivityLog.objects.filter(run=run, graph_id=graph_id, direction=Direction.TO_BC))
    assert len(found) == 1, [(e.outcome, e.message) for e in ActivityLog.objects.filter(run=run)]
    return found[0]


# --- odd Outlook contacts: each logged, the others synced -------------------------------------------


IMPORTED = [
    pytest.param(
        person(LONG_NAME, "long@example.com"),
        {"name": LONG_NAME[:100].rstrip()},
        ["Cut to fit Business Central: Name (1000 characters)"],
        id="1000-character name",
    ),
    pytest.param(
        person("Zoë 🎉 Ünïcødé 👩‍💻", "emoji@example.com", companyName="Café ☕ GmbH"),
        {"name": "Zoë 🎉 Ünïcødé 👩‍💻", "company_name": "Café ☕ GmbH"},
        [],
        id="emoji",
    ),
    pytest.param(
        person("مريم الخطيب", "rtl@example.com", companyName=HEBREW, jobTitle="مديرة"),
        {"name": "مريم الخطيب", "company_name": HEBREW, "job_title": "مديرة"},
        [],
        id="right-to-left",
    ),
    pytest.param(
        person("Ann\u200bLee\u200d\ufeff", "zero.width@example.com"),
        {"name": "Ann\u200bLee\u200d\ufeff"},
        [],
        id="zero-width characters",
    ),
    pytest.param(
        person(
            "<script>alert('x')</script>",
            "script@example.com",
            companyName='<script>document.location="//evil"</script>',
        ),
        {
            "name": "<script>alert('x')</script>",
            "company_name": '<script>document.location="//evil"</script>',
        },
        [],
        id="script in name and company",
    ),
    pytest.param(
        person("Upper Case", "  UPPER.Case@Example.COM  "),
        {"email": "UPPER.Case@Example.COM", "search_email": "upper.case@example.com"},
        [],
        id="upper case and surrounding spaces",
    ),
    pytest.param(
        person(
            "Nul\x00 Byte",
            "nul\x00.byte@example.com",
            companyName="Bell\x07 \x1bCorp",
            jobTitle="Sales\x00",
            businessAddress={"street": "1 Main\tSt\r\nFloor 2", "city": "Lon\x00don"},
        ),
        {
            "name": "Nul Byte",
            "email": "nul.byte@example.com",
            "company_name": "Bell Corp",
            "job_title": "Sales",
            "address": "1 Main\tSt",
            "address_2": "Floor 2",
            "city": "London",
        },
        [
            "Characters no database can store (U+0000, U+0007, U+001B) were left out of Outlook's "
            "displayName, jobTitle, companyName, emailAddresses, businessAddress."
        ],
        id="control characters",
    ),
    pytest.param(
        {
            "displayName": "Three Mails",
            "emailAddresses": [
                {"address": "one@example.com", "name": "Three Mails"},
                {"address": "two@example.com", "name": "Three Mails"},
                {"address": "three@example.com", "name": "Three Mails"},
            ],
        },
        {"email": "one@example.com", "email_2": "two@example.com"},
        [
            "Only two email addresses are synced: the third, 'three@example.com', is recorded here and "
            "not kept in Outlook when Business Central's values are sent."
        ],
        id="three email addresses",
    ),
]


@pytest.mark.parametrize(("body", "expected", "problems"), IMPORTED)
def test_an_odd_but_usable_outlook_contact_is_imported_and_its_problems_logged(
    sync_user, outlook, folder_id, neighbours, body, expected, problems
):
    item = outlook.create_contact(folder_id, body)

    run = sync(sync_user)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert (run.created, run.imported, run.skipped, run.failed) == (1, 2, 0, 0)
    entry = import_entry(run, item["id"])
    assert entry.outcome == Outcome.CREATED
    contact = entry.contact
    assert contact is not None
    assert {key: getattr(contact, key) for key in expected} == expected
    assert entry.message.startswith(f"Outlook contact '{contact.name}' was added to Business Central as ")
    for problem in problems:
        assert problem in entry.message
    assert entry.details.get("problems", []) == problems
    if "Cut to fit" in "".join(problems):
        assert entry.details["original_values"] == {"name": LONG_NAME}
    assert_neighbours_synced(outlook, neighbours)


NOT_IMPORTED = [
    pytest.param(
        person("Half Address", "a@"), "has an email address Business Central cannot use ('a@')", id="a@"
    ),
    pytest.param(
        person("No Local", "@b"), "has an email address Business Central cannot use ('@b')", id="@b"
    ),
    pytest.param(
        person("Spaced Out", "A B@C"),
        "has an email address Business Central cannot use ('A B@C')",
        id="A B@C",
    ),
    pytest.param(
        {
            "displayName": None,
            "givenName": None,
            "surname": None,
            "companyName": None,
            "jobTitle": None,
            "emailAddresses": [],  # Graph refuses null for a collection (RequestBodyRead)
            "businessPhones": [],
            "mobilePhone": None,
            "businessAddress": None,
        },
        "has no email address",
        id="every field null",
    ),
    pytest.param({}, "has no email address", id="empty contact"),
]


@pytest.mark.parametrize(("body", "reason"), NOT_IMPORTED)
def test_an_outlook_contact_business_central_cannot_use_is_skipped_with_the_reason(
    sync_user, outlook, folder_id, neighbours, body, reason
):
    item = outlook.create_contact(folder_id, body)

    run = sync(sync_user)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert (run.created, run.imported, run.skipped, run.failed) == (1, 1, 1, 0)
    entry = import_entry(run, item["id"])
    assert (entry.action, entry.outcome) == ("Import Outlook contact", Outcome.SKIPPED)
    label = body.get("displayName") or "(no name)"
    assert entry.message == f"Outlook contact '{label}' {reason}; not imported."
    assert Contact.objects.count() == 2  # the two neighbours, nothing else
    assert_neighbours_synced(outlook, neighbours)


@pytest.fixture
def database_refuses_surname_refused():
    """A trigger that makes the database refuse one contact, as it would a value it cannot store. The
    test's transaction takes it away again."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_contact() RETURNS trigger AS $$ "
                "BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_contact BEFORE INSERT ON contacts_contact FOR EACH ROW "
                "WHEN (NEW.surname = 'Refused') EXECUTE FUNCTION refuse_contact()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER refuse_contact BEFORE INSERT ON contacts_contact "
                "WHEN NEW.surname = 'Refused' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )


def test_a_contact_the_database_refuses_is_logged_as_failed_and_the_others_still_sync(
    sync_user, outlook, folder_id, neighbours, database_refuses_surname_refused
):
    item = outlook.create_contact(folder_id, person("Rita Refused", "rita@example.com", surname="Refused"))

    run = sync(sync_user)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert (run.created, run.imported, run.failed) == (1, 1, 1)
    entry = import_entry(run, item["id"])
    assert entry.outcome == Outcome.FAILED
    assert entry.message.startswith("Outlook contact 'Rita Refused' could not be saved in Business Central")
    assert not Contact.objects.filter(search_email="rita@example.com").exists()
    assert_neighbours_synced(outlook, neighbours)


# --- broken filters: the run fails naming the problem, nothing written -------------------------------


@pytest.mark.parametrize(
    ("contact_filter", "named"),
    [
        pytest.param({"city": "(("}, 'City: "((" — expected a value after "(" at position 2', id="malformed"),
        pytest.param({"no_such_field": "x"}, 'Unknown filter field "no_such_field"', id="unknown field"),
        pytest.param(
            {"city": "|".join(["A" * 50] * 2000)},
            "the filter is 101999 characters long; at most 250 are allowed",
            id="enormous",
        ),
        pytest.param({"city": "Lon*" + "|" * 150}, "City:", id="too many alternatives"),
        pytest.param(
            {"territory_code": "EU|\x07NA"},
            'Territory Code: "EU|NA" — contains the character U+0007',
            id="control character",
        ),
    ],
)
def test_a_broken_filter_fails_the_run_naming_the_problem_and_writes_nothing(
    sync_user, outlook, folder_id, neighbours, contact_filter, named
):
    _, setup = contact_sync.setups_for(user=sync_user)
    # Saved behind the form's back (an old row, a direct database edit): the run must still refuse it.
    ContactSyncSetup.objects.filter(pk=setup.pk).update(contact_filter=contact_filter)

    run = sync(sync_user)

    assert run.status == RunStatus.FAILED
    assert named in run.error
    assert len(run.error) < 600  # the enormous expression is not echoed back
    assert ActivityLog.objects.count() == 0
    assert ContactLink.objects.count() == 0
    assert Contact.objects.count() == 1
    assert len(outlook.list_contacts(FOLDER)) == 1
    setup.refresh_from_db()
    assert (setup.watermark, setup.delta_link, setup.active_run_id) == (None, "", None)


@pytest.mark.parametrize(
    ("contact_filter", "named"),
    [
        pytest.param(
            {"city": "Lon\x00don"},
            'City: "London" — contains the character U+0000, which cannot be stored at position 3',
            id="NUL in an expression",
        ),
        pytest.param({"no_such\x00field": "x"}, 'Unknown filter field "no_suchfield"', id="NUL in a field"),
    ],
)
def test_a_filter_with_a_nul_is_refused_before_it_is_saved(sync_user, contact_filter, named):
    """PostgreSQL cannot store NUL even in JSON, so such a filter is refused, never saved or run."""
    with pytest.raises(FilterError) as info:
        contact_sync.set_sync_filter(user=sync_user, filters=contact_filter)

    assert named in str(info.value)
    assert sync(sync_user).status == RunStatus.SUCCEEDED
    assert ContactSyncSetup.objects.get(user=sync_user).contact_filter == {}


# --- a mailbox that does not exist, a wrong client secret ---------------------------------------------


def test_a_mailbox_that_does_not_exist_fails_the_run_with_what_to_fix_and_keeps_the_watermark(
    sync_user, outlook, folder_id, neighbours
):
    first = sync(sync_user)
    assert first.status == RunStatus.SUCCEEDED, first.error
    before = ContactSyncSetup.objects.get(user=sync_user)
    UserCard.objects.filter(user=sync_user).update(microsoft_365_email="nobody@contoso.test")
    PersonFactory(email="waiting@example.com")

    run = sync(sync_user)

    assert run.status == RunStatus.FAILED
    assert "Microsoft 365 has no Exchange Online mailbox for nobody@contoso.test" in run.error
    assert "check the Microsoft 365 email on the User Card" in run.error
    after = ContactSyncSetup.objects.get(user=sync_user)
    assert (after.watermark, after.delta_link, after.last_sync_at) == (
        before.watermark,
        before.delta_link,
        before.last_sync_at,
    )
    assert after.active_run_id is None
    assert not ActivityLog.objects.filter(run=run).exists()


def test_a_wrong_client_secret_fails_the_run_without_showing_the_secret(
    settings, sync_user, outlook, folder_id, neighbours
):
    settings.M365_CLIENT_SECRET = WRONG_SECRET
    reset_graph_client_cache()

    run = sync(sync_user)

    assert run.status == RunStatus.FAILED
    assert "M365_CLIENT_SECRET" in run.error
    assert WRONG_SECRET not in run.error
    assert WRONG_SECRET[4:] not in run.error
    assert not ActivityLog.objects.filter(run=run).exists()
    setup = ContactSyncSetup.objects.get(user=sync_user)
    assert (setup.watermark, setup.delta_link) == (None, "")
    assert len(outlook.list_contacts(FOLDER)) == 1
