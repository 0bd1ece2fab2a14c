"""The one age formatter (``pipeline.status.format_age``): the CLI's compact form and the dashboard's."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.status import format_age


@pytest.mark.parametrize(
    "seconds, spelled, compact",
    [
        (-5, "0 s", "0s"),  # a clock a little ahead reads as now
        (0, "0 s", "0s"),
        (119, "119 s", "119s"),
        (120, "2 min", "2m"),  # from 120 s on: minutes
        (7199, "119 min", "119m"),
        (7200, "2 h", "2h"),  # from 2 h on: hours
        (172799, "47 h", "47h"),
        (172800, "2 days", "2d"),  # from 2 days on: days
        (1502 * 86400, "1,502 days", "1502d"),
    ],
)
def test_format_age_at_its_boundaries(seconds, spelled, compact):
    assert format_age(timedelta(seconds=seconds)) == spelled
    assert format_age(timedelta(seconds=seconds), compact=True) == compact


def test_format_age_drops_fractions_of_a_second():
    assert format_age(timedelta(seconds=119.9)) == "119 s"
