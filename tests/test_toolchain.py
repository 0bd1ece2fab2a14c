"""The toolchain CI enforces: ruff's lint rules and formatter on the whole tree, mypy --strict on pipeline/."""

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_lint_passes():
    result = run_tool("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_nothing_to_change():
    result = run_tool("ruff", "format", "--check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_pre_commit_runs_the_same_tools():
    config = (REPO_ROOT / ".pre-commit-config.yaml").read_text()
    assert "ruff check" in config and "ruff format --check" in config


def test_mypy_strict_passes_on_the_pipeline_package():
    result = run_tool("mypy", "--no-incremental")  # files and strictness: [tool.mypy] in pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr


def test_test_modules_have_unique_names():
    """pytest imports test modules by basename (the test folders are not packages): a repeated name stops the run."""
    names = [path.name for path in (REPO_ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
