"""The sync rules end to end: the real Graph client over real HTTP against the emulator, a real
database, and the Outlook side driven as a person editing in Outlook would (the emulator's back door).

Every run goes through `contact_sync.request_contact_sync` + `contact_sync.run_contact_sync`; every test
asserts on both sides (the folder and the Contact table) and on what the Activity Log tells a person.
"""

from __future__ import annotations

import io
import re
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts.models import Contact, ContactType, CountryRegion
from exchange_sync.graph import reset_graph_client_cache
from exchange_sync.models import (
    ActivityLog,
    ConnectionStatus,
    ContactLink,
    ContactSyncSetup,
    Direction,
    ExchangeSyncSetup,
    Outcome,
    RunStatus,
    SyncMode,
    SyncRun,
)
from exchange_sync.services import contact_sync
from exchange_sync.sync.mapping import FAX_PROPERTY_ID, bc_record, outlook_contact
from exchange_sync.sync.planner import CREATING
from exchange_sync.sync.reader import load_countries
from tests.factories import CompanyFactory, PersonFactory, UserCardFactory, UserFactory

pytestmark = pytest.mark.django_db

FOLDER = "Business Central"
MAILBOX = "ann@contoso.test"
CREATE_ROUTE = "POST /users/{upn}/contactFolders/{fid}/contacts"
DELTA_ROUTE = "GET /users/{upn}/contactFolders/{fid}/contacts/delta"


# --- helpers ---------------------------------------------------------------------------------------


def sync(user, mode: str = SyncMode.SYNC, **options: Any) -> SyncRun:
    """Request and run one sync in this process; the finished SyncRun."""
    run = contact_sync.request_contact_sync(user=user, mode=mode, enqueue=False, **options)
    return contact_sync.run_contact_sync(run_id=run.pk)


def ok(run: SyncRun) -> SyncRun:
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


def counts(run: SyncRun) -> dict[str, int]:
    """The run's non-zero counts, so `== {"created": 2}` also says every other count is zero."""
    return run.moved()


def entries(run: SyncRun, **filters: Any) -> list[ActivityLog]:
    return list(ActivityLog.objects.filter(run=run, **filters).order_by("id"))


def the_entry(run: SyncRun, **filters: Any) -> ActivityLog:
    found = entries(run, **filters)
    assert len(found) == 1, [(e.outcome, e.message) for e in entries(run)]
    return found[0]


def setup_of(user) -> ContactSyncSetup:
    return ContactSyncSetup.objects.get(user=user)


def primary(item: dict[str, Any]) -> str:
    return item["emailAddresses"][0]["address"] if item["emailAddresses"] else ""


def folder(outlook) -> dict[str, dict[str, Any]]:
    """The sync folder's contacts by lower-case primary email (asserts no email appears twice)."""
    items = outlook.list_contacts(FOLDER)
    by_email = {primary(item).strip().lower(): item for item in items}
    assert len(by_email) == len(items), sorted(primary(i) for i in items)
    return by_email


def fax_of(item: dict[str, Any]) -> str | None:
    for prop in item.get("singleValueExtendedProperties") or []:
        if prop["id"].lower() == FAX_PROPERTY_ID.lower():
            return prop["value"]
    return None


def link_of(contact: Contact) -> ContactLink:
    return ContactLink.objects.get(contact=contact)


def assert_quiet(user, *modes: str) -> None:
    """Syncs that find nothing to do: zero counts, nothing but skips logged."""
    for mode in modes:
        run = ok(sync(user, mode))
        assert counts(run) == {}, (mode, [e.message for e in entries(run)])
        assert entries(run) == []


@pytest.fixture
def user(sync_user):
    return sync_user


# --- rule 1: who goes out, who comes back ------------------------------------------------------------


def test_only_in_scope_persons_go_to_outlook(user, outlook):
    in_scope = PersonFactory(email="in.scope@example.com", territory_code="EU")
    CompanyFactory(name="Contoso Ltd", email="info@contoso.example", territory_code="EU")
    PersonFactory(email="", territory_code="EU")
    PersonFactory(email="blocked@example.com", territory_code="EU", privacy_blocked=True)
    PersonFactory(email="outside@example.com", territory_code="US")
    assert contact_sync.set_sync_filter(user=user, filters={"territory_code": "EU"})

    run = ok(sync(user))

    assert counts(run) == {"created": 1}
    assert list(folder(outlook)) == ["in.scope@example.com"]
    entry = the_entry(run)
    assert (entry.contact, entry.outcome, entry.direction) == (in_scope, Outcome.CREATED, Direction.TO_M365)
    assert entry.message == f"{in_scope.no} {in_scope.name} was added to the Outlook folder."
    assert entry.graph_id == link_of(in_scope).graph_id == folder(outlook)["in.scope@example.com"]["id"]
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


def test_only_outlook_contacts_with_a_name_and_a_valid_email_come_back_as_persons(user, outlook):
    ok(sync(user))  # creates the folder
    olga = outlook.create_contact(
        FOLDER,
        {"givenName": "Olga", "surname": "Outlook", "emailAddresses": [{"address": "Olga@Example.com"}]},
    )
    no_mail = outlook.create_contact(FOLDER, {"givenName": "Nomail", "surname": "Person"})
    # Outlook itself would fill the display name with the address; another app may leave it blank.
    outlook.create_contact(
        FOLDER, {"displayName": "", "emailAddresses": [{"address": "nameless@example.com"}]}
    )
    outlook.create_contact(
        FOLDER, {"givenName": "Bad", "surname": "Address", "emailAddresses": [{"address": "not-an-email"}]}
    )
    before = Contact.objects.count()

    run = ok(sync(user))

    assert counts(run) == {"imported": 1, "skipped": 3}
    assert Contact.objects.count() == before + 1
    imported = Contact.objects.get(search_email="olga@example.com")
    assert (imported.type, imported.name, imported.first_name, imported.surname, imported.email) == (
        ContactType.PERSON,
        "Olga Outlook",
        "Olga",
        "Outlook",
        "Olga@Example.com",
    )
    assert link_of(imported).graph_id == olga["id"]
    created = the_entry(run, outcome=Outcome.CREATED)
    assert created.direction == Direction.TO_BC
    assert (
        created.message == f"Outlook contact 'Olga Outlook' was added to Business Central as {imported.no}."
    )
    skipped = {e.email or e.graph_id: e for e in entries(run, outcome=Outcome.SKIPPED)}
    assert all(
        e.direction == Direction.TO_BC and e.action == "Import Outlook contact" for e in skipped.values()
    )
    assert (
        skipped[no_mail["id"]].message
        == "Outlook contact 'Nomail Person' has no email address; not imported."
    )
    assert skipped["nameless@example.com"].message == (
        "Outlook contact 'nameless@example.com' has no name; not imported."
    )
    assert "cannot use ('not-an-email')" in skipped["not-an-email"].message
    # Nothing changed in Outlook for any of them, and the import is not pushed back.
    assert len(outlook.list_contacts(FOLDER)) == 4
    assert_quiet(user, SyncMode.SYNC)


