"""``tierline strategies``, ``tierline check`` and ``tierline backtest``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tierline.cli._common import add_exec_args, add_market_args

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``strategies``, ``check`` and ``backtest`` to the parser."""
    from tierline.engines import ENGINES  # light: no engine is imported

    ls = sub.add_parser(
        "strategies",
        help="list the strategies: built-ins and the user strategies folder",
        description=(
            "List every strategy with its parameters (range, step, default), constraints, "
            "warm-up and source. User strategies are the *.py files of ./strategies or "
            "$TIERLINE_STRATEGIES_DIR."
        ),
    )
    ls.set_defaults(func=_cmd_strategies)

    chk = sub.add_parser(
        "check",
        help="prove a strategy causal: lookahead and window-stability checks",
        description=(
            "Compare the full-history signals with signals computed on prefixes (lookahead) "
            "and on warm-up-length windows (window stability) at sampled bars, and, when the "
            "strategy declares a per-bar hook (on_bar=), the hook's signal on each bar's "
            "rolling window with the signal function (on_bar). Exit code 1 and the first "
            "offending bar when a check fails."
        ),
    )
    chk.add_argument("strategy", metavar="STRATEGY", help="strategy name (see `strategies`)")
    chk.add_argument("--params", default=None, help="parameters, e.g. fast=10,slow=50")
    chk.add_argument(
        "--samples", type=int, default=50, help="bars to check (default 50; about half signal bars)"
    )
    chk.add_argument("--seed", type=int, default=0, help="seed of the random samples (default 0)")
    chk.add_argument(
        "--hook-all-bars",
        action="store_true",
        help="compare the on_bar hook with the signal function at every bar, not only sampled",
    )
    add_market_args(chk)
    chk.set_defaults(func=_cmd_check)

    bt = sub.add_parser(
        "backtest",
        help="backtest a strategy on one engine and print the common metrics",
        description=(
            "Run one backtest on catalog bars with the shared execution conventions (signal on "
            "bar t's close, fill at t+1's open, fee on both legs) and print the common metrics."
        ),
    )
    bt.add_argument("strategy", metavar="STRATEGY", help="strategy name (see `strategies`)")
    bt.add_argument(
        "--engine",
        default="reference",
        choices=ENGINES,
        help="engine (default reference)",
    )
    bt.add_argument("--params", default=None, help="parameters, e.g. fast=10,slow=50")
    add_market_args(bt)
    add_exec_args(bt)
    bt.add_argument("--trades-out", type=Path, default=None, help="write the trades (Parquet)")
    bt.add_argument("--equity-out", type=Path, default=None, help="write the equity (Parquet)")
    bt.set_defaults(func=_cmd_backtest)


def _describe_param(p: Any) -> str:
    from tierline.strategy.contract import Choice, Float

    if isinstance(p, Choice):
        return f"{p.name} in {list(p.choices)} (default {p.default!r})"
    rng = f"{p.low:g}..{p.high:g}"
    if isinstance(p, Float):
        rng += f" step {p.step:g}" if p.step is not None else ""
        rng += " log" if p.log else ""
    elif p.step != 1:
        rng += f" step {p.step}"
    if p.grid:
        rng += f" grid {list(p.grid)}"
    return f"{p.name} {rng} (default {p.default:g})"


def _warmup_rule(s: Any) -> str:
    """Return the warm-up rule's source text (``lambda p: p["slow"] + 1``) or its name."""
    import inspect

    fn = s.warmup_fn
    try:
        src = inspect.getsource(fn).strip()
    except (OSError, TypeError):
        src = ""
    if getattr(fn, "__name__", "") == "<lambda>" and "lambda" in src and src.count("lambda") == 1:
        rule = src[src.index("lambda") :].rstrip().rstrip(",")
        while rule.count(")") > rule.count("(") and rule.endswith(")"):
            rule = rule[:-1].rstrip().rstrip(",")
        return rule
    return str(getattr(fn, "__qualname__", fn))


def _source(s: Any) -> str:
    """Return the strategy's module, with its file for user strategies."""
    import sys

    if s.source.startswith("tierline."):
        return str(s.source)
    file = getattr(sys.modules.get(s.source), "__file__", None)
    return f"{s.source} ({file})" if file else str(s.source)


def _cmd_strategies(args: argparse.Namespace) -> int:
    from tierline.strategy.registry import list_strategies, strategies_dir

    found = list_strategies()
    for name in sorted(found):
        s = found[name]
        print(name)
        if s.description:
            print(f"  {s.description}")
        print(f"  params:      {'; '.join(_describe_param(p) for p in s.params) or '-'}")
        print(f"  constraints: {'; '.join(c.description for c in s.constraints) or '-'}")
        print(f"  warm-up:     {_warmup_rule(s)} ({s.warmup(s.defaults)} bars at the defaults)")
        print(f"  source:      {_source(s)}")
    print(f"({len(found)} strategies; user folder {strategies_dir()})")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from tierline.cli._common import load_bars, resolve_params
    from tierline.core.causality import check_causality
    from tierline.strategy.registry import get_strategy

    strategy = get_strategy(args.strategy)
    params = resolve_params(strategy, args.params)
    bars = load_bars(args)
    report = check_causality(
        strategy,
        bars,
        params,
        samples=args.samples,
        seed=args.seed,
        hook_all_bars=args.hook_all_bars,
    )
    print(report.summary())
    return 0 if report.passed else 1


def _cmd_backtest(args: argparse.Namespace) -> int:
    from tierline.cli._common import exec_config, load_bars, resolve_params
    from tierline.core.metrics import METRIC_NAMES, compute_metrics
    from tierline.core.result import write_trades_table
    from tierline.engines import run_backtest
    from tierline.strategy.contract import format_params
    from tierline.strategy.registry import get_strategy

    strategy = get_strategy(args.strategy)
    params = resolve_params(strategy, args.params)
    config = exec_config(args)
    bars = load_bars(args)
    result = run_backtest(
        args.engine, strategy, bars, params, config, exchange=args.exchange, symbol=args.symbol
    )
    metrics = compute_metrics(result.trades, result.equity, initial_cash=config.initial_cash)
    first, last = bars["ts"][0], bars["ts"][-1]
    print(
        f"{strategy.name} ({format_params(params)}) on {args.engine}: {args.exchange} "
        f"{args.symbol} {args.timeframe}, {len(bars)} bars {first:%Y-%m-%d %H:%M} .. "
        f"{last:%Y-%m-%d %H:%M} UTC, fee {config.fee:g}, cash {config.initial_cash:g}, "
        f"stake {'all equity' if config.stake is None else f'{config.stake:g}'}"
    )
    for name in METRIC_NAMES:
        value = metrics[name]
        text = f"{int(value)}" if name == "trades" else f"{value:.6g}"
        print(f"  {name:<14}{text}")
    print(f"{len(result.trades)} trades")
    for note in result.notes:
        print(f"  note: {note}")
    if args.trades_out is not None:
        write_trades_table(result.trades, args.trades_out)
        print(f"{len(result.trades)} trades written to {args.trades_out}")
    if args.equity_out is not None:
        from tierline.data.atomic import atomic_path

        with atomic_path(args.equity_out) as tmp:
            result.equity.write_parquet(tmp)
        print(f"equity ({len(result.equity)} rows) written to {args.equity_out}")
    return 0
