"""The replay server answers ccxt's binance like the exchange would, from the catalog.

Real Binance BTC/USDT bars (1m, April 2024; 5m, August 2024) and the real Binance spot L2
session of 2024-08-08/09 from ../shared/data, imported into a temporary catalog.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ccxt
import polars as pl
import pytest

from tierline.cli import main
from tierline.data.catalog import Catalog
from tierline.live.replay import ReplayConfig, ReplayServer, ccxt_config

START = "2024-04-03T00:00"


@pytest.fixture(scope="module")
def replay_catalog(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    cat = Catalog(tmp_path_factory.mktemp("replay") / "parquet")
    ohlcv = shared_data / "ohlcv"
    for path, tf in (
        (ohlcv / "binance_spot_tradingstrategyga" / "BTC_USDT-1m.feather", "1m"),
        (ohlcv / "binance_spot_2024_genetrader" / "BTC_USDT-5m.feather", "5m"),
    ):
        df = pl.read_ipc(path).rename({"date": "ts"})
        cat.write_ohlcv(df, exchange="binance", symbol="BTC/USDT", timeframe=tf, source=path.name)
    spot = shared_data / "l2" / "hftbacktest_raw" / "spot"
    rc = main(
        [
            "--data-dir",
            str(cat.root),
            "data",
            "import",
            str(spot / "btcusdt_20240808.gz"),
            str(spot / "btcusdt_20240809.gz"),
            "--exchange",
            "binance",
            "--symbol",
            "BTC/USDT",
        ]
    )
    assert rc == 0
    return cat


@pytest.fixture(scope="module")
def server(replay_catalog: Catalog) -> Iterator[ReplayServer]:
    cfg = ReplayConfig(exchange="binance", symbol="BTC/USDT", timeframe="1m", start=START)
    with ReplayServer(cfg, replay_catalog) as srv:
        yield srv


@pytest.fixture(scope="module")
def exchange(server: ReplayServer) -> Any:
    return ccxt.binance(ccxt_config(server.url))


@pytest.fixture(scope="module")
def bars(replay_catalog: Catalog) -> pl.DataFrame:
    return replay_catalog.read_ohlcv("binance", "BTC/USDT", "1m")


def _stable(server: ReplayServer, call: Callable[[], Any]) -> tuple[Any, int]:
    """Call, retrying when the replayed candle changed meanwhile; return result and cursor."""
    tf = server.clock.tf_ms
    for _ in range(3):
        before = server.clock.cursor_ms()
        out = call()
        after = server.clock.cursor_ms()
        if before // tf == after // tf:
            return out, before
    raise AssertionError("the replayed candle kept changing")


def _row(bars: pl.DataFrame, ms: int) -> dict[str, Any]:
    return bars.filter(pl.col("ts").dt.epoch("ms") == ms).row(0, named=True)


def test_replay_clock_restamps_the_start_candle_to_now(server: ReplayServer) -> None:
    shift, tf = server.clock.shift_ms, 60_000
    assert shift % tf == 0
    start_ms = int(pl.Series([START]).str.to_datetime(time_zone="UTC").dt.epoch("ms")[0])
    assert server.clock.start_ms == start_ms
    now = int(time.time() * 1000)
    assert abs(server.clock.now_ms() - now) < 2_000
    # the candle forming now (wall clock) is the --from candle, or a later one as time goes on
    assert 0 <= (now // tf * tf - shift) - start_ms <= 10 * tf


def test_ccxt_load_markets_reads_the_instrument_spec(exchange: Any) -> None:
    markets = exchange.load_markets()
    assert list(markets) == ["BTC/USDT"]
    m = markets["BTC/USDT"]
    assert (m["id"], m["base"], m["quote"], m["spot"]) == ("BTCUSDT", "BTC", "USDT", True)
    assert m["precision"]["price"] == 0.01  # nautilus/venues.toml: binance BTC/USDT tick
    assert m["limits"]["cost"]["min"] == 10.0
    assert abs(exchange.fetch_time() - int(time.time() * 1000)) < 2_000


def test_ccxt_fetch_ohlcv_equals_the_catalog(
    server: ReplayServer, exchange: Any, bars: pl.DataFrame
) -> None:
    exchange.load_markets()
    shift = server.clock.shift_ms
    # a page by `since`: exactly the catalog's bars, re-stamped
    since_cat = int(_row(bars, 1712101800000)["ts"].timestamp() * 1000)  # 2024-04-02 23:50
    page = exchange.fetch_ohlcv("BTC/USDT", "1m", since=since_cat + shift, limit=5)
    expected = bars.filter(pl.col("ts").dt.epoch("ms") >= since_cat).head(5)
    assert [c[0] - shift for c in page] == expected["ts"].dt.epoch("ms").to_list()
    for c, row in zip(page, expected.iter_rows(named=True), strict=True):
        assert c[1:] == [row["open"], row["high"], row["low"], row["close"], row["volume"]]
    # the latest candles: closed ones as stored, the forming one flat at its open
    latest, cursor = _stable(server, lambda: exchange.fetch_ohlcv("BTC/USDT", "1m", limit=3))
    forming = cursor // 60_000 * 60_000
    assert [c[0] - shift for c in latest] == [forming - 120_000, forming - 60_000, forming]
    for c in latest[:2]:
        row = _row(bars, c[0] - shift)
        assert c[1:] == [row["open"], row["high"], row["low"], row["close"], row["volume"]]
    o = _row(bars, forming)["open"]
    assert latest[2][1:] == [o, o, o, o, 0.0]


def test_ccxt_ticker_and_order_book_quote_the_forming_candles_open(
    server: ReplayServer, exchange: Any, bars: pl.DataFrame
) -> None:
    exchange.load_markets()
    ticker, cursor = _stable(server, lambda: exchange.fetch_ticker("BTC/USDT"))
    o = _row(bars, cursor // 60_000 * 60_000)["open"]
    assert (ticker["last"], ticker["bid"], ticker["ask"]) == (o, o, o)
    book, cursor = _stable(server, lambda: exchange.fetch_order_book("BTC/USDT", 5))
    o = _row(bars, cursor // 60_000 * 60_000)["open"]
    assert [b[0] for b in book["bids"]] == [round(o - k * 0.01, 2) for k in range(5)]
    assert [a[0] for a in book["asks"]] == [round(o + k * 0.01, 2) for k in range(5)]
    assert book["asks"][0][1] * o >= 1e9  # the touch takes any stake
    price, cursor = _stable(server, lambda: exchange.publicGetTickerPrice({"symbol": "BTCUSDT"}))
    assert float(price["price"]) == _row(bars, cursor // 60_000 * 60_000)["open"]


def test_bad_symbol_interval_and_range_raise_ccxt_errors_at_once(
    server: ReplayServer, exchange: Any
) -> None:
    exchange.load_markets()
    cases: list[tuple[Callable[[], Any], type[Exception], str]] = [
        (
            lambda: exchange.publicGetKlines({"symbol": "ETHBTC", "interval": "1m"}),
            ccxt.BadSymbol,
            "-1121",
        ),
        (
            lambda: exchange.publicGetTicker24hr({"symbol": "XRPUSDT"}),
            ccxt.BadSymbol,
            "Invalid symbol.",
        ),
        (lambda: exchange.fetch_ohlcv("BTC/USDT", "3m"), ccxt.BadRequest, "The replay serves 1m"),
        # 2020: entirely before the catalog's first bar
        (
            lambda: exchange.fetch_ohlcv(
                "BTC/USDT", "1m", since=1577836800000 + server.clock.shift_ms
            ),
            ccxt.BadRequest,
            "-1130",
        ),
        (lambda: exchange.fetch_trades("BTC/USDT"), ccxt.ExchangeError, "not served"),
    ]
    for call, exc, text in cases:
        t0 = time.monotonic()
        with pytest.raises(exc, match=text):
            call()
        assert time.monotonic() - t0 < 2.0
    assert server.unknown_paths["GET /api/v3/aggTrades"] >= 1


def test_replay_past_the_catalogs_end_answers_an_exchange_error(
    replay_catalog: Catalog, bars: pl.DataFrame
) -> None:
    last = bars["ts"][-1]
    cfg = ReplayConfig(
        exchange="binance", symbol="BTC/USDT", timeframe="1m", start=last, speed=600.0
    )
    with ReplayServer(cfg, replay_catalog) as srv:
        ex = ccxt.binance(ccxt_config(srv.url))
        ex.load_markets()
        time.sleep(0.3)  # 3 replayed minutes: past the last bar
        assert srv.finished()
        with pytest.raises(ccxt.BadRequest, match="run past the catalog's end"):
            ex.fetch_ohlcv("BTC/USDT", "1m", since=srv.clock.now_ms() - 60_000)
        assert ex.fetch_ticker("BTC/USDT")["last"] == bars["close"][-1]
        status = json.loads(urllib.request.urlopen(f"{srv.url}/tierline/status").read())
        assert status["finished"] is True and status["catalog_last"] == "2024-04-07T00:06:00Z"


def test_depth_is_the_real_book_where_the_catalog_has_l2(replay_catalog: Catalog) -> None:
    # 5m bars from 23:55; the L2 session covers 2024-08-08 23:54:13 -> 2024-08-09 00:05:04.
    cfg = ReplayConfig(
        exchange="binance",
        symbol="BTC/USDT",
        timeframe="5m",
        start="2024-08-08T23:55",
        speed=1e-6,  # the cursor stays where it started (within the 23:55 candle)
    )
    with ReplayServer(cfg, replay_catalog) as srv:
        ex = ccxt.binance(ccxt_config(srv.url))
        ex.load_markets()
        book = ex.fetch_order_book("BTC/USDT", 1000)
        cursor = srv.clock.cursor_ms()
        assert srv.status()["book"] == "real"
    # oracle: the catalog's rows up to the cursor, applied one by one
    rows = replay_catalog.read(
        "book",
        exchange="binance",
        symbol="BTC/USDT",
        end=datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=cursor + 1),
    )
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    prev_snap = False
    for snap, side, price, qty in rows.select("is_snapshot", "side", "price", "qty").iter_rows():
        if snap and not prev_snap:
            bids.clear()
            asks.clear()
        prev_snap = snap
        levels = bids if side == "bid" else asks
        if qty > 0:
            levels[price] = qty
        else:
            levels.pop(price, None)
    assert book["bids"] == [list(x) for x in sorted(bids.items(), reverse=True)[:1000]]
    assert book["asks"] == [list(x) for x in sorted(asks.items())[:1000]]
    assert book["bids"][0][0] < book["asks"][0][0]  # a real spread


def test_metrics_endpoint_counts_requests(server: ReplayServer, exchange: Any) -> None:
    exchange.fetch_time()
    text = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert int(lines['tierline_replay_requests_total{path="/api/v3/time"}']) >= 1
    assert float(lines["tierline_replay_shift_seconds"]) == server.clock.shift_ms / 1000
    cursor = float(lines["tierline_replay_cursor_seconds"])
    assert abs(cursor - server.clock.cursor_ms() / 1000) < 2
