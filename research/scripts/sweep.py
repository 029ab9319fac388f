"""Sweep ``sma_cross`` on catalog bars, walk forward, and log to MLflow: the notebook as a script.

The same flow as ``research/notebooks/sweep_sma_cross.ipynb`` for those who prefer scripts:
load the bars (writing the synthetic sample first when the catalog lacks it), sweep a grid of
fast/slow lengths with walk-forward folds (`tierline.sweep.run_sweep`), print the top
candidates, the folds, DSR and PBO, and log one pipeline run with a tier-1 child to MLflow.
Paths are relative to the current directory (run it from the workspace root)::

    .venv/bin/python research/scripts/sweep.py --folds 2 --fast 5:30:5 --slow 20:100:10
    .venv/bin/python research/scripts/sweep.py --exchange binance --start 2024-01-01 --out runs/x
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

STRATEGY = "sma_cross"


def _span(text: str) -> range:
    """Parse ``LO:HI:STEP`` (HI included) into a range."""
    try:
        lo, hi, step = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LO:HI:STEP (integers)") from None
    if step < 1 or hi < lo:
        raise argparse.ArgumentTypeError(f"{text!r}: need HI >= LO and STEP >= 1")
    return range(lo, hi + 1, step)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Return the parsed command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exchange", default="synthetic", help="catalog exchange (default synthetic)")
    p.add_argument("--symbol", default="BTC/USDT", help="BASE/QUOTE (default BTC/USDT)")
    p.add_argument("--timeframe", default="5m", help="bar length (default 5m)")
    p.add_argument("--start", default=None, help="first bar, ISO date/time UTC (default: all)")
    p.add_argument("--end", default=None, help="stop before this time (default: all)")
    p.add_argument("--data-dir", type=Path, default=Path("data/parquet"), help="catalog root")
    p.add_argument("--sample-days", type=int, default=30, help="synthetic days if missing")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="MLflow store")
    p.add_argument("--fee", type=float, default=0.001, help="fee rate per leg (default 0.001)")
    p.add_argument("--objective", default="sharpe", help="metric that chooses (default sharpe)")
    p.add_argument("--folds", type=int, default=3, help="walk-forward folds, >= 1 (default 3)")
    p.add_argument("--wf-mode", choices=("anchored", "rolling"), default="anchored")
    p.add_argument("--top", type=int, default=10, help="candidates kept (default 10)")
    p.add_argument("--fast", type=_span, default=range(5, 51, 5), help="LO:HI:STEP (5:50:5)")
    p.add_argument("--slow", type=_span, default=range(20, 201, 10), help="LO:HI:STEP (20:200:10)")
    p.add_argument("--out", type=Path, default=None, help="also write the sweep outputs here")
    args = p.parse_args(argv)
    if args.folds < 1:
        p.error("--folds must be at least 1 (the OOS metrics come from walk-forward)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep and log it; return the exit code (tierline's, on its errors)."""
    from tierline.errors import TierlineError

    args = parse_args(argv)
    try:
        return run(args)
    except TierlineError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


def run(args: argparse.Namespace) -> int:
    """Load, sweep, print and log as the module docstring says."""
    from tierline.core.conventions import ExecutionConfig
    from tierline.data.catalog import Catalog
    from tierline.data.sample import SAMPLE_EXCHANGE, write_sample
    from tierline.pipeline import log_tier1_sweep
    from tierline.strategy import format_params, get_strategy
    from tierline.sweep import run_sweep
    from tierline.sweep.report import format_top
    from tierline.tracking import DatasetRef, Tracker

    catalog = Catalog(args.data_dir)
    ex, sym, tf = args.exchange, args.symbol, args.timeframe
    if ex == SAMPLE_EXCHANGE and not catalog.files("ohlcv", ex, sym, tf):
        print(write_sample(catalog, days=args.sample_days))
    bars = catalog.read_ohlcv(ex, sym, tf, args.start, args.end)
    first, last = bars["ts"][0], bars["ts"][-1]
    print(
        f"{len(bars):,} {tf} bars of {ex} {sym}: "
        f"{first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC"
    )

    strategy = get_strategy(STRATEGY)
    param_sets = [
        {"fast": fast, "slow": slow}
        for fast in args.fast
        for slow in args.slow
        if strategy.is_valid({"fast": fast, "slow": slow})
    ]
    sweep = run_sweep(
        strategy,
        bars,
        ExecutionConfig(fee=args.fee),
        method="grid",
        param_sets=param_sets,
        folds=args.folds,
        wf_mode=args.wf_mode,
        objective=args.objective,
        top_k=args.top,
        out_dir=args.out,
        data={"exchange": ex, "symbol": sym, "timeframe": tf},
    )
    wf = sweep.walkforward
    assert wf is not None  # folds >= 1
    print(f"\n{sweep.table.height} parameter sets in {sweep.elapsed_s:.1f} s")
    print(format_top(sweep, (args.objective, "total_return", "max_drawdown", "trades")))
    print("\nwalk-forward folds (IS choice, OOS score):")
    print(wf.folds_table().select("fold", "oos_start", "params", f"^(is|oos)_{args.objective}$"))
    print("concatenated OOS: " + ", ".join(f"{k} {v:.4g}" for k, v in sweep.oos_metrics.items()))
    print(
        f"DSR {sweep.dsr:.3f} (>= 0.95: the winner survives the selection bias of "
        f"{sweep.table.height} sets); PBO {sweep.pbo:.3f} (0.5 = coin toss, near 0 = the "
        "in-sample choice generalises)"
    )

    tracker = Tracker(args.tracking_uri)
    dataset = DatasetRef.from_bars(
        bars, exchange=ex, symbol=sym, timeframe=tf, synthetic=ex == SAMPLE_EXCHANGE
    )
    config = {
        "fee": args.fee,
        "objective": args.objective,
        "folds": args.folds,
        "wf_mode": args.wf_mode,
        "start": args.start,
        "end": args.end,
        "grid": {
            n: [r.start, r.stop - 1, r.step] for n, r in (("fast", args.fast), ("slow", args.slow))
        },
    }
    with tracker.pipeline(
        strategy=strategy.name, dataset=dataset, config=config, tags={"source": "script"}
    ) as parent:
        log_tier1_sweep(parent, sweep)
    best = format_params(sweep.top[0].params) if sweep.top else "(none)"
    print(f"\ntop candidate {best}; MLflow pipeline run {parent.run_id} in {tracker.uri}")
    if sweep.out_dir is not None:
        print(f"outputs: {sweep.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
