"""Alerts through the real pipeline (fake CoinGecko over loopback) on SQLite and PostgreSQL:
a rule fires once per crossing across runs, the button path evaluates too, volume spikes read
the coin's own history, a failing evaluation never fails a run, and the webhook is delivered to a
local HTTP receiver within its deadline whatever the receiver does."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from sqlalchemy import insert, select, text

from pipeline import alerts, run_requests
from pipeline.db import make_engine, prepare_database
from pipeline.flow import run_pipeline
from pipeline.schema import alert_deliveries, alert_events, alert_state, staging_coin_history
from tests.fakes.coingecko import DEFAULT_MARKETS, load_fixture

BTC_PRICE_2022 = 19_163.45  # bitcoin in the recorded 2022-10-16 markets body


def markets_with_bitcoin_at(price: float) -> list[dict]:
    """The recorded 2022-10-16 body with bitcoin's price (and nothing else) changed."""
    records = load_fixture(DEFAULT_MARKETS)
    assert records[0]["id"] == "bitcoin" and records[0]["current_price"] == BTC_PRICE_2022
    records[0]["current_price"] = price
    return records


def events(settings) -> pd.DataFrame:
    with make_engine(settings.database_url).connect() as conn:
        return pd.DataFrame(conn.execute(select(alert_events).order_by(alert_events.c.event_id)).mappings().all())


def run_with_bitcoin_at(settings, fake_coingecko, price: float, **kwargs):
    fake_coingecko.set_markets(markets_with_bitcoin_at(price))
    result = run_pipeline(settings, source="api", **kwargs)
    assert result.status == "success"
    return result


def test_a_rule_fires_once_per_crossing_across_runs(settings, fake_coingecko):
    engine = prepare_database(settings)
    rule_id = alerts.create_rule(engine, kind="price_above", coin_id="bitcoin", threshold=20_000, note="breakout")

    run_with_bitcoin_at(settings, fake_coingecko, BTC_PRICE_2022)  # run 1: below, nothing
    assert events(settings).empty
    second = run_with_bitcoin_at(settings, fake_coingecko, 20_431.5)  # run 2: crosses
    fired = events(settings)
    assert len(fired) == 1
    event = fired.iloc[0]
    assert event.rule_id == rule_id and event.kind == "price_above" and event.coin_id == "bitcoin"
    assert event.value == 20_431.5 and event.threshold == 20_000
    assert event.message == "Bitcoin (BTC) is above $20,000.00: $20,431.50"
    assert event.run_id == second.run_id and pd.Timestamp(event.snapshot_at) == pd.Timestamp(second.snapshot_at)
    assert event.delivery_attempts == 0 and pd.isna(event.delivered_at)  # no webhook configured

    run_with_bitcoin_at(settings, fake_coingecko, 21_000)  # run 3: still true, no repeat
    assert len(events(settings)) == 1
    run_with_bitcoin_at(settings, fake_coingecko, 19_500)  # run 4: false again
    assert len(events(settings)) == 1
    fifth = run_with_bitcoin_at(settings, fake_coingecko, 20_100)  # run 5: true again, fires again
    fired = events(settings)
    assert len(fired) == 2 and fired.iloc[1].run_id == fifth.run_id and fired.iloc[1].value == 20_100

    # Evaluating the same snapshot again (a second look, a retry) fires nothing more.
    assert alerts.evaluate(engine).evaluated == 0
    assert len(events(settings)) == 2


def test_the_refresh_buttons_run_evaluates_alerts_too(settings, fake_coingecko):
    """The dashboard's refresh runs ``run_requests.execute`` (trigger 'button') -> ``run_pipeline``."""
    engine = prepare_database(settings)
    alerts.create_rule(engine, kind="price_below", coin_id="bitcoin", threshold=20_000)
    fake_coingecko.set_markets(markets_with_bitcoin_at(BTC_PRICE_2022))

    outcome = run_requests.execute(settings, source="api")

    assert outcome.outcome == "success"
    fired = events(settings)
    assert len(fired) == 1 and fired.iloc[0].run_id == outcome.run_id
    with engine.connect() as conn:
        trigger = conn.execute(
            text("SELECT trigger FROM pipeline_runs WHERE run_id = :r"), {"r": outcome.run_id}
        ).scalar()
    assert trigger == "button"


