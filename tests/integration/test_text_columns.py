"""One odd record never stops loading: text from the API has no length limit and no NUL
reaches PostgreSQL, on both databases; a version-2 database is upgraded in place."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy import inspect, text

from pipeline import bronze
from pipeline.db import (
    check_schema,
    ensure_schema,
    make_engine,
    strip_nul,
    without_nul,
)
from pipeline.errors import PipelineError
from pipeline.flow import prepare_database, replay, run_pipeline
from pipeline.schema import SCHEMA_VERSION, metadata
from tests.fakes.coingecko import DEFAULT_MARKETS, load_fixture

#: Columns that hold text taken from the API (ids, symbols, names) or from a seed file.
API_TEXT_COLUMNS = {
    "staging_crypto_market": ["id", "symbol", "name"],
    "staging_sparkline": ["id"],
    "staging_coin_history": ["id"],
    "quarantine_crypto_market": ["record_id"],
    "crypto_analytics_mart": ["id", "symbol", "name"],
    "ref_stablecoins": ["id"],
}


def scalar(settings, sql: str, **params):
    with make_engine(settings.database_url).connect() as conn:
        return conn.execute(text(sql), params).scalar()


def odd_records() -> tuple[list[dict], dict]:
    """The recorded top 250 with one of each kind of oversized or NUL-bearing text."""
    records = load_fixture(DEFAULT_MARKETS)
    odd = {
        "nul_name": records[0]["id"],
        "long_name": records[1]["id"],
        "long_symbol": records[2]["id"],
        "long_id": "i" * 499 + "d",
        "quarantined_id": "q" * 999 + "x",
        "nul_symbol": records[5]["id"],
    }
    records[0]["name"] = "Bit\x00coin"
    records[1]["name"] = "N" * 100_000
    records[2]["symbol"] = "s" * 300
    records[3]["id"] = odd["long_id"]
    records[4]["id"] = odd["quarantined_id"]
    records[4]["current_price"] = -1.0  # headed for quarantine
    records[5]["symbol"] = "x\x00y"
    records[5]["image"] = "https://example.invalid/\x00.png"
    return records, odd


def quarantined(settings, run_id: str) -> dict[str, tuple]:
    """This run's quarantine, keyed by the id in each raw record: (record_id, reason, raw record)."""
    with make_engine(settings.database_url).connect() as conn:
        rows = conn.execute(
            text("SELECT record_id, reason, raw_record FROM quarantine_crypto_market WHERE run_id = :r"), {"r": run_id}
        ).all()
    return {json.loads(raw).get("id"): (record_id, reason, json.loads(raw)) for record_id, reason, raw in rows}


def in_silver(settings, coin_id: str) -> bool:
    return scalar(settings, "SELECT COUNT(*) FROM staging_crypto_market WHERE id = :i", i=coin_id) == 1


def test_oversized_and_nul_text_loads_and_replays(settings, fake_coingecko):
    records, odd = odd_records()
    fake_coingecko.set_markets(records)

    result = run_pipeline(settings, source="api")

    assert result.status == "success"
    assert result.silver_rows + result.quarantined == 250  # nothing lost
    assert scalar(settings, "SELECT name FROM staging_crypto_market WHERE id = :i", i=odd["nul_name"]) == "Bitcoin"
    assert (
        scalar(
            settings,
            "SELECT LENGTH(name) FROM staging_crypto_market WHERE id = :i AND run_id = :r",
            i=odd["long_name"],
            r=result.run_id,
        )
        == 100_000
    )
    assert scalar(settings, "SELECT symbol FROM staging_crypto_market WHERE id = :i", i=odd["long_symbol"]) == "s" * 300
    assert scalar(settings, "SELECT symbol FROM staging_crypto_market WHERE id = :i", i=odd["nul_symbol"]) == "xy"
    assert (
        scalar(settings, "SELECT LENGTH(name) FROM crypto_analytics_mart WHERE id = :i", i=odd["long_name"]) == 100_000
    )

    # Every bad record is in quarantine whole: exactly what CoinGecko sent, filed under its id.
    served = {r.get("id"): r for r in bronze.find_run(settings.raw_dir, result.run_id).markets_records()}
    held = quarantined(settings, result.run_id)
    assert len(held) == result.quarantined
    assert odd["quarantined_id"] in held
    for coin_id, (record_id, _reason, raw) in held.items():
        assert raw == served[coin_id]
        assert record_id and coin_id.startswith(record_id.rstrip("…"))  # an id may be cut, never lost
    assert "negative current_price" in held[odd["quarantined_id"]][1]
    # A 500-character id is kept (silver accepts any length) or quarantined by policy: never both, never lost.
    assert in_silver(settings, odd["long_id"]) != (odd["long_id"] in held)
    if in_silver(settings, odd["long_id"]):
        assert scalar(settings, "SELECT COUNT(*) FROM crypto_analytics_mart WHERE id = :i", i=odd["long_id"]) == 1
        assert scalar(settings, "SELECT COUNT(*) FROM staging_sparkline WHERE id = :i", i=odd["long_id"]) == 1

    # Bronze is complete, so a replay meets the same records: it must succeed too, with the same result.
    silver_before = scalar(settings, "SELECT COUNT(*) FROM staging_crypto_market")
    again = replay(settings)
    assert again.status == "success"
    assert (again.silver_rows, again.quarantined) == (result.silver_rows, result.quarantined)
    assert scalar(settings, "SELECT COUNT(*) FROM staging_crypto_market") == silver_before
    assert scalar(settings, "SELECT COUNT(*) FROM quarantine_crypto_market") == result.quarantined
    assert scalar(settings, "SELECT COUNT(*) FROM crypto_analytics_mart") == result.silver_rows


