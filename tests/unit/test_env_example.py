"""`.env.example` documents every setting the pipeline reads (the settings' names have one owner: config.py)."""

import re
from pathlib import Path

import pipeline.config
import pipeline.providers.coingecko.settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def names_read(module) -> set[str]:
    text = Path(module.__file__).read_text()
    return {name for name in re.findall(r'"([A-Z][A-Z0-9_]*[A-Z0-9])"', text) if pipeline.config.is_setting(name)}


def test_every_setting_is_in_env_example():
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (REPO_ROOT / ".env.example").read_text(), re.M))
    read = names_read(pipeline.config) | names_read(pipeline.providers.coingecko.settings)
    assert read, "found no setting names: the scan is broken"
    assert sorted(read - documented) == []
