"""The planner as a pure function, rule by rule (design.md section 3): no database, no network."""

from __future__ import annotations

import dataclasses

import pytest

from exchange_sync.sync.mapping import record_hash
from exchange_sync.sync.planner import ActionKind, FieldMerge, LinkState, Plan, PlanInput, merge_fields, plan

from .builders import actions, bc, email_of, given, link, match, no, only, outlook

K = ActionKind


def synced_pair(n: int, *, link_id: int | None = None):
    """Contact n and Outlook item g<n>, linked and unchanged since the last sync."""
    item = outlook(f"g{n}", name=f"Person {n}", email=email_of(n))
    return link(link_id or 100 + n, n, f"g{n}", synced_item=item), bc(n), item


# --- Rule 1: what goes to Outlook, what comes back --------------------------------------------------


def test_an_unlinked_contact_in_scope_is_created_in_outlook():
    result = plan(given(in_scope={1}, bc=[bc(1)]))

    assert actions(result) == [(K.CREATE_IN_M365, 1, None)]
    assert not result.blocked


def test_an_unlinked_contact_out_of_scope_is_not_sent():
    result = plan(given(in_scope={2}, bc=[bc(1), bc(2)]))

    assert actions(result) == [(K.CREATE_IN_M365, 2, None)]


def test_an_unlinked_outlook_contact_with_name_and_email_is_imported():
    item = outlook("g1", name="Ann Lee", email="ann@example.com")

    result = plan(given(outlook=[item]))

    action = only(result)
    assert (action.kind, action.graph_id, action.outlook) == (K.IMPORT_TO_BC, "g1", item)


def test_an_outlook_contact_without_email_is_skipped():
    result = plan(given(outlook=[outlook("g1", email=None)]))

    action = only(result)
    assert (action.kind, action.graph_id) == (K.SKIP, "g1")
    assert action.reason == "has no email address; not imported"


@pytest.mark.parametrize("address", ["a@", "@b", "A B@C", "ann.example.com", "ann@@example.com"])
def test_an_outlook_contact_with_an_invalid_email_is_skipped(address):
    result = plan(given(outlook=[outlook("g1", email=address)]))

    action = only(result)
    assert (action.kind, action.graph_id) == (K.SKIP, "g1")
    assert "cannot use" in action.reason
    assert f"'{address}'" in action.reason


def test_an_outlook_contact_without_a_name_is_skipped():
    result = plan(given(outlook=[outlook("g1", name="", email="ann@example.com")]))

    action = only(result)
    assert (action.kind, action.graph_id) == (K.SKIP, "g1")
    assert "has no name" in action.reason


def test_an_outlook_contact_named_only_by_its_parts_is_imported():
    item = outlook("g1", name="", givenName="Ann", surname="Lee", email="ann@example.com")

    result = plan(given(outlook=[item]))

    assert actions(result) == [(K.IMPORT_TO_BC, None, "g1")]
    assert item.record["name"] == "Ann Lee"


# --- Rule 2: Sync and Full Sync ---------------------------------------------------------------------


def test_full_sync_leaves_an_unchanged_pair_alone():
    lk, contact, item = synced_pair(1)

    result = plan(
        given(links=[lk], in_scope={1}, bc=[contact], outlook=[item], seen={"g1"}, whole_folder=True)
    )

    assert result.actions == []


def test_a_quiet_sync_plans_nothing():
    lk, _, _ = synced_pair(1)

    result = plan(given(links=[lk], in_scope={1}))

    assert result.actions == []


def test_a_contact_changed_in_business_central_updates_outlook():
    lk, _, _ = synced_pair(1)

    result = plan(given(links=[lk], in_scope={1}, bc=[bc(1, version=2)]))

    action = only(result)
    assert (action.kind, action.contact_id, action.graph_id, action.link_id) == (K.UPDATE_M365, 1, "g1", 101)
    assert action.conflict is False


