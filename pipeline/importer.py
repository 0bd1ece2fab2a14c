"""``python -m pipeline import PATH...``: saved CoinGecko bodies through bronze → silver → gold.

Takes /coins/markets bodies (a JSON array of coin objects, as the API returns it)
and /global bodies (an object with ``data.total_market_cap``), as files or folders
(a folder is walked for ``*.json``). The kind is decided by the shape, never by
the name. Each markets body becomes one snapshot of source ``import``:

* its time is the data's time (:mod:`pipeline.silver.data_time`: the median
  ``last_updated`` of its records), or ``--at`` for a single body;
* a /global imported together with markets bodies joins the one whose time is
  nearest to its ``updated_at``, within :data:`PAIR_WINDOW`;
* idempotent: a body whose sha256 an earlier import already kept in bronze, or whose
  data time is already an imported snapshot, is skipped (never nudged to a new
  microsecond and loaded twice); a time another run's snapshot holds is nudged by
  1 µs as for every run (``unused_snapshot_time``);
* a file that is not JSON, or neither shape, is reported and the others go on.

It holds the pipeline lock and writes one run-log row like a run, reusing the
flow's helpers; the silver load is batched (bounded memory for thousands of
bodies) and gold is built once at the end.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from pipeline import bronze, logs
from pipeline import snapshots as snapshot_ledger
from pipeline.config import Settings
from pipeline.db import analyze_after_bulk_change, utcnow
from pipeline.errors import ConfigError, PipelineError
from pipeline.flow import Progress, RunResult, _load_silver, _quiet, _record_snapshots, publish_gold
from pipeline.providers.coingecko.client import ApiResponse
from pipeline.run_context import run_context
from pipeline.schema import snapshots as snapshots_table
from pipeline.silver.data_time import BASIS_GIVEN, DataTime, data_time, last_updated_values
from pipeline.silver.load import unused_snapshot_time

log = logs.get_logger(__name__)

SOURCE = "import"
MARKETS = "markets"
GLOBAL = "global"
#: A /global joins the markets body whose data time is nearest its updated_at, if within this.
PAIR_WINDOW = timedelta(hours=12)


@dataclass
class Body:
    """One saved response, classified. Holds no records: bodies are read again when written."""

    path: Path
    kind: str
    sha256: str
    records: int = 0
    time: DataTime | None = None  # markets: the data's time
    updated_at: datetime | None = None  # /global: its own update time
    partner: Body | None = None  # markets: the /global paired with it
    snapshot_at: datetime | None = None

    @property
    def data_time(self) -> DataTime:
        """A markets body's data time and its basis (``classify`` finds one or refuses the body)."""
        if self.time is None or self.time.at is None:
            raise ValueError(f"{self.path} is a {self.kind} body without a data time")
        return self.time

    @property
    def at(self) -> datetime:
        """A markets body's data time."""
        at = self.data_time.at
        assert at is not None  # data_time checked it
        return at


@dataclass
class ImportResult:
    run: RunResult
    imported: list[Body] = field(default_factory=list)
    #: (file, why it was not imported again)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: (file, what is wrong with it)
    problems: list[tuple[str, str]] = field(default_factory=list)
    #: (file, why the plausibility gate held its snapshot out of gold)
    held: list[tuple[str, str]] = field(default_factory=list)

    @property
    def span(self) -> tuple[datetime, datetime] | None:
        times = [b.snapshot_at for b in self.imported if b.snapshot_at is not None]
        return (min(times), max(times)) if times else None

    def lines(self) -> list[str]:
        out = [f"problem: {path}: {why}" for path, why in self.problems]
        out += [f"skipped: {path}: {why}" for path, why in self.skipped]
        out += [f"held: {path}: {why}" for path, why in self.held]
        span = self.span
        summary = (
            f"import {self.run.run_id} {self.run.status}: {len(self.imported)} snapshot(s)"
            + (f" from {span[0]:%Y-%m-%d %H:%M:%S} to {span[1]:%Y-%m-%d %H:%M:%S} UTC" if span else "")
            + f", {self.run.silver_rows} silver rows, {self.run.quarantined} quarantined, "
            f"{sum(1 for b in self.imported if b.partner)} with /global, {len(self.held)} held, "
            f"{len(self.skipped)} skipped, {len(self.problems)} problem file(s)"
        )
        return out + [summary]