def test_the_loaders_take_any_length_and_never_send_a_nul(settings):
    """The database layer alone, whatever silver's validation lets through."""
    from pipeline.silver.load import load_coin_history, load_sparklines, replace_quarantine

    engine = prepare_database(settings)
    long_id, quarantined_id = "i" * 500, "q" * 1000
    at = datetime(2026, 1, 2, 3, 4, 5)
    with engine.begin() as conn:
        load_sparklines(conn, [(long_id, at, "run-1", "[1.0,2.0]"), ("nul\x00id", at, "run-1", "[3.0]")])
        load_coin_history(conn, [(long_id, at, "run-1", 1.0, 2.0, 3.0)])
        replace_quarantine(conn, ["run-1"], [("run-1", 0, at, quarantined_id, "why\x00", '{"id":"x"}')])
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM staging_sparkline ORDER BY id")).scalars().all() == [long_id, "nulid"]
        assert conn.execute(text("SELECT id FROM staging_coin_history")).scalar() == long_id
        assert conn.execute(text("SELECT record_id, reason FROM quarantine_crypto_market")).one() == (
            quarantined_id,
            "why",
        )


def test_api_text_columns_have_no_length_limit():
    for table_name, columns in API_TEXT_COLUMNS.items():
        table = metadata.tables[table_name]
        for column in columns:
            assert getattr(table.c[column].type, "length", None) is None, f"{table_name}.{column}"
    assert "notes" in metadata.tables["pipeline_runs"].c
    assert metadata.tables["pipeline_runs"].c.notes.nullable


@pytest.mark.postgres
def test_api_text_columns_are_unbounded_on_postgresql(postgres_url):
    engine = make_engine(postgres_url)
    ensure_schema(engine)
    inspector = inspect(engine)
    for table_name, columns in API_TEXT_COLUMNS.items():
        types = {c["name"]: c["type"] for c in inspector.get_columns(table_name)}
        for column in columns:
            assert str(types[column]) == "TEXT", f"{table_name}.{column}: {types[column]}"


