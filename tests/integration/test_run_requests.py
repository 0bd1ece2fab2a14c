"""The refresh button's queue: requests, atomic claims, heartbeats, and a real sidecar serving a request."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import text, update

from pipeline import run_requests as requests
from pipeline.db import make_engine, prepare_database, utcnow
from pipeline.runs import get_run
from pipeline.schema import sidecar_heartbeats
from tests.conftest import REPO_ROOT, settings_env
from tests.helpers import OutputLines, wait_for


@pytest.fixture
def engine(settings):
    return prepare_database(settings)


def test_a_second_request_while_one_is_open_joins_it(engine):
    first, created = requests.request_run(engine, source="api")
    again, created_again = requests.request_run(engine, source="sample")
    assert created and not created_again
    assert again.request_id == first.request_id and again.source == "api"
    assert (first.state, first.requested_by) == ("pending", "dashboard")

    assert requests.claim(engine, first.request_id, "test server")
    assert requests.request_run(engine)[0].request_id == first.request_id  # claimed is still open
    assert requests.finish(engine, first.request_id, requests.Outcome("success", run_id="r1"))
    done = requests.get_request(engine, first.request_id)
    assert (done.state, done.outcome, done.run_id, done.is_open) == ("done", "success", "r1", False)
    assert done.finished_at is not None

    after, created = requests.request_run(engine)
    assert created and after.request_id != first.request_id


def test_clicks_racing_in_many_threads_leave_one_request(engine):
    start = threading.Barrier(8)
    seen: list[tuple[str, bool]] = []

    def click() -> None:
        start.wait()
        request, created = requests.request_run(engine)
        seen.append((request.request_id, created))

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({request_id for request_id, _ in seen}) == 1
    assert [created for _, created in seen].count(True) == 1
    assert len(requests.recent_requests(engine)) == 1


def test_concurrent_claims_have_exactly_one_winner(engine):
    request, _ = requests.request_run(engine)
    start = threading.Barrier(8)
    wins: list[str] = []

    def claimer(name: str) -> None:
        start.wait()
        if requests.claim(engine, request.request_id, name):
            wins.append(name)

    threads = [threading.Thread(target=claimer, args=(f"server {i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1
    claimed = requests.get_request(engine, request.request_id)
    assert (claimed.state, claimed.claimed_by) == ("claimed", wins[0])
    assert not requests.claim(engine, request.request_id, "late server")
    assert requests.claim_next(engine, "late server") is None


def test_a_claim_whose_server_stopped_beating_is_closed_and_frees_the_slot(engine):
    request, _ = requests.request_run(engine)
    with requests.Heartbeat(engine, requests.ROLE_DASHBOARD, 5.0) as heartbeat:
        assert requests.claim(engine, request.request_id, heartbeat.name)
        assert requests.reap_orphans(engine, 5.0) == []  # its server beats: left alone
    # The server is gone (its row removed, or only stale): the claim is an orphan.
    assert requests.reap_orphans(engine, 5.0) == [request.request_id]
    reaped = requests.get_request(engine, request.request_id)
    assert (reaped.state, reaped.outcome) == ("failed", "failed")
    assert "stopped while serving it" in reaped.message
    assert requests.request_run(engine)[1], "a new click makes a new request"


def test_heartbeats_are_fresh_for_three_intervals(engine):
    assert not requests.sidecar_alive(engine, 5.0)
    requests.beat(engine, "scheduler pid 1 on elsewhere", requests.ROLE_SIDECAR)
    requests.beat(engine, "dashboard pid 2 on elsewhere", requests.ROLE_DASHBOARD)
    assert requests.sidecar_alive(engine, 5.0)
    assert requests.fresh_heartbeats(engine, 5.0, requests.ROLE_SIDECAR) == ["scheduler pid 1 on elsewhere"]
    with engine.begin() as conn:
        conn.execute(update(sidecar_heartbeats).values(beat_at=utcnow() - timedelta(seconds=16)))
    assert not requests.sidecar_alive(engine, 5.0)
    assert requests.is_fresh(utcnow() - timedelta(seconds=14), 5.0)
    assert not requests.is_fresh(utcnow() - timedelta(seconds=16), 5.0)


def test_the_dashboard_serves_a_pending_request_itself_only_when_no_sidecar_will(engine):
    request, _ = requests.request_run(engine)
    assert requests.serve_here(request, sidecar_is_alive=False, heartbeat_seconds=5.0)
    assert not requests.serve_here(request, sidecar_is_alive=True, heartbeat_seconds=5.0)
    # a live sidecar that leaves it pending as long as a dead one would be noticed (busy with a long run)
    later = request.requested_at + timedelta(seconds=16)
    assert requests.serve_here(request, sidecar_is_alive=True, heartbeat_seconds=5.0, now=later)
    requests.claim(engine, request.request_id, "someone")
    claimed = requests.get_request(engine, request.request_id)
    assert not requests.serve_here(claimed, sidecar_is_alive=False, heartbeat_seconds=5.0)


def test_serving_a_request_runs_the_button_run_and_records_it(settings, engine, fake_coingecko):
    request, _ = requests.request_run(engine)
    claimed = requests.claim_next(engine, "test server")
    assert claimed is not None and claimed.request_id == request.request_id
    lines: list[tuple[str, str]] = []
    outcome = requests.serve(settings, engine, claimed, progress=lambda stage, message: lines.append((stage, message)))
    assert outcome.outcome == "success" and outcome.used_source == "api"
    done = requests.get_request(engine, request.request_id)
    assert (done.state, done.run_id) == ("done", outcome.run_id)
    run = get_run(engine, outcome.run_id)
    assert (run["trigger"], run["source"], run["status"]) == ("button", "api", "success")
    assert [stage for stage, _ in lines][-1] == "gold"


def test_a_request_meeting_a_running_run_is_superseded_by_it(settings, engine):
    from pipeline.runs import RunLease

    request, _ = requests.request_run(engine)
    requests.claim(engine, request.request_id, "test server")
    with RunLease(engine, "20991231T000000Z-other0", ttl_seconds=60):
        outcome = requests.serve(settings, engine, requests.get_request(engine, request.request_id))
    assert (outcome.outcome, outcome.run_id) == ("locked", "20991231T000000Z-other0")
    superseded = requests.get_request(engine, request.request_id)
    assert (superseded.state, superseded.run_id) == ("superseded", "20991231T000000Z-other0")


@pytest.mark.slow
def test_a_running_sidecar_claims_and_runs_a_request_within_two_seconds(settings, fake_coingecko):
    env = settings_env(settings)
    env["PIPELINE_SIDECAR_HEARTBEAT_SECONDS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "schedule", "--interval", "10"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = OutputLines(proc.stdout)
    engine = make_engine(settings.database_url)

    def scheduled_run_done() -> bool:
        try:
            with engine.connect() as conn:
                return bool(
                    conn.execute(
                        text("SELECT COUNT(*) FROM pipeline_runs WHERE trigger = 'schedule' AND status <> 'running'")
                    ).scalar()
                )
        except Exception:  # tables not created yet
            return False

    try:
        wait_for(scheduled_run_done, timeout=60, what="the sidecar's first scheduled run")
        assert requests.sidecar_alive(engine, 1.0)
        calls_before = fake_coingecko.calls_to("markets")

        request, created = requests.request_run(engine)
        assert created
        claimed = wait_for(
            lambda: (r := requests.get_request(engine, request.request_id)) and r.state != "pending" and r,
            timeout=5,
            interval=0.05,
            what="the sidecar to claim the request",
        )
        assert (claimed.claimed_at - claimed.requested_at).total_seconds() < 2.0
        assert claimed.claimed_by.startswith("scheduler pid ")
        done = wait_for(
            lambda: (r := requests.get_request(engine, request.request_id)) and not r.is_open and r,
            timeout=30,
            what="the request to finish",
        )
        assert (done.state, done.outcome) == ("done", "success")
        run = get_run(engine, done.run_id)
        assert (run["trigger"], run["source"], run["status"]) == ("button", "api", "success")
        assert run["pid"] == proc.pid
        assert fake_coingecko.calls_to("markets") == calls_before + 1
        # The request row says 'done' before the sidecar logs it: wait for the line itself.
        lines.wait_for(f"refresh request {request.request_id} done", timeout=10)

        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        output = lines.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert f"refresh request {request.request_id} done" in output
    assert not requests.sidecar_alive(engine, 1.0), "a clean stop removes the heartbeat"


@pytest.mark.slow
def test_sigterm_while_the_sidecar_serves_a_request_closes_it_failed_and_frees_the_slot(settings, fake_coingecko):
    env = settings_env(settings)
    env.update({"PIPELINE_SIDECAR_HEARTBEAT_SECONDS": "1", "COINGECKO_TIMEOUT_SECONDS": "1"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "schedule", "--interval", "10"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    engine = make_engine(settings.database_url)
    try:
        wait_for(lambda: fake_coingecko.calls_to("markets") >= 1, timeout=60, what="the first scheduled run")
        wait_for(lambda: requests.sidecar_alive(engine, 1.0), timeout=30, what="the heartbeat")
        fake_coingecko.add_fault("hang", hang_seconds=1.5, times=20)
        request, _ = requests.request_run(engine)
        wait_for(
            lambda: (r := requests.get_request(engine, request.request_id)) and r.state == "claimed",
            timeout=30,
            interval=0.05,
            what="the sidecar to claim the request",
        )
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    closed = requests.get_request(engine, request.request_id)
    assert (closed.state, closed.outcome) == ("failed", "failed"), output
    assert requests.open_request(engine) is None
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM pipeline_runs WHERE status = 'running'")).scalar() == 0
        assert conn.execute(text("SELECT COUNT(*) FROM pipeline_lock")).scalar() == 0