def parse_at(text: str) -> datetime:
    """``--at``: an ISO time; with an offset it is converted to UTC, without one it is UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--at must be an ISO time such as 2025-05-06T08:55:00Z, got {text!r}") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def find_files(paths: list[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files to import: each file as given, and every ``*.json`` under each folder (sorted)."""
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*.json")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found = [path]
        else:
            problems.append((str(path), "no such file or folder"))
            continue
        for item in found:
            key = item.resolve()
            if key not in seen:
                seen.add(key)
                files.append(item)
    return files, problems


def _global_time(payload: dict[str, Any]) -> datetime | None:
    value = payload["data"].get("updated_at")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 631152000 <= value < 4102444800:
        return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
    return None


def classify(path: Path, data: bytes, *, now: datetime, at: datetime | None = None) -> Body:
    """What a saved body is, and its time; PipelineError (one line) when it cannot be imported."""
    sha = hashlib.sha256(data).hexdigest()
    try:
        payload = bronze.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PipelineError(f"not valid JSON ({str(exc).splitlines()[0][:80]})") from None
    if isinstance(payload, list):
        coins = sum(1 for r in payload if isinstance(r, dict) and "id" in r)
        if not payload:
            raise PipelineError("an empty array: no coins")
        if coins * 2 < len(payload):
            raise PipelineError(f"an array, but only {coins} of its {len(payload)} elements are coin objects")
        if at is not None:
            found = DataTime(at, BASIS_GIVEN)
        else:
            found = data_time(last_updated_values(payload), None, not_after=now)
            if found.at is None:
                raise PipelineError(
                    f"no usable last_updated values ({found.used} of {len(payload)}) to tell "
                    "the data's time; give it with --at"
                )
        return Body(path, MARKETS, sha, records=len(payload), time=found)
    if (
        isinstance(payload, dict)
        and isinstance(payload.get("data"), dict)
        and isinstance(payload["data"].get("total_market_cap"), dict)
    ):
        return Body(path, GLOBAL, sha, records=1, updated_at=_global_time(payload))
    kind = "an object" if isinstance(payload, dict) else f"a JSON {type(payload).__name__}"
    raise PipelineError(f"{kind}, neither a /coins/markets array nor a /global body (data.total_market_cap)")


def pair_globals(markets: list[Body], globals_: list[Body], *, at_given: bool) -> list[tuple[str, str]]:
    """Join each /global to the markets body of the same time (nearest, within PAIR_WINDOW; one
    /global per body). Returns the /global files left alone, with why."""
    left: list[tuple[str, str]] = []
    if at_given:  # one markets body, time given: a /global given with it is its /global
        if globals_:
            markets[0].partner = globals_[0]
            left += [(str(g.path), "more than one /global for one markets body") for g in globals_[1:]]
        return left
    options = []
    for g in globals_:
        if g.updated_at is None:
            left.append((str(g.path), "/global has no updated_at: its time (and markets body) is unknown"))
            continue
        for number, m in enumerate(markets):
            distance = abs(m.at - g.updated_at)
            if distance <= PAIR_WINDOW:
                options.append((distance, str(g.path), number, g))
    taken_bodies: set[int] = set()
    paired: set[int] = set()
    for _distance, _name, number, g in sorted(options, key=lambda o: (o[0], o[1], o[2])):
        if number in taken_bodies or id(g) in paired:
            continue
        markets[number].partner = g
        taken_bodies.add(number)
        paired.add(id(g))
    for g in globals_:
        if g.updated_at is not None and id(g) not in paired:
            left.append(
                (
                    str(g.path),
                    f"/global of {g.updated_at:%Y-%m-%d %H:%M:%S} UTC has no markets body "
                    f"imported with it within {PAIR_WINDOW.total_seconds() / 3600:g} h",
                )
            )
    return left