def test_kinds_on_the_recorded_snapshot_and_rule_switches(settings):
    """De-peg, dominance and % move on the real 2022 sample; disabling forgets state, deleting keeps history."""
    engine = prepare_database(settings)
    depeg = alerts.create_rule(engine, kind="depeg", coin_id="tether", threshold=0.0005)  # tether at $1.001
    dominance = alerts.create_rule(engine, kind="dominance_above", coin_id="bitcoin", threshold=30)
    move = alerts.create_rule(engine, kind="change_above", coin_id="ethereum", threshold=50, change_window="24h")
    gone = alerts.create_rule(engine, kind="price_above", coin_id="no-such-coin", threshold=1)
    run_pipeline(settings, source="sample")

    fired = events(settings)
    assert set(fired.rule_id) == {depeg, dominance}
    assert (
        fired.set_index("rule_id").loc[depeg, "message"]
        == "Tether (USDT) is $1.0010, 0.10 % off its $1 peg (more than 0.05 %)"
    )
    with engine.connect() as conn:
        state = {r.rule_id: r.condition_met for r in conn.execute(select(alert_state))}
    assert state == {depeg: True, dominance: True, move: False}  # the unknown coin keeps no state

    alerts.set_rule_enabled(engine, dominance, False)
    with engine.connect() as conn:
        assert dominance not in {r.rule_id for r in conn.execute(select(alert_state))}
    assert alerts.evaluate(engine).fired == []  # disabled: not evaluated
    alerts.set_rule_enabled(engine, dominance, True)
    again = alerts.evaluate(engine)  # no state: the true condition is a new crossing
    assert len(again.fired) == 1 and again.fired[0].startswith("Bitcoin (BTC) share of the market is")
    assert again.unknown == {gone: "no-such-coin is not in the newest snapshot"}

    alerts.delete_rule(engine, depeg)
    assert depeg in set(events(settings).rule_id)  # the history stays
    with engine.connect() as conn:
        assert depeg not in {r.rule_id for r in conn.execute(select(alert_state))}


def test_a_volume_spike_is_measured_against_the_coins_own_30_days(settings):
    engine = prepare_database(settings)
    spike = alerts.create_rule(engine, kind="volume_spike", coin_id="bitcoin", threshold=3)
    quiet = alerts.create_rule(engine, kind="volume_spike", coin_id="ethereum", threshold=3)
    run_pipeline(settings, source="sample")  # bitcoin's 24h volume: $12.5B; no history yet
    first = events(settings)
    assert first.empty
    sample_at = pd.Timestamp(run_pipeline_snapshot(engine)).to_pydatetime()

    # Backfilled days: bitcoin traded ~$5B a day for 20 days (and once 40 days ago, outside the window);
    # ethereum has only 5 days.
    rows = [
        {
            "id": "bitcoin",
            "ts": sample_at - timedelta(days=d),
            "run_id": "backfill-test",
            "total_volume": 5e9 + (d % 3) * 1e8,
        }
        for d in range(1, 21)
    ]
    rows.append(
        {"id": "bitcoin", "ts": sample_at - timedelta(days=40), "run_id": "backfill-test", "total_volume": 1e12}
    )
    rows += [
        {"id": "ethereum", "ts": sample_at - timedelta(days=d), "run_id": "backfill-test", "total_volume": 1e10}
        for d in range(1, 6)
    ]
    with engine.begin() as conn:
        conn.execute(insert(staging_coin_history), rows)
        conn.execute(alert_state.delete())  # evaluate the same snapshot again, now with history

    report = alerts.evaluate(engine)
    assert len(report.fired) == 1 and report.fired[0].startswith("Bitcoin (BTC) volume spike: z = ")
    assert report.unknown == {quiet: "not enough history (5 of 10 volume points in 30 days)"}
    fired = events(settings)
    assert list(fired.rule_id) == [spike] and fired.iloc[0].value > 3


