"""Raw CoinGecko records in, typed silver rows and quarantined records out.

Pure functions: no files, no database, no clock. NULL stays NULL all the way:
a missing or null field is never replaced by 0, and a derived column whose
input is NULL (or would divide by zero) is NULL too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from pipeline.categories import (
    LIQUIDITY_BANDS,
    MARKET_CAP_BANDS,
    PRICE_TREND_BANDS,
    classify_series,
)
from pipeline.errors import SchemaDrift
from pipeline.schema import MARKET_NUMERIC_COLUMNS, staging_crypto_market, staging_global_market

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

#: Values no real coin has: kept out of silver as "absurd".
ABSURD_LIMITS = {
    "current_price": 1e9,
    "market_cap": 1e14,
    "fully_diluted_valuation": 1e15,
    "total_volume": 1e14,
}
ABSURD_PERCENT = 1e6
MUST_NOT_BE_NEGATIVE = ["current_price", "market_cap", "total_volume"]


@dataclass
class Quarantined:
    run_id: str
    snapshot_at: datetime
    record_index: int
    record_id: str | None
    reason: str
    raw_record: str


@dataclass
class Snapshot:
    """The /coins/markets records of one bronze run, with where they came from."""

    run_id: str
    snapshot_at: datetime
    source: str
    records: list


@dataclass
class MarketsBatch:
    """Silver rows of one or more snapshots, plus what was kept out of them and why."""

    rows: pd.DataFrame
    quarantined: list[Quarantined] = field(default_factory=list)
    duplicates_dropped: int = 0
    #: (id, snapshot_at, run_id, sparkline JSON) for kept rows, when asked for.
    sparklines: list[tuple] = field(default_factory=list)


def _column(records: list[dict], keys: list[str]) -> list:
    """One field of every record; with several keys, the first non-null wins."""
    if len(keys) == 1:
        key = keys[0]
        return [rec.get(key) for rec in records]
    values = [rec.get(keys[0]) for rec in records]
    for key in keys[1:]:
        values = [v if v is not None else rec.get(key) for v, rec in zip(values, records)]
    return values


def _parse_numbers(raw: list) -> tuple[pd.Series, pd.Series]:
    """Floats from API values; numbers sent as strings are accepted.

    Returns (values, bad) where ``bad`` marks a present value that is not a
    finite number (text such as "n/a", a bool, a list, inf). The common case,
    a column of plain JSON numbers and nulls, stays in C.
    """
    series = pd.Series(raw, dtype=None if raw else "float64")
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.astype("float64")
        bad = pd.Series(np.isinf(values.to_numpy()), index=values.index)
        return values.where(~bad), bad
    objects = series.astype(object)
    is_bool = pd.Series([isinstance(v, bool) for v in raw], index=objects.index, dtype=bool)
    values = pd.to_numeric(objects.where(~is_bool, None), errors="coerce").astype("float64")
    bad = (objects.notna() & values.isna()) | is_bool | np.isinf(values)
    return values.where(~bad), bad


def _parse_dates(raw: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(raw.astype(object), errors="coerce", utc=True, format="ISO8601")
    return parsed.dt.tz_localize(None).astype("datetime64[us]")


def _sparkline(value) -> str | None:
    if not isinstance(value, dict):
        return None
    prices = value.get("price")
    if not isinstance(prices, list) or not prices:
        return None
    clean = [p if isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) else None
             for p in prices]
    return json.dumps(clean, separators=(",", ":"))


def _ratio(numerator: pd.Series, denominator: pd.Series, scale: float = 1.0) -> pd.Series:
    """numerator / denominator, NULL where either is NULL or the denominator is 0."""
    safe = denominator.where(denominator != 0)
    return (numerator / safe) * scale


def limit_records(records: list, top_n: int | None) -> list:
    """The first ``top_n`` distinct coins, in API order.

    Duplicates of coins already taken and records without an id still pass,
    so silver can de-duplicate and quarantine them with a reason.
    """
    if top_n is None:
        return records
    seen: set = set()
    kept = []
    for rec in records:
        coin_id = rec.get("id") if isinstance(rec, dict) else None
        if isinstance(coin_id, str) and coin_id.strip() and coin_id not in seen:
            if len(seen) >= top_n:
                continue
            seen.add(coin_id)
        kept.append(rec)
    return kept


def transform_markets(records: list, *, run_id: str, snapshot_at: datetime, source: str,
                      with_sparklines: bool = True) -> MarketsBatch:
    """Validate, type and derive one snapshot of /coins/markets records."""
    return transform_snapshots([Snapshot(run_id, snapshot_at, source, records)], with_sparklines=with_sparklines)


def transform_snapshots(snapshots: list[Snapshot], *, with_sparklines: bool = False) -> MarketsBatch:
    """Validate, type and derive the records of several snapshots in one pass.

    A record that fails validation (no id, negative price/volume/cap, a number
    that is not a number, an absurd value) is quarantined with every reason
    found; the others go on. Duplicate ids within a snapshot (rankings shift
    while paging) keep the freshest ``last_updated``, then the earliest position.
    Sparklines are 168 floats a row and only the newest is ever shown, so they
    are encoded only when asked for.
    """
    quarantined: list[Quarantined] = []
    objects: list[dict] = []
    origin: list[tuple[int, int]] = []  # (snapshot number, index within its snapshot)
    for number, snap in enumerate(snapshots):
        for index, rec in enumerate(snap.records):
            if isinstance(rec, dict):
                objects.append(rec)
                origin.append((number, index))
            else:
                quarantined.append(Quarantined(snap.run_id, snap.snapshot_at, index, None,
                                               "record is not a JSON object", json.dumps(rec, default=str)))

    n = len(objects)
    frame = pd.DataFrame(index=pd.RangeIndex(n))
    reasons: list[list[str]] = [[] for _ in range(n)]

    ids = [v.strip() if isinstance(v, str) and v.strip() else None for v in _column(objects, ["id"])]
    for i, value in enumerate(ids):
        if value is None:
            reasons[i].append("missing id")
    frame["id"] = pd.Series(ids, dtype=object)

    for name in TEXT_FIELDS:
        frame[name] = pd.Series([v if isinstance(v, str) or v is None else str(v)
                                 for v in _column(objects, [name])], dtype=object)

    raw_rank = _column(objects, ["market_cap_rank"])
    rank_values, rank_bad = _parse_numbers(raw_rank)
    for i in np.flatnonzero(rank_bad.to_numpy()):
        reasons[i].append(f"non-numeric market_cap_rank: {raw_rank[i]!r}")
    frame["market_cap_rank"] = rank_values.round().astype("Int64")

    for name in MARKET_NUMERIC_COLUMNS:
        raw = _column(objects, SOURCE_KEYS.get(name, [name]))
        values, bad = _parse_numbers(raw)
        for i in np.flatnonzero(bad.to_numpy()):
            reasons[i].append(f"non-numeric {name}: {raw[i]!r}")
        limit = ABSURD_LIMITS.get(name, ABSURD_PERCENT if name.startswith("price_change_percentage") else None)
        if limit is not None:
            for i in np.flatnonzero((values.abs() > limit).to_numpy()):
                reasons[i].append(f"absurd {name}: {float(values.iloc[i])!r}")
        if name in MUST_NOT_BE_NEGATIVE:
            for i in np.flatnonzero((values < 0).to_numpy()):
                reasons[i].append(f"negative {name}: {float(values.iloc[i])!r}")
        frame[name] = values

    for name in DATE_FIELDS:
        frame[name] = _parse_dates(pd.Series(_column(objects, [name]), dtype=object))

    snap_numbers = np.fromiter((o[0] for o in origin), dtype=np.int64, count=n)
    frame["_snap"] = snap_numbers
    frame["_obj"] = np.arange(n, dtype=np.int64)
    bad_rows = np.fromiter((bool(r) for r in reasons), dtype=bool, count=n)
    for i in np.flatnonzero(bad_rows):
        snap = snapshots[origin[i][0]]
        record_id = objects[i].get("id") if isinstance(objects[i].get("id"), str) else None
        quarantined.append(Quarantined(snap.run_id, snap.snapshot_at, origin[i][1], record_id, "; ".join(reasons[i]),
                                       json.dumps(objects[i], separators=(",", ":"), default=str)))
    frame = frame.loc[~bad_rows]

    before = len(frame)
    frame = (frame.sort_values(["_snap", "last_updated", "_obj"], ascending=[True, False, True], na_position="last")
             .drop_duplicates(["_snap", "id"], keep="first")
             .sort_values("_obj")
             .reset_index(drop=True))
    duplicates = before - len(frame)

    snap_index = frame["_snap"].to_numpy()
    frame["snapshot_at"] = pd.Series(np.array([s.snapshot_at for s in snapshots], dtype="datetime64[us]")[snap_index])
    frame["run_id"] = pd.Series(np.array([s.run_id for s in snapshots], dtype=object)[snap_index], dtype=object)
    frame["source"] = pd.Series(np.array([s.source for s in snapshots], dtype=object)[snap_index], dtype=object)
    frame = add_derived_columns(frame)

    sparklines = []
    if with_sparklines:
        for obj, coin_id, snap_at, run in zip(frame["_obj"], frame["id"], frame["snapshot_at"], frame["run_id"]):
            encoded = _sparkline(objects[obj].get("sparkline_in_7d"))
            if encoded is not None:
                sparklines.append((coin_id, snap_at.to_pydatetime(), run, encoded))
    quarantined.sort(key=lambda q: (q.snapshot_at, q.run_id, q.record_index))
    return MarketsBatch(rows=frame[SILVER_COLUMNS], quarantined=quarantined,
                        duplicates_dropped=duplicates, sparklines=sparklines)


def add_derived_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The silver derived columns; each is NULL when an input is NULL.

    - price_volatility_24h = (high_24h - low_24h) / current_price * 100
      (the day's trading range as a percent of the price)
    - volume_to_mcap_ratio = total_volume / market_cap
    - distance_from_ath_pct = (current_price - ath) / ath * 100 (0 at the ATH, negative below)
    """
    frame = frame.copy()
    frame["price_volatility_24h"] = _ratio(frame["high_24h"] - frame["low_24h"], frame["current_price"], 100.0)
    frame["volume_to_mcap_ratio"] = _ratio(frame["total_volume"], frame["market_cap"])
    frame["distance_from_ath_pct"] = _ratio(frame["current_price"] - frame["ath"], frame["ath"], 100.0)
    frame["market_cap_category"] = classify_series(frame["market_cap"], MARKET_CAP_BANDS)
    frame["liquidity_category"] = classify_series(frame["volume_to_mcap_ratio"], LIQUIDITY_BANDS)
    frame["price_trend_category"] = classify_series(frame["price_change_percentage_24h"], PRICE_TREND_BANDS)
    return frame


