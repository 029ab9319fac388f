"""Tier-1 parameter sweeps: grid or Optuna, walk-forward, overfitting statistics, outputs.

`run_sweep` is the one entry point (the CLI's ``tierline sweep`` calls it):

1. Search the parameter space on the full sample: every valid grid combination (or an explicit
   list), or an Optuna TPE study (SQLite storage ``sqlite:///optuna.db`` by default, any
   SQLAlchemy URI such as PostgreSQL for shared studies; a study is resumed by name, and
   ``n_trials`` is the number of finished trials the study should hold).
2. Walk-forward (`tierline.sweep.walkforward`): choose in-sample per fold, score
   out-of-sample, chain the OOS spans. With a grid every combination is scored on every span
   in one pass; with Optuna each fold runs its own study on its in-sample span (named
   ``<study>.wf-<mode><K>-fold<i>``), so OOS data never guides the search.
3. Overfitting statistics (`tierline.sweep.overfit`): the deflated Sharpe ratio of the
   full-sample best set and PBO by CSCV over all sets' daily returns.
4. Outputs (`tierline.sweep.report`): results table, top-k, folds, plots, summary.

A parameter set whose signals fail is recorded with its error and the sweep goes on.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from tierline.core.conventions import ExecutionConfig
from tierline.core.metrics import METRIC_NAMES
from tierline.errors import ConfigError, EngineError, TierlineError
from tierline.sweep.evaluate import BarArrays, Evaluation, Segment, daily_returns, evaluate
from tierline.sweep.overfit import deflated_sharpe_ratio, pbo_cscv
from tierline.sweep.report import Candidate, SweepResult, write_outputs
from tierline.sweep.walkforward import (
    MINIMISED,
    Fold,
    WalkForwardResult,
    best_index,
    fold_result,
    make_folds,
    objective_order,
    stitch_oos,
)

if TYPE_CHECKING:
    import pandas as pd

    from tierline.strategy.contract import Strategy

__all__ = ["DEFAULT_STORAGE", "TrialRecord", "data_fingerprint", "optuna_search", "run_sweep"]

logger = logging.getLogger(__name__)

#: Optuna storage when none is given: a SQLite file in the workspace.
DEFAULT_STORAGE = "sqlite:///optuna.db"
Method = Literal["grid", "optuna"]
_SweepParts = tuple[
    list["TrialRecord"], Evaluation, list[Any], list[Candidate], list[tuple[dict[str, Any], str]]
]


@dataclass(frozen=True)
class TrialRecord:
    """One evaluated parameter set (a grid point or a finished Optuna trial)."""

    id: int
    params: dict[str, Any]
    metrics: dict[str, float]
    error: str | None


# ---------------------------------------------------------------------------- helpers
class _Progress:
    """A tqdm bar when enabled (and tqdm importable), else nothing."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = None
        if enabled and total > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="set", dynamic_ncols=True, leave=False)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def data_fingerprint(arrays: BarArrays, config: ExecutionConfig, strategy: Strategy) -> str:
    """Return a short hash of the bars, conventions and strategy (guards resumed studies)."""
    h = hashlib.sha256()
    h.update(strategy.name.encode())
    h.update(repr([(p.name, type(p).__name__) for p in strategy.params]).encode())
    h.update(arrays.ts.tobytes())
    h.update(arrays.open.tobytes())
    h.update(arrays.close.tobytes())
    h.update(repr((config.fee, config.initial_cash, config.stake)).encode())
    return h.hexdigest()[:16]


def _metrics_at(ev: Evaluation, seg: int, i: int) -> dict[str, float]:
    return {k: float(ev.metrics[seg][k][i]) for k in METRIC_NAMES}


def _nan_metrics() -> dict[str, float]:
    return dict.fromkeys(METRIC_NAMES, math.nan)


