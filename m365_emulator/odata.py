"""The slice of OData query syntax Graph's contact endpoints accept: $select, $top, $skip, $orderby,
$count, $expand of single-value extended properties, and $filter on strings, on
emailAddresses/any(...) and on singleValueExtendedProperties/any(...)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import DEFAULT_TOP, MAX_TOP
from .contacts import extended_key
from .errors import GraphError, bad_request

KNOWN_OPTIONS = frozenset(
    {"$select", "$top", "$skip", "$filter", "$orderby", "$expand", "$count", "$skiptoken", "$deltatoken"}
)
_TOKEN = re.compile(r"\s*(?:'((?:[^']|'')*)'|([(),])|([^\s'(),]+))")
_EXPAND = re.compile(r"^singleValueExtendedProperties(?:\(\s*\$filter\s*=(.*)\))?$", re.IGNORECASE)


def invalid_filter() -> GraphError:
    return GraphError(
        400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."
    )


@dataclass
class Condition:
    """`path eq 'value'`, or `collection/any(x: x/prop eq 'v' and ...)` when `collection` is set."""

    path: str
    value: str = ""
    collection: str | None = None
    inner: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Query:
    select: list[str] | None = None
    top: int = DEFAULT_TOP
    skip: int = 0
    filter: list[Condition] = field(default_factory=list)
    orderby: list[tuple[str, bool]] = field(default_factory=list)  # (property, descending)
    expand: list[str] | None = None
    count: bool = False


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs: kind is 'str' for a quoted literal (quotes undoubled), else 'sym'/'word'."""
    result: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise invalid_filter()
        if match.group(1) is not None:
            result.append(("str", match.group(1).replace("''", "'")))
        elif match.group(2) is not None:
            result.append(("sym", match.group(2)))
        else:
            result.append(("word", match.group(3)))
        position = match.end()
    return result


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.position = 0

    def take(self, kind: str | None = None, text: str | None = None) -> str:
        if self.position >= len(self.tokens):
            raise invalid_filter()
        token_kind, token_text = self.tokens[self.position]
        if (kind and token_kind != kind) or (text and token_text.lower() != text):
            raise invalid_filter()
        self.position += 1
        return token_text

    def at(self, text: str) -> bool:
        return self.position < len(self.tokens) and self.tokens[self.position][1].lower() == text

    def done(self) -> bool:
        return self.position >= len(self.tokens)

    def equality(self) -> tuple[str, str]:
        path = self.take("word")
        self.take("word", "eq")
        return path, self.take("str")

    def conditions(self) -> list[Condition]:
        result = [self.condition()]
        while self.at("and"):
            self.take()
            result.append(self.condition())
        if not self.done():
            raise invalid_filter()
        return result

    def condition(self) -> Condition:
        word = self.take("word")
        if "/" in word and word.split("/", 1)[1].lower() == "any":
            self.take("sym", "(")
            variable = self.take("word")
            if not variable.endswith(":"):
                variable, _, rest = variable.partition(":")
                self.tokens.insert(self.position, ("word", rest))
            variable = variable.rstrip(":")
            inner = [self._lambda_equality(variable)]
            while self.at("and"):
                self.take()
                inner.append(self._lambda_equality(variable))
            self.take("sym", ")")
            return Condition(path="", collection=word.split("/", 1)[0], inner=inner)
        self.take("word", "eq")
        return Condition(path=word, value=self.take("str"))

    def _lambda_equality(self, variable: str) -> tuple[str, str]:
        path, value = self.equality()
        prefix, _, prop = path.partition("/")
        if prefix != variable or not prop:
            raise invalid_filter()
        return prop, value


def _canonical(name: str, properties: dict[str, str], type_name: str) -> str:
    for candidate in properties:
        if candidate.lower() == name.strip().lower():
            return candidate
    raise bad_request(
        f"Could not find a property named '{name.strip()}' on type 'microsoft.graph.{type_name}'."
    )


