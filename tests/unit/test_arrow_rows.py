"""pipeline.arrow_load without a database: the types a table is cast to, the binary COPY
stream (decoded back here), SQLite's tuples, de-duplication."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from sqlalchemy import Boolean, Column, Date, DateTime, Double, Integer, MetaData, String, Table, Text

from pipeline import arrow_load

T = datetime(2026, 3, 1, 12, 0, 0, 123_456)
TABLE = Table(
    "t",
    MetaData(),
    Column("name", Text),
    Column("code", String(8)),
    Column("at", DateTime),
    Column("day", Date),
    Column("price", Double),
    Column("rank", Integer),
    Column("flag", Boolean),
)
COLUMNS = [c.name for c in TABLE.columns]


def sample() -> pa.Table:
    return pa.table(
        {
            "flag": [True, None, False],
            "name": pa.array(["a\x00b", None, "ü"]).dictionary_encode(),
            "code": pa.array(["x", "y", None], pa.large_string()),
            "at": pa.array([T.replace(tzinfo=UTC), None, T.replace(tzinfo=UTC)], pa.timestamp("ns", tz="UTC")),
            "day": pa.array([T.date(), None, T.date()], pa.date32()),
            "price": [1e-12, float("nan"), None],
            "rank": pa.array([1, None, 2**20], pa.int64()),
            "ignored": [1, 2, 3],
        }
    )


def test_conform_casts_to_the_tables_types_and_cleans_values():
    data = arrow_load.conform(sample(), TABLE, COLUMNS)
    assert data.schema == arrow_load.arrow_schema(TABLE, COLUMNS)
    assert data.column_names == COLUMNS
    assert data.column("name").to_pylist() == ["ab", None, "ü"]  # NUL stripped
    assert data.column("price").to_pylist() == [1e-12, None, None]  # NaN is NULL
    assert data.column("at").to_pylist() == [T, None, T]  # naive UTC, microseconds kept


def test_conform_names_a_missing_column():
    with pytest.raises(ValueError, match="no column price"):
        arrow_load.conform(sample().drop_columns(["price"]), TABLE, COLUMNS)


def test_conform_refuses_an_integer_that_does_not_fit():
    with pytest.raises(pa.ArrowInvalid):
        arrow_load.conform(sample().set_column(6, "rank", pa.array([2**40, 1, 1])), TABLE, COLUMNS)


def decode(stream: bytes, kinds: list[str]) -> list[tuple[object, ...]]:
    """PostgreSQL's binary COPY format read back (the parts this module writes)."""
    assert stream[:11] == b"PGCOPY\n\xff\r\n\x00" and stream[11:19] == b"\x00" * 8
    pos, rows = 19, []
    while True:
        (count,) = struct.unpack_from(">h", stream, pos)
        pos += 2
        if count == -1:
            assert pos == len(stream)
            return rows
        row: list[object] = []
        for kind in kinds:
            (size,) = struct.unpack_from(">i", stream, pos)
            pos += 4
            if size == -1:
                row.append(None)
                continue
            raw = stream[pos : pos + size]
            pos += size
            if kind == "text":
                row.append(raw.decode())
            elif kind == "timestamp":
                row.append(struct.unpack(">q", raw)[0])
            elif kind == "date":
                row.append(struct.unpack(">i", raw)[0])
            elif kind == "float8":
                row.append(struct.unpack(">d", raw)[0])
            elif kind == "int4":
                row.append(struct.unpack(">i", raw)[0])
            else:
                row.append(raw == b"\x01")
        assert count == len(kinds)
        rows.append(tuple(row))


