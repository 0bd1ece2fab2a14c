"""Fault suite, HTTP family: a hostile or broken CoinGecko against the real pipeline.

Every case runs on SQLite and PostgreSQL (the ``settings`` fixture):

1. a good run publishes gold;
2. the fault is queued on the fake server and a second run fails: its row in
   ``pipeline_runs`` says 'failed' with the error's one line, the error has the
   expected class and exit code 3, gold (crypto_analytics_mart, market_history)
   is unchanged and readable, and bronze holds what was received (a drifted body
   as it came; nothing over the size cap; nothing for an answer that never completed);
3. with the fault cleared, the next run succeeds.

The CLI is checked as a person meets it for a dropped connection, schema drift and
an oversized body: exit code 3 and one line on stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import pytest
from sqlalchemy import text

from pipeline import bronze
from pipeline.db import make_engine
from pipeline.errors import ResponseTooLarge, SchemaDrift, SourceError
from pipeline.flow import run_pipeline
from tests.conftest import REPO_ROOT, settings_env
from tests.fakes.coingecko import FakeCoinGecko

MIB = 1024 * 1024
TOP_N = 50  # one page of 50: the same paths as 250, a third of the time
CAP = 4 * MIB  # well above the page (~0.3 MB), far below the huge bodies
SECRET = "CG-fault-suite-secret-key"
QUERY = f"vs_currency=usd&order=market_cap_desc&per_page={TOP_N}&page=1"

GOLD_TABLES = {"crypto_analytics_mart": "id", "market_history": "snapshot_at"}


@dataclass
class Case:
    id: str
    inject: Callable  # (fake, other_host) -> None
    error: type  # the exact class raised
    words: list[str]  # in the one-line message
    bronze: str  # "none": no complete answer kept; "body": the bad body kept; "redirect"; "capped"
    overrides: dict = field(default_factory=dict)
    kept: Callable | None = None  # predicate on the kept body (parsed JSON) for bronze == "body"
    probe: bool = False  # a short page: one "markets_probe" asked whether the API lists more


def _fault(kind, **options):
    return lambda fake, other: fake.add_fault(kind, **options)


CASES = [
    # (5) every transport error is retried within the deadline, then one SourceError line
    Case("dropped-mid-body", _fault("drop", times=20), SourceError, ["dropped mid-body", "4 attempts"], "none"),
    Case(
        "dropped-mid-chunk", _fault("drop_chunked", times=20), SourceError, ["dropped mid-body", "4 attempts"], "none"
    ),
    Case("reset-mid-body", _fault("reset", times=20), SourceError, ["dropped mid-body", "4 attempts"], "none"),
    # (4) a wall-clock limit per request and per run
    Case(
        "trickled-body",
        _fault("trickle", interval=0.05, times=20),
        SourceError,
        ["timed out", "0.4s", "4 attempts"],
        "none",
        {"request_timeout_seconds": 0.4},
    ),
    Case(
        "trickled-headers",
        _fault("trickle_headers", interval=0.05, times=20),
        SourceError,
        ["timed out", "0.4s", "4 attempts"],
        "none",
        {"request_timeout_seconds": 0.4},
    ),
    Case(
        "trickle-past-the-run-deadline",
        _fault("trickle", interval=0.05, times=20),
        SourceError,
        ["deadline passed"],
        "none",
        {"request_timeout_seconds": 20, "fetch_deadline_seconds": 1.0},
    ),
    Case(
        "silent-server",
        _fault("hang", hang_seconds=10, times=20),
        SourceError,
        ["timed out", "4 attempts"],
        "none",
        {"request_timeout_seconds": 0.3},
    ),
    # (6) the key never follows a redirect to another host
    Case(
        "redirect-to-another-host",
        lambda fake, other: fake.add_fault("redirect", location=f"{other.base_url}/coins/markets?{QUERY}"),
        SourceError,
        ["another host", "not sent"],
        "redirect",
        {"api_key": SECRET},
    ),
    # (7) a cap on the decoded body
    Case(
        "huge-with-content-length",
        _fault("huge", size=16 * MIB, times=20),
        ResponseTooLarge,
        ["too large", "Content-Length"],
        "capped",
    ),
    Case(
        "huge-without-content-length",
        _fault("huge", size=16 * MIB, chunked=True, times=20),
        ResponseTooLarge,
        ["too large", "decoded body"],
        "capped",
    ),
    Case(
        "gzip-bomb",
        _fault("gzip_bomb", size=64 * MIB, times=20),
        ResponseTooLarge,
        ["too large", "decoded body"],
        "capped",
    ),
    # (2) the response contract: well-formed JSON of the wrong shape
    Case(
        "renamed-id",
        _fault("rename_fields", rename={"id": "coin_id"}),
        SchemaDrift,
        ["id", "coin_id", "renamed"],
        "body",
        kept=lambda body: "coin_id" in body[0] and "id" not in body[0],
    ),
    Case(
        "renamed-price",
        _fault("rename_fields", rename={"current_price": "price_usd"}),
        SchemaDrift,
        ["current_price", "price_usd"],
        "body",
        kept=lambda body: "price_usd" in body[0],
    ),
    Case("empty-list", _fault("empty_list"), SchemaDrift, ["empty"], "body", kept=lambda body: body == []),
    Case(
        "single-record",
        _fault("single_record"),
        SchemaDrift,
        [f"partial response: got 1 of {TOP_N} coins"],
        "body",
        kept=lambda body: len(body) == 1,
        probe=True,
    ),
    Case(
        "one-coin-repeated",
        _fault("repeat_one"),
        SchemaDrift,
        [f"partial response: got 1 of {TOP_N} coins"],
        "body",
        kept=lambda body: len(body) == TOP_N and len({r["id"] for r in body}) == 1,
    ),
    Case(
        "object-instead-of-array",
        _fault("wrong_type"),
        SchemaDrift,
        ["array", "object"],
        "body",
        kept=lambda body: isinstance(body, dict),
    ),
    Case(
        "array-of-strings",
        _fault("array_of_strings"),
        SchemaDrift,
        ["objects", "string"],
        "body",
        kept=lambda body: all(isinstance(r, str) for r in body),
    ),
]


@pytest.fixture
def other_host():
    """Someone else's server: it records every request (and header) it receives."""
    with FakeCoinGecko() as other:
        yield other


