"""Finding a provider by name: a provider is one folder, found where providers live.

Two places are searched, in order:

1. the sub-packages of :mod:`pipeline.providers` (``pipeline/providers/coingecko/``): the
   providers the product ships;
2. the folders named by ``PIPELINE_PROVIDER_PATH`` (directories separated like PATH,
   read through :func:`pipeline.config.provider_dirs`): each sub-folder holding an
   ``__init__.py`` is a provider, e.g. the tests' ``tests/providers/fixed_file/``.

A folder is a provider when its package defines ``PROVIDER`` (see
:class:`pipeline.providers.base.Provider`) whose ``name`` is the folder's name. Adding a
provider therefore means adding one folder; nothing is listed by hand. Lookups are
cached per process (replay workers find the same providers through the same setting).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import cast

from pipeline.config import provider_dirs
from pipeline.errors import ConfigError
from pipeline.providers.base import Provider

_BUILT_IN = Path(__file__).resolve().parent


def _load_folder(folder: Path) -> ModuleType:
    """Import the package in ``folder`` under a name of its own (it is not on sys.path)."""
    module_name = f"pipeline_providers.{folder.name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(
        module_name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:
        raise ConfigError(f"provider folder {folder} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _module(name: str) -> ModuleType | None:
    if (_BUILT_IN / name / "__init__.py").is_file():
        return importlib.import_module(f"pipeline.providers.{name}")
    for directory in provider_dirs():
        folder = directory / name
        if (folder / "__init__.py").is_file():
            return _load_folder(folder)
    return None


def available() -> list[str]:
    """Names of every provider folder found (built-in first)."""
    names = [p.name for p in sorted(_BUILT_IN.iterdir()) if (p / "__init__.py").is_file()]
    for directory in provider_dirs():
        if directory.is_dir():
            names += [p.name for p in sorted(directory.iterdir()) if (p / "__init__.py").is_file()]
    return names


@cache
def get_provider(name: str) -> Provider:
    """The provider called ``name``; ConfigError when no folder provides it."""
    if not name.isidentifier():
        raise ConfigError(f"provider name {name!r} is not a folder name a provider can have")
    module = _module(name)
    provider = getattr(module, "PROVIDER", None) if module is not None else None
    if provider is None:
        raise ConfigError(
            f"no provider {name!r}: expected a folder {name}/ with PROVIDER in pipeline/providers/ "
            f"or under PIPELINE_PROVIDER_PATH (found: {', '.join(available()) or 'none'})"
        )
    if provider.name != name:
        raise ConfigError(f"the provider in folder {name}/ calls itself {provider.name!r}")
    return cast(Provider, provider)  # a module attribute, checked by name above
