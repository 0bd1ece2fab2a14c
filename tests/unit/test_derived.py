"""Derived silver columns: one declaration each in pipeline/silver/derived.py, and everything else follows it."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Double

from pipeline import schema
from pipeline.silver import derived
from pipeline.silver.derived import DERIVED, PERCENT_LIMIT, Derived
from pipeline.silver.transform import DERIVED_LIMITS, NUMERIC_LIMITS, add_derived_columns, transform_markets

NAN = math.nan


def frame(**columns: list[float]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(values, dtype="float64") for name, values in columns.items()})


def by_name(name: str) -> Derived:
    return next(column for column in DERIVED if column.name == name)


def test_schema_and_limits_follow_the_declarations():
    names = [column.name for column in DERIVED]
    assert len(set(names)) == len(names)
    assert schema.DERIVED_COLUMNS == names
    assert DERIVED_LIMITS == {column.name: column.limit for column in DERIVED}
    silver = schema.staging_crypto_market.c
    for name in names:
        assert isinstance(silver[name].type, Double) and silver[name].nullable, name
    present = [c.name for c in schema.staging_crypto_market.columns]
    assert present[present.index(names[0]) : present.index(names[0]) + len(names)] == names


@pytest.mark.parametrize("column", DERIVED, ids=lambda c: c.name)
def test_each_declaration_is_complete(column: Derived):
    assert column.name.isidentifier() and column.name.islower()
    assert 0 < column.limit < math.inf
    assert column.description.strip() and "\n" not in column.description
    assert not column.description[0].islower() and column.description.endswith(".")


def test_the_percent_bound_is_the_one_the_numeric_fields_use():
    assert NUMERIC_LIMITS["price_change_percentage_24h"] == (-PERCENT_LIMIT, PERCENT_LIMIT)
    assert DERIVED_LIMITS["price_volatility_24h"] == DERIVED_LIMITS["distance_from_ath_pct"] == PERCENT_LIMIT


def test_formulas():
    f = frame(high_24h=[60.0], low_24h=[45.0], current_price=[50.0], total_volume=[5.0], market_cap=[20.0], ath=[200.0])
    assert by_name("price_volatility_24h").compute(f)[0] == pytest.approx(30.0)
    assert by_name("volume_to_mcap_ratio").compute(f)[0] == pytest.approx(0.25)
    assert by_name("distance_from_ath_pct").compute(f)[0] == pytest.approx(-75.0)


@pytest.mark.parametrize(
    ("name", "inputs"),
    [
        ("price_volatility_24h", {"high_24h": [NAN], "low_24h": [1.0], "current_price": [1.0]}),  # NULL input
        ("price_volatility_24h", {"high_24h": [2.0], "low_24h": [1.0], "current_price": [0.0]}),  # x / 0
        ("price_volatility_24h", {"high_24h": [0.0], "low_24h": [0.0], "current_price": [0.0]}),  # 0 / 0
        ("price_volatility_24h", {"high_24h": [1e308], "low_24h": [-1e308], "current_price": [1.0]}),  # overflow
        ("volume_to_mcap_ratio", {"total_volume": [1.0], "market_cap": [0.0]}),
        ("volume_to_mcap_ratio", {"total_volume": [1.0], "market_cap": [-0.0]}),
        ("distance_from_ath_pct", {"current_price": [1.0], "ath": [0.0], "ath_change_percentage": [NAN]}),
    ],
)
def test_null_instead_of_infinity_or_nan(name: str, inputs: dict[str, list[float]]):
    assert pd.isna(by_name(name).compute(frame(**inputs))[0])


@pytest.mark.parametrize("column", DERIVED, ids=lambda c: c.name)
def test_the_limit_is_inclusive(column: Derived):
    at_limit = Derived(column.name, lambda f: f["x"], column.limit, column.description)
    values = at_limit.compute(frame(x=[column.limit, -column.limit, np.nextafter(column.limit, math.inf), -math.inf]))
    assert values[0] == column.limit and values[1] == -column.limit
    assert pd.isna(values[2]) and pd.isna(values[3])


def test_volatility_and_ratio_limits_cut_inconsistent_inputs():
    tiny_price = frame(high_24h=[1e9], low_24h=[0.0], current_price=[1e-3])  # 1e14 %
    assert pd.isna(by_name("price_volatility_24h").compute(tiny_price)[0])
    churn = frame(total_volume=[1e10], market_cap=[10.0])  # a cap traded 1e9 times: kept; more: NULL
    assert by_name("volume_to_mcap_ratio").compute(churn)[0] == 1e9
    assert pd.isna(by_name("volume_to_mcap_ratio").compute(frame(total_volume=[1e11], market_cap=[10.0]))[0])


def test_distance_from_ath_prefers_the_api_value():
    column = by_name("distance_from_ath_pct")
    f = frame(current_price=[50.0, 50.0], ath=[200.0, 200.0], ath_change_percentage=[-5.42, NAN])
    assert column.compute(f).tolist() == [-5.42, pytest.approx(-75.0)]
    without = frame(current_price=[200.0], ath=[200.0])  # no such column at all: recomputed
    assert column.compute(without)[0] == 0.0


def test_add_derived_columns_loops_over_the_declarations(monkeypatch):
    """Adding a declaration is all it takes for transform to compute a new column."""
    extra = Derived("spread_pct", lambda f: (f["high_24h"] / f["low_24h"] - 1) * 100.0, 1e4, "Test only.")
    monkeypatch.setattr(derived, "DERIVED", (*DERIVED, extra))
    coins = [
        {"id": "a", "current_price": 50, "market_cap": 20, "total_volume": 5, "high_24h": 60, "low_24h": 45},
        {"id": "b", "current_price": 1, "market_cap": 1, "total_volume": 1, "high_24h": 1, "low_24h": 0},
    ]
    rows = transform_markets(coins, run_id="r", snapshot_at=datetime(2024, 1, 2), source="api").rows
    assert "spread_pct" not in rows.columns  # silver's columns are the schema's
    out = add_derived_columns(rows)
    assert out["spread_pct"][0] == pytest.approx(100 / 3) and pd.isna(out["spread_pct"][1])
    assert out["volume_to_mcap_ratio"][0] == pytest.approx(0.25)
    assert "spread_pct" not in rows.columns  # the input frame is left alone


def test_derived_imports_nothing_of_the_pipeline():
    """pipeline.schema imports derived.py: anything derived imported would load with the schema
    (and derived importing schema or transform would be a cycle)."""
    code = (
        "import sys; import pipeline.silver.derived; "
        "print(sorted(m for m in sys.modules if m.startswith(('pipeline', 'pandas', 'numpy'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['pipeline', 'pipeline.silver', 'pipeline.silver.derived']"


def test_the_mart_shows_derived_columns_by_name():
    """Gold names the derived columns it shows (schema, SQL and YAML); a new derived column
    stays in silver until a mart adds it."""
    mart = [c.name for c in schema.crypto_analytics_mart.columns]
    shown = [name for name in mart if name in schema.DERIVED_COLUMNS]
    assert shown == ["price_volatility_24h", "volume_to_mcap_ratio", "distance_from_ath_pct"]
