"""Every gold build in the integration tests is followed by the checks sql/gold/*.yml declare."""

from tests.gold_checks import gold_checks_after_every_build  # noqa: F401 - an autouse fixture
