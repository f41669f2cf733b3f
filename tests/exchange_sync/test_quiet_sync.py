"""A quiet Sync: when Outlook's delta page is empty and nothing in Business Central changed since a run
that left nothing to try again, the run stops after reading Outlook, and its database work is the same
for 10 linked contacts as for 1,000. Every other case still syncs, each shown here end to end against
the emulator: a contact created, edited, deleted, privacy blocked, renamed through its company; the
filter changed; a link waiting for a retry; a skip that recurs; a folder move; and Full Sync."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contacts.models import Contact
from exchange_sync.models import ActivityLog, ContactLink, ContactSyncSetup, Outcome, SyncMode
from exchange_sync.services import contact_sync
from exchange_sync.sync.planner import CREATING
from harness.seeding import seed_linked
from tests.exchange_sync.test_sync_rules import FOLDER, MAILBOX, counts, folder, ok, primary, sync
from tests.factories import CompanyFactory, PersonFactory

pytestmark = pytest.mark.django_db


def setup_of(user) -> ContactSyncSetup:
    return ContactSyncSetup.objects.get(user=user)


@pytest.fixture
def settled(sync_user, emulator):
    """Ten persons linked to their copies in the folder, and a first Sync that found them in step
    (it reads the whole folder: there is no delta link yet) and so settled the setup."""
    _, setup = contact_sync.setups_for(user=sync_user)
    seed_linked(setup=setup, outlook=emulator.outlook(MAILBOX), mailbox=MAILBOX, n=10)
    assert counts(ok(sync(sync_user))) == {}
    assert setup_of(sync_user).settled_key
    return sync_user


def moved(run) -> tuple[dict[str, int], int]:
    """What a successful run did, and its Graph requests."""
    return counts(ok(run)), run.graph_requests


def quiet_queries(user) -> tuple[int, list[str]]:
    """A Sync that must find nothing to do: its query count and the tables it read links from."""
    with CaptureQueriesContext(connection) as captured:
        run = ok(sync(user))
    assert (counts(run), run.graph_requests) == ({}, 2)
    assert ActivityLog.objects.filter(run=run).count() == 0
    statements = [q["sql"] for q in captured.captured_queries]
    return len(statements), statements


def test_a_quiet_sync_costs_the_same_queries_at_10_and_at_1000_linked_contacts(settled, emulator):
    at_10, statements = quiet_queries(settled)
    # The links are asked about, never read: no statement selects their records or hashes.
    assert not [s for s in statements if "contactlink" in s.lower() and "m365_hash" in s.lower()]

    setup = setup_of(settled)
    seed_linked(setup=setup, outlook=emulator.outlook(MAILBOX), mailbox=MAILBOX, n=990, start=10)
    # The new persons were modified after the watermark: this Sync reads as usual, and settles again.
    assert counts(ok(sync(settled))) == {}
    assert ContactLink.objects.filter(setup=setup).count() == 1000

    at_1000, _ = quiet_queries(settled)
    assert at_1000 == at_10


def test_a_contact_created_in_business_central_still_goes_out(settled, outlook):
    quiet_queries(settled)
    PersonFactory(email="new@example.com")
    assert moved(sync(settled)) == ({"created": 1}, 3)
    assert "new@example.com" in folder(outlook)


def test_a_contact_edited_in_business_central_still_goes_out(settled, outlook):
    quiet_queries(settled)
    contact = Contact.objects.get(email="person3@seed.test")
    contact.city = "York"
    contact.save()
    assert moved(sync(settled)) == ({"updated": 1}, 3)
    assert folder(outlook)["person3@seed.test"]["businessAddress"]["city"] == "York"


def test_a_contact_deleted_in_business_central_is_still_removed_from_the_folder(settled, outlook):
    quiet_queries(settled)
    Contact.objects.get(email="person4@seed.test").delete()  # its link's contact becomes NULL
    assert moved(sync(settled)) == ({"deleted": 1}, 3)
    assert "person4@seed.test" not in folder(outlook)


def test_a_contact_privacy_blocked_is_still_removed_from_the_folder(settled, outlook):
    quiet_queries(settled)
    Contact.objects.filter(email="person5@seed.test").update(privacy_blocked=True)
    assert moved(sync(settled)) == ({"deleted": 1}, 3)
    assert "person5@seed.test" not in folder(outlook)


def test_a_company_renamed_still_renames_its_persons_company_in_outlook(sync_user, emulator, outlook):
    company = CompanyFactory(name="Old Name Ltd")
    _, setup = contact_sync.setups_for(user=sync_user)
    seed_linked(setup=setup, outlook=emulator.outlook(MAILBOX), mailbox=MAILBOX, n=3, company=company)
    ok(sync(sync_user))
    quiet_queries(sync_user)

    company.name = "New Name Ltd"
    company.save()  # its persons' Company Name follows, through a stamped update

    assert moved(sync(sync_user)) == ({"updated": 3}, 3)
    assert {item["companyName"] for item in folder(outlook).values()} == {"New Name Ltd"}


def test_a_filter_changed_still_brings_in_what_it_selects_now(sync_user, emulator, outlook):
    _, setup = contact_sync.setups_for(user=sync_user)
    seed_linked(setup=setup, outlook=emulator.outlook(MAILBOX), mailbox=MAILBOX, n=3, territory_code="EU")
    us = PersonFactory(email="us@example.com", territory_code="US")
    contact_sync.set_sync_filter(user=sync_user, filters={"territory_code": "EU"})
    ok(sync(sync_user))
    quiet_queries(sync_user)
    # Not modified since: only the changed filter says that it is in scope now.
    Contact.objects.filter(pk=us.pk).update(last_modified=timezone.now() - timedelta(days=1))

    contact_sync.set_sync_filter(user=sync_user, filters={"territory_code": "EU|US"})

    assert moved(sync(sync_user)) == ({"created": 1}, 3)
    assert "us@example.com" in folder(outlook)


def test_a_link_waiting_for_a_retry_is_still_sent_again(settled, outlook):
    quiet_queries(settled)
    ContactLink.objects.filter(contact__email="person6@seed.test").update(pending=True)  # a failed write
    assert moved(sync(settled)) == ({"updated": 1}, 3)
    quiet_queries(settled)


def test_a_create_a_stopped_run_never_sent_is_still_made(settled, outlook):
    quiet_queries(settled)
    # A run recorded its intent to create this contact and stopped before sending it, with the setup
    # still settled and the contact unmodified since the watermark.
    late = PersonFactory(email="late@example.com")
    Contact.objects.filter(pk=late.pk).update(last_modified=timezone.now() - timedelta(days=1))
    ContactLink.objects.create(
        setup=setup_of(settled),
        contact=late,
        contact_no=late.no,
        email=late.search_email,
        graph_id=f"{CREATING}stopped",
        pending=True,
    )
    assert moved(sync(settled)) == ({"created": 1}, 3)
    assert "late@example.com" in folder(outlook)


def test_a_skip_that_recurs_is_logged_on_every_sync(settled):
    twin = PersonFactory(email="PERSON7@seed.test")  # the email of a synced contact
    for _ in range(2):
        run = ok(sync(settled))
        assert moved(run) == ({"skipped": 1}, 2)
        entry = ActivityLog.objects.get(run=run)
        assert (entry.contact, entry.outcome) == (twin, Outcome.SKIPPED)
    assert not setup_of(settled).settled_key


def test_a_folder_name_taken_still_moves_the_contacts(settled, outlook):
    quiet_queries(settled)
    outlook.create_folder("Customers")
    ContactSyncSetup.objects.filter(user=settled).update(folder_name="Customers")

    ok(sync(settled))

    moved = {primary(item) for item in outlook.list_contacts("Customers")}
    assert len(moved) == 10
    assert FOLDER not in {f["displayName"] for f in outlook.list_folders()}


def test_full_sync_is_never_quiet(settled, outlook):
    # Outlook's copy no longer matches what the link says was sent, and nothing says so to a Sync.
    ContactLink.objects.filter(contact__email="person8@seed.test").update(bc_hash="stale")
    quiet_queries(settled)
    run = ok(sync(settled, SyncMode.FULL))
    assert counts(run)["updated"] == 1
