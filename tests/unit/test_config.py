"""Settings from the environment: defaults, normalisation, validation, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import PRO_BASE_URL, PUBLIC_BASE_URL, Settings, mask_url, normalize_database_url
from pipeline.errors import ConfigError


def test_defaults():
    s = Settings.from_env({})
    assert s.database_url == "sqlite:///data/warehouse.db"
    assert s.data_dir == Path("data") and s.raw_dir == Path("data/raw")
    assert s.top_n == 250 and s.interval_minutes == 15 and s.vs_currency == "usd"
    assert s.coingecko_base_url == PUBLIC_BASE_URL == "https://api.coingecko.com/api/v3"
    assert s.api_key is None and s.api_plan == "demo" and s.api_key_header == "x-cg-demo-api-key"
    assert s.is_postgres is False
    assert (s.calls_per_minute, s.max_retries, s.request_timeout_seconds, s.fetch_deadline_seconds) == (
        25.0,
        5,
        20.0,
        300.0,
    )


def test_database_defaults_under_data_dir(tmp_path):
    s = Settings.from_env({"DATA_DIR": str(tmp_path / "d")})
    assert s.database_url == f"sqlite:///{tmp_path / 'd' / 'warehouse.db'}"
    assert s.raw_dir == tmp_path / "d" / "raw"


def test_empty_values_mean_default():
    s = Settings.from_env({"PIPELINE_TOP_N": "", "DATABASE_URL": "", "COINGECKO_API_KEY": "  ", "VS_CURRENCY": ""})
    assert s.top_n == 250 and s.database_url == "sqlite:///data/warehouse.db"
    assert s.api_key is None and s.vs_currency == "usd"


def test_reads_os_environ_when_no_dict(monkeypatch):
    monkeypatch.setenv("PIPELINE_TOP_N", "42")
    assert Settings.from_env().top_n == 42


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql://u:p@db:5432/crypto", "postgresql+psycopg://u:p@db:5432/crypto"),
        ("postgres://u:p@db/crypto", "postgresql+psycopg://u:p@db/crypto"),
        ("postgresql+psycopg://u@db/crypto", "postgresql+psycopg://u@db/crypto"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_postgres_urls_use_psycopg3(url, expected):
    assert normalize_database_url(url) == expected
    s = Settings.from_env({"DATABASE_URL": url})
    assert s.database_url == expected
    assert s.is_postgres == expected.startswith("postgresql")


def test_values_are_parsed():
    s = Settings.from_env(
        {
            "PIPELINE_TOP_N": "100",
            "PIPELINE_INTERVAL_MINUTES": "5",
            "VS_CURRENCY": " EUR ",
            "COINGECKO_CALLS_PER_MINUTE": "0",
            "COINGECKO_MAX_RETRIES": "0",
            "COINGECKO_BASE_URL": "http://127.0.0.1:8000/api/v3/",
        }
    )
    assert (s.top_n, s.interval_minutes, s.vs_currency, s.calls_per_minute, s.max_retries) == (100, 5, "eur", 0.0, 0)
    assert s.coingecko_base_url == "http://127.0.0.1:8000/api/v3"


def test_pro_plan_with_key_uses_pro_url_and_header():
    s = Settings.from_env({"COINGECKO_API_PLAN": "Pro", "COINGECKO_API_KEY": "k"})
    assert s.api_plan == "pro" and s.coingecko_base_url == PRO_BASE_URL == "https://pro-api.coingecko.com/api/v3"
    assert s.api_key_header == "x-cg-pro-api-key"


def test_pro_plan_without_key_stays_public_and_demo_key_stays_public():
    assert Settings.from_env({"COINGECKO_API_PLAN": "pro"}).coingecko_base_url == PUBLIC_BASE_URL
    demo = Settings.from_env({"COINGECKO_API_KEY": "k"})
    assert demo.coingecko_base_url == PUBLIC_BASE_URL and demo.api_key_header == "x-cg-demo-api-key"


def test_explicit_base_url_wins_over_pro():
    s = Settings.from_env({"COINGECKO_API_PLAN": "pro", "COINGECKO_API_KEY": "k", "COINGECKO_BASE_URL": "http://x/v3"})
    assert s.coingecko_base_url == "http://x/v3" and s.api_key_header == "x-cg-pro-api-key"


@pytest.mark.parametrize(
    "name, value",
    [
        ("PIPELINE_TOP_N", "abc"),
        ("PIPELINE_TOP_N", "0"),
        ("PIPELINE_TOP_N", "2.5"),
        ("PIPELINE_INTERVAL_MINUTES", "-1"),
        ("PIPELINE_REFRESH_COOLDOWN_SECONDS", "-5"),
        ("COINGECKO_MAX_RETRIES", "-1"),
        ("COINGECKO_MAX_RETRIES", "many"),
        ("COINGECKO_CALLS_PER_MINUTE", "fast"),
        ("COINGECKO_TIMEOUT_SECONDS", "-2"),
        ("COINGECKO_DEADLINE_SECONDS", "5m"),
        ("COINGECKO_BACKOFF_SECONDS", "-0.1"),
        ("PIPELINE_LOCK_TTL_SECONDS", "x"),
        ("COINGECKO_MAX_RESPONSE_BYTES", "0"),
        ("COINGECKO_MAX_RESPONSE_BYTES", "20MB"),
        ("PIPELINE_MIN_COVERAGE", "1.5"),
        ("PIPELINE_MIN_COVERAGE", "-0.1"),
        ("PIPELINE_MIN_COVERAGE", "90%"),
        ("COINGECKO_INTERACTIVE_DEADLINE_SECONDS", "-1"),
        ("COINGECKO_INTERACTIVE_MAX_RETRIES", "-1"),
        ("COINGECKO_INTERACTIVE_MAX_RETRIES", "one"),
        ("COINGECKO_API_PLAN", "enterprise"),
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "warehouse.db"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    message = str(info.value)
    assert name in message and "\n" not in message
    assert info.value.exit_code == 2


def test_hostile_response_defaults():
    s = Settings.from_env({})
    assert s.max_response_bytes == 20 * 1024 * 1024 and s.min_coverage == 0.9
    assert (s.interactive_deadline_seconds, s.interactive_max_retries) == (10.0, 1)


def test_hostile_response_settings_are_parsed():
    s = Settings.from_env(
        {
            "COINGECKO_MAX_RESPONSE_BYTES": "1048576",
            "PIPELINE_MIN_COVERAGE": "0.75",
            "COINGECKO_INTERACTIVE_DEADLINE_SECONDS": "4.5",
            "COINGECKO_INTERACTIVE_MAX_RETRIES": "0",
        }
    )
    assert (s.max_response_bytes, s.min_coverage) == (1048576, 0.75)
    assert (s.interactive_deadline_seconds, s.interactive_max_retries) == (4.5, 0)
    assert Settings.from_env({"PIPELINE_MIN_COVERAGE": "1"}).min_coverage == 1.0
    assert Settings.from_env({"PIPELINE_MIN_COVERAGE": "0"}).min_coverage == 0.0


@pytest.mark.parametrize(
    "name",
    [
        "COINGECKO_TIMEOUT_SECONDS",
        "COINGECKO_DEADLINE_SECONDS",
        "PIPELINE_MIN_COVERAGE",
        "COINGECKO_INTERACTIVE_DEADLINE_SECONDS",
    ],
)
def test_nan_is_a_bad_value(name):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: "nan"})


# ---- secrets ----------------------------------------------------------------------


def test_describe_masks_api_key_and_db_password():
    s = Settings.from_env({"COINGECKO_API_KEY": "CG-supersecret", "DATABASE_URL": "postgresql://app:hunter2@db:5432/c"})
    described = s.describe()
    text = repr(described)
    assert "CG-supersecret" not in text and "hunter2" not in text
    assert described["api_key"] == "set"
    assert described["database_url"] == "postgresql+psycopg://app:***@db:5432/c"
    assert Settings.from_env({}).describe()["api_key"] == "not set"
    assert "CG-supersecret" not in repr(s)  # the key is kept out of the dataclass repr


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql+psycopg://app:hunter2@db:5432/c", "postgresql+psycopg://app:***@db:5432/c"),
        ("postgresql://app:p%40ss%2Fw0rd@db/c", "postgresql://app:***@db/c"),
        ("postgresql://app@db/c", "postgresql://app@db/c"),
        ("sqlite:///data/warehouse.db", "sqlite:///data/warehouse.db"),
    ],
)
def test_mask_url(url, expected):
    assert mask_url(url) == expected


def test_with_overrides_keeps_the_rest():
    s = Settings.from_env({"PIPELINE_TOP_N": "10"})
    t = s.with_overrides(max_retries=0)
    assert t.max_retries == 0 and t.top_n == 10 and s.max_retries == 5


def test_every_variable_the_settings_read_is_a_setting_name():
    """Tests clear the settings by ``is_setting``: a variable outside it would leak into tests."""
    import inspect
    import re

    from pipeline import config

    source = inspect.getsource(config.Settings.from_env)
    names = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', source))
    assert len(names) > 20
    assert [name for name in names if not config.is_setting(name)] == []
