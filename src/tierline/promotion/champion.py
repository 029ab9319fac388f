"""Making, restoring and repairing a champion: registry/, the MLflow registry, freqtrade config.

Three places describe a strategy's champion: its record ``registry/<strategy>.json``, the
aliases ``champion`` and ``previous`` of the MLflow registered model ``tierline-<strategy>``,
and the freqtrade config ``freqtrade/user_data/config.<strategy>.json``. No transaction spans
them, so one of them is the truth and the others are derived from it:

**The registry record is the commit point.** The aliases and the freqtrade config are derived
from it (`reconcile`): ``champion`` = ``record.model.version``; ``previous`` =
``record.previous.model.version``, or no alias when there is no previous champion (or no
record); the config = `tierline.promotion.handoff.write_freqtrade_config` of the record.

A promotion (`commit_champion`), under the strategy's lock ``registry/.<strategy>.lock``:

1. reconcile the aliases with the current record (repairs an earlier interruption);
2. register a new model version (the pyfunc, tagged with the verdict); no alias points at it,
   so until step 4 it is an inert orphan;
3. build the new freqtrade config in memory (a config that cannot be built stops here);
4. write the new record atomically, the old champion moved into ``previous`` -- COMMIT;
5. write the freqtrade config;
6. move ``champion`` to the new version and ``previous`` to the old champion's.

Interrupted before 4 (an error, Ctrl-C, a kill): the record, the aliases and the config are
the previous champion's, untouched; at most an orphan model version exists (harmless; tag
``tierline.committed`` absent). Interrupted after 4: the new champion is committed and the
previous one is kept in its ``previous``; the aliases or the config may lag, which
``tierline registry ls`` reports and the next promote, rollback or ``tierline registry sync``
repairs. A rollback follows the same order.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierline.errors import ConfigError, TierlineError
from tierline.promotion.registry import (
    model_name,
    read_record,
    record_path,
    registry_root,
    strategy_lock,
    write_record,
)

if TYPE_CHECKING:
    from tierline.promotion.gate import PromotionRequest, Verdict
    from tierline.promotion.policy import Policy
    from tierline.tracking import Tracker

__all__ = [
    "CHAMPION",
    "PREVIOUS",
    "Places",
    "build_record",
    "commit_champion",
    "consistency",
    "promote",
    "reconcile",
    "rollback",
]

logger = logging.getLogger(__name__)

#: MLflow aliases of the registered model.
CHAMPION = "champion"
PREVIOUS = "previous"
_MODEL_LOADER = "tierline.promotion.model"


def _say(msg: str) -> None:
    print(msg, flush=True)


def _now() -> str:
    # Microseconds: ``promoted_at`` also identifies the promotion a freqtrade config was
    # written for (two promotions under the lock are never a microsecond apart).
    return datetime.now(tz=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Places:
    """Where a strategy's champion lives: the registry folder, MLflow and the freqtrade config.

    Parameters
    ----------
    tracker
        The MLflow store (runs and model registry).
    root
        Registry folder (default: ``$TIERLINE_REGISTRY_DIR`` or ``registry``).
    freqtrade_config
        Path of the freqtrade config to write (default
        `tierline.promotion.handoff.champion_config_path`); a ``{strategy}`` in it is filled.
    lock_timeout
        Seconds to wait for another promotion of the same strategy (None = forever).
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        root: Path | str | None = None,
        freqtrade_config: Path | str | None = None,
        lock_timeout: float | None = 600.0,
    ) -> None:
        self.tracker = tracker
        self.root = registry_root(root)
        self._ft = None if freqtrade_config is None else str(freqtrade_config)
        self.lock_timeout = lock_timeout

    def config_path(self, strategy: str) -> Path:
        """Return the freqtrade config path of ``strategy``."""
        if self._ft is not None:
            return Path(self._ft.replace("{strategy}", strategy))
        from tierline.promotion.handoff import champion_config_path

        return champion_config_path(strategy)


# ----------------------------------------------------------------------------- records


