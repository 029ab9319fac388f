"""Shared helpers of the OHLCV importers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl

from tierline.errors import DataError

__all__ = ["epoch_to_ns", "frame_from_columns", "infer_timeframe", "timeframe_from_name"]

_TF_IN_NAME = re.compile(
    r"-(\d+[smhdw])(?:-(futures|spot|mark|funding_rate|index|premiumIndex))?\."
)


def timeframe_from_name(path: Path) -> str | None:
    """Return the timeframe written in a freqtrade-style name (``BTC_USDT-5m.feather``)."""
    m = _TF_IN_NAME.search(path.name)
    return m.group(1) if m else None


def candle_kind_from_name(path: Path) -> str | None:
    """Return freqtrade's candle-type suffix (``futures``, ``mark``, ``funding_rate``...)."""
    m = _TF_IN_NAME.search(path.name)
    return m.group(2) if m else None


def epoch_to_ns(values: np.ndarray) -> np.ndarray:
    """Convert epoch numbers in s, ms, µs or ns (told apart by magnitude) to ns."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v.astype(np.int64)
    mag = np.nanmax(np.abs(v))
    scale = 1e9 if mag < 1e11 else 1e6 if mag < 1e14 else 1e3 if mag < 1e17 else 1.0
    return np.round(v * scale).astype(np.int64)


def frame_from_columns(
    ts_ns: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray
) -> pl.DataFrame:
    """Build an OHLCV frame in the catalog schema from arrays."""
    return pl.DataFrame(
        {
            "ts": pl.Series(ts_ns, dtype=pl.Int64)
            .cast(pl.Datetime("ns"))
            .dt.replace_time_zone("UTC"),
            "open": np.asarray(o, dtype=np.float64),
            "high": np.asarray(h, dtype=np.float64),
            "low": np.asarray(lo, dtype=np.float64),
            "close": np.asarray(c, dtype=np.float64),
            "volume": np.asarray(v, dtype=np.float64),
        }
    )


def infer_timeframe(ts: pl.Series, where: str) -> str:
    """Infer a timeframe from the most common spacing of bar timestamps.

    Raises
    ------
    DataError
        If there are too few bars or the spacing is not a whole number of s/m/h/d.
    """
    if len(ts) < 2:
        raise DataError(f"{where}: too few bars to infer the timeframe; pass --timeframe")
    d = ts.diff().dt.total_nanoseconds().drop_nulls()
    d = d.filter(d > 0)
    if d.is_empty():
        raise DataError(f"{where}: cannot infer the timeframe; pass --timeframe")
    step = int(d.mode().min())  # type: ignore[arg-type]
    for unit, ns in (
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
    ):
        if step % ns == 0:
            return f"{step // ns}{unit}"
    raise DataError(f"{where}: bar spacing of {step} ns is not a timeframe; pass --timeframe")
