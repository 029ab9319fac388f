"""The one result shape every engine is normalised to: a trades table and an equity curve."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from tierline.errors import EngineError

__all__ = [
    "TRADES_TABLE_SCHEMA",
    "BacktestResult",
    "empty_trades",
    "trades_from_rows",
    "write_trades_table",
]

TS = pl.Datetime("ns", "UTC")
#: The trades table every engine produces (one row per closed round trip).
TRADES_TABLE_SCHEMA: dict[str, pl.DataType] = {
    "entry_ts": TS,  # fill time of the entry = open time of the fill bar
    "exit_ts": TS,  # fill time of the exit (bar open; last bar's close time for a forced exit)
    "entry_price": pl.Float64(),
    "exit_price": pl.Float64(),
    "qty": pl.Float64(),  # base quantity
    "fees": pl.Float64(),  # quote fees, both legs
    "pnl": pl.Float64(),  # quote P&L net of fees
    "return": pl.Float64(),  # exit*(1-f)/(entry*(1+f)) - 1
}


def trades_from_rows(rows: Sequence[Sequence[Any]]) -> pl.DataFrame:
    """Return a trades table from row tuples in `TRADES_TABLE_SCHEMA` column order.

    Timestamps may be epoch nanoseconds or datetimes.
    """
    cols = list(TRADES_TABLE_SCHEMA)
    if not rows:
        return empty_trades()
    df = pl.DataFrame(rows, schema=cols, orient="row")
    return df.with_columns(
        pl.col("entry_ts", "exit_ts").cast(pl.Datetime("ns", "UTC")),
        pl.exclude("entry_ts", "exit_ts").cast(pl.Float64),
    ).select(pl.col(c).cast(d) for c, d in TRADES_TABLE_SCHEMA.items())


def empty_trades() -> pl.DataFrame:
    """Return an empty trades table with the right schema."""
    return pl.DataFrame(schema=TRADES_TABLE_SCHEMA)


@dataclass(frozen=True, kw_only=True)
class BacktestResult:
    """One backtest's normalised output.

    Attributes
    ----------
    engine
        ``reference``, ``vectorbt``, ``nautilus``, ``freqtrade`` or ``hftbacktest``.
    trades
        Trades table (`TRADES_TABLE_SCHEMA`).
    equity
        Equity curve: ``ts`` (bar open, UTC ns) and ``equity`` (quote, marked at that bar's
        close), one row per bar.
    notes
        Anything the engine could not do exactly as the conventions say, in words.
    """

    engine: str
    trades: pl.DataFrame
    equity: pl.DataFrame
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if dict(self.trades.schema) != TRADES_TABLE_SCHEMA:
            raise EngineError(
                f"{self.engine}: trades table schema {dict(self.trades.schema)} differs from "
                f"{TRADES_TABLE_SCHEMA}"
            )


def write_trades_table(trades: pl.DataFrame, path: Path) -> None:
    """Write a trades table to Parquet atomically."""
    from tierline.data.atomic import atomic_path

    with atomic_path(path) as tmp:
        trades.write_parquet(tmp)
