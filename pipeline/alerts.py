"""Alert rules: what a user asked to be told about, checked after every successful run.

A rule watches one coin: its price, its % move over 1h/24h/7d, a 24h-volume spike (z-score against
the coin's own previous 30 days), its share of the market, or a stablecoin's distance from $1.
Evaluation is pure (``evaluate_rule``: the rule's current value and its previous condition in,
fired? and the new condition out) and fed by one query per kind of figure on the newest published
gold snapshot (``evaluate``). An alert fires once per crossing: when its condition goes from false
(or never evaluated) to true; then not again until the condition has been false. A figure that
cannot be had (the coin left the top N, too little volume history) changes nothing.

``after_publish`` is the pipeline's hook (``flow.run_pipeline``, under the run's lock, after gold
is published): a failure here is logged and noted on the run, never raised. ``deliver`` then sends
what fired to the webhook, after the lock is released (``pipeline.webhooks``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from pipeline import logs, webhooks
from pipeline.config import Settings
from pipeline.db import utcnow
from pipeline.errors import PipelineError
from pipeline.run_context import RunContext
from pipeline.schema import (
    ALERT_TABLES,
    alert_events,
    alert_rules,
    alert_state,
    crypto_analytics_mart,
    metadata,
    ref_coin_classes,
    ref_stablecoins,
    staging_coin_history,
    staging_crypto_market,
)

log = logs.get_logger(__name__)

Progress = Callable[[str, str], None]

#: The change windows the snapshot carries (price_change_percentage_<window>).
WINDOWS = ("1h", "24h", "7d")
#: Volume spikes: the coin's own history this far back, and the fewest points a z-score needs.
VOLUME_LOOKBACK = timedelta(days=30)
MIN_VOLUME_POINTS = 10
NOTE_LIMIT = 500
COIN_ID_LIMIT = 200


class AlertRuleError(PipelineError):
    """A rule cannot be saved as given (unknown kind, missing coin, threshold out of range)."""


@dataclass(frozen=True)
class Kind:
    """One kind of rule: how its value is measured and compared, and how the threshold reads."""

    name: str
    label: str
    above: bool  # fires when the value goes above the threshold (else below)
    unit: str  # "usd" | "pct" | "pp" | "z" | "peg"
    threshold_label: str
    default_threshold: float
    minimum: float | None = None
    maximum: float | None = None


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("price_above", "Price above", True, "usd", "Price (USD)", 100_000.0, minimum=0.0),
        Kind("price_below", "Price below", False, "usd", "Price (USD)", 1.0, minimum=0.0),
        Kind("change_above", "% move above", True, "pct", "Change (%)", 10.0),
        Kind("change_below", "% move below", False, "pct", "Change (%)", -10.0),
        Kind("volume_spike", "Volume spike", True, "z", "z-score of 24h volume", 3.0, minimum=0.0),
        Kind("dominance_above", "Dominance above", True, "pp", "Share of market (%)", 50.0, 0.0, 100.0),
        Kind("dominance_below", "Dominance below", False, "pp", "Share of market (%)", 40.0, 0.0, 100.0),
        Kind("depeg", "Stablecoin de-peg", True, "peg", "Distance from $1 (0.01 = 1 %)", 0.01, 0.0, 1.0),
    )
}


@dataclass(frozen=True)
class Rule:
    rule_id: int
    kind: str
    coin_id: str
    threshold: float
    change_window: str | None = None
    note: str | None = None
    enabled: bool = True

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Rule:
        return cls(
            rule_id=int(row["rule_id"]),
            kind=str(row["kind"]),
            coin_id=str(row["coin_id"]),
            threshold=float(row["threshold"]),
            change_window=row["change_window"],
            note=row["note"],
            enabled=bool(row["enabled"]),
        )


@dataclass(frozen=True)
class CoinFigures:
    """One coin's figures in the newest gold snapshot."""

    coin_id: str
    name: str | None = None
    symbol: str | None = None
    price: float | None = None
    change: Mapping[str, float | None] = field(default_factory=dict)  # window -> %
    dominance_pct: float | None = None
    volume: float | None = None

    @property
    def title(self) -> str:
        name = self.name or self.coin_id
        return f"{name} ({self.symbol.upper()})" if self.symbol else name


