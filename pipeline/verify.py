"""Integrity check of bronze: every run's files against its manifest (``python -m pipeline verify``).

For each run folder under the bronze root (a local folder or ``BRONZE_URL``'s object store): the manifest must read and have the
expected shape, every body must exist with its recorded size and sha256, and
(deep, the default) every Parquet copy must match its recorded sha256 — or, for
manifests written before that was recorded, read with pyarrow and hold the
body's record count. A folder without a manifest (a run stopped before
finishing) is listed as incomplete, which is not an error.

Reads files only: no database, no lock, safe while the pipeline runs (a run in
progress has no manifest yet and shows as incomplete).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline import bronze
from pipeline.errors import BronzeError

#: Problems named per damaged run before "and N more".
MAX_PROBLEMS_PER_LINE = 3


@dataclass
class VerifyReport:
    raw_dir: bronze.Root
    deep: bool
    checked: int = 0
    damaged: list[bronze.DamagedRun] = field(default_factory=list)
    incomplete: list[bronze.DamagedRun] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.damaged

    def summary(self) -> str:
        what = "bodies and Parquet copies" if self.deep else "bodies only (--quick)"
        text = f"{self.checked} runs checked, {len(self.damaged)} damaged"
        if self.incomplete:
            text += f", {len(self.incomplete)} incomplete (no manifest: stopped before finishing; not an error)"
        return f"verify: {text}; checked {what} under {bronze.as_store(self.raw_dir).location()}"

    def lines(self) -> list[str]:
        return [d.line() for d in self.damaged] + [d.line() for d in self.incomplete] + [self.summary()]


def _one_line(problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_PROBLEMS_PER_LINE])
    more = len(problems) - MAX_PROBLEMS_PER_LINE
    return shown + (f"; and {more} more" if more > 0 else "")


def verify(raw_dir: bronze.Root, *, deep: bool = True, run_id: str | None = None) -> VerifyReport:
    """Check every bronze run (or only ``run_id``) against its manifest; never raises for damage found.

    Raises BronzeError only when ``run_id`` names no run folder.
    """
    store = bronze.as_store(raw_dir)
    report = VerifyReport(raw_dir=raw_dir, deep=deep)
    runs, problems = bronze.scan_runs(store, include_incomplete=True)
    if run_id is not None:
        runs = [r for r in runs if run_id in (r.run_id, r.folder.name)]
        problems = [p for p in problems if run_id in (p.run_id, p.folder.name)]
        if not runs and not problems:
            raise BronzeError(f"no bronze run {run_id} under {store.location()}")
    for problem in problems:
        (report.incomplete if problem.incomplete else report.damaged).append(problem)
    report.checked = len(runs) + len(report.damaged)
    for run in runs:
        found = bronze.check_run(run, deep=deep)
        if found:
            report.damaged.append(bronze.DamagedRun(run.folder, run.run_id, _one_line(found), store=run.store))
    report.damaged.sort(key=lambda d: str(d.folder))
    return report
