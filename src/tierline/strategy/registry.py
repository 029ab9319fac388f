"""Finding strategies: the built-ins and the files users drop into their strategies folder."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from pathlib import Path

from tierline.errors import ConfigError
from tierline.strategy.contract import Strategy

__all__ = ["BUILTIN_MODULES", "STRATEGIES_ENV", "get_strategy", "list_strategies", "strategies_dir"]

logger = logging.getLogger(__name__)

#: Environment variable naming the workspace strategies folder (default ``./strategies``).
STRATEGIES_ENV = "TIERLINE_STRATEGIES_DIR"
#: Built-in strategy modules (package ``tierline.strategies``).
BUILTIN_MODULES: tuple[str, ...] = ("sma_cross", "rsi_reversion", "donchian_breakout")


def strategies_dir() -> Path:
    """Return the workspace strategies folder: ``$TIERLINE_STRATEGIES_DIR`` or ``./strategies``."""
    return Path(os.environ.get(STRATEGIES_ENV, "strategies"))


def _from_module(module: object) -> list[Strategy]:
    return [v for v in vars(module).values() if isinstance(v, Strategy)]


def _load_file(path: Path) -> list[Strategy]:
    mod_name = f"tierline_user_strategies.{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise ConfigError(
            f"{path}: loading the strategy file failed: {type(e).__name__}: {e}"
        ) from e
    return _from_module(module)


def list_strategies(directory: Path | None = None) -> dict[str, Strategy]:
    """Return every strategy by name: built-ins, then the workspace folder's ``*.py`` files.

    Raises
    ------
    ConfigError
        If a file fails to load or two strategies share a name.
    """
    found: dict[str, Strategy] = {}

    def add(s: Strategy, where: str) -> None:
        if s.name in found and found[s.name] is not s:
            raise ConfigError(
                f"two strategies are named {s.name!r} ({found[s.name].source} and {where}); "
                "rename one"
            )
        found[s.name] = s

    for mod in BUILTIN_MODULES:
        for s in _from_module(importlib.import_module(f"tierline.strategies.{mod}")):
            add(s, f"tierline.strategies.{mod}")
    folder = directory or strategies_dir()
    if folder.is_dir():
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            for s in _load_file(path):
                add(s, str(path))
    return found


def get_strategy(name: str, directory: Path | None = None) -> Strategy:
    """Return the strategy called ``name``.

    Raises
    ------
    ConfigError
        If there is none; the message lists the known names.
    """
    found = list_strategies(directory)
    if name not in found:
        raise ConfigError(
            f"unknown strategy {name!r}; known: {', '.join(sorted(found))} "
            f"(user strategies are read from {directory or strategies_dir()})"
        )
    return found[name]
