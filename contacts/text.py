"""Text that both databases and Outlook can store.

PostgreSQL's text and jsonb types cannot hold NUL (U+0000): one such character in a value fails the
whole statement. The other C0 control characters (except tab, line feed and carriage return) and
U+FFFE/U+FFFF have no representation in XML 1.0, which Exchange's interfaces speak, and no one types
them. A lone UTF-16 surrogate (half an emoji, cut mid-character) cannot be encoded as UTF-8 at all.
"""

from __future__ import annotations

import re
from typing import Any

CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
UNSTORABLE_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def storable_text(value: str) -> str:
    """`value` with the control characters removed and each lone surrogate replaced by U+FFFD (a
    surrogate pair becomes its character)."""
    if not UNSTORABLE_CHARACTERS.search(value):
        return value
    if _SURROGATES.search(value):
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return CONTROL_CHARACTERS.sub("", value)


def storable_json(value: Any) -> Any:
    """A JSON value with every string in it (keys too) made storable."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_json(key): storable_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(item) for item in value]
    return value


def control_characters(value: Any) -> set[str]:
    """The control characters anywhere in a JSON value (keys too), named as "U+0000"."""
    if isinstance(value, str):
        return {f"U+{ord(c):04X}" for c in CONTROL_CHARACTERS.findall(value)}
    if isinstance(value, dict):
        return set().union(*(control_characters(item) for item in (*value.keys(), *value.values())))
    if isinstance(value, list | tuple):
        return set().union(*(control_characters(item) for item in value))
    return set()
