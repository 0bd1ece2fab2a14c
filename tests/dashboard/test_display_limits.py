"""Unbounded external text never reaches the page in full.

A coin name or symbol from the API, or a ``?category=`` / ``?coin=`` value from a
link, can be any length. Every page is drawn with 100,000-character values and
no rendered element (text, metric, picker, table cell, chart spec) may carry
more than a short, cut piece of them; the data itself (the CSV download) keeps
the full value.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime

import pandas as pd
import pytest

from dashboard import formatting as fmt
from dashboard import ui
from tests.dashboard.conftest import LANDING
from tests.dashboard.helpers import PAGES, Warehouse, seed_sample

LONG = 100_000
#: The most of one long value any element may show (cut labels are 60; tables allow 200).
MOST_SHOWN = 200
LONG_RUN = re.compile(rf"[qQ]{{{MOST_SHOWN + 1},}}")


def sqlite_path(warehouse: Warehouse) -> str:
    return warehouse.database_url.removeprefix("sqlite:///")


@pytest.fixture(scope="module")
def long_text_warehouse(tmp_path_factory) -> Warehouse:
    """The sample, with 100,000-character names and symbols and a quarantined record full of them."""
    warehouse = seed_sample(tmp_path_factory.mktemp("long-text-warehouse"))
    with sqlite3.connect(sqlite_path(warehouse)) as con:
        con.execute("UPDATE crypto_analytics_mart SET name = ? WHERE id = 'bitcoin'", ("Q" * LONG,))
        con.execute("UPDATE crypto_analytics_mart SET symbol = ? WHERE id = 'ethereum'", ("q" * LONG,))
        con.execute(
            "UPDATE crypto_analytics_mart SET name = ?, symbol = ? WHERE id = 'tether'", ("Q" * LONG, "q" * LONG)
        )
        snapshot = con.execute("SELECT max(snapshot_at) FROM crypto_analytics_mart").fetchone()[0]
        run_id = con.execute("SELECT run_id FROM pipeline_runs").fetchone()[0]
        con.execute(
            "INSERT INTO quarantine_crypto_market (run_id, record_index, snapshot_at, record_id, reason, "
            "raw_record) VALUES (?, ?, ?, ?, ?, ?)",
            (
                run_id,
                999,
                snapshot,
                "q" * 200,
                "non-numeric current_price: '" + "q" * 78 + "…'",
                '{"id":"' + "q" * LONG + '"}',
            ),
        )
    return warehouse


def element_texts(at) -> list[tuple[str, str]]:
    """(element type, its full proto as text) for every element on the page, sidebar included."""

    def walk(node):
        yield node
        for child in (getattr(node, "children", None) or {}).values():
            yield from walk(child)

    found = []
    for node in walk(at._tree):
        proto = getattr(node, "proto", None)
        if proto is not None:
            found.append((type(node).__name__, str(proto)))
    return found


def longest_shown(at) -> dict[str, int]:
    """Element type -> the longest run of the long values it shows, for those over the limit."""
    over = {}
    for kind, text in element_texts(at):
        runs = [len(m) for m in LONG_RUN.findall(text)]
        if runs:
            over[kind] = max(max(runs), over.get(kind, 0))
    return over


@pytest.mark.parametrize("page", list(PAGES))
def test_no_page_shows_a_long_name_symbol_or_query_value_in_full(page, long_text_warehouse, use_warehouse, open_app):
    use_warehouse(long_text_warehouse)
    long_query = {"category": "q" * LONG}
    at = open_app(long_query, page=page, page_query={"coin": "q" * LONG} if page == "coin" else None)
    assert not at.exception, [e.value for e in at.exception]
    assert element_texts(at), "nothing rendered"
    assert longest_shown(at) == {}
    if page == LANDING:  # the first page of the session reports the bad category, cut
        warning = " ".join(w.value for w in at.sidebar.warning)
        assert "qqqq" in warning and "…" in warning and len(warning) < 400


def test_the_coin_page_shows_a_cut_name_in_its_heading_picker_and_charts(long_text_warehouse, use_warehouse, open_app):
    use_warehouse(long_text_warehouse)
    at = open_app(page="coin", page_query={"coin": "tether"})
    assert not at.exception
    assert at.selectbox(key="coin_id").value == "tether"
    heading = at.subheader[0].value
    assert heading.startswith("QQQ") and "…" in heading and len(heading) <= fmt.HEADING_LIMIT + 10
    options = at.selectbox(key="coin_id").options
    assert max(len(o) for o in options) <= fmt.DISPLAY_LIMIT + 10
    assert longest_shown(at) == {}


def test_many_unknown_categories_in_the_link_are_summarised(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app({"category": ",".join(f"bogus{i}" for i in range(20_000)) + ",large_cap"}, page=None)
    assert not at.exception
    assert at.sidebar.multiselect(key="filter_categories").value == ["large_cap"]
    warning = " ".join(w.value for w in at.sidebar.warning)
    assert "bogus0" in warning and "more" in warning and len(warning) < 400


def test_tables_cut_text_cells_but_the_csv_keeps_the_full_value():
    frame = pd.DataFrame(
        {
            "name": ["Q" * LONG, None, "Bitcoin"],
            "symbol": ["q" * LONG, "eth", None],
            "reason": ["r" * 1000, "short", None],
            "market_cap": [1.0, 2.0, None],
            "snapshot_at": [datetime(2024, 1, 1)] * 3,
        }
    )
    shown = ui.display_frame(frame)
    assert len(shown.loc[0, "name"]) == fmt.DISPLAY_LIMIT and shown.loc[0, "name"].endswith("…")
    assert len(shown.loc[0, "symbol"]) <= fmt.SYMBOL_LIMIT
    assert len(shown.loc[0, "reason"]) == ui.TABLE_TEXT_LIMIT
    assert shown.loc[2, "name"] == "Bitcoin" and pd.isna(shown.loc[1, "name"])  # NULL stays NULL, not "—"
    assert shown["market_cap"].equals(frame["market_cap"]) and shown["snapshot_at"].equals(frame["snapshot_at"])
    assert frame.loc[0, "name"] == "Q" * LONG  # the caller's frame is untouched
    assert ("Q" * LONG).encode() in ui.csv_bytes(frame)  # and the download has the full value


def test_tables_never_show_infinity():
    frame = pd.DataFrame({"avg_volatility_24h": [1.5, float("inf"), -float("inf"), None]})
    shown = ui.display_frame(frame)
    assert shown["avg_volatility_24h"].iloc[0] == 1.5 and shown["avg_volatility_24h"].iloc[1:].isna().all()