def test_an_outlook_item_unchanged_since_the_last_sync_plans_nothing():
    lk, _, item = synced_pair(1)

    result = plan(given(links=[lk], in_scope={1}, outlook=[item], seen={"g1"}))

    assert result.actions == []


def test_a_contact_changed_in_outlook_only_updates_business_central():
    lk, _, _ = synced_pair(1)
    edited = outlook("g1", name="Person 1", email=email_of(1), jobTitle="Buyer")

    result = plan(given(links=[lk], in_scope={1}, outlook=[edited], seen={"g1"}))

    action = only(result)
    assert (action.kind, action.contact_id, action.graph_id, action.link_id) == (K.UPDATE_BC, 1, "g1", 101)
    assert action.outlook is edited


def test_full_sync_with_outlook_changed_and_business_central_unchanged_updates_business_central():
    lk, contact, _ = synced_pair(1)
    edited = outlook("g1", name="Person 1", email=email_of(1), mobilePhone="+45 1234")

    result = plan(
        given(links=[lk], in_scope={1}, bc=[contact], outlook=[edited], whole_folder=True, seen={"g1"})
    )

    assert actions(result) == [(K.UPDATE_BC, 1, "g1")]


def test_a_failed_push_is_sent_again_though_nothing_changed():
    lk, _, _ = synced_pair(1)

    result = plan(given(links=[dataclasses.replace(lk, pending=True)], in_scope={1}))

    assert actions(result) == [(K.UPDATE_M365, 1, "g1")]


@pytest.mark.parametrize("name, email", [("Person 1", ""), ("Person 1", "a@"), ("", email_of(1))])
def test_an_outlook_copy_stripped_of_its_name_or_email_is_restored_not_copied_back(name, email):
    """Only contacts with a name and a valid email come back from Outlook, linked ones too: Business
    Central must not lose its Name or E-Mail to a bad Outlook edit."""
    lk, _, _ = synced_pair(1)
    broken = outlook("g1", name=name, email=email)

    result = plan(given(links=[lk], in_scope={1}, outlook=[broken], seen={"g1"}))

    action = only(result)
    assert (action.kind, action.contact_id, action.graph_id) == (K.UPDATE_M365, 1, "g1")
    assert "Business Central's values were restored" in action.reason
    assert ("has no name" in action.reason) == (not name)


# --- Rule 3: Business Central wins ------------------------------------------------------------------


def test_changed_on_both_sides_business_central_wins_as_a_conflict():
    lk, _, _ = synced_pair(1)
    edited = outlook("g1", name="Person 1", email=email_of(1), jobTitle="Buyer")

    result = plan(given(links=[lk], in_scope={1}, bc=[bc(1, version=2)], outlook=[edited], seen={"g1"}))

    action = only(result)
    assert (action.kind, action.contact_id, action.graph_id) == (K.UPDATE_M365, 1, "g1")
    assert action.conflict is True
    assert action.outlook is edited


# --- Rule 3b: a contact changed on both sides is merged field by field -----------------------------


def merged_pair(n: int, **link_kwargs):
    """Contact n and Outlook item g<n>, last synced with both sides' records kept. Business Central's
    record carries Fax No., which Outlook's delta does not return, so the two records differ."""
    item = outlook(f"g{n}", name=f"Person {n}", email=email_of(n), jobTitle="Buyer", mobilePhone="+45 1")
    bc_synced = {**item.record, "fax_no": "+45 9"}
    lk = link(
        100 + n, n, f"g{n}", synced_item=item, bc_synced=bc_synced, with_synced_records=True, **link_kwargs
    )
    return lk, bc_synced


def outlook_edit(n: int, **fields):
    values = {"jobTitle": "Buyer", "mobilePhone": "+45 1", **fields}
    return outlook(f"g{n}", name=f"Person {n}", email=email_of(n), **values)


def bc_edit(n: int, bc_synced: dict[str, str], **fields: str):
    return bc(n, version=2, record={**bc_synced, **fields})


