"""Every page through AppTest on a warehouse seeded by the real pipeline, plus the shared filter."""

from __future__ import annotations

import pytest

from dashboard import navigation
from tests.dashboard.helpers import EXPECTED_CHARTS, PAGES, chart_specs, metric, plotly_values

SAMPLE_COINS = 250
LARGE_CAPS = 9  # in the 2022-10-16 sample
MID_CAPS = 42


def page_text(at) -> str:
    parts = (
        [m.value for m in at.markdown]
        + [c.value for c in at.caption]
        + [i.value for i in at.info]
        + [w.value for w in at.warning]
        + [e.value for e in at.error]
    )
    return "\n".join(str(p) for p in parts)


def assert_clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def assert_charts_readable(specs: list[dict]) -> None:
    """A title; axis titles (on some x and some y axis, or shared labels for small multiples); hover text."""
    for spec in specs:
        layout = spec["layout"]
        title = layout["title"]["text"]
        assert title, "chart without a title"
        kinds = {trace["type"] for trace in spec["data"]}
        if spec["data"] and not kinds & {"pie", "treemap"}:
            axis_titles = {
                name[0]: layout[name].get("title", {}).get("text")
                for name in layout
                if name.startswith(("xaxis", "yaxis")) and layout[name].get("title", {}).get("text")
            }
            shared = [a["text"] for a in layout.get("annotations", [])]
            assert ("x" in axis_titles and "y" in axis_titles) or (
                "Price (USD)" in shared and any("UTC" in text for text in shared)
            ), f"axis titles in {title!r}"
        for trace in spec["data"]:
            if trace.get("hoverinfo") != "skip":
                assert trace.get("hovertemplate"), f"trace without hover text in {title!r}"


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_its_charts_and_the_freshness_stamp(page, sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app(page=page)
    assert_clean(at)
    assert at.title, "page without a title"
    specs = chart_specs(at)
    assert len(specs) == EXPECTED_CHARTS[page]
    assert_charts_readable(specs)
    text = page_text(at)
    assert "Data as of **2022-10-16 09:28 UTC** (bundled offline sample)" in text
    assert "sample data" in "\n".join(w.value for w in at.warning)  # sample data is flagged on every page
    assert any("CoinGecko" in c.value and "https://www.coingecko.com/en/api" in c.value for c in at.sidebar.caption)
    assert at.sidebar.button(key="refresh_button")


def test_every_page_says_how_many_charts_it_draws():
    """A new page in ``dashboard.navigation`` gets one line in ``helpers.EXPECTED_CHARTS``."""
    assert set(EXPECTED_CHARTS) == set(PAGES)


def test_navigation_lists_every_page(sample_warehouse, use_warehouse, open_app):
    """Each page of ``dashboard.navigation`` is registered (switch_page raises otherwise) and opens itself:
    its heading starts with its own icon."""
    use_warehouse(sample_warehouse)
    at = open_app(page=None)
    assert at.title[0].value.startswith(next(p.icon for p in navigation.PAGES if p.default))
    for page in navigation.PAGES:
        at.switch_page(PAGES[page.url_path]).run()
        assert_clean(at)
        assert at.title[0].value.startswith(page.icon + " "), (page.title, at.title[0].value)


def test_overview_shows_headline_metrics_movers_and_treemap(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app()
    # The sample's /global is 5.5 h older than its coins: figures are of the top 250 coins, labelled so.
    assert metric(at, "Market cap (top 250 coins)").value == "$933.32B"
    assert metric(at, "Market cap (top 250 coins)").delta.endswith("in 24h")
    assert metric(at, "24h volume (top 250 coins)").value.startswith("$")
    assert metric(at, "24h change (top 250 coins)").value.endswith("%")
    assert metric(at, "BTC share of top 250 coins").value == "39.4%"
    assert metric(at, "ETH share of top 250 coins").value.endswith("%")
    assert metric(at, "Coins").value == str(SAMPLE_COINS)
    kinds = [spec["data"][0]["type"] for spec in chart_specs(at)]
    assert kinds == ["bar", "treemap", "scatter"]  # movers, market map, the market over time
    table = at.dataframe[0].value
    assert len(table) == SAMPLE_COINS
    assert at.get("download_button")


def test_dominance_page(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app(page="dominance")
    donut, categories, history = chart_specs(at)
    assert donut["data"][0]["type"] == "pie"
    assert donut["data"][0]["labels"][0] == "Bitcoin (BTC)"
    assert categories["data"][0]["x"] == ["Large cap", "Mid cap", "Small cap", "Micro cap", "Unknown"]
    assert plotly_values(categories["data"][0]["y"])[-1] == 0  # no coin is 'unknown': a zero bar, not a gap
    assert [t["name"] for t in history["data"]] == [
        f"{n} (top 250 coins)"
        for n in ("Bitcoin", "Ethereum", "Stablecoins", "All other coins")  # sample: /global too old
    ]
    at.slider(key="dominance_top_n").set_value(5).run()
    # top 5 and the other coins; on the sample's top-N basis the shares cover the whole of it (no "rest")
    assert len(chart_specs(at)[0]["data"][0]["labels"]) == 5 + 1
    assert len(at.dataframe[0].value) == SAMPLE_COINS


def test_liquidity_page(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app(page="liquidity")
    scatter, distribution = chart_specs(at)
    assert scatter["layout"]["xaxis"]["type"] == "log" and scatter["layout"]["yaxis"]["type"] == "log"
    assert plotly_values(distribution["data"][0]["y"]) == [37, 68, 145, 0]
    most, least = (frame.value for frame in at.dataframe)
    assert len(most) == len(least) == 10
    assert most["volume_to_mcap_ratio"].min() >= least["volume_to_mcap_ratio"].max()


def test_trends_page_period_and_minimum_volume(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app(page="trends")
    movers = chart_specs(at)[0]
    assert "24 hours" in movers["layout"]["title"]["text"]
    at.segmented_control(key="trends_period").set_value("7d").run()
    assert_clean(at)
    assert "7 days" in chart_specs(at)[0]["layout"]["title"]["text"]
    gainers_all = at.dataframe[0].value
    at.selectbox(key="trends_min_volume").set_value(100_000_000).run()
    gainers_liquid = at.dataframe[0].value
    assert (gainers_liquid["total_volume"] >= 100_000_000).all()
    assert list(gainers_liquid["name"]) != list(gainers_all["name"])
    sparklines = chart_specs(at)[2]
    assert len(sparklines["data"]) == 12


def test_segments_page(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app(page="segments")
    table = at.dataframe[0].value
    assert list(table["segment"]) == [
        "Large cap (≥ $10B)",
        "Mid cap ($1B–10B)",
        "Small cap ($250M–1B)",
        "Micro cap (< $250M)",
        "Unknown (no data)",
    ]
    assert table["coin_count"].sum() == SAMPLE_COINS
    assert list(table["coin_count"])[-1] == 0


def test_coin_page_defaults_to_the_largest_coin_and_follows_the_link(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app(page="coin")
    assert at.selectbox(key="coin_id").value == "bitcoin"
    assert len(at.selectbox(key="coin_id").options) == SAMPLE_COINS
    assert metric(at, "Price").value == "$19,163.45"
    assert at.query_params["coin"] == "bitcoin"
    history, sparkline = chart_specs(at)
    assert [t["name"] for t in history["data"]] == ["Price", "24h volume", "Market cap", "Rank"]
    assert len(sparkline["data"][0]["x"]) == 168

    at.selectbox(key="coin_id").set_value("ethereum").run()
    assert at.query_params["coin"] == "ethereum"
    assert at.subheader[0].value == "Ethereum \\(ETH\\)"

    linked = open_app(page="coin", page_query={"coin": "cardano"})
    assert linked.selectbox(key="coin_id").value == "cardano"


def test_pipeline_page_lists_runs_and_quarantine(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app(page="pipeline")
    runs = at.dataframe[0].value
    assert runs.iloc[0]["trigger"] == "cli" and runs.iloc[0]["status"] == "success"
    assert runs.iloc[0]["source"] == "sample" and runs.iloc[0]["silver_rows"] == SAMPLE_COINS
    assert runs.iloc[0]["duration_s"] > 0
    assert metric(at, "Running now").value == "nothing"
    assert any("No record has been quarantined" in s.value for s in at.success)


# -- the market-cap filter ------------------------------------------------------------------------


EXPECTED_FILTERED = {  # what each page shows with ?category=large_cap
    "coins": lambda at: len(at.dataframe[0].value) == LARGE_CAPS,
    "watchlist": lambda at: any("watchlist is empty" in i.value for i in at.info),  # nothing starred
    "overview": lambda at: metric(at, "Coins").value == str(LARGE_CAPS),
    "dominance": lambda at: len(at.dataframe[0].value) == LARGE_CAPS,
    "liquidity": lambda at: plotly_values(chart_specs(at)[1]["data"][0]["y"]) == [2, 4, 3, 0],
    "trends": lambda at: set(at.dataframe[0].value["market_cap_rank"]) <= set(range(1, 15)),
    "segments": lambda at: list(at.dataframe[0].value["segment"]) == ["Large cap (≥ $10B)"],
    "coin": lambda at: len(at.selectbox(key="coin_id").options) == LARGE_CAPS,
    "compare": lambda at: len(at.multiselect(key="compare_coins").options) == LARGE_CAPS,
    "pipeline": lambda at: len(at.dataframe[0].value) == 1,  # the run log is not filtered
    "alerts": lambda at: not at.exception,  # rules and their history are not filtered by category
    "sectors": lambda at: not at.exception,  # sectors are not coins; a sector's coins table is filtered
}


def test_filter_from_the_link_applies_to_every_page_and_is_kept(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app({"category": "large_cap"})
    assert at.sidebar.multiselect(key="filter_categories").value == ["large_cap"]
    for page, path in PAGES.items():
        at.switch_page(path).run()
        assert_clean(at)
        assert at.sidebar.multiselect(key="filter_categories").value == ["large_cap"], page
        assert at.query_params["category"] == "large_cap", page
        assert EXPECTED_FILTERED[page](at), page


def test_filter_widget_updates_the_url_and_the_figures(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app()
    assert "category" not in at.query_params
    at.sidebar.multiselect(key="filter_categories").set_value(["mid_cap", "large_cap"]).run()
    assert at.query_params["category"] == "large_cap,mid_cap"
    assert metric(at, "Coins").value == str(LARGE_CAPS + MID_CAPS)
    assert metric(at, "Market cap (selection)").value == "$874.50B"
    at.switch_page(PAGES["segments"]).run()
    assert len(at.dataframe[0].value) == 2
    at.sidebar.multiselect(key="filter_categories").set_value([]).run()
    assert "category" not in at.query_params
    assert len(at.dataframe[0].value) == 5  # every category, 'unknown' with 0 coins


def test_link_with_several_categories_and_an_unknown_one(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app({"category": "mid_cap,bogus,large_cap"}, page=None)  # the warning is on the first page shown
    assert at.sidebar.multiselect(key="filter_categories").value == ["large_cap", "mid_cap"]
    assert any("bogus" in w.value for w in at.sidebar.warning)
    assert at.query_params["category"] == "large_cap,mid_cap"  # the bad value is dropped from the link


@pytest.mark.parametrize("page", ["overview", "dominance", "liquidity", "trends", "segments", "coin"])
def test_an_empty_result_says_so_instead_of_drawing(page, sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app({"category": "unknown"}, page=page)  # no coin of the sample is 'unknown'
    assert_clean(at)
    assert not chart_specs(at)
    assert any("match the current filter" in i.value for i in at.info)


def test_pipeline_page_shows_quarantined_records_and_their_reasons(fresh_warehouse, use_warehouse, open_app):
    from dataclasses import replace

    from pipeline.flow import run_pipeline
    from tests.fakes.coingecko import FakeCoinGecko

    with FakeCoinGecko() as fake:
        fake.add_fault("negative")  # a price and a volume below zero on the first page
        settings = replace(
            fresh_warehouse.settings(),
            coingecko_base_url=fake.base_url,
            calls_per_minute=0,
            max_retries=0,
            backoff_base_seconds=0,
        )
        run_pipeline(settings, trigger="schedule", source="api")
    use_warehouse(fresh_warehouse)
    at = open_app(page="pipeline")
    assert not at.exception and not at.error
    assert metric(at, "Quarantined records").value == "2"
    # The run's API calls add the budget panel's chart and table; find ours by what they show.
    (reasons_chart,) = [c for c in chart_specs(at) if "Quarantined" in c["layout"]["title"]["text"]]
    assert sorted(reasons_chart["data"][0]["y"]) == ["negative current_price", "negative total_volume"]
    frames = [frame.value for frame in at.dataframe]
    (runs,) = [f for f in frames if "trigger" in f.columns]
    (quarantine,) = [f for f in frames if "record_id" in f.columns]
    assert list(runs["trigger"]) == ["schedule", "cli"]
    assert runs.iloc[0]["quarantined_count"] == 2
    assert len(quarantine) == 2 and set(quarantine["record_id"]) == {"bitcoin", "ethereum"}


# -- an empty category shows as zero, never disappears ---------------------------------------------


@pytest.fixture(scope="module")
def gapped_warehouse(tmp_path_factory):
    """The sample without any mid-cap, medium-liquidity or neutral coin, gold rebuilt from what is left."""
    import sqlite3

    from pipeline.db import make_engine
    from pipeline.gold import build_gold
    from tests.dashboard.helpers import seed_sample

    warehouse = seed_sample(tmp_path_factory.mktemp("gapped-warehouse"))
    with sqlite3.connect(warehouse.database_url.removeprefix("sqlite:///")) as con:
        con.execute(
            "DELETE FROM staging_crypto_market WHERE market_cap_category = 'mid_cap' "
            "OR liquidity_category = 'medium_liquidity' OR price_trend_category = 'neutral'"
        )
    build_gold(make_engine(warehouse.database_url))
    return warehouse


def test_an_empty_market_cap_category_shows_zero_on_segments_and_dominance(gapped_warehouse, use_warehouse, open_app):
    use_warehouse(gapped_warehouse)
    at = open_app(page="segments")
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["segment"]) == [
        "Large cap (≥ $10B)",
        "Mid cap ($1B–10B)",
        "Small cap ($250M–1B)",
        "Micro cap (< $250M)",
        "Unknown (no data)",
    ]
    mid = table[table["segment"] == "Mid cap ($1B–10B)"].iloc[0]
    assert mid["coin_count"] == 0 and mid["gainers_count"] == 0 and mid["total_market_cap"] == 0
    for spec in chart_specs(at):  # every segment chart has a Mid cap slot
        for trace in spec["data"]:
            assert "Mid cap" in list(trace["x"]), spec["layout"]["title"]["text"]

    at.switch_page(PAGES["dominance"]).run()
    assert_clean(at)
    categories = chart_specs(at)[1]
    x = list(categories["data"][0]["x"])
    assert x == ["Large cap", "Mid cap", "Small cap", "Micro cap", "Unknown"]
    assert plotly_values(categories["data"][0]["y"])[x.index("Mid cap")] == 0


def test_an_empty_bucket_in_the_selection_shows_zero(gapped_warehouse, use_warehouse, open_app):
    use_warehouse(gapped_warehouse)
    at = open_app({"category": "large_cap,mid_cap"}, page="segments")
    assert_clean(at)
    assert list(at.dataframe[0].value["segment"]) == ["Large cap (≥ $10B)", "Mid cap ($1B–10B)"]
    at = open_app({"category": "mid_cap"}, page="segments")  # nothing at all selected: say so
    assert_clean(at)
    assert any("match the current filter" in i.value for i in at.info)


def test_empty_liquidity_and_trend_buckets_show_zero(gapped_warehouse, use_warehouse, open_app):
    use_warehouse(gapped_warehouse)
    at = open_app(page="liquidity")
    distribution = chart_specs(at)[1]["data"][0]
    assert list(distribution["x"]) == ["High", "Medium", "Low", "Unknown"]
    assert plotly_values(distribution["y"])[1] == 0
    at.switch_page(PAGES["trends"]).run()
    trend = chart_specs(at)[1]["data"][0]
    assert list(trend["x"]) == ["Strong gain", "Moderate gain", "Neutral", "Moderate loss", "Strong loss", "Unknown"]
    assert plotly_values(trend["y"])[2] == 0
