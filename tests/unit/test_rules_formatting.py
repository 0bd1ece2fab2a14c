"""The dashboard's number, time and text formats at their boundaries.

Each rule of ``dashboard/formatting.py`` is checked just below and just above the value where
its output changes (a suffix, a precision, a unit, a cut), so a changed comparison fails a test.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from dashboard import formatting as fmt

# ---- compact numbers: suffix boundaries and rounding across them -----------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, "0.00"),
        (0.004, "0.00"),
        (999.99, "999.99"),
        (999.994, "999.99"),
        (999.995, "1.00K"),  # rounds to 1000.00: said as 1.00K, never "1000.00"
        (-999.995, "-1.00K"),
        (1000, "1.00K"),
        (999_994.9, "999.99K"),
        (999_995, "1.00M"),  # 999.995K rounds to 1000.00K: one suffix up
        (1e6, "1.00M"),
        (999_995e3, "1.00B"),
        (1e9, "1.00B"),
        (999_996e6, "1.00T"),
        (-999_996e6, "-1.00T"),
        (1e12, "1.00T"),
        (1e15, "1000.00T"),  # no suffix above T
        (12.345, "12.35"),
        (np.float64(2.5e6), "2.50M"),
        ("1234", "1.23K"),  # numeric text from a CSV is a number
    ],
)
def test_format_compact_boundaries(value, expected):
    assert fmt.format_compact(value) == expected


@pytest.mark.parametrize(
    "value, digits, expected",
    [
        (999.5, 0, "1K"),
        (999.4, 0, "999"),
        (1234, 0, "1K"),
        (1234, 1, "1.2K"),
        (999_950, 1, "1.0M"),
        (1.5e9, 3, "1.500B"),
        (999.9995, 3, "1.000K"),
        (999.9994, 3, "999.999"),
    ],
)
def test_format_compact_digits(value, digits, expected):
    assert fmt.format_compact(value, digits) == expected


@pytest.mark.parametrize(
    "value, expected",
    [(999.995, "$1.00K"), (-999.995, "-$1.00K"), (-12_345, "-$12.35K"), (-1e12, "-$1.00T"), (-0.5, "-$0.50")],
)
def test_format_usd_puts_the_sign_before_the_dollar(value, expected):
    assert fmt.format_usd(value) == expected


@pytest.mark.parametrize("formatter, expected", [(fmt.format_compact, "0.00"), (fmt.format_usd, "$0.00")])
def test_a_negative_value_that_rounds_to_zero_has_no_minus(formatter, expected):
    assert formatter(-0.004) == expected


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf, pd.NA, pd.NaT, "n/a", object(), 10**400])
@pytest.mark.parametrize(
    "formatter",
    [
        fmt.format_compact,
        fmt.format_usd,
        fmt.format_price,
        fmt.format_pct,
        fmt.format_pp,
        fmt.format_ratio,
        fmt.format_count,
        fmt.format_supply,
        fmt.format_duration,
    ],
)
def test_no_number_is_the_dash(formatter, value):
    assert formatter(value) == fmt.MISSING


# ---- prices: cents from $1, four significant digits below ----------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (2.0, "$2.00"),
        (1.999, "$2.00"),
        (1.5, "$1.50"),
        (1.004, "$1.00"),
        (1.0, "$1.00"),
        (0.99999, "$1.00"),  # four significant digits round up to a dollar
        (0.9999, "$0.9999"),
        (0.5, "$0.50"),  # at least cents
        (0.1, "$0.10"),
        (0.12345, "$0.1235"),
        (0.01, "$0.01"),
        (0.0001234567, "$0.0001235"),
        (1234.5, "$1,234.50"),
        (1_234_567.891, "$1,234,567.89"),
        (1.234e-15, "$0.000000000000001234"),
        (1.234e-16, "$0.000000000000000123"),  # at most 18 decimals
        (-1.5, "-$1.50"),
        (-0.06123, "-$0.06123"),
        (-0.0, "$0.00"),
    ],
)
def test_format_price_around_one_dollar(value, expected):
    assert fmt.format_price(value) == expected


# ---- percentages and points: |x| below half a unit of the last digit is zero, never "-0.0" ----------


@pytest.mark.parametrize(
    "value, kwargs, expected",
    [
        (0.04, {}, "0.0%"),
        (-0.04, {}, "0.0%"),  # |x| < 0.05 rounds to zero: no "-0.0%"
        (-0.04, {"signed": True}, "+0.0%"),
        (0.04, {"signed": True}, "+0.0%"),
        (-0.06, {}, "-0.1%"),
        (0.06, {"signed": True}, "+0.1%"),
        (-0.4, {"digits": 0}, "0%"),  # |x| < 0.5 % with no decimals
        (-0.4, {"digits": 0, "signed": True}, "+0%"),
        (-0.6, {"digits": 0}, "-1%"),
        (0.6, {"digits": 0, "signed": True}, "+1%"),
        (-0.004, {"digits": 2}, "0.00%"),
        (-0.006, {"digits": 2}, "-0.01%"),
        (1234.56, {}, "1234.6%"),
        (-4.0, {}, "-4.0%"),
    ],
)
def test_format_pct_near_zero(value, kwargs, expected):
    assert fmt.format_pct(value, **kwargs) == expected


@pytest.mark.parametrize(
    "value, digits, expected",
    [
        (0.004, 2, "+0.00 pp"),
        (-0.004, 2, "+0.00 pp"),
        (-0.006, 2, "-0.01 pp"),
        (0.006, 2, "+0.01 pp"),
        (-0.4, 0, "+0 pp"),
        (-0.6, 0, "-1 pp"),
        (0, 2, "+0.00 pp"),
        (1.25, 1, "+1.2 pp"),
    ],
)
def test_format_pp_near_zero(value, digits, expected):
    assert fmt.format_pp(value, digits) == expected


@pytest.mark.parametrize(
    "func, value, expected",
    [
        (fmt.format_ratio, 0.0456, "0.046"),
        (fmt.format_count, 1234.7, "1,234"),
        (fmt.format_count, 1_000_000, "1,000,000"),
        (fmt.format_count, 0, "0"),
        (fmt.format_supply, 999.995, "1.00K"),
    ],
)
def test_plain_numbers(func, value, expected):
    assert func(value) == expected


def test_format_ratio_digits():
    assert fmt.format_ratio(0.123456, 5) == "0.12346"


# ---- ages and durations: the unit changes at 120 s, 2 h and 2 days --------------------------------


@pytest.mark.parametrize(
    "delta, expected",
    [
        (timedelta(seconds=-30), "0 s"),
        (timedelta(0), "0 s"),
        (timedelta(seconds=119.9), "119 s"),
        (timedelta(seconds=120), "2 min"),
        (timedelta(seconds=179), "2 min"),
        (timedelta(seconds=7199), "119 min"),
        (timedelta(hours=2), "2 h"),
        (timedelta(seconds=172_799), "47 h"),
        (timedelta(days=2), "2 days"),
        (timedelta(days=2, hours=23), "2 days"),
        (timedelta(days=1000), "1,000 days"),
    ],
)
def test_format_age_units(delta, expected):
    assert fmt.format_age(delta) == expected


@pytest.mark.parametrize(
    "seconds, expected",
    [
        (0, "0.0 s"),
        (59.94, "59.9 s"),
        (59.99, "60.0 s"),  # still below a minute
        (60, "1 min 0 s"),
        (119.6, "2 min 0 s"),
        (3725, "62 min 5 s"),
        ("75", "1 min 15 s"),
    ],
)
def test_format_duration_units(seconds, expected):
    assert fmt.format_duration(seconds) == expected


def test_format_timestamp_is_minutes_in_utc():
    assert fmt.format_timestamp(datetime(2024, 1, 2, 3, 4, 59)) == "2024-01-02 03:04 UTC"
    assert fmt.format_timestamp(math.nan) == fmt.MISSING


# ---- missing values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, missing",
    [
        (None, True),
        (math.nan, True),
        (np.nan, True),
        (pd.NA, True),
        (pd.NaT, True),
        (0, False),
        ("", False),
        ("None", False),
        (math.inf, False),
        (np.array([1, 2]), True),  # no single value: not shown as one
    ],
    ids=repr,
)
def test_is_missing(value, missing):
    assert fmt.is_missing(value) is missing


# ---- category labels -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, short, expected",
    [
        (None, False, "Unknown"),
        (math.nan, True, "Unknown"),
        ("unknown", False, "Unknown (no data)"),
        ("unknown", True, "Unknown"),
        ("mid_cap", False, "Mid cap ($1B–10B)"),
        ("micro_cap", False, "Micro cap (< $250M)"),
        ("neutral", True, "Neutral"),
        ("new_bucket_kind", False, "New bucket kind"),  # a code the dashboard does not know yet
        ("new_bucket_kind", True, "New bucket kind"),
        ("x" * 100, False, "X" + "x" * 58 + "…"),
    ],
)
def test_category_label(code, short, expected):
    assert fmt.category_label(code, short=short) == expected


# ---- external text: the cut, control characters ---------------------------------------------------


@pytest.mark.parametrize(
    "value, limit, expected",
    [
        ("abcdef", 6, "abcdef"),  # exactly the limit: unchanged
        ("abcdefg", 6, "abcde…"),  # one over: cut, the ellipsis counts
        ("abc   defg", 7, "abc…"),  # no blanks before the ellipsis
        ("abcdef", 1, "…"),
        ("a\nb\tc\x00d\x7f", 60, "a b c d "),
        (12345, 3, "12…"),
        (None, 5, fmt.MISSING),
    ],
)
def test_shorten(value, limit, expected):
    assert fmt.shorten(value, limit) == expected


@pytest.mark.parametrize("limit", [0, -1])
def test_shorten_rejects_a_useless_limit(limit):
    with pytest.raises(ValueError, match=f"at least 1, not {limit}"):
        fmt.shorten("x", limit)


def test_shorten_default_limit():
    assert fmt.shorten("y" * fmt.DISPLAY_LIMIT) == "y" * fmt.DISPLAY_LIMIT
    assert len(fmt.shorten("y" * (fmt.DISPLAY_LIMIT + 1))) == fmt.DISPLAY_LIMIT


@pytest.mark.parametrize(
    "name, symbol, limit, expected",
    [
        ("Bitcoin", "btc", None, "Bitcoin (BTC)"),
        ("Bitcoin", None, None, "Bitcoin"),
        (None, "btc", None, "BTC"),
        (None, None, None, "?"),
        (math.nan, "", None, "?"),
        ("Bitcoin", "btc", 13, "Bitcoin (BTC)"),  # fits exactly
        ("Bitcoin", "btc", 12, "Bitco… (BTC)"),  # the name gives way, the symbol stays
        ("Bitcoin", "btc", 7, "… (BTC)"),  # one character of room
        ("Bitcoin", "btc", 6, "Bitco…"),  # no room for a name: the whole label is cut
        ("Bitcoin", None, 4, "Bit…"),
        (None, "abcdefghijklmnop", None, "ABCDEFGHIJKLMNOP"),
        ("N", "abcdefghijklmnop", 30, "N (ABCDEFGHIJK…)"),  # a symbol is cut to SYMBOL_LIMIT
        (None, "abcdef", 4, "ABC…"),
    ],
)
def test_coin_label(name, symbol, limit, expected):
    assert fmt.coin_label(name, symbol, limit) == expected


def test_escape_markdown_and_plotly():
    assert fmt.escape_markdown(None) == "" and fmt.escape_plotly(math.nan) == ""
    assert fmt.escape_markdown("a\nb") == "a b"
    assert fmt.escape_markdown("1.5") == "1\\.5"
    assert fmt.escape_markdown("WWW.x") == "WWW" + fmt.WORD_JOINER + "\\.x"
    assert fmt.escape_markdown(42) == "42"
    assert fmt.escape_plotly('<b>"A" & B</b>') == '&lt;b&gt;"A" &amp; B&lt;/b&gt;'
    assert fmt.escape_plotly(7) == "7"
