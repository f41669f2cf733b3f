"""Business Central filter expressions on contacts, compiled to a Django `Q` (never to SQL text).

A Contact Sync Setup stores its filter as `{field key: expression}`, e.g.
`{"territory_code": "EU|NA", "city": "@lon*"}`: the Set Sync Filter dialog of Business Central, on
the fields that dialog offers (Territory Code, Company No., Salesperson Code, City, County, Post Code,
Country/Region Code) plus Name and Type.

Syntax of one expression, as in Business Central:

    a|b        either                     a&b       both (binds tighter than |)
    x..y       from x to y (inclusive)    x.. ..y   open ranges
    <>x        not x                      <x <=x >x >=x =x
    Lon* *on?  wildcards: * any run of characters, ? exactly one
    @lon*      ignore case                ''        blank; <>'' not blank
    'a|b'      a quoted literal ('' inside is an apostrophe; * and ? are literal there)
    (a|b)&<>c  parentheses group

Business Central compares case-sensitively unless "@" is given, and compares codes as strings.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from django.db.models import Q

from contacts.text import UNSTORABLE_CHARACTERS, storable_text

# Business Central's filter text is limited, and a limit keeps the parser, the generated SQL and
# the regular expressions small whatever is pasted into the dialog.
MAX_EXPRESSION_LENGTH = 250
MAX_ALTERNATIVES = 100


@dataclass(frozen=True)
class FilterField:
    """A field the filter may name: its key in the stored dict, its Business Central caption and
    the ORM path it compares."""

    key: str
    caption: str
    path: str
    # The relation whose absence Business Central shows as a blank value (no Company No.).
    null_path: str | None = None
    # For option fields: accepted value (lower case) -> stored value.
    choices: Mapping[str, str] | None = None


FILTER_FIELDS: dict[str, FilterField] = {
    field.key: field
    for field in (
        FilterField("territory_code", "Territory Code", "territory_code"),
        FilterField("company_no", "Company No.", "company__no", null_path="company"),
        FilterField("salesperson_code", "Salesperson Code", "salesperson_code"),
        FilterField("city", "City", "city"),
        FilterField("county", "County", "county"),
        FilterField("post_code", "Post Code", "post_code"),
        FilterField(
            "country_region_code", "Country/Region Code", "country_region__code", null_path="country_region"
        ),
        FilterField("name", "Name", "name"),
        FilterField("type", "Type", "type", choices={"person": "person", "company": "company"}),
    )
}


class FilterError(ValueError):
    """A filter that cannot be used; `position` is the 0-based index of the bad part, if any."""

    def __init__(
        self,
        reason: str,
        *,
        field: str,
        caption: str = "",
        expression: str = "",
        position: int | None = None,
    ) -> None:
        self.reason = reason
        self.field = field
        self.caption = caption
        self.expression = expression
        self.position = position
        shown = expression if len(expression) <= MAX_EXPRESSION_LENGTH else f"{expression[:40]}…"
        message = f'{caption}: "{shown}" — {reason}' if caption else reason
        if position is not None:
            message += f" at position {position}"
        super().__init__(message)


def compile_filter(*, filters: dict[str, str]) -> Q:
    """The contacts `filters` selects: the AND of every field's expression."""
    query = Q()
    for key, expression in validate_filter(filters=filters).items():
        query &= _compile_expression(FILTER_FIELDS[key], expression)
    return query


# Fields Outlook has no counterpart for: a contact imported from Outlook gets them only from the
# filter, and only a change in Business Central can set them to a value the filter refuses.
BUSINESS_CENTRAL_ONLY_FIELDS = ("territory_code", "salesperson_code")


def pinned_values(*, filters: dict[str, str]) -> dict[str, str]:
    """The values `filters` pins exactly on the fields only Business Central has, for a contact
    imported from Outlook to take: `JR` pins Salesperson Code JR; `EU|NA`, `J*`, `@jr`, `<>X` and
    `''` pin nothing."""
    pinned: dict[str, str] = {}
    for key, expression in validate_filter(filters=filters).items():
        if key not in BUSINESS_CENTRAL_ONLY_FIELDS:
            continue
        node = _Parser(FILTER_FIELDS[key], expression).parse()
        if (
            isinstance(node, _Condition)
            and node.operator == "="
            and node.value.text
            and not node.value.is_pattern
            and not node.value.ignore_case
        ):
            pinned[key] = node.value.text
    return pinned