def test_a_field_only_outlook_changed_is_all_business_central_takes():
    lk, _ = merged_pair(1)
    edited = outlook_edit(1, mobilePhone="+45 2")

    action = only(plan(given(links=[lk], in_scope={1}, outlook=[edited], seen={"g1"})))

    assert (action.kind, action.from_outlook) == (K.UPDATE_BC, {"mobile_phone_no": "+45 2"})
    assert action.expected_bc_hash == lk.bc_hash


def test_an_outlook_change_on_a_link_without_synced_records_takes_the_whole_outlook_record():
    lk, _, _ = synced_pair(1)
    edited = outlook("g1", name="Person 1", email=email_of(1), jobTitle="Buyer")

    action = only(plan(given(links=[lk], in_scope={1}, outlook=[edited], seen={"g1"})))

    assert (action.kind, action.from_outlook) == (K.UPDATE_BC, None)


def test_different_fields_changed_on_each_side_are_merged_and_nothing_is_lost():
    lk, bc_synced = merged_pair(1)
    contact = bc_edit(1, bc_synced, job_title="Owner")
    edited = outlook_edit(1, mobilePhone="+45 2")

    action = only(plan(given(links=[lk], in_scope={1}, bc=[contact], outlook=[edited], seen={"g1"})))

    assert (action.kind, action.contact_id, action.graph_id, action.link_id) == (K.MERGE, 1, "g1", 101)
    assert action.from_outlook == {"mobile_phone_no": "+45 2"}
    assert action.conflict is False
    assert action.expected_bc_hash == contact.hash
    assert action.change_key == edited.change_key


def test_a_field_both_sides_changed_keeps_business_centrals_value_as_a_conflict():
    lk, bc_synced = merged_pair(1)
    contact = bc_edit(1, bc_synced, job_title="Owner")
    edited = outlook_edit(1, jobTitle="Engineer")

    action = only(plan(given(links=[lk], in_scope={1}, bc=[contact], outlook=[edited], seen={"g1"})))

    assert (action.kind, action.conflict, action.from_outlook) == (K.UPDATE_M365, True, None)
    assert action.outlook is edited  # the values it overwrites are logged from here


def test_a_conflict_on_one_field_still_keeps_outlooks_other_changes():
    lk, bc_synced = merged_pair(1)
    contact = bc_edit(1, bc_synced, job_title="Owner")
    edited = outlook_edit(1, jobTitle="Engineer", mobilePhone="+45 2")

    action = only(plan(given(links=[lk], in_scope={1}, bc=[contact], outlook=[edited], seen={"g1"})))

    assert (action.kind, action.conflict) == (K.MERGE, True)
    assert action.from_outlook == {"mobile_phone_no": "+45 2"}


def test_the_same_value_written_on_both_sides_is_no_conflict():
    lk, bc_synced = merged_pair(1)
    contact = bc_edit(1, bc_synced, job_title="Owner")
    edited = outlook_edit(1, jobTitle="Owner")

    action = only(plan(given(links=[lk], in_scope={1}, bc=[contact], outlook=[edited], seen={"g1"})))

    assert (action.kind, action.conflict) == (K.UPDATE_M365, False)


def test_a_failed_push_with_an_outlook_edit_since_keeps_that_edit():
    """The push failed, so Outlook never had Business Central's values; its later edit of another
    field is merged in, and Business Central's values still go out."""
    lk, bc_synced = merged_pair(1, pending=True)
    contact = bc(1, version=1, record=bc_synced)
    edited = outlook_edit(1, mobilePhone="+45 2")

    action = only(plan(given(links=[lk], in_scope={1}, bc=[contact], outlook=[edited], seen={"g1"})))

    assert (action.kind, action.from_outlook) == (K.MERGE, {"mobile_phone_no": "+45 2"})


