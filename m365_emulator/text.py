r"""Strings the emulator takes in and keeps: valid Unicode only.

JSON can spell a lone UTF-16 surrogate (`"\ud800"`), which no UTF-8 text can hold, so a contact
stored with one could never be sent back. Request.json_body therefore refuses such a body as
unreadable JSON, and a state file saved before that rule is repaired as it loads.
"""

from __future__ import annotations

import json
import re
from typing import Any

# A surrogate can only reach a decoded string through a \uD800-\uDFFF escape (strict UTF-8 decoding
# refuses encoded surrogates), so text without one needs no check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def may_hold_surrogates(json_text: str) -> bool:
    return _SURROGATE_ESCAPE.search(json_text) is not None


def has_lone_surrogate(value: Any) -> bool:
    """Whether any string (or key) in decoded JSON holds a lone surrogate: then it has no UTF-8 form.
    (Encoding is done in C, many times faster than walking the value in Python.)"""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def without_lone_surrogates(value: Any) -> Any:
    """Decoded JSON with each lone surrogate replaced by U+FFFD, as a UTF-8 decoder shows bad bytes."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {without_lone_surrogates(key): without_lone_surrogates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_lone_surrogates(item) for item in value]
    return value
