"""Catalog L2 -> hftbacktest event arrays (`tierline.engines.hft.events`) on the real files.

The hftbacktest collector's raw Binance streams in ../shared/data/l2/hftbacktest_raw (USD-M
BTCUSDT and ETHUSDT; spot BTCUSDT and ETHUSDT, two chained files each) are imported once into a
module catalog. Each event array is run through a real hftbacktest backtest and the book it
rebuilds is compared with the exchange's own bookTicker messages in the same raw files; the
USD-M arrays are compared with hftbacktest's own ``binancefutures.convert`` output.
"""

from __future__ import annotations

import bisect
import gzip
import json
import shutil
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest
from hftbacktest.data.validation import validate_event_order
from hftbacktest.types import (
    BUY_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EXCH_EVENT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    event_dtype,
)

from tierline.data.catalog import Catalog
from tierline.data.importers import ImportOptions
from tierline.data.importers.binance_raw import load as load_raw
from tierline.engines.hft import events as hft_events
from tierline.engines.hft.events import L2Events, cache_path, l2_events, order_events
from tierline.errors import DataError

RAW = Path("l2/hftbacktest_raw")
FLAGS = np.uint64(EXCH_EVENT | LOCAL_EVENT)


@dataclass(frozen=True)
class Session:
    files: tuple[str, ...]
    symbol: str
    tick: float
    lot: float
    #: rows seen by the local processor: depth diffs, trades (after the snapshot)
    depth_diffs: int
    trades: int
    #: bookTicker messages whose update id falls between two synced diffs
    matched: int


SESSIONS = {
    # Futures are not in nautilus/venues.toml: tick and lot are inferred from the book.
    "usdm-btc": Session(
        ("usdm/btcusdt_20240808.gz",), "BTC/USDT:USDT", 0.1, 0.001, 443_262, 21_309, 629
    ),
    "usdm-eth": Session(
        ("usdm/ethusdt_20240808.gz",), "ETH/USDT:USDT", 0.01, 0.001, 428_411, 14_075, 551
    ),
    # Spot comes from venues.toml (tick 0.01, lot 1e-8).
    "spot-btc": Session(
        ("spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz"),
        "BTC/USDT",
        0.01,
        1e-8,
        298_094,
        19_903,
        1_072,
    ),
    "spot-eth": Session(
        ("spot/ethusdt_20240808.gz", "spot/ethusdt_20240809.gz"),
        "ETH/USDT",
        0.01,
        1e-8,
        272_752,
        14_515,
        1_056,
    ),
}


# ---------------------------------------------------------------------- raw files
@dataclass(frozen=True)
class Raw:
    snapshot_local: int
    snapshot_levels: int
    diffs: list[tuple[int, int, int]]  # (local, U, u)
    tickers: list[tuple[int, float, float]]  # (u, best bid, best ask)
    trades: list[tuple[int, int]]  # (T ns, local ns), MARKET trades in file order


@cache
def _raw(paths: tuple[Path, ...]) -> Raw:
    """Parse the raw lines ourselves (``<local_ts_ns> <json>``), independently of tierline."""
    snap_local = snap_levels = -1
    diffs: list[tuple[int, int, int]] = []
    tickers: list[tuple[int, float, float]] = []
    trades: list[tuple[int, int]] = []
    for p in paths:
        with gzip.open(p, "rb") as f:
            for line in f:
                head, _, body = line.partition(b" ")
                msg = json.loads(body)
                data = msg.get("data")
                if data is None:
                    if "lastUpdateId" in msg:
                        snap_local = int(head)
                        snap_levels = len(msg["bids"]) + len(msg["asks"])
                elif data.get("e") == "depthUpdate":
                    diffs.append((int(head), data["U"], data["u"]))
                elif data.get("e") == "trade" and data.get("X", "MARKET") == "MARKET":
                    trades.append((data["T"] * 1_000_000, int(head)))
                elif msg["stream"].endswith("@bookTicker"):
                    tickers.append((data["u"], float(data["b"]), float(data["a"])))
    return Raw(snap_local, snap_levels, diffs, tickers, trades)