def test_a_contact_back_in_scope_gets_business_centrals_values_whole():
    """While detached, Outlook's edits were logged as not synced; coming back, Business Central wins."""
    lk, bc_synced = merged_pair(1, detached=True)
    contact = bc(1, version=1, record=bc_synced)
    edited = outlook_edit(1, mobilePhone="+45 2")

    action = only(plan(given(links=[lk], in_scope={1}, bc=[contact], outlook=[edited], seen={"g1"})))

    assert (action.kind, action.conflict) == (K.UPDATE_M365, True)


def test_both_sides_changed_with_outlooks_email_removed_restores_business_central():
    lk, bc_synced = merged_pair(1)
    contact = bc_edit(1, bc_synced, job_title="Owner")
    broken = outlook("g1", name="Person 1", email="", mobilePhone="+45 2")

    action = only(plan(given(links=[lk], in_scope={1}, bc=[contact], outlook=[broken], seen={"g1"})))

    assert (action.kind, action.from_outlook) == (K.UPDATE_M365, None)
    assert "Business Central's values were restored" in action.reason


def test_merge_fields_compares_each_side_with_its_own_synced_record():
    merge = merge_fields(
        bc_synced={"job_title": "Buyer", "city": "Oslo", "fax_no": "1"},
        bc_now={"job_title": "Owner", "city": "Oslo", "fax_no": "2"},
        m365_synced={"job_title": "Buyer", "city": "Oslo"},  # Outlook does not return Fax No.
        outlook_now={"job_title": "Engineer", "city": "Paris", "fax_no": ""},
    )

    assert merge == FieldMerge(from_outlook={"city": "Paris"}, conflicts={"job_title": "Engineer"})


# --- Rule 3c: Outlook changes outside the scope are said, not dropped --------------------------------


def test_an_outlook_edit_to_a_detached_contact_is_logged_as_not_synced():
    lk, _, _ = synced_pair(1)
    edited = outlook("g1", name="Person 1", email=email_of(1), jobTitle="Buyer")

    action = only(plan(given(links=[dataclasses.replace(lk, detached=True)], outlook=[edited], seen={"g1"})))

    assert (action.kind, action.link_id, action.graph_id, action.outlook) == (K.SKIP, 101, "g1", edited)
    assert action.reason == "was changed in Outlook, but it is outside your filter: not synced"


def test_a_detached_contact_whose_outlook_copy_is_unchanged_plans_nothing():
    lk, _, item = synced_pair(1)

    result = plan(given(links=[dataclasses.replace(lk, detached=True)], outlook=[item], seen={"g1"}))

    assert result.actions == []


def test_a_contact_leaving_the_scope_with_an_outlook_edit_says_the_edit_is_not_synced():
    lk, _, _ = synced_pair(1)
    edited = outlook("g1", name="Person 1", email=email_of(1), jobTitle="Buyer")

    action = only(plan(given(links=[lk], outlook=[edited], seen={"g1"})))

    assert (action.kind, action.outlook) == (K.DETACH, edited)
    assert action.reason.endswith("and its Outlook changes are not synced")


def test_a_contact_added_in_outlook_outside_the_filter_and_deleted_there_is_not_recreated():
    lk, _, _ = synced_pair(1)

    action = only(plan(given(links=[lk], in_scope={1}, kept_imported={1}, removed={"g1"})))

    assert (action.kind, action.contact_id, action.link_id) == (K.DROP_LINK, 1, 101)
    assert action.reason == "deleted in Outlook, where it was added; outside your filter, so not recreated"


# --- Rule 4: deleted in Outlook, still in Business Central ------------------------------------------


def test_a_contact_deleted_in_outlook_is_recreated_even_when_business_central_did_not_change():
    lk, _, _ = synced_pair(1)

    result = plan(given(links=[lk], in_scope={1}, removed={"g1"}))

    action = only(result)
    assert (action.kind, action.contact_id, action.graph_id, action.link_id) == (
        K.RECREATE_IN_M365,
        1,
        "g1",
        101,
    )
    assert "deleted in Outlook" in action.reason