# --- rule 2: what a Sync moves --------------------------------------------------------------------------


def test_sync_moves_what_changed_since_the_previous_run_started(user, outlook):
    ada = PersonFactory(email="ada@example.com", city="London")
    bob = PersonFactory(email="bob@example.com", city="London")
    first = ok(sync(user))
    assert counts(first) == {"created": 2}
    assert setup_of(user).watermark == first.started_at

    ada.city = "Paris"
    ada.save()
    second = ok(sync(user))
    assert counts(second) == {"updated": 1}
    assert the_entry(second).message == f"{ada.no} {ada.name} was updated in Outlook: City."
    items = folder(outlook)
    assert items["ada@example.com"]["businessAddress"]["city"] == "Paris"
    assert items["bob@example.com"]["businessAddress"]["city"] == "London"

    # An edit saved while the second run was under way (after it had read Business Central): its
    # watermark is the run's start, so the next Sync still sends it (Business Central's end-of-run
    # stamp would lose it).
    assert second.started_at < second.finished_at
    during = second.started_at + (second.finished_at - second.started_at) / 2
    Contact.objects.filter(pk=bob.pk).update(city="Berlin", last_modified=during)
    third = ok(sync(user))
    assert counts(third) == {"updated": 1}
    assert the_entry(third).contact == bob
    assert folder(outlook)["bob@example.com"]["businessAddress"]["city"] == "Berlin"

    # A difference older than the watermark is not a change for Sync, only for Full Sync.
    Contact.objects.filter(pk=ada.pk).update(job_title="Owner", last_modified=first.started_at)
    assert counts(ok(sync(user))) == {}
    assert folder(outlook)["ada@example.com"]["jobTitle"] == "Buyer"
    full = ok(sync(user, SyncMode.FULL))
    assert counts(full) == {"updated": 1}
    assert the_entry(full).contact == ada
    assert folder(outlook)["ada@example.com"]["jobTitle"] == "Owner"
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


def test_outlook_edits_come_through_the_delta_link(user, outlook, emulator):
    ada = PersonFactory(email="ada@example.com", job_title="Buyer", mobile_phone_no="")
    PersonFactory.create_batch(5)
    ok(sync(user))
    delta_link = setup_of(user).delta_link
    assert "$deltatoken=" in delta_link
    item = folder(outlook)["ada@example.com"]
    outlook.update_contact(item["id"], {"jobTitle": "Head of Buying", "mobilePhone": "+44 7700 900123"})
    emulator.reset_stats()

    run = ok(sync(user))

    assert counts(run) == {"bc_updated": 1}
    ada.refresh_from_db()
    assert (ada.job_title, ada.mobile_phone_no) == ("Head of Buying", "+44 7700 900123")
    entry = the_entry(run)
    assert (entry.direction, entry.outcome, entry.action) == (
        Direction.TO_BC,
        Outcome.UPDATED,
        "Update from Outlook",
    )
    assert entry.message == f"{ada.no} {ada.name} was updated from Outlook: Mobile Phone No., Job Title."
    assert entry.details["previous_values"] == {"mobile_phone_no": "", "job_title": "Buyer"}
    # Only the change came: one delta round from the stored link, no folder listing.
    stats = emulator.stats()
    assert stats["by_route"][DELTA_ROUTE] == 1
    assert "GET /users/{upn}/contactFolders/{fid}/contacts" not in stats["by_route"]
    assert setup_of(user).delta_link not in ("", delta_link)
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


def test_an_expired_delta_link_turns_into_a_full_comparison_by_itself(user, outlook, emulator):
    ada = PersonFactory(email="ada@example.com")
    bob = PersonFactory(email="bob@example.com")
    ok(sync(user))
    items = folder(outlook)
    outlook.update_contact(items["ada@example.com"]["id"], {"jobTitle": "Director"})
    outlook.delete_contact(items["bob@example.com"]["id"])
    emulator.configure(expire_delta_tokens_now=True)

    run = ok(sync(user))

    notice = the_entry(run, action="Read Outlook changes")
    assert notice.outcome == Outcome.SKIPPED
    assert "delta link expired" in notice.message
    assert "the whole folder was compared instead" in notice.message
    assert counts(run) == {"bc_updated": 1, "recreated": 1, "skipped": 1}
    ada.refresh_from_db()
    assert ada.job_title == "Director"
    assert the_entry(run, outcome=Outcome.RECREATED).contact == bob
    assert set(folder(outlook)) == {"ada@example.com", "bob@example.com"}
    assert_quiet(user, SyncMode.SYNC)


# --- rule 3: Business Central wins ----------------------------------------------------------------------


def test_when_both_sides_changed_a_field_business_central_wins_it_and_the_log_keeps_outlooks_value(
    user, outlook
):
    ada = PersonFactory(email="ada@example.com", city="London", job_title="Buyer", post_code="N1 9GU")
    ok(sync(user))
    item = folder(outlook)["ada@example.com"]
    outlook.update_contact(
        item["id"],
        {
            "jobTitle": "Chief Buyer",
            "businessAddress": {**item["businessAddress"], "city": "Lyon"},
        },
    )
    ada.city = "Paris"
    ada.save()

    run = ok(sync(user))

    # City changed on both sides: Business Central's. Job Title only in Outlook: Outlook's.
    assert counts(run) == {"updated": 1, "bc_updated": 1}
    after = folder(outlook)["ada@example.com"]
    assert after["id"] == item["id"]
    assert (after["jobTitle"], after["businessAddress"]["city"]) == ("Chief Buyer", "Paris")
    ada.refresh_from_db()
    assert (ada.job_title, ada.city) == ("Chief Buyer", "Paris")
    entry = the_entry(run, direction=Direction.TO_M365)
    assert entry.outcome == Outcome.UPDATED
    assert "changed on both sides; Business Central's values won" in entry.message
    assert "City 'Lyon'" in entry.message
    assert entry.details["outlook_values_overwritten"] == {"city": "Lyon"}
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


