"""The catalog's L2 book and trades partitions as hftbacktest event arrays, cached per partition.

`l2_events` turns the ``book/`` rows (``ts_exch, ts_local, side, price, qty, is_snapshot``;
qty 0 deletes a level) and ``trades/`` rows (``ts, price, qty, side, trade_id``) of one
exchange/symbol into one numpy array in hftbacktest 2.4's ``event_dtype``, the input of
``BacktestAsset().data(...)``:

- a run of snapshot rows (consecutive ``is_snapshot`` rows with one ``ts_local``) becomes a
  side-less ``DEPTH_CLEAR_EVENT`` (the whole book is dropped, as the catalog's snapshot
  *replaces* the book) followed by ``DEPTH_SNAPSHOT_EVENT | BUY_EVENT`` / ``SELL_EVENT`` rows;
- every other book row is a ``DEPTH_EVENT | BUY_EVENT`` (bid) or ``SELL_EVENT`` (ask);
- a trade is a ``TRADE_EVENT`` with ``BUY_EVENT`` when the taker bought, else ``SELL_EVENT``.

Timestamps are kept apart: ``exch_ts`` is the book's ``ts_exch`` and the trade's ``ts``;
``local_ts`` is the book's ``ts_local``. Trades carry no receive time in the catalog (the
binance-raw importer stores ``T`` only), so a trade's ``local_ts`` is its ``ts`` plus the feed
latency (``ts_local - ts_exch``) of the latest book row of its partition at or before it in
exchange time (the first book row's when none precedes). On the hftbacktest example files the
derived receive time is within 0.7 ms (futures) / 0.8 ms (spot) of the true one at the
median; see ``docs/architecture.md``.

Events are then ordered as hftbacktest requires: every row flagged ``LOCAL_EVENT`` in
``local_ts`` order, every row flagged ``EXCH_EVENT`` in ``exch_ts`` order (ties in local
order). A row whose exchange time is out of order is split into a ``LOCAL_EVENT`` row at its
local position and an ``EXCH_EVENT`` row at its exchange position, as hftbacktest's own
``correct_event_order`` does (both processors then see the same sequences).

Each catalog partition (``exchange/symbol/date``) is converted once and cached as
``<root>/.cache/hft/exchange=<ex>/symbol=<SYM>/date=<YYYY-MM-DD>.npz``, keyed by the path, size,
mtime and inode of its book and trades files; a changed or corrupt cache file is rebuilt.
Consecutive partitions chain: the book carries over midnight, so a span that starts after
the session's snapshot begins with a synthesised snapshot of the book at its start (the
cache keeps each partition's last level updates so this needs no replay of earlier days).
Trades are filed under the date of their exchange time, so such a span also takes the
previous date's trades received at or after its start.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tierline.data.atomic import atomic_path
from tierline.data.catalog import Catalog, to_utc_ns
from tierline.data.market import normalize_symbol, symbol_dirname
from tierline.errors import DataError

if TYPE_CHECKING:
    import polars as pl

__all__ = ["CACHE_VERSION", "L2Events", "cache_path", "l2_events", "order_events"]

logger = logging.getLogger(__name__)

#: Bumped whenever the cached arrays' meaning changes; older cache files are rebuilt.
CACHE_VERSION = 1
_DAY_NS = 86_400 * 10**9
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class L2Events:
    """An hftbacktest event array and the instrument steps it was built for.

    Attributes
    ----------
    events
        Rows in ``hftbacktest.types.event_dtype``, flagged and ordered for
        ``BacktestAsset().data(...)`` (keep the array alive while the backtest runs).
    tick_size, lot_size
        Price and quantity steps for ``BacktestAsset().tick_size(...).lot_size(...)``.
    start_ns, end_ns
        The span the events cover, ``start_ns <= local_ts < end_ns`` (UTC ns, local clock).
    synthetic
        True when the book was synthesised from bars rather than recorded.
    partitions
        The catalog dates (``YYYY-MM-DD``) whose book partitions were read.
    """

    events: np.ndarray
    tick_size: float
    lot_size: float
    start_ns: int
    end_ns: int
    synthetic: bool = False
    partitions: tuple[str, ...] = ()

    @property
    def depth_rows(self) -> int:
        """Return the number of depth rows (diffs, snapshot levels, clears) the local side sees."""
        from hftbacktest.types import LOCAL_EVENT, TRADE_EVENT

        ev = self.events["ev"]
        local = (ev & np.uint64(LOCAL_EVENT)) != 0
        return int(np.count_nonzero(local & ((ev & np.uint64(0xFF)) != TRADE_EVENT)))


@dataclass(frozen=True)
class _Partition:
    """One converted catalog partition (a UTC date of the book)."""

    day: date
    #: Rows in local order, event kind and side flags set, EXCH/LOCAL flags not yet.
    events: np.ndarray
    #: The last update of every (side, price) after the partition's last clear (qty 0 =
    #: deleted): with ``has_clear`` it is the book at the partition's end; without, the
    #: changes to apply to the book carried in from the day before.
    levels: np.ndarray
    has_clear: bool


# ---------------------------------------------------------------------- public
def cache_path(catalog: Catalog, exchange: str, symbol: str, day: date | str) -> Path:
    """Return the cache file of one partition (which may not exist).

    Parameters
    ----------
    catalog
        The catalog; the cache lives under ``<root>/.cache/hft/``.
    exchange, symbol
        The instrument (``symbol`` in any spelling `normalize_symbol` accepts).
    day
        The partition's UTC date (or its ``YYYY-MM-DD``).

    Returns
    -------
    pathlib.Path
        ``<root>/.cache/hft/exchange=<ex>/symbol=<SYM>/date=<YYYY-MM-DD>.npz``.
    """
    iso = day if isinstance(day, str) else day.isoformat()
    return (
        catalog.root
        / ".cache"
        / "hft"
        / f"exchange={exchange.strip().lower()}"
        / f"symbol={symbol_dirname(symbol)}"
        / f"date={iso}.npz"
    )


def l2_events(
    catalog: Catalog,
    exchange: str,
    symbol: str,
    start: str | datetime | int | None = None,
    end: str | datetime | int | None = None,
    *,
    cache: bool = True,
) -> L2Events:
    """Build the hftbacktest event array of the recorded L2 book and trades over a span.

    Parameters
    ----------
    catalog
        The Parquet catalog holding ``book/`` (and, optionally, ``trades/``) partitions.
    exchange, symbol
        The partition (``binance``, ``BTC/USDT`` or ``BTC/USDT:USDT``).
    start, end
        ``start <= local_ts < end`` (ISO string, datetime or epoch ns; naive = UTC). ``start``
        defaults to the first snapshot, ``end`` to just after the last event. A ``start``
        after a snapshot opens the array with a snapshot of the book at ``start``.
    cache
        Read and write the per-partition cache under ``<root>/.cache/hft/`` (False converts
        from Parquet and writes nothing; a cache that cannot be written is logged and
        skipped).

    Returns
    -------
    L2Events
        The events, tick and lot size (``nautilus/venues.toml`` when the instrument is
        configured there, else the finest step the book's prices and
        quantities show), the span, and the dates read.

    Raises
    ------
    DataError
        If the catalog has no L2 book for the symbol, the span is not covered (it starts
        before the first snapshot or after the last event, or ends before the first snapshot
        or after the last event), a
        date inside the span has no book partition, the first partition has no snapshot, or
        a partition breaks the book or trades contract. The message names the exchange,
        symbol and span.
    """
    symbol = normalize_symbol(symbol)
    what = f"{exchange} {symbol}"
    files = {_day_of(p): p for p in catalog.files("book", exchange, symbol)}
    if not files:
        raise DataError(
            f"no L2 book for {what} in the catalog at {catalog.root} (looked in "
            f"{catalog.partition_dir('book', exchange, symbol)}); import it first, e.g. "
            "`tierline data import FILE.gz --format binance-raw --exchange ... --symbol ...`"
        )
    trade_files = {_day_of(p): p for p in catalog.files("trades", exchange, symbol)}
    days = sorted(files)
    lo = _bound_ns(start)
    hi = _bound_ns(end)
    if lo is not None and hi is not None and hi <= lo:
        raise DataError(f"{what}: empty span, end {_fmt(hi)} is not after start {_fmt(lo)}")
    span = "the span [{} .. {})".format(
        _fmt(lo) if lo is not None else "first snapshot", _fmt(hi) if hi is not None else "end"
    )
    first_day = days[0] if lo is None else _ns_day(lo)
    last_day = days[-1] if hi is None else _ns_day(hi - 1)
    if (lo is not None and first_day > days[-1]) or (hi is not None and last_day < days[0]):
        raise DataError(
            f"no L2 book for {what} covers {span}: the catalog has book partitions for "
            f"{days[0]} .. {days[-1]} only"
        )
    first_day = max(first_day, days[0])
    last_day = min(last_day, days[-1])

    def load(day: date) -> _Partition:
        return _load_partition(
            catalog, exchange, symbol, day, files[day], trade_files.get(day), cache=cache
        )

    # The span's partitions, consecutive dates only (the book does not survive a gap).
    wanted = [d for d in days if first_day <= d <= last_day]
    _check_consecutive(wanted, what, span)
    parts = [load(d) for d in wanted]
    # Walk back to the partition holding the snapshot the book at `start` descends from.
    head = parts[0]
    head_clears = _clear_local_ts(head.events)
    carried: list[_Partition] = []
    if lo is None:
        if head_clears.size == 0:
            raise DataError(
                f"{what}: the L2 book starts on {head.day} without a snapshot "
                f"({files[head.day]} has no is_snapshot rows), so the book cannot be rebuilt; "
                "import the session starting with the file that holds the snapshot"
            )
        lo = int(head_clears[0])
    elif head_clears.size == 0 or head_clears[0] > lo:
        d = head.day
        while True:
            prev = d - timedelta(days=1)
            if prev not in files:
                first_snap = _first_snapshot(days, load)
                where = f"starts at {_fmt(first_snap)}" if first_snap is not None else "has none"
                raise DataError(
                    f"{what}: no L2 snapshot at or before {_fmt(lo)}, so the book at the start "
                    f"of {span} is unknown (no book partition for {prev}; the first snapshot "
                    f"{where}); start the span at or after the first snapshot"
                )
            part = load(prev)
            carried.insert(0, part)
            if part.has_clear:
                break
            d = prev
    if hi is not None and hi <= lo:
        raise DataError(
            f"no L2 book for {what} covers {span}: it ends before the book's first snapshot "
            f"at {_fmt(lo)} (local time)"
        )
    # Trades belong to the date of their exchange time, so the day before the span's first
    # date may hold trades received on or after `start` (a few ms past midnight).
    spill = carried[-1].events[carried[-1].events["local_ts"] >= lo] if carried else None
    events = np.concatenate([*([spill] if spill is not None else []), *(p.events for p in parts)])
    events = events[np.argsort(events["local_ts"], kind="stable")]
    last_local = int(events["local_ts"][-1])
    if hi is None:
        hi = last_local + 1
    if lo > last_local or hi > last_local + 1:
        raise DataError(
            f"no L2 book for {what} covers {span}: the recorded book ends at "
            f"{_fmt(last_local)} (local time)"
        )
    cut = int(np.searchsorted(events["local_ts"], lo, side="left"))
    stop = int(np.searchsorted(events["local_ts"], hi, side="left"))
    before, inside = events[:cut], events[cut:stop]
    starts_on_snapshot = inside.size > 0 and _is_clear(inside[:1])[0] and not _has_depth(before)
    if not starts_on_snapshot:
        inside = np.concatenate([_snapshot_at(carried, before, lo), inside])
    tick, lot = _steps(exchange, symbol, [p.events for p in parts])
    day_names = tuple(p.day.isoformat() for p in (*carried, *parts))
    logger.info(
        "L2 events %s %s: %d rows from %s (tick %s, lot %s)",
        what,
        span,
        inside.size,
        ", ".join(day_names),
        tick,
        lot,
    )
    return L2Events(
        events=order_events(inside),
        tick_size=tick,
        lot_size=lot,
        start_ns=lo,
        end_ns=hi,
        synthetic=False,
        partitions=day_names,
    )


def order_events(rows: np.ndarray) -> np.ndarray:
    """Flag and order event rows for hftbacktest: LOCAL in local time, EXCH in exchange time.

    ``rows`` are in local order (ties in the order they apply), EXCH/LOCAL flags unset. A
    row gets both flags when its ``exch_ts`` is not below any earlier row's; every other row
    is split into a ``LOCAL_EVENT`` copy at its place and an ``EXCH_EVENT`` copy placed by its
    ``exch_ts`` among the rows that kept both flags (ties in local order). The LOCAL rows are
    then the input in local order and the EXCH rows a stable exchange-time sort of it, the
    two sequences hftbacktest's ``correct_event_order`` yields.

    Parameters
    ----------
    rows
        Event rows in ``event_dtype``.

    Returns
    -------
    numpy.ndarray
        A new array in ``event_dtype`` that ``hftbacktest.data.validate_event_order`` accepts.

    Raises
    ------
    ValueError
        If ``rows`` are not sorted by ``local_ts``.
    """
    from hftbacktest.types import EXCH_EVENT, LOCAL_EVENT

    n = rows.size
    if n == 0:
        return rows.copy()
    if np.any(np.diff(rows["local_ts"]) < 0):
        raise ValueError("order_events: rows must be sorted by local_ts")
    ex = rows["exch_ts"]
    prev_max = np.maximum.accumulate(ex)
    both = np.ones(n, dtype=bool)
    both[1:] = ex[1:] >= prev_max[:-1]
    if both.all():
        out = rows.copy()
        out["ev"] |= np.uint64(EXCH_EVENT | LOCAL_EVENT)
        return out
    pos = np.arange(n)
    anchors = pos[both]
    split = pos[~both]
    # Slot 2k+1 = the k-th row with both flags; slot 2k = the rows between anchors k-1 and k.
    anchor_slot = 2 * np.arange(anchors.size) + 1
    local_slot = 2 * np.cumsum(both)[split]  # anchors before the row (row 0 is an anchor)
    exch_slot = 2 * np.searchsorted(ex[anchors], ex[split], side="right")
    slot = np.concatenate([anchor_slot, local_slot, exch_slot])
    kind = np.concatenate(
        [np.zeros(anchors.size), np.ones(split.size), np.full(split.size, 2)]
    ).astype(np.int64)
    # within a gap: LOCAL copies in local order, then EXCH copies in exchange order
    tkey = np.concatenate([np.zeros(anchors.size + split.size, np.int64), ex[split]])
    src = np.concatenate([anchors, split, split])
    order = np.lexsort((src, tkey, kind, slot))
    out = rows[src[order]]
    flag = np.array([EXCH_EVENT | LOCAL_EVENT, LOCAL_EVENT, EXCH_EVENT], dtype=np.uint64)
    out["ev"] |= flag[kind[order]]
    return out


# ---------------------------------------------------------------------- partitions
def _load_partition(
    catalog: Catalog,
    exchange: str,
    symbol: str,
    day: date,
    book_file: Path,
    trades_file: Path | None,
    *,
    cache: bool,
) -> _Partition:
    key = _cache_key(catalog.root, book_file, trades_file)
    path = cache_path(catalog, exchange, symbol, day)
    if cache and path.exists():
        part = _read_cache(path, key, day)
        if part is not None:
            return part
    part = _convert_partition(day, book_file, trades_file)
    if cache:
        try:
            _write_cache(path, key, part)
        except OSError as e:  # e.g. a read-only catalog: convert again next time
            logger.warning("L2 cache %s cannot be written (%s): not cached", path, e)
    return part


def _convert_partition(day: date, book_file: Path, trades_file: Path | None) -> _Partition:
    """Convert one date's book (and trades) Parquet files into unflagged event rows."""
    from hftbacktest.types import (
        BUY_EVENT,
        DEPTH_CLEAR_EVENT,
        DEPTH_EVENT,
        DEPTH_SNAPSHOT_EVENT,
        SELL_EVENT,
        TRADE_EVENT,
        event_dtype,
    )

    from tierline.data.schema import BOOK, TRADES

    logger.info("converting L2 partition %s (%s)", day, book_file)
    book = _read_parquet(book_file, BOOK)
    exch = _ns(book["ts_exch"])
    local = _ns(book["ts_local"])
    bid = (book["side"] == "bid").to_numpy()
    snap = book["is_snapshot"].to_numpy()
    n = len(book)
    # A snapshot run starts where a snapshot row follows a non-snapshot row or a new time.
    run_start = snap.copy()
    run_start[1:] &= ~snap[:-1] | (local[1:] != local[:-1])
    n_clear = int(run_start.sum())
    out = np.zeros(n + n_clear, dtype=event_dtype)
    # each row's index once the clear rows are inserted before the runs they start
    idx = np.arange(n) + np.cumsum(run_start)
    side = np.where(bid, BUY_EVENT, SELL_EVENT).astype(np.uint64)
    kind = np.where(snap, DEPTH_SNAPSHOT_EVENT, DEPTH_EVENT).astype(np.uint64)
    out["ev"][idx] = kind | side
    out["exch_ts"][idx] = exch
    out["local_ts"][idx] = local
    out["px"][idx] = book["price"].to_numpy()
    out["qty"][idx] = book["qty"].to_numpy()
    clear_at = idx[run_start] - 1
    out["ev"][clear_at] = DEPTH_CLEAR_EVENT
    out["exch_ts"][clear_at] = exch[run_start]
    out["local_ts"][clear_at] = local[run_start]
    depth = out
    if trades_file is not None:
        trades = _read_parquet(trades_file, TRADES)
        t_exch = _ns(trades["ts"])
        # local = exchange time + the latest preceding book row's feed latency
        by_exch = np.argsort(exch, kind="stable")
        latency = (local - exch)[by_exch]
        k = np.searchsorted(exch[by_exch], t_exch, side="right") - 1
        t_local = t_exch + latency[np.clip(k, 0, n - 1)]
        tr = np.zeros(len(trades), dtype=event_dtype)
        buy = (trades["side"] == "buy").to_numpy()
        tr["ev"] = np.where(buy, TRADE_EVENT | BUY_EVENT, TRADE_EVENT | SELL_EVENT)
        tr["exch_ts"] = t_exch
        tr["local_ts"] = t_local
        tr["px"] = trades["price"].to_numpy()
        tr["qty"] = trades["qty"].to_numpy()
        merged = np.concatenate([depth, tr])
        depth = merged[np.argsort(merged["local_ts"], kind="stable")]
    return _Partition(
        day=day,
        events=depth,
        levels=_last_levels(depth),
        has_clear=n_clear > 0,
    )