def test_a_full_read_that_does_not_see_a_linked_item_recreates_it():
    lk1, c1, i1 = synced_pair(1)
    lk2, c2, _ = synced_pair(2)

    result = plan(
        given(links=[lk1, lk2], in_scope={1, 2}, bc=[c1, c2], outlook=[i1], seen={"g1"}, whole_folder=True)
    )

    assert actions(result) == [(K.RECREATE_IN_M365, 2, "g2")]


def test_a_delta_read_that_does_not_mention_a_linked_item_does_not_recreate_it():
    lk, _, _ = synced_pair(1)

    result = plan(given(links=[lk], in_scope={1}, seen=set(), whole_folder=False))

    assert result.actions == []


def test_a_contact_changed_in_business_central_and_deleted_in_outlook_is_recreated():
    lk, _, _ = synced_pair(1)

    result = plan(given(links=[lk], in_scope={1}, bc=[bc(1, version=2)], removed={"g1"}))

    assert actions(result) == [(K.RECREATE_IN_M365, 1, "g1")]


# --- Rule 5: the link is the identity; unlinked contacts match by email -----------------------------


def test_a_changed_email_in_business_central_updates_the_same_outlook_contact():
    lk, _, _ = synced_pair(1)
    moved = bc(1, email="new.address@example.com", version=2)

    result = plan(
        given(links=[lk], in_scope={1}, bc=[moved], linked_emails={"new.address@example.com": no(1)})
    )

    assert actions(result) == [(K.UPDATE_M365, 1, "g1")]


def test_an_unlinked_pair_with_the_same_normalised_email_is_linked_not_duplicated():
    item = outlook("g9", email="  Ann.Lee@Example.COM ")

    result = plan(given(in_scope={1}, bc=[bc(1, email="ann.lee@example.com")], outlook=[item]))

    action = only(result)
    assert (action.kind, action.contact_id, action.graph_id, action.outlook) == (K.LINK, 1, "g9", item)


def test_several_unlinked_outlook_items_with_one_email_link_the_first_by_graph_id():
    items = [outlook(gid, email="ann@example.com") for gid in ("g3", "g1", "g2")]

    result = plan(given(in_scope={1}, bc=[bc(1, email="ann@example.com")], outlook=items))

    assert actions(result) == [(K.LINK, 1, "g1"), (K.SKIP, None, "g2"), (K.SKIP, None, "g3")]
    for skipped in result.of(K.SKIP):
        assert skipped.reason == f"has the same email as the Outlook contact linked to {no(1)}; not imported"


def test_several_business_central_contacts_with_one_email_lowest_no_wins():
    same = "shared@example.com"

    result = plan(given(in_scope={1, 2, 3}, bc=[bc(3, email=same), bc(1, email=same), bc(2, email=same)]))

    assert actions(result) == [(K.CREATE_IN_M365, 1, None), (K.SKIP, 2, None), (K.SKIP, 3, None)]
    for skipped in result.of(K.SKIP):
        assert skipped.reason.startswith(f"shares its email with {no(1)}")


def test_several_business_central_contacts_with_one_email_link_the_lowest_no_to_the_outlook_item():
    same = "shared@example.com"

    result = plan(
        given(in_scope={1, 2}, bc=[bc(2, email=same), bc(1, email=same)], outlook=[outlook("g1", email=same)])
    )

    assert actions(result) == [(K.LINK, 1, "g1"), (K.SKIP, 2, None)]
    assert f"shares its email with {no(1)}" in result.of(K.SKIP)[0].reason


def test_an_unlinked_contact_sharing_the_email_of_a_linked_one_is_not_sent():
    lk, _, _ = synced_pair(1)

    result = plan(
        given(links=[lk], in_scope={1, 2}, bc=[bc(2, email=email_of(1))], linked_emails={email_of(1): no(1)})
    )

    action = only(result)
    assert (action.kind, action.contact_id) == (K.SKIP, 2)
    assert action.reason.startswith(f"shares its email with {no(1)}, which is synced")


