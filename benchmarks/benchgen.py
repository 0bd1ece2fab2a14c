"""CoinGecko-shaped bronze history for the benchmark (``benchmarks.bench``).

Every generated coin starts from a real recorded ``/coins/markets`` record
(``tests/fixtures/coingecko/markets/``: the 250-coin files of 2022-10-16 and
2024-12-19 and the madjin daily files, de-duplicated by id). Asking for more
coins than there are real ones clones them (``<id>-g<k>``, symbol and name
suffixed, smaller market caps).

Each snapshot moves every coin one step along a random walk (lognormal steps of
0.5-2 % an hour, a shared market factor, stablecoins pinned near their peg) and
writes what the API would answer for that moment: market cap = price x
circulating supply, volume drifting around the coin's real turnover, high/low
of the last 24 h, the 1h/24h/7d/30d changes computed from the walk, ATH/ATL
updated, ranks by market cap, ``last_updated`` a few seconds before the
snapshot. NULLs stay where the real record has them (``roi``, ``max_supply``,
some ``fully_diluted_valuation``...), and a small share of records gets a field
nulled the way the API does (new listings without 24 h data, missing 1h/7d/30d
changes, unknown total supply). A much smaller share is malformed (negative
volume, a price that is not a number, a missing id) so the quarantine path runs
too. The 7-day sparkline is only on the newest snapshot by default (replay only
encodes the newest one); ``sparklines="all"`` puts it on every snapshot, as the
live client's ``sparkline=true`` requests do.

Snapshots are written through :class:`pipeline.bronze.BronzeWriter` exactly
like a live run: one ``ApiResponse`` per page of 250 and one ``/global`` body
(the real 2022-10-16 body, its totals scaled to ~1.6x the tracked coins).

    python -m benchmarks.benchgen --coins 250 --snapshots 400 --out /tmp/bench-data/raw
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from multiprocessing import get_context
from pathlib import Path

import numpy as np

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is in requirements.txt; json is the fallback
    orjson = None

from pipeline.bronze import BronzeWriter
from pipeline.providers.coingecko.client import ApiResponse
from pipeline.providers.coingecko.settings import GLOBAL_PATH, MARKETS_PATH, MAX_PER_PAGE, PRICE_CHANGE_PERIODS

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "coingecko"
#: Real bodies used as the starting universe, newest first (the first record of an id wins).
BASE_FILES = [
    "markets/markets_250_sparkline_pct1h-1y_2024-12-19_mrmendoza-dev-cryptotracker.json",
    "markets/markets_250_sparkline_pct1h24h7d_2022-10-16_mrmendoza-dev-cryptotracker.json",
    "markets/madjin-daily-crypto/prices_2026-04-30_022921Z_bf726667de.json",
    "markets/madjin-daily-crypto/prices_2026-04-29_022837Z_8b12e83cfb.json",
    "markets/madjin-daily-crypto/prices_2025-01-01_015307Z_482a5d639c.json",
    "markets/madjin-daily-crypto/prices_2023-03-20_000851Z_578288c630.json",
]
GLOBAL_FILE = "global/global_2022-10-16_mrmendoza-dev-cryptotracker.json"
STABLECOINS_CSV = REPO_ROOT / "sql" / "seeds" / "ref_stablecoins.csv"

DEFAULT_START = datetime(2026, 5, 1)  # after the newest recorded body, so ATH/ATL dates are in the past
HOUR = timedelta(hours=1)
#: Share of records with one field group nulled, as the API sometimes sends them.
NULL_RATE = 0.002
#: Share of malformed records (quarantined by silver).
BAD_RATE = 0.0001
#: Global total market cap as a multiple of the tracked coins' (CoinGecko tracks thousands more).
GLOBAL_MULTIPLE = 1.6

_PERIODS_H = {"1h": 1, "24h": 24, "7d": 168, "30d": 720}
_NULL_GROUPS = [
    # a new listing: no 24 h history yet (seen in the 2022-10-16 body)
    (
        "high_24h",
        "low_24h",
        "price_change_24h",
        "price_change_percentage_24h",
        "market_cap_change_24h",
        "market_cap_change_percentage_24h",
        "price_change_percentage_24h_in_currency",
    ),
    ("price_change_percentage_1h_in_currency",),
    ("price_change_percentage_7d_in_currency", "price_change_percentage_30d_in_currency"),
    ("price_change_percentage_30d_in_currency",),
    ("total_supply", "fully_diluted_valuation"),
]


@dataclass
class GeneratedSnapshot:
    snapshot_at: datetime
    run_id: str
    records: list[dict]
    global_body: dict


def load_base_records(fixtures_dir: Path = FIXTURES) -> list[dict]:
    """The real records, one per id (newest file first), by market cap descending."""
    seen: dict[str, dict] = {}
    for name in BASE_FILES:
        for rec in json.loads((fixtures_dir / name).read_text()):
            if isinstance(rec, dict) and isinstance(rec.get("id"), str) and rec["id"] not in seen:
                if isinstance(rec.get("current_price"), (int, float)) and rec["current_price"] > 0:
                    seen[rec["id"]] = rec
    return sorted(seen.values(), key=lambda r: -(r.get("market_cap") or 0))


def _stablecoin_ids() -> set[str]:
    lines = STABLECOINS_CSV.read_text().splitlines()[1:]
    return {line.split(",")[0] for line in lines if line.strip()}


def _num(value, default=math.nan) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _significant(values: np.ndarray, digits: int) -> np.ndarray:
    """Round to ``digits`` significant digits, as the API sends high_24h/low_24h (218.46, 77808)."""
    safe = np.where(values > 0, values, 1.0)
    power = digits - 1 - np.floor(np.log10(safe)).astype(np.int64)
    up = np.power(10.0, np.maximum(power, 0))
    down = np.power(10.0, np.maximum(-power, 0))
    return np.where(values > 0, np.where(power >= 0, np.rint(values * up) / up, np.rint(values / down) * down), values)


def _iso_ms(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class MarketSimulator:
    """``coins`` coins moving one step per snapshot; yields API-shaped records."""

    def __init__(
        self,
        coins: int,
        *,
        seed: int = 0,
        start: datetime = DEFAULT_START,
        step: timedelta = HOUR,
        sparklines: str = "last",
        null_rate: float = NULL_RATE,
        bad_rate: float = BAD_RATE,
        run_prefix: str = "",
    ):
        if coins < 1:
            raise ValueError("coins must be at least 1")
        if sparklines not in ("last", "all", "none"):
            raise ValueError("sparklines must be 'last', 'all' or 'none'")
        self.coins = coins
        self.start = start
        self.step = step
        self.sparklines = sparklines
        self.null_rate = null_rate
        self.bad_rate = bad_rate
        self.run_prefix = run_prefix
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        step_hours = step.total_seconds() / 3600.0
        self.lags = {p: max(1, round(h / step_hours)) for p, h in _PERIODS_H.items()}
        self.window_24h = self.lags["24h"]
        self.spark_points = max(2, round(168 / step_hours))
        self.depth = max(max(self.lags.values()), self.spark_points) + 1

        base = load_base_records()
        stables = _stablecoin_ids()
        statics: list[dict] = []
        price0 = np.empty(coins)
        supply = np.empty(coins)
        for i in range(coins):
            k, j = divmod(i, len(base))
            rec = base[j]
            price = _num(rec.get("current_price"))
            circ = _num(rec.get("circulating_supply"), 0.0)
            if not circ > 0:
                circ = _num(rec.get("market_cap"), 0.0) / price if _num(rec.get("market_cap"), 0.0) > 0 else 1e6
            static = {
                "id": rec["id"],
                "symbol": rec.get("symbol"),
                "name": rec.get("name"),
                "image": rec.get("image"),
                "total_supply": rec.get("total_supply"),
                "max_supply": rec.get("max_supply"),
                "roi": rec.get("roi"),
                "ath_date": rec.get("ath_date"),
                "atl_date": rec.get("atl_date"),
                "stable": rec["id"] in stables,
                "fdv_ratio": (
                    _num(rec.get("fully_diluted_valuation")) / price
                    if rec.get("fully_diluted_valuation") is not None
                    else math.nan
                ),
                "vol_ratio": min(
                    2.0,
                    max(
                        1e-4,
                        _num(rec.get("total_volume"), 0.0) / max(1.0, _num(rec.get("market_cap"), 0.0) or price * circ),
                    ),
                ),
                "ath": _num(rec.get("ath"), price),
                "atl": _num(rec.get("atl"), price),
            }
            if k:  # a clone: a different, smaller coin built from a real one
                price_factor = 1.0 if static["stable"] else float(np.exp(rng.normal(0.0, 1.0)))
                cap_scale = float(rng.uniform(0.3, 1.0)) / (1.0 + k)
                supply_factor = cap_scale / price_factor
                static.update(
                    {
                        "id": f"{rec['id']}-g{k}",
                        "symbol": f"{rec.get('symbol') or 'x'}g{k}",
                        "name": f"{rec.get('name') or rec['id']} G{k}",
                        "total_supply": (
                            None if rec.get("total_supply") is None else float(rec["total_supply"]) * supply_factor
                        ),
                        "max_supply": None
                        if rec.get("max_supply") is None
                        else float(rec["max_supply"]) * supply_factor,
                        "ath": static["ath"] * price_factor,
                        "atl": static["atl"] * price_factor,
                    }
                )
                price *= price_factor
                circ *= supply_factor
            statics.append(static)
            price0[i] = price
            supply[i] = circ
        self.statics = statics
        self.ids = [s["id"] for s in statics]
        self.stable = np.array([s["stable"] for s in statics])
        self.peg = price0.copy()
        self.supply = supply
        self.total_supply = [s["total_supply"] for s in statics]
        self.fdv_ratio = np.array([s["fdv_ratio"] for s in statics])
        self.vol_ratio = np.array([s["vol_ratio"] for s in statics])
        self.ath = np.array([s["ath"] for s in statics])
        self.atl = np.array([s["atl"] for s in statics])
        self.ath_date = [s["ath_date"] for s in statics]
        self.atl_date = [s["atl_date"] for s in statics]
        self.sigma = rng.uniform(0.005, 0.02, coins) * math.sqrt(step_hours)
        self.sigma[self.stable] = 0.0003
        self.beta = rng.uniform(0.5, 1.5, coins)
        self.beta[self.stable] = 0.0
        self.log_price = np.log(price0)
        self.vol_state = np.zeros(coins)
        self.hist = np.empty((self.depth, coins))
        self.pos = -1
        self.snapshot_number = 0
        # Burn-in: a history before the first snapshot, so every change has a base.
        for _ in range(self.depth):
            self._advance()
        with open(FIXTURES / GLOBAL_FILE, "rb") as handle:
            self.global_template = json.loads(handle.read())

    def _advance(self) -> np.ndarray:
        rng = self.rng
        z = rng.standard_normal(self.coins)
        market = rng.normal(0.0, 0.004)
        self.log_price += self.sigma * z + self.beta * market
        # stablecoins: back to the peg, never far from it
        self.log_price[self.stable] = np.log(self.peg[self.stable]) + self.sigma[self.stable] * z[self.stable]
        self.vol_state = 0.9 * self.vol_state + rng.normal(0.0, 0.12, self.coins)
        price = np.exp(self.log_price)
        self.pos = (self.pos + 1) % self.depth
        self.hist[self.pos] = price
        return price

    def _ago(self, steps: int) -> np.ndarray:
        return self.hist[(self.pos - steps) % self.depth]

    def snapshots(self, count: int) -> Iterator[GeneratedSnapshot]:
        for _ in range(count):
            yield self.next_snapshot(is_last=(_ == count - 1))

    def next_snapshot(self, *, is_last: bool = False) -> GeneratedSnapshot:
        rng = self.rng
        n = self.coins
        snapshot_at = self.start + self.step * self.snapshot_number
        self.snapshot_number += 1
        run_id = f"{self.run_prefix}{snapshot_at:%Y%m%dT%H%M%SZ}-{int(rng.integers(0, 1 << 24)):06x}"
        price = self._advance()
        p1h, p24h, p7d, p30d = (self._ago(self.lags[p]) for p in ("1h", "24h", "7d", "30d"))
        rows = (self.pos - np.arange(self.window_24h)) % self.depth
        window = self.hist[rows]
        high = _significant(window.max(axis=0) * (1 + np.abs(rng.normal(0, 0.002, n))), 6)
        low = _significant(window.min(axis=0) * (1 - np.abs(rng.normal(0, 0.002, n))), 6)
        market_cap = np.rint(price * self.supply)
        cap_24h = np.rint(p24h * self.supply)
        volume = np.rint(market_cap * self.vol_ratio * np.exp(self.vol_state))
        fdv = np.rint(price * self.fdv_ratio)
        new_ath = price > self.ath
        new_atl = price < self.atl
        self.ath = np.where(new_ath, price, self.ath)
        self.atl = np.where(new_atl, price, self.atl)
        stamp = _iso_ms(snapshot_at)
        for i in np.flatnonzero(new_ath):
            self.ath_date[i] = stamp
        for i in np.flatnonzero(new_atl):
            self.atl_date[i] = stamp
        order = np.argsort(-market_cap, kind="stable")

        pc24 = price - p24h
        cols = {
            "current_price": price,
            "market_cap": market_cap,
            "fully_diluted_valuation": fdv,
            "total_volume": volume,
            "high_24h": high,
            "low_24h": low,
            "price_change_24h": pc24,
            "price_change_percentage_24h": np.round(pc24 / p24h * 100, 5),
            "market_cap_change_24h": market_cap - cap_24h,
            "market_cap_change_percentage_24h": np.round((market_cap - cap_24h) / np.maximum(cap_24h, 1) * 100, 5),
            "ath_change_percentage": np.round((price - self.ath) / self.ath * 100, 5),
            "atl_change_percentage": np.round((price - self.atl) / self.atl * 100, 5),
            "pc1h": (price / p1h - 1) * 100,
            "pc24h": pc24 / p24h * 100,
            "pc7d": (price / p7d - 1) * 100,
            "pc30d": (price / p30d - 1) * 100,
        }
        lists = {k: v[order].tolist() for k, v in cols.items()}
        supply = self.supply[order].tolist()
        ath = self.ath[order].tolist()
        atl = self.atl[order].tolist()
        fdv_known = (~np.isnan(self.fdv_ratio[order])).tolist()
        updated = [_iso_ms(snapshot_at - timedelta(seconds=s)) for s in rng.uniform(1, 240, 48)]
        updated_pick = rng.integers(0, len(updated), n).tolist()
        with_spark = self.sparklines == "all" or (self.sparklines == "last" and is_last)
        if with_spark:
            spark_rows = (self.pos - np.arange(self.spark_points - 1, -1, -1)) % self.depth
            spark = self.hist[spark_rows].T  # coins x points, oldest first

        records = []
        for rank, i in enumerate(order.tolist()):
            s = self.statics[i]
            r = rank
            rec = {
                "id": s["id"],
                "symbol": s["symbol"],
                "name": s["name"],
                "image": s["image"],
                "current_price": lists["current_price"][r],
                "market_cap": int(lists["market_cap"][r]),
                "market_cap_rank": rank + 1,
                "fully_diluted_valuation": int(lists["fully_diluted_valuation"][r]) if fdv_known[r] else None,
                "total_volume": int(lists["total_volume"][r]),
                "high_24h": lists["high_24h"][r],
                "low_24h": lists["low_24h"][r],
                "price_change_24h": lists["price_change_24h"][r],
                "price_change_percentage_24h": lists["price_change_percentage_24h"][r],
                "market_cap_change_24h": lists["market_cap_change_24h"][r],
                "market_cap_change_percentage_24h": lists["market_cap_change_percentage_24h"][r],
                "circulating_supply": supply[r],
                "total_supply": s["total_supply"],
                "max_supply": s["max_supply"],
                "ath": ath[r],
                "ath_change_percentage": lists["ath_change_percentage"][r],
                "ath_date": self.ath_date[i],
                "atl": atl[r],
                "atl_change_percentage": lists["atl_change_percentage"][r],
                "atl_date": self.atl_date[i],
                "roi": s["roi"],
                "last_updated": updated[updated_pick[r]],
            }
            if with_spark:
                rec["sparkline_in_7d"] = {"price": spark[i].tolist()}
            rec["price_change_percentage_1h_in_currency"] = lists["pc1h"][r]
            rec["price_change_percentage_24h_in_currency"] = lists["pc24h"][r]
            rec["price_change_percentage_30d_in_currency"] = lists["pc30d"][r]
            rec["price_change_percentage_7d_in_currency"] = lists["pc7d"][r]
            records.append(rec)

        for r in np.flatnonzero(rng.random(n) < self.null_rate).tolist():
            for key in _NULL_GROUPS[int(rng.integers(0, len(_NULL_GROUPS)))]:
                records[r][key] = None
        for r in np.flatnonzero(rng.random(n) < self.bad_rate).tolist():
            kind = int(rng.integers(0, 3))
            if kind == 0:
                records[r]["total_volume"] = -abs(records[r]["total_volume"] or 1)
            elif kind == 1:
                records[r]["current_price"] = "n/a"
            else:
                records[r]["id"] = None
        return GeneratedSnapshot(
            snapshot_at, run_id, records, self._global_body(snapshot_at, market_cap, cap_24h, volume, order)
        )

    def _global_body(
        self, snapshot_at: datetime, market_cap: np.ndarray, cap_24h: np.ndarray, volume: np.ndarray, order: np.ndarray
    ) -> dict:
        body = copy.deepcopy(self.global_template)
        data = body["data"]
        tracked = float(market_cap.sum())
        total = tracked * GLOBAL_MULTIPLE
        cap_factor = total / data["total_market_cap"]["usd"]
        vol_factor = float(volume.sum()) * GLOBAL_MULTIPLE / data["total_volume"]["usd"]
        data["total_market_cap"] = {k: v * cap_factor for k, v in data["total_market_cap"].items()}
        data["total_volume"] = {k: v * vol_factor for k, v in data["total_volume"].items()}
        data["market_cap_percentage"] = {
            self.statics[i]["symbol"]: float(market_cap[i]) / total * 100 for i in order[:10].tolist()
        }
        data["market_cap_change_percentage_24h_usd"] = (tracked / max(float(cap_24h.sum()), 1.0) - 1) * 100
        data["updated_at"] = int((snapshot_at - datetime(1970, 1, 1)).total_seconds())
        return body


def _dumps(value) -> bytes:
    """Compact JSON, like the API's bodies (orjson when installed: ~10x faster than json)."""
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":")).encode()


