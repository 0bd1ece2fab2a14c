"""The dashboard's module boundaries (STYLE.md §3): SQL only in data.py, the pipeline only through
``pipeline.api``, pure charts, thin pages, one list of pages."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from dashboard import navigation
from pipeline import api

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"
PAGE_FILES = sorted((DASHBOARD / "app_pages").glob("*.py"))
MODULES = sorted(DASHBOARD.rglob("*.py"))

#: Modules that run a database driver's code or SQL themselves.
SQL_MODULES = {"sqlalchemy", "sqlite3", "psycopg", "psycopg2", "asyncpg"}
#: Calls that open a connection or run a statement, by the name called (``x.execute(...)``, ``text(...)``).
SQL_CALLS = {
    "begin",
    "connect",
    "create_engine",
    "cursor",
    "engine_for",
    "exec_driver_sql",
    "execute",
    "executemany",
    "executescript",
    "read_sql",
    "read_sql_query",
    "read_sql_table",
    "scalar",
    "scalars",
    "select",
    "text",
    *api.READS_DATABASE,
}
#: A string that reads as SQL.
SQL_TEXT = re.compile(
    r"(?is)\bselect\s+(\*|\w+(\s*,\s*\w+)*)\s+from\s+\w+"  # select a, b from t
    r"|\bselect\b.+\bfrom\s+[a-z]+_\w+"  # select ... from crypto_analytics_mart
    r"|\binsert\s+into\b|\bdelete\s+from\b|\bupdate\s+\w+\s+set\b"
)
#: The two doors to the database: data.py reads, refresh.py queues run requests (and serves one itself
#: when no sidecar is alive). Both still reach the pipeline only through ``pipeline.api``.
TALKS_SQL = {"data.py", "refresh.py"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def sql_use(source: str) -> list[str]:
    """Where this source talks to a database itself: SQL imports, connection/statement calls, SQL text."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"import {m}" for m in modules if m.split(".")[0] in SQL_MODULES]
            if isinstance(node, ast.ImportFrom) and node.module == "pipeline.api":
                found += [f"import {a.name}" for a in node.names if a.name in api.READS_DATABASE]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name in SQL_CALLS:
                found.append(f"call {name}() on line {node.lineno}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.search(node.value):
            found.append(f"SQL text on line {node.lineno}")
    return found


def test_there_is_one_page_file_per_page():
    """Every script in app_pages/ is a page of ``dashboard.navigation`` and every page has its script."""
    assert [p.name for p in PAGE_FILES] == sorted(page.file for page in navigation.PAGES)
    assert len({page.url_path for page in navigation.PAGES}) == len(navigation.PAGES)
    assert len({page.icon for page in navigation.PAGES}) == len(navigation.PAGES)  # the icon names the page
    assert [page.default for page in navigation.PAGES].count(True) == 1


@pytest.mark.parametrize("path", [p for p in MODULES if p.name not in TALKS_SQL], ids=lambda p: p.name)
def test_only_data_py_talks_sql(path):
    assert sql_use(path.read_text()) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_the_dashboard_reaches_the_pipeline_only_through_its_api(path):
    pipeline_imports = {m for m in imported_modules(path) if m.split(".")[0] == "pipeline"}
    assert pipeline_imports <= {"pipeline", "pipeline.api"}
    assert "pipeline" not in pipeline_imports or "from pipeline import api" in path.read_text()


@pytest.mark.parametrize(
    "snippet",
    [
        "from sqlalchemy import text",
        "import sqlite3",
        "rows = engine.connect().execute(statement)",
        "frame = pd.read_sql(query, url)",
        "holder = api.current_holder(data.engine_for(url))",
        "from pipeline.api import make_engine",
        "with data.engine_for(url).begin() as conn: pass",
        "q = 'SELECT id FROM crypto_analytics_mart'",
        "q = 'delete from pipeline_runs'",
        "q = 'select count(*) from pipeline_runs where status = :s'",
        "q = 'SELECT * FROM t'",
    ],
)
def test_a_query_added_to_a_page_is_caught(snippet):
    assert sql_use(snippet)


def test_ordinary_page_code_is_not_mistaken_for_sql():
    source = (
        "st.selectbox('Select a coin from the list', coins)\n"
        "box.update(label='done')\n"
        "frame = data.load_mart(view.database_url, view.version)\n"
    )
    assert sql_use(source) == []


def test_the_api_names_only_what_it_defines():
    assert {name for name in api.__all__ if not hasattr(api, name)} == set()
    assert api.READS_DATABASE <= set(api.__all__)


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

    assert {"mart", "coin_window_silver", "coin_window_backfill", "runs_latest"} <= set(DASHBOARD_QUERIES)
    with make_engine(sample_warehouse.settings().database_url).connect() as conn:
        rows = {
            name: len(conn.execute(statement, params).fetchall())
            for name, (statement, params) in DASHBOARD_QUERIES.items()
        }
    assert rows["mart"] == 250 and rows["coin_window_silver"] == 1 and rows["segments"] == 4