def test_an_unlinked_outlook_item_with_the_email_of_a_linked_contact_is_skipped():
    lk, _, _ = synced_pair(1)
    stray = outlook("g7", email=email_of(1).upper())

    result = plan(given(links=[lk], in_scope={1}, outlook=[stray], linked_emails={email_of(1): no(1)}))

    action = only(result)
    assert (action.kind, action.graph_id) == (K.SKIP, "g7")
    assert action.reason.startswith(f"has the email of {no(1)}, synced with another Outlook contact")


def test_an_unlinked_outlook_item_matching_a_contact_outside_the_filter_is_skipped():
    item = outlook("g1", email="ann@example.com")

    result = plan(given(outlook=[item], bc_matches={"ann@example.com": [match(5)]}))

    action = only(result)
    assert (action.kind, action.graph_id) == (K.SKIP, "g1")
    assert action.reason == f"matches {no(5)}, which is outside your sync filter; not imported"


def test_an_unlinked_outlook_item_matching_a_privacy_blocked_contact_is_skipped():
    item = outlook("g1", email="ann@example.com")

    result = plan(given(outlook=[item], bc_matches={"ann@example.com": [match(5, privacy_blocked=True)]}))

    action = only(result)
    assert (action.kind, action.graph_id) == (K.SKIP, "g1")
    assert action.reason == f"matches {no(5)}, which is privacy blocked; not imported"


def test_an_unlinked_outlook_item_names_the_unblocked_match_first():
    item = outlook("g1", email="ann@example.com")
    matches = [match(2, privacy_blocked=True), match(7)]

    result = plan(given(outlook=[item], bc_matches={"ann@example.com": matches}))

    assert only(result).reason == f"matches {no(7)}, which is outside your sync filter; not imported"


def test_an_out_of_scope_business_central_contact_is_not_linked_to_an_outlook_item():
    item = outlook("g1", email=email_of(5))

    result = plan(given(in_scope=set(), bc=[bc(5)], outlook=[item], bc_matches={email_of(5): [match(5)]}))

    assert actions(result) == [(K.SKIP, None, "g1")]
    assert "outside your sync filter" in result.actions[0].reason


def test_unlinked_outlook_duplicates_without_a_match_import_the_first_only():
    items = [outlook(gid, email="ann@example.com") for gid in ("g2", "g1")]

    result = plan(given(outlook=items))

    assert actions(result) == [(K.SKIP, None, "g2"), (K.IMPORT_TO_BC, None, "g1")]
    assert result.of(K.SKIP)[0].reason.startswith("has the same email as another Outlook contact")


# --- Rule 6: deleted in Business Central, leaving the scope -----------------------------------------


def test_a_contact_deleted_in_business_central_is_deleted_in_outlook():
    lk = link(101, None, "g1")

    result = plan(given(links=[lk]))

    action = only(result)
    assert (action.kind, action.contact_id, action.graph_id, action.link_id) == (
        K.DELETE_IN_M365,
        None,
        "g1",
        101,
    )
    assert action.reason == "deleted in Business Central"


@pytest.mark.parametrize("how", ["removed", "not seen in a full read"])
def test_a_contact_deleted_on_both_sides_drops_the_link(how):
    lk = link(101, None, "g1")
    gone = given(links=[lk], removed={"g1"}) if how == "removed" else given(links=[lk], whole_folder=True)

    result = plan(gone)

    assert actions(result) == [(K.DROP_LINK, None, "g1")]
    assert result.deletes == 0


def test_a_contact_leaving_the_scope_is_detached_by_default():
    lk, _, _ = synced_pair(1)

    result = plan(given(links=[lk], in_scope=set()))

    action = only(result)
    assert (action.kind, action.contact_id, action.graph_id, action.link_id) == (K.DETACH, 1, "g1", 101)
    assert "no longer in scope" in action.reason


