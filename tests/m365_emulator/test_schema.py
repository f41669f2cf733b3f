"""schema.py matches the CSDL slice, and its validators catch what they should."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from m365_emulator import schema

# shared/ stands beside the checkout (here and in CI); a bare clone elsewhere has no CSDL to re-derive.
CSDL = Path(__file__).resolve().parents[3] / "shared" / "reference" / "graph-contacts.csdl.xml"
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


def flattened(types: dict[str, ET.Element], name: str, tag: str) -> dict[str, str]:
    element = types[name]
    base = element.get("BaseType", "").replace("graph.", "")
    result = flattened(types, base, tag) if base else {}
    for prop in element.findall(f"{EDM}{tag}"):
        result[prop.get("Name")] = prop.get("Type").replace("graph.", "")
    return result


@pytest.mark.skipif(not CSDL.exists(), reason="the CSDL slice is not on this machine")
def test_schema_module_matches_the_csdl():
    root = ET.parse(CSDL).getroot()  # noqa: S314 - a trusted file from the repo's references
    types = {
        element.get("Name"): element
        for element in root.iter()
        if element.get("Name") and element.tag in (f"{EDM}EntityType", f"{EDM}ComplexType")
    }
    assert flattened(types, "contact", "Property") == schema.CONTACT_PROPERTIES
    assert flattened(types, "contact", "NavigationProperty") == schema.CONTACT_NAVIGATION
    assert flattened(types, "contactFolder", "Property") == schema.FOLDER_PROPERTIES
    assert flattened(types, "contactFolder", "NavigationProperty") == schema.FOLDER_NAVIGATION
    for name in ("emailAddress", "physicalAddress"):
        assert flattened(types, name, "Property") == schema.COMPLEX_TYPES[name]


def test_validators_flag_unknown_names_and_wrong_types():
    good = {
        "@odata.etag": 'W/"x"',
        "id": "a",
        "businessPhones": ["1"],
        "birthday": "2000-01-01T00:00:00Z",
        "businessAddress": {"city": "x"},
        "emailAddresses": [{"address": "a@b", "name": None}],
        "singleValueExtendedProperties": [{"id": "String 0x3A24", "value": "v"}],
        "@removed": {},
    }
    assert schema.validate_contact_shape(good) == []
    assert len(schema.validate_contact_shape({"shoeSize": 42})) == 1
    assert len(schema.validate_contact_shape({"businessPhones": "1"})) == 1
    assert len(schema.validate_contact_shape({"businessAddress": {"town": "x"}})) == 1
    assert len(schema.validate_contact_shape({"birthday": "yesterday"})) == 1
    assert len(schema.validate_contact_shape({"givenName": 3})) == 1
    assert schema.validate_folder_shape({"id": "a", "displayName": "x", "parentFolderId": None}) == []
    assert len(schema.validate_folder_shape({"id": "a", "childFolderCount": 1})) == 1