def _grid_params(
    strategy: Strategy, param_sets: Sequence[Mapping[str, Any]] | None
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """Return valid parameter sets and the rejected ones with their reasons."""
    if param_sets is None:
        return [strategy.validate_params(p) for p in strategy.grid()], []
    good, bad = [], []
    for p in param_sets:
        try:
            good.append(strategy.validate_params(p))
        except ConfigError as e:
            bad.append((dict(p), str(e)))
    return good, bad


def _table(strategy: Strategy, records: Sequence[TrialRecord], id_name: str = "id") -> pl.DataFrame:
    """Return the results table: id, parameters, metrics, status, error."""
    names = [p.name for p in strategy.params]
    rows = []
    for r in records:
        row: dict[str, Any] = {id_name: r.id}
        for n in names:
            row[n] = r.params.get(n)
        for m in METRIC_NAMES:
            row[m] = float(r.metrics.get(m, math.nan))
        row["status"] = "ok" if r.error is None else "error"
        row["error"] = r.error
        rows.append(row)
    schema_over: dict[str, Any] = dict.fromkeys(METRIC_NAMES, pl.Float64)
    schema_over.update({id_name: pl.Int64, "status": pl.String, "error": pl.String})
    if not rows:
        return pl.DataFrame(
            schema={id_name: pl.Int64, **dict.fromkeys(names, pl.Float64), **schema_over}
        )
    return pl.DataFrame(rows, schema_overrides=schema_over, infer_schema_length=None)


def _overfit_stats(
    daily: np.ndarray, ok: np.ndarray, best: int | None, config: ExecutionConfig, splits: int
) -> tuple[float, dict[str, float], float, dict[str, float]]:
    """Return DSR (with detail) of set ``best`` and PBO (with detail) over the ``ok`` sets."""
    r = daily_returns(daily[ok], config.initial_cash) if ok.any() else np.empty((0, 0))
    if best is None or not ok.any():
        return math.nan, {}, math.nan, {}
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = r.std(axis=1, ddof=1)
        trial_sr = np.where(sd > 0, r.mean(axis=1) / sd, np.nan)
    pos = int(np.flatnonzero(ok).tolist().index(best))
    dsr = deflated_sharpe_ratio(r[pos], trial_sr)
    pbo = pbo_cscv(r.T, n_splits=splits)
    return (
        dsr["dsr"],
        dsr,
        pbo.pbo,
        {
            "n_splits": float(pbo.n_splits),
            "n_trials": float(pbo.n_trials),
            "n_obs": float(pbo.n_obs),
        },
    )


# ---------------------------------------------------------------------------- optuna
def optuna_search(
    strategy: Strategy,
    bars: pl.DataFrame,
    config: ExecutionConfig,
    *,
    segment: Segment,
    n_trials: int,
    study_name: str,
    storage: str | None,
    objective: str,
    seed: int | None,
    fingerprint: str,
    arrays: BarArrays,
    frame: pd.DataFrame,
    progress: bool = True,
    batch: int = 1,
    desc: str = "optuna",
) -> list[TrialRecord]:
    """Run (or resume) an Optuna TPE study until it holds ``n_trials`` finished trials.

    Each trial's metrics on ``segment`` are stored in the study (user attribute ``metrics``),
    so a resumed study's earlier trials need no recomputation. A trial whose parameters break
    a constraint or whose signals fail is marked FAIL with the reason (attribute ``error``).

    Returns
    -------
    list[TrialRecord]
        Every finished trial of the study (``id`` = trial number).

    Raises
    ------
    ConfigError
        If the study exists for other data, conventions or strategy, or for the other
        optimisation direction.
    """
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction: Literal["minimize", "maximize"] = (
        "minimize" if objective in MINIMISED else "maximize"
    )
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=batch > 1)
    try:
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=sampler,
            direction=direction,
            load_if_exists=True,
        )
    except Exception as e:
        raise ConfigError(f"cannot open Optuna study {study_name!r} at {storage}: {e}") from e
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"Optuna study {study_name!r} {study.direction.name.lower()}s; objective "
            f"{objective!r} needs {direction}; use another --study-name"
        )
    attrs = study.user_attrs
    for key, want in (("tierline_fingerprint", fingerprint), ("tierline_objective", objective)):
        have = attrs.get(key)
        if have is None:
            study.set_user_attr(key, want)
        elif have != want:
            raise ConfigError(
                f"Optuna study {study_name!r} was run on other data, conventions, strategy or "
                f"objective ({key} {have} != {want}); use another --study-name"
            )
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    remaining = max(0, n_trials - len(finished))
    bar = _Progress(remaining, desc, progress)
    try:
        while remaining > 0:
            trials = [study.ask() for _ in range(min(batch, remaining))]
            todo: list[tuple[Any, dict[str, Any]]] = []
            for tr in trials:
                try:
                    p = strategy.suggest(tr)
                    if p is None:
                        raise ConfigError("sampled parameters break a constraint")
                    todo.append((tr, strategy.validate_params(p)))
                except TierlineError as e:
                    tr.set_user_attr("error", str(e))
                    study.tell(tr, state=TrialState.FAIL)
            if todo:
                ev = evaluate(
                    strategy,
                    bars,
                    [p for _, p in todo],
                    config,
                    segments=[segment],
                    arrays=arrays,
                    frame=frame,
                    keep_daily=False,
                )
                for j, (tr, _p) in enumerate(todo):
                    if j in ev.errors:
                        tr.set_user_attr("error", ev.errors[j])
                        study.tell(tr, state=TrialState.FAIL)
                        continue
                    m = _metrics_at(ev, 0, j)
                    tr.set_user_attr("metrics", m)
                    value = m[objective]
                    if math.isnan(value):
                        tr.set_user_attr("error", f"objective {objective} is NaN")
                        study.tell(tr, state=TrialState.FAIL)
                    else:
                        study.tell(tr, value)
            bar.update(len(trials))
            remaining -= len(trials)
    finally:
        bar.close()
    out = []
    for t in study.get_trials(deepcopy=False):
        if not t.state.is_finished():
            continue
        metrics = {k: float(v) for k, v in (t.user_attrs.get("metrics") or {}).items()}
        err = t.user_attrs.get("error")
        if t.state != TrialState.COMPLETE and err is None:
            err = f"trial {t.state.name.lower()}"
        out.append(TrialRecord(id=t.number, params=dict(t.params), metrics=metrics, error=err))
    return out


