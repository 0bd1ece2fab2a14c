"""The time of a snapshot's data: the moment its records describe, not when they were fetched.

Pure: no clock, no I/O. CoinGecko stamps every /coins/markets record with
``last_updated``; a snapshot's data time is their median, computed robustly:

* NULL, unparseable and absurd values (outside 1990..2100) are ignored;
* values from the future (after the fetch time plus :data:`FUTURE_SKEW`) are ignored;
* values far before the fetch (more than :data:`LOOKBACK`) are ignored: they are
  stale records, or a recorded body served again (a test double, a replayed file),
  and say nothing about when this snapshot was taken;
* with too few usable values left (fewer than :data:`MIN_VALUES`, or under
  :data:`MIN_SHARE` of the records) the fetch time is the data time.

The result is never later than the fetch time. Without a fetch time (a saved body
being imported) the values are centred on their own median instead of a fetch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: A last_updated later than the fetch by more than this is from the future (clock skew allowed).
FUTURE_SKEW = timedelta(minutes=5)
#: Values older than the fetch by more than this do not describe the snapshot's moment.
LOOKBACK = timedelta(hours=24)
#: At least this many usable values, and this share of the records, or the fetch time is used.
MIN_VALUES = 3
MIN_SHARE = 0.5

#: How a snapshot's time was found (kept in the bronze manifest as ``data_time_basis``).
BASIS_LAST_UPDATED = "last_updated_median"
BASIS_FETCHED = "fetched_at"
BASIS_GIVEN = "given"

_EARLIEST = datetime(1990, 1, 1)
_LATEST = datetime(2100, 1, 1)


@dataclass(frozen=True)
class DataTime:
    """A snapshot's data time and how it was found."""

    at: datetime | None
    basis: str
    #: values the median came from, and the ones left out (by kind)
    used: int = 0
    missing: int = 0
    future: int = 0
    outside: int = 0

    def describe(self) -> str:
        if self.basis == BASIS_LAST_UPDATED:
            return f"median last_updated of {self.used} records" + (
                f" ({self.future} from the future ignored)" if self.future else ""
            )
        if self.basis == BASIS_GIVEN:
            return "given"
        return f"fetch time (only {self.used} usable last_updated values)"


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 text (``2024-01-02T03:04:05.678Z``) as naive UTC with microseconds, or None
    when it is not one or lies outside 1990..2100."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed if _EARLIEST <= parsed < _LATEST else None


def median_time(times: list[datetime]) -> datetime:
    """The median of datetimes (the midpoint of the two middle values for an even count)."""
    ordered = sorted(times)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    low, high = ordered[middle - 1], ordered[middle]
    return low + (high - low) / 2


def last_updated_values(records: Iterable[object]) -> list[object]:
    """The ``last_updated`` field of every record (None for a record that is not an object)."""
    return [rec.get("last_updated") if isinstance(rec, dict) else None for rec in records]


def data_time(
    last_updated: Iterable[object],
    fetched_at: datetime | None,
    *,
    not_after: datetime | None = None,
    skew: timedelta = FUTURE_SKEW,
    lookback: timedelta = LOOKBACK,
    min_values: int = MIN_VALUES,
    min_share: float = MIN_SHARE,
) -> DataTime:
    """The data time of a snapshot from its records' ``last_updated`` values (ISO text or datetimes).

    ``fetched_at``: when the body was received; values outside [fetched_at - lookback,
    fetched_at + skew] are ignored and the fetch time is the fallback. Without it (a
    saved body), ``not_after`` (e.g. the importer's clock) bounds the future, the values
    are centred on their own median, and with too few of them ``at`` is None.
    """
    values = list(last_updated)
    total = len(values)
    parsed = [v if isinstance(v, datetime) else parse_time(v) for v in values]
    present = [p for p in parsed if p is not None]
    missing = total - len(present)
    ceiling = fetched_at if fetched_at is not None else not_after
    future = [p for p in present if ceiling is not None and p > ceiling + skew]
    candidates = [p for p in present if ceiling is None or p <= ceiling + skew]
    low: datetime | None
    high: datetime | None
    if fetched_at is not None:
        low, high = fetched_at - lookback, fetched_at + skew
    elif candidates:
        centre = median_time(candidates)
        low, high = centre - lookback, centre + lookback
    else:
        low = high = None
    used = [p for p in candidates if low is not None and high is not None and low <= p <= high]
    outside = len(candidates) - len(used)
    enough = len(used) >= min_values and len(used) >= min_share * total
    counts = {"used": len(used), "missing": missing, "future": len(future), "outside": outside}
    if not enough:
        return DataTime(fetched_at, BASIS_FETCHED, **counts)
    at = median_time(used)
    if fetched_at is not None and at > fetched_at:
        at = fetched_at  # data cannot describe a moment after it was received
    return DataTime(at, BASIS_LAST_UPDATED, **counts)
