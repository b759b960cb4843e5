"""The Parquet reader: batches of about ``max_line_bytes``, and a clear refusal of schemas nested too deeply.

pyarrow refuses to open a Parquet file whose schema nests deeper than :data:`PARQUET_SCHEMA_DEPTH` nodes; such a
file is refused here by depth, naming its deepest column, which is read from the footer's Thrift without pyarrow
(and without recursion, so a column nested 5,000 levels deep is measured safely).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from igds.data.limits import GZIP_RATIO, CorpusError, ReadLimits, check_row, size_text, too_many_rows

# pyarrow refuses Parquet schemas nested deeper than this many nodes (its own default).
PARQUET_SCHEMA_DEPTH = 100


def iter_parquet(path: Path, label: str, max_bytes: int | None, limits: ReadLimits) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` of a Parquet file, checked like every reader's rows (see :func:`igds.data.readers.iter_rows`).

    Raises:
        CorpusError: a corrupt file, one over ``max_decompressed_bytes`` (uncompressed) or ``max_rows``, a schema
            nested too deeply, or a row over the caps, naming the row and field.
    """
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path, schema_depth_limit=PARQUET_SCHEMA_DEPTH)
        meta = pf.metadata
        unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        if "too deeply nested" in str(exc):
            raise _deep_parquet(path, label, limits) from None
        raise CorpusError(f"{label}: cannot read parquet ({exc})") from None
    cap, why = limits.max_decompressed_bytes, "max_decompressed_bytes"
    if max_bytes is not None and GZIP_RATIO * max_bytes < cap:
        cap, why = GZIP_RATIO * max_bytes, f"{GZIP_RATIO} times the upload limit of {size_text(max_bytes)}"
    if unpacked > cap:
        raise CorpusError(f"{label}: decompresses to {size_text(unpacked)}, more than {size_text(cap)} ({why})")
    if meta.num_rows > limits.max_rows:
        raise too_many_rows(f"{label} row {limits.max_rows + 1:,}", limits)
    oversized = _oversized_group(meta, label, limits)
    if oversized is not None:
        raise oversized
    # Batches of about max_line_bytes: the rows of one batch are turned into Python objects at once.
    per_row = unpacked / max(meta.num_rows, 1)
    batches = pf.iter_batches(batch_size=max(1, min(1024, int(limits.max_line_bytes / max(per_row, 1)))))
    row_no = 0
    while True:
        try:
            batch = next(batches, None)
            rows = [] if batch is None else batch.to_pylist()
        except Exception as exc:  # as above
            raise CorpusError(f"{label}: cannot read parquet ({exc}); reading stopped after row {row_no:,}") from None
        if batch is None:
            return
        for row in rows:
            row_no += 1
            where = f"{label} row {row_no}"
            check_row(where, row, limits=limits)
            yield where, row


def _oversized_group(meta, label: str, limits: ReadLimits) -> CorpusError | None:
    """The refusal of the first row group whose rows average more than ``max_line_bytes`` uncompressed (so at least
    one of them is over it), before it is read; None when there is none."""
    first = 1
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        if group.total_byte_size > limits.max_line_bytes * max(group.num_rows, 1):
            biggest = max(range(group.num_columns), key=lambda j: group.column(j).total_uncompressed_size)
            name = group.column(biggest).path_in_schema.split(".")[0]
            last = first + max(group.num_rows, 1) - 1
            rows = f"row {first:,}" if last == first else f"rows {first:,}-{last:,}"
            return CorpusError(f"{label} {rows}: field {name!r} makes {size_text(group.total_byte_size)} "
                               f"uncompressed, more than {size_text(limits.max_line_bytes)} a row (max_line_bytes); "
                               "reading stopped here")
        first += group.num_rows
    return None