def _best_record(records: Sequence[TrialRecord], objective: str) -> TrialRecord | None:
    ok = [r for r in records if r.error is None]
    if not ok:
        return None
    i = best_index(np.array([r.metrics.get(objective, math.nan) for r in ok]), objective)
    return None if i is None else ok[i]


# ---------------------------------------------------------------------------- main
def run_sweep(
    strategy: Strategy,
    bars: pl.DataFrame,
    config: ExecutionConfig,
    *,
    method: Method = "grid",
    param_sets: Sequence[Mapping[str, Any]] | None = None,
    n_trials: int = 100,
    study_name: str | None = None,
    storage: str | None = DEFAULT_STORAGE,
    folds: int = 3,
    wf_mode: Literal["anchored", "rolling"] = "anchored",
    train_blocks: int = 1,
    objective: str = "sharpe",
    top_k: int = 10,
    out_dir: Path | None = None,
    seed: int | None = 0,
    progress: bool = True,
    chunk: int | None = None,
    pbo_splits: int = 16,
    batch: int = 1,
    plot: bool = True,
    data: Mapping[str, Any] | None = None,
) -> SweepResult:
    """Sweep a strategy's parameters, walk forward, and compute the overfitting statistics.

    Parameters
    ----------
    strategy
        The strategy.
    bars
        Catalog OHLCV bars (``ts`` = bar open, UTC).
    config
        Execution conventions.
    method
        ``grid`` (every valid combination of ``strategy.grid()``, or ``param_sets``) or
        ``optuna`` (TPE, ``n_trials`` finished trials per study).
    param_sets
        Explicit parameter sets for the grid (invalid ones are reported as failures).
    n_trials, study_name, storage, seed, batch
        Optuna settings: trials each study should hold, study name (default derived from the
        strategy and a fingerprint of data and conventions), storage URI (None: in memory),
        sampler seed, trials asked per round.
    folds, wf_mode, train_blocks
        Walk-forward folds (0 disables it), ``anchored`` or ``rolling``, in-sample blocks
        (see `tierline.sweep.walkforward`).
    objective
        Metric that ranks parameter sets (``max_drawdown`` is minimised, others maximised).
    top_k
        Candidates to return.
    out_dir
        Where to write the outputs (nothing is written when None).
    progress
        Show a progress bar.
    chunk
        Parameter sets per kernel call (default: sized to keep memory bounded).
    pbo_splits
        CSCV blocks ``S`` for PBO.
    plot
        Write the plots.
    data
        Description of the data (exchange, symbol, timeframe...) kept in the summary.

    Returns
    -------
    SweepResult
        Table, top-k, DSR, PBO, walk-forward and output paths.

    Raises
    ------
    ConfigError
        If an option is invalid or no parameter set can be evaluated.
    DataError
        If the bars are unusable.
    """
    from tierline.core.bars import to_strategy_frame

    if objective not in METRIC_NAMES:
        raise ConfigError(f"objective {objective!r} is not one of {', '.join(METRIC_NAMES)}")
    if method not in ("grid", "optuna"):
        raise ConfigError(f"sweep method {method!r} is not 'grid' or 'optuna'")
    if top_k < 1:
        raise ConfigError("--top must be at least 1")
    t0 = time.perf_counter()
    arrays = BarArrays.from_bars(bars)
    frame = to_strategy_frame(bars)
    fold_defs = (
        make_folds(len(arrays), folds, mode=wf_mode, train_blocks=train_blocks) if folds else []
    )
    fp = data_fingerprint(arrays, config, strategy)
    meta = dict(data or {})
    meta.update(
        {
            "bars": len(arrays),
            "first": str(bars["ts"][0]),
            "last": str(bars["ts"][-1]),
            "fingerprint": fp,
        }
    )

    if method == "grid":
        sweep = _grid_sweep(
            strategy,
            bars,
            config,
            arrays,
            frame,
            param_sets,
            fold_defs,
            objective,
            progress,
            chunk,
        )
        name = stor = None
    else:
        name = study_name or f"{strategy.name}-{fp}"
        stor = storage
        sweep = _optuna_sweep(
            strategy,
            bars,
            config,
            arrays,
            frame,
            fold_defs,
            objective,
            progress,
            n_trials,
            name,
            stor,
            seed,
            fp,
            batch,
            wf_mode,
        )
    records, ev_full, folds_out, top, rejected = sweep

    ok = ev_full.ok
    best_pos = best_index(ev_full.metrics[0][objective], objective) if len(ev_full.params) else None
    assert ev_full.daily is not None
    dsr, dsr_detail, pbo, pbo_detail = _overfit_stats(
        ev_full.daily, ok, best_pos, config, pbo_splits
    )

    wf = None
    if fold_defs:
        chosen = [fr.params or None for fr in folds_out]
        oos_metrics, oos_eq, oos_tr = stitch_oos(strategy, frame, arrays, fold_defs, chosen, config)
        wf = WalkForwardResult(
            mode=wf_mode,
            n_folds=len(fold_defs),
            train_blocks=train_blocks,
            objective=objective,
            folds=tuple(folds_out),
            oos_metrics=oos_metrics,
            oos_equity=oos_eq,
            oos_trades=oos_tr,
        )
    failures = tuple(rejected) + tuple((r.params, r.error) for r in records if r.error is not None)
    table = _table(strategy, records, "trial" if method == "optuna" else "id")
    elapsed = time.perf_counter() - t0
    n_eval = len(records)
    result = SweepResult(
        strategy=strategy.name,
        method=method,
        objective=objective,
        table=table,
        top=tuple(top[:top_k]),
        dsr=dsr,
        dsr_detail=dsr_detail,
        pbo=pbo,
        pbo_detail=pbo_detail,
        walkforward=wf,
        failures=failures,  # type: ignore[arg-type]
        config=config,
        data=meta,
        elapsed_s=elapsed,
        study_name=name,
        storage=stor,
        extra={
            "parameter_sets": n_eval,
            "combo_bars_per_s": n_eval * len(arrays) / elapsed if elapsed > 0 else math.nan,
            "batched_signals": strategy.batch_fn is not None,
            "folds": folds,
            "wf_mode": wf_mode if folds else None,
        },
    )
    if out_dir is not None:
        result = write_outputs(result, strategy, Path(out_dir), plot=plot)
    return result


