"""Numbers, times and external text formatted for people. Pure functions, no Streamlit.

Every formatter accepts ``None`` and NaN (and the number formatters ±Infinity)
and returns an em dash for them, so a missing value never shows up as "nan",
"None" or "Infinity" on a page.

Text from outside (coin names and symbols from the API, query parameters from a
link, error messages that echo them) is unbounded: everything that shows it goes
through :func:`shorten`, which cuts it to a limit
with an ellipsis. The data itself keeps the full value (a CSV download has it).
"""

from __future__ import annotations

import html
import math
import re
from datetime import datetime, timedelta

from pipeline import api

MISSING = "—"

#: Default length of external text on a page (names in tables, pickers, chart labels, captions).
DISPLAY_LIMIT = 60
#: Page headings (the Coin page's coin) have room for a long real name.
HEADING_LIMIT = 120
#: Symbols are short tickers; one longer than this is cut.
SYMBOL_LIMIT = 12
ELLIPSIS = "…"
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")

_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))

#: Markdown (and Streamlit's ``:color[...]``/``$math$`` extensions) treat these as syntax.
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&])")

WORD_JOINER = "\u2060"
_AUTOLINK_TRIGGERS = re.compile(r"(?i)www|\\:|@")

#: Human labels for the pipeline's category codes, printed from the bands (``pipeline.categories``).
CATEGORY_LABELS = api.LABELS
#: Short labels, for axes and legends where space is tight.
SHORT_LABELS = api.SHORT_LABELS


