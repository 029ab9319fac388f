"""Raw Binance market-data streams as written by hftbacktest's collector (``*.gz``).

Each line is ``<local_ts> <json>``: the receive time on the collector's clock (ns; µs in
older files) and either a combined-stream message ``{"stream": ..., "data": ...}`` (depth
diffs, trades, bookTicker, ...) or the raw body of a REST depth snapshot (``lastUpdateId``,
``bids``, ``asks``; USD-M futures add ``E`` and ``T``).

The book is rebuilt with Binance's snapshot/diff rule (``How to manage a local order book
correctly`` in the Binance API docs); see `load` for the details and the timestamp choices.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from tierline.data.importers import Imported, ImportOptions
from tierline.data.schema import BOOK, TRADES
from tierline.errors import ConfigError, DataError

__all__ = ["load"]

logger = logging.getLogger(__name__)

Market = Literal["futures", "spot"]

_BOOK_TICKER = b'@bookTicker","data":'


@dataclass
class _Diff:
    where: str  # "<file>: line <n>"
    local: int  # ns, raw collector clock
    data: dict[str, Any]


@dataclass
class _Snapshot:
    where: str
    local: int
    last_update_id: int
    exch: int | None  # ns; None for spot (its REST body carries no time)
    bids: list[list[str]]
    asks: list[list[str]]


@dataclass
class _Book:
    """Column lists of the book rows, in the order they apply."""

    ts_exch: list[int] = field(default_factory=list)
    ts_local: list[int] = field(default_factory=list)
    side: list[str] = field(default_factory=list)
    price: list[float] = field(default_factory=list)
    qty: list[float] = field(default_factory=list)
    is_snapshot: list[bool] = field(default_factory=list)

    def add(
        self, exch: int, local: int, levels: list[list[str]], side: str, snapshot: bool
    ) -> None:
        for px, q in levels:
            self.ts_exch.append(exch)
            self.ts_local.append(local)
            self.side.append(side)
            self.price.append(float(px))
            self.qty.append(float(q))
            self.is_snapshot.append(snapshot)


class _Stream:
    """State of the snapshot/diff synchronisation over one continuous stream."""

    def __init__(self) -> None:
        self.market: Market | None = None
        self.pending: list[_Diff] = []  # diffs received before the snapshot line
        self.snapshot: _Snapshot | None = None
        self.synced = False
        self.prev_u: int | None = None
        self.prev_where = ""
        self.book = _Book()
        self.n_diffs = 0
        self.n_dropped = 0
        self.n_late = 0  # buffered diffs applied at the snapshot's receive time
        self.n_extra_snapshots = 0
        self.last_local = -1
        self.last_local_where = ""
        self.min_latency: int | None = None  # min(local - exch) over every event, ns

    # ---------------------------------------------------------------- latency
    def see_latency(self, local: int, exch: int) -> None:
        lat = local - exch
        if self.min_latency is None or lat < self.min_latency:
            self.min_latency = lat

    # ---------------------------------------------------------------- events
    def on_diff(self, diff: _Diff) -> None:
        d = diff.data
        market: Market = "futures" if "pu" in d else "spot"
        if self.market is None:
            self.market = market
        elif market != self.market:
            raise DataError(
                f"{diff.where}: a {market} depth update in a {self.market} stream "
                "(futures diffs carry 'pu', spot diffs do not)"
            )
        for key in ("U", "u", "E", "b", "a"):
            if key not in d:
                raise DataError(f"{diff.where}: depth update without {key!r}")
        if market == "futures" and "T" not in d:
            raise DataError(f"{diff.where}: futures depth update without 'T'")
        self.n_diffs += 1
        self.see_latency(diff.local, self._exch_ns(d))
        if self.snapshot is None:
            self.pending.append(diff)
        else:
            self._apply(diff)

    def on_snapshot(self, snap: _Snapshot) -> None:
        if snap.exch is not None:
            self.see_latency(snap.local, snap.exch)
        if self.synced:
            # The diff chain is checked unbroken, so the book is already exact: a later
            # snapshot (a collector reconnect) adds nothing.
            self.n_extra_snapshots += 1
            return
        self.snapshot = snap
        pending, self.pending = self.pending, []
        for diff in pending:
            self._apply(diff)

    def finish(self, where: str) -> None:
        if self.n_diffs == 0 and self.snapshot is None:
            return
        if self.snapshot is None:
            raise DataError(
                f"{where}: {self.n_diffs} depth update(s) but no REST snapshot line "
                "(a line with 'lastUpdateId'), so the book cannot be rebuilt; import the files "
                "of one session together, starting with the file that holds the snapshot"
            )
        if not self.synced:
            raise DataError(
                f"{self.snapshot.where}: no depth update after the snapshot covers its "
                f"lastUpdateId {self.snapshot.last_update_id}; the book cannot be synchronised"
            )

    # ---------------------------------------------------------------- sync
    def _exch_ns(self, d: dict[str, Any]) -> int:
        # Futures: transaction time T, as hftbacktest's binancefutures.convert does.
        # Spot diffs have no T: event time E.
        return int(d["T"] if self.market == "futures" else d["E"]) * 1_000_000

    def _apply(self, diff: _Diff) -> None:
        snap = self.snapshot
        assert snap is not None
        d = diff.data
        first, last = int(d["U"]), int(d["u"])
        lid = snap.last_update_id
        if not self.synced:
            if (last < lid) if self.market == "futures" else (last <= lid):
                self.n_dropped += 1
                return
            target = lid if self.market == "futures" else lid + 1
            if not first <= target <= last:
                raise DataError(
                    f"{diff.where}: the first depth update after the snapshot "
                    f"({snap.where}, lastUpdateId {lid}) does not cover it: U={first}, "
                    f"u={last}; updates between the snapshot and the stream are missing"
                )
            exch_snap = snap.exch if snap.exch is not None else self._exch_ns(d)
            self._check_local(snap.local, snap.where)
            self.book.add(exch_snap, snap.local, snap.bids, "bid", True)
            self.book.add(exch_snap, snap.local, snap.asks, "ask", True)
            self.synced = True
        else:
            if self.market == "futures":
                ok, what = int(d["pu"]) == self.prev_u, f"pu={d['pu']}"
            else:
                ok, what = first == (self.prev_u or 0) + 1, f"U={first}"
            if not ok:
                raise DataError(
                    f"{diff.where}: depth update chain broken: {what} but the previous "
                    f"update ({self.prev_where}) ended at u={self.prev_u}; updates are missing"
                )
        local = diff.local
        if local < snap.local:
            # Buffered before the snapshot arrived: the book could apply it only then.
            local = snap.local
            self.n_late += 1
        self._check_local(local, diff.where)
        exch = self._exch_ns(d)
        self.book.add(exch, local, d["b"], "bid", False)
        self.book.add(exch, local, d["a"], "ask", False)
        self.prev_u = last
        self.prev_where = diff.where

    def _check_local(self, local: int, where: str) -> None:
        if local < self.last_local:
            raise DataError(
                f"{where}: local timestamp {local} is earlier than the previous book event's "
                f"({self.last_local_where}); give the files of a session in order"
            )
        self.last_local = local
        self.last_local_where = where


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        with gzip.open(path, "rb") as f:
            n = 0
            for n, line in enumerate(f, start=1):
                yield n, line
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path}: line {n + 1}: cannot read the gzip stream, the file is truncated or "
            f"corrupt ({type(e).__name__}: {e})"
        ) from e


def _local_ns(raw: bytes, where: str) -> int:
    if not raw.isdigit():
        raise DataError(f"{where}: expected '<local timestamp> <json>', got {raw[:40]!r}")
    digits = len(raw)
    value = int(raw)
    if digits == 19:
        return value
    if digits == 16:
        return value * 1_000
    raise DataError(f"{where}: local timestamp {raw[:40]!r} is neither ns (19) nor µs (16 digits)")


def _symbol_code(symbol: str) -> str:
    """``BTC/USDT`` or ``BTC/USDT:USDT`` -> ``BTCUSDT`` (Binance's spelling)."""
    return symbol.split(":", 1)[0].replace("/", "").upper()


def load(path: Path | Sequence[Path], options: ImportOptions) -> Imported:
    """Load raw Binance depth and trade streams (one file or one session of files).

    Several files are read as one continuous stream, in the order given (the CLI sorts them
    by name): the update-id chain must run unbroken across them, and only the first needs the
    REST snapshot. Load every file of a session in one call: the local-clock correction below
    is computed over the whole stream.

    Book rows (`BOOK` schema):

    - The REST snapshot's levels as ``is_snapshot=True`` rows, then every depth-diff level
      after synchronisation as ``is_snapshot=False`` rows (qty 0 deletes the level).
    - Synchronisation follows Binance: diffs are buffered until the snapshot line (the
      collector receives the snapshot after the diff that covers it); diffs with
      ``u < lastUpdateId`` (spot: ``u <= lastUpdateId``) are dropped; the first applied diff
      must have ``U <= lastUpdateId <= u`` (spot: ``U <= lastUpdateId + 1 <= u``); each later
      diff must chain (futures ``pu == previous u``, spot ``U == previous u + 1``).
    - ``ts_exch``: futures ``T`` (transaction time), as hftbacktest's
      ``binancefutures.convert`` uses; spot diffs carry only ``E`` (event time). The futures
      snapshot uses its ``T``; a spot snapshot carries no time and takes the ``E`` of the
      first diff applied on it (the earliest exchange time known to be past lastUpdateId).
    - ``ts_local``: the line's receive time. Diffs buffered before the snapshot line are
      stamped with the snapshot's receive time, when the book could first apply them, so
      rows stay in ``ts_local`` order.
    - Clock correction: when the collector clock runs behind the exchange (some event has
      ``local < exch``, i.e. a negative latency), every ``ts_local`` is shifted forward by
      the largest such gap, so the smallest exchange-to-local latency becomes 0. This is
      hftbacktest's ``correct_local_timestamp(base_latency=0)``, over the same events
      (depth diffs, snapshot, market trades). The shift is reported in ``notes`` and logged;
      in the hftbacktest example files it is about +1.27 s.

    Trade rows (`TRADES` schema): ``ts`` = ``T`` (ms), ``price`` = ``p``, ``qty`` = ``q``,
    ``side`` = ``sell`` when the buyer is the maker (``m``) else ``buy``, ``trade_id`` =
    ``t``; futures trades whose ``X`` is not ``MARKET`` (liquidation, ADL) are skipped, as
    hftbacktest does. Trades are sorted by ``ts`` (stable). bookTicker and other streams are
    not stored (bookTicker lines, most of a file, are not even parsed: only their framing is
    checked).

    Parameters
    ----------
    path
        One ``.gz`` file or the files of one session, in order.
    options
        ``symbol`` (ccxt spelling), when given, must match the streams' symbol.

    Returns
    -------
    Imported
        ``trades`` and ``book`` (either None when the stream holds none), and ``notes``
        saying what was dropped, delayed and shifted.

    Raises
    ------
    DataError
        If a file is unreadable or truncated, a line is not ``<ts> <json>``, the streams mix
        symbols or markets, there are diffs but no snapshot, or the update-id chain breaks;
        the message names the file and the line.
    ConfigError
        If ``options.symbol`` is not the streams' symbol.
    """
    paths = [path] if isinstance(path, Path) else list(path)
    if not paths:
        raise ConfigError("binance-raw: no file to load")
    for p in paths:
        if not p.exists():
            raise DataError(f"{p}: no such file")
    st = _Stream()
    trades: dict[str, list[Any]] = {"ts": [], "price": [], "qty": [], "side": [], "trade_id": []}
    want = _symbol_code(options.symbol) if options.symbol is not None else None
    symbol: str | None = None
    symbol_where = ""
    n_skipped_trades = 0
    n_errors = 0
    for p in paths:
        for n, line in _lines(p):
            where = f"{p}: line {n}"
            if not line.strip():
                continue
            head, sep, body = line.partition(b" ")
            if not sep:
                raise DataError(f"{where}: expected '<local timestamp> <json>', got {line[:60]!r}")
            local = _local_ns(head, where)
            if _BOOK_TICKER in body[:64]:
                # Not stored: skip the JSON parse (most lines), check only the framing.
                if not body.rstrip().endswith(b"}}"):
                    raise DataError(f"{where}: truncated bookTicker message {body[-60:]!r}")
                continue
            try:
                msg = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DataError(f"{where}: not valid JSON ({e}): {body[:60]!r}") from e
            if not isinstance(msg, dict):
                raise DataError(f"{where}: expected a JSON object, got {body[:60]!r}")
            data = msg.get("data")
            if isinstance(data, dict):
                s = data.get("s")
                if s is not None:
                    if symbol is None:
                        symbol, symbol_where = s, where
                        if want is not None and want != symbol:
                            raise ConfigError(
                                f"{where}: the streams are {symbol} but the symbol given is "
                                f"{options.symbol} ({want}); pass the symbol of the file"
                            )
                    elif s != symbol:
                        raise DataError(
                            f"{where}: symbol {s} in a stream of {symbol} ({symbol_where}); "
                            "load one symbol at a time"
                        )
                event = data.get("e")
                try:
                    if event == "depthUpdate":
                        st.on_diff(_Diff(where, local, data))
                    elif event == "trade":
                        if data.get("X", "MARKET") != "MARKET":
                            n_skipped_trades += 1
                            continue
                        t_ns = int(data["T"]) * 1_000_000
                        st.see_latency(local, t_ns)
                        trades["ts"].append(t_ns)
                        trades["price"].append(float(data["p"]))
                        trades["qty"].append(float(data["q"]))
                        trades["side"].append("sell" if data["m"] else "buy")
                        trades["trade_id"].append(str(data["t"]))
                except (KeyError, TypeError, ValueError) as e:
                    raise DataError(f"{where}: malformed {event} message ({e!r})") from e
            elif "lastUpdateId" in msg:
                try:
                    exch = int(msg["T"]) * 1_000_000 if "T" in msg else None
                    snap = _Snapshot(
                        where, local, int(msg["lastUpdateId"]), exch, msg["bids"], msg["asks"]
                    )
                    st.on_snapshot(snap)
                except (KeyError, TypeError, ValueError) as e:
                    raise DataError(f"{where}: malformed depth snapshot ({e!r})") from e
            elif "code" in msg:
                n_errors += 1  # a failed REST call the collector recorded
            else:
                raise DataError(f"{where}: neither a stream message nor a depth snapshot")
    st.finish(f"{paths[-1]}" if len(paths) == 1 else f"{paths[0]} .. {paths[-1]}")

    names = "+".join(p.name for p in paths)
    notes: list[str] = []
    offset = 0
    if st.min_latency is not None and st.min_latency < 0:
        offset = -st.min_latency
        notes.append(
            f"{names}: the collector clock was behind exchange time (minimum exchange-to-local "
            f"latency {st.min_latency / 1e6:.3f} ms); ts_local shifted by +{offset / 1e6:.3f} ms "
            "so the smallest latency is 0 (as hftbacktest's correct_local_timestamp does)"
        )
    book_df: pl.DataFrame | None = None
    if st.synced:
        b = st.book
        book_df = pl.DataFrame(
            {
                "ts_exch": _ns_to_ts(pl.Series(b.ts_exch, dtype=pl.Int64)),
                "ts_local": _ns_to_ts(pl.Series(b.ts_local, dtype=pl.Int64) + offset),
                "side": pl.Series(b.side, dtype=pl.String),
                "price": pl.Series(b.price, dtype=pl.Float64),
                "qty": pl.Series(b.qty, dtype=pl.Float64),
                "is_snapshot": pl.Series(b.is_snapshot, dtype=pl.Boolean),
            }
        ).select(list(BOOK.schema))
        assert st.snapshot is not None
        notes.append(
            f"{names}: book synchronised on the snapshot at {st.snapshot.where.split(': ')[-1]} "
            f"(lastUpdateId {st.snapshot.last_update_id}); {st.n_dropped} of {st.n_diffs} "
            f"depth updates dropped as older than the snapshot, {st.n_late} buffered ones "
            "stamped with the snapshot's receive time"
        )
    if st.n_extra_snapshots:
        notes.append(f"{names}: {st.n_extra_snapshots} later snapshot(s) ignored (chain intact)")
    trades_df: pl.DataFrame | None = None
    if trades["ts"]:
        trades_df = (
            pl.DataFrame(
                {
                    "ts": _ns_to_ts(pl.Series(trades["ts"], dtype=pl.Int64)),
                    "price": pl.Series(trades["price"], dtype=pl.Float64),
                    "qty": pl.Series(trades["qty"], dtype=pl.Float64),
                    "side": pl.Series(trades["side"], dtype=pl.String),
                    "trade_id": pl.Series(trades["trade_id"], dtype=pl.String),
                }
            )
            .sort("ts", maintain_order=True)
            .select(list(TRADES.schema))
        )
    if n_skipped_trades:
        notes.append(f"{names}: {n_skipped_trades} non-MARKET trade(s) skipped")
    if n_errors:
        notes.append(f"{names}: {n_errors} recorded REST error line(s) skipped")
    for note in notes:
        (logger.warning if "clock" in note else logger.info)(note)
    return Imported(trades=trades_df, book=book_df, notes=tuple(notes))


def _ns_to_ts(ns: pl.Series) -> pl.Series:
    return ns.cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
