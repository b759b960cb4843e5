"""Caps on what one record file may hold and the checks of its values, shared by every reader.

:class:`ReadLimits` (decompressed bytes, bytes per line, rows, characters per field, nesting depth, integer
digits) names each cap in its message, with the file and the line or row. Values that JSON does not allow
(``NaN``, ``Infinity``, numbers that overflow a float) and integers longer than the cap are refused with the field
that holds them. Standard library only.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from igds.config import ConfigBase

# Caps on what one file may hold (the defaults of ReadLimits).
MAX_DEPTH = 64
MAX_FIELD_CHARS = 1_000_000
MAX_LINE_BYTES = 16_000_000  # room for two 1M-character fields written as \uXXXX escapes
MAX_DECOMPRESSED_BYTES = 1_000_000_000
MAX_ROWS = 1_000_000
MAX_INT_DIGITS = 4_300  # Python's own limit on converting an integer to or from text
# A gzip file may decompress to at most this many times the upload limit (when one is given).
GZIP_RATIO = 20

_SURROGATE = re.compile("[\ud800-\udfff]")
# JSON tokens that matter for nesting: whole strings (skipped as one token; one cut off at the end of a truncated
# line too), brackets, commas and colons.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|[\[\]{},:]', re.DOTALL)


class CorpusError(ValueError):
    """A record file is malformed; the message names the file, line/row and field."""


@dataclass(frozen=True, kw_only=True)
class ReadLimits(ConfigBase):
    """Caps on what one record file may hold; each is named in the message that refuses a file over it.

    Args:
        max_decompressed_bytes: bytes of text read from one file, after gunzip (a plain file's size).
        max_line_bytes: bytes in one JSONL line or one CSV row (one Parquet batch is read at about this size).
        max_rows: rows in one file.
        max_field_chars: characters in one string, at any depth of a field.
        max_depth: nesting of lists and objects in one field.
        max_int_digits: digits of one JSON integer.
    """

    max_decompressed_bytes: int = field(default=MAX_DECOMPRESSED_BYTES,
                                        metadata={"help": "bytes of text read from one file, after gunzip"})
    max_line_bytes: int = field(default=MAX_LINE_BYTES, metadata={"help": "bytes in one JSONL line or CSV row"})
    max_rows: int = field(default=MAX_ROWS, metadata={"help": "rows in one file"})
    max_field_chars: int = field(default=MAX_FIELD_CHARS, metadata={"help": "characters in one string"})
    max_depth: int = field(default=MAX_DEPTH, metadata={"help": "nesting of lists and objects in one field"})
    max_int_digits: int = field(default=MAX_INT_DIGITS, metadata={"help": "digits of one JSON integer"})

    def __post_init__(self):
        for f in self.__dataclass_fields__:
            if getattr(self, f) <= 0:
                raise ValueError(f"ReadLimits.{f} must be positive, not {getattr(self, f)}")
        if self.max_int_digits > MAX_INT_DIGITS:
            raise ValueError(f"ReadLimits.max_int_digits must be at most {MAX_INT_DIGITS} (Python's own limit)")


DEFAULT_LIMITS = ReadLimits()


def size_text(n: int) -> str:
    """A byte count for messages: ``950 bytes``, ``12.3 kB``, ``12.3 MB``, ``1.2 GB`` (decimal units)."""
    if n < 1000:
        return f"{n} bytes"
    if n < 1_000_000:
        return f"{n / 1000:.1f} kB"
    if n < 1_000_000_000:
        return f"{n / 1_000_000:.1f} MB"
    return f"{n / 1_000_000_000:.1f} GB"


def field_label(name: str | None) -> str:
    return "the record" if name is None else f"field {name!r}"


# -- values --------------------------------------------------------------------------------------------------
class _Refused:
    """What the JSON hooks put in place of a value JSON or the limits do not allow; :func:`check_value` names its
    field. (The hooks cannot raise the message themselves: they do not know which field they are in.)"""

    __slots__ = ("why",)

    def __init__(self, why: str):
        self.why = why


@functools.lru_cache(maxsize=8)
def _decoder(limits: ReadLimits) -> json.JSONDecoder:
    """A JSON decoder that refuses NaN/Infinity, floats that overflow and integers over ``max_int_digits``."""

    def constant(name: str) -> _Refused:
        return _Refused(f"is {name}, which is not JSON (numbers must be finite)")

    def number(text: str) -> float | _Refused:
        value = float(text)
        return value if math.isfinite(value) else _Refused(f"is the number {text[:20]}, which overflows a float")

    # the interpreter's own limit may have been set lower (PYTHONINTMAXSTRDIGITS; 0 is no limit)
    most = min(limits.max_int_digits, sys.get_int_max_str_digits() or limits.max_int_digits)

    def integer(text: str) -> int | _Refused:
        digits = len(text) - text.startswith("-")
        if digits > most:
            return _Refused(f"is an integer of {digits:,} digits; the limit is {most:,} (max_int_digits)")
        return int(text)

    return json.JSONDecoder(parse_constant=constant, parse_float=number, parse_int=integer)


def _check_string(where: str, name: str | None, text: str, limits: ReadLimits) -> None:
    if len(text) > limits.max_field_chars:
        raise CorpusError(f"{where}: {field_label(name)} is {len(text):,} characters; the limit is "
                          f"{limits.max_field_chars:,} (max_field_chars)")
    bad = None if text.isascii() else _SURROGATE.search(text)  # isascii: a fast pass over most text
    if bad:
        raise CorpusError(f"{where}: {field_label(name)} has an invalid Unicode escape (lone surrogate "
                          f"\\u{ord(bad.group()):04x})")


def check_value(where: str, field: str | None, value: Any, *, limits: ReadLimits = DEFAULT_LIMITS) -> None:
    """Check one value of a row: nesting depth, lone surrogates, string length and refused numbers, at any depth.

    The walk is iterative, so a value nested far deeper than the interpreter's recursion limit is refused
    with a clear message instead of a ``RecursionError``. Dict keys are checked like strings.

    Args:
        where: Location for messages, e.g. ``"data.jsonl line 7"``.
        field: The row's top-level field holding ``value``; None when ``value`` is the whole record.
        value: A decoded value (str, number, bool, None, list/tuple, dict, ...).
        limits: The caps (``max_depth``, ``max_field_chars``).

    Raises:
        CorpusError: ``"<where>: field 'x' is nested deeper than 64 levels (max_depth)"``, ``"<where>: field 'x'
            has an invalid Unicode escape (lone surrogate \\ud800)"``, ``"<where>: field 'x' is 1,234,567
            characters; the limit is 1,000,000 (max_field_chars)"`` or ``"<where>: field 'x' is NaN, which is not
            JSON (numbers must be finite)"`` (``the record`` instead of ``field 'x'`` when field is None).
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_string(where, field, item, limits)
        elif isinstance(item, _Refused):
            raise CorpusError(f"{where}: {field_label(field)} {item.why}")
        elif isinstance(item, dict | list | tuple):
            depth += 1
            if depth > limits.max_depth:
                raise CorpusError(f"{where}: {field_label(field)} is nested deeper than {limits.max_depth} levels "
                                  "(max_depth)")
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str):
                        _check_string(where, field, key, limits)
                    stack.append((child, depth))
            else:
                stack.extend((child, depth) for child in item)


