"""What a person sees in tables and selects on every page: a NULL cell is the em dash (never "None",
"nan" or "NaT"), symbols are upper case, a select with nothing picked names what that means ("All
sectors", never "Choose an option"), a sector has one name everywhere, and a share-over-time chart
with a single snapshot says so instead of drawing lone dots on a millisecond axis."""

from __future__ import annotations

import ast
import io
import json

import pandas as pd
import pyarrow as pa
import pytest

from dashboard import formatting as fmt
from dashboard import sector_charts, state, ui
from tests.dashboard.helpers import PAGES, REPO_ROOT, chart_specs
from tests.dashboard.test_app_pages import assert_clean
from tests.dashboard.test_sectors_page import sector_warehouse  # noqa: F401  (a module fixture, reused)

NULL_TEXTS = {"None", "nan", "NaN", "NaT", "<NA>", "null", "inf", "-inf"}


def _display_values(element) -> pd.DataFrame | None:
    """The text a Styler table shows per cell (Streamlit sends it beside the values), or None."""
    raw = element.proto.arrow_data.styler.display_values
    if not raw:
        return None
    return pa.ipc.open_stream(io.BytesIO(raw)).read_all().to_pandas()


def assert_tables_show_no_null_text(at) -> int:
    """Every table on the page draws NULL as the em dash and no shown cell reads 'None'/'nan'/'NaT'."""
    tables = list(at.dataframe)
    for element in tables:
        assert element.proto.placeholder == fmt.MISSING, "a table without placeholder=ui.MISSING_CELL"
        values = element.value
        for column in values.columns:
            texts = {v for v in values[column] if isinstance(v, str)}
            assert not texts & NULL_TEXTS, f"column {column!r} holds the text {texts & NULL_TEXTS}"
        shown = _display_values(element)
        if shown is not None:  # Styler tables: the display text of every non-NULL cell
            shown.columns = values.columns
            for column in values.columns:
                for raw, text in zip(values[column], shown[column].reset_index(drop=True)):
                    if not isinstance(raw, list) and fmt.is_missing(raw):
                        continue  # drawn as the placeholder
                    assert text not in NULL_TEXTS, f"column {column!r} shows {text!r} for {raw!r}"
    return len(tables)


def assert_selects_name_their_empty_choice(at) -> None:
    """A selectbox never shows Streamlit's 'Choose an option'; a multiselect says what empty means."""
    for select in at.selectbox:
        assert select.value is not None or select.proto.placeholder not in ("", "Choose an option"), select.label
    for multi in at.multiselect:
        assert multi.proto.placeholder not in ("", "Choose options"), multi.label


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_draws_null_cells_as_an_em_dash_and_names_empty_choices(
    page, sample_warehouse, use_warehouse, open_app
):
    use_warehouse(sample_warehouse)
    at = open_app(page=page)
    assert_clean(at)
    assert_tables_show_no_null_text(at)
    assert_selects_name_their_empty_choice(at)
    assert at.sidebar.selectbox(key=state.SECTOR_KEY).value == state.ALL_SECTORS


def test_the_coins_table_has_null_cells_and_shows_them_as_the_em_dash(sample_warehouse, use_warehouse, open_app):
    """The sample has no 30d change and coins without FDV or max supply: the cells are NULL (so the sort
    and the CSV stay exact) and the Styler's text for them is the em dash."""
    use_warehouse(sample_warehouse)
    at = open_app(page=None)
    table = at.dataframe[0]
    assert table.value["price_change_percentage_30d"].isna().all()
    assert table.value["fully_diluted_valuation"].isna().any()
    shown = _display_values(table)
    shown.columns = table.value.columns
    assert set(shown["price_change_percentage_30d"]) == {fmt.MISSING}
    assert assert_tables_show_no_null_text(at) == 1