def transform_global(body, *, run_id: str, snapshot_at: datetime, source: str, vs_currency: str) -> dict:
    """One silver row from a /global body; SchemaDrift if it is not the documented shape."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("total_market_cap"), dict):
        raise SchemaDrift("/global body has no data.total_market_cap object")

    def number(value):
        if isinstance(value, bool) or value is None:
            return None
        try:
            result = float(value)
        except (TypeError, ValueError):
            return None
        return result if math.isfinite(result) else None

    percentages = data.get("market_cap_percentage") if isinstance(data.get("market_cap_percentage"), dict) else {}
    updated = data.get("updated_at")
    return {
        "snapshot_at": snapshot_at,
        "run_id": run_id,
        "source": source,
        "vs_currency": vs_currency,
        "total_market_cap": number(data["total_market_cap"].get(vs_currency)),
        "total_volume": number((data.get("total_volume") or {}).get(vs_currency)),
        "market_cap_change_percentage_24h": number(data.get("market_cap_change_percentage_24h_usd")),
        "active_cryptocurrencies": _int_or_none(data.get("active_cryptocurrencies")),
        "markets": _int_or_none(data.get("markets")),
        "btc_dominance_pct": number(percentages.get("btc")),
        "eth_dominance_pct": number(percentages.get("eth")),
        "market_cap_percentage": json.dumps(percentages, separators=(",", ":"), sort_keys=True),
        "updated_at": datetime.fromtimestamp(updated, timezone.utc).replace(tzinfo=None) if isinstance(updated, (int, float)) else None,
    }


def _int_or_none(value):
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def frame_to_tuples(frame: pd.DataFrame, columns: list[str], *, datetime_text: bool = False) -> list[tuple]:
    """Rows as plain Python tuples for the loader: NaN/NaT become None, ints stay ints.

    Column-wise numpy conversions: this runs for every silver row, so no per-value Python.
    ``datetime_text`` gives SQLite's 'YYYY-MM-DD HH:MM:SS.ffffff' text directly.
    """
    converted = []
    for name in columns:
        col = frame[name]
        if pd.api.types.is_datetime64_any_dtype(col):
            arr = col.to_numpy(dtype="datetime64[us]")
            if datetime_text and len(arr):
                values = np.char.replace(np.datetime_as_string(arr, unit="us"), "T", " ").astype(object)
            else:
                values = arr.astype(object)
            values[np.isnat(arr)] = None
        elif pd.api.types.is_integer_dtype(col):
            mask = col.isna().to_numpy()
            values = col.to_numpy(dtype=object)
            values[mask] = None
        elif pd.api.types.is_float_dtype(col):
            arr = col.to_numpy(dtype="float64")
            values = arr.astype(object)
            values[np.isnan(arr)] = None
        else:
            values = col.to_numpy(dtype=object, na_value=None)
        converted.append(values.tolist())
    return list(zip(*converted))
