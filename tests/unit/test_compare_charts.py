"""The Compare page's figures: small frames in, Plotly figures out (no Streamlit, no database)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from dashboard import compare_charts

INDEX = pd.date_range("2024-01-01", periods=4, freq="D", name="ts")
LABELS = {"bitcoin": "Bitcoin (BTC)", "ethereum": "Ethereum (ETH)", "evil": "<b>Evil</b> %{y}"}


def spec(fig) -> dict:
    return json.loads(fig.to_json())


def test_performance_chart_one_line_per_coin_with_gaps_kept():
    perf = pd.DataFrame({"bitcoin": [100.0, 110.0, np.nan, 90.0], "ethereum": [100.0, 95.0, 120.0, 130.0]}, index=INDEX)
    fig = compare_charts.create_performance_chart(perf, LABELS)
    names = [trace.name for trace in fig.data]
    assert names == ["Bitcoin (BTC)", "Ethereum (ETH)"]
    btc = fig.data[0]
    assert math.isnan(btc.y[2]) and btc.connectgaps in (None, False)  # a gap stays a gap
    assert list(btc.customdata) == ["+0.0%", "+10.0%", None, "-10.0%"]
    assert fig.layout.yaxis.title.text == "Indexed price (start = 100)"
    assert fig.layout.shapes[0].y0 == 100  # the start line
    assert "%{fullData.name}" in btc.hovertemplate


def test_hourly_performance_shows_the_time():
    perf = pd.DataFrame({"bitcoin": [100.0, 101.0]}, index=pd.date_range("2024-01-01", periods=2, freq="h"))
    fig = compare_charts.create_performance_chart(perf, LABELS, freq="h")
    assert "%H:%M" in fig.data[0].hovertemplate and fig.layout.xaxis.title.text == "Time (UTC)"


def test_names_are_plain_text():
    perf = pd.DataFrame({"evil": [100.0, 120.0]}, index=INDEX[:2])
    fig = compare_charts.create_performance_chart(perf, LABELS)
    assert fig.data[0].name == "&lt;b&gt;Evil&lt;/b&gt; %{y}"
    assert "<b>Evil" not in json.dumps(spec(fig))
    assert fig.data[0].hovertemplate.startswith("%{fullData.name}")  # the name is never parsed as a template


def test_empty_inputs_give_a_titled_empty_figure():
    for fig in (
        compare_charts.create_performance_chart(pd.DataFrame(), LABELS),
        compare_charts.create_volatility_chart(pd.DataFrame({"bitcoin": [np.nan]}), LABELS),
        compare_charts.create_correlation_heatmap(pd.DataFrame(), LABELS),
    ):
        assert fig.layout.title.text and fig.layout.annotations and not fig.data


def test_heatmap_is_annotated_on_a_fixed_diverging_scale_with_dashes_for_undefined():
    matrix = pd.DataFrame(
        [[1.0, 0.8321, np.nan], [0.8321, 1.0, -0.5], [np.nan, -0.5, np.nan]],
        index=["bitcoin", "ethereum", "tether"],
        columns=["bitcoin", "ethereum", "tether"],
    )
    fig = compare_charts.create_correlation_heatmap(matrix, LABELS)
    heat = fig.data[0]
    assert (heat.zmin, heat.zmax, heat.zmid) == (-1, 1, 0)
    assert heat.colorscale[0][1] == "#b2182b" and heat.colorscale[-1][1] == "#2166ac"
    assert [list(row) for row in heat.text] == [
        ["1.00", "0.83", "—"],
        ["0.83", "1.00", "-0.50"],
        ["—", "-0.50", "—"],
    ]
    assert heat.z[0][2] is None and heat.z[1][2] == -0.5
    assert list(heat.x) == ["Bitcoin (BTC)", "Ethereum (ETH)", "tether"]  # no label: the id
    assert fig.layout.yaxis.autorange == "reversed"  # reads like the table: first coin top left


def test_heatmap_keeps_two_coins_with_the_same_name_apart():
    matrix = pd.DataFrame(np.eye(2), index=["a", "b"], columns=["a", "b"])
    fig = compare_charts.create_correlation_heatmap(matrix, {"a": "Same (S)", "b": "Same (S)"})
    assert list(fig.data[0].x) == ["Same (S) · a", "Same (S) · b"]


def test_volatility_chart_in_percent_from_zero():
    vol = pd.DataFrame({"bitcoin": [np.nan, 45.0, 50.0, 48.0], "ethereum": [np.nan, 60.0, 70.0, 65.0]}, index=INDEX)
    fig = compare_charts.create_volatility_chart(vol, LABELS)
    assert [t.name for t in fig.data] == ["Bitcoin (BTC)", "Ethereum (ETH)"]
    assert fig.layout.yaxis.ticksuffix == " %" and fig.layout.yaxis.rangemode == "tozero"
    assert fig.data[0].line.color != fig.data[1].line.color
