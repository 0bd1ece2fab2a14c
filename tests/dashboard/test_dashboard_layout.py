"""The dashboard's module boundaries (STYLE.md §3): SQL only in data.py, pure charts, thin pages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"
PAGE_FILES = sorted((DASHBOARD / "app_pages").glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_there_is_one_page_file_per_page():
    assert [p.name for p in PAGE_FILES] == [
        "coin.py",
        "dominance.py",
        "liquidity.py",
        "overview.py",
        "pipeline_runs.py",
        "segments.py",
        "trends.py",
    ]


@pytest.mark.parametrize(
    "path",
    [
        *PAGE_FILES,
        DASHBOARD / "app.py",
        DASHBOARD / "ui.py",
        DASHBOARD / "state.py",
        DASHBOARD / "refresh.py",
        DASHBOARD / "charts.py",
        DASHBOARD / "frames.py",
        DASHBOARD / "formatting.py",
    ],
    ids=lambda p: p.name,
)
def test_only_data_py_talks_sql(path):
    assert not any(m.split(".")[0] in {"sqlalchemy", "sqlite3", "psycopg", "psycopg2"} for m in imported_modules(path))
    source = path.read_text().lower()
    for keyword in ("select ", "insert into", "delete from", " from crypto_", "text("):
        assert keyword not in source, f"{path.name} contains {keyword!r}"


@pytest.mark.parametrize("name", ["charts.py", "frames.py", "formatting.py"])
def test_pure_modules_do_not_import_streamlit(name):
    assert not any(m.split(".")[0] == "streamlit" for m in imported_modules(DASHBOARD / name))


def test_the_silver_history_is_only_read_for_one_coin():
    source = (DASHBOARD / "data.py").read_text()
    silver_reads = source.count("staging_crypto_market)") + source.count("select(staging_crypto_market")
    assert silver_reads == 0, "never SELECT all of silver"
    assert ".where(s.c.id == coin_id)" in source and ".where(h.c.id == coin_id)" in source


def test_page_icons_are_emoji_not_material_icons():
    source = (DASHBOARD / "app.py").read_text()
    assert ":material/" not in source


def test_dashboard_queries_for_the_benchmark_all_run(sample_warehouse):
    """``DASHBOARD_QUERIES`` (timed by ``python -m benchmarks.bench``) lists runnable statements."""
    from dashboard.data import DASHBOARD_QUERIES
    from pipeline.db import make_engine

    assert {"mart", "coin_history_silver", "coin_history_backfill", "runs_latest"} <= set(DASHBOARD_QUERIES)
    with make_engine(sample_warehouse.settings().database_url).connect() as conn:
        rows = {
            name: len(conn.execute(statement, params).fetchall())
            for name, (statement, params) in DASHBOARD_QUERIES.items()
        }
    assert rows["mart"] == 250 and rows["coin_history_silver"] == 1 and rows["segments"] == 4
