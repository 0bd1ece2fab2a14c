"""Where the time goes, by py-spy: sample a benchmark command, then rank its functions by wall time.

A missed speed target is explained by a profile, not a guess (issue 11). cProfile (``--profile-dir``)
slows pure-Python code several times and sees one process; py-spy samples from outside, so the
numbers are the run's own, worker processes included (``--subprocesses``), and time spent waiting
on the database server shows as the call that waited (``--idle``).

    python -m benchmarks.spy record --out spy.raw --root process_snapshot -- -m benchmarks.whole_market
    python -m benchmarks.spy summary spy.raw --root replay --top 30

``record`` runs ``python <args>`` under py-spy (a dev dependency), keeps the raw stacks and prints the
summary. In the summary a function's *inclusive* share counts every sample it is on the stack for
(once, however deep it recurses); *self* counts the samples it is the innermost frame of. Shares are of
the samples under ``--root`` (every sample when not given), summed over processes: with a worker
process beside the main one, the total is more than the wall time.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

#: py-spy's default sampling rate; enough for runs of a few seconds, small enough not to slow them.
DEFAULT_RATE = 100
_LINE_NUMBER = re.compile(r":\d+\)$")
_PROCESS = re.compile(r'^process (\d+):"(.*?)";')  # the command line may itself hold ';'


@dataclass
class Profile:
    """Sample counts per function from py-spy's raw (collapsed-stack) output."""

    samples: int = 0
    inclusive: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)
    processes: Counter[str] = field(default_factory=Counter)


def _frame_name(frame: str) -> str:
    """``func (pkg/module.py:12)`` -> ``func (pkg/module.py)``: one row per function, not per line."""
    return _LINE_NUMBER.sub(")", frame.strip())


def parse(lines: list[str], root: str | None = None) -> Profile:
    """Count the stacks of py-spy's raw output (``frame;frame;... count`` per line); with ``root``, only
    the stacks through a frame whose function is named ``root``, counted from that frame down."""
    profile = Profile()
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        process = _PROCESS.match(stack)
        process_name = (process.group(2) or f"pid {process.group(1)}") if process else "(one process)"
        frames = stack[process.end() :].split(";") if process else stack.split(";")
        names = [_frame_name(f) for f in frames]
        if root is not None:
            starts = [i for i, name in enumerate(names) if name.split(" (", 1)[0] == root]
            if not starts:
                continue
            names = names[starts[0] :]
        if not names:
            continue
        profile.samples += count
        profile.processes[process_name] += count
        for name in set(names):
            profile.inclusive[name] += count
        profile.own[names[-1]] += count
    return profile


def summary(profile: Profile, *, rate: int = DEFAULT_RATE, top: int = 40, title: str = "") -> str:
    """The profile as text: processes, then the ``top`` functions by inclusive share, with their self share."""
    if not profile.samples:
        return f"py-spy profile{': ' + title if title else ''}: no samples (wrong --root?)"
    total = profile.samples
    out = [
        f"py-spy profile{': ' + title if title else ''}: {total:,} samples at {rate} Hz "
        f"(~{total / rate:.1f} s summed over processes)"
    ]
    for name, count in profile.processes.most_common():
        out.append(f"  process {count / total:6.1%}  {name[:110]}")
    out.append(f"  {'inclusive':>9} {'self':>6}  function (file)")
    for name, count in profile.inclusive.most_common(top):
        out.append(f"  {count / total:9.1%} {profile.own[name] / total:6.1%}  {name[:140]}")
    return "\n".join(out)


def py_spy_command(output: Path, command: list[str], *, rate: int = DEFAULT_RATE) -> list[str]:
    """``command`` under ``py-spy record``: raw stacks of it and its subprocesses, idle waits included."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return [
        spy,
        "record",
        "--subprocesses",
        "--idle",
        "--nolineno",
        "--nonblocking",
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(output),
        "--",
        *command,
    ]


def summarise_file(path: Path, *, root: str | None = None, rate: int = DEFAULT_RATE, top: int = 40) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    return summary(parse(lines, root), rate=rate, top=top, title=f"{path.name}" + (f", under {root}" if root else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    record = sub.add_parser("record", help="run `python ARGS` under py-spy, keep the raw stacks, print the summary")
    record.add_argument("--out", type=Path, required=True, help="raw stacks file to write")
    record.add_argument("args", nargs=argparse.REMAINDER, help="-- then the arguments of python (e.g. -m module)")
    show = sub.add_parser("summary", help="print the summary of a raw stacks file")
    show.add_argument("raw", type=Path)
    for each in (record, show):
        each.add_argument("--root", default=None, help="only stacks through this function, shares of them")
        each.add_argument("--top", type=int, default=40)
        each.add_argument("--rate", type=int, default=DEFAULT_RATE, help="samples per second")
    args = parser.parse_args(argv)
    if args.action == "record":
        python_args = args.args[1:] if args.args[:1] == ["--"] else args.args
        if not python_args:
            parser.error("record needs the python arguments after --")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        code = subprocess.call(py_spy_command(args.out, [sys.executable, *python_args], rate=args.rate))
        if code != 0 or not args.out.exists():
            print(f"py-spy record failed (exit code {code})", file=sys.stderr)
            return code or 1
        print(summarise_file(args.out, root=args.root, rate=args.rate, top=args.top))
        return 0
    print(summarise_file(args.raw, root=args.root, rate=args.rate, top=args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
