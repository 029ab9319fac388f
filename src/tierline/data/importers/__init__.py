"""Importers: vendor and exchange files in, catalog frames out.

Each format is a function ``load(path, options) -> Imported`` in a module of this package; the
registry below names them, and `detect_format` picks one from the file name and first bytes.
Importers only parse and normalise: validation and the atomic write are the catalog's.
"""

from __future__ import annotations

import gzip
import importlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tierline.errors import ConfigError, DataError

if TYPE_CHECKING:
    import polars as pl

__all__ = ["FORMATS", "Format", "ImportOptions", "Imported", "detect_format", "load"]


@dataclass(frozen=True, kw_only=True)
class ImportOptions:
    """Options an importer may need beyond the file itself."""

    #: Bar length for OHLCV formats whose files do not say it (e.g. ``5m``).
    timeframe: str | None = None
    #: CSV OHLCV only: the timestamp column marks the bar CLOSE (shift back one bar).
    ts_is_close: bool = False
    #: Symbol being imported (ccxt spelling), for formats whose rows name several.
    symbol: str | None = None


@dataclass(frozen=True, kw_only=True)
class Imported:
    """What a file held, in the catalog's schemas; any of the three may be absent."""

    ohlcv: pl.DataFrame | None = None
    timeframe: str | None = None
    trades: pl.DataFrame | None = None
    book: pl.DataFrame | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, kw_only=True)
class Format:
    """A registered import format."""

    name: str
    description: str
    target: str  # "module:function"

    def load(self, path: Path, options: ImportOptions) -> Imported:
        """Import the function lazily and run it."""
        module, func = self.target.split(":")
        fn = getattr(importlib.import_module(f"tierline.data.importers.{module}"), func)
        return fn(path, options)  # type: ignore[no-any-return]


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            name="freqtrade-feather",
            description="freqtrade OHLCV .feather",
            target="freqtrade:load_ohlcv",
        ),
        Format(
            name="freqtrade-json",
            description="freqtrade OHLCV .json/.json.gz",
            target="freqtrade:load_ohlcv",
        ),
        Format(
            name="freqtrade-parquet",
            description="freqtrade OHLCV .parquet",
            target="freqtrade:load_ohlcv",
        ),
        Format(
            name="freqtrade-trades",
            description="freqtrade trades .feather/.json(.gz)",
            target="freqtrade_trades:load_trades",
        ),
        Format(
            name="csv",
            description="plain CSV OHLCV (timestamp,open,high,low,close,volume)",
            target="csv:load_ohlcv",
        ),
        Format(
            name="lean",
            description="QuantConnect LEAN crypto trade-bar zip",
            target="lean:load_ohlcv",
        ),
        Format(
            name="binance-raw",
            description="Binance raw depth+trade stream (hftbacktest collector .gz)",
            target="binance_raw:load",
        ),
        Format(
            name="tardis-book",
            description="Tardis incremental_book_L2 CSV",
            target="tardis:load_book",
        ),
        Format(name="tardis-trades", description="Tardis trades CSV", target="tardis:load_trades"),
    )
}


def _head(path: Path, n: int = 4096) -> bytes:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as f:
            return f.read(n)
    with path.open("rb") as f:
        return f.read(n)


def detect_format(path: Path) -> str:
    """Return the format name of a file from its name and first bytes.

    Raises
    ------
    DataError
        If the file is missing or its format is not recognised.
    """
    if not path.exists():
        raise DataError(f"{path}: no such file")
    name = path.name.lower()
    try:
        head = _head(path)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read the file ({e})") from e
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as z:
                members = z.namelist()
        except zipfile.BadZipFile as e:
            raise DataError(f"{path}: not a valid zip file ({e})") from e
        if members and all(m.endswith(".csv") for m in members):
            return "lean"
        raise DataError(f"{path}: zip holds {members[:3]}, not LEAN crypto CSV bars")
    is_trades_name = "trades" in name
    if name.endswith(".feather"):
        if is_trades_name or b"trade_id" in head or b"amount" in head:
            return "freqtrade-trades"
        return "freqtrade-feather"
    if name.endswith((".json", ".json.gz")):
        return "freqtrade-trades" if is_trades_name else "freqtrade-json"
    if name.endswith(".parquet"):
        return "freqtrade-parquet"
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        first = head.split(b"\n", 1)[0].decode(errors="replace").strip().lower()
        if first.startswith("exchange,symbol,timestamp,local_timestamp"):
            if "is_snapshot" in first:
                return "tardis-book"
            if ",id," in first and "amount" in first:
                return "tardis-trades"
            raise DataError(
                f"{path}: a Tardis CSV of a kind not supported (header {first[:80]!r}); "
                "supported: incremental_book_L2 and trades"
            )
        return "csv"
    if name.endswith(".gz"):
        line = head.split(b"\n", 1)[0]
        parts = line.split(b" ", 1)
        if len(parts) == 2 and parts[0].isdigit() and parts[1].startswith(b"{"):
            return "binance-raw"
    raise DataError(
        f"{path}: cannot tell the format from the name and contents; name it with --format "
        f"(one of {', '.join(FORMATS)})"
    )


def load(path: Path, fmt: str | None, options: ImportOptions) -> tuple[str, Imported]:
    """Load a file with a named or detected format; return the format used and the frames.

    Raises
    ------
    ConfigError
        If the named format is unknown.
    DataError
        If the file cannot be parsed; the message names the file and, where known, the line.
    """
    name = fmt or detect_format(path)
    if name not in FORMATS:
        raise ConfigError(f"unknown format {name!r}; expected one of {', '.join(FORMATS)}")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    return name, FORMATS[name].load(path, options)
