"""Importing every OHLCV format from ../shared/data: counts and spans as its README states."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from tierline.cli import main
from tierline.data.catalog import Catalog
from tierline.data.importers import ImportOptions, detect_format, load


def _utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


CASES = [
    # (relative path, symbol, extra args, timeframe, rows, first, last)
    (
        "ohlcv/binance_spot_2024_genetrader/BTC_USDT-5m.feather",
        "BTC/USDT",
        [],
        "5m",
        71_769,
        _utc(2024, 1, 1),
        _utc(2024, 9, 6, 4, 40),
    ),
    (
        "ohlcv/binance_spot_2024_genetrader/SOL_USDT-1h.feather",
        "SOL/USDT",
        [],
        "1h",
        6_002,
        _utc(2024, 1, 1),
        _utc(2024, 9, 7, 1),
    ),
    (
        "ohlcv/binance_spot_tradingstrategyga/BTC_USDT-1m.feather",
        "BTC/USDT",
        [],
        "1m",
        7_207,
        _utc(2024, 4, 2),
        _utc(2024, 4, 7, 0, 6),
    ),
    (
        "ohlcv/xrp_usdt_perp_2021_freqtrade/XRP_USDT_USDT-5m-futures.feather",
        "XRP/USDT:USDT",
        [],
        "5m",
        1_999,
        _utc(2021, 11, 15),
        _utc(2021, 11, 21, 22, 30),
    ),
    (
        "ohlcv/btc_perp_2022_nautilus/btc-perp-20211231-20220201_1m.csv",
        "BTC/USD:USD",
        ["--ts-is-close", "--timeframe", "1m"],
        "1m",
        45_031,
        # the file's first timestamp 23:01 marks the close of the 23:00 bar
        _utc(2021, 12, 31, 23, 0),
        _utc(2022, 2, 1, 5, 30),
    ),
    (
        "ohlcv/coinbase_lean/daily/btcusd_trade.zip",
        "BTC/USD",
        [],
        "1d",
        1_318,
        _utc(2014, 12, 1),
        _utc(2018, 8, 13),
    ),
    (
        "ohlcv/binance_lean/hour/btcusdt_trade.zip",
        "BTC/USDT",
        [],
        "1h",
        120,
        _utc(2018, 5, 1),
        _utc(2018, 5, 5, 23),
    ),
]


@pytest.mark.parametrize(("rel", "symbol", "extra", "tf", "rows", "first", "last"), CASES)
def test_import_real_ohlcv_matches_readme_counts_and_span(
    shared_data: Path,
    tmp_path: Path,
    rel: str,
    symbol: str,
    extra: list[str],
    tf: str,
    rows: int,
    first: datetime,
    last: datetime,
) -> None:
    root = tmp_path / "parquet"
    args = [
        "--data-dir",
        str(root),
        "data",
        "import",
        str(shared_data / rel),
        "--exchange",
        "x",
        "--symbol",
        symbol,
        *extra,
    ]
    assert main(args) == 0
    bars = Catalog(root).read_ohlcv("x", symbol, tf)
    assert len(bars) == rows
    assert bars["ts"][0] == first
    assert bars["ts"][-1] == last
    # idempotent: importing again adds nothing and changes nothing
    assert main(args) == 0
    assert Catalog(root).read_ohlcv("x", symbol, tf).equals(bars)


def test_freqtrade_feather_values_survive_the_catalog(shared_data: Path, catalog: Catalog) -> None:
    path = shared_data / "ohlcv/binance_spot_2024_genetrader/ETH_USDT-5m.feather"
    fmt, got = load(path, None, ImportOptions(symbol="ETH/USDT"))
    assert fmt == "freqtrade-feather" and got.timeframe == "5m"
    assert got.ohlcv is not None
    catalog.write_ohlcv(
        got.ohlcv, exchange="binance", symbol="ETH/USDT", timeframe="5m", source="t"
    )
    stored = catalog.read_ohlcv("binance", "ETH/USDT", "5m")
    raw = pl.read_ipc(path).rename({"date": "ts"})
    assert stored.equals(raw.with_columns(pl.col("ts").dt.cast_time_unit("ns")))


def test_lean_minute_file_takes_its_date_from_the_name(shared_data: Path) -> None:
    path = shared_data / "ohlcv/coinbase_lean/minute/ethusd/20180405_trade.zip"
    fmt, got = load(path, None, ImportOptions())
    assert fmt == "lean" and got.timeframe == "1m" and got.ohlcv is not None
    assert got.ohlcv["ts"][0] >= _utc(2018, 4, 5)
    assert got.ohlcv["ts"][-1] < _utc(2018, 4, 6)


def test_bittrex_alt_btc_small_prices_keep_precision(shared_data: Path, catalog: Catalog) -> None:
    path = shared_data / "ohlcv/bittrex_2018_freqtrade/TRX_BTC-5m.feather"
    _, got = load(path, None, ImportOptions(symbol="TRX/BTC"))
    assert got.ohlcv is not None
    catalog.write_ohlcv(got.ohlcv, exchange="bittrex", symbol="TRX/BTC", timeframe="5m", source="t")
    bars = catalog.read_ohlcv("bittrex", "TRX/BTC", "5m")
    raw = pl.read_ipc(path)
    assert bars["close"].to_list() == raw["close"].to_list()
    assert bars["close"].max() < 2e-4  # satoshi-scale prices round-trip exactly
    entry = next(e for e in catalog.entries() if e.symbol == "TRX/BTC")
    assert entry.gaps is not None and entry.gaps > 0  # README: "a few missing bars"


def test_json_and_feather_ohlcv_give_identical_frames(tmp_path: Path, shared_data: Path) -> None:
    import json

    feather = shared_data / "ohlcv/xrp_eth_2019_freqtrade/XRP_ETH-5m.feather"
    raw = pl.read_ipc(feather)
    rows = [[int(r[0].timestamp() * 1000), *r[1:]] for r in raw.iter_rows()]
    jpath = tmp_path / "XRP_ETH-5m.json"
    jpath.write_text(json.dumps(rows))
    assert detect_format(jpath) == "freqtrade-json"
    _, a = load(feather, None, ImportOptions())
    _, b = load(jpath, None, ImportOptions())
    assert a.ohlcv is not None and b.ohlcv is not None
    assert a.ohlcv.equals(b.ohlcv)
    assert len(a.ohlcv) == 706


def test_symbol_that_contradicts_the_file_name_is_refused(
    shared_data: Path, tmp_path: Path
) -> None:
    path = shared_data / "ohlcv/bittrex_2018_freqtrade/ETH_BTC-5m.feather"
    rc = main(
        [
            "--data-dir",
            str(tmp_path),
            "data",
            "import",
            str(path),
            "--exchange",
            "bittrex",
            "--symbol",
            "BTC/USDT",
        ]
    )
    assert rc != 0
    assert not any(tmp_path.rglob("*.parquet"))


def test_funding_rate_file_is_not_imported_as_bars(
    shared_data: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    path = shared_data / "ohlcv/xrp_usdt_perp_2021_freqtrade/XRP_USDT_USDT-8h-funding_rate.feather"
    rc = main(
        [
            "--data-dir",
            str(tmp_path),
            "data",
            "import",
            str(path),
            "--exchange",
            "binance",
            "--symbol",
            "XRP/USDT:USDT",
        ]
    )
    assert rc == 3
    assert "funding_rate" in capsys.readouterr().err


def test_freqtrade_parquet_ohlcv_is_detected_and_equals_the_feather(
    shared_data: Path, tmp_path: Path
) -> None:
    # ../shared has no freqtrade .parquet file: write the real feather bars the way
    # freqtrade's parquet data handler stores them (same columns, tz-aware `date`)
    feather = shared_data / "ohlcv/binance_spot_2024_genetrader/ETH_USDT-1h.feather"
    parquet = tmp_path / "ETH_USDT-1h.parquet"
    pl.read_ipc(feather).write_parquet(parquet)
    assert detect_format(parquet) == "freqtrade-parquet"
    _, a = load(feather, None, ImportOptions(symbol="ETH/USDT"))
    _, b = load(parquet, None, ImportOptions(symbol="ETH/USDT"))
    assert b.timeframe == "1h" and a.ohlcv is not None and b.ohlcv is not None
    assert b.ohlcv.equals(a.ohlcv) and len(b.ohlcv) == 5_980