def _settings(settings, **overrides):
    return settings.with_overrides(top_n=TOP_N, max_response_bytes=CAP, **overrides)


def read(settings, sql: str, **params) -> pd.DataFrame:
    with make_engine(settings.database_url).connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


def gold(settings) -> dict[str, list[tuple]]:
    """Every gold table the dashboard reads, as comparable rows (reading it proves it is readable)."""
    tables = {}
    for table, order in GOLD_TABLES.items():
        frame = read(settings, f"SELECT * FROM {table} ORDER BY {order}")
        tables[table] = [tuple(None if pd.isna(v) else str(v) for v in row) for row in frame.itertuples(index=False)]
    return tables


def runs(settings) -> pd.DataFrame:
    return read(settings, "SELECT run_id, status, stage, error_message FROM pipeline_runs ORDER BY started_at, run_id")


def _publish_good_run(settings) -> dict:
    first = run_pipeline(settings, source="api")
    assert first.status == "success"
    before = gold(settings)
    assert len(before["crypto_analytics_mart"]) == TOP_N and len(before["market_history"]) == 1
    return before


def _check_bronze(settings, run_id: str, case: Case, other_host) -> None:
    run = bronze.find_run(settings.raw_dir, run_id)
    assert run.manifest["complete"] is False and run.manifest["error"]
    assert run not in bronze.list_runs(settings.raw_dir)  # never replayed
    markets = [e for e in run.manifest["entries"] if e["endpoint"].startswith("markets")]
    files = [p for p in run.folder.iterdir() if p.name != "manifest.json"]
    if case.bronze in ("none", "capped"):
        # No complete answer arrived (cut off, dropped) or it was over the cap: nothing to keep.
        assert markets == []
        assert all(p.stat().st_size <= CAP for p in files)
    elif case.bronze == "redirect":
        assert [(e["status"], e["bytes"]) for e in markets] == [(302, 0)]
        assert other_host.requests == []  # the other host never heard from us
    else:
        pages = [e for e in markets if e["endpoint"] == "markets"]
        assert [(e["status"], e["used"]) for e in pages] == [(200, True)]
        body = json.loads((run.folder / pages[0]["file"]).read_bytes())  # exactly as received
        assert case.kept(body)
        probes = [(e["endpoint"], e["records"]) for e in markets if e not in pages]
        assert probes == ([("markets_probe", 1)] if case.probe else [])  # kept too: it showed the API lists more
    for path in files:
        assert SECRET.encode() not in path.read_bytes()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_http_fault_fails_the_run_and_keeps_gold(settings, fake_coingecko, other_host, case):
    settings = _settings(settings, **case.overrides)
    before = _publish_good_run(settings)

    case.inject(fake_coingecko, other_host)
    with pytest.raises(SourceError) as info:
        run_pipeline(settings, source="api")
    error = info.value
    message = str(error)
    assert type(error) is case.error and error.exit_code == 3
    assert "\n" not in message and "\r" not in message and SECRET not in message
    for word in case.words:
        assert word in message

    log = runs(settings)
    assert list(log.status) == ["success", "failed"]
    assert log.stage.iloc[1] == "fetch" and log.error_message.iloc[1] == message
    assert gold(settings) == before  # unchanged, and readable
    _check_bronze(settings, log.run_id.iloc[1], case, other_host)

    fake_coingecko.clear_faults()
    again = run_pipeline(settings, source="api")
    assert again.status == "success" and again.silver_rows == TOP_N
    assert list(runs(settings).status) == ["success", "failed", "success"]
    history = read(settings, "SELECT snapshot_at FROM market_history")
    assert pd.to_datetime(history.snapshot_at).max() == pd.Timestamp(again.snapshot_at)  # gold moved on