def encode_snapshot(snap: GeneratedSnapshot) -> tuple[list[bytes], bytes]:
    """The bodies the API would have sent: pages of 250 records, then /global."""
    per_page = min(MAX_PER_PAGE, len(snap.records))
    pages = [_dumps(snap.records[first : first + per_page]) for first in range(0, len(snap.records), per_page)]
    return pages, _dumps(snap.global_body)


def write_bodies(
    raw_dir: Path,
    run_id: str,
    snapshot_at: datetime,
    top_n: int,
    pages: list[bytes],
    global_body: bytes,
    *,
    write_parquet: bool = True,
    vs_currency: str = "usd",
) -> int:
    """One bronze run through BronzeWriter, as a live fetch of ``top_n`` coins would leave it."""
    writer = BronzeWriter(
        raw_dir,
        run_id,
        source="api",
        started_at=snapshot_at,
        vs_currency=vs_currency,
        top_n=top_n,
        write_parquet=write_parquet,
    )
    per_page = min(MAX_PER_PAGE, top_n)
    fetched = snapshot_at
    for page, body in enumerate(pages, start=1):
        params = {
            "vs_currency": vs_currency,
            "order": "market_cap_desc",
            "per_page": per_page,
            "page": page,
            "sparkline": "true",
            "price_change_percentage": PRICE_CHANGE_PERIODS,
        }
        writer.add(
            ApiResponse(
                endpoint="markets",
                path=MARKETS_PATH,
                params=params,
                status=200,
                body=body,
                fetched_at=fetched,
                attempt=1,
                page=page,
            )
        )
        fetched += timedelta(milliseconds=350)
    writer.add(
        ApiResponse(
            endpoint="global", path=GLOBAL_PATH, params={}, status=200, body=global_body, fetched_at=fetched, attempt=1
        )
    )
    writer.finish(snapshot_at=snapshot_at, complete=True)
    return top_n