def _imported_before(settings: Settings, engine: Engine) -> tuple[dict[str, datetime], set[datetime]]:
    """sha256 of every markets body earlier imports kept in bronze (-> its snapshot time), and the
    snapshot times of source import in the ledger."""
    runs, _damaged = bronze.scan_runs(settings.bronze)
    bodies = {}
    for run in runs:
        if run.source == SOURCE:
            for entry in run.used_entries(MARKETS):
                bodies[entry["sha256"]] = run.snapshot_at
    with engine.connect() as conn:
        times = set(
            conn.execute(select(snapshots_table.c.snapshot_at).where(snapshots_table.c.source == SOURCE)).scalars()
        )
    return bodies, times


def _response(endpoint: str, path: str, body: bytes, vs_currency: str, origin: Path) -> ApiResponse:
    params = {"vs_currency": vs_currency} if endpoint == MARKETS else {}
    return ApiResponse(
        endpoint=endpoint,
        path=path,
        params={**params, "imported_from": str(origin)},
        status=200,
        body=body,
        fetched_at=None,
        attempt=1,
        page=1 if endpoint == MARKETS else None,
    )


def _write_bronze(
    settings: Settings, bronze_id: str, body: Body, started: datetime, vs_currency: str
) -> bronze.BronzeRun:
    writer = bronze.BronzeWriter(
        settings.bronze, bronze_id, source=SOURCE, started_at=started, vs_currency=vs_currency, top_n=None
    )
    origins = [str(body.path)]
    for part, endpoint, api_path in ((body, MARKETS, "/coins/markets"), (body.partner, GLOBAL, "/global")):
        if part is None:
            continue
        data = part.path.read_bytes()
        if hashlib.sha256(data).hexdigest() != part.sha256:
            raise PipelineError(f"{part.path} changed while it was being imported")
        writer.add(_response(endpoint, api_path, data, vs_currency, part.path))
        if part is not body:
            origins.append(str(part.path))
    writer.finish(
        snapshot_at=body.snapshot_at,
        complete=True,
        extra={
            "fetched_at": None,
            "data_time_basis": body.data_time.basis,
            "imported_from": origins,
        },
    )
    return writer.read_back()


