"""Options shared by the commands that run strategies on catalog data."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

__all__ = ["add_exec_args", "add_market_args", "exec_config", "load_bars", "resolve_params"]


def add_market_args(p: argparse.ArgumentParser) -> None:
    """Add ``--exchange --symbol --timeframe --start --end``."""
    g = p.add_argument_group("data (from the Parquet catalog)")
    g.add_argument("--exchange", default="binance", help="exchange partition (default binance)")
    g.add_argument("--symbol", default="BTC/USDT", help="BASE/QUOTE (default BTC/USDT)")
    g.add_argument("--timeframe", default="5m", help="bar length (default 5m)")
    g.add_argument("--start", default=None, help="first bar, ISO date/time UTC (default: all)")
    g.add_argument("--end", default=None, help="stop before this time (default: all)")


def add_exec_args(p: argparse.ArgumentParser) -> None:
    """Add the execution-convention options ``--fee --stake --cash``."""
    g = p.add_argument_group("execution conventions")
    g.add_argument("--fee", type=float, default=0.001, help="fee rate per leg (default 0.001)")
    g.add_argument(
        "--stake",
        type=float,
        default=None,
        help="fixed quote stake per trade (default: all equity)",
    )
    g.add_argument("--cash", type=float, default=10_000.0, help="initial equity (default 10000)")


def load_bars(args: argparse.Namespace) -> pl.DataFrame:
    """Read the bars the market options select, validated."""
    from tierline.data.catalog import Catalog

    return Catalog().read_ohlcv(args.exchange, args.symbol, args.timeframe, args.start, args.end)


def exec_config(args: argparse.Namespace) -> Any:
    """Return the `ExecutionConfig` the options describe."""
    from tierline.core.conventions import ExecutionConfig

    return ExecutionConfig(fee=args.fee, stake=args.stake, initial_cash=args.cash)


def resolve_params(strategy: Any, text: str | None) -> dict[str, Any]:
    """Parse ``--params fast=10,slow=50`` and validate against the strategy's space."""
    from tierline.strategy import parse_params

    return strategy.validate_params(parse_params(text))  # type: ignore[no-any-return]