def test_global_of_the_wrong_shape_is_reported_as_unavailable(settings, fake_coingecko):
    """/global drift does not fail the run: dominance falls back to the tracked coins, and the warning says why."""
    settings = _settings(settings)
    fake_coingecko.add_fault("rename_fields", endpoint="global")
    result = run_pipeline(settings, source="api")
    assert result.status == "success" and result.global_basis is False
    warning = " ".join(result.warnings)
    assert "/global unavailable" in warning and "schema drift" in warning and "total_market_cap" in warning
    assert set(read(settings, "SELECT dominance_basis FROM crypto_analytics_mart").dominance_basis) != {"global"}


# ---- the command line ----------------------------------------------------------------------

CLI_CASES = {
    "dropped-mid-body": (_fault("drop", times=20), "dropped mid-body"),
    "renamed-id": (_fault("rename_fields", rename={"id": "coin_id"}), "schema drift"),
    "gzip-bomb": (_fault("gzip_bomb", size=64 * MIB, times=20), "too large"),
}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_exits_3_with_one_line(settings, fake_coingecko, name, tmp_path):
    settings = _settings(settings)
    before = _publish_good_run(settings)
    inject, words = CLI_CASES[name]
    inject(fake_coingecko, None)
    env = settings_env(settings)
    env.update({"PIPELINE_TOP_N": str(TOP_N), "COINGECKO_MAX_RESPONSE_BYTES": str(CAP)})
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and words in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert gold(settings) == before
    assert list(runs(settings).status) == ["success", "failed"]