@dataclass(frozen=True)
class Outcome:
    """A rule's evaluation: the condition now (None: could not tell), whether it fired, and why not."""

    condition: bool | None
    fired: bool
    value: float | None
    reason: str | None = None


# -- pure ------------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):  # a driver's number types
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def volume_zscore(latest: float | None, history: Sequence[float]) -> tuple[float | None, str | None]:
    """z of ``latest`` against ``history`` (sample standard deviation); None and why when it cannot be had."""
    if latest is None:
        return None, "no 24h volume in the newest snapshot"
    points = [v for v in history if v is not None and math.isfinite(v)]
    if len(points) < MIN_VOLUME_POINTS:
        return None, f"not enough history ({len(points)} of {MIN_VOLUME_POINTS} volume points in 30 days)"
    spread = statistics.stdev(points)
    if spread == 0:
        return None, "the volume never changed in 30 days"
    return (latest - statistics.fmean(points)) / spread, None


def measure(rule: Rule, coin: CoinFigures | None, volume_z: float | None = None) -> tuple[float | None, str | None]:
    """The figure a rule compares with its threshold, or None and why it is missing."""
    if coin is None:
        return None, f"{rule.coin_id} is not in the newest snapshot"
    kind = rule.kind
    if kind in ("price_above", "price_below", "depeg"):
        value, what = coin.price, "price"
    elif kind in ("change_above", "change_below"):
        value, what = coin.change.get(rule.change_window or ""), f"{rule.change_window} change"
    elif kind in ("dominance_above", "dominance_below"):
        value, what = coin.dominance_pct, "share of the market"
    elif kind == "volume_spike":
        value, what = volume_z, "volume z-score"
    else:
        return None, f"unknown kind {kind!r}"
    if value is None:
        return None, f"no {what} for {rule.coin_id} in the newest snapshot"
    return value, None


def condition_met(rule: Rule, value: float) -> bool:
    if rule.kind == "depeg":
        return abs(value - 1.0) > rule.threshold
    return value > rule.threshold if KINDS[rule.kind].above else value < rule.threshold


def evaluate_rule(rule: Rule, value: float | None, previous: bool | None, reason: str | None = None) -> Outcome:
    """Fire on a false→true crossing (a first evaluation that is true counts); unknown changes nothing."""
    if value is None:
        return Outcome(condition=None, fired=False, value=None, reason=reason or "no value")
    now = condition_met(rule, value)
    return Outcome(condition=now, fired=now and previous is not True, value=value)


def _price(value: float) -> str:
    """$19,163.45 or $0.000000533: never scientific notation."""
    if value == 0 or abs(value) >= 1:
        return f"${value:,.2f}"
    digits = min(18, max(2, 3 - math.floor(math.log10(abs(value)))))
    return f"${value:.{digits}f}".rstrip("0").rstrip(".")


def _pct(value: float, signed: bool = False) -> str:
    return f"{value:+,.2f} %" if signed else f"{value:,.2f} %"


