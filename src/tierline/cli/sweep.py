"""``tierline sweep``: tier-1 parameter sweep, walk-forward and overfitting statistics."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from tierline.cli._common import add_exec_args, add_market_args

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``sweep`` to the parser."""
    p = sub.add_parser(
        "sweep",
        help="tier 1: grid or Optuna parameter sweep with walk-forward, DSR and PBO",
        description=(
            "Sweep a strategy's parameters on catalog bars with the shared execution "
            "conventions (fused numba kernel, results identical to the vectorbt engine), "
            "choose parameters in-sample per walk-forward fold and score them out-of-sample, "
            "and report the deflated Sharpe ratio and the probability of backtest overfitting. "
            "Writes results.parquet (one row per parameter set), top.parquet, folds.parquet, "
            "heatmap.html and summary.json."
        ),
    )
    p.add_argument("strategy", metavar="STRATEGY", help="strategy name (see `strategies`)")
    add_market_args(p)
    add_exec_args(p)
    g = p.add_argument_group("search")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--grid", action="store_true", help="every valid grid combination (the default)")
    m.add_argument(
        "--trials",
        type=int,
        default=None,
        metavar="N",
        help="Optuna TPE: the study (and each fold's study) holds N finished trials; "
        "a rerun with the same --study-name resumes",
    )
    g.add_argument(
        "--values",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="grid values of one parameter: LO:HI[:STEP] or a|b|c (repeatable; overrides "
        "the strategy's grid for that parameter)",
    )
    g.add_argument(
        "--objective",
        default="sharpe",
        help="metric that chooses parameters (default sharpe; max_drawdown is minimised)",
    )
    g.add_argument("--top", type=int, default=10, metavar="K", help="candidates (default 10)")
    g.add_argument("--study-name", default=None, help="Optuna study name (default: derived)")
    g.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URI (default sqlite:///optuna.db; e.g. postgresql://...)",
    )
    g.add_argument("--seed", type=int, default=0, help="Optuna sampler seed (default 0)")
    w = p.add_argument_group("walk-forward")
    w.add_argument(
        "--folds", type=int, default=3, metavar="K", help="walk-forward folds (0: none; default 3)"
    )
    w.add_argument(
        "--wf-mode",
        choices=("anchored", "rolling"),
        default="anchored",
        help="anchored: in-sample grows from the start; rolling: fixed-length window",
    )
    w.add_argument(
        "--train-blocks",
        type=int,
        default=1,
        help="in-sample blocks before the first OOS block (default 1)",
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "--out", type=Path, default=None, help="output directory (default runs/STRATEGY/<time>/)"
    )
    o.add_argument("--pbo-splits", type=int, default=16, help="CSCV blocks S (default 16)")
    o.add_argument("--no-plot", action="store_true", help="do not write the plots")
    o.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default sqlite:///mlflow.db)"
    )
    o.add_argument(
        "--no-track",
        action="store_true",
        help="do not log to MLflow (default: a pipeline parent run with the tier-1 child)",
    )
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_sweep)


def _parse_values(strategy: Any, specs: list[str]) -> list[dict[str, Any]] | None:
    """Return the explicit grid when ``--values`` overrides some parameters, else None."""
    import itertools

    from tierline.errors import ConfigError
    from tierline.strategy.contract import Choice, Float

    if not specs:
        return None
    known = {p.name: p for p in strategy.params}
    over: dict[str, list[Any]] = {}
    for spec in specs:
        if "=" not in spec:
            raise ConfigError(f"--values {spec!r} is not NAME=LO:HI[:STEP] or NAME=a|b|c")
        name, text = (s.strip() for s in spec.split("=", 1))
        if name not in known:
            raise ConfigError(f"strategy {strategy.name!r} has no parameter {name!r}")
        param = known[name]
        try:
            if "|" in text or isinstance(param, Choice):
                vals: list[Any] = [v.strip() for v in text.split("|") if v.strip()]
            else:
                parts = [float(x) for x in text.split(":")]
                if len(parts) not in (2, 3):
                    raise ValueError
                lo, hi = parts[0], parts[1]
                step = parts[2] if len(parts) == 3 else 1.0
                if step <= 0 or hi < lo:
                    raise ValueError
                count = int((hi - lo) / step + 1e-9) + 1
                vals = [round(lo + i * step, 12) for i in range(count)]
                if not isinstance(param, Float):
                    vals = [int(v) for v in vals]
        except ValueError:
            raise ConfigError(
                f"--values {spec!r}: expected LO:HI[:STEP] (HI >= LO, STEP > 0) or a|b|c"
            ) from None
        over[name] = [param.coerce(v) for v in vals]
    names = [p.name for p in strategy.params]
    axes = [over.get(n, list(known[n].values())) for n in names]
    out = []
    for combo in itertools.product(*axes):
        params = dict(zip(names, combo, strict=True))
        if strategy.is_valid(params):
            out.append(params)
    if not out:
        raise ConfigError("--values leaves no parameter set that satisfies the constraints")
    return out


def _fmt(v: float) -> str:
    import math

    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"