def _int_option(query: dict[str, str], name: str, default: int, low: int, high: int, message: str) -> int:
    if name not in query:
        return default
    try:
        value = int(query[name])
    except ValueError:
        raise bad_request(f"Invalid value '{query[name]}' for query option {name}.") from None
    if not low <= value <= high:
        raise GraphError(400, "ErrorInvalidRequest", message)
    return value


def parse_query(raw: dict[str, str], properties: dict[str, str], type_name: str) -> Query:
    options = {name.lower(): value for name, value in raw.items() if name.startswith("$")}
    for name in options:
        if name not in KNOWN_OPTIONS:
            raise bad_request(f"Query option '{name}' is not allowed for this resource.")
    query = Query()
    if "$select" in options:
        query.select = [
            _canonical(name, properties, type_name) for name in options["$select"].split(",") if name
        ]
    query.top = _int_option(
        options, "$top", DEFAULT_TOP, 1, MAX_TOP, f"The maximum allowed page size is {MAX_TOP}."
    )
    query.skip = _int_option(options, "$skip", 0, 0, 2**31, "The value of $skip must not be negative.")
    if options.get("$filter", "").strip():
        query.filter = _Parser(options["$filter"]).conditions()
    for clause in options.get("$orderby", "").split(","):
        if clause.strip():
            name, _, direction = clause.strip().partition(" ")
            if direction.strip().lower() not in ("", "asc", "desc"):
                raise bad_request(f"Invalid $orderby direction '{direction.strip()}'.")
            query.orderby.append(
                (_canonical(name, properties, type_name), direction.strip().lower() == "desc")
            )
    if "$expand" in options:
        query.expand = parse_expand(options["$expand"])
    query.count = options.get("$count", "").lower() == "true"
    return query


def parse_expand(text: str) -> list[str]:
    """Canonical keys of the extended properties asked for; [] means all of them."""
    match = _EXPAND.match(text.strip())
    if match is None:
        raise bad_request(f"Parsing OData Select and Expand failed: could not expand '{text}'.")
    if match.group(1) is None:
        return []
    parser = _Parser(match.group(1))
    keys = []
    while True:
        path, value = parser.equality()
        if path.lower() != "id":
            raise invalid_filter()
        keys.append(extended_key(value))
        if parser.done():
            return keys
        parser.take("word", "or")


def contact_matcher(conditions: list[Condition]) -> Callable[[Any], bool]:
    """Predicate over state.Contact for a parsed $filter (string comparisons are case-insensitive, as in
    Exchange; an extended property's Name part is matched exactly through its canonical key)."""

    def matches(contact: Any) -> bool:
        return all(_contact_condition(contact, condition) for condition in conditions)

    return matches


def _contact_condition(contact: Any, condition: Condition) -> bool:
    if condition.collection is None:
        value = contact.props.get(condition.path)
        if condition.path not in contact.props or (value is not None and not isinstance(value, str)):
            raise invalid_filter()
        return (value or "").lower() == condition.value.lower()
    inner = dict(condition.inner)
    if condition.collection.lower() == "emailaddresses" and set(inner) == {"address"}:
        return inner["address"].lower() in contact.emails()
    if condition.collection.lower() == "singlevalueextendedproperties" and "id" in inner:
        stored = contact.extended.get(extended_key(inner["id"]))
        if stored is None or set(inner) - {"id", "value"}:
            return False
        return "value" not in inner or stored[1].lower() == inner["value"].lower()
    raise invalid_filter()


def email_filter_address(conditions: list[Condition]) -> str | None:
    """The address of an emailAddresses/any(...) condition, so the folder's email index can answer it."""
    for condition in conditions:
        if (condition.collection or "").lower() == "emailaddresses" and dict(condition.inner).keys() == {
            "address"
        }:
            return dict(condition.inner)["address"].lower()
    return None
