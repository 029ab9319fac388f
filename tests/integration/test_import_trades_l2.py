"""Trades and L2 book importers on the real files of ../shared/data.

freqtrade trades (feather, json.gz), the hftbacktest collector's raw Binance streams (USD-M
futures and a two-file spot session), Tardis incremental_book_L2 and trades CSVs: imported
through the catalog and the CLI, checked against the values stated in the data README and,
for the books, against the exchange's own bookTicker stream.
"""

from __future__ import annotations

import bisect
import gzip
import json
import shutil
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import polars as pl
import pytest

from tierline.cli import main
from tierline.data.catalog import Catalog
from tierline.data.importers import Imported, ImportOptions, detect_format
from tierline.data.importers import load as load_file
from tierline.data.importers.binance_raw import load as load_raw
from tierline.errors import ConfigError, DataError

RAW = Path("l2/hftbacktest_raw")
USDM_BTC = RAW / "usdm/btcusdt_20240808.gz"
SPOT_BTC = (RAW / "spot/btcusdt_20240808.gz", RAW / "spot/btcusdt_20240809.gz")
FT = Path("trades/xrp_eth_2019_freqtrade")
TARDIS_BOOK = Path("l2/tardis_samples_nautilus/deribit_incremental_book_L2_BTC-PERPETUAL.csv")
TARDIS_TRADES = Path("trades/tardis_samples_nautilus/bitmex_trades_XBTUSD.csv")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


# ---------------------------------------------------------------------- helpers
@cache
def _loaded(paths: tuple[Path, ...]) -> Imported:
    """Load raw files once per test session (the frames are immutable)."""
    return load_raw(list(paths), ImportOptions())


def _raw_streams(paths: tuple[Path, ...]) -> tuple[int, list[tuple[int, int, int]], list]:
    """Parse raw files independently: snapshot receive time, diffs (local, U, u), bookTickers."""
    snap_local = -1
    diffs: list[tuple[int, int, int]] = []
    tickers: list[tuple[int, float, float]] = []
    for p in paths:
        with gzip.open(p, "rb") as f:
            for line in f:
                head, _, body = line.partition(b" ")
                msg = json.loads(body)
                data = msg.get("data")
                if data is None:
                    snap_local = int(head)
                elif data.get("e") == "depthUpdate":
                    diffs.append((int(head), data["U"], data["u"]))
                elif msg["stream"].endswith("@bookTicker"):
                    tickers.append((data["u"], float(data["b"]), float(data["a"])))
    return snap_local, diffs, tickers


def _expected_tops(paths: tuple[Path, ...], shift_ns: int) -> dict[int, tuple[float, float, int]]:
    """Map the (shifted) receive time of each synced diff to the bookTicker that saw its book.

    After diff i (update ids U_i..u_i) the book is unchanged for every update id up to
    U_{i+1} - 1, so a bookTicker whose ``u`` falls in [u_i, U_{i+1} - 1] shows its top.
    """
    snap_local, diffs, tickers = _raw_streams(paths)
    spans = [
        (u, diffs[i + 1][1] - 1, local + shift_ns)
        for i, (local, _U, u) in enumerate(diffs[:-1])
        if local > snap_local  # diffs buffered before the snapshot share its time: skip
    ]
    starts = [s[0] for s in spans]
    out: dict[int, tuple[float, float, int]] = {}
    for u, bid, ask in tickers:
        k = bisect.bisect_right(starts, u) - 1
        if k >= 0 and u <= spans[k][1]:
            out.setdefault(spans[k][2], (bid, ask, u))
    return out