def _cmd_sweep(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from tierline.cli._common import exec_config, load_bars
    from tierline.strategy.contract import format_params
    from tierline.strategy.registry import get_strategy
    from tierline.sweep import DEFAULT_STORAGE, run_sweep
    from tierline.sweep.report import format_top

    strategy = get_strategy(args.strategy)
    param_sets = _parse_values(strategy, args.values)
    config = exec_config(args)
    bars = load_bars(args)
    method: Literal["grid", "optuna"] = "optuna" if args.trials is not None else "grid"
    out = args.out or Path("runs") / strategy.name / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    first, last = bars["ts"][0], bars["ts"][-1]
    print(
        f"sweep {strategy.name} ({method}) on {args.exchange} {args.symbol} {args.timeframe}: "
        f"{len(bars)} bars {first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC, "
        f"fee {config.fee:g}, objective {args.objective}, "
        f"{args.folds} walk-forward fold(s) ({args.wf_mode})"
    )
    result = run_sweep(
        strategy,
        bars,
        config,
        method=method,
        param_sets=param_sets,
        n_trials=args.trials or 0,
        study_name=args.study_name,
        storage=args.storage or DEFAULT_STORAGE,
        folds=args.folds,
        wf_mode=args.wf_mode,
        train_blocks=args.train_blocks,
        objective=args.objective,
        top_k=args.top,
        out_dir=out,
        seed=args.seed,
        progress=not args.no_progress,
        pbo_splits=args.pbo_splits,
        plot=not args.no_plot,
        data={"exchange": args.exchange, "symbol": args.symbol, "timeframe": args.timeframe},
    )
    n = result.table.height
    print(
        f"{n} parameter sets in {result.elapsed_s:.1f} s"
        + (f", {len(result.failures)} failed" if result.failures else "")
        + (f"; Optuna study {result.study_name!r} at {result.storage}" if result.study_name else "")
    )
    for params, msg in result.failures[:5]:
        print(f"  failed {format_params(params)}: {msg}")
    if len(result.failures) > 5:
        print(f"  ... {len(result.failures) - 5} more in {result.table_path}")
    where = (
        "ranked on the last fold's in-sample span, OOS = its out-of-sample block"
        if result.walkforward
        else "ranked on the full sample"
    )
    print(f"\ntop {len(result.top)} by {result.objective} ({where}):")
    print(format_top(result, (args.objective, "total_return", "max_drawdown", "trades")))
    wf = result.walkforward
    if wf is not None:
        print(f"\nwalk-forward ({wf.mode}, {wf.n_folds} folds):")
        for f in wf.folds:
            print(
                f"  fold {f.fold + 1}: IS {f.is_start:%Y-%m-%d}..{f.is_end:%Y-%m-%d} "
                f"OOS {f.oos_start:%Y-%m-%d}..{f.oos_end:%Y-%m-%d}  "
                f"{format_params(f.params) or '(no choice)'}  "
                f"IS {args.objective} {_fmt(f.is_metrics.get(args.objective, float('nan')))}  "
                f"OOS {args.objective} {_fmt(f.oos_metrics.get(args.objective, float('nan')))}  "
                f"OOS return {_fmt(f.oos_metrics.get('total_return', float('nan')))}"
            )
        oos = wf.oos_metrics
        print(
            "  concatenated OOS: "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in oos.items() if k != "trades")
            + f", trades {int(oos['trades'])}"
        )
    d = result.dsr_detail
    print(
        f"\ndeflated Sharpe ratio {_fmt(result.dsr)} (best full-sample set: daily Sharpe "
        f"{_fmt(d.get('sharpe', float('nan')))} vs expected max {_fmt(d.get('sr0', float('nan')))}"
        f" of {int(d.get('n_trials', 0))} trials)"
    )
    pd_ = result.pbo_detail
    print(
        f"probability of backtest overfitting {_fmt(result.pbo)} (CSCV, "
        f"S={int(pd_.get('n_splits', 0))}, {int(pd_.get('n_trials', 0))} sets x "
        f"{int(pd_.get('n_obs', 0))} days)"
    )
    print(f"\nresults: {result.table_path}")
    if result.top_path:
        print(f"top-k:   {result.top_path}")
    if result.plot_path:
        print(f"plot:    {result.plot_path}")
    print(f"summary: {result.summary_path}")
    if not args.no_track:
        run_id = _track(args, strategy, bars, config, result)
        print(f"MLflow:  pipeline run {run_id} (tier1/vectorbt child); `tierline runs` or make ui")
    return 0


def _track(args: argparse.Namespace, strategy: Any, bars: Any, config: Any, result: Any) -> str:
    """Log the sweep as a pipeline parent with its tier-1 child; return the parent run id."""
    import sys

    from tierline.pipeline import log_tier1_sweep
    from tierline.tracking import DatasetRef, Tracker

    tracker = Tracker(args.tracking_uri)
    dataset = DatasetRef.from_bars(
        bars,
        exchange=args.exchange,
        symbol=args.symbol,
        timeframe=args.timeframe,
        synthetic=args.exchange == "synthetic",
    )
    run_config = {
        "fee": config.fee,
        "initial_cash": config.initial_cash,
        "stake": config.stake,
        "method": result.method,
        "objective": result.objective,
        "folds": args.folds,
    }
    with tracker.pipeline(
        strategy=strategy.name,
        dataset=dataset,
        config=run_config,
        argv=sys.argv,
        tags={"source": "tierline sweep"},
    ) as parent:
        log_tier1_sweep(parent, result)
    return str(parent.run_id)
