"""``registry/<strategy>.json``: the champion record of each promoted strategy.

The record is the promotion's commit point (see `tierline.promotion.gate`): it is written
atomically, under the strategy's lock ``registry/.<strategy>.lock``, and the MLflow aliases
and the freqtrade config are re-derived from it. Its top level IS the champion (the freqtrade
shim reads ``strategy`` and ``params`` from it)::

    {"schema_version": 1, "strategy", "params", "exchange", "symbols": [...], "timeframe",
     "execution": {"fee", "stake", "initial_cash"},
     "data": [{"exchange", "symbol", "timeframe", "start", "end", "rows", "fingerprint",
               "synthetic"}],
     "code_version": {...}, "runs": {"parent", "tier1", "tier1_sweep",
                                     "tier2": {"nautilus", "freqtrade"}, "tier3"},
     "candidate_rank", "policy": {"path", "sha256"},
     "verdict": {"passed": true, "checks": [{"name", "tier", "op", "threshold", "value",
                                             "passed", "note"}]},
     "model": {"name": "tierline-<strategy>", "version"}, "promoted_at" (ISO UTC),
     "previous": <the previous champion record without its own "previous", or null>}

A rollback makes ``previous`` the champion again and adds ``rolled_back_at`` and
``rolled_back_from`` (the demoted champion without its ``previous``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tierline.data.atomic import write_text_atomic
from tierline.errors import ConfigError

__all__ = [
    "DEFAULT_REGISTRY",
    "MODEL_PREFIX",
    "REGISTRY_ENV",
    "SCHEMA_VERSION",
    "list_records",
    "lock_path",
    "model_name",
    "read_record",
    "record_path",
    "registry_root",
    "strategy_lock",
    "write_record",
]

#: The registry folder (relative to the current directory) unless told otherwise.
DEFAULT_REGISTRY = Path("registry")
#: Environment variable naming the registry folder (``--registry`` wins).
REGISTRY_ENV = "TIERLINE_REGISTRY_DIR"
#: Registered MLflow models of promoted strategies are named ``tierline-<strategy>``.
MODEL_PREFIX = "tierline-"
SCHEMA_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def registry_root(root: Path | str | None = None) -> Path:
    """Return the registry folder: ``root``, else ``$TIERLINE_REGISTRY_DIR``, else ``registry``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(REGISTRY_ENV)
    return Path(env) if env else DEFAULT_REGISTRY


def _check_name(strategy: str) -> str:
    if not isinstance(strategy, str) or not _NAME.fullmatch(strategy):
        raise ConfigError(
            f"strategy name {strategy!r} cannot name a registry record "
            "(letters, digits, '_', '-', '.')"
        )
    return strategy


def model_name(strategy: str) -> str:
    """Return the MLflow registered model of a strategy: ``tierline-<strategy>``."""
    return MODEL_PREFIX + _check_name(strategy)


def record_path(strategy: str, root: Path | str | None = None) -> Path:
    """Return ``<root>/<strategy>.json``."""
    return registry_root(root) / f"{_check_name(strategy)}.json"


def lock_path(strategy: str, root: Path | str | None = None) -> Path:
    """Return the strategy's lock file ``<root>/.<strategy>.lock``."""
    return registry_root(root) / f".{_check_name(strategy)}.lock"


def read_record(strategy: str, root: Path | str | None = DEFAULT_REGISTRY) -> dict[str, Any] | None:
    """Return the champion record of ``strategy``, or None when it has none.

    Parameters
    ----------
    strategy
        Strategy name.
    root
        Registry folder (None: ``$TIERLINE_REGISTRY_DIR`` or ``registry``).

    Raises
    ------
    ConfigError
        If the file exists but is not a JSON object naming this strategy.
    """
    path = record_path(strategy, root)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"registry record {path}: cannot be read ({e.strerror or e})") from e
    try:
        record = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"registry record {path}: not valid JSON ({e})") from e
    if not isinstance(record, dict) or record.get("strategy") != strategy:
        raise ConfigError(
            f'registry record {path}: expected a JSON object with "strategy": {strategy!r}'
        )
    return record


def write_record(record: Mapping[str, Any], root: Path | str | None = None) -> Path:
    """Write a champion record atomically (whole or not at all); return its path.

    Parameters
    ----------
    record
        The record (its ``strategy`` names the file).
    root
        Registry folder (None: ``$TIERLINE_REGISTRY_DIR`` or ``registry``).

    Raises
    ------
    ConfigError
        If the record has no valid ``strategy`` or holds a non-finite number.
    """
    path = record_path(str(record.get("strategy")), root)
    try:
        text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    except ValueError as e:
        raise ConfigError(f"registry record {path}: {e} (NaN/inf cannot be stored)") from e
    write_text_atomic(path, text)
    return path


def list_records(root: Path | str | None = None) -> Iterator[dict[str, Any]]:
    """Yield every champion record of the registry folder, by strategy name."""
    folder = registry_root(root)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        record = read_record(path.stem, folder)
        if record is not None:
            yield record


@contextmanager
def strategy_lock(
    strategy: str, root: Path | str | None = None, *, timeout: float | None = 600.0
) -> Iterator[None]:
    """Hold the strategy's registry lock (promotions, rollbacks and syncs take it).

    Parameters
    ----------
    strategy
        Strategy name (the lock is ``<root>/.<strategy>.lock``).
    root
        Registry folder (None: ``$TIERLINE_REGISTRY_DIR`` or ``registry``).
    timeout
        Seconds to wait for another holder (None: forever).

    Raises
    ------
    tierline.promotion.lock.LockTimeout
        If another process held it longer than ``timeout``.
    """
    from tierline.promotion.lock import file_lock

    with file_lock(
        lock_path(strategy, root), timeout=timeout, what=f"registry change of {strategy}"
    ):
        yield