def run_pipeline_snapshot(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT MAX(snapshot_at) FROM crypto_analytics_mart")).scalar()


def test_a_failing_evaluation_never_fails_the_run(settings, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the alert tables are on fire")

    monkeypatch.setattr(alerts, "evaluate", broken)
    result = run_pipeline(settings, source="sample")

    assert result.status == "success"
    assert result.warnings == ["alerts not evaluated: RuntimeError: the alert tables are on fire"]
    with make_engine(settings.database_url).connect() as conn:
        status, notes = conn.execute(
            text("SELECT status, notes FROM pipeline_runs WHERE run_id = :r"), {"r": result.run_id}
        ).one()
    assert status == "success" and notes == "alerts not evaluated: RuntimeError: the alert tables are on fire"


# -- webhook -------------------------------------------------------------------------------------


class Receiver:
    """A local HTTP receiver: answers ``status`` (or hangs ``hang`` seconds), keeps what it was sent."""

    def __init__(self) -> None:
        self.status = 200
        self.hang = 0.0
        self.received: list[tuple[dict[str, str], dict]] = []
        self.stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                if receiver.hang:
                    receiver.stop.wait(receiver.hang)
                    return
                reply = b'{"ok": false, "error": "receiver broke"}' if receiver.status >= 400 else b"ok"
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(reply)))
                if 300 <= receiver.status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format, *args):  # noqa: A002 - keep pytest output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def webhook_settings(settings, receiver, timeout: float = 1.5):
    return settings.with_overrides(
        alerts_webhook_url=receiver.url, alerts_webhook_timeout_seconds=timeout, api_key="cg-secret-key"
    )


def deliveries(settings) -> pd.DataFrame:
    with make_engine(settings.database_url).connect() as conn:
        return pd.DataFrame(
            conn.execute(select(alert_deliveries).order_by(alert_deliveries.c.attempt)).mappings().all()
        )


def test_a_fired_alert_is_posted_to_the_webhook(settings, fake_coingecko, receiver):
    settings = webhook_settings(settings, receiver)
    engine = prepare_database(settings)
    rule_id = alerts.create_rule(engine, kind="price_above", coin_id="bitcoin", threshold=20_000, note="take profit")

    result = run_with_bitcoin_at(settings, fake_coingecko, 20_431.5)

    assert len(receiver.received) == 1
    headers, payload = receiver.received[0]
    assert payload["rule"] == {
        "id": rule_id,
        "kind": "price_above",
        "threshold": 20_000.0,
        "change_window": None,
        "note": "take profit",
    }
    assert payload["coin"] == "bitcoin" and payload["value"] == 20_431.5
    assert payload["message"] == "Bitcoin (BTC) is above $20,000.00: $20,431.50"
    assert pd.Timestamp(payload["snapshot_at"]) == pd.Timestamp(result.snapshot_at)
    assert headers["content-type"] == "application/json"
    # The CoinGecko key goes nowhere near the webhook.
    assert "cg-secret-key" not in json.dumps(headers) + json.dumps(payload)
    assert not any(name.startswith("x-cg-") for name in headers)
    event = events(settings).iloc[0]
    assert not pd.isna(event.delivered_at) and event.delivery_attempts == 1 and event.delivery_error is None
    attempts = deliveries(settings)
    assert list(attempts.status_code) == [200] and attempts.error.isna().all()

    run_with_bitcoin_at(settings, fake_coingecko, 20_500)  # still true: nothing new to send, nothing resent
    assert len(receiver.received) == 1


