"""Bounded row readers for record files: JSONL (optionally gzipped), CSV and Parquet.

Every reader streams: a gzip file is inflated and parsed one line at a time, each line read with a size cap, so a
4 GB line or a gzip bomb never gets into memory; Parquet is read in batches sized to a few megabytes. What one
file may hold is capped by :class:`ReadLimits` (decompressed bytes, bytes per line, rows, characters per field,
nesting depth, integer digits); each cap is named in its message, with the file and the line or row. Values that
JSON does not allow (``NaN``, ``Infinity``, numbers that overflow a float) and integers longer than the cap are
refused with the field that holds them (:mod:`igds.data.limits`). Only the standard library is imported here
(pyarrow for Parquet files, in :mod:`igds.data.parquet`).
"""

from __future__ import annotations

import csv
import gzip
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from igds.data.limits import (
    DEFAULT_LIMITS,
    GZIP_RATIO,
    CorpusError,
    ReadLimits,
    check_row,
    field_label,
    json_field_at,
    parse_json_text,
    size_text,
    too_many_rows,
)

_BOM = b"\xef\xbb\xbf"




# -- lines of text -------------------------------------------------------------------------------------------
def _text_cap(path: Path, limits: ReadLimits, max_bytes: int | None) -> tuple[int, str]:
    """The most bytes of text to read from a file, and why (for the message)."""
    cap, why = limits.max_decompressed_bytes, "max_decompressed_bytes"
    if max_bytes is not None and path.name.lower().endswith(".gz") and GZIP_RATIO * max_bytes < cap:
        cap = GZIP_RATIO * max_bytes
        why = f"{GZIP_RATIO} times the upload limit of {size_text(max_bytes)}; refusing it as a possible gzip bomb"
    return cap, why


def _lines(path: Path, label: str, limits: ReadLimits, max_bytes: int | None) -> Iterator[tuple[int, bytes]]:
    """``(line number, line bytes)`` of a text file, gunzipped on the fly; no line over ``max_line_bytes`` and no
    more than the text cap is ever read (a line is read with ``readline(limit)``)."""
    cap, why = _text_cap(path, limits, max_bytes)
    gz = path.name.lower().endswith(".gz")
    total = line_no = 0
    with open(path, "rb") as raw, (gzip.GzipFile(fileobj=raw) if gz else raw) as stream:
        while True:
            try:
                line = stream.readline(min(limits.max_line_bytes, cap - total) + 1)
            except (OSError, EOFError, zlib.error) as exc:
                raise CorpusError(f"{label}: not a valid gzip file ({exc}); reading stopped at line "
                                  f"{line_no + 1:,}") from None
            if not line:
                return
            line_no += 1
            total += len(line)
            if total > cap:
                what = "decompresses to more than" if gz else "holds more text than"
                raise CorpusError(f"{label}: {what} {size_text(cap)} ({why}); reading stopped at line {line_no:,}")
            if line_no == 1:
                line = line.removeprefix(_BOM)
            if len(line) > limits.max_line_bytes and not line.endswith(b"\n"):
                name = json_field_at(line.decode("utf-8", "replace"))
                raise CorpusError(f"{label} line {line_no:,}: {field_label(name)} makes the line longer than "
                                  f"{size_text(limits.max_line_bytes)} (max_line_bytes); reading stopped here")
            yield line_no, line