def _last_levels(events: np.ndarray) -> np.ndarray:
    """Return the last depth row of every (side, price) after the last clear, qty 0 kept."""
    from hftbacktest.types import BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT

    kind = events["ev"] & np.uint64(0xFF)
    clears = np.flatnonzero(kind == DEPTH_CLEAR_EVENT)
    tail = events[clears[-1] + 1 :] if clears.size else events
    tkind = tail["ev"] & np.uint64(0xFF)
    rows = tail[(tkind == DEPTH_EVENT) | (tkind == DEPTH_SNAPSHOT_EVENT)]
    return _last_per_level(rows, BUY_EVENT)


def _last_per_level(rows: np.ndarray, buy_flag: int) -> np.ndarray:
    """Keep the last of the rows of each (side, price), in (side, price) order."""
    if rows.size == 0:
        return rows
    is_buy = (rows["ev"] & np.uint64(buy_flag)) != 0
    order = np.lexsort((np.arange(rows.size), rows["px"], is_buy))
    s, p = is_buy[order], rows["px"][order]
    last = np.ones(order.size, dtype=bool)
    last[:-1] = (s[1:] != s[:-1]) | (p[1:] != p[:-1])
    return rows[order[last]]


def _snapshot_at(carried: list[_Partition], before: np.ndarray, at: int) -> np.ndarray:
    """Return clear + snapshot rows of the book at local time ``at``.

    ``carried`` are the whole partitions before the span's first one, oldest first (the
    oldest holds a clear); ``before`` are the span's first partitions' rows before ``at``.
    """
    from hftbacktest.types import (
        BUY_EVENT,
        DEPTH_CLEAR_EVENT,
        DEPTH_EVENT,
        DEPTH_SNAPSHOT_EVENT,
        SELL_EVENT,
        event_dtype,
    )

    kind = before["ev"] & np.uint64(0xFF)
    clears = np.flatnonzero(kind == DEPTH_CLEAR_EVENT)
    if clears.size:
        tail, pieces = before[clears[-1] + 1 :], []
    else:
        # the oldest carried partition holds the clear; later pieces override earlier ones
        tail, pieces = before, [p.levels for p in carried]
    tkind = tail["ev"] & np.uint64(0xFF)
    pieces.append(tail[(tkind == DEPTH_EVENT) | (tkind == DEPTH_SNAPSHOT_EVENT)])
    applied = np.concatenate(pieces)
    book = _last_per_level(applied, BUY_EVENT)
    book = book[book["qty"] > 0]
    is_buy = (book["ev"] & np.uint64(BUY_EVENT)) != 0
    bids = book[is_buy][::-1]  # best (highest) first
    asks = book[~is_buy]
    # known to the exchange no later than the last update it holds (and never after `at`)
    exch = min(int(applied["exch_ts"].max()), at) if applied.size else at
    out = np.zeros(1 + book.size, dtype=event_dtype)
    out[0]["ev"] = DEPTH_CLEAR_EVENT
    out[1 : 1 + bids.size] = bids
    out[1 + bids.size :] = asks
    out["ev"][1 : 1 + bids.size] = DEPTH_SNAPSHOT_EVENT | BUY_EVENT
    out["ev"][1 + bids.size :] = DEPTH_SNAPSHOT_EVENT | SELL_EVENT
    out["exch_ts"] = exch
    out["local_ts"] = at
    return out


