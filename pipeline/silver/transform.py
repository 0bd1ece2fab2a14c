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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

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
    """The /coins/markets records of one bronze run, with where they came from."""

    run_id: str
    snapshot_at: datetime
    source: str
    #: Parsed JSON: normally objects (Record), but anything may arrive and is quarantined.
    records: list[Any]
    #: When the body was received (None when unknown, e.g. an imported file); snapshot_at is the data's time.
    fetched_at: datetime | None = None
    #: Whose records these are (``source`` is why the run was made).
    provider: str = PROVIDER_DEFAULT


#: A record whose last_updated is this much older than its snapshot is flagged stale_record
#: (PIPELINE_STALE_RECORD_HOURS passes another threshold in).
STALE_RECORD_AFTER = timedelta(hours=6)


@dataclass
class MarketsBatch:
    """Silver rows of one or more snapshots, plus what was kept out of them and why."""

    rows: pd.DataFrame
    quarantined: list[Quarantined] = field(default_factory=list)
    duplicates_dropped: int = 0
    #: (id, snapshot_at, run_id, sparkline JSON) for kept rows, when asked for.
    sparklines: list[tuple[str, datetime, str, str]] = field(default_factory=list)
    #: Values of kept rows that were NULLed: non-finite, out of range, or text that is not text.
    nulled: list[Nulled] = field(default_factory=list)

    @property
    def nulled_values(self) -> int:
        return len(self.nulled)


def _column(records: list[Record], keys: list[str]) -> list[Any]:
    """One field of every record; with several keys, the first non-null wins."""
    if len(keys) == 1:
        key = keys[0]
        return [rec.get(key) for rec in records]
    values = [rec.get(keys[0]) for rec in records]
    for key in keys[1:]:
        values = [v if v is not None else rec.get(key) for v, rec in zip(values, records)]
    return values


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


def _parse_numbers(raw: list[Any]) -> tuple[FloatArray, BoolArray, BoolArray, BoolArray]:
    """Floats from API values; numbers sent as strings are accepted.

    Returns (values, bad, nonfinite, overflow) as numpy arrays: ``values`` is
    NaN wherever the value is missing or unusable; ``bad`` marks a present value
    that is not a number at all (text such as "n/a", a bool, a list);
    ``nonfinite`` a NaN/±Infinity (number or text); ``overflow`` a number too
    big for a float. The common case, a column of plain JSON numbers and nulls,
    stays in C.
    """
    n = len(raw)
    series = pd.Series(raw, dtype=None if raw else "float64")
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype="float64", na_value=np.nan).copy()
        nonfinite = np.isinf(values)
        for i in _positions(np.isnan(values)):
            if raw[i] is not None:  # a NaN that was sent, not a null
                nonfinite[i] = True
        values[nonfinite] = np.nan
        return values, np.zeros(n, dtype=bool), nonfinite, np.zeros(n, dtype=bool)
    numbers: list[float] = []
    kinds: list[str] = []
    for value in raw:
        number, kind = _number(value)
        numbers.append(number)
        kinds.append(kind)
    values = np.array(numbers, dtype=np.float64)
    kinds_arr = np.array(kinds, dtype=object)
    return values, kinds_arr == "bad", kinds_arr == "nonfinite", kinds_arr == "overflow"


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


def _clean_texts(raw: list[Any]) -> tuple[list[str | None], list[int]]:
    """symbol/name/image values: NULs stripped, lone surrogates replaced, NULL stays NULL.

    Returns (values, positions whose non-text value was NULLed). The whole column
    is checked at once: clean text (the common case) costs one join and one scan.
    """
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
    joined = "".join(v for v in values if v is not None)
    if "\x00" in joined or _SURROGATES.search(joined):
        values = [v if v is None else _SURROGATES.sub("\ufffd", v.replace("\x00", "")) for v in values]
    return values, dropped


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


def _parse_dates(raw: pd.Series) -> tuple[pd.Series, BoolArray]:
    """ISO 8601 text -> naive UTC timestamps; (dates, unusable) where ``unusable`` marks a
    present value that is not an ISO date between DATE_RANGE's ends (it becomes NULL)."""
    objects = raw.astype(object)
    is_text = np.fromiter((isinstance(v, str) for v in objects), dtype=bool, count=len(objects))
    parsed = pd.to_datetime(objects.where(is_text, None), errors="coerce", utc=True, format="ISO8601")
    parsed = parsed.dt.tz_localize(None).astype("datetime64[us]")
    parsed = parsed.where((parsed >= DATE_RANGE[0]) & (parsed < DATE_RANGE[1]))
    unusable = (objects.notna() & parsed.isna()).to_numpy()
    return parsed, unusable