def message(rule: Rule, coin: CoinFigures | None, value: float) -> str:
    """One line a person reads in the history table or a chat channel."""
    title = coin.title if coin else rule.coin_id
    kind = rule.kind
    if kind == "price_above":
        return f"{title} is above {_price(rule.threshold)}: {_price(value)}"
    if kind == "price_below":
        return f"{title} is below {_price(rule.threshold)}: {_price(value)}"
    if kind in ("change_above", "change_below"):
        side = "above" if kind == "change_above" else "below"
        return f"{title} moved {_pct(value, True)} in {rule.change_window} ({side} {_pct(rule.threshold, True)})"
    if kind == "volume_spike":
        volume = f" (24h volume {_price(coin.volume)})" if coin and coin.volume is not None else ""
        return f"{title} volume spike: z = {value:.2f} against its 30-day history, above {rule.threshold:g}{volume}"
    if kind in ("dominance_above", "dominance_below"):
        side = "above" if kind == "dominance_above" else "below"
        return f"{title} share of the market is {_pct(value)}, {side} {_pct(rule.threshold)}"
    if kind == "depeg":
        return (
            f"{title} is ${value:,.4f}, {_pct(abs(value - 1.0) * 100)} off its $1 peg "
            f"(more than {_pct(rule.threshold * 100)})"
        )
    return f"{title}: {value:g}"


def validate_rule(
    kind: str, coin_id: str, threshold: float, change_window: str | None, note: str | None
) -> tuple[str, str, float, str | None, str | None]:
    """The rule as it will be stored, or AlertRuleError saying what is wrong."""
    if kind not in KINDS:
        raise AlertRuleError(f"unknown alert kind {kind!r} (one of {', '.join(KINDS)})")
    spec = KINDS[kind]
    coin_id = (coin_id or "").strip()
    if not coin_id:
        raise AlertRuleError("choose a coin for the alert")
    if len(coin_id) > COIN_ID_LIMIT:
        raise AlertRuleError(f"the coin id is longer than {COIN_ID_LIMIT} characters")
    number = _number(threshold)
    if number is None:
        raise AlertRuleError("the threshold must be a number")
    low = "" if spec.minimum is None or number > spec.minimum else f"above {spec.minimum:g}"
    high = "" if spec.maximum is None or number <= spec.maximum else f"at most {spec.maximum:g}"
    if low or high:
        raise AlertRuleError(f"the threshold of a {spec.label.lower()} rule must be {low or high}")
    if kind in ("change_above", "change_below"):
        if change_window not in WINDOWS:
            raise AlertRuleError(f"choose the window of the move: {', '.join(WINDOWS)}")
    else:
        change_window = None
    note = (note or "").strip() or None
    if note and len(note) > NOTE_LIMIT:
        raise AlertRuleError(f"the note is longer than {NOTE_LIMIT} characters")
    return kind, coin_id, number, change_window, note


# -- rules (written from the dashboard through pipeline.api) ----------------------------------


def ensure_tables(engine: Engine) -> None:
    """The alert tables (a database the pipeline has not run on since alerts came)."""
    metadata.create_all(engine, tables=ALERT_TABLES, checkfirst=True)


def create_rule(
    engine: Engine,
    *,
    kind: str,
    coin_id: str,
    threshold: float,
    change_window: str | None = None,
    note: str | None = None,
) -> int:
    """Save a new, enabled rule; returns its id. It is first evaluated after the next successful run."""
    kind, coin_id, threshold, change_window, note = validate_rule(kind, coin_id, threshold, change_window, note)
    ensure_tables(engine)
    with engine.begin() as conn:
        result = conn.execute(
            insert(alert_rules).values(
                kind=kind,
                coin_id=coin_id,
                change_window=change_window,
                threshold=threshold,
                note=note,
                enabled=True,
                created_at=utcnow(),
            )
        )
        key = result.inserted_primary_key
        return int(key[0]) if key else 0


def set_rule_enabled(engine: Engine, rule_id: int, enabled: bool) -> None:
    """Switch a rule on or off. Off forgets its state: switched back on, a true condition fires again."""
    with engine.begin() as conn:
        conn.execute(update(alert_rules).where(alert_rules.c.rule_id == rule_id).values(enabled=enabled))
        if not enabled:
            conn.execute(delete(alert_state).where(alert_state.c.rule_id == rule_id))


