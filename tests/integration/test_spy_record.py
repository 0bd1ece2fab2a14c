"""benchmarks.spy record: a real py-spy run of a real Python program, time spent waiting included."""

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import time

def busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))

def waiting(seconds):
    time.sleep(seconds)

def both():
    busy(1.0)
    waiting(1.0)

both()
"""


def test_record_samples_a_program_and_ranks_its_functions_waits_included(tmp_path):
    raw = tmp_path / "spy.raw"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.spy", "record", "--out", str(raw), "--root", "both", "--", "-c", PROGRAM],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert raw.stat().st_size > 0
    shares = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].endswith("%") and parts[2] in ("busy", "waiting", "both"):
            shares[parts[2]] = float(parts[0].rstrip("%"))
    assert shares["both"] == 100.0
    # each took about half the time: the sleep is counted (--idle), not only the busy loop
    assert 25.0 <= shares["busy"] <= 75.0, done.stdout
    assert 25.0 <= shares["waiting"] <= 75.0, done.stdout
