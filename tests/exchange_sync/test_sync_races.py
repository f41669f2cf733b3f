"""Runs meeting the world half-way: a person saving in Business Central or Outlook between a run's
reading and its writing, and a run that stops after Outlook did the work but before it was recorded.
Nothing may be overwritten unseen, duplicated, or brought back after a delete."""

from __future__ import annotations

import pytest

from contacts.models import Contact
from exchange_sync.graph.client import GraphClient
from exchange_sync.models import ActivityLog, ContactLink, Outcome, RunStatus
from exchange_sync.sync import engine
from exchange_sync.sync.planner import CREATING
from m365_emulator.errors import GraphError as EmulatedGraphError
from tests.exchange_sync.test_sync_rules import FOLDER, MAILBOX, counts, ok, sync
from tests.factories import PersonFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def outlook(m365):
    return m365.emulator.outlook(MAILBOX)


@pytest.fixture
def synced_person(sync_user, outlook):
    """One person, synced, and its Outlook copy."""
    person = PersonFactory(
        first_name="Ada", surname="Lovelace", email="ada@example.com", job_title="Engineer"
    )
    ok(sync(sync_user))
    (item,) = outlook.list_contacts(FOLDER)
    return person, item


def edit_after_planning(monkeypatch, edit) -> None:
    """Run `edit` once, right after the next run has planned and before it writes anything."""

    def plan_then_edit(state):
        the_plan = original(state)
        edit()
        monkeypatch.setattr(engine, "plan", original)
        return the_plan

    original = engine.plan
    monkeypatch.setattr(engine, "plan", plan_then_edit)


def test_business_central_edit_during_a_run_is_not_overwritten_from_outlook(
    monkeypatch, sync_user, outlook, synced_person
):
    person, item = synced_person
    outlook.update_contact(item["id"], {"jobTitle": "Poet"})

    def save_in_business_central():
        person.job_title = "Mathematician"
        person.save()

    edit_after_planning(monkeypatch, save_in_business_central)
    run = ok(sync(sync_user))

    person.refresh_from_db()
    assert person.job_title == "Mathematician"
    entry = ActivityLog.objects.get(run=run, outcome=Outcome.SKIPPED)
    assert "changed on both sides (in Business Central during this run)" in entry.message
    assert entry.details == {"outlook_values_overwritten": {"job_title": "Poet"}}
    assert ContactLink.objects.get(contact=person).pending

    after = ok(sync(sync_user))
    assert counts(after) == {"updated": 1}
    assert outlook.get_contact(item["id"])["jobTitle"] == "Mathematician"
    assert counts(ok(sync(sync_user))) == {}


def test_outlook_edit_during_a_run_is_not_overwritten_unseen(monkeypatch, sync_user, outlook, synced_person):
    person, item = synced_person
    person.job_title = "Mathematician"
    person.save()
    edit_after_planning(monkeypatch, lambda: outlook.update_contact(item["id"], {"jobTitle": "Poet"}))

    run = ok(sync(sync_user))
    assert outlook.get_contact(item["id"])["jobTitle"] == "Poet"  # refused by If-Match, not overwritten
    entry = ActivityLog.objects.get(run=run, outcome=Outcome.SKIPPED)
    assert "was edited in Outlook while this run was sending it" in entry.message

    after = ok(sync(sync_user))
    assert counts(after) == {"updated": 1}
    assert outlook.get_contact(item["id"])["jobTitle"] == "Mathematician"
    conflict = ActivityLog.objects.get(run=after, outcome=Outcome.UPDATED)
    assert "changed on both sides" in conflict.message
    assert conflict.details["outlook_values_overwritten"] == {"job_title": "Poet"}
    person.refresh_from_db()
    assert person.job_title == "Mathematician"


def test_outlook_touching_a_field_we_do_not_sync_does_not_stall_the_next_write(
    sync_user, outlook, synced_person
):
    person, item = synced_person
    outlook.update_contact(item["id"], {"personalNotes": "met at the Royal Society"})
    assert counts(ok(sync(sync_user))) == {}  # nothing of ours changed, but the link learns the new version

    person.job_title = "Mathematician"
    person.save()
    run = ok(sync(sync_user))
    assert counts(run) == {"updated": 1}
    current = outlook.get_contact(item["id"])
    assert (current["jobTitle"], current["personalNotes"]) == ("Mathematician", "met at the Royal Society")


class Stopped(Exception):
    """The process dying: Graph did the work, nothing after it ran."""


def stop_after_graph_answers(monkeypatch) -> None:
    """The next $batch is sent and applied by Outlook, then the run stops before recording it."""
    original = GraphClient.batch_iter

    def apply_then_stop(self, *, mailbox, requests, **options):
        for _ in original(self, mailbox=mailbox, requests=requests, **options):
            monkeypatch.setattr(GraphClient, "batch_iter", original)
            raise Stopped

    monkeypatch.setattr(GraphClient, "batch_iter", apply_then_stop)


@pytest.mark.parametrize("deleted_meanwhile", [False, True], ids=["still wanted", "deleted meanwhile"])
def test_a_create_outlook_made_but_the_run_never_recorded_is_neither_duplicated_nor_imported_back(
    monkeypatch, sync_user, outlook, deleted_meanwhile
):
    ada = PersonFactory(first_name="Ada", surname="Lovelace", email="ada@example.com")
    stop_after_graph_answers(monkeypatch)
    stopped = sync(sync_user)
    assert stopped.status == RunStatus.FAILED
    assert [c["displayName"] for c in outlook.list_contacts(FOLDER)] == ["Ada Lovelace"]
    assert ContactLink.objects.get(contact=ada).graph_id.startswith(CREATING)

    if deleted_meanwhile:
        ada.delete()
    run = ok(sync(sync_user))

    if deleted_meanwhile:
        assert outlook.list_contacts(FOLDER) == []
        assert not Contact.objects.exists()  # not imported back from the copy
        assert counts(run) == {"deleted": 1}
        assert not ContactLink.objects.exists()
    else:
        (item,) = outlook.list_contacts(FOLDER)
        assert counts(run) == {"linked": 1}
        assert ContactLink.objects.get(contact=ada).graph_id == item["id"]
    assert counts(ok(sync(sync_user))) == {}


def test_a_match_whose_first_write_failed_is_kept_so_the_next_sync_creates_no_second_contact(
    sync_user, outlook, m365
):
    ada = PersonFactory(first_name="Ada", surname="Lovelace", email="ada@example.com", job_title="Engineer")
    outlook.create_folder(FOLDER)  # the folder already holds her, as when sync is turned on late
    outlook.create_contact(FOLDER, {"givenName": "Ada", "emailAddresses": [{"address": "ADA@example.com"}]})
    router = m365.front.router
    original = router.run

    def refuse_updates(ctx):
        if ctx.request.method == "PATCH":
            raise EmulatedGraphError(400, "ErrorInvalidRequest", "Refused for the test.")
        return original(ctx)

    router.run = refuse_updates
    try:
        first = ok(sync(sync_user))
    finally:
        router.run = original
    assert counts(first) == {"failed": 1}
    assert ContactLink.objects.get(contact=ada).pending

    second = ok(sync(sync_user))  # a delta Sync: the Outlook contact is not in it again
    (item,) = outlook.list_contacts(FOLDER)
    assert counts(second) == {"updated": 1}
    assert (item["jobTitle"], ContactLink.objects.get(contact=ada).graph_id) == ("Engineer", item["id"])
    assert counts(ok(sync(sync_user))) == {}
