"""What a run tells a person: its summary line (run page and command line), its counters, and the
field names in its log messages. End to end, through the real client against the emulator."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from contacts.models import Contact
from exchange_sync.models import Direction, SyncMode
from tests.exchange_sync.test_sync_rules import FOLDER, counts, folder, ok, sync, the_entry
from tests.factories import PersonFactory

pytestmark = pytest.mark.django_db


def outlook_person(outlook, email: str, **fields) -> dict:
    return outlook.create_contact(
        FOLDER, {"givenName": "Olga", "surname": "Outlook", "emailAddresses": [{"address": email}], **fields}
    )


def only_reads(emulator) -> bool:
    """The emulator served no Graph write since its stats were reset: no $batch item, no POST,
    PATCH or DELETE."""
    stats = emulator.stats()
    return stats["inner_requests"] == 0 and all(route.startswith("GET ") for route in stats["by_route"])


# --- finding 7: a Preview counts its plan ------------------------------------------------------------------


def test_a_preview_counts_what_a_sync_would_do_and_writes_nothing(sync_user, outlook, emulator, client):
    edited, *_ = PersonFactory.create_batch(3)
    ok(sync(sync_user))  # the folder exists and three contacts are synced
    PersonFactory.create_batch(2)
    edited.job_title = "Chief Buyer"
    edited.save()
    outlook_person(outlook, "olga@example.com")
    PersonFactory(email="matched@example.com")
    outlook_person(outlook, "matched@example.com")
    in_outlook = folder(outlook)
    contacts_before = Contact.objects.count()
    emulator.reset_stats()

    preview = ok(sync(sync_user, SyncMode.PREVIEW))

    assert counts(preview) == {"created": 2, "updated": 1, "linked": 1, "imported": 1}
    assert preview.graph_requests > 0
    assert preview.summary_line() == (
        "would create 2, would update 1, would link 1, would delete 0, would recreate 0, would import 1, "
        f"would skip 0; graph_requests={preview.graph_requests}"
    )
    assert only_reads(emulator)
    assert folder(outlook) == in_outlook
    assert Contact.objects.count() == contacts_before

    client.force_login(sync_user)
    page = client.get(reverse("admin:exchange_sync_syncrun_change", args=[preview.pk])).content.decode()
    assert "would create 2, would update 1, would link 1" in page
    assert "Outlook (Business Central → Outlook): what a Sync would do (nothing was written)" in page

    out = io.StringIO()
    call_command("sync_contacts", user=sync_user.username, preview=True, stdout=out)
    assert out.getvalue().startswith("would create 2, would update 1, would link 1, would delete 0, ")
    assert only_reads(emulator)


def test_a_preview_of_a_blocked_plan_counts_the_deletes_it_plans_and_not_the_guard(sync_user, outlook):
    people = PersonFactory.create_batch(25)
    ok(sync(sync_user))
    Contact.objects.filter(pk__in=[p.pk for p in people]).delete()

    preview = ok(sync(sync_user, SyncMode.PREVIEW))

    assert the_entry(preview, action="Mass-delete guard").message.startswith("This run would delete 25 of")
    assert counts(preview) == {"deleted": 25}
    assert preview.summary_line().startswith(
        "would create 0, would update 0, would link 0, would delete 25, would recreate 0, would import 0, "
        "would skip 0; "
    )


# --- finding 12: contacts matched by email are in the summary -----------------------------------------------


def test_the_summary_line_counts_contacts_matched_by_email(sync_user, outlook, client):
    outlook.create_folder(FOLDER)
    for email in ("ada@example.com", "bob@example.com"):
        PersonFactory(email=email)
        outlook_person(outlook, email)
    out = io.StringIO()

    call_command("sync_contacts", user=sync_user.username, stdout=out)

    (line,) = out.getvalue().splitlines()
    assert line.startswith(
        "created=0 updated=0 linked=2 deleted=0 recreated=0 imported=0 skipped=0 failed=0 "
    )
    (run,) = sync_user.sync_runs.all()
    assert counts(run) == {"linked": 2}
    assert run.summary_line() == line
    client.force_login(sync_user)
    page = client.get(reverse("admin:exchange_sync_syncrun_change", args=[run.pk])).content.decode()
    assert line in page
    assert "what a Sync would do" not in page


# --- finding 10: captions, not internal field names ---------------------------------------------------------


def test_a_conflict_names_outlooks_replaced_values_by_caption(sync_user, outlook):
    ada = PersonFactory(email="ada@example.com", job_title="Buyer", mobile_phone_no="+31 6 1111 1111")
    ok(sync(sync_user))
    outlook.update_contact(
        folder(outlook)["ada@example.com"]["id"],
        {"jobTitle": "Outlook Title", "mobilePhone": "+31 6 0000 0000"},
    )
    ada.job_title = "Head of Buying"
    ada.mobile_phone_no = "+31 6 2222 2222"
    ada.save()

    run = ok(sync(sync_user))

    entry = the_entry(run)
    assert entry.message == (
        f"{ada.no} {ada.name} changed on both sides; Business Central's values won. Outlook's differing "
        "values were replaced: Mobile Phone No. '+31 6 0000 0000', Job Title 'Outlook Title'."
    )
    assert entry.details["outlook_values_overwritten"] == {
        "mobile_phone_no": "+31 6 0000 0000",
        "job_title": "Outlook Title",
    }


def test_a_value_cut_to_fit_is_named_by_caption(sync_user, outlook):
    PersonFactory(email="ada@example.com", job_title="Buyer")
    ok(sync(sync_user))
    outlook.update_contact(
        folder(outlook)["ada@example.com"]["id"],
        {"jobTitle": "Senior Vice President of Global Procurement X"},
    )

    run = ok(sync(sync_user))

    assert "Cut to fit Business Central: Job Title (45 characters)" in the_entry(run).message


def test_an_update_in_outlook_lists_the_fields_it_changed_as_one_from_outlook_does(sync_user, outlook):
    ada = PersonFactory(email="ada@example.com", job_title="Buyer", city="London")
    ok(sync(sync_user))
    ada.job_title = "Head of Buying"
    ada.city = "Paris"
    ada.save()

    to_outlook = the_entry(ok(sync(sync_user)))

    assert to_outlook.message == f"{ada.no} {ada.name} was updated in Outlook: City, Job Title."
    item = folder(outlook)["ada@example.com"]
    outlook.update_contact(
        item["id"],
        {"jobTitle": "Chief Buyer", "businessAddress": {**item["businessAddress"], "city": "Lyon"}},
    )

    from_outlook = the_entry(ok(sync(sync_user)))

    assert from_outlook.message == f"{ada.no} {ada.name} was updated from Outlook: City, Job Title."


def test_a_merge_is_previewed_as_an_update_of_both_sides_and_names_the_fields_it_sends(sync_user, outlook):
    ada = PersonFactory(email="ada@example.com", job_title="Buyer", city="London")
    ok(sync(sync_user))
    item = folder(outlook)["ada@example.com"]
    outlook.update_contact(item["id"], {"jobTitle": "Chief Buyer"})
    ada.city = "Paris"
    ada.save()

    preview = ok(sync(sync_user, SyncMode.PREVIEW))

    assert counts(preview) == {"bc_updated": 1, "updated": 1}
    assert preview.summary_line().startswith("would create 0, would update 2, ")

    run = ok(sync(sync_user))

    assert counts(run) == {"bc_updated": 1, "updated": 1}
    to_outlook = the_entry(run, direction=Direction.TO_M365)
    assert to_outlook.message.startswith(f"{ada.no} {ada.name} was updated in Outlook: City.")
    # City was Business Central's own edit, not Outlook's: nothing of Outlook's was overruled.
    assert "Outlook's differing values were replaced" not in to_outlook.message
    assert "outlook_values_overwritten" not in to_outlook.details


def test_a_merge_with_a_conflict_names_only_the_field_both_sides_changed(sync_user, outlook):
    ada = PersonFactory(email="ada@example.com", job_title="Buyer", city="London", phone_no="+44 1")
    ok(sync(sync_user))
    item = folder(outlook)["ada@example.com"]
    outlook.update_contact(item["id"], {"jobTitle": "Chief Buyer", "businessPhones": ["+44 2"]})
    ada.city, ada.job_title = "Paris", "Head Buyer"
    ada.save()

    run = ok(sync(sync_user))

    to_outlook = the_entry(run, direction=Direction.TO_M365)
    assert to_outlook.details["outlook_values_overwritten"] == {"job_title": "Chief Buyer"}
    assert to_outlook.message.endswith("Outlook's differing values were replaced: Job Title 'Chief Buyer'.")
    ada.refresh_from_db()
    assert (ada.job_title, ada.city, ada.phone_no) == ("Head Buyer", "Paris", "+44 2")
