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


# ---- from a Parquet copy's price lists, column-wise -------------------------------------------

PRICE_LISTS = [
    [1.0, 2.5, 3.0],
    [1, 2, 3],  # integers: a copy holds them as floats, so does the text
    [1e-7, 5e-05, 0.0001, 0.00012345],  # orjson writes these unlike json.dumps
    [None, 1.0, float("nan"), -1.0, 1e9, 1.0001e9, float("inf")],  # not prices: null
    [],
    None,
    [0.000000533, 19163.45, 123456789.123456789, -0.0],
]


def test_sparkline_texts_equal_the_record_path():
    """A copy's list<double> column gives each row the text the raw record's list gives."""
    import pyarrow as pa

    from pipeline.silver.transform import _sparkline, sparkline_texts

    prices = pa.array(PRICE_LISTS, type=pa.list_(pa.float64()))
    expected = [_sparkline({"price": p}) for p in PRICE_LISTS]
    assert sparkline_texts(prices) == expected
    assert sparkline_texts(prices.slice(2, 3)) == expected[2:5]  # a slice keeps its own offsets
    assert expected[1] == "[1.0,2.0,3.0]" and expected[3] == "[null,1.0,null,null,1000000000.0,null,null]"
    assert expected[4] is None and expected[5] is None


def test_sparkline_texts_random_lists_equal_json_dumps_of_floats():
    import pyarrow as pa

    from pipeline.silver.transform import sparkline_texts

    rng = random.Random(20261201)
    lists = []
    for _ in range(2000):
        scale = 10 ** rng.randint(-12, 8)
        lists.append([rng.random() * scale for _ in range(rng.randint(1, 40))])
    texts = sparkline_texts(pa.array(lists, type=pa.list_(pa.float64())))
    assert texts == [json.dumps(values, separators=(",", ":")) for values in lists]