def _deep_parquet(path: Path, label: str, limits: ReadLimits) -> CorpusError:
    """The message for a Parquet file whose schema pyarrow will not read because it nests too deeply."""
    try:
        depths = parquet_column_depths(path)
    except Exception:  # a footer we cannot decode either: say what pyarrow said
        depths = {}
    if not depths:
        return CorpusError(f"{label} row 1: a column is nested deeper than Parquet's reader allows "
                           f"({PARQUET_SCHEMA_DEPTH} schema levels; max_depth is {limits.max_depth} levels)")
    name, depth = max(depths.items(), key=lambda kv: kv[1])
    return CorpusError(f"{label} row 1: field {name!r} is nested too deeply: its Parquet type is {depth:,} levels "
                       f"deep, past the reader's limit of {PARQUET_SCHEMA_DEPTH} (max_depth is {limits.max_depth} "
                       "levels of lists and objects); reading stopped here")


def parquet_column_depths(path: str | os.PathLike[str]) -> dict[str, int]:
    """Each top-level column of a Parquet file and how many schema levels it nests, read from the footer alone.

    For files whose schema pyarrow refuses to open (nested past its limit): the footer's Thrift is decoded here,
    without recursion on the schema, so any depth is measured safely.
    """
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(size - 8)
        tail = fh.read(8)
        (length,) = struct.unpack("<I", tail[:4])
        if tail[4:] != b"PAR1" or length > size - 12:
            raise ValueError("not a plain parquet footer")
        fh.seek(size - 8 - length)
        footer = fh.read(length)
    elements = _ThriftSchema(footer).elements()
    deepest: dict[str, int] = {}
    stack, top = [elements[0][1]], ""
    for name, n_children in elements[1:]:
        if not stack:
            break
        if len(stack) == 1:
            top = name
        deepest[top] = max(deepest.get(top, 0), len(stack))
        stack[-1] -= 1
        if n_children:
            stack.append(n_children)
        while len(stack) > 1 and stack[-1] <= 0:
            stack.pop()
    return deepest


class _ThriftSchema:
    """Just enough of Thrift's compact protocol to read ``FileMetaData.schema``: (name, num_children) pairs."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        out = shift = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def fields(self) -> Iterator[tuple[int, int]]:
        """``(field id, type)`` of a struct's fields, up to its stop byte."""
        last = 0
        while (b := self.byte()) & 0x0F:
            last = last + (b >> 4) if b >> 4 else self.zigzag()
            yield last, b & 0x0F

    def list_header(self) -> tuple[int, int]:
        b = self.byte()
        return (self.varint() if b >> 4 == 15 else b >> 4), b & 0x0F

    def skip(self, kind: int, depth: int = 0) -> None:
        if depth > 32:
            raise ValueError("thrift nested too deeply")
        if kind in (3,):
            self.pos += 1
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 7:
            self.pos += 8
        elif kind == 8:
            self.pos += self.varint()
        elif kind in (9, 10):
            n, elem = self.list_header()
            for _ in range(n):
                if elem in (1, 2):
                    self.pos += 1
                else:
                    self.skip(elem, depth + 1)
        elif kind == 11:
            n = self.varint()
            kinds = self.byte() if n else 0
            for _ in range(n):
                self.skip(kinds >> 4, depth + 1)
                self.skip(kinds & 0x0F, depth + 1)
        elif kind == 12:
            for _, sub in self.fields():
                if sub not in (1, 2):
                    self.skip(sub, depth + 1)
        elif kind not in (1, 2):
            raise ValueError(f"unknown thrift type {kind}")

    def elements(self) -> list[tuple[str, int]]:
        for fid, kind in self.fields():
            if fid == 2 and kind == 9:  # FileMetaData.schema: list<SchemaElement>
                n, _ = self.list_header()
                return [self.element() for _ in range(n)]
            if kind not in (1, 2):
                self.skip(kind)
        raise ValueError("no schema in the footer")

    def element(self) -> tuple[str, int]:
        name, n_children = "", 0
        for fid, kind in self.fields():
            if fid == 4 and kind == 8:
                n = self.varint()
                name = self.data[self.pos:self.pos + n].decode("utf-8", "replace")
                self.pos += n
            elif fid == 5 and kind == 5:
                n_children = self.zigzag()
            elif kind not in (1, 2):
                self.skip(kind)
        return name, n_children