def _expected_tops(raw: Raw, shift_ns: int) -> dict[int, tuple[float, float]]:
    """Map the (clock-corrected) receive time of each synced diff to the bookTicker of its book.

    After diff i (update ids U_i..u_i) the book is unchanged for every update id up to
    U_{i+1} - 1, so a bookTicker whose ``u`` falls in [u_i, U_{i+1} - 1] shows the book as it
    is once diff i has been applied, i.e. at diff i's receive time. bookTickers with ``u``
    inside a diff's own range show an intermediate state no depth stream carries: not compared.
    """
    spans = [
        (u, raw.diffs[i + 1][1] - 1, local + shift_ns)
        for i, (local, _first, u) in enumerate(raw.diffs[:-1])
        if local > raw.snapshot_local  # buffered before the snapshot: applied at its time
    ]
    starts = [s[0] for s in spans]
    out: dict[int, tuple[float, float]] = {}
    for u, bid, ask in raw.tickers:
        k = bisect.bisect_right(starts, u) - 1
        if k >= 0 and u <= spans[k][1]:
            out.setdefault(spans[k][2], (bid, ask))
    return out


# ---------------------------------------------------------------------- fixtures
def _paths(shared: Path, s: Session) -> tuple[Path, ...]:
    return tuple(shared / RAW / f for f in s.files)