def is_missing(value) -> bool:
    """True for None, NaN, pandas NA/NaT and anything else that is not a real value."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, NaT and pd.NA are not equal to themselves
    except (TypeError, ValueError):  # pd.NA raises on bool()
        return True


def _not_a_number(value) -> bool:
    """Missing, or ±Infinity: a number formatter shows the em dash, never "inf" or "Infinity"."""
    if is_missing(value):
        return True
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return True


def _scaled(value: float, digits: int) -> str:
    if round(value, digits) == 0:
        value = 0.0  # no "-0.00"
    magnitude = abs(value)
    for index, (size, suffix) in enumerate(_SUFFIXES):
        if magnitude >= size:
            text = f"{value / size:.{digits}f}"
            if abs(float(text)) >= 1000 and index > 0:  # 999.996B rounds to 1000.00B: say 1.00T
                bigger_size, bigger_suffix = _SUFFIXES[index - 1]
                return f"{value / bigger_size:.{digits}f}{bigger_suffix}"
            return text + suffix
    if abs(round(value, digits)) >= 1000:
        return f"{value / 1e3:.{digits}f}K"
    return f"{value:.{digits}f}"


def format_compact(value, digits: int = 2) -> str:
    """1234567 -> '1.23M'; 12.3 -> '12.30'."""
    if _not_a_number(value):
        return MISSING
    return _scaled(float(value), digits)


def format_usd(value, digits: int = 2) -> str:
    """Large dollar amounts: 1.23e12 -> '$1.23T', 45.6e9 -> '$45.60B', -3e6 -> '-$3.00M'."""
    if _not_a_number(value):
        return MISSING
    value = float(value)
    sign = "-" if value < 0 and round(value, digits) != 0 else ""
    return f"{sign}${_scaled(abs(value), digits)}"


def format_price(value) -> str:
    """A coin price: cents above $1, four significant digits below (micro-cap prices are tiny).

    20431.5 -> '$20,431.50'; 0.06123 -> '$0.06123'; 7.8666533e-10 -> '$0.0000000007867'.
    """
    if _not_a_number(value):
        return MISSING
    value = float(value)
    if value == 0:
        return "$0.00"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value >= 1:
        return f"{sign}${value:,.2f}"
    decimals = min(max(4 - int(math.floor(math.log10(value))) - 1, 2), 18)
    whole, _, fraction = f"{value:.{decimals}f}".partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")  # at least cents: $0.50, not $0.5
    return f"{sign}${whole}.{fraction}"


def format_pct(value, digits: int = 1, signed: bool = False) -> str:
    """A value already in percent: 12.345 -> '12.3%'; signed -> '+12.3%' / '-4.0%'."""
    if _not_a_number(value):
        return MISSING
    value = float(value)
    if round(value, digits) == 0:
        value = 0.0  # no "-0.0%"
    text = f"{abs(value):.{digits}f}%"
    if value < 0:
        return f"-{text}"  # ASCII minus: Streamlit colours a metric delta red only for a leading "-"
    return f"+{text}" if signed else text


def format_pp(value, digits: int = 2) -> str:
    """A change in percentage points: 0.123 -> '+0.12 pp'."""
    if _not_a_number(value):
        return MISSING
    value = float(value)
    if round(value, digits) == 0:
        value = 0.0
    return f"{'-' if value < 0 else '+'}{abs(value):.{digits}f} pp"


def format_ratio(value, digits: int = 3) -> str:
    """Volume / market cap: 0.0456 -> '0.046'."""
    if _not_a_number(value):
        return MISSING
    return f"{float(value):.{digits}f}"


def format_count(value) -> str:
    """1234 -> '1,234'."""
    if _not_a_number(value):
        return MISSING
    return f"{int(value):,}"


def format_supply(value) -> str:
    """Circulating supply without a currency: 19.2e6 -> '19.20M'."""
    return format_compact(value)


def format_timestamp(value: datetime | None) -> str:
    """Naive UTC timestamp -> '2022-10-16 09:28 UTC'."""
    if is_missing(value):
        return MISSING
    return f"{value:%Y-%m-%d %H:%M} UTC"


def format_age(delta: timedelta | None) -> str:
    """How old something is: '45 s', '12 min', '3 h', '4 days' (the pipeline's one age formatter)."""
    if is_missing(delta):
        return MISSING
    return api.format_age(delta)


def format_duration(seconds) -> str:
    """A run's duration: 2.34 -> '2.3 s'; 75 -> '1 min 15 s'."""
    if _not_a_number(seconds):
        return MISSING
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s"


def category_label(code, short: bool = False) -> str:
    """'large_cap' -> 'Large cap (≥ $10B)' (or 'Large cap' when ``short``)."""
    if is_missing(code):
        return api.UNKNOWN_LABEL
    labels = SHORT_LABELS if short else CATEGORY_LABELS
    return labels.get(str(code), shorten(str(code).replace("_", " ").capitalize()))


def category_ranges(column: str) -> str:
    """Every band of a category column with its range, for a caption:
    'large cap ≥ $10B, mid cap $1B–10B, small cap $250M–1B, micro cap < $250M'."""
    scale = api.scale_for(column)
    return ", ".join(f"{band.label.lower()} {scale.range_text(band)}" for band in scale.bands)


def shorten(value, limit: int = DISPLAY_LIMIT) -> str:
    """External text as shown on a page: one line, at most ``limit`` characters.

    Longer text is cut and ends with "…" (the ellipsis counts toward the limit);
    line breaks, tabs and other control characters become spaces; None/NaN give
    the em dash. Escape the result for where it goes (``escape_markdown``,
    ``escape_plotly``): cut first, so escaping cannot split an escape sequence.
    """
    if limit < 1:
        raise ValueError(f"display limit must be at least 1, not {limit}")
    if is_missing(value):
        return MISSING
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + ELLIPSIS
    if _CONTROL_CHARACTERS.search(text):
        text = _CONTROL_CHARACTERS.sub(" ", text)
    return text


def format_symbol(value, limit: int = SYMBOL_LIMIT) -> str:
    """A ticker as every page shows it: 'doge' -> 'DOGE' (CoinGecko sends them lower case), cut to
    ``limit``; the em dash when missing."""
    if is_missing(value):
        return MISSING
    return shorten(str(value).upper(), limit)


def coin_label(name, symbol, limit: int | None = None) -> str:
    """'Bitcoin (BTC)' as plain text (escape it for the place it is shown).

    With ``limit`` the label is at most that long: the symbol is cut to
    ``SYMBOL_LIMIT`` and the name gets the rest, so a long name keeps its symbol.
    """
    name = "" if is_missing(name) else str(name)
    symbol = "" if is_missing(symbol) else str(symbol).upper()
    if limit is not None:
        if symbol:
            symbol = format_symbol(symbol, min(SYMBOL_LIMIT, limit))
        if name and symbol:
            room = limit - len(symbol) - 3
            if room < 1:
                return shorten(f"{name} ({symbol})", limit)
            name = shorten(name, room)
        elif name:
            name = shorten(name, limit)
    if name and symbol:
        return f"{name} ({symbol})"
    return name or symbol or "?"


def escape_markdown(text) -> str:
    """Make external text (a coin name from the API) literal inside Streamlit markdown.

    Streamlit renders labels, captions and headers as markdown, with extensions
    for ``:red[...]``, ``:material/...:`` and ``$math$``; every such character is
    backslash-escaped so a name can never become a link, an image, a colour or math.
    """
    if is_missing(text):
        return ""
    escaped = _MARKDOWN_SPECIALS.sub(r"\\\1", str(text).replace("\n", " "))
    # GFM turns bare URLs, www. names and e-mail addresses into links even when escaped:
    # an invisible word joiner after the trigger keeps them plain text.
    return _AUTOLINK_TRIGGERS.sub(lambda m: m.group(0) + WORD_JOINER, escaped)


def escape_plotly(text) -> str:
    """Make external text literal inside Plotly labels and hover text.

    Plotly renders a subset of HTML (``<b>``, ``<a href>``, ``<br>``) in text,
    so ``<``, ``>`` and ``&`` become entities, which Plotly shows as characters.
    """
    if is_missing(text):
        return ""
    return html.escape(str(text), quote=False)
