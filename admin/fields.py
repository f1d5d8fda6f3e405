"""Declaring what a client may send: fields, JSON bodies and query strings.

From one declaration come both the checking of what a client sent (every 400 names the
field, so a client can fix its request without guessing) and its JSON Schema for the
OpenAPI document. A body is checked in this order: unknown fields, missing ones, JSON
types (all before any value), then each value in declaration order. Checked values come
back canonical (a rate limit as ``N/minute``) with declared defaults filled in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from gateway.core.errors import BadRequest

from .jsonbody import json_object, printable

Schema = dict[str, Any]


class _Absent:
    """The default of a field with none: absent stays absent."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()

_RFC3339: Final = re.compile(
    r"(\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)", re.ASCII
)

_PYTHON_TYPES: Final[dict[str, type]] = {"string": str, "integer": int, "array": list}
_JSON_NAMES: Final = {"string": "a string", "integer": "an integer", "array": "an array"}


class FieldError(BadRequest):
    """A member of a body or query string refused. Its ``field`` and ``problem`` are kept
    apart so that a caller naming members otherwise (the CLI's flags) can say it its way;
    ``null_means`` is what null would have meant, said to API clients only."""

    def __init__(self, code: str, field: str, problem: str, null_means: str = "") -> None:
        said = f'"{field}" {problem}' + (f", or null for {null_means}" if null_means else "")
        super().__init__(said, code=code)
        self.field = field
        self.problem = problem


def field_error(code: str, name: str, problem: str) -> FieldError:
    return FieldError(code, name, problem)


