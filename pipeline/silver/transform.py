"""Raw CoinGecko records in, typed silver rows and quarantined records out.

Pure functions: no files, no database, no clock. NULL stays NULL all the way:
a missing or null field is never replaced by 0, and a derived column whose
input is NULL (or would divide by zero) is NULL too.

Validation rules (the README's silver paragraph says the same):

* **Non-finite numbers** — NaN, Infinity, -Infinity, whether they arrive as JSON
  tokens (``NaN``) or as text (``"nan"``, ``"inf"``, ``"-Infinity"``, any case) —
  are not measurements: in *every* numeric field the value becomes NULL, the
  record is kept, and the fact is recorded as a :class:`Nulled` note
  (``MarketsBatch.nulled`` / ``nulled_values``).
* **Plausibility bounds** — every numeric field has a range in
  :data:`NUMERIC_LIMITS` (prices share one limit, money amounts, changes,
  percentages and supplies have theirs). A value outside it, or a number too
  big for a float (``1e400``, a 400-digit integer), is *absurd*:
  in a required field (:data:`REQUIRED_NUMERIC`: price, market cap, volume) it
  quarantines the record (``absurd``, or ``negative`` below zero); in any other
  field it becomes NULL with a note, and the record is kept.
* **Not a number at all** (text such as ``"n/a"``, a bool, a list) in a numeric
  field quarantines the record (``non-numeric``).
* **Derived columns** are finite or NULL, never ±Infinity or NaN: a result that
  overflows, or falls outside :data:`DERIVED_LIMITS`, is NULL.
* **Text** — the id must be a non-empty string of at most
  :data:`ID_MAX_LENGTH` characters, without NUL bytes or lone surrogates
  (which no database can store), or the record is quarantined. NUL bytes are
  stripped from symbol, name and image, lone surrogates become U+FFFD, and a
  null stays NULL (never the text "None"); other non-text values become NULL
  with a note.
* **Quarantine** keeps the record as JSON text (NULs and non-ASCII escaped), or
  its ``repr`` when JSON cannot express it; ``record_id`` and the values quoted
  in ``reason`` are cut to a sane length.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.arrow_load import whole
from pipeline.categories import (
    LIQUIDITY_BANDS,
    MARKET_CAP_BANDS,
    PRICE_TREND_BANDS,
    classify_series,
)
from pipeline.errors import SchemaDrift
from pipeline.schema import MARKET_NUMERIC_COLUMNS, PROVIDER_DEFAULT, staging_crypto_market, staging_global_market
from pipeline.silver import derived
from pipeline.silver.data_time import FUTURE_SKEW

#: One row for the database, in a column list's order.
Row = tuple[Any, ...]
#: One /coins/markets record as parsed JSON (values of any JSON type, or worse).
Record = dict[str, Any]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

SILVER_COLUMNS = [c.name for c in staging_crypto_market.columns]
GLOBAL_COLUMNS = [c.name for c in staging_global_market.columns]

#: silver column -> API keys to try, first non-null wins.
SOURCE_KEYS = {
    "price_change_percentage_1h": ["price_change_percentage_1h_in_currency"],
    "price_change_percentage_24h": ["price_change_percentage_24h", "price_change_percentage_24h_in_currency"],
    "price_change_percentage_7d": ["price_change_percentage_7d_in_currency"],
    "price_change_percentage_30d": ["price_change_percentage_30d_in_currency"],
}
TEXT_FIELDS = ["symbol", "name", "image"]
DATE_FIELDS = ["ath_date", "atl_date", "last_updated"]

#: The longest coin id kept (CoinGecko ids are short slugs); longer ones are quarantined.
ID_MAX_LENGTH = 200
#: Values quoted in a quarantine reason or a note are cut to this many characters.
SHOWN_VALUE_CHARS = 80

PRICE_LIMIT = 1e9  # USD per coin
MONEY_LIMIT = 1e14  # USD: a coin's market cap, 24h volume or their 24h change
FDV_LIMIT = 1e15  # USD: fully diluted valuation
SUPPLY_LIMIT = 1e18  # coins
PERCENT_LIMIT = derived.PERCENT_LIMIT  # a change of ±1,000,000 % (owned by derived.py, which imports nothing of ours)
ATL_GROWTH_LIMIT = 1e12  # % above the all-time low (SHIB: ~2e7 %; an ATL of 0 gives ~1e38: not a measurement)
RANK_LIMIT = 1e7

#: Every numeric field's plausible range, [low, high] inclusive. The one table of limits.
NUMERIC_LIMITS: dict[str, tuple[float, float]] = {
    "market_cap_rank": (1.0, RANK_LIMIT),
    "current_price": (0.0, PRICE_LIMIT),
    "market_cap": (0.0, MONEY_LIMIT),
    "fully_diluted_valuation": (0.0, FDV_LIMIT),
    "total_volume": (0.0, MONEY_LIMIT),
    "high_24h": (0.0, PRICE_LIMIT),
    "low_24h": (0.0, PRICE_LIMIT),
    "price_change_24h": (-PRICE_LIMIT, PRICE_LIMIT),
    "price_change_percentage_1h": (-PERCENT_LIMIT, PERCENT_LIMIT),
    "price_change_percentage_24h": (-PERCENT_LIMIT, PERCENT_LIMIT),
    "price_change_percentage_7d": (-PERCENT_LIMIT, PERCENT_LIMIT),
    "price_change_percentage_30d": (-PERCENT_LIMIT, PERCENT_LIMIT),
    "market_cap_change_24h": (-MONEY_LIMIT, MONEY_LIMIT),
    "market_cap_change_percentage_24h": (-PERCENT_LIMIT, PERCENT_LIMIT),
    "circulating_supply": (0.0, SUPPLY_LIMIT),
    "total_supply": (0.0, SUPPLY_LIMIT),
    "max_supply": (0.0, SUPPLY_LIMIT),
    "ath": (0.0, PRICE_LIMIT),
    "ath_change_percentage": (-PERCENT_LIMIT, PERCENT_LIMIT),
    "atl": (0.0, PRICE_LIMIT),
    "atl_change_percentage": (-PERCENT_LIMIT, ATL_GROWTH_LIMIT),
}
#: Outside its range one of these quarantines the record; any other field is NULLed with a note.
REQUIRED_NUMERIC = ("current_price", "market_cap", "total_volume")
#: Dates outside [start, end) are not measurements (NULL with a note), like unparseable ones.
DATE_RANGE = (pd.Timestamp("1990-01-01"), pd.Timestamp("2100-01-01"))
#: Derived columns beyond these magnitudes are NULL (inconsistent inputs, e.g. a price far below its 24h low).
#: Declared with each column in pipeline/silver/derived.py.
DERIVED_LIMITS: dict[str, float] = {column.name: column.limit for column in derived.DERIVED}

#: Upper limits of the fields that quarantine (also used by the backfill's checks).
ABSURD_LIMITS = {
    name: NUMERIC_LIMITS[name][1] for name in ("current_price", "market_cap", "fully_diluted_valuation", "total_volume")
}
ABSURD_PERCENT = PERCENT_LIMIT
MUST_NOT_BE_NEGATIVE = list(REQUIRED_NUMERIC)

_NON_FINITE_TEXT = frozenset({"nan", "inf", "infinity"})
_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass
class Quarantined:
    run_id: str
    snapshot_at: datetime
    record_index: int
    record_id: str | None
    reason: str
    raw_record: str


@dataclass
class Nulled:
    """A value that was present in a kept record but is not a measurement, so silver holds NULL."""

    run_id: str
    snapshot_at: datetime
    record_index: int
    record_id: str | None
    field: str
    reason: str


@dataclass
class Snapshot:
    """The /coins/markets records of one bronze run, with where they came from.

    ``records`` is the parsed JSON body (a live run, an imported file, a test). A replay gives
    ``table`` instead: the columns of the run's bronze Parquet copies (``batches.bronze_snapshot``),
    and ``load_records`` reads the JSON body only if a row needs its raw text (a quarantine
    reason, a note, a sparkline not given in ``sparkline_prices``).
    """

    run_id: str
    snapshot_at: datetime
    source: str
    #: Parsed JSON: normally objects (Record), but anything may arrive and is quarantined.
    records: list[Any]
    #: When the body was received (None when unknown, e.g. an imported file); snapshot_at is the data's time.
    fetched_at: datetime | None = None
    #: Whose records these are (``source`` is why the run was made).
    provider: str = PROVIDER_DEFAULT
    #: The records as Arrow columns (every record an object), when read from a Parquet copy.
    table: dict[str, Any] | None = None
    load_records: Callable[[], Sequence[Any]] | None = None
    #: With ``table``: each row's ``sparkline_in_7d.price`` as an Arrow list<double> array (from the copy),
    #: or None to encode every sparkline from the raw records.
    sparkline_prices: Any = None
    #: With ``sparkline_prices``: True for the rows whose sparkline is read from their raw record
    #: instead (a page whose copy could not stand); None when none is.
    sparkline_from_records: BoolArray | None = None

    def columns(self) -> tuple[dict[str, Any], npt.NDArray[np.int64]]:
        """(the objects' silver keys as columns, their positions in the records): the body as Arrow, once."""
        if self.table is not None:
            return self.table, np.arange(len(self.table["id"]), dtype=np.int64)
        positions = np.fromiter((i for i, rec in enumerate(self.records) if isinstance(rec, dict)), dtype=np.int64)
        objects = self.records if len(positions) == len(self.records) else [self.records[i] for i in positions]
        return records_table(objects), positions

    def rejected(self) -> list[int]:
        """Positions of the records that are not JSON objects."""
        if self.table is not None:
            return []
        return [i for i, rec in enumerate(self.records) if not isinstance(rec, dict)]

    def raw_records(self) -> Sequence[Any]:
        """The parsed JSON records (read from bronze when only the Parquet columns were given)."""
        if self.table is not None and self.load_records is not None:
            return self.load_records()
        return self.records


#: A record whose last_updated is this much older than its snapshot is flagged stale_record
#: (PIPELINE_STALE_RECORD_HOURS passes another threshold in).
STALE_RECORD_AFTER = timedelta(hours=6)


@dataclass
class MarketsBatch:
    """Silver rows of one or more snapshots, plus what was kept out of them and why."""

    #: The silver rows as an Arrow table in ``staging_crypto_market``'s column order (:func:`silver_schema`).
    table: Any
    quarantined: list[Quarantined] = field(default_factory=list)
    duplicates_dropped: int = 0
    #: (id, snapshot_at, run_id, sparkline JSON) for kept rows, when asked for.
    sparklines: list[tuple[str, datetime, str, str]] = field(default_factory=list)
    #: Values of kept rows that were NULLed: non-finite, out of range, or text that is not text.
    nulled: list[Nulled] = field(default_factory=list)

    @property
    def nulled_values(self) -> int:
        return len(self.nulled)

    @property
    def rows(self) -> pd.DataFrame:
        """The silver rows as pandas (float NaN, Int64 rank, nullable boolean stale flag, text as objects)."""
        frame: pd.DataFrame = self.table.to_pandas(
            types_mapper={pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get
        )
        for name in self.table.column_names:
            if _is_text_type(self.table.schema.field(name).type):
                frame[name] = pd.Series(self.table.column(name).to_numpy(zero_copy_only=False), dtype=object)
        return frame

    def quarantine_table(self) -> Any:
        """The quarantined records as Arrow: ``quarantine_crypto_market``'s row (reasons and raw record kept)."""
        q = self.quarantined
        return pa.table(
            {
                "run_id": pa.array([x.run_id for x in q], type=pa.string()),
                "record_index": pa.array([x.record_index for x in q], type=pa.int64()),
                "snapshot_at": pa.array([x.snapshot_at for x in q], type=pa.timestamp("us")),
                "record_id": pa.array([x.record_id for x in q], type=pa.string()),
                "reason": pa.array([x.reason for x in q], type=pa.string()),
                "raw_record": pa.array([x.raw_record for x in q], type=pa.string()),
            }
        )


def _number(value: object) -> tuple[float, str]:
    """One API value -> (float, kind); kind is ok, null, nonfinite, overflow or bad (not a number)."""
    if value is None:
        return math.nan, "null"
    if isinstance(value, bool):
        return math.nan, "bad"
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            return math.nan, "overflow"
        if math.isfinite(number):
            return number, "ok"
        return math.nan, "nonfinite"
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").lower() in _NON_FINITE_TEXT:
            return math.nan, "nonfinite"
        try:
            number = float(text)
        except ValueError:
            return math.nan, "bad"
        if math.isfinite(number):
            return number, "ok"
        return math.nan, "overflow"  # "1e400": a finite-looking number too big for a float
    return math.nan, "bad"


def _positions(mask: BoolArray) -> list[int]:
    """Where ``mask`` is True, as Python ints (list indexes)."""
    return [int(i) for i in np.flatnonzero(mask)]


def _shown(value: object) -> str:
    """A value quoted in a reason or a note: its repr, cut to a sane length, always storable text."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - e.g. an int with more digits than Python will print
        text = f"<{type(value).__name__}>"
    return _cut(_storable(text), SHOWN_VALUE_CHARS)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _storable(text: str) -> str:
    """Text any database can store: NUL bytes and lone surrogates as backslash escapes."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if _SURROGATES.search(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def raw_record_text(record: object) -> str:
    """The quarantined record as storable text: compact JSON (NULs escaped), else its repr."""
    try:
        return json.dumps(record, separators=(",", ":"), default=str)
    except (TypeError, ValueError, OverflowError, RecursionError):
        pass
    try:
        text = repr(record)
    except Exception:  # noqa: BLE001 - a repr can fail in any way; the record must still be kept
        text = f"<unrepresentable {type(record).__name__}>"
    return _storable(text)


def _record_id(value: object) -> str | None:
    """The id to file a quarantined record under: storable and at most ID_MAX_LENGTH characters."""
    if not isinstance(value, str):
        return None
    return _cut(_storable(value), ID_MAX_LENGTH)


def _id_problem(value: str | None) -> str | None:
    """Why a coin id cannot be used (None when it can)."""
    if value is None:
        return "missing id"
    if "\x00" in value:
        return "id contains a NUL byte"
    if len(value) > ID_MAX_LENGTH:
        return f"id longer than {ID_MAX_LENGTH} characters: {len(value):,}"
    if _SURROGATES.search(value):
        return "id contains a lone surrogate (not UTF-8)"
    return None


def _sparkline(value: object) -> str | None:
    """A record's ``sparkline_in_7d`` as the JSON text silver keeps: its price points as floats (an
    integer ``5`` is written ``5.0``, as a Parquet copy holds it), a point that is no price as null."""
    if not isinstance(value, dict):
        return None
    prices = value.get("price")
    if not isinstance(prices, list) or not prices:
        return None
    low, high = NUMERIC_LIMITS["current_price"]
    if set(map(type, prices)) <= {float, int}:
        # The common case, checked in one numpy pass: every point a plain number within the limits
        # (NaN fails the comparison and takes the slow path, as does an int too large for a float).
        try:
            points = np.array(prices, dtype=np.float64)
        except OverflowError:
            points = np.array([np.nan])
        if bool(points.min() >= low) and bool(points.max() <= high):
            return _json_list(points.tolist())
    clean = [
        float(p) if isinstance(p, (int, float)) and not isinstance(p, bool) and _within(p, low, high) else None
        for p in prices
    ]
    return _json_list(clean)


def sparkline_texts(prices: Any) -> list[str | None]:
    """:func:`_sparkline` of each list of an Arrow list array (a row of a Parquet copy's
    ``sparkline_in_7d.price``), checked column-wise: the same text, without a Python list per point."""
    prices = whole(prices)
    if pa.types.is_null(prices.type):
        return [None] * len(prices)
    lengths = np.asarray(pc.fill_null(pc.list_value_length(prices), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    values = np.asarray(
        pc.list_flatten(prices).cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
    )  # NULL points as NaN
    low, high = NUMERIC_LIMITS["current_price"]
    with np.errstate(invalid="ignore"):
        good = (values >= low) & (values <= high)
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    bad_before = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(~good, out=bad_before[1:])
    bad = bad_before[starts[1:]] - bad_before[starts[:-1]]
    texts: list[str | None] = []
    for start, end, count in zip(starts[:-1].tolist(), starts[1:].tolist(), bad.tolist()):
        if start == end:
            texts.append(None)
        elif not count:
            texts.append(_json_points(values[start:end]))
        else:
            texts.append(_json_list([v if ok else None for v, ok in zip(values[start:end].tolist(), good[start:end])]))
    return texts


def _json_points(points: FloatArray) -> str:
    """:func:`_json_list` of finite float64 points, written by orjson straight from numpy."""
    out = orjson.dumps(points, option=orjson.OPT_SERIALIZE_NUMPY)
    if b"e" in out or b".0000" in out:
        return json.dumps(points.tolist(), separators=(",", ":"))
    return out.decode()


def _json_list(values: list[Any]) -> str:
    """``json.dumps(values, separators=(",", ":"))``, byte for byte; orjson (about 30x faster) when it agrees.

    orjson writes a float as Python's repr does (which json.dumps uses) except below 1e-4 and from 1e16
    (``1e-7`` for ``1e-07``, ``0.00005`` for ``5e-05``, ``1e+16`` alike but kept out for safety): such a
    list, and anything orjson refuses (an int beyond 64 bits), goes through json.dumps.
    """
    try:
        out = orjson.dumps(values)
    except orjson.JSONEncodeError:
        out = b"e"
    if b"e" in out or b".0000" in out:
        return json.dumps(values, separators=(",", ":"))
    return out.decode()


def _within(value: float, low: float, high: float) -> bool:
    try:
        return low <= float(value) <= high
    except (OverflowError, TypeError, ValueError):
        return False


def limit_records(records: list[Any], top_n: int | None) -> list[Any]:
    """The first ``top_n`` distinct coins, in API order.

    Duplicates of coins already taken and records without an id still pass,
    so silver can de-duplicate and quarantine them with a reason.
    """
    if top_n is None:
        return records
    seen: set[str] = set()
    kept = []
    for rec in records:
        coin_id = rec.get("id") if isinstance(rec, dict) else None
        if isinstance(coin_id, str) and coin_id.strip() and coin_id not in seen:
            if len(seen) >= top_n:
                continue
            seen.add(coin_id)
        kept.append(rec)
    return kept


def transform_markets(
    records: list[Any], *, run_id: str, snapshot_at: datetime, source: str, with_sparklines: bool = True
) -> MarketsBatch:
    """Validate, type and derive one snapshot of /coins/markets records."""
    return transform_snapshots([Snapshot(run_id, snapshot_at, source, records)], with_sparklines=with_sparklines)


# ---- a body's records as Arrow columns, once ------------------------------------------

#: Silver's numeric fields, in the order their checks run (and reasons are written).
NUMERIC_FIELDS = ["market_cap_rank", *MARKET_NUMERIC_COLUMNS]
#: The API keys silver reads; a bronze Parquet copy is read for these columns only.
RAW_KEYS: list[str] = list(
    dict.fromkeys(["id", *TEXT_FIELDS, *(k for n in NUMERIC_FIELDS for k in SOURCE_KEYS.get(n, [n])), *DATE_FIELDS])
)
#: The record key of the 7-day price sparkline (read only when a run keeps sparklines).
SPARKLINE_KEY = "sparkline_in_7d"
#: What Python's str.strip() strips (str.isspace), so Arrow trims ids and numbers exactly as it did.
_PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: A number Arrow's cast parses exactly as float() does; any other text goes through float() itself.
_PLAIN_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
#: CoinGecko's timestamps; Arrow's cast reads these as pandas' ISO 8601 parser does, the rest goes to pandas.
_PLAIN_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"
_NUMERIC_TYPES = ("int", "uint", "float", "double", "halffloat", "null")

#: One field of a group of records: an Arrow array, or the Python values when Arrow cannot type them (mixed).
Column = Any


def _is_text_type(kind: Any) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _normalised(table: Any, keys: list[str]) -> dict[str, Column]:
    """``keys`` of an Arrow table of records: numbers as float64, absent or all-null text as string."""
    n, names = table.num_rows, set(table.column_names)
    columns: dict[str, Column] = {}
    for key in keys:
        column = whole(table.column(key)) if key in names else pa.nulls(n)
        kind = column.type
        if key in RAW_NUMERIC_KEYS and (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)
        ):
            column = column.cast(pa.float64(), safe=False)
        elif key not in RAW_NUMERIC_KEYS and pa.types.is_null(kind):
            column = column.cast(pa.string())
        columns[key] = column
    return columns


RAW_NUMERIC_KEYS = frozenset(k for n in NUMERIC_FIELDS for k in SOURCE_KEYS.get(n, [n]))


#: What pyarrow may raise when it cannot type a column of Python values.
_UNTYPABLE = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, UnicodeError, TypeError)


def records_table(records: list[Record]) -> dict[str, Column]:
    """JSON objects -> one column per silver key, typed by Arrow once (a struct array: keys of every record).

    A column Arrow cannot type as one kind (text beside numbers, an integer beyond 64 bits, a
    lone surrogate) keeps its Python values. pyarrow reads a bool among floats as 1.0 or 0.0, so a
    float column holding a bool keeps its Python values too (a bool is no number: quarantine).
    """
    try:
        table = pa.Table.from_struct_array(pa.array(records)) if records else None
    except _UNTYPABLE:
        table = None
    columns: dict[str, Column] = {}
    for key in RAW_KEYS:
        if table is not None and key not in table.column_names:
            columns.update(_normalised(table, [key]))  # absent from every record: NULL
            continue
        if table is not None:
            column = table.column(key)
            if not (pa.types.is_floating(column.type) and any(isinstance(rec.get(key), bool) for rec in records)):
                columns.update(_normalised(table.select([key]), [key]))
                continue
        values = [rec.get(key) for rec in records]
        try:
            columns.update(_normalised(pa.table({key: pa.array(values)}), [key]))
            if pa.types.is_floating(columns[key].type) and any(isinstance(v, bool) for v in values):
                columns[key] = values
        except _UNTYPABLE:
            columns[key] = values
    return columns


def page_columns(table: Any) -> dict[str, Column]:
    """One page's Parquet copy (a pyarrow Table of its records) as silver columns."""
    return _normalised(table, RAW_KEYS)


def merge_columns(parts: list[dict[str, Column]]) -> dict[str, Column]:
    """Several pages' silver columns (a Parquet copy's, or :func:`records_table`'s) as one snapshot's.

    A key whose pages are Arrow arrays of one type is one Arrow array; otherwise its Python values,
    as :func:`records_table` keeps a column Arrow cannot type as one kind (the transform reads both
    forms alike: a page's values are checked the same whichever form it arrives in).
    """
    merged: dict[str, Column] = {}
    for key in RAW_KEYS:
        columns = [part[key] for part in parts]
        if len(columns) == 1:
            merged[key] = columns[0]
        elif all(not isinstance(c, list) for c in columns) and len({c.type for c in columns}) == 1:
            merged[key] = pa.concat_arrays([whole(c) for c in columns])
        else:
            merged[key] = [v for c in columns for v in _values(c)]
    return merged


#: The Arrow type sparkline prices are read as (one list of float64 points per record).
PRICE_LISTS = pa.list_(pa.float64())


def parquet_sparkline_prices(table: Any) -> Any | None:
    """A Parquet copy's ``sparkline_in_7d.price`` per row as list<double> (NULL where a record has
    none), or None when the copy holds it in a shape other than lists of numbers (read the records)."""
    n = table.num_rows
    column = whole(table.column(SPARKLINE_KEY)) if SPARKLINE_KEY in table.column_names else pa.nulls(n)
    if pa.types.is_null(column.type):
        return pa.nulls(n, PRICE_LISTS)
    if not pa.types.is_struct(column.type):
        return None
    if column.type.get_field_index("price") < 0:
        return pa.nulls(n, PRICE_LISTS)
    prices = pc.struct_field(column, "price")
    if pa.types.is_null(prices.type):
        return pa.nulls(n, PRICE_LISTS)
    if not (pa.types.is_list(prices.type) or pa.types.is_large_list(prices.type)):
        return None
    item = prices.type.value_type
    if not (pa.types.is_integer(item) or pa.types.is_floating(item) or pa.types.is_null(item)):
        return None
    return prices.cast(PRICE_LISTS, safe=False)


def limit_columns(columns: dict[str, Column], top_n: int | None) -> tuple[dict[str, Column], Any] | None:
    """:func:`limit_records` column-wise: (columns, kept positions); None when the ids are not all text.

    A snapshot of at most ``top_n`` records keeps them all (it cannot hold more distinct coins than
    records), as a run that asked for ``top_n`` coins usually gets: no ids are looked at then.
    """
    ids = columns["id"]
    n = len(ids)
    if top_n is None or n <= top_n:
        return columns, np.arange(n)
    if isinstance(ids, list) or not _is_text_type(ids.type):
        return None
    valid = _filled(pc.greater(pc.utf8_length(pc.utf8_trim(ids, characters=_PY_WHITESPACE)), 0))
    codes = _codes(ids)
    first = np.full(codes.max() + 1 if n else 0, n, dtype=np.int64)
    positions = np.flatnonzero(valid)
    np.minimum.at(first, codes[positions], positions)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    kept = np.flatnonzero(~valid | (rank[codes] < top_n))
    if len(kept) == n:
        return columns, kept
    take = pa.array(kept)
    return {k: ([v[i] for i in kept] if isinstance(v, list) else v.take(take)) for k, v in columns.items()}, kept


def _filled(mask: Any) -> BoolArray:
    """An Arrow boolean array as numpy, NULL as False."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _codes(values: Any) -> npt.NDArray[np.int64]:
    """Dense integer codes of an Arrow array's values (equal values, equal codes; NULL gets one too)."""
    encoded = pc.dictionary_encode(whole(values), null_encoding="encode")
    return np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)


def _present(column: Column) -> BoolArray:
    if isinstance(column, list):
        return np.fromiter((v is not None for v in column), dtype=bool, count=len(column))
    return ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _values(column: Column) -> list[Any]:
    return column if isinstance(column, list) else column.to_pylist()


def _coalesced(columns: dict[str, Column], keys: list[str]) -> Column:
    """The first non-null of several keys, value by value."""
    first = columns[keys[0]]
    rest = [columns[k] for k in keys[1:]]
    if all(not isinstance(c, list) and c.type == first.type for c in [first, *rest]) and not isinstance(first, list):
        return pc.coalesce(first, *rest)
    values = list(_values(first))
    for column in rest:
        values = [v if v is not None else w for v, w in zip(values, _values(column))]
    return values


# ---- each kind of field, column-wise ---------------------------------------------------


def _parse_numbers(column: Column) -> tuple[FloatArray, BoolArray, BoolArray, BoolArray]:
    """Floats from API values; numbers sent as strings are accepted.

    Returns (values, bad, nonfinite, overflow) as numpy arrays: ``values`` is NaN wherever the
    value is missing or unusable; ``bad`` marks a present value that is not a number at all (text
    such as "n/a", a bool, a list); ``nonfinite`` a NaN/±Infinity (number or text); ``overflow`` a
    number too big for a float. Float columns stay in C; text is parsed by Arrow where its form is
    plain and by ``float()`` only for the rest (e.g. "1_000", "n/a").
    """
    n = len(column)
    none = np.zeros(n, dtype=bool)
    if isinstance(column, list):
        return _parse_values(column)
    if pa.types.is_floating(column.type):
        values = np.array(column.to_numpy(zero_copy_only=False), dtype=np.float64)
        nonfinite = _present(column) & ~np.isfinite(values)
        values[nonfinite] = np.nan
        return values, none, nonfinite, none.copy()
    if not _is_text_type(column.type):  # bools, lists, objects: never a number
        return np.full(n, np.nan), _present(column), none, none.copy()
    text = pc.utf8_trim(column, characters=_PY_WHITESPACE)
    nonfinite = _filled(
        pc.is_in(pc.utf8_lower(pc.utf8_ltrim(text, characters="+-")), value_set=pa.array(["nan", "inf", "infinity"]))
    )
    plain = _filled(pc.match_substring_regex(text, _PLAIN_NUMBER))
    values = np.array(pc.if_else(plain, text, None).cast(pa.float64()).to_numpy(zero_copy_only=False))
    overflow = plain & np.isinf(values)
    values[overflow] = np.nan
    other = np.flatnonzero(_present(column) & ~plain & ~nonfinite)
    bad = none.copy()
    if len(other):
        more = _parse_values(column.take(pa.array(other)).to_pylist())
        values[other], bad[other], overflow[other] = more[0], more[1], more[3]
        nonfinite[other] |= more[2]
    return values, bad, nonfinite, overflow


def _parse_values(raw: list[Any]) -> tuple[FloatArray, BoolArray, BoolArray, BoolArray]:
    """:func:`_number` for each value: the mixed columns Arrow cannot type, and odd text."""
    parsed = [_number(value) for value in raw]
    values = np.array([p[0] for p in parsed], dtype=np.float64)
    kinds = np.array([p[1] for p in parsed], dtype=object)
    return values, kinds == "bad", kinds == "nonfinite", kinds == "overflow"


def _clean_texts(raw: list[Any]) -> tuple[list[str | None], list[int]]:
    """symbol/name/image values that are not all text: NULs stripped, lone surrogates replaced,
    finite numbers as their text, anything else NULL (its position returned)."""
    values: list[str | None] = []
    dropped: list[int] = []
    for i, value in enumerate(raw):
        if value is None or isinstance(value, str):
            values.append(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            values.append(str(value))
        else:  # NaN, a bool, a list, an object: not text
            values.append(None)
            dropped.append(i)
    values = [v if v is None else _SURROGATES.sub("\ufffd", v.replace("\x00", "")) for v in values]
    return values, dropped


def _texts(column: Column) -> tuple[Any, list[int]]:
    """(clean text as an Arrow string array, positions whose non-text value became NULL)."""
    if not isinstance(column, list) and _is_text_type(column.type):
        return pc.replace_substring(column, "\x00", ""), []
    values, dropped = _clean_texts(_values(column))
    return pa.array(values, type=pa.string()), dropped


def _ids(column: Column) -> tuple[Any, dict[int, str]]:
    """(ids stripped, NULL when blank; {position: why the id cannot be used})."""
    if not isinstance(column, list) and _is_text_type(column.type):
        stripped = pc.utf8_trim(column, characters=_PY_WHITESPACE)
        lengths = pc.utf8_length(stripped)
        ids = pc.if_else(pc.equal(lengths, 0), None, stripped)
        problems: dict[int, str] = {int(i): "missing id" for i in _positions(~_present(ids))}
        for i in _positions(_filled(pc.match_substring(ids, "\x00"))):
            problems[int(i)] = "id contains a NUL byte"
        for i in _positions(_filled(pc.greater(lengths, ID_MAX_LENGTH))):
            problems.setdefault(int(i), _id_problem(ids[int(i)].as_py()) or "")
        return ids, problems
    raw = _values(column)
    values = [v.strip() if isinstance(v, str) and v.strip() else None for v in raw]
    problems = {}
    for i, value in enumerate(values):
        problem = _id_problem(value)
        if problem:
            problems[i] = problem
    return pa.array([None if i in problems else v for i, v in enumerate(values)], type=pa.string()), problems


def _parse_dates(column: Column) -> tuple[npt.NDArray[np.datetime64], BoolArray]:
    """ISO 8601 text -> naive UTC timestamps; (dates, unusable) where ``unusable`` marks a
    present value that is not an ISO date between DATE_RANGE's ends (it becomes NULL)."""
    n = len(column)
    dates = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    if not isinstance(column, list) and _is_text_type(column.type):
        plain = _filled(pc.match_substring_regex(column, _PLAIN_TIME))
        rest = np.flatnonzero(_present(column) & ~plain)
        try:
            cast = pc.if_else(plain, column, None).cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
            dates = np.array(cast.to_numpy(zero_copy_only=False), dtype="datetime64[us]")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. 2023-02-30: pandas judges the column
            rest = np.flatnonzero(_present(column))
        if len(rest):
            dates[rest] = _pandas_dates(column.take(pa.array(rest)).to_pylist())
    else:
        dates = _pandas_dates(_values(column))
    in_range = (dates >= np.datetime64(DATE_RANGE[0])) & (dates < np.datetime64(DATE_RANGE[1]))
    dates[~in_range] = np.datetime64("NaT")
    if isinstance(column, list):
        present = pd.Series(column, dtype=object).notna().to_numpy()  # a NaN was never a value here
    else:
        present = _present(column)
        if pa.types.is_floating(column.type):
            present &= ~np.isnan(np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64))
    return dates, present & np.isnat(dates)


def _pandas_dates(raw: list[Any]) -> npt.NDArray[np.datetime64]:
    objects = pd.Series(raw, dtype=object)
    is_text = np.fromiter((isinstance(v, str) for v in objects), dtype=bool, count=len(objects))
    parsed = pd.to_datetime(objects.where(is_text, None), errors="coerce", utc=True, format="ISO8601")
    return np.array(parsed.dt.tz_localize(None).astype("datetime64[us]").to_numpy(), dtype="datetime64[us]")


# ---- the transform ---------------------------------------------------------------------


@dataclass
class _Group:
    """Records of one or more snapshots whose columns have the same Arrow types, processed together."""

    columns: dict[str, list[Column]] = field(default_factory=dict)
    objs: list[npt.NDArray[np.int64]] = field(default_factory=list)

    def add(self, columns: dict[str, Column], objs: npt.NDArray[np.int64]) -> None:
        for key, column in columns.items():
            self.columns.setdefault(key, []).append(column)
        self.objs.append(objs)

    def column(self, key: str) -> Column:
        """One key's values over the group's records, numbers as float64 (Arrow) or as sent (mixed)."""
        parts = self.columns[key]
        if isinstance(parts[0], list):
            return [v for part in parts for v in part]
        return _normalised(pa.table({key: pa.concat_arrays(parts) if len(parts) > 1 else parts[0]}), [key])[key]


def _signature(columns: dict[str, Column]) -> tuple[str, ...]:
    return tuple("mixed" if isinstance(c, list) else str(c.type) for c in columns.values())


class _Origin:
    """Where each record came from: object number -> (snapshot, index in its records), and the raw record
    (read only for the rows that need their text: a quarantine, a note, a sparkline)."""

    def __init__(self, snapshots: list[Snapshot]) -> None:
        self.snapshots = snapshots
        self.starts: list[int] = []
        self.indexes: list[npt.NDArray[np.int64]] = []
        # One snapshot's raw records at a time, and the records asked for: a parsed page of 250 coins
        # takes ~1.5 MB, and a batch whose every run had a quarantined record held every run's page.
        self._records_of: tuple[int, Sequence[Any]] | None = None
        self._asked: dict[int, Record] = {}

    def add(self, start: int, indexes: npt.NDArray[np.int64]) -> None:
        self.starts.append(start)
        self.indexes.append(indexes)

    def locate(self, obj: int) -> tuple[int, int]:
        snap = int(np.searchsorted(self.starts, obj, side="right")) - 1
        return snap, int(self.indexes[snap][obj - self.starts[snap]])

    def record(self, obj: int) -> Record:
        if obj not in self._asked:
            snap, index = self.locate(obj)
            self._asked[obj] = self.records_of(snap)[index]
        return self._asked[obj]

    def records_of(self, snap: int) -> Sequence[Any]:
        if self._records_of is None or self._records_of[0] != snap:
            self._records_of = (snap, self.snapshots[snap].raw_records())
        return self._records_of[1]

    def raw(self, obj: int, keys: list[str]) -> Any:
        record = self.record(obj)
        for key in keys:
            value = record.get(key)
            if value is not None:
                return value
        return None


def transform_snapshots(
    snapshots: list[Snapshot],
    *,
    with_sparklines: bool = False,
    stale_after: timedelta | None = STALE_RECORD_AFTER,
    future_skew: timedelta = FUTURE_SKEW,
) -> MarketsBatch:
    """Validate, type and derive the records of several snapshots in one pass, column by column.

    A record that fails validation (an unusable id, a negative or absurd price/
    volume/cap, a number that is not a number) is quarantined with every reason
    found; the others go on. A non-finite number in any field, or an implausible
    value in an optional field, becomes NULL with a note (``MarketsBatch.nulled``).
    Duplicate ids within a snapshot (rankings shift while paging) keep the
    freshest ``last_updated``, then the earliest position; a ``last_updated`` later
    than the fetch (``fetched_at``; an imported body without one is not judged) plus
    ``future_skew`` never wins: it ranks like a missing one. A record whose ``last_updated`` is more than
    ``stale_after`` older than its snapshot is kept with ``stale_record`` True
    (NULL when it has no ``last_updated``; ``stale_after=None`` leaves the column NULL). Sparklines are 168
    floats a row and only the newest is ever shown, so they are encoded only
    when asked for.

    Snapshots whose columns share Arrow types are checked as one table; Python touches only the
    rows that need text written about them (quarantine reasons, notes) and columns Arrow cannot type.
    """
    quarantined: list[Quarantined] = []
    origin = _Origin(snapshots)
    groups: dict[tuple[str, ...], _Group] = {}
    total = 0
    for snap in snapshots:
        columns, indexes = snap.columns()
        for index in snap.rejected():
            quarantined.append(
                Quarantined(
                    snap.run_id,
                    snap.snapshot_at,
                    index,
                    None,
                    "record is not a JSON object",
                    raw_record_text(snap.records[index]),
                )
            )
        origin.add(total, indexes)
        count = len(indexes)
        if count:
            groups.setdefault(_signature(columns), _Group()).add(columns, np.arange(total, total + count))
        total += count
    snap_of = np.repeat(np.arange(len(snapshots)), [len(i) for i in origin.indexes]) if snapshots else np.zeros(0, int)

    reasons: dict[int, list[str]] = {}
    notes: list[tuple[int, str, str]] = []  # (object number, field, reason) of values set to NULL
    parts = []
    for group in groups.values():
        objs = np.concatenate(group.objs)
        table, bad, found = _check(group, objs, origin)
        parts.append(table)
        for obj, why in bad:
            reasons.setdefault(obj, []).append(why)
        notes.extend(found)
    typed = _empty_typed() if not parts else pa.concat_tables(parts)
    if len(parts) > 1:
        typed = typed.take(pc.sort_indices(typed, [("_obj", "ascending")]))
    objs = np.asarray(typed.column("_obj").to_numpy(), dtype=np.int64)

    for obj in sorted(reasons):
        snap_no, index = origin.locate(obj)
        snap = snapshots[snap_no]
        quarantined.append(
            Quarantined(
                snap.run_id,
                snap.snapshot_at,
                index,
                _record_id(origin.raw(obj, ["id"])),
                "; ".join(reasons[obj]),
                raw_record_text(origin.record(obj)),
            )
        )
    good = ~np.isin(objs, np.fromiter(reasons, dtype=np.int64, count=len(reasons)))
    ids_by_obj: dict[int, str | None] = {}
    note_objs = {obj for obj, _, _ in notes}
    if note_objs:
        positions = np.flatnonzero(np.isin(objs, np.fromiter(note_objs, dtype=np.int64)))
        ids_by_obj = {int(objs[i]): typed.column("id")[int(i)].as_py() for i in positions}
    typed = typed.filter(pa.array(good))
    objs = objs[good]
    snaps = snap_of[objs]

    # De-duplicate: per snapshot and id, the freshest trusted last_updated, then the earliest record.
    # A timestamp from the future (after the fetch plus a small skew) ranks like a missing one.
    before = len(objs)
    trusted_until = np.array(
        [s.fetched_at + future_skew if s.fetched_at is not None else np.datetime64("NaT") for s in snapshots],
        dtype="datetime64[us]",
    )
    ranked = np.asarray(typed.column("last_updated").to_numpy(zero_copy_only=False), dtype="datetime64[us]")
    limit = trusted_until[snaps] if len(snapshots) else np.zeros(0, dtype="datetime64[us]")
    usable = ~np.isnat(ranked) & (np.isnat(limit) | (ranked <= limit))
    newest_first = np.where(usable, -ranked.astype(np.int64), np.iinfo(np.int64).max)
    codes = _codes(typed.column("id")) if before else np.zeros(0, dtype=np.int64)
    order = np.lexsort((objs, newest_first, codes, snaps))
    pairs = snaps[order] * (int(codes.max()) + 1 if before else 1) + codes[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = pairs[1:] != pairs[:-1]
    kept = np.sort(order[first])
    duplicates = before - len(kept)
    if duplicates:
        typed = typed.take(pa.array(kept))
        objs, snaps = objs[kept], snaps[kept]

    table = _silver_table(typed, snaps, snapshots, stale_after)

    nulled = []
    if notes:
        kept_objs = set(objs.tolist())
        for obj, name, reason in notes:
            if obj in kept_objs:
                snap_no, index = origin.locate(obj)
                snap = snapshots[snap_no]
                nulled.append(Nulled(snap.run_id, snap.snapshot_at, index, ids_by_obj.get(obj), name, reason))
        nulled.sort(key=lambda x: (x.snapshot_at, x.run_id, x.record_index))

    sparklines = _kept_sparklines(origin, objs, snaps, table.column("id")) if with_sparklines else []
    quarantined.sort(key=lambda q: (q.snapshot_at, q.run_id, q.record_index))
    return MarketsBatch(
        table=table, quarantined=quarantined, duplicates_dropped=duplicates, sparklines=sparklines, nulled=nulled
    )


def _kept_sparklines(
    origin: _Origin, objs: npt.NDArray[np.int64], snaps: npt.NDArray[np.int64], ids: Any
) -> list[tuple[str, datetime, str, str]]:
    """(id, snapshot_at, run_id, sparkline JSON) of the kept rows that have one: from a snapshot's
    ``sparkline_prices`` column-wise where given, else from each row's raw record."""
    if not len(objs):
        return []
    # Object numbers run on across snapshots, so one flat array gives each its index (no per-row search);
    # kept objects are in order, so each snapshot's rows are one run of them.
    positions = np.concatenate(origin.indexes)[objs]
    bounds = np.searchsorted(snaps, np.arange(len(origin.snapshots) + 1))
    texts: list[str | None] = [None] * len(objs)
    for snap_no, snap in enumerate(origin.snapshots):
        low, high = int(bounds[snap_no]), int(bounds[snap_no + 1])
        rows = positions[low:high]
        if not len(rows):
            continue
        from_copy = np.full(len(rows), snap.sparkline_prices is not None)
        if snap.sparkline_from_records is not None:
            from_copy &= ~snap.sparkline_from_records[rows]
        if from_copy.any():
            chosen = np.flatnonzero(from_copy)
            for k, text in zip(chosen.tolist(), sparkline_texts(snap.sparkline_prices.take(pa.array(rows[chosen])))):
                texts[low + k] = text
        for k in np.flatnonzero(~from_copy).tolist():
            texts[low + k] = _sparkline(origin.records_of(snap_no)[int(rows[k])].get(SPARKLINE_KEY))
    shown = [(s.snapshot_at, s.run_id) for s in origin.snapshots]
    return [
        (coin_id, *shown[snap_no], text)
        for coin_id, snap_no, text in zip(ids.to_pylist(), snaps.tolist(), texts)
        if text is not None
    ]


def _check(
    group: _Group, objs: npt.NDArray[np.int64], origin: _Origin
) -> tuple[Any, list[tuple[int, str]], list[tuple[int, str, str]]]:
    """Validate and type one group: (typed table, [(object, reason)], [(object, field, note)])."""
    bad: list[tuple[int, str]] = []
    notes: list[tuple[int, str, str]] = []
    out: dict[str, Any] = {"_obj": pa.array(objs)}

    ids, problems = _ids(group.column("id"))
    bad.extend((int(objs[i]), why) for i, why in sorted(problems.items()))
    out["id"] = ids
    for name in TEXT_FIELDS:
        texts, dropped = _texts(group.column(name))
        for i in dropped:
            obj = int(objs[i])
            notes.append((obj, name, f"not text {name}: {_shown(origin.raw(obj, [name]))}"))
        out[name] = texts

    for name in NUMERIC_FIELDS:
        keys = SOURCE_KEYS.get(name, [name])
        column = _coalesced({k: group.column(k) for k in keys}, keys) if len(keys) > 1 else group.column(keys[0])
        values, nonnumeric, nonfinite, overflow = _parse_numbers(column)
        low, high = NUMERIC_LIMITS[name]
        with np.errstate(invalid="ignore"):
            below, above = values < low, values > high  # NaN compares False
        for i in _positions(nonnumeric):
            obj = int(objs[i])
            bad.append((obj, f"non-numeric {name}: {_shown(origin.raw(obj, keys))}"))
        if name in REQUIRED_NUMERIC:
            for i in _positions(above):
                bad.append((int(objs[i]), f"absurd {name}: {float(values[i])!r}"))
            for i in _positions(overflow):
                obj = int(objs[i])
                bad.append((obj, f"absurd {name}: {_shown(origin.raw(obj, keys))}"))
            for i in _positions(below):
                bad.append((int(objs[i]), f"negative {name}: {float(values[i])!r}"))
        else:
            for i in _positions(below | above | overflow):
                obj = int(objs[i])
                shown = _shown(origin.raw(obj, keys))
                notes.append((obj, name, f"out of range {name}: {shown} (plausible: {low:g} to {high:g})"))
        for i in _positions(nonfinite):
            obj = int(objs[i])
            notes.append((obj, name, f"non-finite {name}: {_shown(origin.raw(obj, keys))}"))
        values[below | above] = np.nan
        out[name] = pa.array(values)  # NaN for NULL until the silver table is built

    for name in DATE_FIELDS:
        dates, unusable = _parse_dates(group.column(name))
        for i in _positions(unusable):
            obj = int(objs[i])
            notes.append((obj, name, f"not a date {name}: {_shown(origin.raw(obj, [name]))}"))
        out[name] = pa.array(dates, type=pa.timestamp("us"))
    return pa.table(out), bad, notes


def _empty_typed() -> Any:
    fields = [("_obj", pa.int64()), ("id", pa.string())]
    fields += [(n, pa.string()) for n in TEXT_FIELDS] + [(n, pa.float64()) for n in NUMERIC_FIELDS]
    fields += [(n, pa.timestamp("us")) for n in DATE_FIELDS]
    return pa.schema(fields).empty_table()


#: Arrow types of silver's columns (``staging_crypto_market``), in its order.
SILVER_TYPES: dict[str, Any] = {}


def _silver_type(name: str) -> Any:
    if name in ("snapshot_at", "fetched_at", *DATE_FIELDS):
        return pa.timestamp("us")
    if name == "market_cap_rank":
        return pa.int64()
    if name == "stale_record":
        return pa.bool_()
    if name in NUMERIC_FIELDS or name in DERIVED_LIMITS:
        return pa.float64()
    return pa.string()


def silver_schema() -> Any:
    """The Arrow schema of silver rows: ``staging_crypto_market``'s columns, in order."""
    return pa.schema([(name, _silver_type(name)) for name in SILVER_COLUMNS])


def _nullable(values: FloatArray) -> Any:
    """float64 Arrow array with NULL where numpy holds NaN."""
    return pa.array(values, mask=np.isnan(values), type=pa.float64())


def _silver_table(
    typed: Any, snaps: npt.NDArray[np.int64], snapshots: list[Snapshot], stale_after: timedelta | None
) -> Any:
    """The kept rows in silver's column order: snapshot columns, numbers with NULL for NaN, derived
    columns, categories and stale flags."""
    take = pa.array(snaps, type=pa.int64())

    def per_snapshot(values: list[Any], kind: Any) -> Any:
        return pa.array(values, type=kind).take(take)

    columns: dict[str, Any] = {
        "snapshot_at": per_snapshot([s.snapshot_at for s in snapshots], pa.timestamp("us")),
        "run_id": per_snapshot([s.run_id for s in snapshots], pa.string()),
        "source": per_snapshot([s.source for s in snapshots], pa.string()),
        "provider": per_snapshot([s.provider for s in snapshots], pa.string()),
        "fetched_at": per_snapshot([s.fetched_at for s in snapshots], pa.timestamp("us")),
    }
    for name in ["id", *TEXT_FIELDS, *DATE_FIELDS]:
        columns[name] = typed.column(name)
    numbers = {name: np.asarray(typed.column(name).to_numpy(), dtype=np.float64) for name in NUMERIC_FIELDS}
    for name in MARKET_NUMERIC_COLUMNS:
        columns[name] = _nullable(numbers[name])
    rank = np.round(numbers["market_cap_rank"])
    columns["market_cap_rank"] = pa.array(np.nan_to_num(rank).astype(np.int64), mask=np.isnan(rank), type=pa.int64())
    derived_values = derived.compute_all(numbers)
    for name, values in derived_values.items():
        columns[name] = _nullable(values)
    for name, source, bands in (
        ("market_cap_category", numbers["market_cap"], MARKET_CAP_BANDS),
        ("liquidity_category", derived_values["volume_to_mcap_ratio"], LIQUIDITY_BANDS),
        ("price_trend_category", numbers["price_change_percentage_24h"], PRICE_TREND_BANDS),
    ):
        columns[name] = pa.array(classify_series(pd.Series(source), bands).to_numpy(), type=pa.string())
    columns["stale_record"] = _stale_flags(columns["last_updated"], columns["snapshot_at"], stale_after)
    n = typed.num_rows
    return pa.table(
        [columns[name] if name in columns else pa.nulls(n, _silver_type(name)) for name in SILVER_COLUMNS],
        schema=silver_schema(),
    )


def _stale(
    updated: npt.NDArray[np.datetime64], taken: npt.NDArray[np.datetime64], stale_after: timedelta
) -> tuple[BoolArray, BoolArray]:
    """(stale, known): stale where ``updated`` is more than ``stale_after`` before ``taken``."""
    known = ~np.isnat(updated) & ~np.isnat(taken)
    return updated < taken - np.timedelta64(stale_after), known


def _stale_flags(last_updated: Any, snapshot_at: Any, stale_after: timedelta | None) -> Any:
    """:func:`stale_flags` for Arrow columns."""
    n = len(last_updated)
    if stale_after is None or not n:
        return pa.nulls(n, pa.bool_())
    stale, known = _stale(
        np.asarray(last_updated.to_numpy(zero_copy_only=False), dtype="datetime64[us]"),
        np.asarray(snapshot_at.to_numpy(zero_copy_only=False), dtype="datetime64[us]"),
        stale_after,
    )
    return pa.array(stale, mask=~known, type=pa.bool_())


def stale_flags(last_updated: pd.Series, snapshot_at: pd.Series, stale_after: timedelta | None) -> pd.Series:
    """True where ``last_updated`` is more than ``stale_after`` before the snapshot, False where
    it is not, NULL where it is unknown (or no threshold is given)."""
    flags = pd.Series(pd.NA, index=last_updated.index, dtype="boolean")
    if stale_after is None or not len(last_updated):
        return flags
    stale, known = _stale(
        last_updated.to_numpy(dtype="datetime64[us]"), snapshot_at.to_numpy(dtype="datetime64[us]"), stale_after
    )
    flags[known] = stale[known]
    return flags


def add_derived_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of a silver frame with the derived columns (:data:`derived.DERIVED`) and the three
    categories recomputed: the same code as the transform's, for a pandas frame."""
    frame = frame.copy()
    numbers = {
        str(c): frame[c].to_numpy(dtype="float64", na_value=np.nan) for c in frame.columns if c in NUMERIC_FIELDS
    }
    for name, values in derived.compute_all(numbers).items():
        frame[name] = pd.Series(values, index=frame.index)
    frame["market_cap_category"] = classify_series(frame["market_cap"], MARKET_CAP_BANDS)
    frame["liquidity_category"] = classify_series(frame["volume_to_mcap_ratio"], LIQUIDITY_BANDS)
    frame["price_trend_category"] = classify_series(frame["price_change_percentage_24h"], PRICE_TREND_BANDS)
    return frame


#: /global fields' plausible ranges; outside them (or non-finite) the value is NULL.
GLOBAL_LIMITS = {
    "total_market_cap": (1e6, 1e16),  # a whole market below $1M is no measurement; above it, divisions blow up
    "total_volume": (0.0, 1e16),
    "market_cap_change_percentage_24h": (-PERCENT_LIMIT, PERCENT_LIMIT),
    "dominance_pct": (0.0, 100.0),
    "count": (0.0, 1e9),
    "updated_at": (0.0, 4102444800.0),  # seconds since 1970, up to 2100-01-01
}


def _mapping(value: object) -> dict[Any, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def transform_global(
    body: object,
    *,
    run_id: str,
    snapshot_at: datetime,
    source: str,
    vs_currency: str,
    coins_at: datetime | None = None,
    fetched_at: datetime | None = None,
    max_age_minutes: float = 30.0,
) -> dict[str, Any]:
    """One silver row from a /global body; SchemaDrift if it is not the documented shape.

    Same rules as the markets: a non-finite or implausible number is NULL.
    ``coins_at`` is when the coins of the same snapshot were last updated (their newest
    ``last_updated``; ``snapshot_at`` when unknown): a /global whose ``updated_at`` is more
    than ``max_age_minutes`` away from it describes another market and is kept but marked
    ``usable = False`` with the reason (``global_usability``). Pure: no clock, no I/O.
    """
    data = _mapping(body).get("data")
    if not isinstance(data, dict) or not isinstance(data.get("total_market_cap"), dict):
        raise SchemaDrift("/global body has no data.total_market_cap object")

    def number(value: object, limits: str) -> float | None:
        result, kind = _number(value)
        low, high = GLOBAL_LIMITS[limits]
        return result if kind == "ok" and low <= result <= high else None

    def count(value: object) -> int | None:
        result = number(value, "count") if isinstance(value, (int, float)) else None
        return None if result is None else int(result)

    percentages = {
        str(key): number(value, "dominance_pct") for key, value in _mapping(data.get("market_cap_percentage")).items()
    }
    raw_updated = data.get("updated_at")
    updated = number(raw_updated, "updated_at") if isinstance(raw_updated, (int, float)) else None
    volumes = _mapping(data.get("total_volume"))
    updated_at = datetime.fromtimestamp(updated, UTC).replace(tzinfo=None) if updated is not None else None
    total_market_cap = number(data["total_market_cap"].get(vs_currency), "total_market_cap")
    usable, reason = global_usability(updated_at, coins_at or snapshot_at, max_age_minutes, total_market_cap)
    return {
        "snapshot_at": snapshot_at,
        "run_id": run_id,
        "source": source,
        "vs_currency": vs_currency,
        "total_market_cap": total_market_cap,
        "total_volume": number(volumes.get(vs_currency), "total_volume"),
        "market_cap_change_percentage_24h": number(
            data.get("market_cap_change_percentage_24h_usd"), "market_cap_change_percentage_24h"
        ),
        "active_cryptocurrencies": count(data.get("active_cryptocurrencies")),
        "markets": count(data.get("markets")),
        "btc_dominance_pct": percentages.get("btc"),
        "eth_dominance_pct": percentages.get("eth"),
        "market_cap_percentage": _storable(json.dumps(percentages, separators=(",", ":"), sort_keys=True)),
        "updated_at": updated_at,
        "fetched_at": fetched_at,
        "usable": usable,
        "unusable_reason": reason,
    }


def _age_text(seconds: float) -> str:
    minutes = seconds / 60.0
    if minutes < 90:
        return f"{minutes:.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.0f} days"


def global_usability(
    updated_at: datetime | None, coins_at: datetime | None, max_age_minutes: float, total_market_cap: float | None = 1.0
) -> tuple[bool, str | None]:
    """May this /global stand for the whole market of the coins' snapshot? (usable, reason if not).

    Not when it has no plausible total market cap, no update time, or was updated more
    than ``max_age_minutes`` before (or after) the coins: "/global is 5.5 h older than the coins".
    """
    if total_market_cap is None:
        return False, "/global has no plausible total market cap"
    if updated_at is None:
        return False, "/global has no update time, so its age is unknown"
    if coins_at is None:
        return True, None
    age = (coins_at - updated_at).total_seconds()
    if abs(age) <= max_age_minutes * 60:
        return True, None
    return False, f"/global is {_age_text(abs(age))} {'older' if age > 0 else 'newer'} than the coins"


#: Longest symbol kept from /global's market_cap_percentage keys.
DOMINANCE_SYMBOL_CHARS = 200


def global_dominance_rows(row: dict[str, Any]) -> list[tuple[datetime, str, float]]:
    """(snapshot_at, symbol, dominance_pct) per coin listed in a transformed /global row's
    ``market_cap_percentage`` (CoinGecko's own dominance, keyed by lower-case symbol)."""
    try:
        percentages = json.loads(row.get("market_cap_percentage") or "{}")
    except ValueError:
        return []
    if not isinstance(percentages, dict):
        return []
    rows: dict[str, tuple[datetime, str, float]] = {}
    for key, value in percentages.items():
        symbol = _storable(str(key)).strip().lower()[:DOMINANCE_SYMBOL_CHARS]
        if symbol and isinstance(value, (int, float)) and math.isfinite(value) and symbol not in rows:
            rows[symbol] = (row["snapshot_at"], symbol, float(value))
    return list(rows.values())


def frame_to_tuples(frame: pd.DataFrame, columns: list[str], *, datetime_text: bool = False) -> list[Row]:
    """Rows as plain Python tuples for the loader: NaN/NaT become None, ints stay ints.

    Column-wise numpy conversions: this runs for every silver row, so no per-value Python.
    ``datetime_text`` gives SQLite's 'YYYY-MM-DD HH:MM:SS.ffffff' text directly.
    """
    converted: list[list[Any]] = []
    for name in columns:
        col = frame[name]
        values: npt.NDArray[np.object_]
        if pd.api.types.is_datetime64_any_dtype(col):
            times = col.to_numpy(dtype="datetime64[us]")
            if datetime_text and len(times):
                values = np.char.replace(np.datetime_as_string(times, unit="us"), "T", " ").astype(object)
            else:
                values = times.astype(object)
            values[np.isnat(times)] = None
        elif pd.api.types.is_float_dtype(col):
            floats = col.to_numpy(dtype="float64")
            values = floats.astype(object)
            values[np.isnan(floats)] = None
        else:  # integers (ints stay ints), text, booleans: every NA (None, NaN, pd.NA) becomes None
            values = col.to_numpy(dtype=object, copy=True)
            values[col.isna().to_numpy()] = None
        converted.append(values.tolist())
    return list(zip(*converted))