# ---------------------------------------------------------------------- cache
def _cache_key(root: Path, book_file: Path, trades_file: Path | None) -> str:
    def ident(p: Path | None) -> list[Any] | None:
        if p is None:
            return None
        st = p.stat()
        return [os.path.relpath(p, root), st.st_size, st.st_mtime_ns, st.st_ino]

    return json.dumps(
        {"version": CACHE_VERSION, "book": ident(book_file), "trades": ident(trades_file)},
        sort_keys=True,
    )


def _read_cache(path: Path, key: str, day: date) -> _Partition | None:
    from hftbacktest.types import event_dtype

    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                logger.info("L2 cache %s is stale (its partition changed): rebuilding", path)
                return None
            events, levels = npz["events"], npz["levels"]
            has_clear = bool(npz["has_clear"])
        if events.dtype != event_dtype or levels.dtype != event_dtype:
            raise ValueError(f"dtype {events.dtype} is not hftbacktest's event_dtype")
    except Exception as e:  # a truncated or foreign file: never trusted, rebuilt
        logger.warning("L2 cache %s is unreadable (%s: %s): rebuilding", path, type(e).__name__, e)
        return None
    return _Partition(day=day, events=events, levels=levels, has_clear=has_clear)


def _write_cache(path: Path, key: str, part: _Partition) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(
            f,
            key=np.array(key),
            events=part.events,
            levels=part.levels,
            has_clear=np.array(part.has_clear),
        )


