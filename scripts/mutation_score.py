"""Print the mutation score of each mutated module from mutmut's results (``make mutation``).

mutmut 3 keeps one ``mutants/<module path>.meta`` JSON file per mutated module, with every
mutant's exit code. Score = killed / (killed + survived + no tests + timeout-free others), i.e.
every mutant counts except those mutmut skipped or never checked; a timeout counts as killed
(the mutant made the tests hang). Exit status 1 when a module is below ``--min`` percent, 2 when
there are no results at all.

    python scripts/mutation_score.py [--min 90] [--survivors] [module.py ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

MUTANTS = Path("mutants")

#: mutmut's exit codes (mutmut/stats.py), grouped by what they mean for the score.
KILLED = {1, 3, 36, 24, -24, 152, 255, 37}  # test failure, pytest internal error, timeouts, type check
SURVIVED = {0}
NO_TESTS = {5, 33}
NOT_COUNTED = {None, 2, 34}  # not checked, interrupted, skipped


def module_counts(meta: Path) -> tuple[Counter, list[str]]:
    """(counts by outcome, names of the surviving mutants) of one module."""
    codes = json.loads(meta.read_text(encoding="utf-8")).get("exit_code_by_key", {})
    counts: Counter = Counter()
    survivors = []
    for name, code in codes.items():
        if code in KILLED:
            counts["killed"] += 1
        elif code in SURVIVED:
            counts["survived"] += 1
            survivors.append(name)
        elif code in NO_TESTS:
            counts["no tests"] += 1
            survivors.append(name)
        elif code in NOT_COUNTED:
            counts["not checked"] += 1
        else:
            counts["suspicious"] += 1  # a crash of the test run: neither killed nor survived
            survivors.append(name)
    return counts, sorted(survivors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module paths (default: every module with results)")
    parser.add_argument("--min", type=float, default=0.0, help="fail below this score (percent)")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants")
    args = parser.parse_args(argv)

    metas = [MUTANTS / f"{m}.meta" for m in args.modules] if args.modules else sorted(MUTANTS.rglob("*.py.meta"))
    metas = [m for m in metas if m.exists()]
    if not metas:
        print("no mutation results under mutants/: run `make mutation` first", file=sys.stderr)
        return 2
    failing = []
    print(f"{'module':<34} {'killed':>7} {'total':>6} {'score':>7}  not killed")
    for meta in metas:
        module = str(meta.relative_to(MUTANTS)).removesuffix(".meta")
        counts, survivors = module_counts(meta)
        total = counts["killed"] + counts["survived"] + counts["no tests"] + counts["suspicious"]
        if not total:
            print(f"{module:<34} {'-':>7} {'-':>6} {'-':>7}  (not run: {counts['not checked']} mutants)")
            continue
        score = 100.0 * counts["killed"] / total
        detail = ", ".join(f"{counts[k]} {k}" for k in ("survived", "no tests", "suspicious") if counts[k])
        if counts["not checked"]:
            detail += f" ({counts['not checked']} not checked)"
        print(f"{module:<34} {counts['killed']:>7} {total:>6} {score:>6.1f}%  {detail}")
        if args.survivors:
            for name in survivors:
                print(f"    {name}")
        if score < args.min:
            failing.append(module)
    if failing:
        print(f"below {args.min:g} %: {', '.join(failing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