def _grid_sweep(
    strategy: Strategy,
    bars: pl.DataFrame,
    config: ExecutionConfig,
    arrays: BarArrays,
    frame: pd.DataFrame,
    param_sets: Sequence[Mapping[str, Any]] | None,
    fold_defs: list[Fold],
    objective: str,
    progress: bool,
    chunk: int | None,
) -> _SweepParts:
    params, rejected = _grid_params(strategy, param_sets)
    if not params:
        raise ConfigError(
            f"no valid parameter set to sweep for {strategy.name!r}"
            + (f" ({len(rejected)} rejected: {rejected[0][1]})" if rejected else "")
        )
    segs = [arrays.full()]
    for f in fold_defs:
        segs += [f.is_seg, f.oos_seg]
    bar = _Progress(len(params), f"sweep {strategy.name}", progress)
    try:
        ev = evaluate(
            strategy,
            bars,
            params,
            config,
            segments=segs,
            arrays=arrays,
            frame=frame,
            chunk=chunk,
            progress=bar.update,
        )
    finally:
        bar.close()
    records = [
        TrialRecord(
            id=i,
            params=p,
            metrics=_metrics_at(ev, 0, i) if i not in ev.errors else _nan_metrics(),
            error=ev.errors.get(i),
        )
        for i, p in enumerate(params)
    ]
    folds_out = []
    for fi, f in enumerate(fold_defs):
        is_i, oos_i = 1 + 2 * fi, 2 + 2 * fi
        b = best_index(ev.metrics[is_i][objective], objective)
        folds_out.append(
            fold_result(
                f,
                arrays,
                params[b] if b is not None else None,
                _metrics_at(ev, is_i, b) if b is not None else _nan_metrics(),
                _metrics_at(ev, oos_i, b) if b is not None else _nan_metrics(),
                int(ev.ok.sum()),
            )
        )
    rank_seg, oos_seg = (len(segs) - 2, len(segs) - 1) if fold_defs else (0, None)
    order = objective_order(ev.metrics[rank_seg][objective], objective)
    top: list[Candidate] = []
    for i in order:
        if i in ev.errors or math.isnan(ev.metrics[rank_seg][objective][i]):
            continue
        top.append(
            Candidate(
                rank=len(top) + 1,
                params=params[i],
                is_metrics=_metrics_at(ev, rank_seg, i),
                oos_metrics=_metrics_at(ev, oos_seg, i) if oos_seg is not None else {},
            )
        )
        if len(top) >= 100:
            break
    return records, ev, folds_out, top, rejected


