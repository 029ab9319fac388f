"""``tierline run``: the whole pipeline for one strategy (what `make demo` runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tierline.cli._common import add_exec_args, add_market_args

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``run`` to the parser."""
    p = sub.add_parser(
        "run",
        help="run the pipeline: tier 1 sweep, tier 2 (nautilus, freqtrade) on the top-k with "
        "parity, tier 3 (hftbacktest) on the best",
        description=(
            "Tier 1: grid or Optuna sweep with walk-forward, deflated Sharpe ratio and PBO. "
            "Then the causality check, and tier 2 on the top-k candidates: each in vectorbt, "
            "NautilusTrader and Freqtrade, compared trade by trade with the reference engine; "
            "then tier 3: candidate 1's orders (and parity-passing ones up to --tier3-top) "
            "replayed in hftbacktest on the L2 book (or a book synthesised from the bars). "
            "Everything is logged under one MLflow parent run (see `tierline runs`, `make ui`)."
        ),
    )
    p.add_argument("strategy", help="strategy name (see `tierline strategies`)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--grid", action="store_true", help="grid sweep (the default)")
    g.add_argument("--trials", type=int, default=None, help="Optuna TPE with N trials")
    p.add_argument("--folds", type=int, default=3, help="walk-forward folds (default 3)")
    p.add_argument("--top", type=int, default=3, help="candidates for tier 2 (default 3)")
    p.add_argument(
        "--engines",
        default="nautilus,freqtrade",
        help="tier-2 engines (default nautilus,freqtrade)",
    )
    p.add_argument(
        "--tier3-top",
        type=int,
        default=1,
        help="tier 3 (hftbacktest) on candidate 1 and the parity-passing candidates up to "
        "this rank (default 1; 0 = no tier 3)",
    )
    p.add_argument(
        "--hft-config",
        type=Path,
        default=None,
        help="tier-3 config TOML (default: $TIERLINE_HFT_CONFIG or hft/default.toml)",
    )
    p.add_argument(
        "--l2",
        choices=("auto", "real", "synthetic"),
        default="auto",
        help="tier-3 book: real L2 over the bars' span, synthetic from bars, or auto (default)",
    )
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite)")
    p.add_argument("--out", type=Path, default=None, help="sweep output dir (default runs/...)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_market_args(p)
    add_exec_args(p)
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from tierline.cli._common import exec_config, load_bars
    from tierline.engines.hft.config import load_hft_config
    from tierline.pipeline import run_pipeline
    from tierline.strategy import format_params, get_strategy

    strategy = get_strategy(args.strategy)
    bars = load_bars(args)
    config = exec_config(args)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    result = run_pipeline(
        strategy,
        bars,
        config,
        exchange=args.exchange,
        symbol=args.symbol,
        timeframe=args.timeframe,
        method="optuna" if args.trials else "grid",
        n_trials=args.trials or 0,
        folds=args.folds,
        top_k=args.top,
        engines=engines,
        tracking_uri=args.tracking_uri,
        out_dir=args.out,
        progress=not args.no_progress and sys.stderr.isatty(),
        argv=sys.argv,
        tier3_top=args.tier3_top,
        hft_config=load_hft_config(args.hft_config) if args.tier3_top > 0 else None,
        l2=args.l2,
    )
    print()
    print(f"pipeline {result.strategy}: MLflow parent run {result.parent_run_id}")
    header = (
        f"  {'rank':<5}{'engine':<12}{'return':>10}{'sharpe':>9}{'max dd':>9}{'trades':>8}  parity"
    )
    print(header)
    for (rank, engine), m in sorted(result.metrics.items()):
        par = result.parity.get((rank, engine))
        verdict = "-" if par is None else ("PASS" if par.passed else "FAIL")
        print(
            f"  {rank:<5}{engine:<12}{m['total_return']:>10.4f}{m['sharpe']:>9.3f}"
            f"{m['max_drawdown']:>9.4f}{int(m['trades']):>8d}  {verdict}"
        )
    for (rank, engine), msg in sorted(result.failures.items()):
        print(f"  {rank:<5}{engine:<12}FAILED: {msg}")
    for rank, t3 in sorted(result.tier3.items()):
        m = t3.metrics
        print(
            f"  tier 3, candidate {rank}: l2={t3.l2}, {t3.config.execution.style}, shortfall "
            f"{m['shortfall_bps']:.2f} bps (worst {m['shortfall_bps_max']:.2f}), fill ratio "
            f"{m['fill_ratio']:.3f}, maker share {m['maker_share']:.3f}, net P&L "
            f"{m['net_pnl']:.2f} after fees {m['fees']:.2f}"
        )
    if result.sweep.top:
        print(f"  candidate 1: {format_params(result.sweep.top[0].params)}")
    print(
        f"  causality: {'PASS' if result.causality_passed else 'FAIL'}; tier-2 parity: "
        f"{'PASS' if result.parity_passed else 'FAIL'}"
    )
    print("  see the runs: `tierline runs " + result.strategy + "` or `make ui`")
    return 0 if result.parity_passed and result.causality_passed else 1
