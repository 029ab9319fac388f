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
    import pandas as pd
    import polars as pl

    prices = ("open", "high", "low", "close", "volume")
    schema = bars.schema
    if (
        schema.get("ts") == pl.Datetime("ns", "UTC")
        and all(schema.get(c) == pl.Float64 and not bars[c].null_count() for c in prices)
        and not bars["ts"].null_count()
    ):
        # the common case, straight from NumPy (no Arrow round trip; the frame owns copies)
        date = pd.DatetimeIndex(bars["ts"].dt.epoch("ns").to_numpy().view("datetime64[ns]"))
        return pd.DataFrame(
            {"date": date.tz_localize("UTC"), **{c: bars[c].to_numpy() for c in prices}}
        )
    df = bars.select("ts", *prices).to_pandas()
    return df.rename(columns={"ts": "date"})
