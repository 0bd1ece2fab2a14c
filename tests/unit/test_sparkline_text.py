"""Sparkline text is json.dumps's, byte for byte, whichever encoder writes it (orjson is only a shortcut)."""

import json
import random

import pytest

from pipeline.silver.transform import _json_list

EDGES = [
    [],
    [1, 2, 3],
    [0.1, 0.2, 0.30000000000000004],
    [1e-7, 5e-05, 0.0001, 0.00012345],
    [1e15, 9.999999999999998e15, 1e16, 1.5e17],
    [-0.0, 0.0, -1.5],
    [None, 1.0, None],
    [2**63, 2**64 + 1, -(2**70)],
    [123456789.123456789, 0.000000533, 19163.45],
]


@pytest.mark.parametrize("values", EDGES, ids=range(len(EDGES)))
def test_edges_match_json_dumps(values):
    assert _json_list(values) == json.dumps(values, separators=(",", ":"))


def test_random_lists_match_json_dumps():
    rng = random.Random(20261130)
    for _ in range(3000):
        scale = 10 ** rng.randint(-12, 18)
        values = [
            rng.choice([None, rng.randint(-(10**6), 10**6), rng.uniform(-1, 1) * scale, rng.random() * scale])
            for _ in range(rng.randint(0, 30))
        ]
        assert _json_list(values) == json.dumps(values, separators=(",", ":")), values
