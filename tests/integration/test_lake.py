"""Silver history in the Delta Lake table (LAKE_URL): live runs append their own rows in one commit, a failed
lake write fails the run and commits nothing, a replay rebuilds the table. Real runs over HTTP (fake
CoinGecko) into SQLite and PostgreSQL; the table is read back with deltalake and with pyarrow.dataset."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable, write_deltalake
from sqlalchemy import text

from pipeline.config import Settings
from pipeline.db import make_engine
from pipeline.flow import replay, run_pipeline
from pipeline.lake import PARTITION, LakeSink, lake_rows, snapshots_predicate
from pipeline.silver.transform import SILVER_COLUMNS, silver_schema
from tests.conftest import make_settings
from tests.fakes.coingecko import load_fixture
from tests.fakes.s3_server import FakeS3

MARKETS_2024 = "markets/markets_250_sparkline_pct1h-1y_2024-12-19_mrmendoza-dev-cryptotracker.json"


@pytest.fixture
def lake_dir(tmp_path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def lake_settings(database_url, tmp_path, fake_coingecko, lake_dir) -> Settings:
    return make_settings(database_url, tmp_path / "data", fake_coingecko.base_url, lake_url=str(lake_dir))


def _value(value: object) -> object:
    """One cell, comparable across SQLite, PostgreSQL and Arrow (timestamps as text, 12 significant digits)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return float(f"{value:.12g}")
    return value


def silver_frame(settings: Settings, snapshot_at: object | None = None) -> pd.DataFrame:
    sql = "SELECT * FROM staging_crypto_market" + (" WHERE snapshot_at = :t" if snapshot_at is not None else "")
    with make_engine(settings.database_url).connect() as conn:
        frame = pd.read_sql(text(sql), conn, params={"t": snapshot_at} if snapshot_at is not None else {})
    for column in ("snapshot_at", "fetched_at", "ath_date", "atl_date", "last_updated"):
        frame[column] = pd.to_datetime(frame[column])
    frame["stale_record"] = frame["stale_record"].map(lambda v: None if pd.isna(v) else bool(v))
    return frame