def imported_kept_filter(*, filters: dict[str, str]) -> Q:
    """Which contacts imported from the user's folder stay synced though `filters` does not select
    them: all, except those whose Territory Code or Salesperson Code, where the filter names it, was
    set to a value the filter refuses (the user moved the contact out deliberately)."""
    query = Q()
    for key, expression in validate_filter(filters=filters).items():
        if key in BUSINESS_CENTRAL_ONLY_FIELDS:
            query &= Q(**{FILTER_FIELDS[key].path: ""}) | _compile_expression(FILTER_FIELDS[key], expression)
    return query


def validate_filter(*, filters: dict[str, str]) -> dict[str, str]:
    """`filters` with surrounding whitespace trimmed and empty expressions dropped; raises
    FilterError for the first field that is unknown or malformed."""
    if not isinstance(filters, dict):
        raise FilterError(
            f"A filter is a mapping of field to expression, not {type(filters).__name__}", field=""
        )
    cleaned: dict[str, str] = {}
    for key, expression in filters.items():
        field = FILTER_FIELDS.get(key)
        if field is None:
            captions = ", ".join(f.caption for f in FILTER_FIELDS.values())
            raise FilterError(
                f'Unknown filter field "{storable_text(str(key))}"; filterable fields: {captions}',
                field=storable_text(str(key)),
                expression=storable_text(str(expression)),
            )
        if not isinstance(expression, str):
            raise FilterError(
                f"the filter must be text, not {type(expression).__name__}",
                field=key,
                caption=field.caption,
                expression=str(expression),
            )
        expression = expression.strip()
        unstorable = UNSTORABLE_CHARACTERS.search(expression)
        if unstorable:
            # Refused, not stripped: the user should see the filter that will be applied. The
            # message quotes the expression without the character, which no database can store.
            raise FilterError(
                f"contains the character U+{ord(unstorable.group()):04X}, which cannot be stored",
                field=key,
                caption=field.caption,
                expression=storable_text(expression),
                position=unstorable.start(),
            )
        if expression:
            _compile_expression(field, expression)
            cleaned[key] = expression
    return cleaned


def describe_filter(*, filters: Mapping[str, object]) -> str:
    """The filter as a line of text, e.g. `Territory Code: EU|NA; City: @lon*`. Tolerates stored
    data it would not accept, so a list of setups never fails to display."""
    parts = [
        f"{FILTER_FIELDS[key].caption if key in FILTER_FIELDS else key}: {str(expression).strip()}"
        for key, expression in filters.items()
        if str(expression).strip()
    ]
    return "; ".join(parts) or "All contacts"


# Parsing: a tokenizer, then a recursive descent parser into a small tree, then the tree to Q.
# Structure is checked before meaning, so "a..b..c" reports the second "..", not the values.

_OPERATORS = ("<>", "<=", ">=", "..", "<", ">", "=", "|", "&", "(", ")", "@")
# An unquoted value runs up to one of these (or ".."); "@" and "'" only count at a value's start,
# so O'Brien and a@b need no quotes.
_VALUE_STOPS = frozenset("|&()<>=")


@dataclass(frozen=True)
class _Token:
    kind: str  # one of _OPERATORS, or "value"
    position: int
    text: str = ""
    quoted: bool = False


@dataclass(frozen=True)
class _Value:
    text: str
    position: int
    quoted: bool
    at_position: int | None  # where "@" (ignore case) was given

    @property
    def ignore_case(self) -> bool:
        return self.at_position is not None

    @property
    def is_pattern(self) -> bool:
        return not self.quoted and ("*" in self.text or "?" in self.text)


@dataclass(frozen=True)
class _Condition:
    operator: str  # "=", "<>", "<", "<=", ">", ">="
    value: _Value


@dataclass(frozen=True)
class _AnyOf:
    parts: list[_Node]


@dataclass(frozen=True)
class _AllOf:
    parts: list[_Node]


_Node = _Condition | _AnyOf | _AllOf