# ---------------------------------------------------------------------- helpers
def _read_parquet(path: Path, ds: Any) -> pl.DataFrame:
    import polars as pl

    from tierline.data.validate import raise_for_problems, validate_frame

    try:
        df = pl.read_parquet(path)
    except Exception as e:
        raise DataError(f"{path}: cannot read Parquet file ({type(e).__name__}: {e})") from e
    raise_for_problems(validate_frame(df, ds, where=str(path)))
    return df


def _ns(col: pl.Series) -> np.ndarray:
    return col.dt.epoch("ns").to_numpy().astype(np.int64, copy=False)


def _is_clear(rows: np.ndarray) -> np.ndarray:
    from hftbacktest.types import DEPTH_CLEAR_EVENT

    return np.asarray((rows["ev"] & np.uint64(0xFF)) == DEPTH_CLEAR_EVENT)


def _has_depth(rows: np.ndarray) -> bool:
    from hftbacktest.types import TRADE_EVENT

    return bool(np.any((rows["ev"] & np.uint64(0xFF)) != TRADE_EVENT))


def _clear_local_ts(rows: np.ndarray) -> np.ndarray:
    return np.asarray(rows["local_ts"][_is_clear(rows)])


def _first_snapshot(days: list[date], load: Any) -> int | None:
    for d in days:
        ts = _clear_local_ts(load(d).events)
        if ts.size:
            return int(ts[0])
    return None


