"""The pipeline `tierline run` executes: tier 1, then tier 2 on the top candidates.

One MLflow parent run per strategy and data set, with child runs:

- ``tier1 / vectorbt`` (no rank): the sweep, logged as ONE results-table artifact plus the
  plot and summary; metrics = the concatenated walk-forward out-of-sample metrics (what later
  tiers and the promotion gate use), ``dsr`` and ``pbo``.
- ``tier1 / vectorbt`` rank r: candidate r backtested with real vectorbt on the whole span.
- ``tier2 / nautilus`` and ``tier2 / freqtrade`` rank r: the same candidate in each engine,
  with the same metric names, its trades and equity as artifacts, and its parity against the
  reference engine as metrics (``parity_passed``, ``parity_pnl_diff_rel``,
  ``parity_max_return_diff``, ``parity_unmatched``).

- ``tier3 / hftbacktest`` rank r: candidate 1 and, up to ``tier3_top``, the next candidates
  whose tier-2 parity passed, their decisions replayed as orders in hftbacktest on the L2
  book covering the bars' span (or a book synthesised from the bars, tagged ``l2=synthetic``)
  with the tier-3 config (`tierline.engines.hft`); the common metrics plus shortfall, fill
  ratio, time to fill, maker share, net P&L, fees and orders.

The parent also gets ``causality_passed`` and the parity table as an artifact. A tier-2 or
tier-3 engine that fails is recorded as a FAILED child run and reported; the pipeline goes on
with the other engines.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from tierline.core.conventions import ExecutionConfig
    from tierline.core.parity import EngineParity
    from tierline.data.catalog import Catalog
    from tierline.engines.hft.config import HftConfig
    from tierline.engines.hft.report import Tier3Result
    from tierline.strategy.contract import Strategy
    from tierline.sweep import SweepResult

__all__ = ["TIER2_ENGINES", "PipelineResult", "log_tier1_sweep", "run_pipeline"]

logger = logging.getLogger(__name__)

TIER2_ENGINES: tuple[str, ...] = ("nautilus", "freqtrade")


@dataclass(kw_only=True)
class PipelineResult:
    """What a pipeline produced (also in MLflow under ``parent_run_id``)."""

    strategy: str
    parent_run_id: str
    causality_passed: bool
    sweep: SweepResult
    #: (rank, engine) -> parity against the reference engine.
    parity: dict[tuple[int, str], EngineParity] = field(default_factory=dict)
    #: (rank, engine) -> common metrics of that engine's backtest.
    metrics: dict[tuple[int, str], dict[str, float]] = field(default_factory=dict)
    #: (rank, engine) -> error message of an engine that failed.
    failures: dict[tuple[int, str], str] = field(default_factory=dict)
    #: rank -> tier-3 result of that candidate.
    tier3: dict[int, Tier3Result] = field(default_factory=dict)

    @property
    def parity_passed(self) -> bool:
        """Return whether every tier-2 engine ran and matched the reference on every candidate.

        Tier 3 does not enter: it measures execution cost, it has no parity to pass.
        """
        return not any(engine != "hftbacktest" for _, engine in self.failures) and all(
            p.passed for p in self.parity.values()
        )


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_pipeline(
    strategy: Strategy,
    bars: pl.DataFrame,
    config: ExecutionConfig,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    method: str = "grid",
    n_trials: int = 100,
    folds: int = 3,
    top_k: int = 3,
    engines: Sequence[str] = TIER2_ENGINES,
    tracking_uri: str | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    argv: Sequence[str] | None = None,
    tier3_top: int = 1,
    hft_config: HftConfig | None = None,
    l2: str = "auto",
    catalog: Catalog | None = None,
) -> PipelineResult:
    """Run tier 1 (sweep + walk-forward + overfitting statistics) and tier 2 on the top-k.

    Parameters
    ----------
    strategy, bars, config
        Strategy, catalog bars and execution conventions.
    exchange, symbol, timeframe
        What the bars are (for tracking and instrument specs).
    method, n_trials, folds
        Tier-1 sweep: ``grid`` or ``optuna`` (``n_trials``), walk-forward folds.
    top_k
        Candidates handed to tier 2.
    engines
        Tier-2 engines (default nautilus and freqtrade).
    tracking_uri
        MLflow tracking URI (default: see `tierline.tracking.resolve_tracking_uri`).
    out_dir
        Where sweep outputs go (default ``runs/<strategy>/<id>``).
    progress
        Show progress bars.
    argv
        Command line to record.
    tier3_top
        Tier 3 runs candidate 1 and the next candidates up to this rank whose tier-2 parity
        passed (0 = no tier 3).
    hft_config
        Tier-3 configuration (default: `tierline.engines.hft.config.load_hft_config`).
    l2
        Tier-3 book: ``auto``, ``real`` or ``synthetic`` (see `run_tier3`).
    catalog
        Where tier 3 finds the L2 book (default: the default catalog).

    Returns
    -------
    PipelineResult
    """
    from tierline.core.causality import check_causality
    from tierline.core.instruments import instrument_for
    from tierline.core.metrics import compute_metrics
    from tierline.core.parity import ParityTolerance, compare_trades
    from tierline.engines import run_backtest
    from tierline.sweep import run_sweep
    from tierline.tracking import DatasetRef, Tracker

    synthetic = exchange == "synthetic"
    tracker = Tracker(tracking_uri)
    dataset = DatasetRef.from_bars(
        bars, exchange=exchange, symbol=symbol, timeframe=timeframe, synthetic=synthetic
    )
    run_config = {
        "fee": config.fee,
        "initial_cash": config.initial_cash,
        "stake": config.stake,
        "method": method,
        "n_trials": n_trials,
        "folds": folds,
        "top_k": top_k,
        "engines": list(engines),
        "tier3_top": tier3_top,
        "l2": l2,
    }
    _say(f"[pipeline] {strategy.name} on {exchange} {symbol} {timeframe}: {len(bars)} bars")
    with tracker.pipeline(
        strategy=strategy.name, dataset=dataset, config=run_config, argv=argv
    ) as parent:
        # --- tier 1 --------------------------------------------------------------------
        _say(f"[tier 1] {method} sweep with vectorbt conventions, {folds} walk-forward folds")
        out = out_dir or Path("runs") / strategy.name / parent.run_id
        sweep = run_sweep(
            strategy,
            bars,
            config,
            method=method,  # type: ignore[arg-type]
            n_trials=n_trials,
            folds=folds,
            top_k=max(top_k, 1),
            out_dir=out,
            progress=progress,
            data={"exchange": exchange, "symbol": symbol, "timeframe": timeframe},
        )
        log_tier1_sweep(parent, sweep)
        _say(
            f"[tier 1] {sweep.table.height} parameter sets, DSR {sweep.dsr:.3f}, "
            f"PBO {sweep.pbo:.3f}; outputs in {sweep.out_dir}"
        )
        candidates = list(sweep.top[:top_k])
        # --- causality -------------------------------------------------------------------
        params0 = candidates[0].params if candidates else strategy.defaults
        report = check_causality(strategy, bars, params0)
        parent.log_metrics({"causality_passed": float(report.passed)})
        parent.set_tags({"causality": report.summary()[:500]})
        _say(f"[check] {report.summary()}")
        result = PipelineResult(
            strategy=strategy.name,
            parent_run_id=parent.run_id,
            causality_passed=report.passed,
            sweep=sweep,
        )
        # --- tier 2 ------------------------------------------------------------------------
        spec = instrument_for(exchange, symbol, bars)
        tolerance = ParityTolerance(tick=spec.tick)
        parity_rows: list[dict[str, Any]] = []
        market = {"exchange": exchange, "symbol": symbol}
        for cand in candidates:
            params = cand.params
            ref = run_backtest("reference", strategy, bars, params, config, **market)
            vbt = run_backtest("vectorbt", strategy, bars, params, config, **market)
            m = compute_metrics(vbt.trades, vbt.equity, initial_cash=config.initial_cash)
            result.metrics[(cand.rank, "vectorbt")] = m
            with parent.tier(tier="tier1", engine="vectorbt", params=params, rank=cand.rank) as run:
                run.log_metrics(m)
                run.log_result(vbt)
            for engine in engines:
                _say(f"[tier 2] candidate {cand.rank} ({_fmt(params)}) in {engine}")
                try:
                    with parent.tier(
                        tier="tier2", engine=engine, params=params, rank=cand.rank
                    ) as run:
                        res = run_backtest(engine, strategy, bars, params, config, **market)
                        em = compute_metrics(
                            res.trades, res.equity, initial_cash=config.initial_cash
                        )
                        par = compare_trades(
                            ref.trades,
                            res.trades,
                            engine=engine,
                            tolerance=tolerance,
                            initial_cash=config.initial_cash,
                            notes=res.notes,
                        )
                        run.log_metrics({**em, **_parity_metrics(par)})
                        run.log_result(res)
                        if res.notes:
                            run.set_tags({"engine_notes": " | ".join(res.notes)[:4000]})
                except Exception as e:  # recorded as a FAILED child; other engines go on
                    result.failures[(cand.rank, engine)] = f"{type(e).__name__}: {e}"
                    _say(f"[tier 2] {engine} failed on candidate {cand.rank}: {e}")
                    continue
                result.parity[(cand.rank, engine)] = par
                result.metrics[(cand.rank, engine)] = em
                parity_rows.append({"rank": cand.rank, "params": _fmt(params), **par.to_row()})
                _say("    " + par.summary().replace("\n", "\n    "))
        if parity_rows:
            import polars as pl

            parent.log_table("parity", pl.DataFrame(parity_rows))
        # --- tier 3 ------------------------------------------------------------------------
        if tier3_top > 0 and candidates:
            _tier3_stage(
                result,
                parent,
                strategy,
                bars,
                config,
                candidates=candidates,
                tier3_top=tier3_top,
                hft_config=hft_config,
                l2=l2,
                catalog=catalog,
                exchange=exchange,
                symbol=symbol,
                timeframe=timeframe,
            )
        parent.log_metrics({"parity_passed": float(result.parity_passed)})
    return result


def _tier3_stage(
    result: PipelineResult,
    parent: Any,
    strategy: Strategy,
    bars: pl.DataFrame,
    config: ExecutionConfig,
    *,
    candidates: Sequence[Any],
    tier3_top: int,
    hft_config: HftConfig | None,
    l2: str,
    catalog: Catalog | None,
    exchange: str,
    symbol: str,
    timeframe: str,
) -> None:
    """Run tier 3 on candidate 1 and the parity-passing candidates up to ``tier3_top``."""
    from datetime import timedelta

    from tierline.data.catalog import Catalog
    from tierline.data.market import timeframe_ns
    from tierline.engines.hft.config import load_hft_config
    from tierline.engines.hft.execution import run_tier3
    from tierline.engines.hft.report import log_tier3

    def passed(rank: int) -> bool:
        pars = [p for (r, _), p in result.parity.items() if r == rank]
        failed = [e for (r, e) in result.failures if r == rank]
        return bool(pars) and all(p.passed for p in pars) and not failed

    chosen = [c for c in candidates if c.rank == 1 or (c.rank <= tier3_top and passed(c.rank))]
    cfg = hft_config or load_hft_config()
    start = bars["ts"][0]
    end = bars["ts"][-1] + timedelta(microseconds=timeframe_ns(timeframe) // 1000)
    for cand in chosen:
        _say(f"[tier 3] candidate {cand.rank} ({_fmt(cand.params)}) in hftbacktest")
        try:
            res = run_tier3(
                strategy,
                cand.params,
                catalog=catalog or Catalog(),
                exchange=exchange,
                symbol=symbol,
                timeframe=timeframe,
                config=cfg,
                execution=config,
                bars=bars,
                l2=l2,  # type: ignore[arg-type]
                start=start,
                end=end,
                say=_say,
            )
            log_tier3(parent, res, rank=cand.rank)
        except Exception as e:  # recorded as a FAILED child where it got that far; go on
            result.failures[(cand.rank, "hftbacktest")] = f"{type(e).__name__}: {e}"
            _say(f"[tier 3] hftbacktest failed on candidate {cand.rank}: {e}")
            continue
        result.tier3[cand.rank] = res
        result.metrics[(cand.rank, "hftbacktest")] = res.metrics
        m = res.metrics
        _say(
            f"    l2={res.l2}, shortfall {m['shortfall_bps']:.2f} bps, fill ratio "
            f"{m['fill_ratio']:.3f}, net P&L {m['net_pnl']:.2f}"
        )


def log_tier1_sweep(parent: Any, sweep: SweepResult) -> str:
    """Log a sweep as the ``tier1/vectorbt`` child run of a pipeline; return its run id.

    Metrics: the concatenated walk-forward out-of-sample metrics (the full-sample metrics of
    candidate 1 when there are no folds), ``dsr``, ``pbo`` and ``parameter_sets``. Artifacts:
    the results table (one artifact for every parameter set), the folds and top-k tables, and
    the plot and summary files when they were written.

    Parameters
    ----------
    parent
        The `tierline.tracking.PipelineRun` to log under.
    sweep
        What `tierline.sweep.run_sweep` returned.
    """
    folds = sweep.walkforward.n_folds if sweep.walkforward else 0
    with parent.tier(tier="tier1", engine="vectorbt", tags={"role": "sweep"}) as run:
        run.log_params({"method": sweep.method, "objective": sweep.objective, "folds": folds})
        oos = sweep.oos_metrics or (sweep.top[0].is_metrics if sweep.top else {})
        run.log_metrics(
            {**oos, "dsr": sweep.dsr, "pbo": sweep.pbo, "parameter_sets": float(sweep.table.height)}
        )
        run.log_table("sweep", sweep.table)
        if sweep.walkforward is not None:
            run.log_table("folds", sweep.walkforward.folds_table())
        if sweep.top:
            run.log_table("top", sweep.top_table())
        for path in (sweep.plot_path, sweep.summary_path):
            if path is not None and Path(path).exists():
                run.log_artifact(path)
        return str(run.run_id)


def _fmt(params: dict[str, Any]) -> str:
    from tierline.strategy import format_params

    return format_params(params)


def _parity_metrics(par: EngineParity) -> dict[str, float]:
    return {
        "parity_passed": float(par.passed),
        "parity_pnl_diff_rel": par.pnl_diff_rel,
        "parity_max_return_diff": par.max_return_diff,
        "parity_unmatched": float(len(par.only_reference) + len(par.only_engine)),
    }