def test_a_field_only_outlook_changed_is_kept_when_business_central_changed_another(user, outlook):
    """Issue 10, finding 2: Business Central's Job Title and Outlook's Job Title and Mobile changed;
    Outlook's mobile, which Business Central never touched, is kept."""
    luc = PersonFactory(email="luc@example.com", job_title="Buyer", mobile_phone_no="+44 7700 900001")
    ok(sync(user))
    item = folder(outlook)["luc@example.com"]
    luc.job_title = "Head of Buying"
    luc.save()
    outlook.update_contact(item["id"], {"jobTitle": "Chief Buyer", "mobilePhone": "+44 7700 900002"})

    run = ok(sync(user))

    luc.refresh_from_db()
    assert (luc.job_title, luc.mobile_phone_no) == ("Head of Buying", "+44 7700 900002")
    after = folder(outlook)["luc@example.com"]
    assert (after["id"], after["jobTitle"], after["mobilePhone"]) == (
        item["id"],
        "Head of Buying",
        "+44 7700 900002",
    )
    assert counts(run) == {"updated": 1, "bc_updated": 1}
    to_bc = the_entry(run, direction=Direction.TO_BC)
    assert (to_bc.outcome, to_bc.action) == (Outcome.UPDATED, "Update from Outlook")
    assert to_bc.message.startswith(f"{luc.no} {luc.name} was updated from Outlook: Mobile Phone No.")
    assert to_bc.details["previous_values"] == {"mobile_phone_no": "+44 7700 900001"}
    to_outlook = the_entry(run, direction=Direction.TO_M365)
    assert "changed on both sides; Business Central's values won" in to_outlook.message
    assert to_outlook.details["outlook_values_overwritten"] == {"job_title": "Chief Buyer"}
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


def test_a_link_synced_before_the_merge_existed_lets_business_central_win_once(user, outlook):
    """A link without last-synced records (written before they were kept) has nothing to merge
    against: Business Central wins the whole contact, and that write stores the records."""
    luc = PersonFactory(email="luc@example.com", job_title="Buyer", mobile_phone_no="+44 7700 900001")
    ok(sync(user))
    ContactLink.objects.filter(contact=luc).update(bc_synced=None, m365_synced=None)
    item = folder(outlook)["luc@example.com"]
    luc.job_title = "Head of Buying"
    luc.save()
    outlook.update_contact(item["id"], {"mobilePhone": "+44 7700 900002"})

    run = ok(sync(user))

    assert counts(run) == {"updated": 1}
    assert folder(outlook)["luc@example.com"]["mobilePhone"] == "+44 7700 900001"
    link = link_of(luc)
    assert link.bc_synced == bc_record(luc) and link.m365_synced is not None
    # From now on the merge applies.
    luc.job_title = "Director"
    luc.save()
    outlook.update_contact(item["id"], {"mobilePhone": "+44 7700 900003"})
    ok(sync(user))
    luc.refresh_from_db()
    assert (luc.job_title, luc.mobile_phone_no) == ("Director", "+44 7700 900003")


# --- rule 4: deleted in Outlook, still in Business Central --------------------------------------------


def test_a_linked_contact_deleted_in_outlook_is_recreated_on_the_next_sync(user, outlook):
    ada = PersonFactory(email="ada@example.com")
    PersonFactory(email="bob@example.com")
    ok(sync(user))
    old_id = folder(outlook)["ada@example.com"]["id"]
    outlook.delete_contact(old_id)

    run = ok(sync(user))  # a plain Sync, and Ada did not change in Business Central

    assert counts(run) == {"recreated": 1}
    items = folder(outlook)
    assert set(items) == {"ada@example.com", "bob@example.com"}
    new_id = items["ada@example.com"]["id"]
    assert new_id != old_id
    assert link_of(ada).graph_id == new_id
    entry = the_entry(run)
    assert entry.outcome == Outcome.RECREATED
    assert entry.message == (
        f"{ada.no} {ada.name} was deleted in Outlook and recreated, as it still exists in Business Central."
    )
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


# --- rule 5: identity and duplicates --------------------------------------------------------------------


def test_changing_the_email_updates_the_same_outlook_contact(user, outlook):
    ada = PersonFactory(email="ada@example.com")
    ok(sync(user))
    graph_id = folder(outlook)["ada@example.com"]["id"]
    ada.email = "ada.lovelace@example.org"
    ada.save()

    run = ok(sync(user))

    assert counts(run) == {"updated": 1}
    items = folder(outlook)
    assert list(items) == ["ada.lovelace@example.org"]
    assert items["ada.lovelace@example.org"]["id"] == graph_id
    assert link_of(ada).graph_id == graph_id
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


def test_turning_sync_on_for_a_folder_that_holds_the_contacts_creates_no_duplicates(user, outlook):
    ada = PersonFactory(email="ada.lee@example.com", job_title="Buyer")
    bob = PersonFactory(email="bob@example.com")
    outlook.create_folder(FOLDER)
    existing_ada = outlook.create_contact(
        FOLDER,
        {
            "givenName": "Ada",
            "surname": "Lee",
            "jobTitle": "Old title",
            "emailAddresses": [{"address": "  Ada.Lee@EXAMPLE.com "}],
        },
    )
    existing_bob = outlook.create_contact(
        FOLDER, {"givenName": "Bob", "emailAddresses": [{"address": "BOB@example.COM"}]}
    )

    run = ok(sync(user))

    assert counts(run) == {"linked": 2}
    items = folder(outlook)
    assert set(items) == {"ada.lee@example.com", "bob@example.com"}
    assert items["ada.lee@example.com"]["id"] == existing_ada["id"] == link_of(ada).graph_id
    assert items["bob@example.com"]["id"] == existing_bob["id"] == link_of(bob).graph_id
    assert items["ada.lee@example.com"]["jobTitle"] == "Buyer"  # Business Central's values were sent
    entry = the_entry(run, contact=ada)
    assert entry.outcome == Outcome.LINKED
    assert "matched by email" in entry.message
    assert entry.details["outlook_values_overwritten"]["job_title"] == "Old title"
    assert Contact.objects.count() == 2  # nothing was imported either
    for _ in range(2):
        full = ok(sync(user, SyncMode.FULL))
        assert counts(full) == {}
        assert len(outlook.list_contacts(FOLDER)) == 2
        assert Contact.objects.count() == 2


def test_full_sync_twice_creates_no_duplicates(user, outlook):
    PersonFactory.create_batch(3)
    first = ok(sync(user, SyncMode.FULL))
    assert counts(first) == {"created": 3}
    second = ok(sync(user, SyncMode.FULL))
    assert counts(second) == {}
    assert len(outlook.list_contacts(FOLDER)) == 3
    assert Contact.objects.count() == 3


