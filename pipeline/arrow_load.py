"""Arrow tables made ready for the database, column by column (no per-value Python on PostgreSQL).

PostgreSQL: the binary COPY stream is assembled from the Arrow buffers with numpy and one
``binary_join_element_wise`` per chunk, then written through the caller's own psycopg
connection, so the load stays in the caller's transaction (ADBC would need a second
connection; measured in benchmarks/load_paths.py it was not faster either).
SQLite: tuples built from whole columns (``to_pylist`` per column, timestamps formatted by
Arrow in SQLAlchemy's text format), for one ``executemany``.

Whatever the input, the database sees: text without NUL (PostgreSQL refuses one), NaN as
NULL, naive UTC timestamps in microseconds, doubles as float8.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import BigInteger, Boolean, Date, DateTime, Float, Integer, SmallInteger, String, Table

from pipeline import arrow_pool  # noqa: F401  (imported for its effect: Arrow allocates from the system pool)

#: Rows per COPY chunk: bounds the memory of one encoded chunk (~40 MB for silver).
CHUNK_ROWS = 100_000
#: Rows turned into Python tuples at once for SQLite's executemany, not a whole batch's (measured on
#: a 1M-record replay: the loading process's peak during silver 295 -> 270 MB, silver 19.1 -> 15.3 s).
SQLITE_SLICE_ROWS = 1_000
#: PostgreSQL's epoch (2000-01-01) in the Unix epoch's microseconds and days.
_PG_EPOCH_US = 946_684_800_000_000
_PG_EPOCH_DAYS = 10_957
_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)


def arrow_type(column_type: object) -> Any:  # a pyarrow DataType (pyarrow is untyped)
    """The Arrow type a column of this SQLAlchemy type is loaded from."""
    if isinstance(column_type, String):  # Text is a String
        return pa.string()
    if isinstance(column_type, DateTime):
        return pa.timestamp("us")
    if isinstance(column_type, Date):
        return pa.date32()
    if isinstance(column_type, Boolean):
        return pa.bool_()
    if isinstance(column_type, SmallInteger):
        return pa.int16()
    if isinstance(column_type, BigInteger):
        return pa.int64()
    if isinstance(column_type, Integer):
        return pa.int32()
    if isinstance(column_type, Float):  # Double is a Float
        return pa.float64()
    raise TypeError(f"no Arrow type for a {column_type!r} column")


def arrow_schema(table: Table, columns: Sequence[str]) -> Any:
    return pa.schema([pa.field(name, arrow_type(table.c[name].type)) for name in columns])


def _plain_type(kind: Any) -> Any:
    """The type a column keeps when no schema table says otherwise (a bare COPY target)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_timestamp(kind):
        return pa.timestamp("us")
    if pa.types.is_floating(kind):
        return pa.float64()
    return kind


def _conform_column(values: Any, target: Any) -> Any:
    values = whole(values)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_timestamp(target):
        if pa.types.is_timestamp(values.type) and values.type.tz is not None:
            values = values.cast(pa.timestamp(values.type.unit))  # Arrow keeps UTC underneath: naive UTC
        # Nanoseconds lose only what no column can hold; seconds and milliseconds are exact.
        return values.cast(target, safe=False) if values.type != target else values
    if values.type != target:
        values = values.cast(target)
    if pa.types.is_floating(target) and values.null_count < len(values):
        nan = pc.is_nan(values)
        if pc.any(nan).as_py():
            values = pc.if_else(nan, pa.scalar(None, target), values)
    elif pa.types.is_string(target) and _may_hold_nul(values) and pc.any(pc.match_substring(values, "\x00")).as_py():
        values = pc.replace_substring(values, "\x00", "")
    return values


def _may_hold_nul(text: Any) -> bool:
    """Whether a string array's character buffer holds a zero byte anywhere (a slice's neighbours
    included, so True only means "look closer"). One pass of numpy over the bytes: 2 ms for 17,000
    sparklines of ~3 kB where pyarrow's match_substring took 90 ms."""
    data = text.buffers()[2]
    return data is not None and data.size > 0 and int(np.frombuffer(data, dtype=np.uint8).min()) == 0


