"""The provider interface: found by folder, named in bronze, and nothing provider-specific in bronze or the sample."""

from __future__ import annotations

import ast
import json
from datetime import datetime
from pathlib import Path

import pytest

from pipeline import bronze
from pipeline.errors import ConfigError
from pipeline.providers.base import COINS, HISTORY, TOTALS, Body
from pipeline.providers.registry import available, get_provider

REPO = Path(__file__).resolve().parents[2]
PROVIDERS = REPO / "tests" / "providers"
AT = datetime(2024, 1, 2, 0, 5)


@pytest.fixture(autouse=True)
def fresh_registry():
    get_provider.cache_clear()
    yield
    get_provider.cache_clear()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    return found | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}


@pytest.mark.parametrize("module", ["pipeline/bronze.py", "pipeline/providers/sample.py", "pipeline/silver/batches.py"])
def test_bronze_silver_and_the_sample_import_no_provider(module):
    assert not [m for m in _imports(REPO / module) if m.startswith("pipeline.providers.coingecko")]


def test_coingecko_is_built_in_and_maps_its_roles():
    provider = get_provider("coingecko")
    assert provider.name == "coingecko" and "coingecko" in available()
    assert dict(provider.endpoints) == {COINS: "markets", TOTALS: "global", HISTORY: "market_chart"}
    assert provider.legacy_key("market_chart", "/coins/bitcoin/market_chart") == "bitcoin"
    assert provider.legacy_key("markets", "/coins/markets") is None


def test_a_folder_on_the_provider_path_is_a_provider(monkeypatch):
    with pytest.raises(ConfigError, match="no provider 'fixed_file'.*found: coingecko"):
        get_provider("fixed_file")
    get_provider.cache_clear()
    monkeypatch.setenv("PIPELINE_PROVIDER_PATH", str(PROVIDERS))
    provider = get_provider("fixed_file")
    assert provider.name == "fixed_file" and "fixed_file" in available()
    records = provider.coin_records([{"slug": "bitcoin", "ticker": "BTC", "price_usd": 1.5, "other": 1}])
    assert records == [{"id": "bitcoin", "symbol": "btc", "current_price": 1.5}]


def test_a_folder_whose_provider_has_another_name_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "liar"
    folder.mkdir()
    (folder / "__init__.py").write_text("class P:\n    name = 'someone_else'\n\nPROVIDER = P()\n")
    monkeypatch.setenv("PIPELINE_PROVIDER_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="calls itself 'someone_else'"):
        get_provider("liar")
    with pytest.raises(ConfigError, match="not a folder name"):
        get_provider("../liar")


def _body(endpoint: str, payload, *, key=None, page=None) -> Body:
    return Body(endpoint, f"/{endpoint}", {}, 200, json.dumps(payload).encode(), AT, 1, page=page, key=key)


def test_bronze_names_the_provider_and_files_bodies_by_endpoint_and_key(tmp_path):
    writer = bronze.BronzeWriter(tmp_path, "run-a", source="backfill", started_at=AT, vs_currency="usd")
    writer.add(_body("market_chart", {"prices": [[1, 2]]}, key="bitcoin"))
    writer.finish(snapshot_at=AT, complete=True)
    run = bronze.find_run(tmp_path, "run-a")
    assert run.manifest["provider"] == "coingecko" and run.provider == "coingecko"
    assert [e["file"] for e in run.manifest["entries"]] == ["market_chart_bitcoin.json"]
    assert list(run.market_charts()) == [("bitcoin", {"prices": [[1, 2]]})]


def test_a_run_kept_before_manifests_named_a_provider_reads_as_coingecko(tmp_path):
    writer = bronze.BronzeWriter(tmp_path, "run-a", source="api", started_at=AT, vs_currency="usd")
    writer.add(_body("markets", [{"id": "a"}, {"id": "b"}], page=1))
    writer.add(Body("market_chart", "/coins/eth/market_chart", {}, 200, b'{"prices": []}', AT, 1))
    path = writer.finish(snapshot_at=AT, complete=True)
    manifest = json.loads(path.read_text())
    del manifest["provider"]
    path.chmod(0o644)
    path.write_text(json.dumps(manifest))
    run = bronze.find_run(tmp_path, "run-a")
    assert run.provider == "coingecko" and run.markets_record_count == 2
    assert [r["id"] for r in run.markets_records()] == ["a", "b"] and run.global_body() is None
    assert list(run.market_charts()) == [("eth", {"prices": []})]  # the key from the path, as before


def test_a_run_of_a_provider_not_installed_is_damaged_not_fatal(tmp_path):
    writer = bronze.BronzeWriter(tmp_path, "run-a", source="api", started_at=AT, vs_currency="usd", provider="nowhere")
    writer.add(_body("quotes", [{"slug": "a"}], page=1))
    writer.finish(snapshot_at=AT, complete=True)
    runs, damaged = bronze.scan_runs(tmp_path)
    assert runs == [] and [d.reason for d in damaged] == [
        "manifest.json names provider 'nowhere', which is not installed here"
    ]