def _sparkline(value: object) -> str | None:
    if not isinstance(value, dict):
        return None
    prices = value.get("price")
    if not isinstance(prices, list) or not prices:
        return None
    low, high = NUMERIC_LIMITS["current_price"]
    clean = [
        p if isinstance(p, (int, float)) and not isinstance(p, bool) and _within(p, low, high) else None for p in prices
    ]
    return json.dumps(clean, separators=(",", ":"))


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


def transform_snapshots(
    snapshots: list[Snapshot],
    *,
    with_sparklines: bool = False,
    stale_after: timedelta | None = STALE_RECORD_AFTER,
    future_skew: timedelta = FUTURE_SKEW,
) -> MarketsBatch:
    """Validate, type and derive the records of several snapshots in one pass.

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
    """
    quarantined: list[Quarantined] = []
    objects: list[Record] = []
    origin: list[tuple[int, int]] = []  # (snapshot number, index within its snapshot)
    for number, snap in enumerate(snapshots):
        for index, rec in enumerate(snap.records):
            if isinstance(rec, dict):
                objects.append(rec)
                origin.append((number, index))
            else:
                quarantined.append(
                    Quarantined(
                        snap.run_id, snap.snapshot_at, index, None, "record is not a JSON object", raw_record_text(rec)
                    )
                )

    n = len(objects)
    frame = pd.DataFrame(index=pd.RangeIndex(n))
    reasons: list[list[str]] = [[] for _ in range(n)]
    notes: list[tuple[int, str, str]] = []  # (object number, field, reason) of values set to NULL

    raw_ids = _column(objects, ["id"])
    ids = [v.strip() if isinstance(v, str) and v.strip() else None for v in raw_ids]
    joined = "".join(v for v in ids if v is not None)
    suspicious = "\x00" in joined or bool(_SURROGATES.search(joined))
    for i, value in enumerate(ids):
        if value is None or suspicious or len(value) > ID_MAX_LENGTH:
            problem = _id_problem(value)
            if problem:
                reasons[i].append(problem)
    frame["id"] = pd.Series(ids, dtype=object)

    for name in TEXT_FIELDS:
        raw = _column(objects, [name])
        texts, dropped = _clean_texts(raw)
        for i in dropped:
            notes.append((i, name, f"not text {name}: {_shown(raw[i])}"))
        frame[name] = pd.Series(texts, dtype=object)

    for name in ["market_cap_rank", *MARKET_NUMERIC_COLUMNS]:
        raw = _column(objects, SOURCE_KEYS.get(name, [name]))
        values, bad, nonfinite, overflow = _parse_numbers(raw)
        low, high = NUMERIC_LIMITS[name]
        below, above = values < low, values > high  # NaN compares False
        for i in _positions(bad):
            reasons[i].append(f"non-numeric {name}: {_shown(raw[i])}")
        if name in REQUIRED_NUMERIC:
            for i in _positions(above):
                reasons[i].append(f"absurd {name}: {float(values[i])!r}")
            for i in _positions(overflow):
                reasons[i].append(f"absurd {name}: {_shown(raw[i])}")
            for i in _positions(below):
                reasons[i].append(f"negative {name}: {float(values[i])!r}")
        else:
            for i in _positions(below | above | overflow):
                notes.append((i, name, f"out of range {name}: {_shown(raw[i])} (plausible: {low:g} to {high:g})"))
        for i in _positions(nonfinite):
            notes.append((i, name, f"non-finite {name}: {_shown(raw[i])}"))
        values[below | above] = np.nan
        series = pd.Series(values, index=frame.index)
        frame[name] = series.round().astype("Int64") if name == "market_cap_rank" else series

    for name in DATE_FIELDS:
        raw = _column(objects, [name])
        dates, unusable = _parse_dates(pd.Series(raw, dtype=object))
        for i in _positions(unusable):
            notes.append((i, name, f"not a date {name}: {_shown(raw[i])}"))
        frame[name] = dates

    snap_numbers = np.fromiter((o[0] for o in origin), dtype=np.int64, count=n)
    frame["_snap"] = snap_numbers
    frame["_obj"] = np.arange(n, dtype=np.int64)
    bad_rows = np.fromiter((bool(r) for r in reasons), dtype=bool, count=n)
    for i in _positions(bad_rows):
        snap = snapshots[origin[i][0]]
        quarantined.append(
            Quarantined(
                snap.run_id,
                snap.snapshot_at,
                origin[i][1],
                _record_id(raw_ids[i]),
                "; ".join(reasons[i]),
                raw_record_text(objects[i]),
            )
        )
    frame = frame.loc[~bad_rows]

    before = len(frame)
    # A timestamp from the future (after the fetch plus a small skew) must not win a duplicate:
    # it ranks like a missing one, so the record from the earlier page is kept.
    # Without a fetch time (an imported body) nothing is judged from the future here: the
    # snapshot's own time is a median, and half the records are later than it.
    trusted_until = np.array(
        [s.fetched_at + future_skew if s.fetched_at is not None else np.datetime64("NaT") for s in snapshots],
        dtype="datetime64[us]",
    )
    ranked = frame["last_updated"].to_numpy(dtype="datetime64[us]")
    limit = trusted_until[frame["_snap"].to_numpy()]
    frame["_rank_time"] = np.where(np.isnat(limit) | (ranked <= limit), ranked, np.datetime64("NaT"))
    frame = (
        frame.sort_values(["_snap", "_rank_time", "_obj"], ascending=[True, False, True], na_position="last")
        .drop_duplicates(["_snap", "id"], keep="first")
        .sort_values("_obj")
        .drop(columns="_rank_time")
        .reset_index(drop=True)
    )
    duplicates = before - len(frame)

    snap_index = frame["_snap"].to_numpy()
    frame["snapshot_at"] = pd.Series(np.array([s.snapshot_at for s in snapshots], dtype="datetime64[us]")[snap_index])
    frame["run_id"] = pd.Series(np.array([s.run_id for s in snapshots], dtype=object)[snap_index], dtype=object)
    frame["source"] = pd.Series(np.array([s.source for s in snapshots], dtype=object)[snap_index], dtype=object)
    frame["provider"] = pd.Series(np.array([s.provider for s in snapshots], dtype=object)[snap_index], dtype=object)
    fetched = np.array(
        [s.fetched_at if s.fetched_at is not None else np.datetime64("NaT") for s in snapshots], dtype="datetime64[us]"
    )
    frame["fetched_at"] = pd.Series(fetched[snap_index], dtype="datetime64[us]")
    frame["stale_record"] = stale_flags(frame["last_updated"], frame["snapshot_at"], stale_after)
    frame = add_derived_columns(frame)

    nulled = []
    if notes:
        kept = set(frame["_obj"].tolist())
        for obj, name, reason in notes:
            if obj in kept:
                snap = snapshots[origin[obj][0]]
                nulled.append(Nulled(snap.run_id, snap.snapshot_at, origin[obj][1], ids[obj], name, reason))
        nulled.sort(key=lambda x: (x.snapshot_at, x.run_id, x.record_index))

    sparklines = []
    if with_sparklines:
        for obj, coin_id, snap_at, run in zip(frame["_obj"], frame["id"], frame["snapshot_at"], frame["run_id"]):
            encoded = _sparkline(objects[obj].get("sparkline_in_7d"))
            if encoded is not None:
                sparklines.append((coin_id, snap_at.to_pydatetime(), run, encoded))
    quarantined.sort(key=lambda q: (q.snapshot_at, q.run_id, q.record_index))
    for column in SILVER_COLUMNS:  # columns not derived here yet stay NULL
        if column not in frame.columns:
            frame[column] = None
    return MarketsBatch(
        rows=frame[SILVER_COLUMNS],
        quarantined=quarantined,
        duplicates_dropped=duplicates,
        sparklines=sparklines,
        nulled=nulled,
    )


