"""Contact bodies: validation of what clients send, defaults, and the JSON Graph returns."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from .errors import GraphError, body_read_error
from .schema import COMPLEX_TYPES, CONTACT_PROPERTIES, DATETIME, READ_ONLY_CONTACT_PROPERTIES, STRING

# Outlook keeps three email slots and two business/home phone slots.
COLLECTION_CAPS = {"emailAddresses": 3, "businessPhones": 2, "homePhones": 2}
EMAIL_SLOTS = ("primaryEmailAddress", "secondaryEmailAddress", "tertiaryEmailAddress")
NAME_PARTS = ("givenName", "middleName", "surname", "generation")
SETTABLE = tuple(
    name
    for name in CONTACT_PROPERTIES
    if name not in READ_ONLY_CONTACT_PROPERTIES and name not in EMAIL_SLOTS
)
EXTENDED = "singleValueExtendedProperties"

_EXT_TAG = re.compile(r"^(\w+)\s+0x([0-9A-Fa-f]{1,8})$")
_EXT_NAMED = re.compile(
    r"^(\w+)\s+\{([0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12})\}\s+((?i:Name|Id))\s+(.+)$"
)


def empty_value(edm_type: str) -> Any:
    if edm_type.startswith("Collection("):
        return []
    if edm_type in COMPLEX_TYPES:
        return {}
    return None


def blank_props() -> dict[str, Any]:
    return {name: empty_value(CONTACT_PROPERTIES[name]) for name in SETTABLE}


def extended_key(prop_id: str) -> str:
    """Canonical key of an extended property id: type and GUID case-insensitive, the Name case-sensitive."""
    text = prop_id.strip()
    tag = _EXT_TAG.match(text)
    if tag:
        return f"{tag.group(1).lower()} 0x{int(tag.group(2), 16):04x}"
    named = _EXT_NAMED.match(text)
    if named:
        kind = named.group(3).lower()
        name = named.group(4) if kind == "name" else f"0x{int(named.group(4), 16):04x}"
        return f"{named.group(1).lower()} {{{named.group(2).lower()}}} {kind} {name}"
    raise GraphError(400, "ErrorInvalidProperty", f"The extended property id '{prop_id}' is not valid.")


def _normalize_datetime(name: str, value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise body_read_error(
            f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'."
        ) from None
    if parsed.tzinfo is None or not re.search(r"(Z|[+-]\d{2}:\d{2})$", value):
        raise body_read_error(
            f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'."
        )
    return iso(parsed)


def _normalize(name: str, value: Any, edm_type: str) -> Any:
    """Validated, canonical form of one property value; RequestBodyRead for a wrong JSON type."""
    if edm_type.startswith("Collection("):
        if not isinstance(value, list):
            raise body_read_error(
                f"An unexpected '{_node(value)}' node was found when reading property '{name}'. "
                f"A 'StartArray' node was expected for type '{edm_type}'."
            )
        item_type = edm_type[len("Collection(") : -1]
        return [_normalize(name, item, item_type) for item in value]
    if value is None:
        return empty_value(edm_type)
    if edm_type == STRING:
        if not isinstance(value, str):
            raise body_read_error(f"Cannot convert the literal '{value}' to the expected type 'Edm.String'.")
        return value
    if edm_type == DATETIME:
        if not isinstance(value, str):
            raise body_read_error(
                f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'."
            )
        return _normalize_datetime(name, value)
    fields = COMPLEX_TYPES[edm_type]
    if not isinstance(value, dict):
        raise body_read_error(
            f"An unexpected '{_node(value)}' node was found when reading property '{name}'. "
            f"A 'StartObject' node was expected for type 'microsoft.graph.{edm_type}'."
        )
    for key in value:
        if key not in fields and not key.startswith("@odata."):
            raise body_read_error(
                f"The property '{key}' does not exist on type 'microsoft.graph.{edm_type}'."
            )
    result = {key: _normalize(f"{name}.{key}", value.get(key), STRING) for key in fields}
    if not any(result.values()):
        return {}
    if edm_type == "emailAddress" and not result["name"]:
        result["name"] = result["address"]  # Outlook fills the display name of an address with the address
    return result


def _node(value: Any) -> str:
    if isinstance(value, list):
        return "StartArray"
    if isinstance(value, dict):
        return "StartObject"
    return "PrimitiveValue"


def parse_contact_body(body: Any) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """Validate a POST/PATCH body. Returns (property changes, extended properties by canonical key)."""
    if not isinstance(body, dict):
        raise body_read_error("The request body must be a JSON object of type 'microsoft.graph.contact'.")
    changes: dict[str, Any] = {}
    extended: dict[str, tuple[str, str]] = {}
    for name, value in body.items():
        if name.startswith("@odata.") or "@odata." in name:
            continue  # annotations such as @odata.type or @odata.etag are accepted and ignored
        if name == EXTENDED:
            extended.update(_parse_extended(value))
            continue
        if name in ("multiValueExtendedProperties", "extensions", "photo"):
            raise GraphError(400, "ErrorInvalidRequest", f"The emulator does not support writing '{name}'.")
        edm_type = CONTACT_PROPERTIES.get(name)
        if edm_type is None:
            raise body_read_error(
                f"The property '{name}' does not exist on type 'microsoft.graph.contact'. Make sure to only "
                "use property names that are defined by the type or mark the type as open type."
            )
        if name in READ_ONLY_CONTACT_PROPERTIES:
            continue  # server-managed: Graph ignores them in a body
        changes[name] = _normalize(name, value, edm_type)
    for name, cap in COLLECTION_CAPS.items():
        if name in changes and len(changes[name]) > cap:
            outlook_name = name[0].upper() + name[1:]
            raise GraphError(
                400,
                "ErrorInvalidRequest",
                f"The multi value property {outlook_name} has {len(changes[name])} entries, "
                f"that exceeds the max allowed value of {cap}.",
            )
    return changes, extended


def _parse_extended(value: Any) -> dict[str, tuple[str, str]]:
    if not isinstance(value, list):
        raise body_read_error(f"A 'StartArray' node was expected for '{EXTENDED}'.")
    result: dict[str, tuple[str, str]] = {}
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise body_read_error("Each singleValueLegacyExtendedProperty needs a string 'id'.")
        unknown = set(item) - {"id", "value"} - {key for key in item if key.startswith("@odata.")}
        if unknown:
            raise body_read_error(
                f"The property '{sorted(unknown)[0]}' does not exist on type "
                "'microsoft.graph.singleValueLegacyExtendedProperty'."
            )
        if not isinstance(item.get("value"), str):
            raise body_read_error("The 'value' of a singleValueLegacyExtendedProperty must be a string.")
        result[extended_key(item["id"])] = (item["id"], item["value"])
    return result


def apply_changes(props: dict[str, Any], changes: dict[str, Any], regenerate_display_name: bool) -> None:
    """Write validated changes into stored props; complex values and collections are replaced whole."""
    slots = list(props["emailAddresses"]) + [{}] * (len(EMAIL_SLOTS) - len(props["emailAddresses"]))
    for name, value in changes.items():
        if name in EMAIL_SLOTS:
            continue
        props[name] = value
    if "emailAddresses" in changes:
        slots = list(changes["emailAddresses"]) + [{}] * (len(EMAIL_SLOTS) - len(changes["emailAddresses"]))
    for index, slot in enumerate(EMAIL_SLOTS):
        if slot in changes:
            slots[index] = changes[slot]
    props["emailAddresses"] = [address for address in slots if address]
    if regenerate_display_name and "displayName" not in changes:
        props["displayName"] = generated_display_name(props)


def generated_display_name(props: dict[str, Any]) -> str | None:
    """Outlook's default full name: the name parts in order, else the company, else the first address."""
    name = " ".join(part for part in (props.get(key) for key in NAME_PARTS) if part)
    if name:
        return name
    if props.get("companyName"):
        return props["companyName"]
    emails = props.get("emailAddresses") or []
    return emails[0].get("address") if emails else None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return iso(datetime.now(UTC))
