"""``/coins/{id}/market_chart`` bodies -> ``staging_coin_history`` rows. Pure: no I/O.

Used by the backfill (each body as it arrives) and by replay (every backfill's bronze);
living in silver, beside the other transforms, keeps ``flow`` and ``backfill`` from
importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.silver.transform import ABSURD_LIMITS

#: market_chart series -> staging_coin_history column, in row order.
SERIES = (("prices", "price"), ("market_caps", "market_cap"), ("total_volumes", "total_volume"))
_LIMITS = {
    "price": ABSURD_LIMITS["current_price"],
    "market_cap": ABSURD_LIMITS["market_cap"],
    "total_volume": ABSURD_LIMITS["total_volume"],
}
_EPOCH = datetime(1970, 1, 1)

#: (id, ts, run_id, price, market_cap, total_volume)
HistoryRow = tuple[str, datetime, str, float | None, float | None, float | None]


@dataclass
class ChartRows:
    """staging_coin_history rows from one market_chart body, and what was kept out."""

    rows: list[HistoryRow]
    skipped_values: int = 0


def _timestamp(value: object) -> datetime | None:
    """Epoch milliseconds -> naive UTC datetime (None when not a usable number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    try:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return _EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        return None


def _number(value: object, column: str) -> tuple[float | None, bool]:
    """(value, bad): NULL stays NULL; non-numbers, non-finite, negative and absurd values are bad."""
    if value is None:
        return None, False
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, True
    number = float(value)
    if not math.isfinite(number) or number < 0 or number > _LIMITS[column]:
        return None, True
    return number, False


def market_chart_rows(body: object, *, coin_id: str, run_id: str) -> ChartRows:
    """A market_chart body -> (id, ts, run_id, price, market_cap, total_volume) rows, oldest first.

    The three series ``[[epoch ms, value], ...]`` are aligned on their timestamp;
    a series without a point at that time gives NULL. A value that is not a
    finite, non-negative, plausible number is left out (NULL) and counted in
    ``skipped_values``, as is a point that is not ``[ms, value]``. A time at
    which every value is NULL gives no row.
    """
    if not isinstance(body, dict):
        raise TypeError(f"market_chart for {coin_id}: expected a JSON object, got {type(body).__name__}")
    by_time: dict[datetime, list[float | None]] = {}
    skipped = 0
    for position, (series, column) in enumerate(SERIES):
        points = body.get(series)
        if points is None:
            continue
        if not isinstance(points, list):
            skipped += 1
            continue
        for point in points:
            if not isinstance(point, (list, tuple)) or len(point) != 2:
                skipped += 1
                continue
            ts = _timestamp(point[0])
            value, bad = _number(point[1], column)
            if ts is None or bad:
                skipped += 1
                continue
            by_time.setdefault(ts, [None, None, None])[position] = value
    rows: list[HistoryRow] = [
        (coin_id, ts, run_id, values[0], values[1], values[2])
        for ts, values in sorted(by_time.items())
        if any(v is not None for v in values)
    ]
    return ChartRows(rows, skipped)