def test_two_persons_with_one_email_the_lowest_no_is_synced_the_other_logged(user, outlook):
    first = PersonFactory(email="shared@example.com", first_name="First", surname="Holder")
    second = PersonFactory(email="  Shared@Example.com", first_name="Second", surname="Holder")
    assert first.no < second.no

    run = ok(sync(user))

    assert counts(run) == {"created": 1, "skipped": 1}
    items = folder(outlook)
    assert list(items) == ["shared@example.com"]
    assert items["shared@example.com"]["displayName"] == "First Holder"
    assert link_of(first).graph_id == items["shared@example.com"]["id"]
    assert not ContactLink.objects.filter(contact=second).exists()
    skipped = the_entry(run, outcome=Outcome.SKIPPED)
    assert skipped.contact == second
    assert skipped.message == (
        f"{second.no} Second Holder shares its email with {first.no}, which is synced; not sent to Outlook."
    )
    again = ok(sync(user, SyncMode.FULL))
    assert counts(again) == {"skipped": 1}
    assert len(outlook.list_contacts(FOLDER)) == 1


# --- rule 6: deletes and leaving the scope ----------------------------------------------------------


def test_deleted_in_business_central_is_removed_from_the_folder(user, outlook):
    ada = PersonFactory(email="ada@example.com")
    PersonFactory(email="bob@example.com")
    ok(sync(user))
    ada_no = ada.no
    ada.delete()

    run = ok(sync(user))

    assert counts(run) == {"deleted": 1}
    assert list(folder(outlook)) == ["bob@example.com"]
    entry = the_entry(run)
    assert (entry.outcome, entry.direction, entry.contact_no) == (Outcome.DELETED, Direction.TO_M365, ada_no)
    assert (
        entry.message == f"Contact {ada_no} was removed from the Outlook folder: deleted in Business Central."
    )
    assert ContactLink.objects.count() == 1
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL, SyncMode.SYNC)


def _leave_scope_in_three_ways(user) -> tuple[Contact, Contact, Contact, Contact]:
    """Four synced persons; then one leaves by a filter change, one becomes a Company, one loses
    its email."""
    stays = PersonFactory(email="stays@example.com", city="London", territory_code="EU")
    filtered = PersonFactory(email="filtered@example.com", city="Paris", territory_code="EU")
    company = PersonFactory(email="company@example.com", city="London", territory_code="EU")
    no_email = PersonFactory(email="no.email@example.com", city="London", territory_code="EU")
    contact_sync.set_sync_filter(user=user, filters={"territory_code": "EU"})
    assert counts(ok(sync(user))) == {"created": 4}
    contact_sync.set_sync_filter(user=user, filters={"territory_code": "EU", "city": "London"})
    company.type = ContactType.COMPANY
    company.save()
    no_email.email = ""
    no_email.save()
    return stays, filtered, company, no_email


def test_leaving_the_scope_keeps_the_outlook_copy_by_default(user, outlook):
    stays, filtered, company, no_email = _leave_scope_in_three_ways(user)

    run = ok(sync(user))

    assert counts(run) == {"skipped": 3}
    assert set(folder(outlook)) == {
        "stays@example.com",
        "filtered@example.com",
        "company@example.com",
        "no.email@example.com",
    }
    for contact in (filtered, company, no_email):
        entry = the_entry(run, contact=contact)
        assert (entry.outcome, entry.action) == (Outcome.SKIPPED, "Stop syncing")
        assert (
            entry.message == f"{contact.no} {contact.name} is no longer in scope; the Outlook copy is kept."
        )
        assert link_of(contact).detached
    assert not link_of(stays).detached
    # No flip-flopping: nothing comes back, nothing is pushed again, whatever the mode.
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL, SyncMode.SYNC, SyncMode.FULL)
    # An edit to a detached contact on either side stays on its side; Outlook's is said once.
    outlook.update_contact(folder(outlook)["filtered@example.com"]["id"], {"jobTitle": "Edited in Outlook"})
    filtered.job_title = "Edited in BC"
    filtered.save()
    run = ok(sync(user))
    assert counts(run) == {"skipped": 1}
    assert the_entry(run).message == (
        f"{filtered.no} {filtered.name} was changed in Outlook, but it is outside your filter: not synced."
    )
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)
    filtered.refresh_from_db()
    assert filtered.job_title == "Edited in BC"
    assert folder(outlook)["filtered@example.com"]["jobTitle"] == "Edited in Outlook"
    assert Contact.objects.count() == 4


def test_leaving_the_scope_removes_the_outlook_copy_with_the_remove_policy(user, outlook):
    _, setup = contact_sync.setups_for(user=user)
    ContactSyncSetup.objects.filter(pk=setup.pk).update(out_of_scope_policy="remove")
    _stays, filtered, company, no_email = _leave_scope_in_three_ways(user)

    run = ok(sync(user))

    assert counts(run) == {"deleted": 3}
    assert list(folder(outlook)) == ["stays@example.com"]
    for contact in (filtered, company, no_email):
        entry = the_entry(run, contact=contact)
        assert entry.outcome == Outcome.DELETED
        assert entry.message == (
            f"{contact.no} {contact.name} was removed from the Outlook folder: no longer in the sync filter."
        )
        assert not ContactLink.objects.filter(contact=contact).exists()
    assert Contact.objects.count() == 4  # Business Central keeps them all
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL, SyncMode.SYNC)


def test_privacy_blocked_is_always_removed_even_when_detached(user, outlook):
    ada = PersonFactory(email="ada@example.com")
    bob = PersonFactory(email="bob@example.com")
    PersonFactory(email="cyd@example.com")
    ok(sync(user))
    bob.email = ""
    bob.save()
    assert counts(ok(sync(user))) == {"skipped": 1}
    assert link_of(bob).detached
    ada.privacy_blocked = True
    ada.save()
    bob.privacy_blocked = True
    bob.save()

    run = ok(sync(user))

    assert counts(run) == {"deleted": 2}
    assert list(folder(outlook)) == ["cyd@example.com"]
    for contact in (ada, bob):
        assert the_entry(run, contact=contact).message == (
            f"{contact.no} {contact.name} was removed from the Outlook folder: "
            "privacy blocked in Business Central."
        )
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL, SyncMode.SYNC)


def test_a_detached_contact_that_comes_back_into_scope_is_synced_again(user, outlook):
    ada = PersonFactory(email="ada@example.com", territory_code="EU")
    contact_sync.set_sync_filter(user=user, filters={"territory_code": "EU"})
    ok(sync(user))
    graph_id = link_of(ada).graph_id
    Contact.objects.filter(pk=ada.pk).update(territory_code="US")
    assert counts(ok(sync(user))) == {"skipped": 1}
    ada.territory_code = "EU"
    ada.job_title = "Back again"
    ada.save()

    run = ok(sync(user))

    assert counts(run) == {"updated": 1}
    assert folder(outlook)["ada@example.com"]["id"] == graph_id
    assert folder(outlook)["ada@example.com"]["jobTitle"] == "Back again"
    assert not link_of(ada).detached
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


