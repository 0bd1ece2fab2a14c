"""sql/schema/ (what a DBA reads, what Compose's database is created with) never disagrees with the code."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from pipeline.db import ensure_schema, make_engine, schema_ddl
from pipeline.schema import SCHEMA_VERSION
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_schema_files_match_the_code(dialect):
    on_disk = (REPO_ROOT / "sql" / "schema" / f"{dialect}.sql").read_text()
    assert on_disk == schema_ddl(dialect), f"run `make schema` to regenerate sql/schema/{dialect}.sql"


def _columns(engine) -> dict:
    inspector = inspect(engine)
    return {
        table: sorted((c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table))
        for table in inspector.get_table_names()
        if table != "schema_version"
    }


@pytest.mark.postgres
def test_database_created_from_the_sql_file_equals_the_pipelines(postgres_url, tmp_path):
    from_file = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with from_file.begin() as conn:
        conn.exec_driver_sql((REPO_ROOT / "sql" / "schema" / "postgresql.sql").read_text())
    by_pipeline = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    ensure_schema(by_pipeline)
    file_columns = _columns(from_file)
    # The pipeline then starts on the file-created database without changing any table.
    ensure_schema(make_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://")))
    assert _columns(from_file) == file_columns
    assert set(file_columns) == set(_columns(by_pipeline)) - {"schema_version"}
    with from_file.connect() as conn:
        assert conn.execute(text("SELECT version FROM schema_version")).scalar() == SCHEMA_VERSION
