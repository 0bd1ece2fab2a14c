"""The gold tables' declarations (sql/gold/*.yml): complete, agreeing with pipeline.schema, ordered
by their SQL's reads, their checks well-formed, and docs/tables.md generated from them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline import categories, schema
from pipeline.gold_catalog import (
    GOLD_SQL_DIR,
    GoldCatalogError,
    build_order,
    compile_checks,
    lint,
    load_catalog,
    render_docs,
    tables_read,
    upstream,
)
from tests.conftest import REPO_ROOT

GOLD = {table.name for table in schema.GOLD_TABLES}


@pytest.fixture
def gold_dir(tmp_path) -> Path:
    """A copy of sql/gold/ a test may break."""
    copy = tmp_path / "gold"
    shutil.copytree(GOLD_SQL_DIR, copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    content = path.read_text()
    assert old in content, f"{old!r} not in {path.name}"
    path.write_text(content.replace(old, new, 1))


# -- the real declarations ----------------------------------------------------------


def test_every_gold_table_has_sql_and_yaml():
    models = load_catalog()
    assert set(models) == GOLD
    for name in GOLD:
        assert (GOLD_SQL_DIR / f"{name}.sql").exists() and (GOLD_SQL_DIR / f"{name}.yml").exists()


def test_yaml_columns_are_the_schema_columns_in_order():
    for name, model in load_catalog().items():
        assert [c.name for c in model.columns] == [c.name for c in schema.metadata.tables[name].columns]
        assert all(c.description for c in model.columns)
        assert model.grain and model.description


def test_every_table_declares_its_grain_as_a_unique_key():
    """The key the grain names is checked unique and not null: the first thing a reader relies on."""
    keys = {
        "crypto_analytics_mart": "id",
        "market_segment_analysis": "market_cap_category",
        "market_history": "snapshot_at",
        "sector_ranking": "category_id",
        "sector_history": "category_id, snapshot_at",
    }
    assert set(keys) == GOLD
    for name, model in load_catalog().items():
        names = {check.name for check in compile_checks(model)}
        columns = keys[name].split(", ")
        assert {f"unique({keys[name]})", *(f"not_null({c})" for c in columns)} <= names
        assert all(c in model.grain for c in columns)


def test_sql_reads_only_known_tables_and_uses_since_as_declared():
    assert lint(load_catalog()) == []


def test_build_order_follows_the_sql():
    models = load_catalog()
    assert upstream(models)["market_segment_analysis"] == ["crypto_analytics_mart"]
    assert upstream(models)["crypto_analytics_mart"] == upstream(models)["market_history"] == []
    for dialect in (None, "sqlite", "postgresql"):
        order = build_order(models, dialect)
        assert sorted(order) == sorted(GOLD)
        assert order.index("crypto_analytics_mart") < order.index("market_segment_analysis")
    # Independent tables keep pipeline.schema's order: what a run prints stays as it was.
    assert upstream(models)["sector_ranking"] == ["crypto_analytics_mart"]  # the tracked coins per sector
    assert build_order(models) == [
        "crypto_analytics_mart",
        "market_segment_analysis",
        "market_history",
        "sector_ranking",
        "sector_history",
    ]


def test_category_checks_use_the_one_list_of_categories():
    mart = {check.name: check for check in compile_checks(load_catalog()["crypto_analytics_mart"])}
    for column, values in [
        ("market_cap_category", categories.MARKET_CAP_CATEGORIES),
        ("liquidity_category", categories.LIQUIDITY_CATEGORIES),
        ("price_trend_category", categories.PRICE_TREND_CATEGORIES),
    ]:
        check = mart[f"accepted_values({column}: {', '.join(values)})"]
        assert check.params == {"values": values}


def test_docs_page_is_generated_from_the_yaml():
    on_disk = (REPO_ROOT / "docs" / "tables.md").read_text()
    assert on_disk == render_docs(load_catalog()), "run `make docs` to regenerate docs/tables.md"


def test_docs_page_shows_grain_columns_checks_and_upstream():
    page = render_docs(load_catalog())
    assert "## market_segment_analysis" in page
    assert "- **Reads gold:** `crypto_analytics_mart`" in page
    assert "one row per market_cap_category" in page
    assert "| `market_cap_share_pct` | DOUBLE | " in page
    assert "| range: 0..100 |" in page
    assert "| not_null; unique; accepted_values: large_cap, mid_cap, small_cap, micro_cap, unknown; " in page
    assert "- `expression(gainers_count + losers_count <= coin_count)`" in page


# -- reading the SQL ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "reads"),
    [
        ("select * from crypto_analytics_mart", {"crypto_analytics_mart"}),
        (
            "with mart as (select * from crypto_analytics_mart), x as (select 1 from mart) select * from x",
            {"crypto_analytics_mart"},
        ),
        (
            "select a.id from snapshots as a\n  left join staging_sparkline s on s.id = a.id\n"
            "  INNER JOIN public.ref_stablecoins r on r.id = a.id",
            {"snapshots", "staging_sparkline", "ref_stablecoins"},
        ),
        ("select 1 -- from market_history\n/* join market_history */ from snapshots", {"snapshots"}),
        ("select 'from market_history' as t from snapshots", {"snapshots"}),
        ("select extract(epoch from snapshot_at) from (select snapshot_at from snapshots) as s", {"snapshots"}),
        ("select * from (select * from crypto_analytics_mart) as built", {"crypto_analytics_mart"}),
        (
            "select * from snapshots s, ref_stablecoins as r,ref_coin_classes where 1 = 1",
            {"snapshots", "ref_stablecoins", "ref_coin_classes"},
        ),
        ("select * from mart\n group by a, b", {"mart"}),
    ],
)
def test_tables_read(sql, reads):
    assert tables_read(sql) == reads


def test_a_new_dependency_reorders_the_build(gold_dir):
    # market_history now reads the segments: it must come after them (and so after the mart).
    edit(gold_dir / "crypto_analytics_mart.sql", "from staging_sparkline", "from staging_sparkline, market_history")
    order = build_order(load_catalog(gold_dir))
    assert order[:3] == ["market_history", "crypto_analytics_mart", "market_segment_analysis"]


def test_a_cycle_is_named(gold_dir):
    edit(gold_dir / "crypto_analytics_mart.sql", "from staging_sparkline", "from staging_sparkline, market_history")
    edit(gold_dir / "market_history.sql", "from ref_stablecoins", "from ref_stablecoins, market_segment_analysis")
    with pytest.raises(
        GoldCatalogError,
        match="cycle: .*crypto_analytics_mart -> market_history -> market_segment_analysis -> crypto_analytics_mart",
    ):
        build_order(load_catalog(gold_dir))


def test_a_table_reading_itself_is_a_cycle(gold_dir):
    edit(gold_dir / "market_history.sql", "from ref_stablecoins", "from ref_stablecoins, market_history")
    with pytest.raises(GoldCatalogError, match="market_history reads itself"):
        build_order(load_catalog(gold_dir))


def test_a_dialect_specific_file_has_its_own_reads(gold_dir):
    (gold_dir / "market_history.postgresql.sql").write_text(
        (gold_dir / "market_history.sql").read_text().replace("from ref_stablecoins", "from crypto_analytics_mart")
    )
    models = load_catalog(gold_dir)
    assert upstream(models, "sqlite")["market_history"] == []
    assert upstream(models, "postgresql")["market_history"] == ["crypto_analytics_mart"]
    assert upstream(models)["market_history"] == ["crypto_analytics_mart"]  # docs: any dialect's reads


def test_an_unknown_table_is_reported(gold_dir):
    edit(gold_dir / "market_history.sql", "from ref_stablecoins", "from ref_stablecoin")
    assert lint(load_catalog(gold_dir)) == [
        "sql/gold/market_history.sql reads ref_stablecoin: neither a gold table, a table in pipeline.schema nor a CTE"
    ]


def test_since_must_match_the_incremental_declaration(gold_dir):
    edit(gold_dir / "market_history.yml", "incremental: snapshot_at\n", "")
    assert lint(load_catalog(gold_dir)) == [
        "market_history.sql uses :since, but market_history.yml does not declare incremental: <time column>"
    ]
    edit(gold_dir / "market_history.yml", "grain:", "incremental: snapshot_at\ngrain:")
    edit(gold_dir / "market_history.sql", "and snapshot_at >= :since", "")
    edit(gold_dir / "market_history.sql", "where snapshot_at >= :since", "")
    assert lint(load_catalog(gold_dir)) == [
        "market_history.yml declares incremental: snapshot_at, but market_history.sql does not use :since"
    ]


# -- malformed declarations --------------------------------------------------------


def test_sql_without_yaml_is_refused(gold_dir):
    (gold_dir / "market_history.yml").unlink()
    with pytest.raises(GoldCatalogError, match="market_history.sql has no market_history.yml beside it"):
        load_catalog(gold_dir)


def test_a_table_missing_from_the_schema_is_refused(gold_dir):
    (gold_dir / "coin_of_the_day.sql").write_text("select * from crypto_analytics_mart")
    (gold_dir / "coin_of_the_day.yml").write_text("name: coin_of_the_day\n")
    with pytest.raises(GoldCatalogError, match="coin_of_the_day.sql builds a table that is not in .*GOLD_TABLES"):
        load_catalog(gold_dir)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "  - name: coin_count\n",
            "  - name: coins\n",
            "columns must be .* same order; missing coin_count; not in the table: coins",
        ),
        (
            "  - name: source\n    description: How the snapshot's coins were loaded (the run's source, e.g. api, "
            "sample, replay).\n    tests: [not_null]\n",
            "",
            "missing source",
        ),
        ("name: market_history\n", "name: history\n", "name is 'history', the file says 'market_history'"),
        ("grain: one row", "grains: one row", "unknown key.* grains"),
        ("    description: Coins in the snapshot.\n", "", "column coin_count: description must be a non-empty text"),
        ("incremental: snapshot_at", "incremental: taken_at", "incremental column 'taken_at' is not a column"),
        ("tests: [not_null]", "tests: [not_nul]", "unknown check 'not_nul'"),
        ("tests: [not_null]", "tests: [{not_null: true}]", "not_null takes no arguments"),
        ("range: {min: 1}", "range: {min: one}", "range needs a number min and/or max"),
        ("range: {min: 1}", "range: {}", "range needs a number min and/or max"),
        ("accepted_values: {values: [global, top_n]}", "accepted_values: {values: []}", "non-empty list of texts"),
        (
            "accepted_values: {values: [global, top_n]}",
            "accepted_values: {values_from: pipeline.categories.NOPE}",
            "values_from 'pipeline.categories.NOPE' does not name a list",
        ),
        (
            "accepted_values: {values: [global, top_n]}",
            "accepted_values: {values: [a], values_from: x.Y}",
            "either values or values_from",
        ),
        (
            "relationships: {to: snapshots, field: snapshot_at}",
            "relationships: {to: snapshot, field: snapshot_at}",
            "relationships to snapshot.snapshot_at, which is not a column",
        ),
        ("tests:\n  - expression:", "tests:\n  - not_null: \n  - expression:", "not_null belongs under a column"),
        (
            "tests:\n  - expression:",
            "tests:\n  - unique: [snapshot_at, taken_at]\n  - expression:",
            "unknown column.* taken_at",
        ),
        ("tests: [not_null]", "tests: [not_null, not_null]", "declares the same check twice: not_null\\(source\\)"),
        ("  - name: coin_count\n", "  - coin_count\n  - name: coin_count\n", "columns\\[2\\] must be a mapping"),
        ("name: market_history\n", "name: [market_history\n", "not valid YAML"),
    ],
)
def test_malformed_declarations_are_refused_saying_where(gold_dir, old, new, message):
    edit(gold_dir / "market_history.yml", old, new)
    with pytest.raises(GoldCatalogError, match=message) as raised:
        load_catalog(gold_dir)
    assert "market_history.yml" in str(raised.value)


def test_a_combined_unique_key_compiles_to_one_query(gold_dir):
    edit(
        gold_dir / "market_history.yml",
        "tests:\n  - expression:",
        "tests:\n  - unique: [source, snapshot_at]\n  - expression:",
    )
    checks = {check.name: check for check in compile_checks(load_catalog(gold_dir)["market_history"])}
    combined = checks["unique(source, snapshot_at)"]
    assert combined.column is None
    assert "GROUP BY source, snapshot_at HAVING COUNT(*) > 1" in combined.sql