_RANGE_LOOKUPS = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
_COMPARE: dict[str, Callable[[str, str], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class _Parser:
    def __init__(self, field: FilterField, expression: str) -> None:
        self.field = field
        self.expression = expression
        self.tokens: list[_Token] = []
        self.index = 0

    def fail(self, reason: str, position: int | None) -> FilterError:
        return FilterError(
            reason,
            field=self.field.key,
            caption=self.field.caption,
            expression=self.expression,
            position=position,
        )

    def parse(self) -> _Node:
        if len(self.expression) > MAX_EXPRESSION_LENGTH:
            raise self.fail(
                f"the filter is {len(self.expression)} characters long; at most {MAX_EXPRESSION_LENGTH} "
                "are allowed",
                MAX_EXPRESSION_LENGTH,
            )
        self.tokens = self.tokenize()
        bars = [token for token in self.tokens if token.kind == "|"]
        if len(bars) >= MAX_ALTERNATIVES:
            raise self.fail(
                f'too many alternatives; at most {MAX_ALTERNATIVES} values may be joined with "|"',
                bars[MAX_ALTERNATIVES - 1].position,
            )
        tree = self.any_of()
        if self.peek() is not None:
            raise self.unexpected('"|", "&" or the end')
        return tree

    def tokenize(self) -> list[_Token]:
        text, tokens, i = self.expression, [], 0
        while i < len(text):
            if text[i].isspace():
                i += 1
            elif text[i] == "'":
                i = self.read_quoted(i, tokens)
            elif symbol := next((op for op in _OPERATORS if text.startswith(op, i)), None):
                tokens.append(_Token(symbol, i))
                i += len(symbol)
            else:
                end = i
                while end < len(text) and text[end] not in _VALUE_STOPS and not text.startswith("..", end):
                    end += 1
                tokens.append(_Token("value", i, text[i:end].rstrip()))
                i = end
        return tokens

    def read_quoted(self, start: int, tokens: list[_Token]) -> int:
        """Reads 'literal' from `start`, where '' stands for one apostrophe; returns the index after it."""
        chunks, i = [], start + 1
        while True:
            end = self.expression.find("'", i)
            if end == -1:
                raise self.fail("unterminated quote: a quoted value ends with '", start)
            chunks.append(self.expression[i:end])
            if not self.expression.startswith("''", end):
                tokens.append(_Token("value", start, "'".join(chunks), quoted=True))
                return end + 1
            i = end + 2

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, kind: str) -> _Token | None:
        token = self.peek()
        if token is not None and token.kind == kind:
            self.index += 1
            return token
        return None

    def unexpected(self, expected: str) -> FilterError:
        token = self.peek()
        if token is None:  # only ever after an operator: a complete value would have ended the parse
            previous = self.tokens[self.index - 1]
            return self.fail(f'expected {expected} after "{previous.kind}"', len(self.expression))
        shown = self.expression[token.position : token.position + 10] if token.kind == "value" else token.kind
        return self.fail(f'expected {expected}; unexpected "{shown}"', token.position)

    def any_of(self) -> _Node:
        parts = [self.all_of()]
        while self.take("|"):
            parts.append(self.all_of())
        return parts[0] if len(parts) == 1 else _AnyOf(parts)

    def all_of(self) -> _Node:
        parts = [self.term()]
        while self.take("&"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else _AllOf(parts)

    def term(self) -> _Node:
        opening = self.take("(")
        if opening:
            inner = self.any_of()
            if not self.take(")"):
                if self.peek() is None:
                    raise self.fail('unclosed "("', opening.position)
                raise self.unexpected('"|", "&" or ")"')
            return inner
        token = self.peek()
        if token is not None and token.kind in ("<>", "<=", ">=", "<", ">", "="):
            self.index += 1
            return _Condition(token.kind, self.value())
        if token is not None and token.kind == "..":
            self.index += 1
            if not self.starts_value():
                raise self.fail(
                    'a range needs a value on at least one side ("x..y", "x.." or "..y")', token.position
                )
            return self.end_of_range(_Condition("<=", self.value()))
        value = self.value()
        if not self.take(".."):
            return _Condition("=", value)
        lower = _Condition(">=", value)
        return self.end_of_range(
            _AllOf([lower, _Condition("<=", self.value())]) if self.starts_value() else lower
        )

    def end_of_range(self, node: _Node) -> _Node:
        token = self.peek()
        if token is not None and token.kind == "..":
            raise self.fail('a range takes two values ("x..y"); unexpected ".."', token.position)
        return node

    def starts_value(self) -> bool:
        token = self.peek()
        return token is not None and token.kind in ("value", "@")

    def value(self) -> _Value:
        at = self.take("@")
        token = self.take("value")
        if token is None:
            raise self.unexpected("a value")
        return _Value(token.text, token.position, token.quoted, at.position if at else None)


def _compile_expression(field: FilterField, expression: str) -> Q:
    parser = _Parser(field, expression)
    return _node_q(parser, parser.parse())


def _node_q(parser: _Parser, node: _Node) -> Q:
    if isinstance(node, _Condition):
        return _condition_q(parser, node)
    query = Q()
    for part in node.parts:
        if isinstance(node, _AnyOf):
            query |= _node_q(parser, part)
        else:
            query &= _node_q(parser, part)
    return query


def _condition_q(parser: _Parser, condition: _Condition) -> Q:
    field, value = parser.field, condition.value
    if condition.operator in _RANGE_LOOKUPS:
        if value.is_pattern:
            wildcard = min(i for i in (value.text.find("*"), value.text.find("?")) if i >= 0)
            raise parser.fail(
                'a range or comparison takes a plain value, not a wildcard ("*", "?")',
                value.position + wildcard,
            )
        if value.ignore_case:
            raise parser.fail(
                '"@" (ignore case) works with values and wildcards, not with ranges or comparisons',
                value.at_position,
            )
    if field.choices is not None:
        return _choice_q(parser, condition, field.choices)
    if condition.operator in _RANGE_LOOKUPS:
        query = Q(**{f"{field.path}__{_RANGE_LOOKUPS[condition.operator]}": value.text})
        blank_matches = _COMPARE[condition.operator]("", value.text)
    else:
        query, blank_matches = _equals_q(field.path, value)
        if condition.operator == "<>":
            query, blank_matches = ~query, not blank_matches
    if field.null_path is None:
        return query
    # A contact without a company (or country) shows a blank Company No. in Business Central, so
    # NULL must behave exactly like "": decide in Python whether "" satisfies the condition and
    # add or exclude the NULLs explicitly, instead of relying on SQL's NULL logic under NOT.
    if blank_matches:
        return query | Q(**{f"{field.null_path}__isnull": True})
    return query & Q(**{f"{field.null_path}__isnull": False})


def _equals_q(path: str, value: _Value) -> tuple[Q, bool]:
    """`path` equals (or, for a pattern, matches) `value`; and whether a blank value would."""
    text = value.text
    if not value.ignore_case and not value.is_pattern:
        return Q(**{path: text}), text == ""
    # Django's LIKE-based lookups on SQLite (iexact, startswith, contains, ...) fold the case of
    # ASCII letters only, and fold it even without "i": they can serve "@" on ASCII text only.
    # Everything else is a regex, which behaves alike on SQLite and PostgreSQL.
    if value.ignore_case and text.isascii():
        if not value.is_pattern:
            return Q(**{f"{path}__iexact": text}), text == ""
        inner = text.strip("*")
        if "?" not in text and "*" not in inner:
            lookup = {
                (False, True): "istartswith",
                (True, False): "iendswith",
                (True, True): "icontains",
            }[(text.startswith("*"), text.endswith("*"))]
            return Q(**{f"{path}__{lookup}": inner}), inner == ""
    regex = _pattern_regex(text) if value.is_pattern else rf"(?s)\A{re.escape(text)}\Z"
    lookup = "iregex" if value.ignore_case else "regex"
    return Q(**{f"{path}__{lookup}": regex}), re.search(regex, "") is not None


def _pattern_regex(pattern: str) -> str:
    """A regular expression that PostgreSQL and Python (Django's REGEXP on SQLite) read alike.

    `(?s)`, `\\A` and `\\Z` mean the same in both (Python's `$` would also match before a final
    newline). A literal piece between two `*` is found with a tempered token, `(?:(?!x).)*x`,
    which stops at the first `x`: matching the leftmost occurrence is always right for `*`, and
    it keeps Python from backtracking through every way of placing the pieces, which is
    exponential in their number (`*a*a*a*a*b` on a long run of a's).
    """
    pieces = [".".join(re.escape(part) for part in piece.split("?")) for piece in re.split(r"\*+", pattern)]
    if len(pieces) == 1:
        return rf"(?s)\A{pieces[0]}\Z"
    first, *middle, last = pieces
    found_in_order = "".join(f"(?:(?!{piece}).)*{piece}" for piece in middle)
    return rf"(?s)\A{first}{found_in_order}.*{last}\Z"


def _choice_q(parser: _Parser, condition: _Condition, choices: Mapping[str, str]) -> Q:
    """Type and other option fields: only their values (in any case), with "=", "<>" and "|"."""
    value = condition.value
    stored = choices.get(value.text.lower())
    if condition.operator not in ("=", "<>") or value.is_pattern or stored is None:
        accepted = " or ".join(choice.capitalize() for choice in choices)
        raise parser.fail(f'{parser.field.caption} takes {accepted} (with "|" and "<>")', value.position)
    query = Q(**{parser.field.path: stored})
    return ~query if condition.operator == "<>" else query
