"""Category bands: [lower, upper) boundaries, NULL -> unknown, scalar == vectorised, calibration."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.categories import (
    LABELS,
    LIQUIDITY_BANDS,
    LIQUIDITY_CATEGORIES,
    MARKET_CAP_BANDS,
    MARKET_CAP_CATEGORIES,
    PRICE_TREND_BANDS,
    PRICE_TREND_CATEGORIES,
    SCALES,
    SHORT_LABELS,
    UNKNOWN,
    classify,
    classify_series,
    main,
    thresholds_markdown,
)
from pipeline.silver.transform import transform_markets
from tests.fakes.coingecko import DEFAULT_MARKETS, load_fixture


def _below(x: float) -> float:
    """The float just below a bound, to probe the exclusive side of it."""
    return float(np.nextafter(x, -math.inf))


# ---- market cap ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (10e9, "large_cap"),  # lower bound of large is inclusive
        (_below(10e9), "mid_cap"),
        (10e9 + 1, "large_cap"),
        (9_999_999_999.0, "mid_cap"),
        (5e12, "large_cap"),  # unbounded above
        (1e9, "mid_cap"),
        (_below(1e9), "small_cap"),
        (999_999_999.0, "small_cap"),
        (250e6, "small_cap"),
        (_below(250e6), "micro_cap"),
        (249_999_999.0, "micro_cap"),
        (1.0, "micro_cap"),
        (0.0, "micro_cap"),  # 0 is a real value, not NULL
        (0, "micro_cap"),
    ],
)
def test_market_cap_bands(value, expected):
    assert classify(value, MARKET_CAP_BANDS) == expected
    assert classify_series(pd.Series([value]), MARKET_CAP_BANDS).tolist() == [expected]


# ---- liquidity (volume / market cap) -------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.10, "high_liquidity"),
        (_below(0.10), "medium_liquidity"),
        (0.1000001, "high_liquidity"),
        (25.0, "high_liquidity"),
        (0.03, "medium_liquidity"),
        (_below(0.03), "low_liquidity"),
        (0.0299999, "low_liquidity"),
        (0.0, "low_liquidity"),
    ],
)
def test_liquidity_bands(value, expected):
    assert classify(value, LIQUIDITY_BANDS) == expected
    assert classify_series(pd.Series([value]), LIQUIDITY_BANDS).tolist() == [expected]


# ---- price trend (24h %) --------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (5.0, "strong_gain"),
        (_below(5.0), "moderate_gain"),
        (250.0, "strong_gain"),
        (1.0, "moderate_gain"),
        (_below(1.0), "neutral"),
        (0.0, "neutral"),
        (-0.0, "neutral"),
        (0, "neutral"),
        (-1.0, "neutral"),  # -1 is the inclusive lower bound of neutral
        (_below(-1.0), "moderate_loss"),
        (-1.0000001, "moderate_loss"),
        (-5.0, "moderate_loss"),
        (_below(-5.0), "strong_loss"),
        (-99.9, "strong_loss"),
    ],
)
def test_price_trend_bands(value, expected):
    assert classify(value, PRICE_TREND_BANDS) == expected
    assert classify_series(pd.Series([value]), PRICE_TREND_BANDS).tolist() == [expected]


# ---- NULL / NaN ----------------------------------------------------------------


@pytest.mark.parametrize("bands", [MARKET_CAP_BANDS, LIQUIDITY_BANDS, PRICE_TREND_BANDS])
@pytest.mark.parametrize("value", [None, float("nan"), np.nan, np.float64("nan")])
def test_null_and_nan_are_unknown(bands, value):
    assert classify(value, bands) == UNKNOWN
    assert classify_series(pd.Series([value], dtype="float64"), bands).tolist() == [UNKNOWN]


@pytest.mark.parametrize("bands", [MARKET_CAP_BANDS, LIQUIDITY_BANDS, PRICE_TREND_BANDS])
def test_series_nulls_are_unknown_in_every_container(bands):
    values = pd.Series([None, np.nan, pd.NA, "n/a"], dtype=object)
    assert classify_series(values, bands).tolist() == [UNKNOWN] * 4
    nullable = pd.Series([pd.NA, 1.0], dtype="Float64")
    assert classify_series(nullable, bands).iloc[0] == UNKNOWN
    assert classify_series(nullable, bands).iloc[1] != UNKNOWN


def test_scalar_classify_pd_na_is_unknown():
    assert classify(pd.NA, MARKET_CAP_BANDS) == UNKNOWN


def test_series_keeps_index_and_object_dtype():
    values = pd.Series([20e9, None, 5e8], index=[7, 3, 11])
    out = classify_series(values, MARKET_CAP_BANDS)
    assert list(out.index) == [7, 3, 11]
    assert out.dtype == object
    assert out.tolist() == ["large_cap", UNKNOWN, "small_cap"]


def test_empty_series():
    out = classify_series(pd.Series([], dtype="float64"), PRICE_TREND_BANDS)
    assert len(out) == 0


# ---- scalar == vectorised ------------------------------------------------------

SWEEP = sorted(
    {
        *[
            b
            for bands in (MARKET_CAP_BANDS, LIQUIDITY_BANDS, PRICE_TREND_BANDS)
            for band in bands
            for b in (band.lower, band.upper)
            if b is not None
        ],
        *[
            _below(b)
            for bands in (MARKET_CAP_BANDS, LIQUIDITY_BANDS, PRICE_TREND_BANDS)
            for band in bands
            for b in (band.lower, band.upper)
            if b is not None
        ],
        *np.linspace(-120, 120, 97).tolist(),
        *np.geomspace(1e-6, 1e13, 60).tolist(),
        0.0,
        -0.0,
        -1e12,
        1e15,
        math.inf,
        -math.inf,
    }
)


@pytest.mark.parametrize(
    "bands", [MARKET_CAP_BANDS, LIQUIDITY_BANDS, PRICE_TREND_BANDS], ids=["market_cap", "liquidity", "price_trend"]
)
def test_classify_series_agrees_with_scalar(bands):
    values = SWEEP + [None, float("nan")]
    vectorised = classify_series(pd.Series(values, dtype="float64"), bands).tolist()
    scalar = [classify(v, bands) for v in values]
    assert vectorised == scalar
    # the sweep really crosses every band
    assert {b.name for b in bands} <= set(scalar)


@pytest.mark.parametrize("value", [-7.5, -5.0, -3.0, -1.0, 0.0, 0.5, 1.0, 4.99, 5.0, 80.0, None])
@pytest.mark.parametrize(
    "bands", [MARKET_CAP_BANDS, LIQUIDITY_BANDS, PRICE_TREND_BANDS], ids=["market_cap", "liquidity", "price_trend"]
)
def test_classify_series_agrees_with_scalar_pointwise(bands, value):
    for scale in (1.0, 0.03, 1e9):
        v = None if value is None else value * scale
        assert classify_series(pd.Series([v], dtype="float64"), bands).iloc[0] == classify(v, bands)


def test_bands_are_contiguous_and_cover_the_line():
    """No gaps and no overlaps: each band's upper bound is the next band's lower bound."""
    for bands in (MARKET_CAP_BANDS, LIQUIDITY_BANDS, PRICE_TREND_BANDS):
        assert bands[0].upper is None and bands[-1].lower is None
        for higher, lower in zip(bands, bands[1:]):
            assert higher.lower == lower.upper


# ---- calibration on real data ---------------------------------------------------


@pytest.fixture(scope="module")
def real_2022_rows():
    records = load_fixture(DEFAULT_MARKETS)
    assert len(records) == 250
    batch = transform_markets(
        records, run_id="calib", snapshot_at=datetime(2022, 10, 16), source="api", with_sparklines=False
    )
    assert len(batch.rows) == 250
    return batch.rows


@pytest.mark.parametrize(
    "column, categories",
    [
        ("market_cap_category", MARKET_CAP_CATEGORIES),
        ("liquidity_category", LIQUIDITY_CATEGORIES),
        ("price_trend_category", PRICE_TREND_CATEGORIES),
    ],
)
def test_every_bucket_populated_on_real_top_250(real_2022_rows, column, categories):
    counts = real_2022_rows[column].value_counts().to_dict()
    for category in categories:
        if category == UNKNOWN:
            continue
        assert counts.get(category, 0) > 0, f"{column}={category} is empty on the 2022-10-16 top 250: {counts}"
    assert set(counts) <= set(categories)


def test_real_rows_agree_with_scalar_classify(real_2022_rows):
    for _, row in real_2022_rows.iterrows():
        mcap = None if pd.isna(row["market_cap"]) else row["market_cap"]
        ratio = None if pd.isna(row["volume_to_mcap_ratio"]) else row["volume_to_mcap_ratio"]
        trend = None if pd.isna(row["price_change_percentage_24h"]) else row["price_change_percentage_24h"]
        assert row["market_cap_category"] == classify(mcap, MARKET_CAP_BANDS)
        assert row["liquidity_category"] == classify(ratio, LIQUIDITY_BANDS)
        assert row["price_trend_category"] == classify(trend, PRICE_TREND_BANDS)


# ---- README table ---------------------------------------------------------------


def test_thresholds_markdown_mentions_every_category():
    text = thresholds_markdown()
    for name in MARKET_CAP_CATEGORIES + LIQUIDITY_CATEGORIES + PRICE_TREND_CATEGORIES:
        assert f"`{name}`" in text, name
    for column in ("market_cap_category", "liquidity_category", "price_trend_category"):
        assert (
            text.count(f"| {column}")
            == {"market_cap_category": 5, "liquidity_category": 4, "price_trend_category": 6}[column]
        )
    assert "$10B" in text and "$1B" in text and "$250M" in text
    assert "0.1" in text and "0.03" in text and "| -5 |" in text
    lines = text.splitlines()
    assert lines[0].startswith("| column |")
    assert all(line.startswith("|") and line.endswith("|") for line in lines)


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_table() -> str:
    """The table under README's "### Categories" heading, as written."""
    section = README.read_text(encoding="utf-8").split("### Categories", 1)[1]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return "\n".join(lines[start:end])


