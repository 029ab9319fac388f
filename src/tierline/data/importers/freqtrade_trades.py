"""freqtrade trades files: ``<PAIR>-trades.feather`` and the older ``-trades.json(.gz)``.

Both hold freqtrade's trade columns ``timestamp`` (int ms), ``id``, ``type``, ``side``,
``price``, ``amount``, ``cost``; the JSON form is a list of rows in that order.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.feather as pa_feather

from tierline.data.importers import Imported, ImportOptions
from tierline.data.schema import TRADES
from tierline.errors import DataError

__all__ = ["load_trades"]

logger = logging.getLogger(__name__)

#: freqtrade's DEFAULT_TRADES_COLUMNS, the order of a JSON trade row.
_COLUMNS = ("timestamp", "id", "type", "side", "price", "amount", "cost")
_SIDES = ("buy", "sell")


def load_trades(path: Path, options: ImportOptions) -> Imported:
    """Load a freqtrade trades file into the `TRADES` schema.

    ``ts`` is ``timestamp`` (ms, UTC), ``qty`` is ``amount``, ``trade_id`` is ``id`` as a
    string and ``side`` the taker side (``buy``/``sell``). Rows are sorted by time (stable);
    rows repeating both the time and the id of an earlier row are dropped, as freqtrade does.

    Parameters
    ----------
    path
        A ``.feather``, ``.json`` or ``.json.gz`` freqtrade trades file.
    options
        Unused; trades files carry no timeframe.

    Returns
    -------
    Imported
        ``trades`` set, plus a note when duplicates were dropped.

    Raises
    ------
    DataError
        If the file cannot be read or a row is malformed; the message names the file and the
        row (0-based in the file's order).
    """
    name = path.name.lower()
    if name.endswith(".feather"):
        raw = _read_feather(path)
    elif name.endswith((".json", ".json.gz")):
        raw = _read_json(path)
    else:
        raise DataError(f"{path}: not a freqtrade trades file (.feather, .json or .json.gz)")
    return _normalise(raw, path)


def _read_feather(path: Path) -> pl.DataFrame:
    try:
        table = pa_feather.read_table(path, memory_map=False)
        df = pl.DataFrame(pl.from_arrow(table))
    except Exception as e:  # polars/arrow raise several types for bad IPC files
        raise DataError(f"{path}: cannot read the feather file ({type(e).__name__}: {e})") from e
    missing = [c for c in ("timestamp", "id", "side", "price", "amount") if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing} of a freqtrade trades file; found {df.columns}"
        )
    return df


def _read_json(path: Path) -> pl.DataFrame:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                payload = f.read()
        else:
            payload = path.read_bytes()
        rows: Any = json.loads(payload)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read the file ({type(e).__name__}: {e})") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of trade rows, got {type(rows).__name__}")
    cols: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) < 6:
            raise DataError(
                f"{path}: row {i}: expected [timestamp, id, type, side, price, amount, cost], "
                f"got {str(row)[:120]}"
            )
        for c, v in zip(_COLUMNS, row, strict=False):
            cols[c].append(v)
        if len(row) < len(_COLUMNS):
            cols["cost"].append(None)
    try:
        return pl.DataFrame(
            {
                "timestamp": pl.Series(cols["timestamp"], dtype=pl.Int64, strict=False),
                "id": pl.Series(
                    [None if v is None else str(v) for v in cols["id"]], dtype=pl.String
                ),
                "side": pl.Series(cols["side"], dtype=pl.String, strict=False),
                "price": pl.Series(cols["price"], dtype=pl.Float64, strict=False),
                "amount": pl.Series(cols["amount"], dtype=pl.Float64, strict=False),
            }
        )
    except Exception as e:
        raise DataError(f"{path}: cannot read the trade rows ({e})") from e


def _normalise(raw: pl.DataFrame, path: Path) -> Imported:
    try:
        df = raw.select(
            pl.col("timestamp").cast(pl.Int64, strict=False).alias("ts_ms"),
            pl.col("price").cast(pl.Float64, strict=False),
            pl.col("amount").cast(pl.Float64, strict=False).alias("qty"),
            pl.col("side").cast(pl.String, strict=False).str.to_lowercase(),
            pl.col("id").cast(pl.String, strict=False).alias("trade_id"),
        )
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{path}: cannot convert the trade columns ({e})") from e
    for col, what in (("ts_ms", "timestamp"), ("price", "price"), ("qty", "amount")):
        bad = df[col].is_null()
        if bad.any():
            r = int(bad.arg_true()[0])
            raise DataError(f"{path}: row {r}: {what} {raw[what][r]!r} is missing or not a number")
    bad = ~df["side"].is_in(list(_SIDES)) | df["side"].is_null()
    if bad.any():
        r = int(bad.arg_true()[0])
        raise DataError(f"{path}: row {r}: side {raw['side'][r]!r} is not 'buy' or 'sell'")
    df = df.with_columns(
        pl.from_epoch("ts_ms", time_unit="ms")
        .dt.cast_time_unit("ns")
        .dt.replace_time_zone("UTC")
        .alias("ts")
    )
    notes: list[str] = []
    if not df["ts"].is_sorted():
        df = df.sort("ts", maintain_order=True)
        notes.append(f"{path.name}: trades were not in time order; sorted by timestamp")
    n = len(df)
    df = df.unique(subset=["ts", "trade_id"], keep="first", maintain_order=True)
    if len(df) < n:
        notes.append(f"{path.name}: dropped {n - len(df)} duplicated trade(s) (same time and id)")
    for note in notes:
        logger.info(note)
    return Imported(trades=df.select(list(TRADES.schema)), notes=tuple(notes))
