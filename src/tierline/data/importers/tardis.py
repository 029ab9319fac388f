"""Tardis.dev CSV datasets: ``incremental_book_L2`` and ``trades`` (plain or ``.csv.gz``).

Tardis writes times in microseconds since the epoch: ``timestamp`` is the exchange's time and
``local_timestamp`` the time Tardis's collector received the message. See
https://docs.tardis.dev/downloadable-csv-files.
"""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from pathlib import Path

import polars as pl

from tierline.data.importers import Imported, ImportOptions
from tierline.data.schema import BOOK, TRADES
from tierline.errors import DataError

__all__ = ["load_book", "load_trades"]

logger = logging.getLogger(__name__)

_BOOK_COLUMNS = (
    "exchange",
    "symbol",
    "timestamp",
    "local_timestamp",
    "is_snapshot",
    "side",
    "price",
    "amount",
)
_TRADE_COLUMNS = (
    "exchange",
    "symbol",
    "timestamp",
    "local_timestamp",
    "id",
    "side",
    "price",
    "amount",
)


def load_book(path: Path, options: ImportOptions) -> Imported:
    """Load a Tardis ``incremental_book_L2`` CSV into the `BOOK` schema.

    ``ts_exch`` is ``timestamp`` and ``ts_local`` is ``local_timestamp`` (both µs, UTC),
    ``qty`` is ``amount`` (0 deletes the level) and ``is_snapshot`` is kept: a run of snapshot
    rows replaces the book. Rows keep the file's order, which must be by ``local_timestamp``.
    A negative exchange-to-local latency is not corrected but reported in ``notes``.

    Parameters
    ----------
    path
        The CSV file (``.csv`` or ``.csv.gz``) of one exchange and one symbol.
    options
        Unused.

    Returns
    -------
    Imported
        ``book`` set.

    Raises
    ------
    DataError
        If the file cannot be read, holds several symbols, a line is malformed (the message
        names the file and the line number) or the rows are not in ``local_timestamp`` order.
    """
    text, df = _read(path, _BOOK_COLUMNS)
    snap = df["is_snapshot"].str.to_lowercase()
    is_snapshot = snap.replace_strict({"true": True, "false": False}, default=None)
    _fail_on(path, text, is_snapshot.is_null(), df, "is_snapshot", "is not true or false")
    _fail_on(path, text, ~df["side"].is_in(["bid", "ask"]), df, "side", "is not 'bid' or 'ask'")
    ts_exch, ts_local, price, qty = _numbers(path, text, df)
    _fail_on(path, text, qty < 0, df, "amount", "is negative")
    out = pl.DataFrame(
        {
            "ts_exch": _us_to_ts(ts_exch),
            "ts_local": _us_to_ts(ts_local),
            "side": df["side"],
            "price": price,
            "qty": qty,
            "is_snapshot": is_snapshot.cast(pl.Boolean),
        }
    )
    back = out["ts_local"].diff().dt.total_nanoseconds() < 0
    _fail_on(
        path,
        text,
        back.fill_null(False),
        df,
        "local_timestamp",
        "goes back in time (rows must be in local_timestamp order, as Tardis writes them)",
    )
    notes = _latency_notes(path, ts_exch, ts_local)
    return Imported(book=out.select(list(BOOK.schema)), notes=notes)


def load_trades(path: Path, options: ImportOptions) -> Imported:
    """Load a Tardis ``trades`` CSV into the `TRADES` schema.

    ``ts`` is the exchange ``timestamp`` (µs, UTC); ``trade_id`` is ``id``; ``side`` is the
    taker side. Tardis orders rows by ``local_timestamp``, so rows are stably sorted by
    ``ts`` (noted when that changes the order).

    Parameters
    ----------
    path
        The CSV file (``.csv`` or ``.csv.gz``) of one exchange and one symbol.
    options
        Unused.

    Returns
    -------
    Imported
        ``trades`` set.

    Raises
    ------
    DataError
        If the file cannot be read, holds several symbols or a line is malformed, including
        a trade whose side Tardis gives as ``unknown`` (the catalog needs the taker side); the
        message names the file and the line number.
    """
    text, df = _read(path, _TRADE_COLUMNS)
    _fail_on(
        path,
        text,
        ~df["side"].is_in(["buy", "sell"]),
        df,
        "side",
        "is not 'buy' or 'sell' (the catalog stores the taker side; 'unknown' cannot be stored)",
    )
    ts_exch, ts_local, price, qty = _numbers(path, text, df)
    _fail_on(path, text, qty < 0, df, "amount", "is negative")
    out = pl.DataFrame(
        {
            "ts": _us_to_ts(ts_exch),
            "price": price,
            "qty": qty,
            "side": df["side"],
            "trade_id": df["id"],
        }
    )
    notes = list(_latency_notes(path, ts_exch, ts_local))
    if not out["ts"].is_sorted():
        out = out.sort("ts", maintain_order=True)
        notes.append(f"{path.name}: trades sorted by exchange timestamp (file order is by receipt)")
    return Imported(trades=out.select(list(TRADES.schema)), notes=tuple(notes))


