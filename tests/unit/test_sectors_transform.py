"""Sectors, the pure parts: the /coins/categories transform (NULL stays NULL, malformed rows quarantined
with their reason), member rows, the contract, the settings and the sector charts, on the
real recorded bodies."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import pytest

from dashboard import sector_charts
from pipeline.config import DEFAULT_TRACKED_SECTORS, Settings
from pipeline.errors import ConfigError, SchemaDrift
from pipeline.providers.coingecko.contract import check_categories, check_categories_list
from pipeline.silver.sectors import member_rows, sector_rows
from tests.fakes.coingecko import load_fixture

AT = datetime(2023, 1, 8, 16, 45)
BODY = load_fixture("categories/categories_2023-01-08_JKorf-CoinGecko.Net.utf8.json")
LIST = load_fixture("categories/categories_list_2023-01-08_JKorf-CoinGecko.Net.json")


def test_every_row_of_the_real_body_is_a_sector_row():
    out = sector_rows(BODY, snapshot_at=AT, run_id="r-sectors", source="api")
    assert len(out.rows) == len(BODY) == 90 and out.quarantine == []
    defi = next(r for r in out.rows if r["category_id"] == "decentralized-finance-defi")
    source = next(r for r in BODY if r["id"] == "decentralized-finance-defi")
    assert defi["market_cap"] == source["market_cap"] and defi["volume_24h"] == source["volume_24h"]
    assert defi["market_cap_change_24h"] == source["market_cap_change_24h"]
    assert defi["top_3_coins"] is None  # the 2023 body has image URLs only, no top_3_coins_id
    assert defi["updated_at"] == datetime.fromisoformat(source["updated_at"].rstrip("Z"))
    assert {r["snapshot_at"] for r in out.rows} == {AT} and {r["run_id"] for r in out.rows} == {"r-sectors"}


def test_null_stays_null_and_numbers_sent_as_text_are_read():
    out = sector_rows(
        [
            {"id": "a", "name": "A", "market_cap": None, "market_cap_change_24h": None, "volume_24h": None},
            {"id": "b", "name": None, "market_cap": "12.5", "volume_24h": 3, "top_3_coins_id": ["x", "", 5]},
        ],
        snapshot_at=AT,
        run_id="r",
        source="api",
    )
    assert [(r["market_cap"], r["volume_24h"], r["market_cap_change_24h"]) for r in out.rows] == [
        (None, None, None),
        (12.5, 3.0, None),
    ]
    assert out.rows[1]["top_3_coins"] == '["x"]' and out.rows[1]["name"] is None


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("text", "record is not a JSON object"),
        ({"name": "x"}, "missing id"),
        ({"id": " padded"}, "missing or unusable id"),
        ({"id": "x" * 201}, "missing or unusable id"),
        ({"id": "a", "market_cap": True}, "market_cap is not a finite number: true"),
        ({"id": "a", "volume_24h": "n/a"}, 'volume_24h is not a finite number: "n/a"'),
        ({"id": "a", "market_cap": float("inf")}, "market_cap is not a finite number: Infinity"),
        ({"id": "a", "market_cap": -1}, "market_cap is negative: -1"),
        ({"id": "a", "volume_24h": -0.5}, "volume_24h is negative: -0.5"),
    ],
)
def test_a_malformed_row_is_quarantined_with_its_reason(record, reason):
    out = sector_rows([{"id": "ok", "market_cap": 1.0}, record], snapshot_at=AT, run_id="r", source="api")
    assert [r["category_id"] for r in out.rows] == ["ok"]
    (bad,) = out.quarantine
    assert bad["reason"] == reason and bad["record_index"] == 1 and bad["raw_record"]


def test_a_negative_24h_change_is_a_change_not_a_problem():
    out = sector_rows([{"id": "a", "market_cap_change_24h": -13.7}], snapshot_at=AT, run_id="r", source="api")
    assert out.rows[0]["market_cap_change_24h"] == -13.7 and not out.quarantine


def test_a_repeated_id_keeps_the_first_row():
    out = sector_rows(
        [{"id": "a", "market_cap": 1}, {"id": "a", "market_cap": 2}], snapshot_at=AT, run_id="r", source="api"
    )
    assert [r["market_cap"] for r in out.rows] == [1.0]
    assert out.quarantine[0]["reason"].startswith("duplicate id")


def test_a_body_that_is_no_array_gives_no_rows():
    assert sector_rows({"id": "a"}, snapshot_at=AT, run_id="r", source="api").rows == []


def test_member_rows_skip_unusable_ids_and_count_a_coin_once_per_sector():
    rows = member_rows(
        {"meme-token": [{"id": "dogecoin"}, {"id": "dogecoin"}, {"id": None}, "x"], "layer-1": [{"id": "bitcoin"}]},
        seen_at=AT,
        run_id="r",
    )
    assert [(r["category_id"], r["coin_id"]) for r in rows] == [("layer-1", "bitcoin"), ("meme-token", "dogecoin")]


def test_the_contract_takes_the_real_bodies_and_names_drift():
    assert check_categories(BODY) is BODY and check_categories_list(LIST) is LIST
    with pytest.raises(SchemaDrift, match="expected a JSON array of categories, got a JSON object"):
        check_categories({"categories": BODY})
    with pytest.raises(SchemaDrift, match="empty list"):
        check_categories([])
    renamed = [{("category" if k == "id" else k): v for k, v in r.items()} for r in BODY]
    with pytest.raises(SchemaDrift, match="required field.*id"):
        check_categories(renamed)
    with pytest.raises(SchemaDrift, match="category_id"):
        check_categories_list([{"id": "x", "name": "X"}])


def test_the_sector_settings():
    settings = Settings.from_env({})
    assert settings.sectors_every_minutes == 60 and settings.sector_members_every_minutes == 1440
    assert settings.tracked_sectors == DEFAULT_TRACKED_SECTORS
    assert {s for s in DEFAULT_TRACKED_SECTORS} <= {r["category_id"] for r in LIST}  # real CoinGecko ids
    env = {"PIPELINE_TRACKED_SECTORS": " meme-token, layer-1,meme-token ", "PIPELINE_SECTORS_EVERY_MINUTES": "0"}
    custom = Settings.from_env(env)
    assert custom.tracked_sectors == ("meme-token", "layer-1") and custom.sectors_every_minutes == 0
    with pytest.raises(ConfigError, match="not a CoinGecko category id"):
        Settings.from_env({"PIPELINE_TRACKED_SECTORS": "Meme Token"})


def _ranking() -> pd.DataFrame:
    rows = sector_rows(BODY, snapshot_at=AT, run_id="r", source="api").rows
    return pd.DataFrame(rows).assign(share_of_market_pct=None)


def test_top_sectors_and_movers():
    ranking = _ranking()
    top = sector_charts.top_sectors(ranking, 3)
    assert list(top["market_cap"]) == sorted(ranking["market_cap"].dropna(), reverse=True)[:3]
    up, down = sector_charts.sector_movers(ranking, n=2, min_market_cap=1e9)
    big = ranking[ranking["market_cap"] >= 1e9]
    assert list(up["market_cap_change_24h"]) == sorted(big["market_cap_change_24h"], reverse=True)[:2]
    assert list(down["market_cap_change_24h"]) == sorted(big["market_cap_change_24h"])[:2]


def test_the_charts_have_titles_axes_and_hover_and_escape_names():
    ranking = _ranking()
    ranking.loc[0, "name"] = "<b>bold</b>"
    fig = sector_charts.create_sector_ranking_chart(sector_charts.top_sectors(ranking, 5))
    spec = json.loads(fig.to_json())
    assert spec["layout"]["title"]["text"] == "Largest sectors by market cap"
    assert spec["layout"]["xaxis"]["title"]["text"] and spec["data"][0]["hovertemplate"]
    assert not any("<b>bold" in str(y) for y in spec["data"][0]["y"])
    up, down = sector_charts.sector_movers(ranking)
    movers = json.loads(sector_charts.create_sector_movers_chart(up, down).to_json())
    assert movers["data"][0]["hovertemplate"]


def test_the_share_chart_draws_one_line_per_sector_and_says_when_there_is_no_share():
    history = pd.DataFrame(
        {
            "category_id": ["a", "a", "b"],
            "name": ["A", "A", "B"],
            "snapshot_at": pd.to_datetime(["2025-01-01 00:00", "2025-01-01 01:00", "2025-01-01 00:00"]),
            "share_of_market_pct": [1.0, 1.5, 0.5],
        }
    )
    fig = sector_charts.create_sector_share_chart(history, ["a", "b"])
    assert [t.name for t in fig.data] == ["A", "B"]
    empty = sector_charts.create_sector_share_chart(history.assign(share_of_market_pct=None), ["a"])
    assert not empty.data and "global" in str(empty.layout.annotations[0].text)


def test_sector_label():
    assert sector_charts.sector_label("meme-token") == "Meme token"
