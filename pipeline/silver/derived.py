"""Silver's derived columns: one declaration each, the single owner of its name, formula, limit and meaning.

``pipeline.schema`` makes a ``staging_crypto_market`` column of each (``DERIVED_COLUMNS``),
``pipeline.silver.transform`` computes them (``add_derived_columns`` loops over :data:`DERIVED`),
and ``pipeline.db.ensure_schema`` adds a new one to an existing database by itself (a NULLable
column needs no hand-written migration). Gold shows a derived column only where its SQL names it
(``sql/gold/crypto_analytics_mart.sql`` copies these three explicitly).

A formula is a small pure function of silver's numeric columns (``columns[name]``: a numpy float64
array, or a pandas Series, NaN for NULL) using only element-wise arithmetic, so a whole column is
computed at once and a NULL input gives NULL. :meth:`Derived.compute` then keeps the result finite
and within the magnitude limit: a division by zero, an overflow or an implausible result
(inconsistent inputs, e.g. a price far below its 24h low) is NULL, never ±Infinity or NaN.

This module imports nothing of the pipeline, and numpy only when a column is computed:
``pipeline.schema`` imports it, and anything it imported would load with the schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

#: Numeric silver columns by name: numpy float64 arrays (or pandas Series), NaN for NULL.
Columns = Mapping[str, Any]

#: A change of ±1,000,000 %: the bound of every percent field (``transform.NUMERIC_LIMITS`` uses it too).
PERCENT_LIMIT = 1e6
#: Volume over market cap: a coin traded a billion times its cap in a day is no measurement.
RATIO_LIMIT = 1e9


@dataclass(frozen=True)
class Derived:
    """One derived silver column (a nullable double precision column of ``staging_crypto_market``)."""

    name: str
    #: The raw result for every row (NaN where an input is NULL); no limits applied.
    formula: Callable[[Columns], Any]
    #: Beyond this magnitude the result is NULL.
    limit: float
    #: One line: what the number means (docstrings, reviews, the gold YAML when a mart shows it).
    description: str

    def compute(self, columns: Columns) -> FloatArray:
        """The column: the formula's result where finite and within ``limit``, else NULL (NaN).

        ``abs() <= limit`` is False for NaN and ±Infinity, so one comparison does both; a division
        by zero or an overflow gives ±Infinity or NaN silently, never a warning.
        """
        import numpy as np

        with np.errstate(all="ignore"):
            result = np.asarray(self.formula(columns), dtype=np.float64)
            return np.where(np.abs(result) <= self.limit, result, np.nan)


def compute_all(columns: Columns) -> dict[str, FloatArray]:
    """Every declared derived column from silver's numeric columns, in declaration order."""
    return {column.name: column.compute(columns) for column in DERIVED}


def _price_volatility_24h(frame: Columns) -> Any:
    return (frame["high_24h"] - frame["low_24h"]) / frame["current_price"] * 100.0


def _volume_to_mcap_ratio(frame: Columns) -> Any:
    return frame["total_volume"] / frame["market_cap"]


def _distance_from_ath_pct(frame: Columns) -> Any:
    """CoinGecko's own ath_change_percentage when the record has it; only when it is absent,
    (current_price - ath) / ath * 100. The API computes it from its own ATH price at its own
    update time: recomputing it from the rounded, possibly older current_price disagrees with
    coingecko.com (BTC on 2024-12-19: -5.42 % from the API, -5.21 % recomputed)."""
    import numpy as np

    recomputed = (frame["current_price"] - frame["ath"]) / frame["ath"] * 100.0
    if "ath_change_percentage" not in frame:
        return recomputed
    from_api = np.asarray(frame["ath_change_percentage"], dtype=np.float64)
    return np.where(np.isnan(from_api), recomputed, from_api)


#: Every derived column, in ``staging_crypto_market``'s column order. Add one here (and a unit test).
DERIVED: tuple[Derived, ...] = (
    Derived(
        "price_volatility_24h",
        _price_volatility_24h,
        PERCENT_LIMIT,
        "The day's trading range as a percent of the price: (high_24h - low_24h) / current_price * 100.",
    ),
    Derived(
        "volume_to_mcap_ratio",
        _volume_to_mcap_ratio,
        RATIO_LIMIT,
        "24h volume over market cap (the share of the cap traded in a day): total_volume / market_cap.",
    ),
    Derived(
        "distance_from_ath_pct",
        _distance_from_ath_pct,
        PERCENT_LIMIT,
        "Percent from the all-time high (0 at it, negative below): CoinGecko's ath_change_percentage,"
        " else (current_price - ath) / ath * 100.",
    ),
)