def json_field_at(text: str, *, deeper_than: int | None = None) -> str | None:
    """The top-level field of a JSON object text that is open at the end of ``text`` (a truncated or broken line)
    or, with ``deeper_than``, whose value first nests deeper than that; None when it is the record itself.

    Scans tokens without building values, so it works where ``json`` gave up (too deep, cut off, invalid).
    """
    depth, top_is_object, expect_key, key = 0, False, False, None
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            if depth == 0:
                top_is_object = token == "{"
                expect_key = top_is_object
            depth += 1
            if deeper_than is not None and depth - top_is_object > deeper_than:
                return key if top_is_object else None
        elif token in "]}":
            depth -= 1
        elif depth == 1 and top_is_object and token == ",":
            expect_key = True
        elif depth == 1 and expect_key and token.startswith('"'):
            try:
                key = json.loads(token)
            except ValueError:
                key = token[1:-1]
            expect_key = False
    return key if top_is_object and depth >= 1 and not expect_key else None


def parse_json_text(text: str, where: str, field: str | None = None, *,
                    limits: ReadLimits = DEFAULT_LIMITS) -> Any:
    """Parse JSON text (a JSONL line, or a CSV/Parquet cell holding JSON) and check it with :func:`check_value`.

    Args:
        text: The JSON text.
        where: Location for messages, e.g. ``"data.csv row 3"``.
        field: The field holding the text (a cell); None for a whole JSONL line (fields are then named from it).
        limits: The caps.

    Returns:
        The decoded value.

    Raises:
        CorpusError: For invalid JSON, NaN/Infinity, an integer over ``max_int_digits`` or a value over the caps
            of :func:`check_value`, naming the field (the record's own field when ``field`` is None).
    """
    try:
        value = _decoder(limits).decode(text)
    except json.JSONDecodeError as exc:
        name = field if field is not None else json_field_at(text[:exc.pos])
        raise CorpusError(f"{where}: invalid JSON in {field_label(name)} ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        name = field if field is not None else json_field_at(text, deeper_than=limits.max_depth)
        raise CorpusError(f"{where}: {field_label(name)} is nested deeper than {limits.max_depth} levels "
                          "(max_depth)") from None
    if field is None and isinstance(value, dict):
        check_row(where, value, limits=limits)
    else:
        check_value(where, field, value, limits=limits)
    return value


def check_row(where: str, row: Any, *, limits: ReadLimits = DEFAULT_LIMITS) -> None:
    """Check every field of a raw row (:func:`check_value`), naming the field; a non-object row as ``the record``.

    A ``meta`` cell holding JSON text (CSV, some Parquet files) is parsed and checked too, so a deep value there
    is refused here rather than crashing a parser later.
    """
    if not isinstance(row, dict):
        check_value(where, None, row, limits=limits)
        return
    for key, value in row.items():
        name = key if isinstance(key, str) else str(key)
        _check_string(where, name, name, limits)
        check_value(where, name, value, limits=limits)
    meta = row.get("meta")
    if isinstance(meta, str) and meta.count("[") + meta.count("{") > limits.max_depth:
        try:
            parse_json_text(meta, where, "meta", limits=limits)
        except CorpusError as exc:
            if "invalid JSON" not in str(exc):  # syntax errors are left to the record's own message
                raise


def too_many_rows(where: str, limits: ReadLimits) -> CorpusError:
    """The refusal of a file past ``max_rows`` rows, at ``where``."""
    return CorpusError(f"{where}: the file has more than {limits.max_rows:,} rows (max_rows); reading stopped here")