def test_the_readme_table_is_printed_from_the_bands():
    """README.md's category table is ``python -m pipeline.categories readme-table``: paste its output there."""
    assert readme_table() == thresholds_markdown()


def test_readme_table_command(capsys):
    assert main(["readme-table"]) == 0
    assert capsys.readouterr().out == thresholds_markdown() + "\n"
    assert main([]) == 2 and "usage" in capsys.readouterr().err


# ---- labels ---------------------------------------------------------------


def test_every_category_has_one_label_and_one_short_label():
    codes = MARKET_CAP_CATEGORIES + LIQUIDITY_CATEGORIES + PRICE_TREND_CATEGORIES
    assert sorted(LABELS) == sorted(SHORT_LABELS) == sorted(set(codes))
    assert [scale.bands for scale in SCALES] == [MARKET_CAP_BANDS, LIQUIDITY_BANDS, PRICE_TREND_BANDS]


@pytest.mark.parametrize(
    "code, label",
    [
        ("large_cap", "Large cap (≥ $10B)"),
        ("mid_cap", "Mid cap ($1B–10B)"),
        ("small_cap", "Small cap ($250M–1B)"),
        ("micro_cap", "Micro cap (< $250M)"),
        ("high_liquidity", "High (≥ 10% of cap traded)"),
        ("medium_liquidity", "Medium (3–10%)"),
        ("low_liquidity", "Low (< 3%)"),
        ("strong_gain", "Strong gain (≥ +5%)"),
        ("moderate_gain", "Moderate gain (+1% to +5%)"),
        ("neutral", "Neutral (−1% to +1%)"),
        ("moderate_loss", "Moderate loss (−5% to −1%)"),
        ("strong_loss", "Strong loss (< −5%)"),
        ("unknown", "Unknown (no data)"),
    ],
)
def test_labels_read_the_bounds(code, label):
    assert LABELS[code] == label


def test_a_moved_threshold_moves_its_label_and_its_neighbour():
    """The labels follow the bands: no label restates a number by hand."""
    from pipeline.categories import Band, Scale

    bands = (Band("big", 2e9, None, "Big"), Band("rest", None, 2e9, "Rest"))
    scale = Scale("x_category", "", bands, "usd")
    assert [scale.label(b) for b in bands] == ["Big (≥ $2B)", "Rest (< $2B)"]
    shares = Scale("y", "", (Band("a", 0.5, None, "A"), Band("b", 0.05, 0.5, "B")), "share", hint="of it")
    assert [shares.label(b) for b in shares.bands] == ["A (≥ 50% of it)", "B (5–50%)"]
    signed = Scale("z", "", (Band("flat", -0.5, 0.0, "Flat"), Band("any", None, None, "Any")), "signed_pct")
    assert [signed.label(b) for b in signed.bands] == ["Flat (−0.5% to 0%)", "Any (any value)"]