def import_bodies(
    settings: Settings,
    paths: list[str | Path],
    *,
    at: datetime | None = None,
    vs_currency: str = "usd",
    trigger: str = "cli",
    progress: Progress = _quiet,
    engine: Engine | None = None,
    batch_records: int = 10_000,
) -> ImportResult:
    """Import saved /coins/markets and /global bodies as snapshots of source ``import``.

    Raises ConfigError for unusable arguments (``--at`` with several markets bodies),
    RunLocked when another run holds the lock, PipelineError when no file could be used.
    """
    files, problems = find_files(paths)
    vs_currency = (vs_currency or "usd").strip().lower()
    with run_context(settings, trigger=trigger, origin=SOURCE, engine=engine) as ctx:
        engine, run_id = ctx.engine, ctx.run_id
        result = ImportResult(RunResult(run_id=run_id, source=SOURCE), problems=problems)
        run = ctx.track(result.run)
        ctx.stage("fetch")
        now = utcnow()
        markets: list[Body] = []
        globals_: list[Body] = []
        for number, path in enumerate(files, start=1):
            try:
                size = path.stat().st_size
                if size > settings.max_response_bytes:
                    raise PipelineError(
                        f"{size:,} bytes, more than COINGECKO_MAX_RESPONSE_BYTES ({settings.max_response_bytes:,})"
                    )
                body = classify(path, path.read_bytes(), now=now, at=at)
            except PipelineError as exc:
                result.problems.append((str(path), str(exc)))
                continue
            except OSError as exc:
                result.problems.append((str(path), f"unreadable ({exc.strerror or exc})"))
                continue
            (markets if body.kind == MARKETS else globals_).append(body)
            if number % 200 == 0:
                progress("fetch", f"read {number} of {len(files)} files")
        if at is not None and len(markets) > 1:
            raise ConfigError(
                f"--at gives one time, but {len(markets)} markets bodies were found: "
                "import them without --at (each takes its data's time) or one at a time"
            )
        markets.sort(key=lambda b: (b.at, str(b.path)))
        result.skipped += pair_globals(markets, globals_, at_given=at is not None)
        progress("fetch", f"{len(markets)} markets bodies and {len(globals_)} /global bodies in {len(files)} file(s)")

        known_bodies, known_times = _imported_before(settings, engine)
        fresh: list[Body] = []
        seen_bodies: dict[str, Body] = {}
        seen_times: dict[datetime, Body] = {}
        for body in markets:
            if body.sha256 in known_bodies:
                result.skipped.append(
                    (
                        str(body.path),
                        f"already imported (same body), snapshot {known_bodies[body.sha256]:%Y-%m-%d %H:%M:%S.%f}",
                    )
                )
            elif body.at in known_times:
                result.skipped.append(
                    (
                        str(body.path),
                        "already imported (an imported snapshot has the same "
                        f"data time {body.at:%Y-%m-%d %H:%M:%S.%f})",
                    )
                )
            elif body.sha256 in seen_bodies:
                result.skipped.append((str(body.path), f"the same body as {seen_bodies[body.sha256].path}"))
            elif body.at in seen_times:
                result.skipped.append((str(body.path), f"the same data time as {seen_times[body.at].path}"))
            else:
                seen_bodies[body.sha256] = body
                seen_times[body.at] = body
                fresh.append(body)
                continue
            if body.partner is not None:
                result.skipped.append((str(body.partner.path), "its markets body was already imported"))
                body.partner = None

        if not fresh:
            if not markets and not result.skipped:
                raise PipelineError(
                    "nothing to import: no /coins/markets body among "
                    f"{len(files)} file(s)" + (f" ({len(result.problems)} problem(s))" if result.problems else "")
                )
            run.warnings = [f"{p}: {w}" for p, w in result.problems + result.skipped][:50]
            ctx.succeed()
            return result

        ctx.stage("bronze")
        started = utcnow()
        runs: list[bronze.BronzeRun] = []
        taken: set[datetime] = set()
        for number, body in enumerate(fresh, start=1):
            when = unused_snapshot_time(engine, body.at)
            assert when is not None  # a time was asked for, so one is given
            while when in taken:
                when += timedelta(microseconds=1)
            taken.add(when)
            body.snapshot_at = when
            runs.append(_write_bronze(settings, f"{run_id}-i{number:05d}", body, started, vs_currency))
            result.imported.append(body)
            run.bronze_records += body.records
            if number % 100 == 0 or number == len(fresh):
                progress("bronze", f"kept {number} of {len(fresh)} bodies")
        run.bronze_runs = [r.run_id for r in runs]

        ctx.stage("silver")
        _load_silver(
            engine,
            runs,
            run,
            progress,
            workers=settings.replay_workers,
            batch_records=batch_records,
            stale_after=settings.stale_record_after,
            global_max_age_minutes=settings.global_max_age_minutes,
        )
        # The plausibility gate, as for every run: a body that is not what it claims stays in
        # silver, held out of gold; the others are published.
        held = snapshot_ledger.gate(
            engine,
            [
                {
                    "snapshot_at": r.snapshot_at,
                    "run_id": r.run_id,
                    "vs_currency": r.vs_currency,
                    "requested": r.markets_record_count,
                }
                for r in runs
            ],
            vs_currency=vs_currency,
        )
        _record_snapshots(engine, runs, requested=None, held=held)
        for body in result.imported:
            if body.snapshot_at in held:
                result.held.append((str(body.path), "; ".join(held[body.snapshot_at])))
        run.snapshot_at = max(r.snapshot_at for r in runs)
        run.warnings = [f"{p}: held: {w}" for p, w in result.held] + [
            f"{p}: {w}" for p, w in result.problems + result.skipped
        ]
        run.warnings = run.warnings[:50]
        publish_gold(ctx, run, progress, since=min(r.snapshot_at for r in runs))
        analyze_after_bulk_change(engine)  # many snapshots at once: plans for the next runs
        return result
