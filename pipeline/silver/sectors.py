"""Silver for sectors: a /coins/categories body -> ``staging_sector_snapshot`` rows, and the tracked
sectors' /coins/markets?category=... bodies -> ``ref_sector_members`` rows. Pure: no I/O.

A category row keeps what CoinGecko sent: numbers as double precision (numbers sent as text are
read), NULL stays NULL (about 230 of the 529 categories of a real 2025 body have no market cap).
A row that cannot be one is quarantined with its reason, never dropped silently: not an object,
no usable id, a value that is not a number, a negative market cap or volume, or an id already
seen in the same body (the first one is kept).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.silver.data_time import parse_time
from pipeline.silver.transform import raw_record_text

#: Same rule as the coins': a usable CoinGecko id.
ID_MAX_LENGTH = 200
NUMBER_FIELDS = ("market_cap", "market_cap_change_24h", "volume_24h")
#: Never negative (a 24h change may be).
NON_NEGATIVE = frozenset({"market_cap", "volume_24h"})
NAME_MAX_LENGTH = 500


@dataclass
class SectorRows:
    """One body's rows for ``staging_sector_snapshot`` and ``quarantine_sector_snapshot``."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)


def usable_id(value: object) -> bool:
    """A CoinGecko id we can key a row by: non-empty text, no NUL, no outer blanks, not huge."""
    return isinstance(value, str) and 0 < len(value) <= ID_MAX_LENGTH and "\0" not in value and value.strip() == value


def _number(value: object) -> tuple[float | None, bool]:
    """(value, ok): None stays None; a bool, text that is no number, NaN or infinity is not ok."""
    if value is None:
        return None, True
    if isinstance(value, bool):
        return None, False
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None, False
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None, False
    else:
        return None, False
    return (number, True) if math.isfinite(number) else (None, False)


def _text(value: object, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.replace("\0", "")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _top_coins(record: Mapping[str, Any]) -> str | None:
    """``top_3_coins_id`` as a JSON array of ids (bodies before 2024 only have image URLs: NULL)."""
    ids = record.get("top_3_coins_id")
    if not isinstance(ids, list):
        return None
    return json.dumps([i for i in ids if usable_id(i)], separators=(",", ":"))


def _problem(record: object, seen: set[str]) -> str | None:
    if not isinstance(record, dict):
        return "record is not a JSON object"
    category = record.get("id")
    if not usable_id(category):
        return "missing or unusable id" if category is not None else "missing id"
    if category in seen:
        return "duplicate id in the same body (the first row is kept)"
    for name in NUMBER_FIELDS:
        number, ok = _number(record.get(name))
        if not ok:
            return f"{name} is not a finite number: {raw_record_text(record.get(name))[:80]}"
        if number is not None and name in NON_NEGATIVE and number < 0:
            return f"{name} is negative: {number:g}"
    return None


def sector_rows(body: object, *, snapshot_at: datetime, run_id: str, source: str) -> SectorRows:
    """Rows of one /coins/categories body (an array; anything else yields nothing)."""
    out = SectorRows()
    seen: set[str] = set()
    for index, record in enumerate(body if isinstance(body, list) else []):
        problem = _problem(record, seen)
        if problem is not None:
            category = record.get("id") if isinstance(record, dict) else None
            out.quarantine.append(
                {
                    "run_id": run_id,
                    "record_index": index,
                    "snapshot_at": snapshot_at,
                    "record_id": category[:ID_MAX_LENGTH].replace("\0", "") if isinstance(category, str) else None,
                    "reason": problem,
                    "raw_record": raw_record_text(record).replace("\0", "\\x00"),
                }
            )
            continue
        assert isinstance(record, dict)
        seen.add(record["id"])
        out.rows.append(
            {
                "category_id": record["id"],
                "snapshot_at": snapshot_at,
                "run_id": run_id,
                "source": source,
                "name": _text(record.get("name"), NAME_MAX_LENGTH),
                **{name: _number(record.get(name))[0] for name in NUMBER_FIELDS},
                "top_3_coins": _top_coins(record),
                "updated_at": parse_time(record.get("updated_at")),
            }
        )
    return out


def member_rows(bodies: Mapping[str, object], *, seen_at: datetime, run_id: str) -> list[dict[str, Any]]:
    """``ref_sector_members`` rows from each tracked sector's /coins/markets?category= body
    (sector id -> body); records without a usable id are skipped, a coin counts once per sector."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for category, body in bodies.items():
        for record in body if isinstance(body, list) else []:
            if isinstance(record, dict) and usable_id(record.get("id")):
                rows.setdefault(
                    (category, record["id"]),
                    {"category_id": category, "coin_id": record["id"], "seen_at": seen_at, "run_id": run_id},
                )
    return [rows[key] for key in sorted(rows)]