def _strip(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {k: v for k, v in record.items() if k not in ("previous", "rolled_back_from")}


def build_record(
    verdict: Verdict,
    *,
    version: str,
    previous: Mapping[str, Any] | None,
    policy: Policy,
) -> dict[str, Any]:
    """Return the registry record of a passing verdict registered as model ``version``.

    Parameters
    ----------
    verdict
        The gate's passing verdict (candidate, evidence, checks).
    version
        The MLflow model version registered for it.
    previous
        The current champion record, kept (without its own ``previous``) as ``previous``;
        None for a first promotion.
    policy
        The policy the verdict was reached under (path and SHA-256 are recorded).
    """
    from tierline.promotion.gate import execution_config
    from tierline.promotion.registry import SCHEMA_VERSION
    from tierline.tracking import code_version

    rec = verdict.pipeline
    ds = rec.dataset
    tags = rec.tags
    return {
        "schema_version": SCHEMA_VERSION,
        "strategy": verdict.strategy,
        "params": dict(verdict.params),
        "exchange": ds.exchange,
        "symbols": [ds.symbol],
        "timeframe": ds.timeframe,
        "execution": execution_config(rec),
        "data": [
            {
                "exchange": ds.exchange,
                "symbol": ds.symbol,
                "timeframe": ds.timeframe,
                "start": ds.start,
                "end": ds.end,
                "rows": ds.rows,
                "fingerprint": ds.fingerprint,
                "synthetic": ds.synthetic,
            }
        ],
        "code_version": {
            "code_version": tags.get("code_version", ""),
            "git_commit": tags.get("git_commit", ""),
            "git_dirty": tags.get("git_dirty", ""),
            "tierline_version": tags.get("tierline_version", ""),
            "gate_code_version": code_version()["code_version"],
        },
        "runs": verdict.runs(),
        "candidate_rank": verdict.rank,
        "policy": {"path": str(policy.path), "sha256": policy.sha256},
        "verdict": {"passed": verdict.passed, "checks": [c.to_dict() for c in verdict.checks]},
        "model": {"name": model_name(verdict.strategy), "version": str(version)},
        "promoted_at": _now(),
        "previous": _strip(previous),
    }


def _version(record: Mapping[str, Any] | None) -> str | None:
    if not record:
        return None
    model = record.get("model") or {}
    version = model.get("version")
    return None if version is None else str(version)


def _wanted_aliases(record: Mapping[str, Any] | None) -> dict[str, str | None]:
    prev = record.get("previous") if record else None
    return {CHAMPION: _version(record), PREVIOUS: _version(prev)}


# ----------------------------------------------------------------------------- repair


def consistency(strategy: str, places: Places) -> list[str]:
    """Return how MLflow and the freqtrade config differ from the registry record (no change).

    The aliases must be the record's versions; the freqtrade config must exist and be the
    config of the record's promotion (its ``tierline.promoted_at`` is the record's: a config
    left by an earlier promotion or rollback trades the wrong market or timeframe). The
    config's policy-derived limits are not compared (that needs the policy; ``tierline
    registry sync`` rewrites them).

    Parameters
    ----------
    strategy
        Strategy name.
    places
        Where its champion lives.

    Returns
    -------
    list of str
        One line per difference; empty when consistent.
    """
    record = read_record(strategy, places.root)
    name = model_name(strategy)
    problems = []
    for alias, want in _wanted_aliases(record).items():
        have = places.tracker.get_alias_version(name, alias)
        if have != want:
            problems.append(
                f"MLflow {name}@{alias} is {have or 'not set'}, the registry says {want or 'none'}"
            )
    if record is not None:
        problem = _config_problem(places.config_path(strategy), record)
        if problem:
            problems.append(problem)
    return problems


def _config_problem(path: Path, record: Mapping[str, Any]) -> str | None:
    """Return why the freqtrade config at ``path`` is not the record's, or None."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return f"freqtrade config {path} is missing"
    except (OSError, ValueError) as e:
        return f"freqtrade config {path} cannot be read ({e})"
    section = doc.get("tierline") if isinstance(doc, dict) else None
    have = section.get("promoted_at") if isinstance(section, dict) else None
    want = record.get("promoted_at")
    if have != want:
        return (
            f"freqtrade config {path} is of the promotion of {have or 'unknown time'}, the "
            f"registry's champion was promoted at {want}"
        )
    return None


def _sync_aliases(strategy: str, record: Mapping[str, Any] | None, places: Places) -> list[str]:
    name = model_name(strategy)
    done = []
    for alias, want in _wanted_aliases(record).items():
        have = places.tracker.get_alias_version(name, alias)
        if have == want:
            continue
        if want is not None and not _exists(places, name, want):
            # e.g. a record committed to git, promoted against another MLflow store
            logger.warning("%s version %s (registry/) is not in %s", name, want, places.tracker.uri)
            done.append(
                f"{name} version {want}, named by the registry for {alias!r}, is not in "
                f"{places.tracker.uri}: alias left {'unset' if have is None else 'as it was'}"
            )
            continue
        if want is None:
            places.tracker.delete_alias(name, alias)
            done.append(f"removed {name}@{alias} (was version {have})")
        else:
            places.tracker.set_alias(name, alias, want)
            done.append(f"{name}@{alias}: {have or 'not set'} -> version {want}")
    return done


def _exists(places: Places, name: str, version: str) -> bool:
    try:
        places.tracker.model_version(name, version)
    except ConfigError:
        return False
    return True


def _config_text(record: Mapping[str, Any], policy: Policy, places: Places) -> str:
    from tierline.promotion.handoff import freqtrade_config

    path = places.config_path(str(record["strategy"]))
    config = freqtrade_config(record, policy, config_dir=path.parent, registry_root=places.root)
    return json.dumps(config, indent=2) + "\n"


def _write_config(record: Mapping[str, Any], policy: Policy, places: Places) -> Path:
    from tierline.promotion.handoff import write_freqtrade_config

    return write_freqtrade_config(
        record,
        policy,
        path=places.config_path(str(record["strategy"])),
        registry_root=places.root,
    )


def reconcile(strategy: str, places: Places, *, policy: Policy | None = None) -> list[str]:
    """Re-derive the MLflow aliases (and, given a policy, the freqtrade config) from the record.

    Call under the strategy's lock. An alias naming a version this MLflow store lacks is left
    as it is (`consistency` still reports it).

    Parameters
    ----------
    strategy
        Strategy name.
    places
        Where its champion lives.
    policy
        The policy the config's live limits come from; None leaves the config alone.

    Returns
    -------
    list of str
        What was changed (empty when everything already agreed).
    """
    record = read_record(strategy, places.root)
    done = _sync_aliases(strategy, record, places)
    if policy is not None and record is not None:
        path = places.config_path(strategy)
        want = _config_text(record, policy, places)
        have = path.read_text() if path.exists() else None
        if have != want:
            _write_config(record, policy, places)
            done.append(f"freqtrade config {path} regenerated")
    return done


# ----------------------------------------------------------------------------- promote


def _model_data(verdict: Verdict, folder: Path) -> Path:
    from tierline.promotion.model import write_model_data
    from tierline.strategy import get_strategy

    return write_model_data(folder, get_strategy(verdict.strategy), verdict.params)


def _requirements() -> list[str]:
    import numpy as np
    import pandas as pd

    from tierline import __version__

    return [f"tierline=={__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]


def _after_commit(
    strategy: str,
    what: str,
    places: Places,
    steps: list[Callable[[], object]],
    say: Callable[[str], None],
) -> None:
    """Run the steps that follow a commit, each even when another failed; report failures.

    Raises
    ------
    TierlineError
        If a step failed (the commit stands; the message says how to repair).
    """
    committed = f"{what} of {strategy} is committed in {record_path(strategy, places.root)}"
    repair = f"run `tierline registry sync {strategy}` to bring them in line"
    failures: list[Exception] = []
    for step in steps:
        try:
            step()
        except Exception as e:  # the next step still runs: the fewer places lag, the better
            failures.append(e)
        except BaseException:  # Ctrl-C: say what holds before going
            lag = "MLflow or the freqtrade config may lag"
            say(f"[registry] interrupted: {committed}; {lag}: {repair}")
            raise
    if failures:
        detail = "; ".join(f"{type(e).__name__}: {e}" for e in failures)
        raise TierlineError(
            f"{committed}, but updating MLflow or the freqtrade config failed ({detail}); {repair}"
        ) from failures[0]


def commit_champion(
    verdict: Verdict, policy: Policy, places: Places, *, say: Callable[[str], None] = _say
) -> dict[str, Any]:
    """Make a passing verdict's candidate the champion (steps in the module docstring).

    Parameters
    ----------
    verdict
        The gate's verdict (must have passed).
    policy
        The policy it passed under (recorded; the freqtrade config's live limits).
    places
        Where the champion lives.
    say
        Where progress lines go (default: stdout).

    Returns
    -------
    dict
        The new registry record.

    Raises
    ------
    ConfigError
        If the verdict did not pass.
    """
    from tierline.promotion.gate import checks_json

    if not verdict.passed:
        raise ConfigError(f"{verdict.strategy}: only a passing verdict can be committed")
    strategy = verdict.strategy
    name = model_name(strategy)
    tracker = places.tracker
    with strategy_lock(strategy, places.root, timeout=places.lock_timeout):
        for msg in _sync_aliases(strategy, read_record(strategy, places.root), places):
            say(f"[registry] repaired: {msg}")
        old = read_record(strategy, places.root)
        with tempfile.TemporaryDirectory(prefix="tierline-model-data-") as tmp:
            mv = tracker.register_pyfunc(
                name,
                strategy=strategy,
                loader_module=_MODEL_LOADER,
                data_path=_model_data(verdict, Path(tmp) / "data"),
                pip_requirements=_requirements(),
                run_tags={
                    "strategy": strategy,
                    "tierline.pipeline_run": verdict.pipeline.run_id,
                    "tierline.policy_sha256": policy.sha256,
                },
                version_tags={
                    "tierline.verdict": "passed",
                    "tierline.strategy": strategy,
                    "tierline.params": json.dumps(verdict.params, sort_keys=True),
                    "tierline.rank": str(verdict.rank),
                    "tierline.pipeline_run": verdict.pipeline.run_id,
                    "tierline.data_fingerprint": verdict.pipeline.dataset.fingerprint,
                    "tierline.policy_sha256": policy.sha256,
                    "tierline.checks": checks_json(verdict.checks),
                },
                description=f"{strategy} candidate from pipeline {verdict.pipeline.run_id}",
            )
        say(f"[registry] registered {name} version {mv.version}")
        record = build_record(verdict, version=mv.version, previous=old, policy=policy)
        _config_text(record, policy, places)  # a config that cannot be built stops us here
        path = write_record(record, places.root)  # ---- the commit point
        say(f"[registry] {path} written: {name} version {mv.version} is the champion")

        def aliases() -> None:
            for msg in _sync_aliases(strategy, record, places):
                say(f"[registry] {msg}")
            tracker.set_model_version_tags(
                name, mv.version, {"tierline.committed": record["promoted_at"]}
            )

        def config() -> None:
            say(f"[registry] freqtrade config {_write_config(record, policy, places)}")

        _after_commit(strategy, "the promotion", places, [config, aliases], say)
    return record


def promote(
    request: PromotionRequest,
    policy: Policy,
    places: Places,
    *,
    say: Callable[[str], None] = _say,
) -> dict[str, Any]:
    """Evaluate a promotion, print its table and, when every check passes, commit it.

    Parameters
    ----------
    request
        What to promote (strategy, candidate, pipeline, ``run_missing``).
    policy
        The promotion policy.
    places
        Where the champion lives.
    say
        Where the table and progress lines go (default: stdout).

    Returns
    -------
    dict
        The new registry record.

    Raises
    ------
    GateRejected
        If a check failed (exit code 5); nothing was changed.
    """
    from tierline.promotion.gate import GateRejected, evaluate_request

    verdict = evaluate_request(request, policy, places.tracker, say=say)
    say(verdict.table())
    if not verdict.passed:
        raise GateRejected(verdict)
    return commit_champion(verdict, policy, places, say=say)


def rollback(
    strategy: str, policy: Policy, places: Places, *, say: Callable[[str], None] = _say
) -> dict[str, Any]:
    """Make the previous champion the champion again, in registry/, MLflow and freqtrade.

    The restored record has no ``previous`` (one level of history is kept); it gets
    ``rolled_back_at`` and ``rolled_back_from`` (the demoted champion).

    Parameters
    ----------
    strategy
        Strategy name.
    policy
        The policy the rewritten freqtrade config's live limits come from.
    places
        Where the champion lives.
    say
        Where progress lines go (default: stdout).

    Returns
    -------
    dict
        The restored registry record.

    Raises
    ------
    ConfigError
        If the strategy has no champion, no previous champion, or the previous champion's
        model version no longer exists in MLflow.
    """
    name = model_name(strategy)
    with strategy_lock(strategy, places.root, timeout=places.lock_timeout):
        for msg in _sync_aliases(strategy, read_record(strategy, places.root), places):
            say(f"[registry] repaired: {msg}")
        current = read_record(strategy, places.root)
        if current is None:
            raise ConfigError(f"{strategy} has no champion in {places.root} (nothing to roll back)")
        prev = current.get("previous")
        if not prev:
            raise ConfigError(
                f"{strategy}: the champion (version {_version(current)}) has no previous "
                "champion to roll back to"
            )
        version = _version(prev)
        if version is None:
            raise ConfigError(f"{strategy}: the previous champion record names no model version")
        places.tracker.model_version(name, version)  # still registered?
        restored = {
            **dict(prev),
            "previous": None,
            "rolled_back_at": _now(),
            "rolled_back_from": _strip(current),
        }
        _config_text(restored, policy, places)
        path = write_record(restored, places.root)  # ---- the commit point
        say(f"[registry] {path}: {name} version {version} is the champion again")

        def aliases() -> None:
            for msg in _sync_aliases(strategy, restored, places):
                say(f"[registry] {msg}")
            demoted = _version(current)
            if demoted is not None:
                places.tracker.set_model_version_tags(
                    name, demoted, {"tierline.rolled_back_at": restored["rolled_back_at"]}
                )

        def config() -> None:
            say(f"[registry] freqtrade config {_write_config(restored, policy, places)}")

        _after_commit(strategy, "the rollback", places, [config, aliases], say)
    return restored