def test_a_contact_leaving_the_scope_is_deleted_under_the_remove_policy():
    lk, _, _ = synced_pair(1)

    result = plan(given(links=[lk], in_scope=set(), remove_out_of_scope=True))

    action = only(result)
    assert (action.kind, action.contact_id, action.graph_id) == (K.DELETE_IN_M365, 1, "g1")
    assert action.reason == "no longer in the sync filter"


@pytest.mark.parametrize("remove_out_of_scope", [False, True])
@pytest.mark.parametrize("detached", [False, True])
def test_a_privacy_blocked_contact_is_always_deleted_in_outlook(remove_out_of_scope, detached):
    lk, _, _ = synced_pair(1)

    result = plan(
        given(
            links=[dataclasses.replace(lk, detached=detached)],
            in_scope=set(),
            privacy_blocked={1},
            remove_out_of_scope=remove_out_of_scope,
        )
    )

    action = only(result)
    assert (action.kind, action.contact_id, action.graph_id) == (K.DELETE_IN_M365, 1, "g1")
    assert "privacy blocked" in action.reason


def test_a_contact_out_of_scope_and_deleted_in_outlook_drops_the_link():
    lk, _, _ = synced_pair(1)

    result = plan(given(links=[lk], in_scope=set(), removed={"g1"}, remove_out_of_scope=True))

    assert actions(result) == [(K.DROP_LINK, 1, "g1")]


def test_a_detached_link_still_out_of_scope_writes_nothing_when_edited_in_outlook_and_says_so():
    lk, _, _ = synced_pair(1)
    edited = outlook("g1", name="Person 1", email=email_of(1), jobTitle="Buyer")

    result = plan(
        given(
            links=[dataclasses.replace(lk, detached=True)],
            in_scope=set(),
            bc=[bc(1, version=2)],
            outlook=[edited],
        )
    )

    assert actions(result) == [(K.SKIP, 1, "g1")]


def test_a_detached_link_back_in_scope_is_updated_in_outlook():
    lk, contact, _ = synced_pair(1)

    result = plan(given(links=[dataclasses.replace(lk, detached=True)], in_scope={1}, bc=[contact]))

    action = only(result)
    assert (action.kind, action.contact_id, action.graph_id, action.link_id) == (K.UPDATE_M365, 1, "g1", 101)


def _apply(state: PlanInput, result: Plan) -> PlanInput:
    """What the engine leaves behind, by hand: the links after the run, and a quiet next read."""
    links = {lk.link_id: lk for lk in state.links}
    removed: set[str] = set()
    for action in result.actions:
        lk = links.get(action.link_id) if action.link_id is not None else None
        if action.kind == K.DETACH:
            links[lk.link_id] = dataclasses.replace(lk, detached=True)
        elif action.kind in (K.DELETE_IN_M365, K.DROP_LINK):
            del links[lk.link_id]
            removed.add(lk.graph_id)  # the next delta reports our own delete
        elif action.kind == K.UPDATE_M365:
            current = state.bc.get(lk.contact_id)
            links[lk.link_id] = dataclasses.replace(
                lk, bc_hash=current.hash if current else lk.bc_hash, detached=False, pending=False
            )
        else:
            raise AssertionError(f"not simulated: {action}")
    return dataclasses.replace(state, links=list(links.values()), bc={}, outlook={}, removed=removed)


@pytest.mark.parametrize("remove_out_of_scope", [False, True])
def test_leaving_the_scope_does_not_flip_on_the_next_runs(remove_out_of_scope):
    pairs = [synced_pair(n) for n in (1, 2, 3, 4)]
    lk_back = dataclasses.replace(pairs[3][0], detached=True)  # contact 4 left earlier and is back
    state = given(
        links=[pairs[0][0], pairs[1][0], pairs[2][0], lk_back],
        in_scope={1, 4},  # 2 left the scope; 3 is privacy blocked (and so out of scope)
        privacy_blocked={3},
        bc=[pairs[3][1]],
        remove_out_of_scope=remove_out_of_scope,
    )

    first = plan(state)
    second = plan(_apply(state, first))
    third = plan(_apply(_apply(state, first), second))

    leave = K.DELETE_IN_M365 if remove_out_of_scope else K.DETACH
    assert actions(first) == [(leave, 2, "g2"), (K.DELETE_IN_M365, 3, "g3"), (K.UPDATE_M365, 4, "g4")]
    assert second.actions == []
    assert third.actions == []


