"""benchmarks.spy: py-spy's raw stacks counted per function (the profile a missed target is explained by)."""

from benchmarks.spy import parse, summary

RAW = [
    # two processes; the resource tracker's command line holds a ';' of its own
    'process 10:"python -m benchmarks.bench";<module> (runpy.py:1);replay (pipeline/flow.py:500);'
    "load (pipeline/silver/load.py:10);wait (psycopg/connection.py:90) 30",
    'process 10:"python -m benchmarks.bench";<module> (runpy.py:1);replay (pipeline/flow.py:510);'
    "build_gold (pipeline/gold.py:70) 10",
    'process 11:"python -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=1)";'
    "main (spawn.py:1);prepare_batch (pipeline/silver/batches.py:100);"
    "transform (pipeline/silver/transform.py:5);transform (pipeline/silver/transform.py:9) 40",
    'process 12:"";main (spawn.py:1);idle (threading.py:1) 20',
    "not a stack line",
]


def test_samples_are_counted_per_function_not_per_line():
    profile = parse(RAW)
    assert profile.samples == 100
    assert profile.inclusive["replay (pipeline/flow.py)"] == 40  # two lines of one function
    assert profile.own["wait (psycopg/connection.py)"] == 30


def test_a_recursive_function_counts_once_per_sample():
    profile = parse(RAW)
    assert profile.inclusive["transform (pipeline/silver/transform.py)"] == 40
    assert profile.own["transform (pipeline/silver/transform.py)"] == 40


def test_processes_are_told_apart_even_when_their_command_line_holds_a_semicolon():
    profile = parse(RAW)
    assert profile.processes["python -m benchmarks.bench"] == 40
    assert profile.processes["python -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=1)"] == 40
    assert profile.processes["pid 12"] == 20  # py-spy could not read its command line
    assert not any("spawn_main(tracker_fd=1)" in name for name in profile.inclusive)


def test_root_keeps_only_the_stacks_through_it_and_shares_are_of_those():
    profile = parse(RAW, root="replay")
    assert profile.samples == 40
    assert "<module> (runpy.py)" not in profile.inclusive  # frames above the root are cut
    text = summary(profile, rate=100)
    assert "40 samples at 100 Hz (~0.4 s" in text
    assert "100.0%   0.0%  replay (pipeline/flow.py)" in text
    assert " 75.0%  75.0%  wait (psycopg/connection.py)" in text


def test_a_root_no_stack_goes_through_says_so():
    assert "no samples (wrong --root?)" in summary(parse(RAW, root="nothing_called_this"))
