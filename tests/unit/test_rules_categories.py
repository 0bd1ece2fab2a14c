"""Category bands: the lower bound included, the upper excluded, whatever order the bands are in.

``classify`` and ``classify_series`` take the first band that contains a value; with the bands in
their usual descending order an upper bound wrongly *included* would never show. These tests
check each band on its own and in reversed order, so the half-open rule itself is pinned.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest

from pipeline.categories import (
    LIQUIDITY_BANDS,
    MARKET_CAP_BANDS,
    PRICE_TREND_BANDS,
    UNKNOWN,
    Band,
    classify,
    classify_series,
    main,
    thresholds_markdown,
)

ALL_BANDS = [MARKET_CAP_BANDS, LIQUIDITY_BANDS, PRICE_TREND_BANDS]


@pytest.mark.parametrize(
    "band, value, inside",
    [
        (Band("b", 1.0, 2.0), 1.0, True),  # lower bound included
        (Band("b", 1.0, 2.0), 2.0, False),  # upper bound excluded
        (Band("b", 1.0, 2.0), math.nextafter(1.0, 0), False),
        (Band("b", 1.0, 2.0), math.nextafter(2.0, 0), True),
        (Band("b", None, 2.0), -math.inf, True),
        (Band("b", None, 2.0), 2.0, False),
        (Band("b", 1.0, None), math.inf, True),
        (Band("b", 1.0, None), 0.999, False),
        (Band("b", None, None), 0.0, True),
    ],
)
def test_band_is_half_open(band, value, inside):
    assert band.contains(value) is inside


def edges(bands):
    """Every bound of a family, and the float just below it."""
    bounds = sorted({b for band in bands for b in (band.lower, band.upper) if b is not None})
    return [v for bound in bounds for v in (bound, math.nextafter(bound, -math.inf))]


@pytest.mark.parametrize("bands", ALL_BANDS)
def test_the_order_of_the_bands_does_not_matter(bands):
    values = edges(bands) + [math.inf, -math.inf]
    backwards = tuple(reversed(bands))
    expected = [classify(v, bands) for v in values]
    assert [classify(v, backwards) for v in values] == expected
    assert classify_series(pd.Series(values), backwards).tolist() == expected
    assert classify_series(pd.Series(values), bands).tolist() == expected


@pytest.mark.parametrize("bands", ALL_BANDS)
def test_each_bound_belongs_to_the_band_above_it(bands):
    for band in bands:
        if band.lower is not None:
            assert classify(band.lower, bands) == band.name
            assert classify_series(pd.Series([band.lower]), bands).tolist() == [band.name]
        if band.upper is not None:
            below = math.nextafter(band.upper, -math.inf)
            assert classify(below, bands) == band.name
            assert classify_series(pd.Series([below]), bands).tolist() == [band.name]
            assert classify(band.upper, bands) != band.name


def test_a_value_no_band_contains_is_unknown():
    gap = (Band("low", None, 1.0), Band("high", 2.0, None))
    assert classify(1.5, gap) == UNKNOWN
    assert classify_series(pd.Series([0.5, 1.5, 2.5]), gap).tolist() == ["low", UNKNOWN, "high"]


def test_classify_series_reads_numbers_in_any_container():
    values = pd.Series(["1e10", 5, None, "n/a", np.int64(300_000_000), pd.NA], index=[9, 8, 7, 6, 5, 4], dtype=object)
    result = classify_series(values, MARKET_CAP_BANDS)
    assert result.tolist() == ["large_cap", "micro_cap", UNKNOWN, UNKNOWN, "small_cap", UNKNOWN]
    assert result.index.tolist() == [9, 8, 7, 6, 5, 4] and result.dtype == object
    ints = pd.Series([2_000_000_000, 10], dtype="int64")
    assert classify_series(ints, MARKET_CAP_BANDS).tolist() == ["mid_cap", "micro_cap"]


def test_infinities_fall_in_the_open_ended_bands():
    assert classify(math.inf, MARKET_CAP_BANDS) == "large_cap"
    assert classify(-math.inf, PRICE_TREND_BANDS) == "strong_loss"
    assert classify_series(pd.Series([math.inf, -math.inf]), PRICE_TREND_BANDS).tolist() == [
        "strong_gain",
        "strong_loss",
    ]


def test_the_readme_table_command_reads_the_command_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["python -m pipeline.categories", "readme-table"])
    assert main() == 0
    assert capsys.readouterr().out == thresholds_markdown() + "\n"
    monkeypatch.setattr(sys, "argv", ["python -m pipeline.categories"])
    assert main() == 2
    assert capsys.readouterr().err == "usage: python -m pipeline.categories readme-table\n"
    assert main(["readme-table", "extra"]) == 2


def test_the_readme_table_has_one_row_per_band_and_unknown():
    lines = thresholds_markdown().splitlines()
    rows = lines[2:]
    assert len(rows) == sum(len(bands) + 1 for bands in ALL_BANDS)
    assert "| market_cap_category | `small_cap` | $250M | $1B |" in thresholds_markdown()
    assert "| `medium_liquidity` | 0.03 | 0.1 |" in thresholds_markdown()
    assert "| `moderate_loss` | -5 | -1 |" in thresholds_markdown()