def delete_rule(engine: Engine, rule_id: int) -> None:
    """Remove a rule and its state; what it fired stays in the history."""
    with engine.begin() as conn:
        conn.execute(delete(alert_state).where(alert_state.c.rule_id == rule_id))
        conn.execute(delete(alert_rules).where(alert_rules.c.rule_id == rule_id))


def stablecoin_ids(engine: Engine) -> list[str]:
    """Coins a de-peg rule can watch: CoinGecko's stablecoins and the USD-pegged seed, not EUR-pegged ones."""
    with engine.connect() as conn:
        seed = {str(r.id): str(r.pegged_to).upper() for r in conn.execute(select(ref_stablecoins))}
        classes = {
            str(r[0])
            for r in conn.execute(select(ref_coin_classes.c.id).where(ref_coin_classes.c.coin_class == "stablecoin"))
        }
    return sorted({i for i, peg in seed.items() if peg == "USD"} | {i for i in classes if seed.get(i, "USD") == "USD"})


# -- evaluation --------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """What one evaluation did: the snapshot, rules evaluated, what fired, why some could not tell."""

    snapshot_at: datetime | None = None
    evaluated: int = 0
    fired: list[str] = field(default_factory=list)  # messages
    unknown: dict[int, str] = field(default_factory=dict)  # rule id -> reason


def _coin_figures(conn: Connection, coin_ids: Iterable[str]) -> dict[str, CoinFigures]:
    m = crypto_analytics_mart
    ids = sorted(set(coin_ids))
    if not ids:
        return {}
    rows = conn.execute(
        select(
            m.c.id,
            m.c.name,
            m.c.symbol,
            m.c.current_price,
            m.c.price_change_percentage_1h,
            m.c.price_change_percentage_24h,
            m.c.price_change_percentage_7d,
            m.c.market_dominance_pct,
            m.c.total_volume,
        ).where(m.c.id.in_(ids))
    )
    return {
        str(r.id): CoinFigures(
            coin_id=str(r.id),
            name=r.name,
            symbol=r.symbol,
            price=_number(r.current_price),
            change={
                "1h": _number(r.price_change_percentage_1h),
                "24h": _number(r.price_change_percentage_24h),
                "7d": _number(r.price_change_percentage_7d),
            },
            dominance_pct=_number(r.market_dominance_pct),
            volume=_number(r.total_volume),
        )
        for r in rows
    }


def _volume_history(conn: Connection, coin_ids: Iterable[str], before: datetime) -> dict[str, list[float]]:
    """Each coin's 24h volumes in the 30 days before ``before``: silver snapshots and backfilled days
    (a day both have keeps the snapshot)."""
    ids = sorted(set(coin_ids))
    if not ids:
        return {}
    since = before - VOLUME_LOOKBACK
    s, h = staging_crypto_market, staging_coin_history
    points: dict[str, dict[datetime, float]] = {i: {} for i in ids}
    backfill = select(h.c.id, h.c.ts, h.c.total_volume).where(h.c.id.in_(ids), h.c.ts >= since, h.c.ts < before)
    snapshots = select(s.c.id, s.c.snapshot_at, s.c.total_volume).where(
        s.c.id.in_(ids), s.c.snapshot_at >= since, s.c.snapshot_at < before
    )
    for statement in (backfill, snapshots):  # snapshots last: they win a shared time
        for coin_id, ts, volume in conn.execute(statement):
            value = _number(volume)
            if value is not None:
                points[str(coin_id)][ts] = value
    return {i: list(p.values()) for i, p in points.items()}