def generate_bronze(
    raw_dir,
    coins: int,
    snapshots: int,
    *,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    step: timedelta = HOUR,
    write_parquet: bool = True,
    sparklines: str = "last",
    null_rate: float = NULL_RATE,
    bad_rate: float = BAD_RATE,
    writer_process: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write ``snapshots`` bronze runs of ``coins`` records each under ``raw_dir``; returns the record count.

    With the Parquet copies beside the JSON, as a live run leaves them (replay reads the copies;
    ``write_parquet=False`` gives old bronze, which replay reads through the JSON fallback).

    The simulation and JSON encoding run here; BronzeWriter (which parses each
    body again, hashes and writes it) runs in one helper process when the
    history is large enough to be worth it, so two cores share the work.
    """
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    sim = MarketSimulator(
        coins, seed=seed, start=start, step=step, sparklines=sparklines, null_rate=null_rate, bad_rate=bad_rate
    )
    if writer_process is None:
        writer_process = coins * snapshots >= 50_000
    records = 0
    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) if writer_process else None
    pending: deque[Future] = deque()
    try:
        for number, snap in enumerate(sim.snapshots(snapshots), start=1):
            pages, global_body = encode_snapshot(snap)
            args = (raw_dir, snap.run_id, snap.snapshot_at, len(snap.records), pages, global_body)
            if pool is None:
                records += write_bodies(*args, write_parquet=write_parquet)
            else:
                pending.append(pool.submit(write_bodies, *args, write_parquet=write_parquet))
                while len(pending) > 32 or (pending and pending[0].done()):
                    records += pending.popleft().result()
            if progress and (number % 500 == 0 or number == snapshots):
                progress(number, records + sum(len(snap.records) for _ in pending))
        while pending:
            records += pending.popleft().result()
    finally:
        if pool is not None:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.benchgen", description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=250)
    parser.add_argument("--snapshots", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the raw/ folder to write bronze runs into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", default=DEFAULT_START.isoformat(), help="first snapshot, UTC (ISO)")
    parser.add_argument("--step-minutes", type=float, default=60.0)
    parser.add_argument(
        "--no-parquet",
        dest="parquet",
        action="store_false",
        help="JSON bodies only, as bronze written before the Parquet copies existed (replay then reads the JSON)",
    )
    parser.add_argument("--sparklines", choices=["last", "all", "none"], default="last")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    records = generate_bronze(
        args.out,
        args.coins,
        args.snapshots,
        seed=args.seed,
        start=datetime.fromisoformat(args.start),
        step=timedelta(minutes=args.step_minutes),
        write_parquet=args.parquet,
        sparklines=args.sparklines,
        progress=lambda n, r: print(f"  {n} snapshots, {r} records", flush=True),
    )
    print(
        f"wrote {records} records in {args.snapshots} bronze runs under {args.out} "
        f"in {time.perf_counter() - began:.1f}s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