@dataclass(frozen=True, slots=True)
class Field:
    """One member of a body or query string: its JSON type and what its value must be.

    A string value is checked against ``choices`` (one of them) if there are any, else
    against ``pattern`` (the whole value, surrounding spaces aside; ``must`` says what the
    pattern wants, for people) and then ``convert``-ed to its canonical form, else as free
    text: no NUL, valid Unicode, ``min_length`` to ``max_length`` characters, and not only
    spaces unless ``blank`` -- unless it is ``opaque``: passed on as sent, for the code
    that reads it to judge (a cursor). Integers are for query parameters: whole numbers
    from ``minimum`` to ``maximum``. An array holds at most ``max_items`` values, each
    checked as ``items`` declares.
    """

    type: str = "string"
    nullable: bool = False
    required: bool = False
    default: Any = ABSENT
    min_length: int = 0
    max_length: int | None = None
    blank: bool = True
    opaque: bool = False
    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    must: str = ""
    null_means: str = ""  # said after ``must`` to API clients: ", or null for ..."
    convert: Callable[[str], Any] | None = None
    minimum: int | None = None
    maximum: int | None = None
    items: Field | None = None
    max_items: int | None = None
    format: str | None = None  # "date-time": an RFC 3339 time, checked and parsed
    description: str = ""
    examples: tuple[Any, ...] = ()

    # ------------------------------------------------------------ checking

    def check_type(self, name: str, value: Any) -> None:
        if value is None and self.nullable:
            return
        # bool is an int in Python, never in JSON.
        if isinstance(value, bool) or not isinstance(value, _PYTHON_TYPES[self.type]):
            wanted = _JSON_NAMES[self.type] + (" or null" if self.nullable else "")
            raise field_error("invalid_type", name, f"must be {wanted}")
        if self.items is not None and isinstance(value, list):
            for item in value:
                try:
                    self.items.check_type(name, item)
                except BadRequest:
                    of = f"an array of {self.items.type}s"
                    raise field_error("invalid_type", name, f"must be {of}") from None

    def value(self, name: str, value: Any) -> Any:
        """``value`` (of the right type) checked, in its canonical form."""
        if self.items is not None and value is not None:
            if self.max_items is not None and len(value) > self.max_items:
                raise field_error(
                    "invalid_value", name, f"must have at most {self.max_items} items"
                )
            return [self.items.value(name, item) for item in value]
        if value is None or self.type != "string" or self.opaque:
            return value
        if self.format == "date-time":
            return _time(name, value)
        if self.choices:
            if value not in self.choices:
                raise field_error(
                    "invalid_value", name, f"must be one of {', '.join(self.choices)}"
                )
            return value
        if self.pattern is not None:
            text = value.strip()
            if not self.pattern.fullmatch(text):
                raise FieldError("invalid_value", name, self.must, self.null_means)
            if self.convert is None:
                return text
            try:
                return self.convert(text)
            except ValueError as err:  # what a pattern cannot say (a range, host bits)
                raise field_error("invalid_value", name, str(err)) from None
        return self._text(name, value)

    def _text(self, name: str, value: str) -> str:
        """A text Postgres can store: no NUL, no lone surrogate, length in range."""
        if "\x00" in value:
            raise field_error("invalid_value", name, "must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise field_error("invalid_value", name, "must be valid Unicode text") from None
        longest = self.max_length if self.max_length is not None else len(value)
        if not self.min_length <= len(value) <= longest:
            span = (
                f"at most {longest}" if self.min_length == 0 else f"{self.min_length} to {longest}"
            )
            raise field_error("invalid_value", name, f"must be {span} characters long")
        if not self.blank and not value.strip():
            raise field_error("invalid_value", name, "must not be blank")
        return value

    def _no_nul(self) -> str | None:
        """Free text (checked by ``_text``) refuses NUL: its schema says so too."""
        free = self.type == "string" and not (self.opaque or self.choices or self.format)
        return "^[^\\u0000]*$" if free else None

    @property
    def may_be_empty(self) -> bool:
        """Whether "" is a value of this field as its schema describes it."""
        restricted = self.choices or self.pattern is not None or self.format is not None
        return not restricted and self.min_length == 0

    # ------------------------------------------------------------ describing

    def schema(self) -> Schema:
        """This field as a JSON Schema (OpenAPI 3.1)."""
        schema: Schema = {"type": [self.type, "null"] if self.nullable else self.type}
        facets = {
            "enum": list(self.choices) or None,
            # JSON Schema patterns match anywhere: anchor it to mean the whole value (spaces
            # around it aside, as checked), whatever alternatives the pattern has.
            "pattern": _anchored(self) if self.pattern is not None else self._no_nul(),
            "minLength": self.min_length or None,
            "maxLength": self.max_length,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "items": None if self.items is None else self.items.schema(),
            "maxItems": self.max_items,
            "format": self.format,
            "description": self.description or None,
            "examples": list(self.examples) or None,
        }
        schema.update((key, value) for key, value in facets.items() if value is not None)
        # A None default of a field that cannot be null only means "absent" to the handler.
        if self.default is not ABSENT and (self.default is not None or self.nullable):
            schema["default"] = self.default
        return schema


@dataclass(frozen=True, slots=True)
class Body:
    """A JSON object body: ``name`` is its OpenAPI component, ``fields`` its members."""

    name: str
    fields: Mapping[str, Field]
    # JSON Schema rules across fields (a use case checks them): each goes in "allOf".
    rules: tuple[Schema, ...] = ()

    def __post_init__(self) -> None:
        if any(declared.type == "integer" for declared in self.fields.values()):
            raise TypeError(f"{self.name}: body fields are strings or arrays (integers: queries)")

    async def read(self, request: web.Request) -> dict[str, Any]:
        return self.check(await json_object(request))

    def check(self, body: Mapping[str, Any]) -> dict[str, Any]:
        for name in body:
            if name not in self.fields:
                known = ", ".join(f'"{n}"' for n in self.fields) or "none"
                problem = f"is not a known field (known: {known})"
                raise field_error("unknown_field", printable(name), problem)
        for name, declared in self.fields.items():
            if declared.required and name not in body:
                raise field_error("missing_field", name, "is required")
        for name, value in body.items():
            self.fields[name].check_type(name, value)
        return _values(self.fields, body)

    @property
    def required(self) -> bool:
        return any(declared.required for declared in self.fields.values())

    def schema(self) -> Schema:
        schema: Schema = {"type": "object", "additionalProperties": False}
        required = [name for name, declared in self.fields.items() if declared.required]
        if required:
            schema["required"] = required
        schema["properties"] = {name: declared.schema() for name, declared in self.fields.items()}
        if self.rules:
            schema["allOf"] = list(self.rules)
        return schema


@dataclass(frozen=True, slots=True)
class Query:
    """Query-string parameters; others are ignored. An empty string means absent for a
    parameter that could be empty; for one that cannot (a number, a time, a choice, a
    pattern), it is a value, and refused."""

    fields: Mapping[str, Field]

    def __post_init__(self) -> None:
        for name, declared in self.fields.items():
            if declared.type == "integer" and None in (declared.minimum, declared.maximum):
                raise TypeError(f"query parameter {name}: an integer needs a minimum and maximum")

    def check(self, query: Mapping[str, str]) -> dict[str, Any]:
        given: dict[str, Any] = {}
        for name, declared in self.fields.items():
            raw = query.get(name)
            if declared.type == "integer" and raw is not None:
                given[name] = _whole(name, declared, raw)  # "" included: not a number
            elif raw or (raw == "" and not declared.may_be_empty):
                given[name] = raw
        return _values(self.fields, given)

    def parameters(self) -> list[Schema]:
        return [
            {
                "name": name,
                "in": "query",
                "required": declared.required,
                "schema": {k: v for k, v in declared.schema().items() if k != "description"},
                "description": declared.description,
            }
            for name, declared in self.fields.items()
        ]


def _values(fields: Mapping[str, Field], given: Mapping[str, Any]) -> dict[str, Any]:
    """Each given value checked and canonical, and the declared default of each absent one."""
    values: dict[str, Any] = {}
    for name, declared in fields.items():
        if name in given:
            values[name] = declared.value(name, given[name])
        elif declared.default is not ABSENT:
            values[name] = declared.default
    return values


def _anchored(declared: Field) -> str:
    assert declared.pattern is not None
    if declared.opaque:  # passed on as sent: no spaces allowed around it
        return f"^(?:{declared.pattern.pattern})$"
    return rf"^\s*(?:{declared.pattern.pattern})\s*$"


def _time(name: str, text: str) -> datetime:
    """An RFC 3339 time with its offset (``2026-11-22T10:00:00Z``), timezone-aware."""
    found = _RFC3339.fullmatch(text)
    moment = None
    if found is not None:
        # RFC 3339 allows a lower-case t and z and any number of fraction digits.
        whole, fraction, offset = found.groups()
        try:
            moment = datetime.fromisoformat(
                f"{whole.upper()}.{(fraction or '')[:6]:0<6}{offset.upper()}"
            ).astimezone(UTC)
        except (ValueError, OverflowError):  # a 13th month, a leap second, year 0 in UTC
            moment = None
    if moment is None:
        raise field_error(
            "invalid_parameter", name, "must be an RFC 3339 time, such as 2026-11-22T10:00:00Z"
        )
    return moment


def _whole(name: str, declared: Field, raw: str) -> int:
    low, high = declared.minimum or 0, declared.maximum or 0  # both declared (Query)
    # Length first: int() of thousands of digits is slow and then refused.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(high))) or not (
        low <= int(raw) <= high
    ):
        raise field_error("invalid_parameter", name, f"must be a whole number from {low} to {high}")
    return int(raw)
