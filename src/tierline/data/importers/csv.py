"""Plain CSV OHLCV: ``timestamp,open,high,low,close,volume`` (header optional).

The time column may be epoch seconds/ms/µs/ns or an ISO-like date string (naive = UTC). With
``--ts-is-close`` the timestamps mark the bar CLOSE and are shifted back one bar.
"""

from __future__ import annotations

import csv as _csv
import gzip
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from tierline.data.importers import Imported, ImportOptions
from tierline.data.importers._ohlcv import epoch_to_ns, frame_from_columns, infer_timeframe
from tierline.data.market import timeframe_ns
from tierline.errors import DataError

__all__ = ["load_ohlcv"]

_TIME_NAMES = {"timestamp", "time", "date", "datetime", "open_time", "ts"}
_FIELDS = ("open", "high", "low", "close", "volume")


def load_ohlcv(path: Path, options: ImportOptions) -> Imported:
    """Load a CSV of OHLCV bars.

    Raises
    ------
    DataError
        On a line that is not a bar (naming the file and line number) or missing columns.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="") as f:  # type: ignore[operator]
        reader = _csv.reader(f)
        rows = list(reader)
    if not rows:
        raise DataError(f"{path}: empty file")
    header = [c.strip().lower() for c in rows[0]]
    start = 0
    idx = {"time": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5}
    if not _is_number_or_date(rows[0][0] if rows[0] else ""):
        start = 1
        tcol = next((i for i, c in enumerate(header) if c in _TIME_NAMES), None)
        missing = [c for c in _FIELDS if c not in header]
        if tcol is None or missing:
            raise DataError(
                f"{path}, line 1: header {rows[0]} lacks "
                f"{(['a time column'] if tcol is None else []) + missing}; expected "
                "timestamp,open,high,low,close,volume"
            )
        idx = {"time": tcol, **{c: header.index(c) for c in _FIELDS}}
    n = len(rows) - start
    times: list[str] = []
    vals = np.empty((n, 5), dtype=np.float64)
    for k, row in enumerate(rows[start:]):
        line = start + k + 1
        try:
            times.append(row[idx["time"]].strip())
            for j, c in enumerate(_FIELDS):
                vals[k, j] = float(row[idx[c]])
        except (IndexError, ValueError):
            raise DataError(
                f"{path}, line {line}: {','.join(row)[:80]!r} is not a bar "
                "(timestamp,open,high,low,close,volume)"
            ) from None
    ts = _parse_times(times, path, start)
    df = frame_from_columns(ts, vals[:, 0], vals[:, 1], vals[:, 2], vals[:, 3], vals[:, 4])
    tf = options.timeframe or infer_timeframe(df["ts"], str(path))
    if options.ts_is_close:
        shift = timeframe_ns(tf)
        df = frame_from_columns(ts - shift, *(vals[:, j] for j in range(5)))
    return Imported(
        ohlcv=df,
        timeframe=tf,
        notes=(
            ("timestamps shifted back one bar: they marked the bar close",)
            if options.ts_is_close
            else ()
        ),
    )


def _is_number_or_date(s: str) -> bool:
    s = s.strip()
    try:
        float(s)
        return True
    except ValueError:
        pass
    try:
        datetime.fromisoformat(s)
        return True
    except ValueError:
        return False


def _parse_times(times: list[str], path: Path, start: int) -> np.ndarray:
    try:
        return epoch_to_ns(np.array([float(t) for t in times]))
    except ValueError:
        pass
    out = np.empty(len(times), dtype=np.int64)
    for k, t in enumerate(times):
        try:
            d = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            raise DataError(
                f"{path}, line {start + k + 1}: timestamp {t!r} is neither epoch nor ISO date"
            ) from None
        d = d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)
        out[k] = int(d.timestamp()) * 1_000_000_000 + d.microsecond * 1000
    return out