def stale_flags(last_updated: pd.Series, snapshot_at: pd.Series, stale_after: timedelta | None) -> pd.Series:
    """True where ``last_updated`` is more than ``stale_after`` before the snapshot, False where
    it is not, NULL where it is unknown (or no threshold is given)."""
    flags = pd.Series(pd.NA, index=last_updated.index, dtype="boolean")
    if stale_after is None or not len(last_updated):
        return flags
    known = last_updated.notna() & snapshot_at.notna()
    flags[known] = (last_updated[known] < snapshot_at[known] - pd.Timedelta(stale_after)).to_numpy()
    return flags


def add_derived_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with the silver derived columns and the three categories.

    Each derived column is declared once in :data:`pipeline.silver.derived.DERIVED` (name,
    formula, limit, meaning) and is finite or NULL: NULL when an input is NULL, the division
    is by zero, or the result overflows or is beyond its ``DERIVED_LIMITS`` magnitude (never
    ±Infinity, never NaN stored). ``distance_from_ath_pct`` prefers CoinGecko's own
    ``ath_change_percentage`` (its formula says why). The API's other change fields
    (price_change_percentage_*, market_cap_change_percentage_24h, atl_change_percentage) are
    kept as received, never recomputed.
    """
    frame = frame.copy()
    for column in derived.DERIVED:
        frame[column.name] = column.compute(frame)
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
