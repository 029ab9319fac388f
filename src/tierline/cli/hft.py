"""``tierline hft``: tier 3 alone, the strategy's orders replayed in hftbacktest on L2 data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tierline.cli._common import add_market_args

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``hft`` to the parser."""
    p = sub.add_parser(
        "hft",
        help="tier 3: replay the strategy's orders in hftbacktest (L2 queue and latency)",
        description=(
            "Build bars (from the catalog trades at --timeframe, or its OHLCV), run the "
            "strategy's signal function on them and replay every decision as orders in a real "
            "hftbacktest backtest over the L2 book: taker (IOC at the far touch) or passive "
            "(post-only at the near touch, cancelled and crossed after a timeout), with the "
            "latency and queue models of the tier-3 config (hft/default.toml). Prints the "
            "implementation shortfall against the bar-open price tiers 1-2 assume, the fill "
            "ratio, time to fill, maker share and net P&L after fees, and logs a tier3 run to "
            "MLflow (--no-track to skip). Where no real L2 covers the span, --l2 auto uses a "
            "book synthesised from the bars (tagged l2=synthetic); --l2 real refuses."
        ),
    )
    p.add_argument("strategy", help="strategy name (see `tierline strategies`)")
    p.add_argument("--params", default=None, help="e.g. fast=10,slow=50 (default: defaults)")
    g = p.add_argument_group("tier 3")
    g.add_argument(
        "--config",
        type=Path,
        default=None,
        help="tier-3 config TOML (default: $TIERLINE_HFT_CONFIG or hft/default.toml)",
    )
    g.add_argument("--style", choices=("taker", "passive"), default=None, help="execution style")
    g.add_argument(
        "--latency", choices=("constant", "feed"), default=None, help="order latency model"
    )
    g.add_argument(
        "--queue", choices=("risk_averse", "power_prob"), default=None, help="queue model"
    )
    g.add_argument(
        "--l2",
        choices=("auto", "real", "synthetic"),
        default="auto",
        help="book: real L2 from the catalog, a synthetic one from bars, or auto (default)",
    )
    g.add_argument(
        "--stake", type=float, default=None, help="fixed quote stake per trade (default: all)"
    )
    g.add_argument("--cash", type=float, default=10_000.0, help="initial equity (default 10000)")
    g.add_argument(
        "--out",
        type=Path,
        default=None,
        help="also write trades, legs, fills (Parquet) and the fill plot (HTML) here",
    )
    t = p.add_argument_group("tracking")
    t.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite)")
    t.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    add_market_args(p)
    p.set_defaults(func=_cmd_hft)


def _cmd_hft(args: argparse.Namespace) -> int:
    from tierline.cli._common import resolve_params
    from tierline.core.conventions import ExecutionConfig
    from tierline.data.catalog import Catalog
    from tierline.engines.hft.config import load_hft_config
    from tierline.engines.hft.execution import run_tier3
    from tierline.engines.hft.report import format_report
    from tierline.strategy import get_strategy

    strategy = get_strategy(args.strategy)
    params = resolve_params(strategy, args.params)
    config = load_hft_config(args.config).with_overrides(
        style=args.style, latency=args.latency, queue=args.queue
    )
    execution = ExecutionConfig(initial_cash=args.cash, stake=args.stake)
    result = run_tier3(
        strategy,
        params,
        catalog=Catalog(),
        exchange=args.exchange,
        symbol=args.symbol,
        timeframe=args.timeframe,
        config=config,
        execution=execution,
        l2=args.l2,
        start=args.start,
        end=args.end,
        say=lambda msg: print(msg, flush=True),
    )
    print(format_report(result))
    if args.out is not None:
        _write_outputs(result, args.out)
    if not args.no_track:
        run_id = _track(result, args)
        print(f"  MLflow: tier3 run {run_id} (see `tierline runs {strategy.name}` or `make ui`)")
    return 0


def _write_outputs(result: Any, out: Path) -> None:
    from tierline.data.atomic import atomic_path
    from tierline.engines.hft.report import write_fill_plot

    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("trades", result.trades), ("legs", result.legs), ("fills", result.fills)):
        with atomic_path(out / f"{name}.parquet") as tmp:
            frame.write_parquet(tmp)
    write_fill_plot(result, out / "tier3_fills.html")
    print(f"  outputs: {out}/trades.parquet, legs.parquet, fills.parquet, tier3_fills.html")


def _track(result: Any, args: argparse.Namespace) -> str:
    from tierline.engines.hft.report import log_tier3
    from tierline.tracking import DatasetRef, Tracker

    bars = result.extra["bars"]
    dataset = DatasetRef.from_bars(
        bars,
        exchange=result.exchange,
        symbol=result.symbol,
        timeframe=result.timeframe,
        synthetic=result.synthetic or result.exchange == "synthetic",
    )
    tracker = Tracker(args.tracking_uri)
    config = {
        "tier": "tier3",
        "initial_cash": args.cash,
        "stake": args.stake,
        "l2": args.l2,
        "hft": result.config.to_dict(),
        "hft_config_id": result.config.config_id,
    }
    with tracker.pipeline(
        strategy=result.strategy, dataset=dataset, config=config, argv=sys.argv
    ) as parent:
        return log_tier3(parent, result)