def _downgrade_to_version_2(engine) -> None:
    """Put the database back the way schema version 2 left it: VARCHAR(n) columns, no notes."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE pipeline_runs DROP COLUMN notes"))
        if engine.dialect.name == "postgresql":
            for table_name, columns in API_TEXT_COLUMNS.items():
                for column in columns:
                    size = 100 if column == "symbol" else 300 if column == "name" else 200
                    conn.execute(text(f"ALTER TABLE {table_name} ALTER COLUMN {column} TYPE VARCHAR({size})"))
        conn.execute(text("DELETE FROM schema_version"))
        conn.execute(text("INSERT INTO schema_version (version, applied_at) VALUES (2, :t)"), {"t": "2026-01-01"})


def test_a_version_2_database_is_upgraded_in_place(settings, fake_coingecko):
    run_pipeline(settings, source="sample")
    engine = make_engine(settings.database_url)
    _downgrade_to_version_2(engine)
    with pytest.raises(PipelineError, match="schema --apply"):
        check_schema(engine)  # the read-only path says what to do, and changes nothing
    with engine.connect() as conn:
        assert conn.execute(text("SELECT MAX(version) FROM schema_version")).scalar() == 2

    assert prepare_database(settings) is engine

    assert check_schema(engine) == SCHEMA_VERSION
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM schema_version ORDER BY version")).scalars().all() == list(
            range(2, SCHEMA_VERSION + 1)
        )
        assert conn.execute(text("SELECT COUNT(*) FROM staging_crypto_market")).scalar() == 250
        assert conn.execute(text("SELECT COUNT(*) FROM crypto_analytics_mart")).scalar() == 250
    assert "notes" in {c["name"] for c in inspect(engine).get_columns("pipeline_runs")}
    if engine.dialect.name == "postgresql":
        inspector = inspect(engine)
        for table_name, columns in API_TEXT_COLUMNS.items():
            types = {c["name"]: str(c["type"]) for c in inspector.get_columns(table_name)}
            assert all(types[c] == "TEXT" for c in columns), (table_name, types)
        # The monthly partitions follow their parent.
        with engine.connect() as conn:
            part_types = (
                conn.execute(
                    text(
                        "SELECT DISTINCT data_type FROM information_schema.columns WHERE table_name LIKE "
                        "'staging_crypto_market_%' AND column_name IN ('id', 'symbol', 'name')"
                    )
                )
                .scalars()
                .all()
            )
        assert part_types == ["text"]

    # The upgraded database takes what version 2 refused, and the upgrade is idempotent.
    records, odd = odd_records()
    fake_coingecko.set_markets(records)
    result = run_pipeline(settings, source="api")
    assert result.status == "success"
    assert ensure_schema(engine) == SCHEMA_VERSION
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM schema_version")).scalar() == SCHEMA_VERSION - 1
    assert odd["quarantined_id"] in quarantined(settings, result.run_id)
    assert (
        scalar(
            settings,
            "SELECT LENGTH(name) FROM staging_crypto_market WHERE id = :i AND run_id = :r",
            i=odd["long_name"],
            r=result.run_id,
        )
        == 100_000
    )


def test_seeds_are_not_rewritten_when_unchanged(settings):
    engine = prepare_database(settings)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE seed_writes (n INTEGER)"))
        if engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    "CREATE FUNCTION count_seed_write() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN INSERT INTO seed_writes VALUES (1); RETURN NULL; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER seed_write AFTER INSERT OR UPDATE OR DELETE ON ref_stablecoins "
                    "FOR EACH STATEMENT EXECUTE FUNCTION count_seed_write()"
                )
            )
        else:
            for event in ("INSERT", "UPDATE", "DELETE"):
                conn.execute(
                    text(
                        f"CREATE TRIGGER seed_{event.lower()} AFTER {event} ON ref_stablecoins "
                        f"BEGIN INSERT INTO seed_writes VALUES (1); END"
                    )
                )
    ensure_schema(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM seed_writes")).scalar() == 0
    # A changed table is put back to the CSV.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ref_stablecoins WHERE id = 'tether'"))
        conn.execute(text("INSERT INTO ref_stablecoins (id, pegged_to) VALUES ('not-a-stablecoin', 'usd')"))
    ensure_schema(engine)
    with engine.connect() as conn:
        ids = set(conn.execute(text("SELECT id FROM ref_stablecoins")).scalars())
    assert "tether" in ids and "not-a-stablecoin" not in ids


def test_check_schema_on_an_empty_database_says_how_to_create_it(database_url):
    engine = make_engine(database_url)
    with pytest.raises(PipelineError, match=r"python -m pipeline schema --apply"):
        check_schema(engine)
    assert inspect(engine).get_table_names() == []


def test_strip_nul_only_touches_strings():
    assert strip_nul("a\x00b\x00") == "ab"
    assert strip_nul("plain") == "plain"
    assert strip_nul(None) is None and strip_nul(1.5) == 1.5 and strip_nul(b"\x00") == b"\x00"
    rows = [("a\x00", 1, None), ("b", 2.0, "c")]
    assert list(without_nul(rows)) == [("a", 1, None), ("b", 2.0, "c")]
    assert list(without_nul(rows, positions=[2])) == [("a\x00", 1, None), ("b", 2.0, "c")]
    assert list(without_nul(rows, positions=[0])) == [("a", 1, None), ("b", 2.0, "c")]
    assert list(without_nul(rows, positions=[0, 2])) == [("a", 1, None), ("b", 2.0, "c")]
    assert list(without_nul(rows, positions=[])) == rows
    clean = ("x", 1)
    assert next(without_nul([clean], positions=[0])) is clean  # untouched rows are not copied
