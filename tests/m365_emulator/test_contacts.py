"""Contacts: CRUD, server-set properties, PATCH, If-Match, caps, ids, queries, extended properties."""

from __future__ import annotations

import pytest

from m365_emulator.schema import CONTACT_PROPERTIES

from .conftest import ADA, BOB, IMMUTABLE

FAX = "String 0x3A24"
TAG = "String {6f9a1c2e-0000-4000-8000-0000000000e2} Name BizSyncId"


@pytest.fixture
def folder(graph):
    return graph.folder()


def contacts_url(folder_id: str, upn: str = ADA) -> str:
    return f"/users/{upn}/contactFolders/{folder_id}/contacts"


def test_create_returns_full_property_set(graph, folder):
    response = graph.post(
        contacts_url(folder), json={"givenName": "Ada", "surname": "Lovelace"}, headers=IMMUTABLE
    )
    assert response.status_code == 201
    body = response.json()
    assert set(CONTACT_PROPERTIES) <= body.keys()
    assert body["displayName"] == "Ada Lovelace"
    assert body["mobilePhone"] is None
    assert body["homeAddress"] == {}
    assert body["businessPhones"] == [] == body["categories"]
    assert body["parentFolderId"] == folder
    assert body["@odata.etag"] == f'W/"{body["changeKey"]}"'
    assert body["createdDateTime"].endswith("Z")
    assert response.headers["Preference-Applied"] == 'IdType="ImmutableId"'


def test_get_patch_delete_status_codes(graph, folder):
    contact = graph.create(folder, givenName="Ada")
    url = f"{contacts_url(folder)}/{contact['id']}"
    assert graph.get(url, headers=IMMUTABLE).json()["givenName"] == "Ada"
    patched = graph.patch(url, json={"jobTitle": "Countess"}, headers=IMMUTABLE)
    assert patched.status_code == 200
    assert patched.json()["jobTitle"] == "Countess"
    assert patched.json()["changeKey"] != contact["changeKey"]
    deleted = graph.delete(url)
    assert deleted.status_code == 204
    assert deleted.content == b""
    missing = graph.get(url)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "ErrorItemNotFound"
    assert missing.json()["error"]["message"] == "The specified object was not found in the store."


def test_patch_replaces_complex_values_and_collections_whole(graph, folder):
    contact = graph.create(
        folder,
        givenName="Ada",
        businessAddress={"street": "1 Main St", "city": "London", "postalCode": "N1"},
        businessPhones=["+44 1", "+44 2"],
        emailAddresses=[{"address": "a@x.test", "name": "Ada"}, {"address": "b@x.test"}],
    )
    assert contact["businessAddress"]["state"] is None
    assert contact["emailAddresses"][1] == {"address": "b@x.test", "name": "b@x.test"}
    body = graph.patch(
        f"/users/{ADA}/contacts/{contact['id']}",
        headers=IMMUTABLE,
        json={
            "businessAddress": {"city": "Paris"},
            "businessPhones": ["+33 1"],
            "emailAddresses": [{"address": "c@x.test"}],
        },
    ).json()
    assert body["businessAddress"] == {
        "city": "Paris",
        "street": None,
        "postalCode": None,
        "state": None,
        "countryOrRegion": None,
    }
    assert body["businessPhones"] == ["+33 1"]
    assert [e["address"] for e in body["emailAddresses"]] == ["c@x.test"]
    assert body["primaryEmailAddress"]["address"] == "c@x.test"
    assert body["secondaryEmailAddress"] == {}
    assert body["givenName"] == "Ada"  # untouched fields keep their values
    cleared = graph.patch(f"/users/{ADA}/contacts/{contact['id']}", json={"businessAddress": None}).json()
    assert cleared["businessAddress"] == {}


def test_display_name_regenerated_unless_sent(graph, folder):
    contact = graph.create(folder, givenName="Ada", surname="Byron", displayName="Lady Ada")
    assert contact["displayName"] == "Lady Ada"
    url = f"/users/{ADA}/contacts/{contact['id']}"
    assert graph.patch(url, json={"jobTitle": "Analyst"}).json()["displayName"] == "Lady Ada"
    assert graph.patch(url, json={"surname": "Lovelace"}).json()["displayName"] == "Ada Lovelace"
    kept = graph.patch(url, json={"surname": "King", "displayName": "Countess"}).json()
    assert kept["displayName"] == "Countess"


