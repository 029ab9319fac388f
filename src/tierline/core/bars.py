"""Bars as strategies see them: the catalog frame converted to the signal-function input."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = ["to_strategy_frame"]


def to_strategy_frame(bars: pl.DataFrame) -> pd.DataFrame:
    """Return catalog OHLCV bars as the pandas frame signal functions take.

    Columns ``date`` (bar open, tz-aware UTC), ``open, high, low, close, volume``; RangeIndex,
    like freqtrade's dataframe.
    """
    df = bars.select("ts", "open", "high", "low", "close", "volume").to_pandas()
    return df.rename(columns={"ts": "date"})