def test_a_detached_link_under_a_full_read_stays_quiet():
    lk, _, item = synced_pair(1)
    state = given(links=[lk], in_scope=set(), outlook=[item], seen={"g1"}, whole_folder=True)

    first = plan(state)
    later = dataclasses.replace(state, links=[dataclasses.replace(lk, detached=True)])

    assert actions(first) == [(K.DETACH, 1, "g1")]
    assert plan(later).actions == []


# --- Rule 7: the mass-delete guard ------------------------------------------------------------------


def _folder(size: int, deleted_in_bc: int, **kwargs) -> PlanInput:
    """`size` linked contacts, the first `deleted_in_bc` of them deleted in Business Central."""
    links: list[LinkState] = [
        link(n, None if n <= deleted_in_bc else n, f"g{n}", synced_item=outlook(f"g{n}", email=email_of(n)))
        for n in range(1, size + 1)
    ]
    return given(links=links, in_scope=set(range(deleted_in_bc + 1, size + 1)), **kwargs)


def test_deleting_more_than_30_percent_of_a_large_folder_is_blocked():
    result = plan(_folder(100, 31))

    assert result.deletes == 31
    assert result.folder_size == 100
    assert "delete 31 of the 100 contacts" in result.blocked
    assert "max(20, 30%)" in result.blocked
    assert len(result.of(K.DELETE_IN_M365)) == 31  # the plan is still shown (preview)


def test_deleting_exactly_30_percent_is_not_blocked():
    result = plan(_folder(100, 30))

    assert result.deletes == 30
    assert result.blocked == ""


@pytest.mark.parametrize(
    "size, deletes, blocked",
    [(20, 20, False), (21, 21, True), (66, 20, False), (70, 21, False), (70, 22, True)],
)
def test_the_guard_allows_at_least_twenty_deletes(size, deletes, blocked):
    result = plan(_folder(size, deletes))

    assert result.deletes == deletes
    assert bool(result.blocked) is blocked


def test_a_small_folder_may_be_emptied():
    result = plan(_folder(10, 10))

    assert result.deletes == 10
    assert result.blocked == ""


def test_allowing_mass_deletion_lifts_the_guard():
    result = plan(_folder(100, 60, allow_mass_delete=True))

    assert result.deletes == 60
    assert result.blocked == ""


def test_the_guard_counts_out_of_scope_removals_and_ignores_dropped_links():
    state = _folder(40, 0, remove_out_of_scope=True)
    state = dataclasses.replace(state, in_scope=frozenset(range(22, 41)), removed=frozenset({"g1"}))

    result = plan(state)

    assert len(result.of(K.DROP_LINK)) == 1
    assert result.deletes == 20
    assert result.blocked == ""
    assert "delete 21 of the 40" in plan(dataclasses.replace(state, removed=frozenset())).blocked


def test_detached_links_are_not_part_of_the_folder_size():
    state = _folder(100, 25)
    links = [dataclasses.replace(lk, detached=lk.link_id > 50) for lk in state.links]

    result = plan(dataclasses.replace(state, links=links))

    assert result.folder_size == 50
    assert result.deletes == 25
    assert "delete 25 of the 50 contacts" in result.blocked


def test_the_hash_of_an_unchanged_item_is_what_the_link_holds():
    """Guard for the builders: the link's m365_hash is the record hash of the synced item."""
    lk, _, item = synced_pair(1)

    assert lk.m365_hash == record_hash(item.record)
