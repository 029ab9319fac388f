"""QuantConnect LEAN crypto trade-bar zips.

Daily/hour files hold ``YYYYMMDD HH:mm,open,high,low,close,volume``; minute files hold
``ms_since_midnight,open,high,low,close,volume`` with the date in the file name
(``20180404_trade.zip``). LEAN stamps bars at their open. Quote (bid/ask) zips are refused.
"""

from __future__ import annotations

import io
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from tierline.data.importers import Imported, ImportOptions
from tierline.data.importers._ohlcv import frame_from_columns
from tierline.errors import DataError

__all__ = ["load_ohlcv"]

_RES = {"daily": "1d", "hour": "1h", "minute": "1m", "second": "1s"}


def load_ohlcv(path: Path, options: ImportOptions) -> Imported:
    """Load a LEAN crypto ``*_trade.zip``.

    Raises
    ------
    DataError
        For quote zips, unreadable zips or malformed lines (naming file, member and line).
    """
    if "_quote" in path.name:
        raise DataError(f"{path}: LEAN quote (bid/ask) bars are not trade bars; import *_trade.zip")
    resolution = next((p for p in reversed(path.parts[:-1]) if p in _RES), None)
    if resolution is None:
        resolution = next((p for p in reversed(path.parts[:-1]) if p.lower() in _RES), None)
    tf = options.timeframe or (_RES[resolution] if resolution else None)
    day = re.match(r"(\d{8})_", path.name)
    try:
        with zipfile.ZipFile(path) as z:
            members = [m for m in z.namelist() if m.endswith(".csv")]
            if len(members) != 1:
                raise DataError(f"{path}: expected one CSV member, found {members}")
            text = z.read(members[0]).decode()
    except zipfile.BadZipFile as e:
        raise DataError(f"{path}: not a valid zip file ({e})") from e
    lines = [ln for ln in io.StringIO(text).read().splitlines() if ln.strip()]
    ts = np.empty(len(lines), dtype=np.int64)
    vals = np.empty((len(lines), 5), dtype=np.float64)
    base = (
        int(datetime.strptime(day.group(1), "%Y%m%d").replace(tzinfo=UTC).timestamp()) * 10**9
        if day
        else None
    )
    for i, ln in enumerate(lines):
        parts = ln.split(",")
        try:
            if len(parts) < 6:
                raise ValueError
            if base is not None:
                ts[i] = base + int(parts[0]) * 1_000_000
            else:
                d = datetime.strptime(parts[0].strip(), "%Y%m%d %H:%M").replace(tzinfo=UTC)
                ts[i] = int(d.timestamp()) * 10**9
            vals[i] = [float(x) for x in parts[1:6]]
        except ValueError:
            raise DataError(
                f"{path} ({members[0]}), line {i + 1}: {ln[:80]!r} is not a LEAN trade bar"
            ) from None
    if tf is None:
        tf = "1m" if base is not None else None
    df = frame_from_columns(ts, *(vals[:, j] for j in range(5)))
    return Imported(ohlcv=df, timeframe=tf)