def rows_of(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    """Silver's columns, row by row, sorted by (id, snapshot_at)."""
    ordered = frame.sort_values(["id", "snapshot_at"])[SILVER_COLUMNS]
    return [tuple(_value(v) for v in row) for row in ordered.astype(object).itertuples(index=False)]


def lake_frame(lake_dir: Path) -> pd.DataFrame:
    return DeltaTable(str(lake_dir)).to_pandas()


def test_a_run_appends_exactly_its_silver_rows(lake_settings, lake_dir, fake_coingecko):
    fake_coingecko.add_fault("nulls")  # some NULLs, to see they stay NULL
    first = run_pipeline(lake_settings, source="api")
    assert first.status == "success"

    table = DeltaTable(str(lake_dir))
    assert table.version() == 0  # one commit for the run
    assert table.metadata().partition_columns == [PARTITION]
    arrow = table.to_pyarrow_table()
    assert arrow.schema == silver_schema().append(pa.field(PARTITION, pa.date32()))  # silver's types kept
    lake = arrow.to_pandas()
    silver = silver_frame(lake_settings, first.snapshot_at)
    assert len(lake) == len(silver) == first.silver_rows == 250
    assert rows_of(lake) == rows_of(silver)  # same ids, prices, NULLs, every column
    assert lake.market_cap.isna().sum() == silver.market_cap.isna().sum() == 3  # the fault's NULLs stay NULL
    assert set(lake[PARTITION]) == {first.snapshot_at.date()}
    # The files sit in the snapshot date's partition folder.
    assert {Path(uri).parent.name for uri in table.file_uris()} == {f"{PARTITION}={first.snapshot_at.date()}"}

    # A second run: a second commit holding only its own snapshot.
    fake_coingecko.set_markets(load_fixture(MARKETS_2024))
    second = run_pipeline(lake_settings, source="api")
    assert second.status == "success"
    table = DeltaTable(str(lake_dir))
    assert table.version() == 1
    assert [h["operation"] for h in table.history()] == ["WRITE", "WRITE"]
    lake = lake_frame(lake_dir)
    assert sorted(lake.snapshot_at.unique()) == [pd.Timestamp(first.snapshot_at), pd.Timestamp(second.snapshot_at)]
    assert rows_of(lake) == rows_of(silver_frame(lake_settings))
    # Another engine: pyarrow's dataset reader over the table's current files of one date.
    day = str(second.snapshot_at.date())
    files = table.file_uris(file_pruning_predicate=[(PARTITION, "=", day)])
    assert ds.dataset(files, format="parquet").to_table().num_rows == 500


def test_the_same_snapshot_twice_is_not_duplicated(lake_settings, lake_dir):
    """The bundled sample has fixed snapshot times: its second run replaces its rows, it does not add to them."""
    first = run_pipeline(lake_settings, source="sample")
    lake = lake_frame(lake_dir)
    assert len(lake) == first.silver_rows > 0
    run_pipeline(lake_settings, source="sample")
    table = DeltaTable(str(lake_dir))
    assert table.version() == 1
    assert rows_of(table.to_pandas()) == rows_of(silver_frame(lake_settings))


def _runs(settings: Settings) -> pd.DataFrame:
    with make_engine(settings.database_url).connect() as conn:
        return pd.read_sql(text("SELECT * FROM pipeline_runs ORDER BY started_at"), conn)


def test_a_failed_lake_write_fails_the_run_and_commits_nothing(database_url, tmp_path, fake_coingecko):
    not_a_folder = tmp_path / "lake-is-a-file"
    not_a_folder.write_text("not a table")
    settings = make_settings(database_url, tmp_path / "data", fake_coingecko.base_url, lake_url=str(not_a_folder))
    with pytest.raises(Exception) as raised:
        run_pipeline(settings, source="api")
    run = _runs(settings).iloc[-1]
    assert run.status == "failed" and run.stage == "silver"
    assert run.error_message == f"lake write to {not_a_folder} failed: it is a file, not a folder"
    assert "\n" not in run.error_message and str(raised.value) == run.error_message
    assert not_a_folder.read_text() == "not a table"
    with make_engine(settings.database_url).connect() as conn:  # gold was not published
        assert conn.execute(text("SELECT COUNT(*) FROM crypto_analytics_mart")).scalar() == 0


def test_a_refused_commit_leaves_the_table_as_it_was(lake_settings, lake_dir):
    """A table the run's rows cannot go into (here: ``id`` is a number there): the run fails, no new version."""
    write_deltalake(
        str(lake_dir),
        pa.table({"id": pa.array([1], pa.int64()), PARTITION: pa.array([dt.date(2020, 1, 1)], pa.date32())}),
        partition_by=[PARTITION],
    )
    with pytest.raises(Exception, match="lake write to .* failed"):
        run_pipeline(lake_settings, source="api")
    run = _runs(lake_settings).iloc[-1]
    assert run.status == "failed" and run.error_message.startswith(f"lake write to {lake_dir} failed: ")
    table = DeltaTable(str(lake_dir))
    assert table.version() == 0 and table.to_pyarrow_table().num_rows == 1


def test_replay_rebuilds_the_lake_from_silver(lake_settings, lake_dir, fake_coingecko, tmp_path):
    # Two runs before there was a lake: the replay builds it.
    no_lake = lake_settings.with_overrides(lake_url=None)
    run_pipeline(no_lake, source="sample")
    fake_coingecko.set_markets(load_fixture(MARKETS_2024))
    fake_coingecko.add_fault("nulls")
    run_pipeline(no_lake, source="api")
    assert not lake_dir.exists()
    silver = rows_of(silver_frame(lake_settings))

    for _ in range(2):  # twice: the second replay replaces, never duplicates
        result = replay(lake_settings)
        assert result.status == "success"
        lake = lake_frame(lake_dir)
        assert len(lake) == len(silver)
        assert rows_of(lake) == silver
        assert not lake.duplicated(["id", "snapshot_at"]).any()
    # One partition per snapshot date (the sample's 2022 days and today's API snapshot).
    dates = {str(d.date()) for d in silver_frame(lake_settings).snapshot_at}
    assert len(dates) > 1 and {p[PARTITION] for p in DeltaTable(str(lake_dir)).partitions()} == dates
    # A live run after the replay appends only its own snapshot.
    fake_coingecko.set_markets(load_fixture(MARKETS_2024))
    run_pipeline(lake_settings, source="api")
    assert rows_of(lake_frame(lake_dir)) == rows_of(silver_frame(lake_settings))


def test_replay_over_a_bigger_lake_drops_what_silver_no_longer_has(lake_settings, lake_dir):
    run_pipeline(lake_settings, source="sample")
    stray = lake_rows(pa.Table.from_pandas(silver_frame(lake_settings).head(3), preserve_index=False))
    stray = stray.set_column(
        SILVER_COLUMNS.index("snapshot_at"),
        "snapshot_at",
        pa.array([dt.datetime(2019, 5, 5, 12)] * 3, pa.timestamp("us")),
    ).set_column(len(SILVER_COLUMNS), PARTITION, pa.array([dt.date(2019, 5, 5)] * 3, pa.date32()))
    write_deltalake(str(lake_dir), stray, mode="append")
    replay(lake_settings)
    assert rows_of(lake_frame(lake_dir)) == rows_of(silver_frame(lake_settings))


def test_the_readme_reading_snippets_run(lake_settings, lake_dir):
    """README's "Reading the lake" snippets (pandas through deltalake, pyarrow's dataset, Polars), run as written."""
    run_pipeline(lake_settings, source="sample")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Reading the lake") :]
    start = section.index("```python\n") + len("```python\n")
    code = section[start : section.index("```", start)]
    assert '"data/lake"' in code
    scope: dict[str, object] = {}
    exec(code.replace('"data/lake"', repr(str(lake_dir))), scope)  # noqa: S102 - the README's own code
    silver = silver_frame(lake_settings)
    day = silver[silver.snapshot_at.dt.date == dt.date(2022, 10, 16)]
    assert len(scope["prices"]) == len(day) > 0
    assert scope["bitcoin"].num_rows == (silver.id == "bitcoin").sum() > 0
    averages = scope["averages"].to_pandas().set_index("id")["current_price"]  # Polars' own figures
    expected = silver.groupby("id")["current_price"].mean()
    assert len(averages) == len(expected) > 0
    assert averages.sort_index().to_list() == pytest.approx(expected.sort_index().to_list(), nan_ok=True)


# -- on object storage: moto's S3 API on loopback ---------------------------------------------

SECRET = "lake-test-secret-key"  # the lake's own keys (moto takes any)


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """A real S3 API over HTTP (moto's server, tests/fakes/s3_server.py) with a bucket ``lake``."""
    with FakeS3() as s3:
        s3.fs.create_dir("lake")
        yield s3.endpoint_url


def _s3_settings(settings: Settings, url: str, endpoint: str) -> Settings:
    """The lake settings as the environment gives them (LAKE_URL and the standard AWS_* variables)."""
    env = Settings.from_env(
        {
            "LAKE_URL": url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,  # http: AWS_ALLOW_HTTP is implied
        }
    )
    return settings.with_overrides(lake_url=env.lake_url, s3=env.s3)


def test_a_lake_on_s3(settings, s3_endpoint, caplog):
    caplog.set_level(logging.DEBUG)
    s3 = _s3_settings(settings, "s3://lake/silver", s3_endpoint)
    first = run_pipeline(s3, source="api")
    second = run_pipeline(s3, source="api")
    options = dict(s3.lake_storage_options)
    table = DeltaTable("s3://lake/silver", storage_options=options)
    assert table.version() == 1
    assert all(uri.startswith(f"s3://lake/silver/{PARTITION}=") for uri in table.file_uris())
    assert rows_of(table.to_pandas()) == rows_of(silver_frame(s3)) and first.silver_rows + second.silver_rows == 500
    replay(s3)
    assert rows_of(DeltaTable("s3://lake/silver", storage_options=options).to_pandas()) == rows_of(silver_frame(s3))
    assert SECRET not in caplog.text


def test_a_missing_bucket_fails_the_run_in_one_line_without_the_secret(settings, s3_endpoint, caplog):
    caplog.set_level(logging.DEBUG)
    s3 = _s3_settings(settings, "s3://no-such-bucket/silver", s3_endpoint)
    with pytest.raises(Exception, match="no-such-bucket"):
        run_pipeline(s3, source="api")
    run = _runs(s3).iloc[-1]
    assert run.status == "failed" and "\n" not in run.error_message and "no-such-bucket" in run.error_message
    assert SECRET not in run.error_message and SECRET not in caplog.text


# -- the sink on its own (no database) ---------------------------------------------------------


def _silver_batch(when: dt.datetime, ids: list[str]) -> pa.Table:
    n = len(ids)
    columns = {name: pa.nulls(n, silver_schema().field(name).type) for name in SILVER_COLUMNS}
    columns["id"] = pa.array(ids)
    columns["snapshot_at"] = pa.array([when] * n, pa.timestamp("us"))
    columns["market_cap"] = pa.array([1.5] * (n - 1) + [None], pa.float64())
    return pa.table(columns, schema=silver_schema())


def test_a_failed_replay_puts_back_the_table_it_started_from(tmp_path):
    url = str(tmp_path / "lake")
    before = LakeSink(url, None, rebuild=False)
    before.add(_silver_batch(dt.datetime(2026, 1, 1, 10), ["a", "b"]))
    before.commit()
    rebuild = LakeSink(url, None, rebuild=True)
    rebuild.add(_silver_batch(dt.datetime(2026, 2, 1, 10), ["c"]))
    rebuild.add(_silver_batch(dt.datetime(2026, 2, 2, 10), ["d"]))
    assert DeltaTable(url).to_pyarrow_table().num_rows == 2 and rebuild.commits == 2
    rebuild.abort()  # the replay failed after its lake commits
    table = DeltaTable(url).to_pandas()
    assert sorted(table.id) == ["a", "b"] and table.market_cap.isna().sum() == 1


def test_a_failed_live_run_writes_nothing(tmp_path):
    url = str(tmp_path / "lake")
    sink = LakeSink(url, None, rebuild=False)
    sink.add(_silver_batch(dt.datetime(2026, 1, 1, 10), ["a"]))
    sink.abort()
    sink.commit()
    assert not Path(url).exists()


def test_the_predicate_names_the_snapshots_and_their_dates():
    times = [dt.datetime(2026, 1, 2, 3, 4, 5, 6), dt.datetime(2026, 1, 1, 23, 59)]
    assert snapshots_predicate(times) == (
        "snapshot_date IN ('2026-01-01', '2026-01-02') "
        "AND snapshot_at IN ('2026-01-01 23:59:00', '2026-01-02 03:04:05.000006')"
    )


def test_lake_settings_from_the_environment():
    assert Settings.from_env({}).lake_url is None
    folder = Settings.from_env({"LAKE_URL": "/data/lake/", "AWS_SECRET_ACCESS_KEY": "s3cr3t"})
    assert folder.lake_url == "/data/lake" and folder.lake_storage_options == ()
    s3 = Settings.from_env(
        {
            "LAKE_URL": "s3://bucket/silver",
            "AWS_ACCESS_KEY_ID": "key",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        }
    )
    assert dict(s3.lake_storage_options) == {
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",
    }
    assert "s3cr3t" not in repr(s3) and "s3cr3t" not in str(s3.describe())
    assert s3.describe()["lake_url"] == "s3://bucket/silver"


def test_bronze_and_the_lake_read_the_same_aws_settings():
    """One reader of AWS_*: AWS_REGION wins over AWS_DEFAULT_REGION for both stores (as in the AWS
    SDKs), and an AWS_ALLOW_HTTP that is set is passed on as given, not overridden."""
    settings = Settings.from_env(
        {
            "LAKE_URL": "s3://bucket/silver",
            "BRONZE_URL": "s3://bucket/bronze",
            "AWS_ACCESS_KEY_ID": "key",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t",
            "AWS_REGION": "eu-central-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_ALLOW_HTTP": "false",
        }
    )
    assert settings.s3.region == "eu-central-1"
    lake = dict(settings.lake_storage_options)
    assert lake["AWS_REGION"] == "eu-central-1" and lake["AWS_ALLOW_HTTP"] == "false"
    assert lake == settings.s3.delta_options()
    only_default = Settings.from_env({"AWS_DEFAULT_REGION": "us-east-1", "LAKE_URL": "s3://b/p"})
    assert only_default.s3.region == "us-east-1" and dict(only_default.lake_storage_options) == {
        "AWS_REGION": "us-east-1"
    }
