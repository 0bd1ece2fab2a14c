"""Every gold build in the integration tests is followed by the checks sql/gold/*.yml declare; the
replay comparisons share one generated bronze fixture."""

from tests.gold_checks import gold_checks_after_every_build  # noqa: F401 - an autouse fixture
from tests.replay_compare import replay_bronze  # noqa: F401 - a fixture
