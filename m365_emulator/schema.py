"""Contact and contactFolder shapes of Microsoft Graph v1.0.

Derived once from the CSDL slice (microsoftgraph/msgraph-metadata schemas/v1.0-Prod.csdl, commit f54f11b;
entity types contact, contactFolder, outlookItem, entity and the complex types they use). Inherited
properties are flattened in. The emulator must not read the CSDL at runtime, so the result lives here;
tests/m365_emulator/test_schema.py re-derives it from the CSDL when that file is present.
"""

from __future__ import annotations

import re
from typing import Any

STRING = "Edm.String"
DATETIME = "Edm.DateTimeOffset"

CONTACT_PROPERTIES: dict[str, str] = {
    "id": STRING,
    "categories": "Collection(Edm.String)",
    "changeKey": STRING,
    "createdDateTime": DATETIME,
    "lastModifiedDateTime": DATETIME,
    "assistantName": STRING,
    "birthday": DATETIME,
    "businessAddress": "physicalAddress",
    "businessHomePage": STRING,
    "businessPhones": "Collection(Edm.String)",
    "children": "Collection(Edm.String)",
    "companyName": STRING,
    "department": STRING,
    "displayName": STRING,
    "emailAddresses": "Collection(emailAddress)",
    "fileAs": STRING,
    "generation": STRING,
    "givenName": STRING,
    "homeAddress": "physicalAddress",
    "homePhones": "Collection(Edm.String)",
    "imAddresses": "Collection(Edm.String)",
    "initials": STRING,
    "jobTitle": STRING,
    "manager": STRING,
    "middleName": STRING,
    "mobilePhone": STRING,
    "nickName": STRING,
    "officeLocation": STRING,
    "otherAddress": "physicalAddress",
    "parentFolderId": STRING,
    "personalNotes": STRING,
    "primaryEmailAddress": "emailAddress",
    "profession": STRING,
    "secondaryEmailAddress": "emailAddress",
    "spouseName": STRING,
    "surname": STRING,
    "tertiaryEmailAddress": "emailAddress",
    "title": STRING,
    "yomiCompanyName": STRING,
    "yomiGivenName": STRING,
    "yomiSurname": STRING,
}

CONTACT_NAVIGATION: dict[str, str] = {
    "extensions": "Collection(extension)",
    "multiValueExtendedProperties": "Collection(multiValueLegacyExtendedProperty)",
    "photo": "profilePhoto",
    "singleValueExtendedProperties": "Collection(singleValueLegacyExtendedProperty)",
}

FOLDER_PROPERTIES: dict[str, str] = {
    "id": STRING,
    "displayName": STRING,
    "parentFolderId": STRING,
}

FOLDER_NAVIGATION: dict[str, str] = {
    "childFolders": "Collection(contactFolder)",
    "contacts": "Collection(contact)",
    "multiValueExtendedProperties": "Collection(multiValueLegacyExtendedProperty)",
    "singleValueExtendedProperties": "Collection(singleValueLegacyExtendedProperty)",
}

COMPLEX_TYPES: dict[str, dict[str, str]] = {
    "emailAddress": {"address": STRING, "name": STRING},
    "physicalAddress": {
        "city": STRING,
        "countryOrRegion": STRING,
        "postalCode": STRING,
        "state": STRING,
        "street": STRING,
    },
    "singleValueLegacyExtendedProperty": {"id": STRING, "value": STRING},
}

# Server-managed contact properties: clients read them, the emulator sets them.
READ_ONLY_CONTACT_PROPERTIES = frozenset(
    {"id", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId"}
)

_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_COLLECTION = re.compile(r"^Collection\((.+)\)$")


def type_error(value: Any, edm_type: str, path: str) -> list[str]:
    """Violations of `value` against an Edm/complex type name; null is allowed except for collections."""
    collection = _COLLECTION.match(edm_type)
    if collection:
        if not isinstance(value, list):
            return [f"{path}: expected a JSON array for {edm_type}, got {type(value).__name__}"]
        problems: list[str] = []
        for index, item in enumerate(value):
            problems += type_error(item, collection.group(1), f"{path}[{index}]")
        return problems
    if value is None:
        return []
    if edm_type == STRING:
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {type(value).__name__}"]
    if edm_type == DATETIME:
        if isinstance(value, str) and _DATETIME.match(value):
            return []
        return [f"{path}: expected an ISO 8601 date-time string, got {value!r}"]
    if edm_type in COMPLEX_TYPES:
        if not isinstance(value, dict):
            return [f"{path}: expected a JSON object for {edm_type}, got {type(value).__name__}"]
        return _object_errors(value, COMPLEX_TYPES[edm_type], {}, path)
    # Navigation targets the slice does not describe (extension, profilePhoto, ...): only the JSON kind.
    return [] if isinstance(value, dict) else [f"{path}: expected a JSON object for {edm_type}"]


def _object_errors(
    obj: dict[str, Any], properties: dict[str, str], navigation: dict[str, str], path: str
) -> list[str]:
    problems: list[str] = []
    for name, value in obj.items():
        if name.startswith("@") or "@odata." in name:
            continue  # instance annotations: @odata.etag, @odata.type, @removed, prop@odata.type ...
        edm_type = properties.get(name) or navigation.get(name)
        if edm_type is None:
            problems.append(f"{path}.{name}: not a property of this type")
            continue
        problems += type_error(value, edm_type, f"{path}.{name}")
    return problems


def validate_contact_shape(obj: Any) -> list[str]:
    """Property names outside microsoft.graph.contact and values of the wrong JSON type."""
    if not isinstance(obj, dict):
        return [f"contact: expected a JSON object, got {type(obj).__name__}"]
    return _object_errors(obj, CONTACT_PROPERTIES, CONTACT_NAVIGATION, "contact")


def validate_folder_shape(obj: Any) -> list[str]:
    """Property names outside microsoft.graph.contactFolder and values of the wrong JSON type."""
    if not isinstance(obj, dict):
        return [f"contactFolder: expected a JSON object, got {type(obj).__name__}"]
    return _object_errors(obj, FOLDER_PROPERTIES, FOLDER_NAVIGATION, "contactFolder")
