"""The plausibility gate on real recorded /coins/markets bodies, and on faults derived from them.

Each invariant passes on the real 2022-10-16 top-250 body (the sample's) and fails on its own
fault, with only its own reason. Every real USD body recorded passes; the three real bodies that
were recorded priced in INR and EUR are held.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pipeline import plausibility as gate
from pipeline.silver.transform import transform_markets

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL = REPO_ROOT.parent / "shared" / "data" / "real" / "markets"
BODY_2022 = REAL / "markets_250_sparkline_pct1h24h7d_2022-10-16_mrmendoza-dev-cryptotracker.json"
BODY_2024 = REAL / "markets_250_sparkline_pct1h-1y_2024-12-19_mrmendoza-dev-cryptotracker.json"
BODY_INR = REAL / "markets_200_2023-06-14_zishancoder-crypto-app.json"  # recorded with vs_currency=inr
BODY_EUR = REAL / "markets_2025-03-04_RozanovIgor-monkey.json"  # recorded with vs_currency=eur
# PROVENANCE infers vs_currency=usd for this one, but it is EUR: tether 0.8515, BTC 41,913 (USD ~49,000 that day).
BODY_EUR_2021 = REAL / "markets_2021-08-23_jonas-jonas-div-dash.json"
SNAPSHOT_AT = datetime(2022, 10, 16, 9, 28, 53)

pytestmark = pytest.mark.skipif(not BODY_2022.exists(), reason=f"real recorded bodies missing: {REAL}")


def usd_stablecoins() -> set[str]:
    with open(REPO_ROOT / "sql" / "seeds" / "ref_stablecoins.csv", newline="") as fh:
        return {row["id"] for row in csv.DictReader(fh) if row["pegged_to"] == "USD"}


STABLECOINS = usd_stablecoins()


def body(path: Path = BODY_2022) -> list[dict]:
    return json.loads(path.read_bytes())


def silver(records: list[dict], snapshot_at: datetime = SNAPSHOT_AT):
    """The silver rows (and quarantine count) the pipeline would make of a body."""
    batch = transform_markets(records, run_id="r", snapshot_at=snapshot_at, source="api", with_sparklines=False)
    return batch.rows, len(batch.quarantined)


def check(
    records: list[dict],
    previous: list[dict] | None = None,
    *,
    requested: int = 250,
    vs_currency: str = "usd",
    elapsed: timedelta | None = None,
) -> list[str]:
    new, quarantined = silver(records)
    old = silver(previous, SNAPSHOT_AT - timedelta(minutes=15))[0] if previous is not None else None
    return gate.check_snapshot(
        new,
        old,
        requested=requested,
        vs_currency=vs_currency,
        quarantined=quarantined,
        stablecoins=STABLECOINS,
        elapsed=elapsed,
    )


# ---- faults derived from the real body ------------------------------------------

CURRENCY_FIELDS = (
    "current_price",
    "market_cap",
    "fully_diluted_valuation",
    "total_volume",
    "high_24h",
    "low_24h",
    "price_change_24h",
    "market_cap_change_24h",
    "ath",
    "atl",
)


def priced_in_eur(records):
    """What the same body looks like in EUR (USD x 0.92): every amount scaled, supplies not."""
    for r in records:
        for key in CURRENCY_FIELDS:
            if isinstance(r.get(key), (int, float)):
                r[key] *= 0.92
    return records


def partial_page(records):
    return records[:100]


def stablecoins_depegged(records):
    for r in records:
        if r["id"] in STABLECOINS:
            r["current_price"] *= 0.85
            r["market_cap"] *= 0.85
    return records


def market_caps_x1000(records):
    for r in records:
        if isinstance(r.get("market_cap"), (int, float)):
            r["market_cap"] *= 1000
    return records


def ranks_shuffled(records):
    ranks = [r["market_cap_rank"] for r in records]
    random.Random(7).shuffle(ranks)
    for r, rank in zip(records, ranks):
        r["market_cap_rank"] = rank
    return records


def bitcoin_x3(records):
    btc = next(r for r in records if r["id"] == "bitcoin")
    btc["current_price"] *= 3
    return records


def null_prices(records):
    for r in records[10:30]:
        r["current_price"] = None
    return records


def mostly_garbage(records):
    for r in records[:40]:
        r["current_price"] = "n/a"  # not a number: silver quarantines the record
    return records


FAULTS = {
    # fault: (mutation, words of the one reason it must give)
    "eur": (priced_in_eur, "stablecoins"),
    "partial": (partial_page, "only 100 coins"),
    "depeg": (stablecoins_depegged, "stablecoins"),
    "mcap_x1000": (market_caps_x1000, "market cap / (price x circulating supply)"),
    "ranks": (ranks_shuffled, "market_cap_rank does not follow"),
    "btc_x3": (bitcoin_x3, "bitcoin moved"),
    "null_prices": (null_prices, "have no price"),
    "quarantine": (mostly_garbage, "quarantined"),
}


def test_the_real_body_is_plausible():
    assert check(body()) == []
    assert check(body(), previous=body()) == []


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_invariant_fails_on_its_own_fault(fault):
    mutate, words = FAULTS[fault]
    reasons = check(mutate(body()), previous=body())
    assert len(reasons) == 1, reasons
    assert words in reasons[0]


@pytest.mark.parametrize("fault", ["eur", "depeg", "mcap_x1000", "ranks", "null_prices", "quarantine"])
def test_the_first_snapshot_is_checked_without_history(fault):
    mutate, words = FAULTS[fault]
    reasons = check(mutate(body()), previous=None)
    assert len(reasons) == 1 and words in reasons[0], reasons


def test_checks_that_need_history_do_not_run_on_the_first_snapshot():
    assert check(partial_page(body()), previous=None) == []
    assert check(bitcoin_x3(body()), previous=None) == []


def test_a_short_list_the_api_really_lists_passes_when_the_previous_was_as_short():
    short = body()[:100]
    assert check(short, previous=body()[:100]) == []  # requested 250, the API lists 100
    assert check(body()[:100], previous=body(), requested=100) == []  # fewer asked for
    assert check(body(), previous=body()[:100]) == []  # more than before is never a problem


def test_one_odd_stablecoin_does_not_hold_a_snapshot():
    records = body()
    tether = next(r for r in records if r["id"] == "tether")
    tether["current_price"] = 7.8666533e-10  # a micro-cap price where tether's should be
    assert check(records, previous=body()) == []
    assert check(body()[:3]) == []  # bitcoin, ethereum, tether: one stablecoin is no median
    held = check(stablecoins_depegged(body()[:40]))  # but the median of the 3+ in a short list is
    assert len(held) == 1 and "stablecoins" in held[0]


def test_other_currencies_skip_the_stablecoin_check():
    assert check(priced_in_eur(body()), vs_currency="eur") == []


def test_the_real_bodies_recorded_in_inr_and_eur_are_held():
    inr = check(body(BODY_INR), requested=200)
    assert len(inr) == 1 and "not priced in USD" in inr[0] and "82" in inr[0]
    eur = check(body(BODY_EUR), requested=30)
    assert len(eur) == 1 and "not priced in USD" in eur[0] and "0.9496" in eur[0]
    eur_2021 = check(body(BODY_EUR_2021), requested=100)
    assert len(eur_2021) == 1 and "not priced in USD" in eur_2021[0] and "0.8518" in eur_2021[0]


def test_the_bitcoin_bound_grows_with_the_time_between_prices():
    assert gate.btc_move_bound(timedelta(minutes=15)) == pytest.approx(0.25)
    assert gate.btc_move_bound(timedelta(days=1)) == pytest.approx(0.50)
    assert gate.btc_move_bound(timedelta(days=4)) == pytest.approx(1.00)
    # x3 (+200 %) is implausible within a day, plausible over a year
    assert check(bitcoin_x3(body()), previous=body(), elapsed=timedelta(days=365)) == []
    # the elapsed time comes from bitcoin's own last_updated: 2022-10-16 -> 2024-12-19 is 26 months
    assert check(body(BODY_2024), previous=body()) == []


def test_a_real_drop_within_the_bound_passes():
    dropped = body()
    btc = next(r for r in dropped if r["id"] == "bitcoin")
    btc["current_price"] *= 0.8  # -20 % in 15 minutes: a flash crash, not a broken body
    assert check(dropped, previous=body()) == []


def test_reasons_are_one_readable_line_each():
    reasons = check(market_caps_x1000(ranks_shuffled(priced_in_eur(body()))), previous=body())
    assert len(reasons) >= 2
    assert all("\n" not in r and len(r) < 300 for r in reasons)


def _real_usd_bodies():
    for path in sorted(REAL.rglob("*.json")):
        if "single_record" in str(path) or path in (BODY_INR, BODY_EUR, BODY_EUR_2021):
            continue
        yield path


def test_every_real_usd_body_recorded_passes():
    bodies = list(_real_usd_bodies())
    assert len(bodies) > 100
    for path in bodies:
        records = json.loads(path.read_bytes())
        assert check(records, requested=len(records)) == [], path.name


def test_consecutive_real_daily_snapshots_pass_against_each_other():
    """madjin/daily-crypto: one top-100 body a day; each judged against the day before."""
    days = sorted((REAL / "madjin-daily-crypto").glob("*.json"))
    assert len(days) > 20
    previous = None
    for path in days:
        records = json.loads(path.read_bytes())
        if previous is not None:
            new, q = silver(records)
            old = silver(previous)[0]
            assert (
                gate.check_snapshot(new, old, requested=100, vs_currency="usd", quarantined=q, stablecoins=STABLECOINS)
                == []
            ), path.name
        previous = records


def test_thresholds_are_one_frozen_object():
    with pytest.raises(dataclasses.FrozenInstanceError):
        gate.DEFAULT_THRESHOLDS.max_null_price_share = 1.0  # type: ignore[misc]
    strict = gate.Thresholds(max_null_price_share=0.0)
    new, _ = silver(null_prices(body())[:50])
    held = gate.check_snapshot(new, None, requested=250, vs_currency="usd", stablecoins=STABLECOINS, thresholds=strict)
    assert len(held) == 1 and "at most 0.0 %" in held[0]