def _imported_under_a_filter(user, outlook, filters: dict[str, str]) -> Contact:
    """Nora Newcontact, added in the user's folder under `filters` and imported by a Sync."""
    contact_sync.set_sync_filter(user=user, filters=filters)
    ok(sync(user))
    outlook.create_contact(
        FOLDER, {"displayName": "Nora Newcontact", "emailAddresses": [{"address": "nora.new@example.com"}]}
    )
    ok(sync(user))
    return Contact.objects.get(search_email="nora.new@example.com")


def test_an_outlook_contact_imported_under_a_filter_stays_synced_both_ways(user, outlook):
    """Issue 10, finding 1: a contact the salesperson adds in their folder is imported without a
    Territory Code, so outside their filter `EU|NA`; it stays synced for them anyway."""
    PersonFactory(email="eu@example.com", territory_code="EU")
    contact_sync.set_sync_filter(user=user, filters={"territory_code": "EU|NA"})
    ok(sync(user))
    outlook.create_contact(
        FOLDER,
        {
            "givenName": "Nora",
            "surname": "Newcontact",
            "companyName": "Serra Optics",
            "emailAddresses": [{"address": "nora.new@example.com"}],
        },
    )
    assert counts(ok(sync(user))) == {"imported": 1}
    nora = Contact.objects.get(search_email="nora.new@example.com")
    assert nora.territory_code == ""
    assert link_of(nora).imported

    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)  # not "no longer in scope"
    item = folder(outlook)["nora.new@example.com"]
    outlook.update_contact(item["id"], {"jobTitle": "Optician"})
    run = ok(sync(user))

    assert counts(run) == {"bc_updated": 1}
    nora.refresh_from_db()
    assert nora.job_title == "Optician"
    nora.mobile_phone_no = "+45 2000 0001"
    nora.save()
    assert counts(ok(sync(user))) == {"updated": 1}
    assert folder(outlook)["nora.new@example.com"]["mobilePhone"] == "+45 2000 0001"


def test_an_imported_contact_moved_out_of_the_filter_stops_syncing_and_its_outlook_edits_say_so(
    user, outlook
):
    nora = _imported_under_a_filter(user, outlook, {"territory_code": "EU|NA"})
    nora.territory_code = "AS"  # a deliberate move to another territory
    nora.save()
    run = ok(sync(user))
    assert the_entry(run).message == (
        f"{nora.no} Nora Newcontact is no longer in scope; the Outlook copy is kept."
    )
    outlook.update_contact(folder(outlook)["nora.new@example.com"]["id"], {"jobTitle": "Optician"})

    run = ok(sync(user))

    assert counts(run) == {"skipped": 1}
    entry = the_entry(run)
    assert entry.message == (
        f"{nora.no} Nora Newcontact was changed in Outlook, but it is outside your filter: not synced."
    )
    nora.refresh_from_db()
    assert nora.job_title == ""
    assert_quiet(user, SyncMode.FULL, SyncMode.SYNC)  # said once, not on every run


def test_an_imported_contact_outside_the_filter_deleted_in_outlook_is_not_recreated(user, outlook):
    nora = _imported_under_a_filter(user, outlook, {"territory_code": "EU|NA"})
    outlook.delete_contact(folder(outlook)["nora.new@example.com"]["id"])

    run = ok(sync(user))

    assert folder(outlook) == {}
    assert the_entry(run).message == (
        f"{nora.no} Nora Newcontact was deleted in Outlook, where it was added; outside your filter, "
        "so not recreated."
    )
    assert not ContactLink.objects.filter(contact=nora).exists()
    assert Contact.objects.filter(pk=nora.pk).exists()  # Business Central keeps it
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


def test_an_imported_contact_takes_the_value_the_filter_pins(user, outlook):
    nora = _imported_under_a_filter(user, outlook, {"salesperson_code": "JR", "territory_code": "EU|NA"})

    assert (nora.salesperson_code, nora.territory_code) == ("JR", "")
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


# --- rule 7: the mass-delete guard ------------------------------------------------------------------------


def test_mass_delete_guard_preview_and_confirmed_full_sync(user, outlook, emulator):
    people = PersonFactory.create_batch(40)
    assert counts(ok(sync(user))) == {"created": 40}
    before = setup_of(user)
    doomed = people[:30]
    Contact.objects.filter(pk__in=[p.pk for p in doomed]).delete()
    emulator.reset_stats()

    blocked = sync(user)

    assert blocked.status == RunStatus.FAILED
    assert blocked.error.startswith("This run would delete 30 of the 40 contacts in the Outlook folder")
    assert "Nothing was written" in blocked.error
    assert "Full Sync allowing mass deletion" in blocked.error
    assert len(outlook.list_contacts(FOLDER)) == 40
    assert emulator.stats()["inner_requests"] == 0
    after = setup_of(user)
    assert (after.watermark, after.delta_link) == (before.watermark, before.delta_link)

    emulator.reset_stats()
    preview = ok(sync(user, SyncMode.PREVIEW))
    planned = entries(preview, outcome=Outcome.PLANNED)
    assert len(planned) == 30
    assert {e.action for e in planned} == {"Delete Outlook contact"}
    assert sorted(e.contact_no for e in planned) == sorted(p.no for p in doomed)
    assert {e.message for e in planned} == {
        f"Contact {p.no} would be removed from the Outlook folder: deleted in Business Central."
        for p in doomed
    }
    guard = the_entry(preview, action="Mass-delete guard")
    assert guard.message == blocked.error
    stats = emulator.stats()
    assert stats["inner_requests"] == 0
    assert all(route.startswith("GET ") for route in stats["by_route"]), stats["by_route"]
    assert len(outlook.list_contacts(FOLDER)) == 40
    assert (setup_of(user).watermark, setup_of(user).delta_link) == (before.watermark, before.delta_link)

    confirmed = ok(sync(user, SyncMode.FULL, allow_mass_delete=True))
    assert counts(confirmed) == {"deleted": 30}
    assert set(folder(outlook)) == {p.email for p in people[30:]}
    assert ContactLink.objects.count() == 10
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


# --- rule 8: field mapping ----------------------------------------------------------------------------------