def test_copy_stream_holds_every_value_in_postgres_binary_format():
    data = arrow_load.copy_order(arrow_load.conform(sample(), TABLE, COLUMNS))
    assert data.column_names == ["at", "day", "price", "rank", "flag", "name", "code"]  # 4/8 bytes, bool, text
    stream = b"".join(bytes(chunk) for chunk in arrow_load.copy_chunks(data, chunk_rows=2))  # two chunks
    micros = int((T - datetime(2000, 1, 1)).total_seconds()) * 1_000_000 + T.microsecond
    days = (T.date() - datetime(2000, 1, 1).date()).days
    assert decode(stream, ["timestamp", "date", "float8", "int4", "bool", "text", "text"]) == [
        (micros, days, 1e-12, 1, True, "ab", "x"),
        (None, None, None, None, None, None, "y"),
        (micros, days, None, 2**20, False, "ü", None),
    ]
    no_nulls = data.slice(0, 1)  # the block without any NULL takes the uncompacted path
    assert decode(b"".join(bytes(c) for c in arrow_load.copy_chunks(no_nulls)), _KINDS) == [
        (micros, days, 1e-12, 1, True, "ab", "x")
    ]


_KINDS = ["timestamp", "date", "float8", "int4", "bool", "text", "text"]


def test_copy_stream_needs_text_last_and_takes_a_table_of_text_only():
    data = arrow_load.conform(sample(), TABLE, COLUMNS)
    with pytest.raises(ValueError, match="copy_order"):
        list(arrow_load.copy_chunks(data))
    text_only = arrow_load.conform(sample(), TABLE, ["name"])
    stream = b"".join(bytes(chunk) for chunk in arrow_load.copy_chunks(text_only))
    assert decode(stream, ["text"]) == [("ab",), (None,), ("ü",)]


def test_copy_reader_gives_the_same_stream_in_any_read_size():
    data = arrow_load.copy_order(arrow_load.conform(sample(), TABLE, COLUMNS))
    whole = b"".join(bytes(chunk) for chunk in arrow_load.copy_chunks(data))
    reader = arrow_load.CopyReader(data)
    parts = []
    while part := reader.read(7):
        parts.append(part)
    assert b"".join(parts) == whole
    assert arrow_load.CopyReader(data).read() == whole[:19]  # one chunk at a time: the header first


def test_sqlite_rows_use_sqlalchemys_text_formats():
    rows = list(arrow_load.sqlite_rows(arrow_load.conform(sample(), TABLE, COLUMNS)))
    assert rows == [
        ("ab", "x", "2026-03-01 12:00:00.123456", "2026-03-01", 1e-12, 1, True),
        (None, "y", None, None, None, None, None),
        ("ü", None, "2026-03-01 12:00:00.123456", "2026-03-01", None, 2**20, False),
    ]
    whole_second = pa.table({"at": pa.array([datetime(2026, 1, 1)], pa.timestamp("s"))})
    assert list(arrow_load.sqlite_rows(arrow_load.conform(whole_second, None, ["at"]))) == [
        ("2026-01-01 00:00:00.000000",)
    ]


def test_dedupe_last_keeps_the_last_row_of_a_key_in_order():
    data = pa.table({"k": ["a", "b", "a", "c", "b"], "v": [1, 2, 3, 4, 5]})
    assert arrow_load.dedupe_last(data, ["k"]).to_pylist() == [
        {"k": "a", "v": 3},
        {"k": "c", "v": 4},
        {"k": "b", "v": 5},
    ]
    unique = pa.table({"k": ["a", "b"]})
    assert arrow_load.dedupe_last(unique, ["k"]) is unique


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_conform_strips_nul_from_text_and_a_slice_keeps_its_neighbours_text(kind):
    """The zero-byte scan looks at the whole character buffer: a NUL beside a slice must not change
    the slice, and one inside it (anywhere in a long text) is stripped."""
    long = "[" + ",".join(["1.5"] * 500) + "]"
    texts = pa.array(["a\x00b", long, long[:700] + "\x00" + long[700:], "plain", None], kind)
    table = pa.table({"name": texts})
    got = arrow_load.conform(table, TABLE, ["name"]).column("name").to_pylist()
    assert got == ["ab", long, long, "plain", None]
    sliced = arrow_load.conform(table.slice(3, 2), TABLE, ["name"]).column("name").to_pylist()
    assert sliced == ["plain", None]
    clean = arrow_load.conform(table.slice(1, 1), TABLE, ["name"]).column("name").to_pylist()
    assert clean == [long]
