"""Shared helpers for the dashboard's AppTests: warehouses seeded by the real pipeline, element lookups."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dashboard import navigation
from pipeline.config import Settings
from pipeline.flow import run_pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]

APP = REPO_ROOT / "dashboard" / "app.py"
CLOSED_PORT_URL = "http://127.0.0.1:9/api/v3"  # discard port: connection refused at once

#: Every page (``dashboard.navigation``, the one list), by URL path -> its script relative to app.py.
PAGES = {page.url_path: str(page.path.relative_to(APP.parent)) for page in navigation.PAGES}

#: What each page draws on the bundled sample: Plotly charts (AppTest and the browser tests check it).
EXPECTED_CHARTS = {
    "coins": 0,
    "watchlist": 0,
    "overview": 3,
    "dominance": 3,
    "liquidity": 2,
    "trends": 3,
    "segments": 4,
    "sectors": 0,  # the offline sample has no categories: the page says so (test_sectors_page.py draws them)
    "coin": 2,
    "pipeline": 1,
    "alerts": 0,
    "compare": 3,
}


@dataclass(frozen=True)
class Warehouse:
    database_url: str
    data_dir: Path

    def settings(self) -> Settings:
        return Settings.from_env({"DATABASE_URL": self.database_url, "DATA_DIR": str(self.data_dir)})


def seed_sample(data_dir: Path) -> Warehouse:
    """A warehouse loaded the way production loads it: ``run_pipeline`` with the bundled sample."""
    data_dir.mkdir(parents=True, exist_ok=True)
    warehouse = Warehouse(f"sqlite:///{data_dir / 'warehouse.db'}", data_dir)
    run_pipeline(warehouse.settings(), trigger="cli", source="sample")
    return warehouse


def plotly_values(value) -> list:
    """A Plotly JSON array as a list: plain lists, or typed arrays ({'dtype', 'bdata'}, base64)."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return list(value)


def chart_specs(at) -> list[dict]:
    """The Plotly figures on the page (AppTest shows them as UnknownElement with the JSON spec)."""
    return [json.loads(element.proto.spec) for element in at.get("plotly_chart")]


def metric(at, label: str):
    for element in at.metric:
        if element.label == label:
            return element
    raise AssertionError(f"no metric {label!r}; have {[m.label for m in at.metric]}")


def plain(markdown: str) -> str:
    """Markdown as a reader sees it: without escaping backslashes and invisible word joiners."""
    return markdown.replace("\\", "").replace("\u2060", "")
