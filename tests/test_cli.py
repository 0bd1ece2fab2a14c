"""The command line as a person uses it: ``python -m pipeline ...`` in a subprocess."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from pipeline.cli import build_parser
from tests.conftest import ENV_KEYS, REPO_ROOT


def _subcommands() -> list[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("build_parser() has no subcommands")


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update({
        "PYTHONPATH": str(REPO_ROOT),
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'warehouse.db'}",
        "COINGECKO_BASE_URL": "http://127.0.0.1:9/api/v3",   # nothing listens on the discard port
        "COINGECKO_MAX_RETRIES": "0",
        "COINGECKO_CALLS_PER_MINUTE": "0",
        "COINGECKO_TIMEOUT_SECONDS": "2",
    })
    env.update(extra)
    return env


def pipeline(*args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_parser_has_the_documented_subcommands():
    assert {"run", "replay", "schedule", "status", "schema"} <= set(_subcommands())


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help_with_an_example(command, tmp_path):
    result = pipeline(command, "--help", env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout
    assert "python -m pipeline" in result.stdout      # the example is a real command line
    assert result.stderr == ""


def test_top_level_help_lists_every_subcommand(tmp_path):
    result = pipeline("--help", env=_env(tmp_path))
    assert result.returncode == 0
    for command in _subcommands():
        assert command in result.stdout


@pytest.mark.slow
def test_unreachable_api_gives_one_error_line(tmp_path):
    result = pipeline("run", env=_env(tmp_path))
    assert result.returncode not in (0, None)
    assert result.returncode == 3                    # SourceError.exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert "127.0.0.1:9" in lines[0]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("argv", [("--verbose", "run"), ("run", "--verbose")])
def test_verbose_shows_the_details(tmp_path, argv):
    result = pipeline(*argv, env=_env(tmp_path))
    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) > 1
    assert "Traceback" in result.stderr and "SourceError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error:")


@pytest.mark.slow
def test_bad_database_url_is_a_one_line_config_error(tmp_path):
    result = pipeline("run", env=_env(tmp_path, DATABASE_URL="mysql://x"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "DATABASE_URL" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_sample_run_then_status(tmp_path):
    env = _env(tmp_path)
    run = pipeline("run", "--source", "sample", env=env)
    assert run.returncode == 0, run.stderr
    assert "succeeded" in run.stdout and "source sample" in run.stdout
    assert (tmp_path / "warehouse.db").exists()
    assert any((tmp_path / "data" / "raw").rglob("manifest.json"))
    status = pipeline("status", env=env)
    assert status.returncode == 0, status.stderr
    assert "sample" in status.stdout
    assert "success" in status.stdout