def test_every_mapped_field_goes_out_and_round_trips(user, outlook):
    fabrikam = CompanyFactory(name="Fabrikam Inc")
    anna = Contact.objects.create(
        type=ContactType.PERSON,
        first_name="Anna",
        middle_name="B",
        surname="Lee",
        initials="ABL",
        job_title="Purchasing Manager",
        company=fabrikam,
        email="anna.lee@example.com",
        email_2="anna@home.example",
        phone_no="+45 1234 5678",
        mobile_phone_no="+45 8765 4321",
        fax_no="+45 5555 0000",
        home_page="https://fabrikam.example/anna",
        address="Main Street 1",
        address_2="Building B",
        city="Copenhagen",
        post_code="2100",
        county="Capital Region",
        country_region_id="DK",
    )

    assert counts(ok(sync(user))) == {"created": 1}

    item = folder(outlook)["anna.lee@example.com"]
    assert item["displayName"] == "Anna B Lee"
    assert (item["givenName"], item["middleName"], item["surname"], item["initials"]) == (
        "Anna",
        "B",
        "Lee",
        "ABL",
    )
    assert (item["jobTitle"], item["companyName"]) == ("Purchasing Manager", "Fabrikam Inc")
    assert [e["address"] for e in item["emailAddresses"]] == ["anna.lee@example.com", "anna@home.example"]
    assert item["businessPhones"] == ["+45 1234 5678"]
    assert item["mobilePhone"] == "+45 8765 4321"
    assert item["businessHomePage"] == "https://fabrikam.example/anna"
    assert item["businessAddress"] == {
        "street": "Main Street 1\r\nBuilding B",
        "city": "Copenhagen",
        "state": "Capital Region",
        "postalCode": "2100",
        "countryOrRegion": "DK",
    }
    assert fax_of(item) == "+45 5555 0000"
    # Read back, Outlook's copy is Business Central's record, fax included.
    assert outlook_contact(item, load_countries()).record == bc_record(anna)

    # An edit in Outlook comes back into that one field; everything else survives the round trip.
    outlook.update_contact(item["id"], {"jobTitle": "Head of Purchasing"})
    run = ok(sync(user))
    assert counts(run) == {"bc_updated": 1}
    expected = {**bc_record(anna), "job_title": "Head of Purchasing"}
    anna.refresh_from_db()
    assert bc_record(anna) == expected
    assert anna.company == fabrikam
    assert the_entry(run).details["previous_values"] == {"job_title": "Purchasing Manager"}
    assert fax_of(folder(outlook)["anna.lee@example.com"]) == "+45 5555 0000"
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


def test_outlook_fields_come_in_and_round_trip(user, outlook):
    fabrikam = CompanyFactory(name="Fabrikam Inc")
    CompanyFactory(name="Globex")
    CompanyFactory(name="Globex")
    ok(sync(user))
    full = outlook.create_contact(
        FOLDER,
        {
            "givenName": "Bo",
            "middleName": "K",
            "surname": "Berg",
            "initials": "BKB",
            "jobTitle": "Engineer",
            "companyName": "Fabrikam Inc",
            "emailAddresses": [{"address": "bo.berg@example.com"}, {"address": "bo@home.example"}],
            "businessPhones": ["+46 8 123 456", "+46 8 999 999"],
            "mobilePhone": "+46 70 123 4567",
            "businessHomePage": "https://bo.example",
            "businessAddress": {
                "street": "Storgatan 5\nPlan 3",  # a bare LF, as OWA may write it
                "city": "Stockholm",
                "state": "Stockholm County",
                "postalCode": "111 22",
                "countryOrRegion": "Sweden",  # by name
            },
        },
    )
    outlook.create_contact(
        FOLDER,
        {
            "givenName": "Cy",
            "surname": "Globex",
            "companyName": "Globex",
            "emailAddresses": [{"address": "cy@example.com"}],
            "businessAddress": {"street": "One line only", "countryOrRegion": "de"},  # by code
        },
    )
    outlook.create_contact(
        FOLDER,
        {
            "givenName": "Di",
            "surname": "Nowhere",
            "companyName": "Unknown Corp",
            "emailAddresses": [{"address": "di@example.com"}],
            "businessAddress": {"countryOrRegion": "Atlantis"},
        },
    )

    run = ok(sync(user))

    assert counts(run) == {"imported": 3}
    bo = Contact.objects.get(search_email="bo.berg@example.com")
    assert bc_record(bo) == {
        "company_name": "Fabrikam Inc",
        "first_name": "Bo",
        "middle_name": "K",
        "surname": "Berg",
        "initials": "BKB",
        "name": "Bo K Berg",
        "email": "bo.berg@example.com",
        "email_2": "bo@home.example",
        "home_page": "https://bo.example",
        "phone_no": "+46 8 123 456",
        "mobile_phone_no": "+46 70 123 4567",
        "fax_no": "",
        "address": "Storgatan 5",
        "address_2": "Plan 3",
        "city": "Stockholm",
        "post_code": "111 22",
        "county": "Stockholm County",
        "country_region": "SE",
        "job_title": "Engineer",
    }
    assert bo.company == fabrikam  # exactly one Company contact has that name
    assert link_of(bo).graph_id == full["id"]
    cy = Contact.objects.get(search_email="cy@example.com")
    assert (cy.company, cy.company_name, cy.country_region_id, cy.address, cy.address_2) == (
        None,
        "Globex",
        "DE",
        "One line only",
        "",
    )
    assert "The company name 'Globex' is not unique in Business Central; Company No. left blank." in (
        the_entry(run, contact=cy).message
    )
    di = Contact.objects.get(search_email="di@example.com")
    assert (di.company, di.company_name, di.country_region_id) == (None, "Unknown Corp", None)
    di_entry = the_entry(run, contact=di)
    assert "Country/Region 'Atlantis' is neither a code nor a name in Business Central; left blank." in (
        di_entry.message
    )
    assert di_entry.details["problems"][0].startswith("Country/Region 'Atlantis'")

    # Business Central -> Outlook: an edit in Business Central sends the imported record back intact.
    bo.city = "Uppsala"
    bo.save()
    assert counts(ok(sync(user))) == {"updated": 1}
    item = folder(outlook)["bo.berg@example.com"]
    assert item["businessAddress"]["street"] == "Storgatan 5\r\nPlan 3"
    assert item["businessAddress"]["countryOrRegion"] == "SE"
    assert item["businessPhones"] == ["+46 8 123 456"]  # Business Central has one Phone No.
    bo.refresh_from_db()
    assert outlook_contact(item, load_countries()).record == bc_record(bo)


def test_a_value_too_long_for_business_central_is_cut_and_the_log_keeps_it_whole(user, outlook):
    ada = PersonFactory(email="ada@example.com", job_title="Buyer")
    ok(sync(user))
    long_title = "Senior Vice President of Global Procurement X"
    assert len(long_title) == 45
    outlook.update_contact(folder(outlook)["ada@example.com"]["id"], {"jobTitle": long_title})

    run = ok(sync(user))

    assert counts(run) == {"bc_updated": 1}
    ada.refresh_from_db()
    assert ada.job_title == long_title[:30].rstrip()
    entry = the_entry(run)
    assert entry.details["original_values"] == {"job_title": long_title}
    assert "Cut to fit Business Central: Job Title (45 characters)" in entry.message
    # Outlook keeps its long value; the cut does not make the contact flip-flop.
    assert folder(outlook)["ada@example.com"]["jobTitle"] == long_title
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


