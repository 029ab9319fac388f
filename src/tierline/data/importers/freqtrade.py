"""freqtrade OHLCV files: ``<PAIR>-<tf>[-<candle type>].{feather,json,json.gz,parquet}``.

Columns ``date`` (bar open, UTC), ``open, high, low, close, volume`` (feather/parquet); JSON is a
list of ``[ts_ms, open, high, low, close, volume]``.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import polars as pl

from tierline.data.importers import Imported, ImportOptions
from tierline.data.importers._ohlcv import (
    candle_kind_from_name,
    frame_from_columns,
    infer_timeframe,
    timeframe_from_name,
)
from tierline.errors import DataError

__all__ = ["load_ohlcv"]

_COLS = ["open", "high", "low", "close", "volume"]


def load_ohlcv(path: Path, options: ImportOptions) -> Imported:
    """Load a freqtrade OHLCV file (feather, JSON or Parquet).

    Raises
    ------
    DataError
        If the file is unreadable, lacks a column, or is a funding-rate / mark-price file
        (not trade bars).
    """
    kind = candle_kind_from_name(path)
    if kind in ("funding_rate", "mark", "index", "premiumIndex"):
        raise DataError(
            f"{path}: this is a freqtrade {kind!r} file, not trade bars; only trade OHLCV "
            "(spot or -futures) can be imported as OHLCV"
        )
    _check_pair(path, options)
    name = path.name.lower()
    if name.endswith((".json", ".json.gz")):
        df = _read_json(path)
    else:
        try:
            raw = pl.read_ipc(path) if name.endswith(".feather") else pl.read_parquet(path)
        except Exception as e:
            raise DataError(f"{path}: cannot read the file ({type(e).__name__}: {e})") from e
        missing = [c for c in ["date", *_COLS] if c not in raw.columns]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {missing}; a freqtrade OHLCV file has "
                f"date, open, high, low, close, volume (found {raw.columns})"
            )
        date = raw["date"]
        if isinstance(date.dtype, pl.Datetime):
            ts = (
                date.dt.replace_time_zone("UTC")
                if date.dtype.time_zone is None
                else date.dt.convert_time_zone("UTC")
            )  # type: ignore[union-attr]
            ts = ts.dt.cast_time_unit("ns")
        elif date.dtype.is_integer():
            ts = (
                (date.cast(pl.Int64) * 1_000_000)
                .cast(pl.Datetime("ns"))
                .dt.replace_time_zone("UTC")
            )
        else:
            raise DataError(f"{path}: column 'date' has type {date.dtype}, expected a datetime")
        try:
            df = raw.select(ts.alias("ts"), *[pl.col(c).cast(pl.Float64) for c in _COLS])
        except pl.exceptions.PolarsError as e:
            raise DataError(f"{path}: OHLCV columns are not numeric ({e})") from e
    tf = options.timeframe or timeframe_from_name(path) or infer_timeframe(df["ts"], str(path))
    return Imported(ohlcv=df, timeframe=tf)


def _check_pair(path: Path, options: ImportOptions) -> None:
    m = re.match(r"^([A-Za-z0-9]+_[A-Za-z0-9]+(?:_[A-Za-z0-9]+)?)-\d+[smhdw]", path.name)
    if not (m and options.symbol):
        return
    from tierline.data.market import normalize_symbol

    in_name = normalize_symbol(m.group(1))
    if in_name != normalize_symbol(options.symbol):
        raise DataError(
            f"{path}: the file name says {in_name} but --symbol is {options.symbol}; "
            "pass the matching --symbol"
        )


def _read_json(path: Path) -> pl.DataFrame:
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt") as f:  # type: ignore[operator]
            rows = json.load(f)
    except (OSError, EOFError, ValueError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of [ts_ms, o, h, l, c, v] rows")
    for i, r in enumerate(rows):
        if not isinstance(r, list) or len(r) < 6:
            raise DataError(
                f"{path}: row {i} is {str(r)[:60]!r}, expected [ts_ms, open, high, low, close, "
                "volume]"
            )
    try:
        a = np.array([r[:6] for r in rows], dtype=np.float64).reshape(-1, 6)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: non-numeric values in OHLCV rows ({e})") from e
    ts = (a[:, 0].astype(np.int64)) * 1_000_000
    return frame_from_columns(ts, a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5])