def _check_consecutive(wanted: list[date], what: str, span: str) -> None:
    for a, b in itertools.pairwise(wanted):
        if b - a != timedelta(days=1):
            missing = a + timedelta(days=1)
            raise DataError(
                f"{what}: no L2 book partition for {missing} inside {span} (have {a} and {b}); "
                "the book cannot be carried over the gap, shorten the span"
            )


def _steps(exchange: str, symbol: str, arrays: list[np.ndarray]) -> tuple[float, float]:
    """Tick and lot size: ``venues.toml`` when configured there, else inferred from the book."""
    from tierline.core.instruments import load_venues

    spec = load_venues().get((exchange.strip().lower(), symbol))
    if spec is not None:
        return float(spec.price_increment), float(spec.size_increment)
    from hftbacktest.types import TRADE_EVENT

    rows = np.concatenate(arrays)
    depth = rows[(rows["ev"] & np.uint64(0xFF)) != TRADE_EVENT]
    depth = depth[depth["qty"] > 0]
    tick, lot = _finest_step(depth["px"]), _finest_step(depth["qty"])
    logger.info(
        "%s %s is not in venues.toml: tick %s and lot %s inferred from the book",
        exchange,
        symbol,
        tick,
        lot,
    )
    return tick, lot


def _finest_step(values: np.ndarray) -> float:
    """Return the largest power-of-ten step (1 .. 1e-10) that every value is a multiple of."""
    v = np.unique(values)
    for d in range(0, 11):
        scaled = v * 10**d
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-9 * np.maximum(1.0, np.abs(scaled))):
            return float(10.0**-d)
    return 1e-10


def _day_of(path: Path) -> date:
    return date.fromisoformat(path.parent.name.split("=", 1)[1])


def _bound_ns(value: str | datetime | int | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    dt = to_utc_ns(value)
    assert dt is not None
    return (dt - _EPOCH) // timedelta(microseconds=1) * 1000


def _ns_day(ns: int) -> date:
    return (_EPOCH + timedelta(microseconds=ns // 1000)).date()


def _fmt(ns: int) -> str:
    dt = _EPOCH + timedelta(microseconds=ns // 1000)
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