# --- rule 9: Graph cost and failure ---------------------------------------------------------------------


def test_graph_writes_go_in_batches_of_at_most_20(user, outlook, emulator):
    ok(sync(user))
    PersonFactory.create_batch(45)
    emulator.reset_stats()

    run = ok(sync(user))

    assert counts(run) == {"created": 45}
    stats = emulator.stats()
    assert stats["by_route"]["POST /$batch"] == 3
    assert stats["inner_by_route"] == {CREATE_ROUTE: 45}
    assert stats["graph_requests"] == run.graph_requests
    assert len(outlook.list_contacts(FOLDER)) == 45


def test_a_quiet_sync_costs_at_most_three_graph_requests(user, emulator):
    PersonFactory.create_batch(30)
    ok(sync(user))
    emulator.reset_stats()

    run = ok(sync(user))

    assert counts(run) == {}
    assert run.graph_requests <= 3
    assert emulator.stats()["graph_requests"] == run.graph_requests
    assert emulator.stats()["inner_requests"] == 0


def test_a_run_that_fails_mid_way_keeps_the_watermark_and_the_next_sync_catches_up(
    user, outlook, emulator, m365
):
    PersonFactory.create_batch(5)
    ok(sync(user))
    before = setup_of(user)
    PersonFactory.create_batch(45)
    # The mailbox stops answering (licence removed, say) after 20 of the 45 creates have landed.
    router_run = m365.front.router.run
    creates = []
    one_at_a_time = threading.Lock()  # the $batch calls run in parallel

    def disable_after_20_creates(ctx):
        if not (ctx.request.method == "POST" and ctx.request.path.endswith("/contacts")):
            return router_run(ctx)
        with one_at_a_time:
            creates.append(ctx)
            if len(creates) == 21:
                emulator.add_mailbox(MAILBOX, rest_enabled=False)
            return router_run(ctx)

    m365.front.router.run = disable_after_20_creates
    try:
        failed = sync(user)
    finally:
        m365.front.router.run = router_run

    assert failed.status == RunStatus.FAILED
    assert failed.error.startswith("Microsoft 365 has no Exchange Online mailbox for ann@contoso.test")
    assert "check the Microsoft 365 email on the User Card" in failed.error
    after = setup_of(user)
    assert (after.watermark, after.delta_link, after.last_sync_at) == (
        before.watermark,
        before.delta_link,
        before.last_sync_at,
    )
    # Each $batch's bookkeeping is written as it lands; one in flight when the run stopped may have
    # landed unrecorded.
    recorded = ContactLink.objects.exclude(graph_id__startswith=CREATING).count() - 5
    assert recorded == failed.created == len(entries(failed, outcome=Outcome.CREATED)) <= 20
    # The other creates were sent or about to be: their links say so, for the next run to resolve.
    assert ContactLink.objects.filter(graph_id__startswith=CREATING).count() == 45 - recorded
    assert failed.failed == 0  # one run error, not a failure logged per contact

    emulator.add_mailbox(MAILBOX, rest_enabled=True)
    landed = len(outlook.list_contacts(FOLDER)) - 5
    assert landed == 20
    caught_up = ok(sync(user))
    assert caught_up.created == 45 - landed
    assert caught_up.linked == landed - recorded  # matched by email, not created twice
    assert counts(caught_up) == {
        k: v for k, v in {"created": 45 - landed, "linked": landed - recorded}.items() if v
    }
    assert len(folder(outlook)) == 50
    assert ContactLink.objects.count() == 50
    assert setup_of(user).watermark == caught_up.started_at
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


def test_a_wrong_client_secret_fails_the_run_without_moving_the_watermark(user, outlook, settings):
    ada = PersonFactory(email="ada@example.com")
    ok(sync(user))
    before = setup_of(user)
    ada.job_title = "Changed while broken"
    ada.save()
    PersonFactory(email="new@example.com")
    settings.M365_CLIENT_SECRET = "wrong-secret-4711"
    reset_graph_client_cache()

    failed = sync(user)

    assert failed.status == RunStatus.FAILED
    assert "wrong-secret-4711" not in failed.error
    assert failed.error.startswith("Microsoft 365 rejected the application's credentials (invalid_client)")
    assert "check M365_CLIENT_SECRET" in failed.error
    after = setup_of(user)
    assert (after.watermark, after.delta_link, after.last_sync_at) == (
        before.watermark,
        before.delta_link,
        before.last_sync_at,
    )
    assert list(folder(outlook)) == ["ada@example.com"]

    settings.M365_CLIENT_SECRET = "test-secret"
    reset_graph_client_cache()
    fixed = ok(sync(user))
    assert counts(fixed) == {"created": 1, "updated": 1}
    items = folder(outlook)
    assert set(items) == {"ada@example.com", "new@example.com"}
    assert items["ada@example.com"]["jobTitle"] == "Changed while broken"
    assert_quiet(user, SyncMode.SYNC, SyncMode.FULL)


# --- rule 10: one run per user ----------------------------------------------------------------------------


def test_a_second_request_while_one_is_queued_is_refused(user):
    first = contact_sync.request_contact_sync(user=user, mode=SyncMode.SYNC, enqueue=False)

    with pytest.raises(contact_sync.SyncRefused) as refused:
        contact_sync.request_contact_sync(user=user, mode=SyncMode.FULL, enqueue=False)

    assert str(refused.value) == (
        "A Sync with Microsoft 365 is already queued for ann; wait for it to finish, then try again."
    )
    assert list(SyncRun.objects.values_list("pk", flat=True)) == [first.pk]
    assert ok(contact_sync.run_contact_sync(run_id=first.pk)).pk == first.pk
    assert setup_of(user).active_run is None
    assert ok(sync(user)).status == RunStatus.SUCCEEDED  # free again once it finished


def test_a_stale_claim_is_taken_over_and_the_old_run_marked_interrupted(user, settings, outlook):
    PersonFactory(email="ada@example.com")
    settings.SYNC_CLAIM_STALE_SECONDS = 5
    stuck = contact_sync.request_contact_sync(user=user, mode=SyncMode.SYNC, enqueue=False)
    with pytest.raises(contact_sync.SyncRefused):
        contact_sync.request_contact_sync(user=user, mode=SyncMode.SYNC, enqueue=False)
    ContactSyncSetup.objects.filter(user=user).update(
        claimed_at=setup_of(user).claimed_at - timedelta(seconds=6)
    )

    fresh = contact_sync.request_contact_sync(user=user, mode=SyncMode.SYNC, enqueue=False)

    stuck.refresh_from_db()
    assert stuck.status == RunStatus.FAILED
    assert stuck.error.startswith("Interrupted")
    assert setup_of(user).active_run_id == fresh.pk
    # The stuck run, delivered late, does nothing; the new one syncs.
    assert contact_sync.run_contact_sync(run_id=stuck.pk).status == RunStatus.FAILED
    assert counts(ok(contact_sync.run_contact_sync(run_id=fresh.pk))) == {"created": 1}
    assert list(folder(outlook)) == ["ada@example.com"]