def test_a_failing_webhook_is_recorded_and_retried_after_the_next_run(settings, fake_coingecko, receiver):
    settings = webhook_settings(settings, receiver)
    engine = prepare_database(settings)
    alerts.create_rule(engine, kind="price_above", coin_id="bitcoin", threshold=20_000)
    receiver.status = 500

    result = run_with_bitcoin_at(settings, fake_coingecko, 20_431.5)

    assert result.status == "success"
    event = events(settings).iloc[0]
    assert pd.isna(event.delivered_at) and event.delivery_attempts == 1
    assert event.delivery_error == 'HTTP 500: {"ok": false, "error": "receiver broke"}'
    # A redirect is not followed (the Location points at a closed port) and counts as a failure.
    receiver.status = 302
    run_with_bitcoin_at(settings, fake_coingecko, 20_500)
    receiver.status = 200
    run_with_bitcoin_at(settings, fake_coingecko, 20_600)
    attempts = deliveries(settings)
    assert list(attempts.status_code) == [500, 302, 200]
    assert attempts.error.iloc[1] == "HTTP 302: redirects are not followed"
    event = events(settings).iloc[0]
    assert not pd.isna(event.delivered_at) and event.delivery_attempts == 3 and event.delivery_error is None
    assert len(events(settings)) == 1  # the retries resent the one alert, nothing fired twice


def test_attempts_are_bounded(settings, fake_coingecko, receiver):
    settings = webhook_settings(settings, receiver).with_overrides(alerts_webhook_max_attempts=2)
    engine = prepare_database(settings)
    alerts.create_rule(engine, kind="price_above", coin_id="bitcoin", threshold=20_000)
    receiver.status = 503
    for price in (20_431.5, 20_500, 20_600, 20_700):
        run_with_bitcoin_at(settings, fake_coingecko, price)
    assert len(receiver.received) == 2 and events(settings).iloc[0].delivery_attempts == 2


def test_a_hanging_webhook_does_not_hold_the_run(settings, fake_coingecko, receiver):
    settings = webhook_settings(settings, receiver, timeout=1.0)
    engine = prepare_database(settings)
    alerts.create_rule(engine, kind="price_above", coin_id="bitcoin", threshold=20_000)
    alerts.create_rule(engine, kind="dominance_above", coin_id="bitcoin", threshold=1)
    receiver.hang = 30
    published: list[float] = []

    def progress(stage: str, message: str) -> None:
        if stage == "gold" and message.startswith("published"):
            published.append(time.monotonic())

    fake_coingecko.set_markets(markets_with_bitcoin_at(20_431.5))
    result = run_pipeline(settings, source="api", progress=progress)
    waited = time.monotonic() - published[0]

    assert result.status == "success"
    assert waited < 1.0 + 1.0  # the deadline, plus the evaluation and the bookkeeping
    fired = events(settings)
    assert len(fired) == 2
    # One attempt, cut at the deadline; the receiver is down, so the second alert waits for the next run.
    assert len(receiver.received) == 1
    attempts = deliveries(settings)
    assert len(attempts) == 1 and pd.isna(attempts.status_code.iloc[0])
    assert "deadline" in attempts.error.iloc[0] or "timed out" in attempts.error.iloc[0].lower()
    assert "secret-token" not in attempts.error.iloc[0]
    assert sorted(fired.delivery_attempts) == [0, 1]
    with make_engine(settings.database_url).connect() as conn:
        assert conn.execute(text("SELECT status FROM pipeline_runs")).scalar() == "success"


def test_an_unreachable_or_invalid_webhook_url_is_an_error_on_the_event(settings, fake_coingecko):
    engine = prepare_database(settings)
    alerts.create_rule(engine, kind="price_above", coin_id="bitcoin", threshold=20_000)
    closed = settings.with_overrides(alerts_webhook_url="http://127.0.0.1:9/hook", alerts_webhook_timeout_seconds=2)
    run_with_bitcoin_at(closed, fake_coingecko, 20_431.5)
    assert events(settings).iloc[0].delivery_error.startswith("ConnectionError")

    invalid = settings.with_overrides(alerts_webhook_url="file:///etc/passwd")
    run_with_bitcoin_at(invalid, fake_coingecko, 20_500)
    event = events(settings).iloc[0]
    assert event.delivery_attempts == 2 and "must start with http:// or https://" in event.delivery_error