# ---------------------------------------------------------------------- helpers
def _read(path: Path, columns: tuple[str, ...]) -> tuple[str, pl.DataFrame]:
    """Read the file as text and as an all-string frame with the expected header."""
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read the file ({type(e).__name__}: {e})") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from e
    header = text.split("\n", 1)[0].strip().split(",")
    if tuple(header) != columns:
        raise DataError(
            f"{path}: line 1: header {','.join(header)[:120]!r} is not the expected "
            f"{','.join(columns)!r}"
        )
    ragged = _ragged_line(text, len(columns))
    if ragged is not None:
        line_no, line = ragged
        raise DataError(
            f"{path}: line {line_no}: expected {len(columns)} comma-separated fields, "
            f"got {line[:120]!r}"
        )
    try:
        df = pl.read_csv(
            io.StringIO(text),
            schema=dict.fromkeys(columns, pl.String()),
            has_header=True,
        )
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{path}: cannot parse the CSV ({e})") from e
    exchanges = df["exchange"].unique().to_list()
    symbols = df["symbol"].unique().to_list()
    if len(symbols) > 1 or len(exchanges) > 1:
        raise DataError(
            f"{path}: holds several exchanges/symbols ({sorted(map(str, exchanges))}, "
            f"{sorted(map(str, symbols))[:5]}); import one symbol per file"
        )
    return text, df


def _ragged_line(text: str, n_fields: int) -> tuple[int, str] | None:
    """Return the first data line (1-based number, text) whose field count is wrong."""
    for i, line in enumerate(text.splitlines(), start=1):
        if i == 1 or not line.strip():
            continue
        if line.count(",") != n_fields - 1:
            return i, line
    return None


def _line_of_row(text: str, row: int) -> int:
    """Return the 1-based file line of data row ``row`` (blank lines are skipped by the parser)."""
    seen = -1
    for i, line in enumerate(text.splitlines(), start=1):
        if i == 1 or not line.strip():
            continue
        seen += 1
        if seen == row:
            return i
    return -1


def _fail_on(
    path: Path, text: str, bad: pl.Series, df: pl.DataFrame, column: str, what: str
) -> None:
    bad = bad.fill_null(True)
    if bad.any():
        r = int(bad.arg_true()[0])
        raise DataError(f"{path}: line {_line_of_row(text, r)}: {column} {df[column][r]!r} {what}")


def _numbers(
    path: Path, text: str, df: pl.DataFrame
) -> tuple[pl.Series, pl.Series, pl.Series, pl.Series]:
    ts_exch = df["timestamp"].cast(pl.Int64, strict=False)
    ts_local = df["local_timestamp"].cast(pl.Int64, strict=False)
    price = df["price"].cast(pl.Float64, strict=False)
    qty = df["amount"].cast(pl.Float64, strict=False)
    _fail_on(path, text, ts_exch.is_null(), df, "timestamp", "is not an integer (µs)")
    _fail_on(path, text, ts_local.is_null(), df, "local_timestamp", "is not an integer (µs)")
    _fail_on(path, text, price.is_null() | ~price.is_finite(), df, "price", "is not a number")
    _fail_on(path, text, price <= 0, df, "price", "is not positive")
    _fail_on(path, text, qty.is_null() | ~qty.is_finite(), df, "amount", "is not a number")
    return ts_exch, ts_local, price, qty


def _us_to_ts(us: pl.Series) -> pl.Series:
    return pl.select(
        pl.from_epoch(us, time_unit="us").dt.cast_time_unit("ns").dt.replace_time_zone("UTC")
    ).to_series()


def _latency_notes(path: Path, ts_exch: pl.Series, ts_local: pl.Series) -> tuple[str, ...]:
    if ts_exch.is_empty():
        return ()
    latency = ts_local - ts_exch
    n_neg = int((latency < 0).sum())
    if n_neg == 0:
        return ()
    worst_ms = float(latency.min()) / 1000  # type: ignore[arg-type]
    note = (
        f"{path.name}: {n_neg} row(s) received before their exchange time (minimum "
        f"local-exchange latency {worst_ms:.3f} ms); kept as is"
    )
    logger.warning(note)
    return (note,)