# --- Validate Exchange Connection -------------------------------------------------------------------------


def test_validate_exchange_connection_succeeds_and_leaves_creating_the_folder_to_the_first_sync(
    user, outlook
):
    assert FOLDER not in [f["displayName"] for f in outlook.list_folders()]

    check = contact_sync.validate_exchange_connection(user=user)

    assert check.ok
    assert check.message == (
        "Connected successfully to Microsoft 365: mailbox ann@contoso.test, "
        "folder 'Business Central' will be created by the first Sync."
    )
    assert FOLDER not in [f["displayName"] for f in outlook.list_folders()]
    setup = ExchangeSyncSetup.objects.get(user=user)
    assert (setup.connection_status, setup.last_validation_message) == (
        ConnectionStatus.CONNECTED,
        check.message,
    )
    ok(sync(user))
    assert contact_sync.validate_exchange_connection(user=user).message == (
        "Connected successfully to Microsoft 365: mailbox ann@contoso.test, "
        "folder 'Business Central' is ready."
    )
    assert [f["displayName"] for f in outlook.list_folders()].count(FOLDER) == 1
    assert setup_of(user).folder_id == next(
        f["id"] for f in outlook.list_folders() if f["displayName"] == FOLDER
    )


def test_validate_names_the_missing_microsoft_365_email(m365):
    bob = UserFactory(username="bob")

    check = contact_sync.validate_exchange_connection(user=bob)

    assert not check.ok
    assert check.message.startswith("Cannot connect to Microsoft 365 (Microsoft 365 email): ")
    assert "Enter it in the Microsoft 365 section of the User Card" in check.message
    assert ExchangeSyncSetup.objects.get(user=bob).connection_status == ConnectionStatus.FAILED


def test_validate_names_the_sign_in_step_and_hides_the_secret(user, settings):
    settings.M365_CLIENT_SECRET = "wrong-secret-4711"
    reset_graph_client_cache()

    check = contact_sync.validate_exchange_connection(user=user)

    assert not check.ok
    assert check.message.startswith("Cannot connect to Microsoft 365 (sign-in to Microsoft 365): ")
    assert "wrong-secret-4711" not in check.message
    assert "wrong-secret-4711" not in ExchangeSyncSetup.objects.get(user=user).last_validation_message


def test_validate_names_an_unknown_mailbox(m365):
    card = UserCardFactory(user=UserFactory(username="carl"), microsoft_365_email="nobody@contoso.test")

    check = contact_sync.validate_exchange_connection(user=card.user)

    assert not check.ok
    assert check.message.startswith("Cannot connect to Microsoft 365 (mailbox nobody@contoso.test): ")
    assert "has no Exchange Online mailbox for nobody@contoso.test" in check.message


def test_validate_in_a_shell_without_microsoft_365_settings_leaves_the_connection_state_alone(user, settings):
    connected = contact_sync.validate_exchange_connection(user=user)  # through the real client
    assert connected.ok
    before = ExchangeSyncSetup.objects.get(user=user)
    for name in ("M365_EMULATOR_URL", "M365_TENANT_ID", "M365_CLIENT_ID", "M365_CLIENT_SECRET"):
        setattr(settings, name, "")
    reset_graph_client_cache()

    check = contact_sync.validate_exchange_connection(user=user)

    assert not check.ok
    assert check.message.startswith("Cannot connect to Microsoft 365 (sign-in to Microsoft 365): ")
    assert "Microsoft 365 is not configured" in check.message
    after = ExchangeSyncSetup.objects.get(user=user)
    assert (after.connection_status, after.last_validated_at, after.last_validation_message) == (
        ConnectionStatus.CONNECTED,
        before.last_validated_at,
        connected.message,
    )


# --- the sync_contacts command ----------------------------------------------------------------------------

SUMMARY = re.compile(
    r"^created=(\d+) updated=(\d+) linked=(\d+) deleted=(\d+) recreated=(\d+) imported=(\d+) "
    r"skipped=(\d+) failed=(\d+) graph_requests=(\d+)$"
)


def test_sync_contacts_command_prints_one_summary_line(user, outlook):
    PersonFactory.create_batch(2)
    out = io.StringIO()

    call_command("sync_contacts", user="ann", stdout=out)

    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    match = SUMMARY.match(lines[0])
    assert match, lines[0]
    assert match.groups()[:8] == ("2", "0", "0", "0", "0", "0", "0", "0")
    run = SyncRun.objects.get()
    assert int(match.group(9)) == run.graph_requests > 0
    assert len(outlook.list_contacts(FOLDER)) == 2


def test_sync_contacts_command_fails_when_the_run_fails(user, emulator):
    PersonFactory.create_batch(2)
    emulator.add_mailbox(MAILBOX, rest_enabled=False)
    out = io.StringIO()

    with pytest.raises(CommandError) as failure:
        call_command("sync_contacts", user="ann", stdout=out)

    run = SyncRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert str(failure.value) == f"Run {run.pk} failed: {run.error}"
    assert "has no Exchange Online mailbox for ann@contoso.test" in run.error
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert SUMMARY.match(lines[0])


def test_countries_used_here_exist():
    assert set(CountryRegion.objects.filter(code__in=["DK", "SE", "DE"]).values_list("code", flat=True)) == {
        "DK",
        "SE",
        "DE",
    }


# --- what writing costs ------------------------------------------------------------------------------


def test_a_first_sync_writes_each_link_twice_in_all_one_statement_per_batch(user, outlook):
    """Once as its create is sent (the intent), once as its $batch lands: one statement for all the
    intents, one per $batch of 20, never a statement per contact nor a rewrite of what was inserted."""
    PersonFactory.create_batch(45)

    with CaptureQueriesContext(connection) as captured:
        run = ok(sync(user))

    assert counts(run) == {"created": 45}
    statements = [q["sql"] for q in captured.captured_queries]
    link_writes = [
        sql
        for sql in statements
        if sql.startswith(("INSERT", "UPDATE")) and '"exchange_sync_contactlink"' in sql.split("(")[0]
    ]
    assert len(link_writes) == 1 + 3, link_writes
    assert ContactLink.objects.filter(graph_id__startswith=CREATING).count() == 0
