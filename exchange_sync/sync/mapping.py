"""Business Central Contact <-> Graph contact, field for field as Business Central's Exchange sync maps them.

Both directions meet in one shape, a *record*: the synced fields in Business Central's terms. A
record's hash tells whether that side changed since the last sync (the link keeps both hashes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from contacts.models import Contact, normalize_email, person_name
from contacts.text import control_characters, storable_text

FAX_PROPERTY_ID = "String 0x3A24"  # MAPI PidTagBusinessFaxNumber, which Graph has no property for

# Record field -> Business Central length. The order is the order of Business Central's transfer.
FIELD_LENGTHS: dict[str, int] = {
    "company_name": 100,
    "first_name": 30,
    "middle_name": 30,
    "surname": 30,
    "initials": 30,
    "name": 100,
    "email": 80,
    "email_2": 80,
    "home_page": 255,
    "phone_no": 30,
    "mobile_phone_no": 30,
    "fax_no": 30,
    "address": 100,
    "address_2": 50,
    "city": 30,
    "post_code": 20,
    "county": 30,
    "country_region": 10,
    "job_title": 30,
}

Record = dict[str, str]

# The Graph properties a record is read from.
MAPPED_PROPERTIES = (
    "displayName",
    "givenName",
    "middleName",
    "surname",
    "initials",
    "jobTitle",
    "companyName",
    "emailAddresses",
    "businessPhones",
    "mobilePhone",
    "businessHomePage",
    "businessAddress",
    "singleValueExtendedProperties",
)


def is_valid_email(value: str) -> bool:
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


def caption(key: str) -> str:
    """A record field's name as Business Central shows it: the Contact field's caption ("Job Title")."""
    return str(Contact._meta.get_field(key).verbose_name)


def record_hash(record: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def bc_record(contact: Contact) -> Record:
    """What Business Central sends to Outlook for this contact."""
    return {
        "company_name": contact.company_name,
        "first_name": contact.first_name,
        "middle_name": contact.middle_name,
        "surname": contact.surname,
        "initials": contact.initials,
        "name": contact.name,
        "email": contact.email.strip(),
        "email_2": contact.email_2.strip(),
        "home_page": contact.home_page,
        "phone_no": contact.phone_no,
        "mobile_phone_no": contact.mobile_phone_no,
        "fax_no": contact.fax_no,
        "address": contact.address,
        "address_2": contact.address_2,
        "city": contact.city,
        "post_code": contact.post_code,
        "county": contact.county,
        "country_region": contact.country_region_id or "",
        "job_title": contact.job_title,
    }


def graph_body(record: Mapping[str, str]) -> dict[str, Any]:
    """The Graph contact body for a record (create, or a PATCH that replaces every mapped field)."""

    def text(key: str) -> str | None:
        return record.get(key) or None

    emails = [
        {"address": record[key], "name": record["name"] or record[key]}
        for key in ("email", "email_2")
        if record.get(key)
    ]
    street = "\r\n".join(line for line in (record["address"], record["address_2"]) if line)
    return {
        "displayName": record["name"],
        "givenName": text("first_name"),
        "middleName": text("middle_name"),
        "surname": text("surname"),
        "initials": text("initials"),
        "jobTitle": text("job_title"),
        "companyName": text("company_name"),
        "emailAddresses": emails,
        "businessPhones": [record["phone_no"]] if record["phone_no"] else [],
        "mobilePhone": text("mobile_phone_no"),
        "businessHomePage": text("home_page"),
        "businessAddress": {
            "street": street or None,
            "city": text("city"),
            "state": text("county"),
            "postalCode": text("post_code"),
            "countryOrRegion": text("country_region"),
        },
        "singleValueExtendedProperties": [{"id": FAX_PROPERTY_ID, "value": record["fax_no"]}],
    }


@dataclass(frozen=True)
class Countries:
    """Country/Region lookups: Outlook's free text is a code, or failing that a name."""

    codes: frozenset[str]
    code_by_name: Mapping[str, str]

    def resolve(self, value: str) -> str | None:
        value = value.strip()
        if not value:
            return ""
        if len(value) <= 10 and value.upper() in self.codes:
            return value.upper()
        return self.code_by_name.get(value.casefold())


