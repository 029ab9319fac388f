"""Higher timeframes from lower ones, and bars from trades.

Bars are stamped at their open. A bucket is kept only when the source covers it completely:
the first bucket is dropped when the data starts inside it, and the last when it ends inside it
(an interior bucket with missing source bars, e.g. an exchange outage, is kept, as exchanges do).
"""

from __future__ import annotations

import polars as pl

from tierline.data.market import timeframe_ns
from tierline.errors import ConfigError, DataError

__all__ = ["bars_from_trades", "resample_in_catalog", "resample_ohlcv"]

_AGG = [
    pl.col("open").first(),
    pl.col("high").max(),
    pl.col("low").min(),
    pl.col("close").last(),
    pl.col("volume").sum(),
]


def resample_ohlcv(bars: pl.DataFrame, source: str, target: str) -> pl.DataFrame:
    """Aggregate ``source`` bars into ``target`` bars.

    Parameters
    ----------
    bars
        OHLCV frame (catalog schema), sorted, unique ``ts``.
    source, target
        Timeframes; ``target`` must be a whole multiple of ``source``.

    Returns
    -------
    polars.DataFrame
        Target bars, stamped at their open, only completely covered buckets at the ends.

    Raises
    ------
    ConfigError
        If ``target`` is not a multiple of ``source``.
    """
    s_ns, t_ns = timeframe_ns(source), timeframe_ns(target)
    if t_ns <= s_ns or t_ns % s_ns:
        raise ConfigError(
            f"cannot resample {source} to {target}: the target must be a whole multiple of the "
            "source timeframe"
        )
    if bars.is_empty():
        return bars
    out = bars.group_by_dynamic("ts", every=target, closed="left", label="left").agg(_AGG)
    first_ts, last_ts = bars["ts"][0], bars["ts"][-1]
    lo_ok = pl.col("ts") >= pl.lit(first_ts)
    hi_ok = (pl.col("ts").dt.epoch("ns") + t_ns) <= (pl.lit(last_ts).dt.epoch("ns") + s_ns)
    return out.filter(lo_ok & hi_ok)


def bars_from_trades(trades: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    """Build OHLCV bars from trades (``ts, price, qty``): open = first price, close = last.

    Only buckets lying entirely within [first trade, last trade] are kept; buckets without a
    trade produce no bar.
    """
    t_ns = timeframe_ns(timeframe)
    if trades.is_empty():
        raise DataError("no trades to build bars from")
    t = trades.sort("ts", maintain_order=True).select(
        "ts",
        pl.col("price").alias("open"),
        pl.col("price").alias("high"),
        pl.col("price").alias("low"),
        pl.col("price").alias("close"),
        pl.col("qty").alias("volume"),
    )
    out = t.group_by_dynamic("ts", every=timeframe, closed="left", label="left").agg(_AGG)
    first_ts, last_ts = t["ts"][0], t["ts"][-1]
    return out.filter(
        (pl.col("ts") >= pl.lit(first_ts))
        & ((pl.col("ts").dt.epoch("ns") + t_ns) <= pl.lit(last_ts).dt.epoch("ns"))
    ).with_columns(pl.col("ts").dt.cast_time_unit("ns"))


def resample_in_catalog(
    catalog: object, *, exchange: str, symbol: str, source: str | None, target: str
) -> str:
    """Build ``target`` bars from stored ``source`` bars (or trades) and store them.

    ``source`` None picks the finest stored timeframe that divides ``target``.

    Returns
    -------
    str
        A one-line summary for the CLI.
    """
    from tierline.data.catalog import Catalog

    assert isinstance(catalog, Catalog)
    t_ns = timeframe_ns(target)
    if source == "trades":
        trades = catalog.read("trades", exchange=exchange, symbol=symbol)
        bars = bars_from_trades(trades, target)
        origin = "trades"
    else:
        if source is None:
            stored = [
                e.timeframe
                for e in catalog.entries()
                if e.dataset == "ohlcv"
                and e.exchange == exchange.lower()
                and e.symbol == symbol
                and e.timeframe
                and timeframe_ns(e.timeframe) < t_ns
                and t_ns % timeframe_ns(e.timeframe) == 0
            ]
            if not stored:
                raise DataError(
                    f"no stored {exchange} {symbol} timeframe divides {target}; "
                    "import finer bars or pass --from"
                )
            source = min(stored, key=timeframe_ns)
        src = catalog.read_ohlcv(exchange, symbol, source)
        bars = resample_ohlcv(src, source, target)
        origin = source
    if bars.is_empty():
        raise DataError(f"resampling {origin} to {target} gives no complete bar")
    r = catalog.write_ohlcv(
        bars, exchange=exchange, symbol=symbol, timeframe=target, source=f"resample:{origin}"
    )
    return (
        f"{exchange} {symbol}: {target} bars from {origin}: {len(bars)} built, "
        f"{r.rows_added} new, {r.rows_total} stored"
    )
