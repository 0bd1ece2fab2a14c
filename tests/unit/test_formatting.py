"""Numbers, times and external text as the dashboard shows them to people."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pandas as pd
import pytest

from dashboard import formatting as fmt
from pipeline.categories import LIQUIDITY_CATEGORIES, MARKET_CAP_CATEGORIES, PRICE_TREND_CATEGORIES


@pytest.mark.parametrize(
    "value, expected",
    [
        (1.23e12, "$1.23T"),
        (956_634_610_015.76, "$956.63B"),
        (45.6e9, "$45.60B"),
        (3_000_000, "$3.00M"),
        (12_345, "$12.35K"),
        (999.5, "$999.50"),
        (0, "$0.00"),
        (-3e6, "-$3.00M"),
        (999_996_000_000, "$1.00T"),  # rounds up across the suffix boundary
        (999_999.9, "$1.00M"),
        (None, "—"),
        (math.nan, "—"),
        (pd.NA, "—"),
    ],
)
def test_format_usd(value, expected):
    assert fmt.format_usd(value) == expected


def test_format_usd_digits():
    assert fmt.format_usd(1e9, 0) == "$1B"
    assert fmt.format_usd(2.5e6, 1) == "$2.5M"


@pytest.mark.parametrize(
    "value, expected",
    [
        (20431.5, "$20,431.50"),
        (1.0, "$1.00"),
        (0.06123456, "$0.06123"),
        (0.5, "$0.50"),
        (0.000012345, "$0.00001234"),
        (7.8666533e-10, "$0.0000000007867"),
        (0, "$0.00"),
        (None, "—"),
    ],
)
def test_format_price_keeps_significant_digits_for_tiny_prices(value, expected):
    assert fmt.format_price(value) == expected


@pytest.mark.parametrize(
    "value, kwargs, expected",
    [
        (12.345, {}, "12.3%"),
        (12.345, {"digits": 2}, "12.35%"),
        (12.345, {"signed": True}, "+12.3%"),
        (-4.0, {}, "-4.0%"),
        (-4.0, {"signed": True}, "-4.0%"),
        (-0.04, {"signed": True}, "+0.0%"),  # no "-0.0%"
        (0, {"signed": True}, "+0.0%"),
        (None, {}, "—"),
        (math.nan, {"signed": True}, "—"),
    ],
)
def test_format_pct(value, kwargs, expected):
    assert fmt.format_pct(value, **kwargs) == expected


def test_negative_percentages_use_an_ascii_minus_so_streamlit_colours_deltas_red():
    assert fmt.format_pct(-1.5, signed=True).startswith("-")
    assert fmt.format_pp(-0.25).startswith("-")


@pytest.mark.parametrize("value, expected", [(0.123, "+0.12 pp"), (-1.5, "-1.50 pp"), (0.001, "+0.00 pp"), (None, "—")])
def test_format_pp(value, expected):
    assert fmt.format_pp(value) == expected


@pytest.mark.parametrize(
    "func, value, expected",
    [
        (fmt.format_ratio, 0.04567, "0.046"),
        (fmt.format_count, 1234, "1,234"),
        (fmt.format_count, 1234.0, "1,234"),
        (fmt.format_compact, 1_234_567, "1.23M"),
        (fmt.format_compact, 12.3, "12.30"),
        (fmt.format_supply, 19_180_000, "19.18M"),
        (fmt.format_ratio, None, "—"),
        (fmt.format_count, math.nan, "—"),
    ],
)
def test_small_formatters(func, value, expected):
    assert func(value) == expected


def test_format_timestamp():
    assert fmt.format_timestamp(datetime(2022, 10, 16, 9, 28, 53)) == "2022-10-16 09:28 UTC"
    assert fmt.format_timestamp(pd.Timestamp("2024-12-19 10:44:55")) == "2024-12-19 10:44 UTC"
    assert fmt.format_timestamp(None) == "—"
    assert fmt.format_timestamp(pd.NaT) == "—"


@pytest.mark.parametrize(
    "seconds, expected",
    [
        (-5, "0 s"),
        (45, "45 s"),
        (119, "119 s"),
        (600, "10 min"),
        (3 * 3600, "3 h"),
        (4 * 86400, "4 days"),
        (1502 * 86400, "1,502 days"),
    ],
)
def test_format_age(seconds, expected):
    assert fmt.format_age(timedelta(seconds=seconds)) == expected


@pytest.mark.parametrize("missing", [None, pd.NaT])
def test_format_age_of_nothing_is_the_dash(missing):
    assert fmt.format_age(missing) == fmt.MISSING


@pytest.mark.parametrize("seconds, expected", [(2.34, "2.3 s"), (75, "1 min 15 s"), (None, "—")])
def test_format_duration(seconds, expected):
    assert fmt.format_duration(seconds) == expected


def test_category_labels():
    assert fmt.category_label("large_cap") == "Large cap (≥ $10B)"
    assert fmt.category_label("large_cap", short=True) == "Large cap"
    assert fmt.category_label("unknown", short=True) == "Unknown"
    assert fmt.category_label("brand_new_bucket") == "Brand new bucket"
    assert fmt.category_label(None) == "Unknown"


def test_category_labels_come_from_the_bands():
    """Every band has both labels (printed from its bounds); nothing else does."""
    codes = set(MARKET_CAP_CATEGORIES + LIQUIDITY_CATEGORIES + PRICE_TREND_CATEGORIES)
    assert set(fmt.CATEGORY_LABELS) == set(fmt.SHORT_LABELS) == codes
    for code in codes:
        assert fmt.category_label(code).startswith(fmt.category_label(code, short=True) + " (")


def test_category_ranges_for_a_caption():
    assert fmt.category_ranges("market_cap_category") == (
        "large cap ≥ $10B, mid cap $1B–10B, small cap $250M–1B, micro cap < $250M"
    )
    assert fmt.category_ranges("price_trend_category").startswith("strong gain ≥ +5%, moderate gain +1% to +5%")


def test_coin_label():
    assert fmt.coin_label("Bitcoin", "btc") == "Bitcoin (BTC)"
    assert fmt.coin_label("Bitcoin", None) == "Bitcoin"
    assert fmt.coin_label(None, "btc") == "BTC"
    assert fmt.coin_label(None, None) == "?"


NASTY = "<img src=x onerror=alert(1)> **bold** [link](http://evil.example) ![i](http://e.x/i.png) $x$ :red[hi] `c`"


def test_escape_markdown_leaves_no_markdown_syntax_active():
    escaped = fmt.escape_markdown(NASTY)
    for token in ("<", ">", "*", "[", "]", "(", ")", "!", "$", ":", "`"):
        # every occurrence of a syntax character is preceded by a backslash
        positions = [i for i, ch in enumerate(escaped) if ch == token]
        assert positions, token
        assert all(escaped[i - 1] == "\\" for i in positions), token


def test_escape_markdown_breaks_autolinks_invisibly():
    escaped = fmt.escape_markdown("visit www.evil.example or http://evil.example or me@evil.example")
    assert "www" + fmt.WORD_JOINER in escaped
    assert "\\:" + fmt.WORD_JOINER + "//" in escaped
    assert "@" + fmt.WORD_JOINER in escaped
    assert (
        escaped.replace(fmt.WORD_JOINER, "").replace("\\", "")
        == "visit www.evil.example or http://evil.example or me@evil.example"
    )


def test_escape_markdown_plain_names_stay_readable():
    assert fmt.escape_markdown("Bitcoin") == "Bitcoin"
    assert fmt.escape_markdown("line\nbreak") == "line break"
    assert fmt.escape_markdown(None) == ""


def test_escape_plotly_turns_html_into_entities():
    assert fmt.escape_plotly("<b>Bold</b> & <a href='x'>") == "&lt;b&gt;Bold&lt;/b&gt; &amp; &lt;a href='x'&gt;"
    assert fmt.escape_plotly("Bitcoin") == "Bitcoin"
    assert fmt.escape_plotly(None) == ""


@pytest.mark.parametrize(
    "value, missing",
    [(None, True), (math.nan, True), (pd.NA, True), (pd.NaT, True), (0, False), ("", False), ("x", False)],
)
def test_is_missing(value, missing):
    assert fmt.is_missing(value) is missing


# -- shorten: external text cut for the page -----------------------------------------------


@pytest.mark.parametrize(
    "value, limit, expected",
    [
        ("Bitcoin", 60, "Bitcoin"),
        ("x" * 59, 60, "x" * 59),
        ("x" * 60, 60, "x" * 60),  # exactly the limit: unchanged
        ("x" * 61, 60, "x" * 59 + "…"),  # one over: cut, the ellipsis counts
        ("abcdef", 3, "ab…"),
        ("abc", 1, "…"),
        ("a   b" + "c" * 10, 5, "a…"),  # no dangling space before the ellipsis
        ("", 60, ""),
    ],
)
def test_shorten_cuts_at_the_limit_with_an_ellipsis(value, limit, expected):
    assert fmt.shorten(value, limit) == expected
    assert len(fmt.shorten(value, limit)) <= limit


def test_shorten_defaults_and_missing_values():
    assert fmt.shorten("y" * 100_000) == "y" * (fmt.DISPLAY_LIMIT - 1) + "…"
    assert fmt.DISPLAY_LIMIT == 60
    for missing in (None, math.nan, pd.NA):
        assert fmt.shorten(missing) == fmt.MISSING
    assert fmt.shorten(12345) == "12345"


def test_shorten_keeps_one_line():
    assert fmt.shorten("two\nlines\tand\r\x00nul") == "two lines and  nul"


def test_shorten_rejects_a_useless_limit():
    with pytest.raises(ValueError):
        fmt.shorten("x", 0)


def test_coin_label_is_cut_when_asked():
    label = fmt.coin_label("N" * 100_000, "s" * 100_000, limit=60)
    assert len(label) <= 60 and label.startswith("NNN") and label.endswith("… (" + "S" * 11 + "…)")
    assert fmt.coin_label("Bitcoin", "btc", limit=60) == "Bitcoin (BTC)"


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
@pytest.mark.parametrize("value", [math.inf, -math.inf, float("nan"), None])
def test_number_formatters_never_show_infinity(formatter, value):
    assert formatter(value) == fmt.MISSING