def conform(data: Any, table: Table | None, columns: Sequence[str]) -> Any:
    """``data`` (a pyarrow Table or RecordBatch holding at least ``columns``) as ``columns`` of
    ``table``'s types (None: its own types, normalised): text without NUL, NaN as null,
    naive UTC microsecond timestamps."""
    missing = [name for name in columns if name not in data.schema.names]
    if missing:
        raise ValueError(f"the Arrow table has no column {', '.join(missing)}")
    if table is None:
        schema = pa.schema([pa.field(name, _plain_type(data.schema.field(name).type)) for name in columns])
    else:
        schema = arrow_schema(table, columns)
    arrays = [_conform_column(data.column(name), field.type) for name, field in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def is_arrow(rows: object) -> bool:
    return isinstance(rows, pa.Table | pa.RecordBatch)


def dedupe_last(data: Any, key: Sequence[str]) -> Any:
    """One row per ``key``, the last one given (as a dict keyed on it would keep): PostgreSQL
    refuses an ``ON CONFLICT DO UPDATE`` that touches one key twice."""
    if data.num_rows < 2:
        return data
    order = pa.array(np.arange(data.num_rows, dtype=np.int64))
    last = data.select(list(key)).append_column("__row", order).group_by(list(key)).aggregate([("__row", "max")])
    if last.num_rows == data.num_rows:
        return data
    return data.take(np.sort(last.column("__row_max").to_numpy()))


def without_values(data: Any, column: str, values: Sequence[Any]) -> Any:
    """The rows whose ``column`` holds none of ``values``."""
    found = pc.is_in(data.column(column), pa.array(values, data.schema.field(column).type))
    return data.filter(pc.invert(pc.fill_null(found, False)))


def in_key_order(data: Any, key: Sequence[str]) -> Any:
    """The rows sorted on ``key`` (stable): the primary key's B-tree, and the indexes that start
    with it, are then written page after page instead of all over. Measured on the keyed,
    indexed silver table with its 2,000 coins a snapshot (benchmarks/load_paths.py, sort
    included): PostgreSQL binary COPY 1.3-1.8x, SQLite executemany 1.2-4x."""
    return data.sort_by([(name, "ascending") for name in key])


def time_range(data: Any, column: str) -> tuple[datetime, datetime]:
    bounds = pc.min_max(data.column(column))
    return bounds["min"].as_py(), bounds["max"].as_py()


# -- PostgreSQL binary COPY -------------------------------------------------------------
#
# A row of the stream is: int16 field count, then per field int32 length (-1: NULL) and the
# value's big-endian bytes. The COPY lists the 4- and 8-byte columns first, so the front of
# every row is one numpy structured record (all numbers and times at once, NULL values'
# bytes masked out a 4-byte word at a time), and only booleans and text are joined on per
# row by Arrow. Measured on 100k silver rows: ~2.5x faster than one Arrow binary array per
# column joined row by row.


def _fixed_code(kind: Any) -> str:
    """The numpy big-endian dtype of a fixed-width column's PostgreSQL binary value."""
    if pa.types.is_timestamp(kind) or pa.types.is_int64(kind):
        return ">i8"
    if pa.types.is_date32(kind) or pa.types.is_int32(kind):
        return ">i4"
    if pa.types.is_int16(kind):
        return ">i2"
    if pa.types.is_boolean(kind):
        return "u1"
    if pa.types.is_float64(kind):
        return ">f8"
    raise TypeError(f"no PostgreSQL binary COPY for an Arrow {kind} column")


#: Column groups in stream order: values of 4 or 8 bytes (one structured block, compacted a
#: 4-byte word at a time), booleans and smallints (an array each), text (joined on last).
WORDS, ODD, TEXT = 0, 1, 2


def _group(kind: Any) -> int:
    if pa.types.is_string(kind):
        return TEXT
    return WORDS if np.dtype(_fixed_code(kind)).itemsize % 4 == 0 else ODD


def copy_order(data: Any) -> Any:
    """The table with its columns in the stream's order: by group, else as given."""
    return data.select(sorted(data.column_names, key=lambda name: _group(data.schema.field(name).type)))


def _binary(offsets: npt.NDArray[np.int32], data: npt.NDArray[np.uint8]) -> Any:
    return pa.BinaryArray.from_buffers(pa.binary(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _fixed_values(values: Any) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_] | None]:
    """A fixed-width column's values as numpy (nulls filled) and its NULL mask (None: no NULL)."""
    kind = values.type
    if pa.types.is_floating(kind):
        floats = values.to_numpy(zero_copy_only=False)  # NULL arrives as NaN
        missing = np.isnan(floats)
        return floats, missing if missing.any() else None
    missing = None if values.null_count == 0 else ~np.asarray(values.is_valid().to_numpy(zero_copy_only=False))
    if pa.types.is_timestamp(kind):
        return pc.fill_null(values.cast(pa.int64()), _PG_EPOCH_US).to_numpy() - _PG_EPOCH_US, missing
    if pa.types.is_date32(kind):
        return pc.fill_null(values.cast(pa.int32()), 0).to_numpy() - _PG_EPOCH_DAYS, missing
    return pc.fill_null(values, False if pa.types.is_boolean(kind) else 0).to_numpy(zero_copy_only=False), missing


def _fields(columns: list[Any], unit: Any) -> Any:
    """Fixed-width columns as one binary array: per row, each field's int32 length (-1: NULL)
    and big-endian value, NULL values' bytes dropped ``unit`` (uint32 or uint8) at a time."""
    count = len(columns[0])
    layout: list[tuple[str, str]] = []
    for i, values in enumerate(columns):
        layout += [(f"n{i}", ">i4"), (f"v{i}", _fixed_code(values.type))]
    records = np.empty(count, np.dtype(layout))
    where = {name: offset for name, (_kind, offset, *_title) in (records.dtype.fields or {}).items()}
    step = np.dtype(unit).itemsize
    words = records.dtype.itemsize // step
    keep: npt.NDArray[np.bool_] | None = None
    for i, values in enumerate(columns):
        numbers, missing = _fixed_values(values)
        size = records.dtype[f"v{i}"].itemsize
        records[f"v{i}"] = numbers
        if missing is None:
            records[f"n{i}"] = size
            continue
        records[f"n{i}"] = np.where(missing, -1, size)
        if keep is None:
            keep = np.ones((count, words), np.bool_)
        start = where[f"v{i}"] // step
        keep[missing, start : start + size // step] = False
    flat = records.view(unit).reshape(count, words)
    offsets = np.zeros(count + 1, np.int32)
    if keep is None:
        offsets[1:] = np.arange(1, count + 1, dtype=np.int32) * records.dtype.itemsize
        return _binary(offsets, flat.reshape(-1).view(np.uint8))
    np.cumsum(keep.sum(axis=1, dtype=np.int32) * step, out=offsets[1:])
    return _binary(offsets, flat[keep].view(np.uint8))


def _text_fields(values: Any) -> list[Any]:
    """A text column as two binary arrays whose element-wise join is its fields (length, bytes)."""
    lengths = pc.fill_null(pc.binary_length(values), -1).to_numpy().astype(">i4")
    prefix = _binary(np.arange(0, (len(values) + 1) * 4, 4, dtype=np.int32), lengths.view(np.uint8))
    return [prefix, pc.fill_null(values.cast(pa.binary()), b"")]


def whole(values: Any) -> Any:
    """An Arrow column as one array: a single chunk as it is (``combine_chunks`` copies even one
    chunk: 7x slower per replayed bronze page), several joined."""
    if not isinstance(values, pa.ChunkedArray):
        return values
    return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()


def copy_chunks(data: Any, chunk_rows: int = CHUNK_ROWS) -> Iterator[Any]:
    """The binary COPY stream of a conformed table in ``copy_order``: header, rows in chunks,
    trailer (buffers for ``Copy.write``)."""
    yield _HEADER
    groups = [_group(field.type) for field in data.schema]
    if groups != sorted(groups):
        raise ValueError("copy_chunks needs the columns in copy_order")
    field_count = pa.scalar(struct.pack(">h", data.num_columns), pa.binary())
    for start in range(0, data.num_rows, chunk_rows):
        part = data.slice(start, chunk_rows)
        columns = [whole(column) for column in part.columns]
        words = [c for c, g in zip(columns, groups, strict=True) if g == WORDS]
        pieces = [_fields(words, np.uint32)] if words else []
        pieces += [_fields([c], np.uint8) for c, g in zip(columns, groups, strict=True) if g == ODD]
        for values, group in zip(columns, groups, strict=True):
            if group == TEXT:
                pieces += _text_fields(values)
        rows = pc.binary_join_element_wise(field_count, *pieces, b"")
        offsets = np.frombuffer(rows.buffers()[1], np.int32, len(rows) + 1, rows.offset * 4)
        yield rows.buffers()[2][int(offsets[0]) : int(offsets[-1])]
    yield _TRAILER


class CopyReader:
    """The COPY stream as a file for psycopg2's ``copy_expert`` (it calls ``read(size)``)."""

    def __init__(self, data: Any) -> None:
        self._chunks = copy_chunks(data)
        self._pending = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._pending = memoryview(chunk)
        if size < 0:
            size = len(self._pending)
        part, self._pending = self._pending[:size], self._pending[size:]
        return bytes(part)


def copy_statement(table_name: str, data: Any) -> str:
    return f"COPY {table_name} ({', '.join(data.column_names)}) FROM STDIN (FORMAT BINARY)"


def copy_arrow(cursor: Any, table_name: str, data: Any) -> None:
    """Binary COPY of a conformed Arrow table through a psycopg 3 cursor (the caller's transaction)."""
    data = copy_order(data)
    with cursor.copy(copy_statement(table_name, data)) as copy:
        for chunk in copy_chunks(data):
            copy.write(chunk)


# -- SQLite -----------------------------------------------------------------------------


def sqlite_rows(data: Any) -> Iterator[tuple[object, ...]]:
    """A conformed table as tuples for ``executemany``, built a column at a time for
    ``SQLITE_SLICE_ROWS`` rows at once; timestamps as SQLAlchemy's 'YYYY-MM-DD HH:MM:SS.ffffff'
    text, dates as 'YYYY-MM-DD'.

    Arrow's cast of a microsecond timestamp to text gives exactly that format (always six
    fraction digits) and is ~30x faster than ``strftime`` (measured: 0.03 s vs 1 s per 200k).
    """
    for start in range(0, data.num_rows, SQLITE_SLICE_ROWS):
        part = data.slice(start, SQLITE_SLICE_ROWS)
        columns: list[list[object]] = []
        for values in part.columns:
            if pa.types.is_timestamp(values.type) or pa.types.is_date32(values.type):
                values = values.cast(pa.string())
            columns.append(values.to_pylist())
        yield from zip(*columns, strict=True)
