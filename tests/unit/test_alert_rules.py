"""Alert rules, pure: crossing semantics, each kind's figure and comparison, the volume z-score,
rule validation, messages without scientific notation, and the webhook's URL and payload rules."""

from __future__ import annotations

from datetime import datetime

import pytest

from pipeline.alerts import (
    KINDS,
    MIN_VOLUME_POINTS,
    AlertRuleError,
    CoinFigures,
    Rule,
    condition_met,
    evaluate_rule,
    measure,
    message,
    validate_rule,
    volume_zscore,
)
from pipeline.webhooks import _scrub, describe_url, event_payload, url_problem

BTC = CoinFigures(
    coin_id="bitcoin",
    name="Bitcoin",
    symbol="btc",
    price=19_163.45,
    change={"1h": 0.1, "24h": -2.5, "7d": 4.0},
    dominance_pct=40.2,
    volume=2.5e10,
)


def rule(kind: str, threshold: float, window: str | None = None, coin: str = "bitcoin") -> Rule:
    return Rule(rule_id=1, kind=kind, coin_id=coin, threshold=threshold, change_window=window)


def run_sequence(r: Rule, values: list[float | None]) -> list[bool]:
    """Fired? at each step, carrying the condition from one evaluation to the next as the database does."""
    previous: bool | None = None
    fired = []
    for value in values:
        outcome = evaluate_rule(r, value, previous)
        fired.append(outcome.fired)
        if outcome.condition is not None:
            previous = outcome.condition
    return fired


def test_fires_once_per_crossing_and_again_after_going_false():
    r = rule("price_above", 20_000)
    assert run_sequence(r, [19_000, 21_000, 22_000, 23_000, 19_500, 20_500]) == [
        False,
        True,  # false -> true
        False,  # still true: no repeat
        False,
        False,  # false again
        True,  # and true again
    ]


def test_a_first_evaluation_that_is_true_fires_once():
    assert run_sequence(rule("price_above", 20_000), [21_000, 21_500]) == [True, False]


def test_an_unknown_value_changes_nothing():
    r = rule("price_above", 20_000)
    # true, then the coin drops out of the snapshot, then true again: still the same crossing
    assert run_sequence(r, [21_000, None, 21_000]) == [True, False, False]
    outcome = evaluate_rule(r, None, True, "bitcoin is not in the newest snapshot")
    assert outcome.condition is None and not outcome.fired and outcome.reason == "bitcoin is not in the newest snapshot"


def test_the_threshold_itself_is_not_a_crossing():
    assert not condition_met(rule("price_above", 100), 100)
    assert not condition_met(rule("price_below", 100), 100)
    assert condition_met(rule("price_below", 100), 99.99)


@pytest.mark.parametrize(
    ("kind", "threshold", "window", "expected_value", "met"),
    [
        ("price_above", 19_000, None, 19_163.45, True),
        ("price_below", 19_000, None, 19_163.45, False),
        ("change_above", 3.0, "7d", 4.0, True),
        ("change_below", -2.0, "24h", -2.5, True),
        ("change_above", 0.5, "1h", 0.1, False),
        ("dominance_above", 40.0, None, 40.2, True),
        ("dominance_below", 40.0, None, 40.2, False),
    ],
)
def test_each_kind_reads_its_own_figure(kind, threshold, window, expected_value, met):
    r = rule(kind, threshold, window)
    value, reason = measure(r, BTC)
    assert reason is None and value == expected_value
    assert condition_met(r, value) is met


def test_depeg_is_the_distance_from_one_dollar_either_way():
    r = rule("depeg", 0.01, coin="tether")
    assert condition_met(r, 0.985) and condition_met(r, 1.0101)
    assert not condition_met(r, 0.995) and not condition_met(r, 1.0)
    tether = CoinFigures(coin_id="tether", name="Tether", symbol="usdt", price=0.9821)
    value, _ = measure(r, tether)
    assert value == 0.9821
    assert message(r, tether, 0.9821) == "Tether (USDT) is $0.9821, 1.79 % off its $1 peg (more than 1.00 %)"


def test_missing_figures_say_why():
    assert measure(rule("price_above", 1), None) == (None, "bitcoin is not in the newest snapshot")
    no_change = CoinFigures(coin_id="bitcoin", change={"24h": None})
    assert measure(rule("change_above", 1, "24h"), no_change) == (
        None,
        "no 24h change for bitcoin in the newest snapshot",
    )


def test_volume_zscore_against_the_coins_own_history():
    history = [100.0, 110.0, 90.0, 105.0, 95.0, 100.0, 100.0, 108.0, 92.0, 100.0]
    z, reason = volume_zscore(160.0, history)
    assert reason is None
    mean = sum(history) / len(history)
    sd = (sum((v - mean) ** 2 for v in history) / (len(history) - 1)) ** 0.5
    assert z == pytest.approx((160.0 - mean) / sd)
    r = rule("volume_spike", 3.0)
    assert evaluate_rule(r, z, None).fired


def test_volume_zscore_needs_enough_points_and_some_spread():
    z, reason = volume_zscore(160.0, [100.0] * (MIN_VOLUME_POINTS - 1))
    assert (
        z is None
        and reason == f"not enough history ({MIN_VOLUME_POINTS - 1} of {MIN_VOLUME_POINTS} volume points in 30 days)"
    )
    assert volume_zscore(160.0, [100.0] * 30) == (None, "the volume never changed in 30 days")
    assert volume_zscore(None, [100.0] * 30)[0] is None
    # a NaN or infinite point is not a point
    assert volume_zscore(1.0, [float("nan")] * 30)[1].startswith("not enough history (0 of")