def evaluate(engine: Engine, *, run_id: str | None = None, now: datetime | None = None) -> Evaluation:
    """Evaluate every enabled rule on the newest gold snapshot (once per snapshot), record what fired."""
    now = now or utcnow()
    report = Evaluation()
    with engine.begin() as conn:
        rules = [Rule.from_row(r._mapping) for r in conn.execute(select(alert_rules).order_by(alert_rules.c.rule_id))]
        enabled = [r for r in rules if r.enabled]
        # A disabled or deleted rule keeps no state.
        conn.execute(delete(alert_state).where(alert_state.c.rule_id.not_in([r.rule_id for r in enabled])))
        snapshot_at = conn.execute(select(func.max(crypto_analytics_mart.c.snapshot_at))).scalar()
        if not enabled or snapshot_at is None:
            return report
        report.snapshot_at = snapshot_at
        states = {int(r.rule_id): r for r in conn.execute(select(alert_state))}
        due = [r for r in enabled if r.rule_id not in states or states[r.rule_id].snapshot_at < snapshot_at]
        figures = _coin_figures(conn, (r.coin_id for r in due))
        history = _volume_history(conn, (r.coin_id for r in due if r.kind == "volume_spike"), snapshot_at)
        for rule in due:
            coin = figures.get(rule.coin_id)
            z, why = (None, None)
            if rule.kind == "volume_spike":
                z, why = volume_zscore(coin.volume if coin else None, history.get(rule.coin_id, []))
            value, reason = measure(rule, coin, z)
            state = states.get(rule.rule_id)
            outcome = evaluate_rule(rule, value, bool(state.condition_met) if state else None, why or reason)
            report.evaluated += 1
            if outcome.condition is None or outcome.value is None:
                report.unknown[rule.rule_id] = outcome.reason or "no value"
                continue  # nothing known: the previous condition stands
            conn.execute(delete(alert_state).where(alert_state.c.rule_id == rule.rule_id))
            conn.execute(
                insert(alert_state).values(
                    rule_id=rule.rule_id,
                    condition_met=outcome.condition,
                    value=outcome.value,
                    snapshot_at=snapshot_at,
                    evaluated_at=now,
                )
            )
            if outcome.fired:
                text = message(rule, coin, outcome.value)
                conn.execute(
                    insert(alert_events).values(
                        rule_id=rule.rule_id,
                        kind=rule.kind,
                        coin_id=rule.coin_id,
                        threshold=rule.threshold,
                        value=outcome.value,
                        message=text,
                        fired_at=now,
                        snapshot_at=snapshot_at,
                        run_id=run_id,
                        delivery_attempts=0,
                    )
                )
                report.fired.append(text)
    return report


# -- the pipeline's hooks ----------------------------------------------------------------------


class _Notes(Protocol):
    warnings: list[str]


def _first_line(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def after_publish(run: RunContext, result: _Notes, progress: Progress) -> Evaluation | None:
    """Evaluate the rules once a run has published gold (still under its lock, so two runs never
    evaluate at once). Never raises: a failure is logged and noted on the run, which stays a success."""
    try:
        report = evaluate(run.engine, run_id=run.run_id)
    except Exception as exc:  # noqa: BLE001 - alerts must never fail or hold the run
        note = f"alerts not evaluated: {_first_line(exc)}"
        log.warning(note)
        result.warnings.append(note)
        try:
            run.log.update(notes="\n".join(result.warnings))
        except Exception as record_error:  # noqa: BLE001 - the database that failed may still be failing
            log.warning("could not note it on run %s: %s", run.run_id, _first_line(record_error))
        return None
    if report.fired:
        progress("gold", f"{len(report.fired)} alert(s) fired: " + "; ".join(report.fired[:3]))
    return report


def deliver(settings: Settings, engine: Engine, progress: Progress) -> webhooks.DeliveryReport | None:
    """Send fired alerts to ALERTS_WEBHOOK_URL (bounded by ALERTS_WEBHOOK_TIMEOUT_SECONDS). Never raises."""
    if not settings.alerts_webhook_url:
        return None
    try:
        report = webhooks.deliver_pending(settings, engine)
    except Exception as exc:  # noqa: BLE001 - delivery must never fail a run that already succeeded
        log.warning("alerts not delivered: %s", _first_line(exc))
        return None
    if report.attempted:
        progress("gold", f"alerts sent to the webhook: {report.delivered} delivered, {report.failed} failed")
    return report