@dataclass
class OutlookContact:
    """A Graph contact read back into Business Central's terms."""

    graph_id: str
    change_key: str
    record: Record
    problems: list[str] = field(default_factory=list)
    originals: dict[str, str] = field(default_factory=dict)  # values cut to fit, in full

    @property
    def email(self) -> str:
        return normalize_email(self.record["email"])

    @property
    def has_valid_email(self) -> bool:
        return is_valid_email(self.email)

    @property
    def label(self) -> str:
        return self.record["name"] or self.record["email"] or "(no name)"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    return storable_text(value).strip()


def outlook_contact(item: Mapping[str, Any], countries: Countries) -> OutlookContact:
    """Map a Graph contact to a record. Values longer than Business Central's fields are cut to fit
    and kept whole in `originals`; characters no database can store are removed; what cannot be
    mapped is named in `problems`."""
    emails = [_text(e.get("address")) for e in item.get("emailAddresses") or [] if isinstance(e, Mapping)]
    emails = [e for e in emails if e]
    phones = [_text(p) for p in item.get("businessPhones") or [] if _text(p)]
    address = item.get("businessAddress") if isinstance(item.get("businessAddress"), Mapping) else {}
    street = _text(address.get("street")).replace("\r\n", "\n")
    line_1, _, line_2 = street.partition("\n")
    given, middle, surname = (
        _text(item.get("givenName")),
        _text(item.get("middleName")),
        _text(item.get("surname")),
    )
    raw: Record = {
        "company_name": _text(item.get("companyName")),
        "first_name": given,
        "middle_name": middle,
        "surname": surname,
        "initials": _text(item.get("initials")),
        "name": _text(item.get("displayName")) or person_name(given, middle, surname),
        "email": emails[0] if emails else "",
        "email_2": emails[1] if len(emails) > 1 else "",
        "home_page": _text(item.get("businessHomePage")),
        "phone_no": phones[0] if phones else "",
        "mobile_phone_no": _text(item.get("mobilePhone")),
        "address": line_1.strip(),
        "address_2": line_2.replace("\n", " ").strip(),
        "city": _text(address.get("city")),
        "post_code": _text(address.get("postalCode")),
        "county": _text(address.get("state")),
        "country_region": "",
        "job_title": _text(item.get("jobTitle")),
    }
    fax = _fax(item)
    if fax is not None:
        raw["fax_no"] = fax
    problems: list[str] = []
    removed = {name: control_characters(item.get(name)) for name in MAPPED_PROPERTIES}
    if any(removed.values()):
        problems.append(
            f"Characters no database can store ({', '.join(sorted(set().union(*removed.values())))}) "
            f"were left out of Outlook's {', '.join(name for name, found in removed.items() if found)}."
        )
    country = _text(address.get("countryOrRegion"))
    code = countries.resolve(country)
    if code is None:
        problems.append(
            f"Country/Region '{country}' is neither a code nor a name in Business Central; left blank."
        )
    else:
        raw["country_region"] = code
    if len(emails) > 2:
        problems.append(
            f"Only two email addresses are synced: the third, '{emails[2]}', is recorded here and not "
            "kept in Outlook when Business Central's values are sent."
        )
    originals: dict[str, str] = {}
    for key, value in raw.items():
        limit = FIELD_LENGTHS[key]
        if len(value) > limit:
            originals[key] = value
            raw[key] = value[:limit].rstrip()
    if originals:
        problems.append(
            "Cut to fit Business Central: "
            + ", ".join(f"{caption(k)} ({len(v)} characters)" for k, v in originals.items())
        )
    return OutlookContact(
        graph_id=item["id"],
        change_key=_text(item.get("changeKey")),
        record=raw,
        problems=problems,
        originals=originals,
    )


def _fax(item: Mapping[str, Any]) -> str | None:
    """The business fax, when Graph returned the extended property (only under a filtered $expand)."""
    properties = item.get("singleValueExtendedProperties")
    if not isinstance(properties, list):
        return None
    for prop in properties:
        if isinstance(prop, Mapping) and str(prop.get("id", "")).lower() == FAX_PROPERTY_ID.lower():
            return _text(prop.get("value"))
    return ""


def changed_fields(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """The fields of `old` that `new` would overwrite, with their old values."""
    return {key: value for key, value in old.items() if key in new and new[key] != value}