def test_volume_spike_without_history_does_not_fire():
    r = rule("volume_spike", 2.0)
    z, why = volume_zscore(BTC.volume, [1.0, 2.0])
    value, reason = measure(r, BTC, z)
    outcome = evaluate_rule(r, value, None, why or reason)
    assert not outcome.fired and outcome.reason.startswith("not enough history")


@pytest.mark.parametrize(
    ("kind", "threshold", "window", "problem"),
    [
        ("price_sideways", 1, None, "unknown alert kind"),
        ("price_above", 0, None, "must be above 0"),
        ("price_above", -5, None, "must be above 0"),
        ("volume_spike", 0, None, "must be above 0"),
        ("depeg", 1.5, None, "must be at most 1"),
        ("depeg", 0, None, "must be above 0"),
        ("dominance_above", 101, None, "must be at most 100"),
        ("change_above", 5, None, "choose the window"),
        ("change_above", 5, "30d", "choose the window"),
        ("price_above", float("nan"), None, "must be a number"),
        ("price_above", float("inf"), None, "must be a number"),
    ],
)
def test_invalid_rules_are_refused_with_a_reason(kind, threshold, window, problem):
    with pytest.raises(AlertRuleError, match=problem):
        validate_rule(kind, "bitcoin", threshold, window, None)


def test_validation_cleans_what_it_keeps():
    assert validate_rule("change_below", " bitcoin ", -5, "24h", "  ") == ("change_below", "bitcoin", -5.0, "24h", None)
    # a window on a kind without one is dropped
    assert validate_rule("price_above", "bitcoin", 5, "24h", "why")[3:] == (None, "why")
    with pytest.raises(AlertRuleError, match="choose a coin"):
        validate_rule("price_above", "  ", 5, None, None)
    with pytest.raises(AlertRuleError, match="note is longer"):
        validate_rule("price_above", "bitcoin", 5, None, "x" * 501)


def test_every_kind_has_a_default_threshold_that_validates():
    for kind in KINDS.values():
        window = "24h" if kind.name.startswith("change") else None
        assert validate_rule(kind.name, "bitcoin", kind.default_threshold, window, None)[2] == kind.default_threshold


def test_messages_never_use_scientific_notation():
    pepe = CoinFigures(coin_id="pepe", name="Pepe", symbol="pepe", price=5.33e-7)
    text = message(rule("price_above", 5e-7, coin="pepe"), pepe, 5.33e-7)
    assert text == "Pepe (PEPE) is above $0.0000005: $0.000000533"
    assert "e-" not in text
    assert message(rule("price_below", 20_000), BTC, 19_163.45) == "Bitcoin (BTC) is below $20,000.00: $19,163.45"
    assert message(rule("change_below", -2, "24h"), BTC, -2.5) == "Bitcoin (BTC) moved -2.50 % in 24h (below -2.00 %)"
    assert (
        message(rule("dominance_above", 40), BTC, 40.2) == "Bitcoin (BTC) share of the market is 40.20 %, above 40.00 %"
    )
    spike = message(rule("volume_spike", 3), BTC, 4.2)
    assert spike.startswith("Bitcoin (BTC) volume spike: z = 4.20") and "$25,000,000,000.00" in spike


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:8080/hook", None),
        ("https://hooks.example.com/services/T0/B0/xyz", None),
        ("ftp://example.com/x", "must start with http:// or https://"),
        ("file:///etc/passwd", "must start with http:// or https://"),
        ("example.com/hook", "must start with http:// or https://"),
        ("http:///nohost", "has no host"),
    ],
)
def test_only_http_urls_can_be_webhooks(url, problem):
    found = url_problem(url)
    assert (found is None) if problem is None else (problem in found)


def test_the_webhook_url_is_named_without_its_secret_path():
    url = "https://hooks.example.com:8443/services/T0/B0/secret-token?key=abc"
    assert describe_url(url) == "https://hooks.example.com:8443"
    error = "ConnectionError: HTTPSConnectionPool(host='hooks.example.com'): Max retries exceeded with url: /services/T0/B0/secret-token?key=abc"
    assert "secret-token" not in _scrub(error, url) and "key=abc" not in _scrub(error, url)


def test_the_payload_names_rule_message_value_snapshot_and_coin():
    event = {
        "event_id": 7,
        "rule_id": 3,
        "kind": "price_above",
        "threshold": 20_000.0,
        "coin_id": "bitcoin",
        "message": "Bitcoin (BTC) is above $20,000.00: $20,431.50",
        "value": 20_431.5,
        "snapshot_at": datetime(2024, 12, 19, 10, 0),
        "fired_at": datetime(2024, 12, 19, 10, 1, 2),
    }
    payload = event_payload(event, {"change_window": None, "note": "take profit"})
    assert payload == {
        "event_id": 7,
        "rule": {"id": 3, "kind": "price_above", "threshold": 20_000.0, "change_window": None, "note": "take profit"},
        "coin": "bitcoin",
        "message": "Bitcoin (BTC) is above $20,000.00: $20,431.50",
        "value": 20_431.5,
        "snapshot_at": "2024-12-19T10:00:00",
        "fired_at": "2024-12-19T10:01:02",
    }
    # a deleted rule's event still goes out, without the rule's note
    assert event_payload(event, None)["rule"]["note"] is None