def replay_tops(book: pl.DataFrame, at: set[int]) -> dict[int, tuple[float, float]]:
    """Replay book rows into price->qty dicts; return (best bid, best ask) after each time in
    ``at`` (ns), once every row with that ``ts_local`` is applied. A run of snapshot rows
    replaces the book; qty 0 deletes a level."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    ts = book["ts_local"].dt.epoch("ns").to_list()
    sides = book["side"].to_list()
    prices = book["price"].to_list()
    qtys = book["qty"].to_list()
    snaps = book["is_snapshot"].to_list()
    tops: dict[int, tuple[float, float]] = {}
    in_snapshot = False
    n = len(ts)
    for j in range(n):
        if snaps[j] and not in_snapshot:
            bids.clear()
            asks.clear()
        in_snapshot = snaps[j]
        levels = bids if sides[j] == "bid" else asks
        if qtys[j] == 0:
            levels.pop(prices[j], None)
        else:
            levels[prices[j]] = qtys[j]
        if (j == n - 1 or ts[j + 1] != ts[j]) and ts[j] in at:
            tops[ts[j]] = (max(bids), min(asks))
    return tops


def _check_against_book_ticker(book: pl.DataFrame, paths: tuple[Path, ...]) -> list[int]:
    """Assert the rebuilt top of book equals bookTicker at every matched time; return them."""
    snapshot_rows = book.filter(pl.col("is_snapshot"))
    snap_local, _, _ = _raw_streams(paths)
    shift = int(snapshot_rows["ts_local"].dt.epoch("ns")[0]) - snap_local
    want = _expected_tops(paths, shift)
    got = replay_tops(book, set(want))
    assert set(got) == set(want)
    mismatches = [(t, got[t], want[t]) for t in want if got[t] != want[t][:2]]
    assert mismatches == []
    for bid, ask in got.values():
        assert bid < ask
    return sorted(want)


def _rewrite_gz(src: Path, dst: Path, edit) -> None:  # type: ignore[no-untyped-def]
    with gzip.open(src, "rb") as f:
        lines = f.readlines()
    dst.write_bytes(gzip.compress(b"".join(edit(lines)), compresslevel=1))


def _cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str | Path) -> int:
    root = tmp_path / "cli-parquet"
    monkeypatch.setenv("TIERLINE_DATA_DIR", str(root))
    return main(["--data-dir", str(root), "data", "import", *map(str, args)])


def _catalog_is_empty(root: Path) -> bool:
    return not root.exists() or not any(root.rglob("*.parquet"))


# ---------------------------------------------------------------------- freqtrade trades
def test_freqtrade_trades_feather_and_json_gz_give_the_same_12477_trades(shared_data: Path) -> None:
    fmt_f, feather = load_file(shared_data / FT / "XRP_ETH-trades.feather", None, ImportOptions())
    fmt_j, js = load_file(shared_data / FT / "XRP_ETH-trades.json.gz", None, ImportOptions())
    assert fmt_f == fmt_j == "freqtrade-trades"
    assert feather.trades is not None and js.trades is not None
    assert feather.trades.equals(js.trades)
    t = feather.trades
    assert len(t) == 12_477
    assert t["ts"][0] == utc(2019, 10, 11, 0, 0, 11, 620_000)
    assert t["ts"][-1] == utc(2019, 10, 13, 11, 19, 28, 844_000)
    assert t.row(0) == (utc(2019, 10, 11, 0, 0, 11, 620_000), 0.00141342, 23.0, "sell", "13519807")
    assert t["side"].value_counts().sort("side").rows() == [("buy", 6524), ("sell", 5953)]
    assert t["trade_id"].n_unique() == 12_477
    assert t.schema["ts"] == pl.Datetime("ns", "UTC")


def test_freqtrade_trades_catalog_write_is_idempotent(shared_data: Path, catalog: Catalog) -> None:
    _, got = load_file(shared_data / FT / "XRP_ETH-trades.feather", None, ImportOptions())
    assert got.trades is not None
    r1 = catalog.write_trades(got.trades, exchange="binance", symbol="XRP/ETH", source="t")
    assert (r1.rows_added, r1.rows_total, len(r1.files)) == (12_477, 12_477, 3)
    r2 = catalog.write_trades(got.trades, exchange="binance", symbol="XRP/ETH", source="t")
    assert (r2.rows_added, r2.rows_total, r2.files) == (0, 12_477, ())
    back = catalog.read("trades", exchange="binance", symbol="XRP/ETH")
    assert back.equals(got.trades)


def test_freqtrade_trades_cli_second_format_adds_nothing(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    args = ("--exchange", "binance", "--symbol", "XRP/ETH")
    assert _cli(tmp_path, monkeypatch, shared_data / FT / "XRP_ETH-trades.feather", *args) == 0
    assert "12477 rows read, 12477 new, 12477 stored" in capsys.readouterr().out
    assert _cli(tmp_path, monkeypatch, shared_data / FT / "XRP_ETH-trades.json.gz", *args) == 0
    assert "12477 rows read, 0 new, 12477 stored" in capsys.readouterr().out


def test_freqtrade_trades_json_bad_row_names_file_and_row(tmp_path: Path) -> None:
    bad = tmp_path / "XRP_ETH-trades.json"
    bad.write_text(json.dumps([[1570752011620, "1", None, "sell", 0.1, 1.0, 0.1], ["x"]]))
    with pytest.raises(DataError, match=r"XRP_ETH-trades\.json: row 1"):
        load_file(bad, None, ImportOptions())
    bad.write_text(json.dumps([[1570752011620, "1", None, "maybe", 0.1, 1.0, 0.1]]))
    with pytest.raises(DataError, match=r"row 0: side 'maybe'"):
        load_file(bad, None, ImportOptions())


# ---------------------------------------------------------------------- Binance USD-M raw
def test_binance_usdm_trades_match_the_stream(shared_data: Path) -> None:
    got = _loaded((shared_data / USDM_BTC,))
    t = got.trades
    assert t is not None
    assert len(t) == 21_313
    assert t["ts"][0] == ms(1723161256322)
    assert t["ts"][-1] == ms(1723161599643)
    assert t.row(0) == (ms(1723161256322), 61800.3, 0.006, "buy", "5266583935")
    assert t.row(-1)[1:] == (61659.8, 0.076, "buy", "5266605247")
    ids = t["trade_id"].cast(pl.Int64)
    assert ids.is_sorted() and ids.diff().drop_nulls().eq(1).all()  # no trade lost


def test_binance_usdm_book_snapshot_and_clock_correction(shared_data: Path) -> None:
    got = _loaded((shared_data / USDM_BTC,))
    book = got.book
    assert book is not None
    snap = book.filter(pl.col("is_snapshot"))
    assert len(snap) == 2_000  # 1000 levels a side
    assert book["is_snapshot"][:2000].all() and not book["is_snapshot"][2000:].any()
    assert snap["ts_exch"].unique().to_list() == [ms(1723161256493)]  # the snapshot's T
    assert snap.row(0)[2:] == ("bid", 61800.2, 2.909, True)
    assert snap.filter(pl.col("side") == "ask").row(0)[2:] == ("ask", 61800.3, 1.072, True)
    # The collector clock was 1.272156851 s behind: ts_local is shifted so the smallest
    # exchange-to-local latency is exactly 0, and none is negative.
    raw_snapshot_local = 1723161255319702566
    assert int(snap["ts_local"].dt.epoch("ns")[0]) - raw_snapshot_local == 1_272_156_851
    latency = (book["ts_local"] - book["ts_exch"]).dt.total_nanoseconds()
    assert latency.min() >= 0
    assert any("ts_local shifted by +1272.157 ms" in n for n in got.notes)
    assert any("4 of 6551 depth updates dropped" in n for n in got.notes)
    assert book["ts_local"].is_sorted()


def test_binance_usdm_clock_shift_equals_hftbacktest_converter(shared_data: Path) -> None:
    from hftbacktest.data.utils.binancefutures import convert
    from hftbacktest.types import DEPTH_EVENT, LOCAL_EVENT

    got = _loaded((shared_data / USDM_BTC,))
    assert got.book is not None
    hb = convert(str(shared_data / USDM_BTC), buffer_size=1_000_000)
    local_depth = hb[((hb["ev"] & 0xFF) == DEPTH_EVENT) & ((hb["ev"] & LOCAL_EVENT) != 0)]
    diffs = got.book.filter(~pl.col("is_snapshot"))
    snap_local = int(got.book["ts_local"].dt.epoch("ns")[0])
    ours = set(diffs["ts_local"].dt.epoch("ns").to_list()) - {snap_local}
    theirs = {int(t) for t in local_depth["local_ts"] if t > snap_local}
    assert len(ours) > 6_000
    assert ours == theirs
    # exchange timestamps: T, as the converter uses
    assert set(diffs["ts_exch"].dt.epoch("ns").to_list()) <= {int(t) for t in hb["exch_ts"]}


def test_binance_usdm_rebuilt_top_of_book_equals_book_ticker(
    shared_data: Path, catalog: Catalog
) -> None:
    got = _loaded((shared_data / USDM_BTC,))
    assert got.book is not None and got.trades is not None
    r = catalog.write_book(got.book, exchange="binance", symbol="BTC/USDT:USDT", source="t")
    assert r.rows_added == len(got.book) == r.rows_total
    catalog.write_trades(got.trades, exchange="binance", symbol="BTC/USDT:USDT", source="t")
    stored = catalog.read("book", exchange="binance", symbol="BTC/USDT:USDT")
    assert stored.equals(got.book)
    checked = _check_against_book_ticker(stored, (shared_data / USDM_BTC,))
    assert len(checked) > 500
    again = catalog.write_book(got.book, exchange="binance", symbol="BTC/USDT:USDT", source="t")
    assert again.rows_added == 0
    again_t = catalog.write_trades(
        got.trades, exchange="binance", symbol="BTC/USDT:USDT", source="t"
    )
    assert (again_t.rows_added, again_t.rows_total) == (0, 21_313)


def test_binance_usdm_cli_import_and_reimport(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    assert detect_format(shared_data / USDM_BTC) == "binance-raw"
    args = (shared_data / USDM_BTC, "--exchange", "binance", "--symbol", "BTC/USDT:USDT")
    assert _cli(tmp_path, monkeypatch, *args) == 0
    out = capsys.readouterr().out
    assert "trades: 21313 rows read, 21313 new, 21313 stored" in out
    assert "note: btcusdt_20240808.gz: the collector clock was behind" in out
    assert _cli(tmp_path, monkeypatch, *args) == 0
    out = capsys.readouterr().out
    assert "trades: 21313 rows read, 0 new, 21313 stored" in out
    n_book = len(_loaded((shared_data / USDM_BTC,)).book)  # type: ignore[arg-type]
    assert f"book: {n_book} rows read, 0 new, {n_book} stored" in out


def test_binance_raw_symbol_mismatch_is_a_config_error(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"btcusdt_20240808\.gz: line 1: the streams are BTCUSDT"):
        load_raw(shared_data / USDM_BTC, ImportOptions(symbol="ETH/USDT:USDT"))


# ---------------------------------------------------------------------- Binance spot raw
def test_binance_spot_two_files_form_one_session(shared_data: Path, catalog: Catalog) -> None:
    paths = tuple(shared_data / p for p in SPOT_BTC)
    got = _loaded(paths)
    t, book = got.trades, got.book
    assert t is not None and book is not None
    assert len(t) == 19_904
    assert t["ts"][0] == ms(1723161255342)
    assert t["ts"][-1] == ms(1723161905800)
    assert t.row(0) == (ms(1723161255342), 61837.63, 0.02, "sell", "3735683259")  # m=true
    ids = t["trade_id"].cast(pl.Int64)
    assert ids.diff().drop_nulls().eq(1).all()
    snap = book.filter(pl.col("is_snapshot"))
    assert len(snap) == 2_000
    assert snap.row(0)[2:] == ("bid", 61837.63, 3.78826, True)
    # spot snapshots carry no time: ts_exch is the E of the first diff applied on it
    first_diff = book.filter(~pl.col("is_snapshot")).row(0, named=True)
    assert snap["ts_exch"][0] == first_diff["ts_exch"]
    assert (book["ts_local"] - book["ts_exch"]).dt.total_nanoseconds().min() >= 0
    assert book["ts_local"].max() > utc(2024, 8, 9, 0, 5)  # the second file is in

    r = catalog.write_book(book, exchange="binance", symbol="BTC/USDT", source="t")
    assert [f.parent.name for f in r.files] == ["date=2024-08-08", "date=2024-08-09"]
    stored = catalog.read("book", exchange="binance", symbol="BTC/USDT")
    assert stored.equals(book)
    checked = _check_against_book_ticker(stored, paths)
    midnight = int(utc(2024, 8, 9).timestamp()) * 10**9
    assert sum(c < midnight for c in checked) > 300
    assert sum(c >= midnight for c in checked) > 300


def test_binance_spot_cli_loads_several_files_together_in_name_order(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    second, first = shared_data / SPOT_BTC[1], shared_data / SPOT_BTC[0]
    args = (second, first, "--exchange", "binance", "--symbol", "BTC/USDT")
    assert _cli(tmp_path, monkeypatch, *args) == 0
    out = capsys.readouterr().out
    assert "btcusdt_20240808.gz: trades: 19904 rows read, 19904 new, 19904 stored" in out
    assert "btcusdt_20240808.gz+btcusdt_20240809.gz" in out
    assert _cli(tmp_path, monkeypatch, *args) == 0
    assert "19904 rows read, 0 new, 19904 stored" in capsys.readouterr().out
    cat = Catalog(tmp_path / "cli-parquet")
    assert len(cat.read("trades", exchange="binance", symbol="BTC/USDT")) == 19_904


def test_binance_spot_second_file_alone_has_no_snapshot(shared_data: Path, tmp_path: Path) -> None:
    head = tmp_path / "btcusdt_20240809.gz"  # its first 5000 lines, to keep the test fast
    _rewrite_gz(shared_data / SPOT_BTC[1], head, lambda ls: ls[:5000])
    with pytest.raises(DataError, match=r"btcusdt_20240809\.gz: \d+ depth update\(s\) but no REST"):
        load_raw(head, ImportOptions())


# ---------------------------------------------------------------------- bad raw files
def test_binance_raw_truncated_gzip_is_a_data_error_and_writes_nothing(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "btcusdt_20240808.gz"
    bad.write_bytes((shared_data / USDM_BTC).read_bytes()[:1_000_000])
    with pytest.raises(DataError, match=r"btcusdt_20240808\.gz: line \d+: .*truncated"):
        load_raw(bad, ImportOptions())
    code = _cli(tmp_path, monkeypatch, bad, "--exchange", "binance", "--symbol", "BTC/USDT:USDT")
    assert code == 3
    assert str(bad) in capsys.readouterr().err
    assert _catalog_is_empty(tmp_path / "cli-parquet")


def test_binance_raw_garbage_line_names_file_and_line(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "btcusdt_20240808.gz"
    _rewrite_gz(
        shared_data / USDM_BTC,
        bad,
        lambda ls: [*ls[:1000], b"1723161255000000000 {not json\n", *ls[1000:]],
    )
    with pytest.raises(DataError, match=r"btcusdt_20240808\.gz: line 1001: not valid JSON"):
        load_raw(bad, ImportOptions())
    code = _cli(tmp_path, monkeypatch, bad, "--exchange", "binance", "--symbol", "BTC/USDT:USDT")
    assert code == 3
    assert "line 1001" in capsys.readouterr().err
    assert _catalog_is_empty(tmp_path / "cli-parquet")


def _drop_nth_depth_line(n: int):  # type: ignore[no-untyped-def]
    def edit(lines: list[bytes]) -> list[bytes]:
        depth = [i for i, line in enumerate(lines) if b"depthUpdate" in line]
        gone = depth[n]
        return lines[:gone] + lines[gone + 1 :]

    return edit


def test_binance_usdm_broken_update_chain_names_file_and_line(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "btcusdt_20240808.gz"
    _rewrite_gz(shared_data / USDM_BTC, bad, _drop_nth_depth_line(3000))
    with gzip.open(bad, "rb") as f:
        depth_lines = [i for i, line in enumerate(f, 1) if b"depthUpdate" in line]
    next_line = depth_lines[3000]  # the diff after the removed one, 1-based line number
    with pytest.raises(
        DataError, match=rf"btcusdt_20240808\.gz: line {next_line}: depth update chain broken: pu="
    ):
        load_raw(bad, ImportOptions())
    code = _cli(tmp_path, monkeypatch, bad, "--exchange", "binance", "--symbol", "BTC/USDT:USDT")
    assert code == 3
    assert f"line {next_line}" in capsys.readouterr().err
    assert _catalog_is_empty(tmp_path / "cli-parquet")


def test_binance_spot_broken_chain_in_second_file_names_that_file(
    shared_data: Path, tmp_path: Path
) -> None:
    first = tmp_path / "btcusdt_20240808.gz"
    shutil.copy(shared_data / SPOT_BTC[0], first)
    second = tmp_path / "btcusdt_20240809.gz"
    _rewrite_gz(shared_data / SPOT_BTC[1], second, _drop_nth_depth_line(10))
    with pytest.raises(DataError, match=r"btcusdt_20240809\.gz: line \d+: .*chain broken: U="):
        load_raw([first, second], ImportOptions())


# ---------------------------------------------------------------------- Tardis
def test_tardis_book_sample_imports_as_a_snapshot(shared_data: Path, catalog: Catalog) -> None:
    fmt, got = load_file(shared_data / TARDIS_BOOK, None, ImportOptions())
    assert fmt == "tardis-book"
    book = got.book
    assert book is not None
    assert len(book) == 15
    assert book["is_snapshot"].all() and book["side"].unique().to_list() == ["ask"]
    assert book.row(0) == (
        utc(2020, 4, 1, 0, 0, 0, 245_000),
        utc(2020, 4, 1, 0, 0, 0, 355_684),
        "ask",
        6421.5,
        18640.0,
        True,
    )
    assert book["price"][-1] == 6428.5 and book["qty"][-1] == 39950.0
    r1 = catalog.write_book(book, exchange="deribit", symbol="BTC/USD:BTC", source="t")
    r2 = catalog.write_book(book, exchange="deribit", symbol="BTC/USD:BTC", source="t")
    assert (r1.rows_added, r2.rows_added, r2.rows_total) == (15, 0, 15)


def test_tardis_trades_sample_cli_import(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    fmt, got = load_file(shared_data / TARDIS_TRADES, None, ImportOptions())
    assert fmt == "tardis-trades"
    t = got.trades
    assert t is not None
    assert len(t) == 10
    assert t["ts"][0] == utc(2020, 3, 1, 0, 0, 3, 145_000)
    assert t["ts"][-1] == utc(2020, 3, 1, 0, 0, 3, 276_000)
    assert t.row(0)[1:] == (8531.5, 2152.0, "sell", "ccc3c1fa-212c-e8b0-1706-9b9c4f3d5ecf")
    assert t["qty"].sum() == 2161.0
    args = (shared_data / TARDIS_TRADES, "--exchange", "bitmex", "--symbol", "BTC/USD:BTC")
    assert _cli(tmp_path, monkeypatch, *args) == 0
    assert "10 rows read, 10 new, 10 stored" in capsys.readouterr().out
    assert _cli(tmp_path, monkeypatch, *args) == 0
    assert "10 rows read, 0 new, 10 stored" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line_no", "line", "message"),
    [
        (4, "garbage\n", r"line 4: expected 8 comma-separated fields"),
        (3, "deribit,BTC-PERPETUAL,x,1585699200355684,true,ask,6422,1190\n", r"line 3: timestamp"),
        (5, "deribit,BTC-PERPETUAL,1,2,maybe,ask,6422,1190\n", r"line 5: is_snapshot 'maybe'"),
        (2, "deribit,BTC-PERPETUAL,1,2,true,ask,abc,1190\n", r"line 2: price 'abc'"),
    ],
)
def test_tardis_book_bad_line_names_file_and_line(
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    line_no: int,
    line: str,
    message: str,
) -> None:
    lines = (shared_data / TARDIS_BOOK).read_text().splitlines(keepends=True)
    lines[line_no - 1] = line
    bad = tmp_path / TARDIS_BOOK.name
    bad.write_text("".join(lines))
    with pytest.raises(DataError, match=rf"{bad.name}: {message}"):
        load_file(bad, None, ImportOptions())
    code = _cli(tmp_path, monkeypatch, bad, "--exchange", "deribit", "--symbol", "BTC/USD:BTC")
    assert code == 3
    assert _catalog_is_empty(tmp_path / "cli-parquet")


def test_tardis_trades_unknown_side_is_a_data_error(shared_data: Path, tmp_path: Path) -> None:
    lines = (shared_data / TARDIS_TRADES).read_text().splitlines(keepends=True)
    lines[6] = lines[6].replace(",sell,", ",unknown,")
    bad = tmp_path / TARDIS_TRADES.name
    bad.write_text("".join(lines))
    with pytest.raises(DataError, match=r"bitmex_trades_XBTUSD\.csv: line 7: side 'unknown'"):
        load_file(bad, None, ImportOptions())
