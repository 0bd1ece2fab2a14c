"""The Alerts page (AppTest): create a rule, see it listed, switch it off, delete it; a refused rule says
why; the history lists what fired and the sidebar badge counts alerts not yet seen on the page."""

from __future__ import annotations

from sqlalchemy import select

from pipeline import alerts
from pipeline.db import make_engine
from pipeline.flow import run_pipeline
from pipeline.schema import alert_rules, alert_state
from tests.dashboard.helpers import plain


def rules_in(warehouse) -> list[dict]:
    with make_engine(warehouse.database_url).connect() as conn:
        return [dict(r) for r in conn.execute(select(alert_rules).order_by(alert_rules.c.rule_id)).mappings()]


def badge(at) -> list[str]:
    return [link.proto.label for link in at.get("page_link") if "alert" in link.proto.label]


def test_create_list_disable_and_delete_a_rule(fresh_warehouse, use_warehouse, open_app):
    warehouse = use_warehouse(fresh_warehouse)
    at = open_app(page="alerts")
    assert not at.exception
    assert at.title[0].value == "🔔 Alerts"
    assert any("No alert rules yet" in info.value for info in at.info)

    at.selectbox(key="alerts_kind").set_value("price_above").run()
    at.selectbox(key="alerts_coin").set_value("bitcoin")
    at.number_input(key="alerts_threshold_price_above").set_value(20_000)
    at.text_input(key="alerts_note").input("breakout")
    at.button[0].click()  # the form's submit button comes first
    at.run()
    assert not at.exception

    saved = rules_in(warehouse)
    assert [(r["kind"], r["coin_id"], r["threshold"], r["note"], r["enabled"]) for r in saved] == [
        ("price_above", "bitcoin", 20_000.0, "breakout", True)
    ]
    rule_id = saved[0]["rule_id"]
    listed = [plain(m.value) for m in at.markdown if m.value.startswith(f"`#{rule_id}`")]
    assert listed and "**Price above**" in listed[0] and "Bitcoin (BTC)" in listed[0] and "20,000" in listed[0]

    at.toggle(key=f"alerts_enabled_{rule_id}").set_value(False).run()
    assert not rules_in(warehouse)[0]["enabled"]

    at.button(key=f"alerts_delete_{rule_id}").click().run()
    assert not at.exception
    assert rules_in(warehouse) == []
    assert any("No alert rules yet" in info.value for info in at.info)


def test_a_change_rule_needs_its_window_and_a_refused_rule_says_why(fresh_warehouse, use_warehouse, open_app):
    warehouse = use_warehouse(fresh_warehouse)
    at = open_app(page="alerts")
    at.selectbox(key="alerts_kind").set_value("change_below").run()
    assert at.selectbox(key="alerts_window").value == "24h"
    at.selectbox(key="alerts_window").set_value("7d")
    at.number_input(key="alerts_threshold_change_below").set_value(-15)
    at.button[0].click()
    at.run()
    assert [(r["kind"], r["change_window"], r["threshold"]) for r in rules_in(warehouse)] == [
        ("change_below", "7d", -15.0)
    ]

    at.selectbox(key="alerts_kind").set_value("price_above").run()
    at.number_input(key="alerts_threshold_price_above").set_value(-1)
    at.button[0].click()
    at.run()
    assert any("must be above 0" in error.value for error in at.error)
    assert len(rules_in(warehouse)) == 1


def test_depeg_offers_only_stablecoins(fresh_warehouse, use_warehouse, open_app):
    use_warehouse(fresh_warehouse)
    at = open_app(page="alerts")
    at.selectbox(key="alerts_kind").set_value("depeg").run()
    options = at.selectbox(key="alerts_coin").options
    assert "Tether (USDT)" in options and not any("Bitcoin" in o for o in options)


def test_history_and_the_badge_on_every_page(fresh_warehouse, use_warehouse, open_app):
    warehouse = use_warehouse(fresh_warehouse)
    engine = make_engine(warehouse.database_url)
    alerts.create_rule(engine, kind="price_above", coin_id="bitcoin", threshold=1_000)
    alerts.create_rule(engine, kind="dominance_above", coin_id="bitcoin", threshold=10)
    with engine.begin() as conn:
        conn.execute(alert_state.delete())
    run_pipeline(warehouse.settings(), trigger="cli", source="sample")  # a new snapshot time: evaluated

    at = open_app()  # Overview
    assert badge(at) == ["2 new alerts"]
    at.switch_page("app_pages/alerts.py").run()
    assert not at.exception
    assert badge(at) == []  # seen
    history = at.dataframe[0].value
    assert len(history) == 2
    assert set(history["message"]) == {
        "Bitcoin (BTC) is above $1,000.00: $19,163.45",
        next(m for m in history["message"] if m.startswith("Bitcoin (BTC) share of the market is")),
    }
    at.switch_page("app_pages/trends.py").run()
    assert badge(at) == []  # still seen on another page of this session
