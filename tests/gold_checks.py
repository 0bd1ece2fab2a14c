"""Run every declared gold check after every gold build a test makes.

``gold_checks_after_every_build`` wraps ``pipeline.gold.rebuild`` (the step every
``build_gold`` call runs inside its transaction): after the tables are rebuilt, and before
they are committed, every check declared in ``sql/gold/*.yml`` runs on the same connection.
The results are kept per build, and the test fails at teardown, naming each failing check,
when one did not pass. A conftest switches it on for its folder by importing it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline import gold
from pipeline.gold_catalog import CheckResult, failures, run_checks


@pytest.fixture(autouse=True)
def gold_checks_after_every_build(monkeypatch) -> Iterator[list[list[CheckResult]]]:
    builds: list[list[CheckResult]] = []
    real_rebuild = gold.rebuild

    def rebuild_then_check(conn, models, since):
        counts = real_rebuild(conn, models, since)
        builds.append(run_checks(conn, models))
        return counts

    monkeypatch.setattr(gold, "rebuild", rebuild_then_check)
    yield builds
    failed = [message for results in builds for message in failures(results)]
    if failed:
        pytest.fail("declared gold checks failed after a gold build:\n" + "\n".join(failed), pytrace=False)