def _optuna_sweep(
    strategy: Strategy,
    bars: pl.DataFrame,
    config: ExecutionConfig,
    arrays: BarArrays,
    frame: pd.DataFrame,
    fold_defs: list[Fold],
    objective: str,
    progress: bool,
    n_trials: int,
    study_name: str,
    storage: str | None,
    seed: int | None,
    fingerprint: str,
    batch: int,
    wf_mode: str,
) -> _SweepParts:
    if n_trials < 1:
        raise ConfigError("--trials must be at least 1")
    common = {
        "n_trials": n_trials,
        "storage": storage,
        "objective": objective,
        "seed": seed,
        "fingerprint": fingerprint,
        "arrays": arrays,
        "frame": frame,
        "progress": progress,
        "batch": batch,
    }
    records = optuna_search(
        strategy,
        bars,
        config,
        segment=arrays.full(),
        study_name=study_name,
        desc=f"optuna {strategy.name}",
        **common,  # type: ignore[arg-type]
    )
    ok_records = [r for r in records if r.error is None]
    if not ok_records:
        first = next((r.error for r in records if r.error), "no trials")
        raise EngineError(f"every Optuna trial of {study_name!r} failed (first: {first})")
    # daily returns of every successful trial for PBO and DSR (cheap: the kernel)
    ev = evaluate(
        strategy,
        bars,
        [r.params for r in ok_records],
        config,
        arrays=arrays,
        frame=frame,
    )
    folds_out = []
    last_records: list[TrialRecord] = []
    for f in fold_defs:
        fname = f"{study_name}.wf-{wf_mode}{len(fold_defs)}-fold{f.index + 1}"
        fold_records = optuna_search(
            strategy,
            bars,
            config,
            segment=f.is_seg,
            study_name=fname,
            desc=f"optuna fold {f.index + 1}/{len(fold_defs)}",
            **common,  # type: ignore[arg-type]
        )
        best = _best_record(fold_records, objective)
        oos = _nan_metrics()
        if best is not None:
            ev_oos = evaluate(
                strategy,
                bars,
                [best.params],
                config,
                segments=[f.oos_seg],
                arrays=arrays,
                frame=frame,
                keep_daily=False,
            )
            oos = _metrics_at(ev_oos, 0, 0)
        folds_out.append(
            fold_result(
                f,
                arrays,
                strategy.validate_params(best.params) if best else None,
                best.metrics if best else _nan_metrics(),
                oos,
                sum(r.error is None for r in fold_records),
            )
        )
        last_records = fold_records
    rank_records = last_records if fold_defs else records
    ok_rank = [r for r in rank_records if r.error is None]
    order = objective_order(np.array([r.metrics[objective] for r in ok_rank]), objective)
    ranked = [ok_rank[i] for i in order[:100] if not math.isnan(ok_rank[i].metrics[objective])]
    oos_metrics: list[dict[str, float]] = [{} for _ in ranked]
    if fold_defs and ranked:
        ev_oos = evaluate(
            strategy,
            bars,
            [r.params for r in ranked],
            config,
            segments=[fold_defs[-1].oos_seg],
            arrays=arrays,
            frame=frame,
            keep_daily=False,
        )
        oos_metrics = [_metrics_at(ev_oos, 0, i) for i in range(len(ranked))]
    top = [
        Candidate(
            rank=i + 1,
            params=strategy.validate_params(r.params),
            is_metrics=r.metrics,
            oos_metrics=oos_metrics[i],
        )
        for i, r in enumerate(ranked)
    ]
    return records, ev, folds_out, top, []
