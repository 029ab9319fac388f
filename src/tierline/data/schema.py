"""Column contracts of the three datasets in the catalog (OHLCV, trades, L2 book)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

__all__ = ["BOOK", "DATASETS", "OHLCV", "TRADES", "Dataset", "DatasetName"]

DatasetName = Literal["ohlcv", "trades", "book"]

TS = pl.Datetime("ns", "UTC")


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """A dataset's schema, its time column and how it is partitioned on disk."""

    name: DatasetName
    schema: dict[str, pl.DataType]
    time_column: str
    #: ``timeframe``: one directory per timeframe, a file per year.
    #: ``date``: one directory per UTC date (``date=YYYY-MM-DD``).
    partitioning: Literal["timeframe", "date"]
    #: Whether the time column must be strictly increasing (OHLCV) or only non-decreasing
    #: (trades and book events share timestamps).
    unique_time: bool


OHLCV = Dataset(
    name="ohlcv",
    schema={
        "ts": TS,
        "open": pl.Float64(),
        "high": pl.Float64(),
        "low": pl.Float64(),
        "close": pl.Float64(),
        "volume": pl.Float64(),
    },
    time_column="ts",
    partitioning="timeframe",
    unique_time=True,
)

TRADES = Dataset(
    name="trades",
    schema={
        "ts": TS,
        "price": pl.Float64(),
        "qty": pl.Float64(),
        # "buy" when the taker bought (aggressor side), "sell" otherwise.
        "side": pl.String(),
        "trade_id": pl.String(),
    },
    time_column="ts",
    partitioning="date",
    unique_time=False,
)

BOOK = Dataset(
    name="book",
    schema={
        "ts_exch": TS,
        "ts_local": TS,
        # "bid" or "ask".
        "side": pl.String(),
        "price": pl.Float64(),
        # quantity at that price after the event; 0 deletes the level.
        "qty": pl.Float64(),
        # True for rows of a full snapshot (the book is replaced by the snapshot's levels).
        "is_snapshot": pl.Boolean(),
    },
    time_column="ts_local",
    partitioning="date",
    unique_time=False,
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (OHLCV, TRADES, BOOK)}
