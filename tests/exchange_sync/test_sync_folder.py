"""The sync folder: Preview and Validate write nothing to Outlook; the folder name is checked; a changed
Folder name renames the Outlook folder, or moves (or removes) the synced contacts when a folder of the
new name exists, never leaving duplicates.

End to end: the real Graph client over real HTTP against the emulator, a real database; the setup page
through the Django test client as a salesperson.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from contacts.models import Contact
from exchange_sync.models import (
    ActivityLog,
    ContactLink,
    ContactSyncSetup,
    ExistingFolderPolicy,
    Outcome,
    RunStatus,
    SyncMode,
    SyncRun,
)
from exchange_sync.services import contact_sync
from tests.factories import PersonFactory

pytestmark = pytest.mark.django_db

FOLDER = "Business Central"
NEW_NAME = "BC Contacts"
MAILBOX = "ann@contoso.test"
WRITES = ("POST", "PATCH", "DELETE", "PUT")


def sync(user, mode: str = SyncMode.SYNC) -> SyncRun:
    run = contact_sync.request_contact_sync(user=user, mode=mode, enqueue=False)
    run = contact_sync.run_contact_sync(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


def graph_writes(emulator) -> dict[str, int]:
    """Graph requests that change something, by route; a $batch counts by its inner requests."""
    stats = emulator.stats()
    routes = {**stats["by_route"], **{f"inner {k}": v for k, v in stats["inner_by_route"].items()}}
    return {
        route: count
        for route, count in routes.items()
        if route.removeprefix("inner ").startswith(WRITES) and "$batch" not in route and "/token" not in route
    }


def folder_names(outlook) -> list[str]:
    """The folders under the default Contacts folder."""
    return sorted(f["displayName"] for f in outlook.list_folders() if f["displayName"] != "Contacts")


def emails_in(outlook, folder: str) -> list[str]:
    return sorted(
        c["emailAddresses"][0]["address"] for c in outlook.list_contacts(folder) if c["emailAddresses"]
    )


def rename_setting(user, name: str, policy: str = ExistingFolderPolicy.MOVE) -> None:
    ContactSyncSetup.objects.filter(user=user).update(folder_name=name, existing_folder_policy=policy)


@pytest.fixture
def outlook(m365, sync_user):
    return m365.emulator.outlook(MAILBOX)


@pytest.fixture
def three_synced(sync_user, outlook) -> list[Contact]:
    contacts = [PersonFactory(email=f"person{i}@example.com") for i in range(3)]
    assert sync(sync_user).created == 3
    return contacts


# --- Preview and Validate write nothing -------------------------------------------------------------


def test_a_first_preview_sends_no_graph_write_and_says_the_folder_will_be_created(m365, sync_user, outlook):
    PersonFactory.create_batch(2)
    m365.emulator.reset_stats()

    run = sync(sync_user, SyncMode.PREVIEW)

    assert graph_writes(m365.emulator) == {}
    assert m365.emulator.stats()["graph_requests"] > 0  # it did ask Outlook
    assert folder_names(outlook) == []
    planned = ActivityLog.objects.filter(run=run, outcome=Outcome.PLANNED)
    assert planned.get(action="Sync folder").message == (
        "Folder 'Business Central' will be created by the first Sync."
    )
    assert planned.filter(action="Create Outlook contact").count() == 2
    assert ContactSyncSetup.objects.get(user=sync_user).folder_id == ""


def test_a_first_sync_creates_the_folder_with_one_request(m365, sync_user, outlook):
    PersonFactory.create_batch(2)
    m365.emulator.reset_stats()

    run = sync(sync_user)

    assert run.created == 2
    assert folder_names(outlook) == [FOLDER]
    assert m365.emulator.stats()["by_route"]["POST /users/{upn}/contactFolders"] == 1
    assert "GET /users/{upn}/contactFolders" not in m365.emulator.stats()["by_route"]


@pytest.mark.parametrize("name_in_outlook", [FOLDER, FOLDER.upper()])
def test_a_first_sync_adopts_the_folder_of_its_name_and_links_what_it_holds(
    m365, sync_user, outlook, name_in_outlook
):
    """Outlook compares folder names ignoring case, so a folder left by an earlier setup (or made by
    hand) is the sync folder: no second folder, its contact linked by email, nothing duplicated."""
    existing = outlook.create_folder(name_in_outlook)
    outlook.create_contact(
        existing["id"],
        {"givenName": "Ada", "surname": "Lovelace", "emailAddresses": [{"address": "ada@example.com"}]},
    )
    PersonFactory(first_name="Ada", surname="Lovelace", email="ada@example.com")
    PersonFactory(email="grace@example.com")

    run = sync(sync_user)

    assert (run.created, run.linked) == (1, 1)
    assert folder_names(outlook) == [name_in_outlook]
    assert ContactSyncSetup.objects.get(user=sync_user).folder_id == existing["id"]
    assert emails_in(outlook, existing["id"]) == ["ada@example.com", "grace@example.com"]
    assert not ActivityLog.objects.filter(run=run, action="Sync folder").exists()


def test_validate_sends_no_graph_write_and_says_the_folder_will_be_created(m365, sync_user, outlook):
    m365.emulator.reset_stats()

    check = contact_sync.validate_exchange_connection(user=sync_user)

    assert check.ok
    assert check.message == (
        "Connected successfully to Microsoft 365: mailbox ann@contoso.test, "
        "folder 'Business Central' will be created by the first Sync."
    )
    assert graph_writes(m365.emulator) == {}
    assert folder_names(outlook) == []


def test_preview_and_validate_of_a_renamed_folder_say_so_and_change_nothing(
    m365, sync_user, outlook, three_synced
):
    rename_setting(sync_user, NEW_NAME)
    m365.emulator.reset_stats()

    preview = sync(sync_user, SyncMode.PREVIEW)
    check = contact_sync.validate_exchange_connection(user=sync_user)

    assert graph_writes(m365.emulator) == {}
    assert folder_names(outlook) == [FOLDER]
    expected = (
        "the Outlook folder 'Business Central' will be renamed 'BC Contacts' by the next Sync, "
        "its contacts kept"
    )
    assert (
        ActivityLog.objects.get(run=preview, action="Sync folder").message
        == expected[0].upper() + expected[1:] + "."
    )
    assert check.message.endswith(f"mailbox ann@contoso.test, {expected}.")
    # The preview read the folder that will be renamed: nothing to create, nothing to change.
    assert not ActivityLog.objects.filter(run=preview, action="Create Outlook contact").exists()


# --- the folder name is checked ---------------------------------------------------------------------


@pytest.fixture
def ann_client(client, sync_user):
    client.force_login(sync_user)
    return client


def post_setup(ann_client, setup: ContactSyncSetup, **fields: Any):
    data = {
        "folder_name": setup.folder_name,
        "existing_folder_policy": setup.existing_folder_policy,
        "out_of_scope_policy": setup.out_of_scope_policy,
        **fields,
    }
    return ann_client.post(
        reverse("admin:exchange_sync_contactsyncsetup_change", args=[setup.pk]), data, follow=True
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param(
            "F" * 250, "A folder name has at most 30 characters (this one has 250).", id="250 characters"
        ),
        pytest.param(
            "<script>alert(1)</script>",
            "Outlook does not accept / &lt; &gt; in a folder name",
            id="script",
        ),
        pytest.param("A/B\\C", "Outlook does not accept / \\ in a folder name", id="slashes"),
        pytest.param("   ", "This field is required.", id="blank"),
        pytest.param("Tab\there", "A folder name cannot hold control characters.", id="control"),
    ],
)
def test_the_setup_page_refuses_a_folder_name_outlook_would_not_take(
    ann_client, sync_user, outlook, name, message
):
    _, setup = contact_sync.setups_for(user=sync_user)

    page = post_setup(ann_client, setup, folder_name=name).content.decode()

    assert message in page
    assert ContactSyncSetup.objects.get(pk=setup.pk).folder_name == FOLDER
    assert folder_names(outlook) == []


def test_the_setup_page_says_what_a_rename_will_do_before_the_sync(
    ann_client, sync_user, outlook, three_synced
):
    setup = ContactSyncSetup.objects.get(user=sync_user)
    form = ann_client.get(
        reverse("admin:exchange_sync_contactsyncsetup_change", args=[setup.pk])
    ).content.decode()
    assert "Changing it renames that folder in Outlook on the next Sync" in form

    page = post_setup(ann_client, setup, folder_name="Kontakte 🎉").content.decode()

    assert (
        "Folder name changed: The Outlook folder &#x27;Business Central&#x27; will be renamed "
        "&#x27;Kontakte 🎉&#x27; by the next Sync, its contacts kept."
    ) in page
    assert folder_names(outlook) == [FOLDER]  # saving the page changed nothing in Outlook


# --- a changed Folder name never duplicates the address book -----------------------------------------


def test_a_new_folder_name_renames_the_outlook_folder_and_sends_nothing_again(
    m365, sync_user, outlook, three_synced
):
    links_before = sorted(ContactLink.objects.values_list("contact_id", "graph_id"))
    rename_setting(sync_user, NEW_NAME)

    run = sync(sync_user)

    assert folder_names(outlook) == [NEW_NAME]
    assert emails_in(outlook, NEW_NAME) == [c.email for c in three_synced]
    assert sorted(ContactLink.objects.values_list("contact_id", "graph_id")) == links_before
    assert run.moved() == {}  # the delta link stayed valid: nothing read back, nothing sent
    assert ActivityLog.objects.get(run=run, action="Sync folder").message == (
        "The Outlook folder 'Business Central' was renamed 'BC Contacts', its contacts kept."
    )
    PersonFactory(email="later@example.com")
    assert sync(sync_user).created == 1
    assert len(outlook.list_contacts(NEW_NAME)) == 4


@pytest.fixture
def taken_name(outlook, three_synced):
    """A folder named like the new setting already exists: it holds an old copy of person1 and a contact
    of the user's own. The old folder holds a contact of the user's own too, with no email."""
    folder = outlook.create_folder(NEW_NAME)
    outlook.create_contact(
        folder["id"],
        {"displayName": "Old copy", "emailAddresses": [{"address": "person1@example.com", "name": "Old"}]},
    )
    outlook.create_contact(
        folder["id"],
        {"displayName": "Own", "emailAddresses": [{"address": "own@example.com", "name": "Own"}]},
    )
    mine = outlook.create_contact(FOLDER, {"displayName": "Mine, no email", "personalNotes": "keep me"})
    return folder, mine


def test_with_the_new_name_taken_the_synced_contacts_move_with_what_outlook_holds_on_them(
    sync_user, outlook, three_synced, taken_name
):
    folder, mine = taken_name
    noted = next(
        c
        for c in outlook.list_contacts(FOLDER)
        if c["emailAddresses"] and c["emailAddresses"][0]["address"] == "person2@example.com"
    )
    outlook.update_contact(
        noted["id"], {"personalNotes": "met at the fair", "birthday": "1990-05-01T00:00:00Z"}
    )
    contacts_before = Contact.objects.count()
    rename_setting(sync_user, NEW_NAME, ExistingFolderPolicy.MOVE)

    run = sync(sync_user)

    assert emails_in(outlook, NEW_NAME) == ["own@example.com", *[c.email for c in three_synced]]
    moved = next(
        c
        for c in outlook.list_contacts(NEW_NAME)
        if c["emailAddresses"][0]["address"] == "person2@example.com"
    )
    assert (moved["personalNotes"], moved["birthday"]) == ("met at the fair", "1990-05-01T00:00:00Z")
    # The old folder keeps only what was never synced.
    assert [c["id"] for c in outlook.list_contacts(FOLDER)] == [mine["id"]]
    # Nothing imported twice: only the user's own contact in the new folder came in.
    assert Contact.objects.count() == contacts_before + 1
    assert run.imported == 1
    assert ContactSyncSetup.objects.get(user=sync_user).folder_id == folder["id"]
    assert set(ContactLink.objects.values_list("graph_id", flat=True)) == {
        c["id"] for c in outlook.list_contacts(NEW_NAME)
    }
    assert ActivityLog.objects.get(run=run, action="Sync folder").message == (
        "The synced contacts of 'Business Central' were moved into the existing folder 'BC Contacts'."
    )
    # The old copy of person1 in the new folder was linked, and Business Central's values sent to it.
    assert run.linked == 1
    assert sync(sync_user).moved() == {}  # settled


def test_with_the_new_name_taken_the_synced_contacts_can_be_removed_instead(
    sync_user, outlook, three_synced, taken_name
):
    folder, _ = taken_name
    outlook.delete_contact(taken_name[1]["id"])  # nothing of the user's own left: the old folder goes
    rename_setting(sync_user, NEW_NAME, ExistingFolderPolicy.REMOVE)

    run = sync(sync_user)

    assert folder_names(outlook) == [NEW_NAME]
    assert emails_in(outlook, NEW_NAME) == ["own@example.com", *[c.email for c in three_synced]]
    assert (run.created, run.linked, run.imported) == (2, 1, 1)
    assert ActivityLog.objects.get(run=run, action="Sync folder").message == (
        "The synced contacts of 'Business Central' were removed from Outlook; the existing folder "
        "'BC Contacts' is filled from Business Central."
    )
    assert ContactSyncSetup.objects.get(user=sync_user).folder_id == folder["id"]


def test_a_move_stopped_after_the_copies_is_finished_by_the_next_sync_without_duplicates(
    sync_user, outlook, three_synced
):
    """The state a run stopped between copying and deleting leaves: every copy made and linked, the
    originals still in the old folder."""
    target = outlook.create_folder(NEW_NAME)
    for link in ContactLink.objects.all():
        original = outlook.get_contact(link.graph_id)
        body = {
            k: v
            for k, v in original.items()
            if k in ("displayName", "givenName", "surname", "emailAddresses")
        }
        link.graph_id = outlook.create_contact(target["id"], body)["id"]
        link.save()
    rename_setting(sync_user, NEW_NAME, ExistingFolderPolicy.MOVE)

    run = sync(sync_user)

    assert folder_names(outlook) == [NEW_NAME]
    assert emails_in(outlook, NEW_NAME) == [c.email for c in three_synced]
    assert (run.created, run.recreated, run.imported) == (0, 0, 0)
    assert set(ContactLink.objects.values_list("graph_id", flat=True)) == {
        c["id"] for c in outlook.list_contacts(NEW_NAME)
    }