@pytest.fixture(scope="module")
def l2_catalog(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """One catalog holding the four sessions' book and trades, imported once."""
    cat = Catalog(tmp_path_factory.mktemp("hft-l2") / "parquet")
    for s in SESSIONS.values():
        got = load_raw(list(_paths(shared_data, s)), ImportOptions(symbol=s.symbol))
        assert got.book is not None and got.trades is not None
        cat.write_book(got.book, exchange="binance", symbol=s.symbol, source="test")
        cat.write_trades(got.trades, exchange="binance", symbol=s.symbol, source="test")
    return cat


@pytest.fixture(scope="module")
def converted(l2_catalog: Catalog) -> dict[str, L2Events]:
    return {name: l2_events(l2_catalog, "binance", s.symbol) for name, s in SESSIONS.items()}


def _clock_shift(cat: Catalog, symbol: str, raw: Raw) -> int:
    """The importer's local-clock correction: stored snapshot time minus raw receive time."""
    book = cat.read("book", exchange="binance", symbol=symbol)
    first = book.filter(pl.col("is_snapshot"))["ts_local"].dt.epoch("ns")[0]
    return int(first) - raw.snapshot_local


def _asset(ev: L2Events) -> BacktestAsset:
    return (
        BacktestAsset()
        .data([ev.events])
        .linear_asset(1.0)
        .constant_order_latency(0, 0)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(0.0, 0.0)
        .tick_size(ev.tick_size)
        .lot_size(ev.lot_size)
        .last_trades_capacity(0)
    )


def _tops_in_backtest(
    ev: L2Events, times: list[int], *, roi: bool = False
) -> dict[int, tuple[float, float]]:
    """Run a real hftbacktest backtest and read its local best bid/ask at each time."""
    asset = _asset(ev)
    if roi:
        mid = float(ev.events["px"][ev.events["qty"] > 0].mean())
        hbt = ROIVectorMarketDepthBacktest([asset.roi_lb(mid * 0.5).roi_ub(mid * 1.5)])
    else:
        hbt = HashMapMarketDepthBacktest([asset])
    tops: dict[int, tuple[float, float]] = {}
    assert hbt.elapse(0) == 0
    for t in sorted(times):
        if t > hbt.current_timestamp:
            assert hbt.elapse(t - hbt.current_timestamp) == 0
        assert hbt.current_timestamp == t
        depth = hbt.depth(0)
        tick = ev.tick_size
        tops[t] = (round(depth.best_bid_tick * tick, 8), round(depth.best_ask_tick * tick, 8))
    hbt.close()
    return tops


def _at(when: str) -> int:
    """Epoch ns of an ISO time, as `l2_events` reads it."""
    ns = hft_events._bound_ns(when)
    assert ns is not None
    return ns


def _kind(a: np.ndarray) -> np.ndarray:
    return np.asarray(a["ev"] & np.uint64(0xFF))


def _local(a: np.ndarray) -> np.ndarray:
    return a[(a["ev"] & np.uint64(LOCAL_EVENT)) != 0]


def _exch(a: np.ndarray) -> np.ndarray:
    return a[(a["ev"] & np.uint64(EXCH_EVENT)) != 0]


# ---------------------------------------------------------------------- conversion
@pytest.mark.parametrize("name", list(SESSIONS))
def test_event_array_counts_order_and_steps(
    name: str, converted: dict[str, L2Events], l2_catalog: Catalog, shared_data: Path
) -> None:
    s, ev = SESSIONS[name], converted[name]
    raw = _raw(_paths(shared_data, s))
    assert ev.events.dtype == event_dtype
    validate_event_order(ev.events)  # hftbacktest's own check (raises on disorder)
    local = _local(ev.events)
    kinds = _kind(local)
    # one side-less clear, then the REST snapshot's levels (1000 a side in these files)
    assert kinds[0] == DEPTH_CLEAR_EVENT and local["ev"][0] & np.uint64(BUY_EVENT | SELL_EVENT) == 0
    assert raw.snapshot_levels == 2000
    assert np.count_nonzero(kinds == DEPTH_SNAPSHOT_EVENT) == raw.snapshot_levels
    assert np.all(kinds[1 : 1 + raw.snapshot_levels] == DEPTH_SNAPSHOT_EVENT)
    assert np.count_nonzero(kinds == DEPTH_CLEAR_EVENT) == 1
    assert np.count_nonzero(kinds == DEPTH_EVENT) == s.depth_diffs
    assert np.count_nonzero(kinds == TRADE_EVENT) == s.trades
    # every stored book row is one depth event
    book = l2_catalog.read("book", exchange="binance", symbol=s.symbol)
    assert len(book) == s.depth_diffs + raw.snapshot_levels
    assert ev.depth_rows == 1 + len(book)
    # the span: from the snapshot's (clock-corrected) receive time to just after the last event
    assert ev.start_ns == raw.snapshot_local + _clock_shift(l2_catalog, s.symbol, raw)
    assert ev.start_ns == local["local_ts"][0]
    assert ev.end_ns == local["local_ts"][-1] + 1
    assert ev.partitions == ("2024-08-08", "2024-08-09")
    assert not ev.synthetic
    assert (ev.tick_size, ev.lot_size) == (s.tick, s.lot)
    # exchange and local clocks kept apart: no diff or trade is received before it happened
    # (a spot snapshot carries the exchange time of the first diff applied on it, which
    # may be received after the snapshot: see the binance-raw importer)
    flow = ev.events[(_kind(ev.events) == DEPTH_EVENT) | (_kind(ev.events) == TRADE_EVENT)]
    assert np.all(flow["local_ts"] >= flow["exch_ts"])
    assert np.median(flow["local_ts"] - flow["exch_ts"]) > 1_000_000  # ms-scale feed latency


@pytest.mark.parametrize("name", list(SESSIONS))
def test_rebuilt_best_bid_ask_equals_book_ticker(
    name: str, converted: dict[str, L2Events], l2_catalog: Catalog, shared_data: Path
) -> None:
    s, ev = SESSIONS[name], converted[name]
    raw = _raw(_paths(shared_data, s))
    want = _expected_tops(raw, _clock_shift(l2_catalog, s.symbol, raw))
    assert len(want) == s.matched
    got = _tops_in_backtest(ev, list(want))
    mismatches = [(t, got[t], want[t]) for t in want if got[t] != want[t]]
    assert mismatches == []
    assert all(bid < ask for bid, ask in got.values())


@pytest.mark.parametrize("name", list(SESSIONS))
def test_trade_receive_time_is_derived_from_the_book_feed_latency(
    name: str, converted: dict[str, L2Events], l2_catalog: Catalog, shared_data: Path
) -> None:
    s, ev = SESSIONS[name], converted[name]
    raw = _raw(_paths(shared_data, s))
    shift = _clock_shift(l2_catalog, s.symbol, raw)
    trades = _local(ev.events)
    trades = trades[_kind(trades) == TRADE_EVENT]
    # the raw trades after the snapshot, in exchange-time order, with their true receive time
    truth = np.array(sorted((t, local + shift) for t, local in raw.trades), dtype=np.int64)
    derived = np.sort(trades[["exch_ts", "local_ts"]], order=["exch_ts", "local_ts"])
    truth = truth[-len(derived) :]
    assert np.array_equal(derived["exch_ts"], truth[:, 0])
    err_ms = (derived["local_ts"] - truth[:, 1]) / 1e6
    assert abs(float(np.median(err_ms))) < 1.0
    assert float(np.median(np.abs(err_ms))) < 5.0


@pytest.mark.parametrize("name", ["usdm-btc", "usdm-eth"])
def test_usdm_depth_events_equal_hftbacktest_binancefutures_convert(
    name: str, converted: dict[str, L2Events], l2_catalog: Catalog, shared_data: Path
) -> None:
    from hftbacktest.data.utils.binancefutures import convert

    ev = converted[name]
    theirs = convert(str(_paths(shared_data, SESSIONS[name])[0]), buffer_size=2_000_000)
    snap_local = ev.start_ns
    book = l2_catalog.read("book", exchange="binance", symbol=SESSIONS[name].symbol)
    after_snapshot = book.filter(pl.col("ts_local").dt.epoch("ns") > snap_local).height
    assert after_snapshot > 0.99 * SESSIONS[name].depth_diffs
    # After hftbacktest's clock correction its local times are ours; after the snapshot both
    # arrays hold the same depth events in the same local and exchange sequences. (Before
    # it, hftbacktest applies the diffs Binance's sync rule drops; its snapshot clears only
    # down to the deepest snapshot level, ours clears the book, as the catalog's does.)
    for flag in (LOCAL_EVENT, EXCH_EVENT):

        def seq(a: np.ndarray, flag: int = flag) -> np.ndarray:
            rows = a[
                ((a["ev"] & np.uint64(flag)) != 0)
                & (_kind(a) == DEPTH_EVENT)
                & (a["local_ts"] > snap_local)
            ]
            return np.stack(
                [
                    (rows["ev"] & ~FLAGS).astype(np.int64),
                    rows["exch_ts"],
                    rows["local_ts"],
                    rows["px"].view(np.int64),
                    rows["qty"].view(np.int64),
                ]
            )

        ours_seq, theirs_seq = seq(ev.events), seq(theirs)
        assert ours_seq.shape == theirs_seq.shape
        assert ours_seq.shape[1] == after_snapshot
        assert np.array_equal(ours_seq, theirs_seq)
    # the snapshot levels, and the trades (exchange time, price, qty, side)
    snap_theirs = _local(theirs)[_kind(_local(theirs)) == DEPTH_SNAPSHOT_EVENT]
    snap_ours = _local(ev.events)[_kind(_local(ev.events)) == DEPTH_SNAPSHOT_EVENT]
    assert snap_ours.size == snap_theirs.size == 2000
    assert np.array_equal(snap_ours["ev"] & ~FLAGS, snap_theirs["ev"] & ~FLAGS)
    assert np.array_equal(snap_ours["px"], snap_theirs["px"])
    assert np.array_equal(snap_ours["qty"], snap_theirs["qty"])

    def trades(a: np.ndarray) -> np.ndarray:
        rows = _local(a)
        rows = rows[_kind(rows) == TRADE_EVENT]
        rows = rows[np.argsort(rows["exch_ts"], kind="stable")]
        return np.stack(
            [
                (rows["ev"] & ~FLAGS).astype(np.int64),
                rows["exch_ts"],
                rows["px"].view(np.int64),
                rows["qty"].view(np.int64),
            ]
        )

    t_ours, t_theirs = trades(ev.events), trades(theirs)
    assert np.array_equal(t_ours, t_theirs[:, -t_ours.shape[1] :])


# ---------------------------------------------------------------------- spans and chaining
def _book_levels(rows: np.ndarray, tick: float) -> tuple[list[tuple[int, float]], ...]:
    """(price in ticks, qty) of each side; hftbacktest returns prices as tick * tick_size."""
    out = []
    for flag in (BUY_EVENT, SELL_EVENT):
        side = rows[(rows["ev"] & np.uint64(flag)) != 0]
        ticks = np.round(side["px"] / tick).astype(np.int64)
        out.append(sorted(zip(ticks.tolist(), side["qty"].tolist(), strict=True)))
    return tuple(out)


@pytest.mark.parametrize(
    ("start", "end", "partitions"),
    [
        # inside the snapshot's partition: the book is rebuilt from the rows before `start`
        ("2024-08-08T23:57:00", "2024-08-08T23:59:30", ("2024-08-08",)),
        # after midnight: the 2024-08-08 book (snapshot) carries over into 2024-08-09
        ("2024-08-09T00:01:00", "2024-08-09T00:04:00", ("2024-08-08", "2024-08-09")),
    ],
)
def test_span_starting_after_the_snapshot_opens_with_the_book_at_its_start(
    start: str,
    end: str,
    partitions: tuple[str, ...],
    converted: dict[str, L2Events],
    l2_catalog: Catalog,
    shared_data: Path,
) -> None:
    s, full = SESSIONS["spot-btc"], converted["spot-btc"]
    lo = _at(start) + 123  # epoch ns are taken as they are
    ev = l2_events(l2_catalog, "binance", s.symbol, start=lo, end=end)
    validate_event_order(ev.events)
    assert (ev.start_ns, ev.end_ns) == (lo, hft_events._bound_ns(end))
    assert ev.partitions == partitions
    local = _local(ev.events)
    assert local["local_ts"][0] == lo and local["local_ts"][-1] < ev.end_ns
    n_snap = int(np.count_nonzero(_kind(local) == DEPTH_SNAPSHOT_EVENT))
    assert _kind(local)[0] == DEPTH_CLEAR_EVENT and np.all(
        _kind(local)[1 : 1 + n_snap] == DEPTH_SNAPSHOT_EVENT
    )
    # the synthesised snapshot is exactly the book hftbacktest holds at `start` when it
    # replays the whole session from the recorded snapshot
    assert not np.any(full.events["local_ts"] == lo)
    hbt = HashMapMarketDepthBacktest([_asset(full)])
    hbt.elapse(0)
    hbt.elapse(lo - hbt.current_timestamp)
    depth = hbt.depth(0)
    held = depth.snapshot()
    want = _book_levels(np.array(held), ev.tick_size)
    depth.snapshot_free(held)
    hbt.close()
    assert _book_levels(local[1 : 1 + n_snap], ev.tick_size) == want
    assert n_snap > 1000  # the REST snapshot's 2000 levels, less deletions, plus new levels
    # and from there the bookTicker agrees exactly, through midnight (ROI vector depth here)
    raw = _raw(_paths(shared_data, s))
    want_tops = {
        t: v
        for t, v in _expected_tops(raw, _clock_shift(l2_catalog, s.symbol, raw)).items()
        if lo <= t < ev.end_ns
    }
    assert len(want_tops) > 200
    assert _tops_in_backtest(ev, list(want_tops), roi=True) == want_tops


def test_l2_span_errors_name_the_symbol_and_span(l2_catalog: Catalog, tmp_path: Path) -> None:
    sym = "BTC/USDT"
    with pytest.raises(DataError, match=r"no L2 book for binance SOL/USDT in the catalog"):
        l2_events(l2_catalog, "binance", "SOL/USDT")
    with pytest.raises(
        DataError,
        match=r"no L2 book for binance BTC/USDT covers the span \[2024-08-10 00:00:00.000 UTC",
    ):
        l2_events(l2_catalog, "binance", sym, start="2024-08-10", end="2024-08-11")
    with pytest.raises(
        DataError, match=r"binance BTC/USDT: no L2 snapshot at or before 2024-08-08 23:00:00.000"
    ):
        l2_events(l2_catalog, "binance", sym, start="2024-08-08T23:00")
    with pytest.raises(
        DataError, match=r"covers .* the recorded book ends at 2024-08-09 00:05:05.81"
    ):
        l2_events(l2_catalog, "binance", sym, start="2024-08-09T00:00", end="2024-08-09T01:00")
    with pytest.raises(DataError, match=r"empty span"):
        l2_events(l2_catalog, "binance", sym, start="2024-08-09T00:02", end="2024-08-09T00:01")
    with pytest.raises(
        DataError,
        match=(
            r"covers the span \[first snapshot \.\. 2024-08-08 23:54:00\.000 UTC\): it ends "
            r"before the book's first snapshot at 2024-08-08 23:54:15\.48"
        ),
    ):
        l2_events(l2_catalog, "binance", sym, end="2024-08-08T23:54")
    # a catalog whose first book partition is the second half of a session: no snapshot
    cat = Catalog(tmp_path / "parquet")
    second = l2_catalog.read("book", exchange="binance", symbol=sym, start="2024-08-09")
    cat.write_book(second, exchange="binance", symbol=sym, source="test")
    with pytest.raises(
        DataError, match=r"binance BTC/USDT: the L2 book starts on 2024-08-09 without a snapshot"
    ):
        l2_events(cat, "binance", sym)
    # a missing date inside the span: the book cannot be carried over it
    first = l2_catalog.read("book", exchange="binance", symbol=sym, end="2024-08-09")
    later = second.with_columns(pl.col("ts_exch", "ts_local") + timedelta(days=2))
    cat.write_book(first, exchange="binance", symbol=sym, source="test")
    cat.write_book(later, exchange="binance", symbol=sym, source="test")
    with pytest.raises(
        DataError,
        match=(
            r"no L2 book partition for 2024-08-10 inside the span "
            r"\[first snapshot \.\. 2024-08-11 00:01:00\.000 UTC\) "
            r"\(have 2024-08-09 and 2024-08-11\)"
        ),
    ):
        l2_events(cat, "binance", sym, end="2024-08-11T00:01")
    assert not list((tmp_path / "parquet").rglob(".tmp-*"))


# ---------------------------------------------------------------------- cache
@pytest.fixture
def small_catalog(l2_catalog: Catalog, tmp_path: Path) -> Catalog:
    """A throwaway copy of the spot ETHUSDT partitions (the cache tests modify files)."""
    cat = Catalog(tmp_path / "parquet")
    for ds in ("book", "trades"):
        src = l2_catalog.partition_dir(ds, "binance", "ETH/USDT")
        shutil.copytree(src, cat.partition_dir(ds, "binance", "ETH/USDT"))
    return cat


def test_cache_hit_rebuild_on_change_and_on_corruption(
    small_catalog: Catalog, converted: dict[str, L2Events], monkeypatch: pytest.MonkeyPatch
) -> None:
    cat, sym = small_catalog, "ETH/USDT"
    calls: list[str] = []
    real = hft_events._convert_partition

    def counting(day, book_file, trades_file):  # type: ignore[no-untyped-def]
        calls.append(day.isoformat())
        return real(day, book_file, trades_file)

    monkeypatch.setattr(hft_events, "_convert_partition", counting)
    first = l2_events(cat, "binance", sym)
    assert calls == ["2024-08-08", "2024-08-09"]
    np.testing.assert_array_equal(first.events, converted["spot-eth"].events)
    files = [cache_path(cat, "binance", sym, d) for d in ("2024-08-08", "2024-08-09")]
    assert files[0] == cat.root / ".cache/hft/exchange=binance/symbol=ETH_USDT/date=2024-08-08.npz"
    stamps = [f.stat().st_mtime_ns for f in files]
    # second call: served from the cache, nothing converted or rewritten
    again = l2_events(cat, "binance", sym)
    assert calls == ["2024-08-08", "2024-08-09"]
    assert [f.stat().st_mtime_ns for f in files] == stamps
    np.testing.assert_array_equal(again.events, first.events)
    # a changed partition (one more trade on 2024-08-09) is re-converted, the other is not
    extra = pl.DataFrame(
        {
            "ts": [first.end_ns - 5_000_000_000],
            "price": [2600.0],
            "qty": [1.5],
            "side": ["buy"],
            "trade_id": ["x1"],
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
    cat.write_trades(extra, exchange="binance", symbol=sym, source="test")
    changed = l2_events(cat, "binance", sym)
    assert calls == ["2024-08-08", "2024-08-09", "2024-08-09"]
    trades = _local(changed.events)
    trades = trades[_kind(trades) == TRADE_EVENT]
    assert trades.size == SESSIONS["spot-eth"].trades + 1
    assert np.count_nonzero((trades["px"] == 2600.0) & (trades["qty"] == 1.5)) == 1
    # a corrupt cache file is rebuilt, not trusted
    files[0].write_bytes(b"PK\x03\x04 not really a zip")
    rebuilt = l2_events(cat, "binance", sym)
    assert calls[-1] == "2024-08-08" and len(calls) == 4
    np.testing.assert_array_equal(rebuilt.events, changed.events)
    with np.load(files[0]) as npz:
        assert npz["events"].dtype == event_dtype
    # cache=False converts and writes nothing
    shutil.rmtree(cat.root / ".cache")
    l2_events(cat, "binance", sym, cache=False)
    assert len(calls) == 6
    assert not (cat.root / ".cache").exists()
    # a cache that cannot be written (a file where its folder goes) is skipped, not fatal
    (cat.root / ".cache").write_text("not a folder")
    unwritable = l2_events(cat, "binance", sym)
    assert len(calls) == 8
    np.testing.assert_array_equal(unwritable.events, changed.events)
    assert (cat.root / ".cache").read_text() == "not a folder"


def test_span_after_midnight_keeps_trades_of_the_day_before_received_after_its_start(
    small_catalog: Catalog,
) -> None:
    """Trades are filed by exchange date; one sent just before midnight and received just
    after it belongs to a span starting at midnight (it lives in the previous partition)."""
    cat, sym = small_catalog, "ETH/USDT"
    midnight = _at("2024-08-09")
    late = pl.DataFrame(
        {
            "ts": [midnight - 1],
            "price": [2611.11],
            "qty": [7.77],
            "side": ["sell"],
            "trade_id": ["late"],
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
    cat.write_trades(late, exchange="binance", symbol=sym, source="test")

    def ours(ev: L2Events) -> np.ndarray:
        rows = _local(ev.events)
        return rows[(_kind(rows) == TRADE_EVENT) & (rows["px"] == 2611.11)]

    (whole,) = ours(l2_events(cat, "binance", sym))
    assert whole["exch_ts"] == midnight - 1 and whole["local_ts"] >= midnight  # the premise
    span = l2_events(cat, "binance", sym, start=midnight, end=int(whole["local_ts"]) + 1)
    assert span.partitions == ("2024-08-08", "2024-08-09")
    validate_event_order(span.events)
    (got,) = ours(span)
    assert got.tolist() == whole.tolist()
    assert got["ev"] & np.uint64(SELL_EVENT)
    # a span starting after it does not see it
    after = l2_events(cat, "binance", sym, start=int(whole["local_ts"]) + 1)
    assert ours(after).size == 0


# ---------------------------------------------------------------------- order_events
def test_order_events_splits_rows_whose_exchange_time_runs_backwards() -> None:
    rows = np.zeros(5, dtype=event_dtype)
    rows["ev"] = DEPTH_EVENT | BUY_EVENT
    rows["exch_ts"] = [10, 30, 20, 40, 25]
    rows["local_ts"] = [50, 60, 70, 80, 90]
    rows["px"] = [1.0, 2.0, 3.0, 4.0, 5.0]
    out = order_events(rows)
    validate_event_order(out)
    # the local processor sees the input order, the exchange one a stable exchange-time sort
    assert _local(out)["px"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert _exch(out)["px"].tolist() == [1.0, 3.0, 5.0, 2.0, 4.0]
    # rows 3.0 and 5.0 are split in two, the others carry both flags
    assert out.size == 7
    assert np.count_nonzero((out["ev"] & FLAGS) == FLAGS) == 3
    # in order already: one row each, both flags
    rows["exch_ts"] = [10, 20, 20, 30, 40]
    out = order_events(rows)
    assert out.size == 5 and np.all((out["ev"] & FLAGS) == FLAGS)