def test_every_table_call_passes_the_em_dash_placeholder():
    """The class, not the example: every st.dataframe / st.data_editor in the dashboard passes
    ``placeholder=`` (Streamlit's default draws NULL as "None" and ignores a Styler's text for it)."""
    missing = []
    for path in sorted((REPO_ROOT / "dashboard").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in ("dataframe", "data_editor", "table"):
                    if not any(k.arg == "placeholder" for k in node.keywords):
                        missing.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert not missing, missing


def test_the_sectors_page_names_symbols_nulls_and_the_single_snapshot(sector_warehouse, use_warehouse, open_app):  # noqa: F811
    use_warehouse(sector_warehouse)
    at = open_app(page="sectors", page_query={"focus": "meme-token"})
    assert_clean(at)
    ranking = at.dataframe[0].value
    assert ranking["tracked_coin_count"].isna().any()  # untracked sectors: NULL, drawn as the em dash
    assert assert_tables_show_no_null_text(at) == 2
    coins = at.dataframe[1].value
    assert set(coins["symbol"]) and all(s == s.upper() for s in coins["symbol"])  # DOGE, not doge
    # one name per sector: the page's picker, the ranking and the sidebar say CoinGecko's "Meme"
    focus = at.selectbox(key=state.page_key("sectors", "focus"))
    sidebar = at.sidebar.selectbox(key=state.SECTOR_KEY)
    meme = ranking.loc[ranking["category_id"] == "meme-token", "sector"].iloc[0]
    assert meme == "Meme"  # CoinGecko's name in /coins/categories
    assert meme in focus.options and meme in sidebar.options and "Meme token" not in sidebar.options
    assert sidebar.options[0] == "All sectors" and sidebar.value == state.ALL_SECTORS
    share = chart_specs(at)[1]
    if share["data"]:  # one run: one snapshot, said in the chart, on an axis a day wide
        notes = [a["text"] for a in share["layout"].get("annotations", [])]
        assert sector_charts.ONE_SNAPSHOT in notes
        start, end = (pd.Timestamp(t) for t in share["layout"]["xaxis"]["range"])
        assert end - start == pd.Timedelta(hours=24)


def _history(times: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "category_id": ["meme-token"] * len(times),
            "name": ["Meme"] * len(times),
            "snapshot_at": pd.to_datetime(times),
            "share_of_market_pct": [1.0 + i for i in range(len(times))],
        }
    )


def test_the_share_chart_says_when_there_is_only_one_snapshot():
    one = json.loads(sector_charts.create_sector_share_chart(_history(["2023-01-08 00:00"]), ["meme-token"]).to_json())
    assert [a["text"] for a in one["layout"]["annotations"]] == [sector_charts.ONE_SNAPSHOT]
    assert one["layout"]["xaxis"]["range"] == ["2023-01-07T12:00:00", "2023-01-08T12:00:00"]
    assert one["data"][0]["name"] == "Meme"
    two = sector_charts.create_sector_share_chart(_history(["2023-01-08 00:00", "2023-01-08 01:00"]), ["meme-token"])
    assert not two.layout.annotations and two.layout.xaxis.range is None


def test_one_sector_label_owner():
    names = {"meme-token": "Meme"}
    assert sector_charts.sector_label("meme-token", names) == "Meme"
    assert sector_charts.sector_label("meme-token") == "Meme token"  # no name known yet: from the id
    assert sector_charts.sector_label("x", {"x": "  "}) == "X"
    assert len(sector_charts.sector_label("a", {"a": "n" * 500})) == fmt.DISPLAY_LIMIT
    ranking = pd.DataFrame({"category_id": ["meme-token", "layer-1"], "name": ["Meme", None]})
    assert sector_charts.sector_names(ranking) == {"meme-token": "Meme"}


def test_symbols_are_upper_case_on_screen_and_raw_in_the_csv():
    assert fmt.format_symbol("doge") == "DOGE"
    assert fmt.format_symbol(None) == fmt.MISSING
    assert fmt.format_symbol("x" * 40) == "X" * (fmt.SYMBOL_LIMIT - 1) + fmt.ELLIPSIS
    frame = pd.DataFrame({"name": ["Dogecoin", "?"], "symbol": ["doge", None]})
    shown = ui.display_frame(frame)
    assert shown["symbol"].iloc[0] == "DOGE" and fmt.is_missing(shown["symbol"].iloc[1])
    assert list(frame["symbol"][:1]) == ["doge"]  # the data (and the CSV) keep CoinGecko's value
    assert b"doge" in ui.csv_bytes(frame)


@pytest.mark.parametrize("page", ["overview", "dominance", "coin"])
def test_time_series_charts_with_one_snapshot_say_so(page, sample_warehouse, use_warehouse, open_app):
    """The sample is one snapshot: the market, dominance and coin charts over time say why there is no line
    yet, on an axis a day wide (never lone dots on a millisecond axis)."""
    use_warehouse(sample_warehouse)
    at = open_app(page=page)
    assert_clean(at)
    noted = [
        spec
        for spec in chart_specs(at)
        if any(a["text"].startswith("Only one ") for a in spec["layout"].get("annotations", []))
    ]
    assert len(noted) == 1
    start, end = (pd.Timestamp(t) for t in noted[0]["layout"]["xaxis"]["range"])
    assert end - start == pd.Timedelta(hours=24)
