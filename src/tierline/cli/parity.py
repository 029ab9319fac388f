"""``tierline parity``: the same strategy in every engine, compared trade by trade."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tierline.cli._common import add_exec_args, add_market_args

__all__ = ["register", "run_parity"]

DEFAULT_ENGINES = "vectorbt,nautilus,freqtrade"


def register(sub: Any) -> None:
    """Add ``parity`` to the parser."""
    p = sub.add_parser(
        "parity",
        help="run reference, vectorbt, nautilus and freqtrade on the same data; compare trades",
        description=(
            "Run the strategy in the reference engine and each named engine on the same bars "
            "and parameters, and compare trade by trade: matched trades, trades only in one "
            "engine, entry/exit time and price differences, return and P&L differences. Exit "
            "code 1 when any engine is beyond tolerance: identical entry/exit bars, prices "
            "equal to the instrument's tick, per-trade return within 1e-6, total P&L within "
            "0.01%% of max(|reference P&L|, initial cash)."
        ),
    )
    p.add_argument("strategy", help="strategy name (see `tierline strategies`)")
    p.add_argument("--params", default=None, help="e.g. fast=10,slow=50 (default: defaults)")
    p.add_argument(
        "--engines", default=DEFAULT_ENGINES, help=f"engines to compare (default {DEFAULT_ENGINES})"
    )
    p.add_argument("--report", type=Path, default=None, help="write the comparison (Parquet)")
    add_market_args(p)
    add_exec_args(p)
    p.set_defaults(func=_cmd_parity)


def run_parity(
    strategy: Any,
    bars: Any,
    params: dict[str, Any],
    config: Any,
    *,
    exchange: str,
    symbol: str,
    engines: list[str],
) -> tuple[Any, list[Any]]:
    """Run the reference and ``engines`` and compare each with the reference.

    Returns
    -------
    tuple
        The reference `BacktestResult` and one `EngineParity` per engine.
    """
    from tierline.core.instruments import instrument_for
    from tierline.core.parity import ParityTolerance, compare_trades
    from tierline.engines import run_backtest

    spec = instrument_for(exchange, symbol, bars)
    tol = ParityTolerance(tick=spec.tick)
    market = {"exchange": exchange, "symbol": symbol}
    ref = run_backtest("reference", strategy, bars, params, config, **market)
    out = []
    for engine in engines:
        res = run_backtest(engine, strategy, bars, params, config, **market)
        out.append(
            compare_trades(
                ref.trades,
                res.trades,
                engine=engine,
                tolerance=tol,
                initial_cash=config.initial_cash,
                notes=res.notes,
            )
        )
    return ref, out


def _cmd_parity(args: argparse.Namespace) -> int:
    import polars as pl

    from tierline.cli._common import exec_config, load_bars, resolve_params
    from tierline.data.atomic import atomic_path
    from tierline.strategy import format_params, get_strategy

    strategy = get_strategy(args.strategy)
    params = resolve_params(strategy, args.params)
    bars = load_bars(args)
    config = exec_config(args)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    print(
        f"parity {strategy.name} ({format_params(params)}): {args.exchange} {args.symbol} "
        f"{args.timeframe}, {len(bars)} bars, engines reference vs {', '.join(engines)}"
    )
    ref, results = run_parity(
        strategy,
        bars,
        params,
        config,
        exchange=args.exchange,
        symbol=args.symbol,
        engines=engines,
    )
    print(f"reference: {len(ref.trades)} trades, P&L {float(ref.trades['pnl'].sum()):.6f}")
    for r in results:
        print(r.summary())
        if not r.passed and not r.offending.is_empty():
            print("    first offending trades:")
            print("    " + str(r.offending.head(5)).replace("\n", "\n    "))
        for what, frame in (
            ("only in reference", r.only_reference),
            ("only in " + r.engine, r.only_engine),
        ):
            if not frame.is_empty():
                print(f"    {what}: " + ", ".join(str(t) for t in frame["entry_ts"].head(5)))
    if args.report:
        with atomic_path(args.report) as tmp:
            pl.DataFrame([r.to_row() for r in results]).write_parquet(tmp)
        print(f"report written to {args.report}")
    ok = all(r.passed for r in results)
    print("parity: all engines within tolerance" if ok else "parity: FAILED (see above)")
    return 0 if ok else 1