def test_if_match_with_stale_etag_is_412(graph, folder):
    contact = graph.create(folder, givenName="Ada")
    url = f"/users/{ADA}/contacts/{contact['id']}"
    fresh = graph.patch(url, json={"jobTitle": "A"}, headers={"If-Match": contact["@odata.etag"]})
    assert fresh.status_code == 200
    stale = graph.patch(url, json={"jobTitle": "B"}, headers={"If-Match": contact["@odata.etag"]})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert graph.delete(url, headers={"If-Match": contact["@odata.etag"]}).status_code == 412
    assert graph.delete(url, headers={"If-Match": fresh.json()["@odata.etag"]}).status_code == 204


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            {"emailAddresses": [{"address": f"{i}@x.test"} for i in range(4)]},
            "EmailAddresses has 4 entries, that exceeds the max allowed value of 3",
        ),
        ({"businessPhones": ["1", "2", "3"]}, "BusinessPhones has 3 entries"),
        ({"homePhones": ["1", "2", "3"]}, "HomePhones has 3 entries"),
    ],
)
def test_collection_caps(graph, folder, body, fragment):
    response = graph.post(contacts_url(folder), json=body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"favouriteColour": "blue"},
        {"businessPhones": "+44 1"},
        {"givenName": 42},
        {"businessAddress": "London"},
        {"businessAddress": {"town": "London"}},
        {"emailAddresses": [{"address": "a@x.test", "kind": "work"}]},
        {"birthday": "not a date"},
        {"singleValueExtendedProperties": [{"id": "nonsense", "value": "x"}]},
    ],
)
def test_bad_bodies_are_400(graph, folder, body):
    response = graph.post(contacts_url(folder), json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["innerError"]["request-id"] == response.headers["request-id"]


def test_unknown_property_message_matches_graph(graph, folder):
    error = graph.post(contacts_url(folder), json={"nickname2": "x"}).json()["error"]
    assert error["code"] == "RequestBodyRead"
    assert error["message"].startswith(
        "The property 'nickname2' does not exist on type 'microsoft.graph.contact'."
    )


def test_invalid_json_is_400(graph, folder):
    response = graph.post(
        contacts_url(folder), data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


def test_malformed_and_unknown_ids(graph, folder):
    malformed = graph.get(f"/users/{ADA}/contacts/abc")
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "ErrorInvalidIdMalformed"
    contact = graph.create(folder, givenName="Ada")
    graph.delete(f"/users/{ADA}/contacts/{contact['id']}")
    assert graph.get(f"/users/{ADA}/contacts/{contact['id']}").status_code == 404
    other = graph.create(graph.folder(BOB), upn=BOB, givenName="Bob")
    assert graph.get(f"/users/{ADA}/contacts/{other['id']}").status_code == 404


def test_regular_and_immutable_ids(graph, emulator, folder):
    contact = graph.create(folder, givenName="Ada")
    regular = graph.get(f"/users/{ADA}/contacts/{contact['id']}").json()["id"]
    assert regular != contact["id"]
    assert graph.get(f"/users/{ADA}/contacts/{regular}").json()["givenName"] == "Ada"
    emulator.emulator.outlook(ADA).move_contact(contact["id"], "Contacts")
    assert graph.get(f"/users/{ADA}/contacts/{regular}").status_code == 404
    moved = graph.get(f"/users/{ADA}/contacts/{contact['id']}").json()
    assert moved["id"] not in (regular, contact["id"])
    assert (
        graph.get(f"/users/{ADA}/contacts/{contact['id']}", headers=IMMUTABLE).json()["id"] == contact["id"]
    )
    assert graph.get(f"{contacts_url(folder)}/{contact['id']}").status_code == 404


def test_default_folder_routes(graph, folder):
    created = graph.post(f"/users/{ADA}/contacts", json={"givenName": "Root"}, headers=IMMUTABLE).json()
    in_folder = graph.create(folder, givenName="Folder")
    names = [c["givenName"] for c in graph.get(f"/users/{ADA}/contacts").json()["value"]]
    assert names == ["Root"]
    assert graph.get(f"/users/{ADA}/contacts/{in_folder['id']}").json()["givenName"] == "Folder"
    assert graph.patch(f"/users/{ADA}/contacts/{created['id']}", json={"surname": "X"}).status_code == 200
    assert graph.delete(f"/users/{ADA}/contacts/{in_folder['id']}").status_code == 204


def test_paging_with_top_and_next_link(graph, folder):
    for index in range(25):
        graph.create(folder, givenName=f"P{index:02}")
    default = graph.get(contacts_url(folder)).json()
    assert len(default["value"]) == 10
    seen, url = [], f"{contacts_url(folder)}?$top=7&$select=givenName"
    while url:
        page = graph.get(url).json()
        seen += [c["givenName"] for c in page["value"]]
        url = page.get("@odata.nextLink")
        if url:
            assert url.startswith("https://graph.microsoft.com/v1.0/users/")
            assert "$skip=" in url and "$top=7" in url
    assert seen == [f"P{index:02}" for index in range(25)]


def test_top_over_1000_is_400(graph, folder):
    response = graph.get(contacts_url(folder), params={"$top": "1001"})
    assert response.status_code == 400
    assert graph.get(contacts_url(folder), params={"$top": "1000"}).status_code == 200


def test_select_narrows_but_keeps_id_and_etag(graph, folder):
    graph.create(folder, givenName="Ada", surname="Lovelace")
    item = graph.get(contacts_url(folder), params={"$select": "givenName,emailAddresses"}).json()["value"][0]
    assert set(item) == {"@odata.etag", "id", "givenName", "emailAddresses"}
    assert graph.get(contacts_url(folder), params={"$select": "shoeSize"}).status_code == 400


def test_email_filter_is_case_insensitive(graph, folder):
    graph.create(folder, givenName="Ada", emailAddresses=[{"address": "Ada@Example.com"}])
    graph.create(folder, givenName="Bob", emailAddresses=[{"address": "bob@example.com"}])
    found = graph.get(
        contacts_url(folder), params={"$filter": "emailAddresses/any(a:a/address eq 'ada@example.COM')"}
    ).json()["value"]
    assert [c["givenName"] for c in found] == ["Ada"]
    spaced = graph.get(
        contacts_url(folder), params={"$filter": "emailAddresses/any(x: x/address eq 'bob@example.com')"}
    ).json()
    assert [c["givenName"] for c in spaced["value"]] == ["Bob"]
    assert (
        graph.get(contacts_url(folder), params={"$filter": "emailAddresses/any(a:a/name eq 'x')"}).status_code
        == 400
    )


def test_email_index_follows_updates(graph, folder):
    contact = graph.create(folder, givenName="Ada", emailAddresses=[{"address": "old@example.com"}])
    graph.patch(
        f"/users/{ADA}/contacts/{contact['id']}", json={"emailAddresses": [{"address": "new@example.com"}]}
    )
    query = "emailAddresses/any(a:a/address eq '{}')"
    assert (
        graph.get(contacts_url(folder), params={"$filter": query.format("old@example.com")}).json()["value"]
        == []
    )
    assert (
        len(
            graph.get(contacts_url(folder), params={"$filter": query.format("new@example.com")}).json()[
                "value"
            ]
        )
        == 1
    )


def test_orderby(graph, folder):
    for name in ("Charlie", "alice", "Bob"):
        graph.create(folder, givenName=name)
    ascending = graph.get(contacts_url(folder), params={"$orderby": "displayName"}).json()["value"]
    assert [c["displayName"] for c in ascending] == ["alice", "Bob", "Charlie"]
    descending = graph.get(contacts_url(folder), params={"$orderby": "displayName desc"}).json()["value"]
    assert [c["displayName"] for c in descending] == ["Charlie", "Bob", "alice"]
    by_time = graph.get(contacts_url(folder), params={"$orderby": "lastModifiedDateTime desc"})
    assert by_time.status_code == 200


def test_extended_properties_stored_not_echoed_and_expandable(graph, folder):
    created = graph.create(
        folder,
        givenName="Ada",
        singleValueExtendedProperties=[
            {"id": FAX, "value": "+44 20 0000"},
            {"id": TAG, "value": "CUST-0042"},
        ],
    )
    assert "singleValueExtendedProperties" not in created
    url = f"/users/{ADA}/contacts/{created['id']}"
    assert "singleValueExtendedProperties" not in graph.get(url).json()
    expanded = graph.get(
        url, params={"$expand": f"singleValueExtendedProperties($filter=id eq '{FAX}')"}
    ).json()
    assert expanded["singleValueExtendedProperties"] == [{"id": FAX, "value": "+44 20 0000"}]
    other_case = TAG.replace("BizSyncId", "BIZSYNCID")
    listed = graph.get(
        contacts_url(folder),
        params={"$expand": f"singleValueExtendedProperties($filter=id eq '{other_case}')"},
    ).json()
    assert listed["value"][0]["singleValueExtendedProperties"] == []  # the Name part is case-sensitive
    graph.patch(url, json={"singleValueExtendedProperties": [{"id": FAX, "value": "+44 20 1111"}]})
    both = graph.get(
        url, params={"$expand": f"singleValueExtendedProperties($filter=id eq '{FAX}' or id eq '{TAG}')"}
    )
    assert {p["value"] for p in both.json()["singleValueExtendedProperties"]} == {"+44 20 1111", "CUST-0042"}


def test_filter_on_extended_property(graph, folder):
    graph.create(folder, givenName="Ada", singleValueExtendedProperties=[{"id": TAG, "value": "CUST-0042"}])
    graph.create(folder, givenName="Bob", singleValueExtendedProperties=[{"id": TAG, "value": "CUST-0043"}])
    found = graph.get(
        contacts_url(folder),
        params={
            "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{TAG}' and ep/value eq 'cust-0042')"
        },
    )
    assert [c["givenName"] for c in found.json()["value"]] == ["Ada"]


def test_request_ids_and_error_envelope(graph):
    response = graph.get(f"/users/{ADA}/contacts/abc", headers={"client-request-id": "my-id-1"})
    assert response.headers["client-request-id"] == "my-id-1"
    error = response.json()["error"]
    assert error["innerError"]["client-request-id"] == "my-id-1"
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    assert "date" in error["innerError"]
    ok = graph.get(f"/users/{ADA}/contactFolders")
    assert ok.headers["request-id"] and ok.headers["client-request-id"]


def test_unknown_route_and_method(graph):
    assert graph.get(f"/users/{ADA}/calendars").status_code == 400
    assert graph.request("PUT", f"/users/{ADA}/contacts").status_code == 405
