"""Is the pipeline keeping the data fresh? Pure functions over the run log, for the banner
every page shows after several failed runs in a row (not only once the data turns stale)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

#: Run statuses that count as a failure of the pipeline to deliver data ('held': the plausibility gate
#: kept the run's snapshot out of gold, so the pages did not get new data either).
FAILED_STATUSES = ("failed", "abandoned", "held")
#: Runs that deliver new data; replays and maintenance do not say whether CoinGecko is reachable.
FETCHING_SOURCES = ("api",)


@dataclass(frozen=True)
class FailureStreak:
    """The newest fetching runs that failed one after another."""

    count: int
    last_error: str | None
    since: datetime | None  # when the first failure of the streak started


def failure_streak(runs: pd.DataFrame) -> FailureStreak:
    """Consecutive failed API runs, newest first, up to the newest success (runs still going are skipped)."""
    if runs.empty:
        return FailureStreak(0, None, None)
    fetching = runs[runs["source"].isin(FETCHING_SOURCES) & (runs["status"] != "running")]
    fetching = fetching.sort_values("started_at", ascending=False)
    count, last_error, since = 0, None, None
    for row in fetching.itertuples(index=False):
        if row.status not in FAILED_STATUSES:
            break
        count += 1
        if last_error is None:
            last_error = row.error_message if isinstance(row.error_message, str) else None
        since = pd.Timestamp(row.started_at).to_pydatetime()
    return FailureStreak(count, last_error, since)