def _decode(data: bytes, label: str, line_no: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{label} line {line_no}: not valid UTF-8 (byte {exc.start})") from None


# -- the readers ---------------------------------------------------------------------------------------------
Reader = Callable[[Path, str, int | None, ReadLimits], Iterator[tuple[str, Any]]]


def _iter_jsonl(path: Path, label: str, max_bytes: int | None, limits: ReadLimits) -> Iterator[tuple[str, Any]]:
    n_rows = 0
    for line_no, line in _lines(path, label, limits, max_bytes):
        text = _decode(line, label, line_no).strip()
        if not text:
            continue
        where = f"{label} line {line_no}"
        n_rows += 1
        if n_rows > limits.max_rows:
            raise too_many_rows(where, limits)
        yield where, parse_json_text(text, where, limits=limits)


def _iter_csv(path: Path, label: str, max_bytes: int | None, limits: ReadLimits) -> Iterator[tuple[str, Any]]:
    # The csv module refuses cells over its field size limit (128 KiB by default); raise it past our own limit
    # so an oversized cell is reported by name and length. The setting is process-wide and only ever raised.
    if csv.field_size_limit() <= limits.max_field_chars:
        csv.field_size_limit(4 * limits.max_field_chars)
    row_no = 1
    pending = 0  # bytes read since the last row ended: one row may span lines (quoted newlines)

    def text_lines() -> Iterator[str]:
        nonlocal pending
        for line_no, line in _lines(path, label, limits, max_bytes):
            pending += len(line)
            if pending > limits.max_line_bytes:
                raise CorpusError(f"{label} row {row_no:,}: the row is longer than {size_text(limits.max_line_bytes)}"
                                  f" (max_line_bytes); reading stopped at line {line_no:,}")
            yield _decode(line, label, line_no)

    reader = csv.DictReader(text_lines())
    while True:
        where = f"{label} row {row_no}"
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CorpusError(f"{where}: invalid CSV ({exc}); the limit is {limits.max_field_chars:,} characters a "
                              "field (max_field_chars)" if "field larger" in str(exc)
                              else f"{where}: invalid CSV ({exc})") from None
        pending = 0
        if row_no > limits.max_rows:
            raise too_many_rows(where, limits)
        if None in row:
            raise CorpusError(f"{where}: more cells than header columns")
        row = {k: v for k, v in row.items() if v is not None}
        check_row(where, row, limits=limits)
        yield where, row
        row_no += 1


def _iter_parquet(path: Path, label: str, max_bytes: int | None, limits: ReadLimits) -> Iterator[tuple[str, Any]]:
    from igds.data.parquet import iter_parquet  # pyarrow is imported only for Parquet files

    return iter_parquet(path, label, max_bytes, limits)


_READERS: dict[str, Reader] = {".jsonl": _iter_jsonl, ".jsonl.gz": _iter_jsonl, ".ndjson": _iter_jsonl,
                               ".csv": _iter_csv, ".parquet": _iter_parquet}


def _reader(path: Path, label: str) -> Reader:
    name = path.name.lower()
    for suffix, reader in _READERS.items():
        if name.endswith(suffix):
            return reader
    raise CorpusError(f"{label}: unsupported file type; use .jsonl, .jsonl.gz, .parquet or .csv")


def iter_rows(
    path: str | os.PathLike[str], label: str | None = None, *, max_bytes: int | None = None,
    limits: ReadLimits | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Stream the raw rows of a record file (``.jsonl``, ``.ndjson``, ``.jsonl.gz``, ``.csv``, ``.parquet``).

    File-level problems (missing file, unsupported type, over ``max_bytes``) are raised by the call itself;
    each row is checked before it is yielded: lone surrogates, strings over ``max_field_chars``, values nested
    deeper than ``max_depth`` (:func:`check_value`), and for JSONL NaN/Infinity and integers over
    ``max_int_digits``. Reading stops with a message at the first line over ``max_line_bytes``, past
    ``max_decompressed_bytes`` of text or past ``max_rows`` rows. A UTF-8 byte order mark at the start of a JSONL
    or CSV file is accepted. Rows are *not* validated as records (see :func:`igds.data.records.validate_record`),
    and a row that is not an object (e.g. a JSON array) is yielded as it is. Nothing but the current line or
    batch is held, so callers that must not half-ingest a file consume all rows before storing any.

    Args:
        path: The file.
        label: Name of the file in messages (default: the path as given).
        max_bytes: Upload limit on the file's size on disk (compressed size for ``.gz``); a gzip file may
            decompress to at most 20 times this, a parquet file hold at most 20 times this uncompressed.
            None: no upload limit (``limits`` still apply).
        limits: The caps (default: :class:`ReadLimits` ()).

    Returns:
        An iterator of ``(where, raw_row)``, where is e.g. ``"data.jsonl line 7"``, ``"x.csv row 3"`` or
        ``"x.parquet row 3"``.

    Raises:
        CorpusError: Naming the file, the line or row and the field (and the cap, by its ``ReadLimits`` name),
            e.g. ``"<file>: 12.3 MB is over the upload limit of 10.0 MB"``, ``"<file> line 7: field 'prompt' has
            an invalid Unicode escape (lone surrogate \\ud800)"``. Raised by the call for file-level problems, by
            the iteration for rows.
    """
    path = Path(path)
    label = str(path) if label is None else label
    if not path.is_file():
        raise CorpusError(f"{label}: file not found")
    reader = _reader(path, label)
    if max_bytes is not None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        size = path.stat().st_size
        if size > max_bytes:
            raise CorpusError(f"{label}: {size_text(size)} is over the upload limit of {size_text(max_bytes)}")
    return reader(path, label, max_bytes, limits or DEFAULT_LIMITS)
