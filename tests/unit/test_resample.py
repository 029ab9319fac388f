"""Resampling: bar-open stamps, incomplete edge buckets dropped, bars from trades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from tierline.cli import main
from tierline.data.catalog import Catalog
from tierline.data.resample import bars_from_trades, resample_ohlcv
from tierline.errors import ConfigError


def _1m(start: datetime, n: int) -> pl.DataFrame:
    ts = [start + timedelta(minutes=i) for i in range(n)]
    o = [100.0 + i for i in range(n)]
    return pl.DataFrame(
        {
            "ts": ts,
            "open": o,
            "high": [x + 2 for x in o],
            "low": [x - 1 for x in o],
            "close": [x + 1 for x in o],
            "volume": [1.0 + i for i in range(n)],
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("ns"))


def test_resample_1m_to_5m_drops_partial_first_and_last_buckets() -> None:
    bars = _1m(datetime(2024, 1, 1, 0, 2, tzinfo=UTC), 15)  # 00:02 .. 00:16
    out = resample_ohlcv(bars, "1m", "5m")
    assert out["ts"].to_list() == [
        datetime(2024, 1, 1, 0, 5, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 10, tzinfo=UTC),
    ]
    first = out.row(0, named=True)  # 00:05..00:09 = rows 3..7
    assert first["open"] == 103.0 and first["close"] == 108.0
    assert first["high"] == 109.0 and first["low"] == 102.0
    assert first["volume"] == sum(1.0 + i for i in range(3, 8))


def test_resample_rejects_a_target_that_is_not_a_multiple() -> None:
    with pytest.raises(ConfigError, match="whole multiple"):
        resample_ohlcv(_1m(datetime(2024, 1, 1, tzinfo=UTC), 10), "5m", "7m")


def test_tsga_1m_resampled_equals_binance_5m(shared_data: Path) -> None:
    one = pl.read_ipc(shared_data / "ohlcv/binance_spot_tradingstrategyga/BTC_USDT-1m.feather")
    five = pl.read_ipc(shared_data / "ohlcv/binance_spot_2024_genetrader/BTC_USDT-5m.feather")
    one = one.rename({"date": "ts"}).with_columns(pl.col("ts").dt.cast_time_unit("ns"))
    five = five.rename({"date": "ts"}).with_columns(pl.col("ts").dt.cast_time_unit("ns"))
    out = resample_ohlcv(one, "1m", "5m")
    assert len(out) == 1441  # 2024-04-02 00:00 .. 2024-04-07 00:00; the 00:05 bucket is partial
    ref = five.filter(pl.col("ts").is_in(out["ts"].implode()))
    assert len(ref) == len(out)
    for col in ("open", "high", "low", "close"):
        assert out[col].to_list() == ref[col].to_list()
    assert (out["volume"] - ref["volume"]).abs().max() < 1e-8


def test_bars_from_binance_spot_trades_equal_binance_5m_candles(shared_data: Path) -> None:
    from tierline.data.importers import ImportOptions
    from tierline.data.importers.binance_raw import load

    raw = shared_data / "l2/hftbacktest_raw/spot"
    files = [raw / "btcusdt_20240808.gz", raw / "btcusdt_20240809.gz"]
    got = load(files, ImportOptions(symbol="BTC/USDT"))
    assert got.trades is not None
    bars = bars_from_trades(got.trades, "5m")
    assert bars["ts"].to_list() == [
        datetime(2024, 8, 8, 23, 55, tzinfo=UTC),
        datetime(2024, 8, 9, 0, 0, tzinfo=UTC),
    ]
    five = pl.read_ipc(shared_data / "ohlcv/binance_spot_2024_genetrader/BTC_USDT-5m.feather")
    ref = (
        five.rename({"date": "ts"})
        .with_columns(pl.col("ts").dt.cast_time_unit("ns"))
        .filter(pl.col("ts").is_in(bars["ts"].implode()))
    )
    for col in ("open", "high", "low", "close"):
        assert bars[col].to_list() == ref[col].to_list()
    assert (bars["volume"] - ref["volume"]).abs().max() < 1e-6


def test_cli_resample_picks_the_finest_stored_timeframe(tmp_path: Path) -> None:
    root = tmp_path / "parquet"
    cat = Catalog(root)
    cat.write_ohlcv(
        _1m(datetime(2024, 1, 1, tzinfo=UTC), 120),
        exchange="x",
        symbol="BTC/USDT",
        timeframe="1m",
        source="t",
    )
    assert (
        main(
            [
                "--data-dir",
                str(root),
                "data",
                "resample",
                "--exchange",
                "x",
                "--symbol",
                "BTC/USDT",
                "--to",
                "1h",
            ]
        )
        == 0
    )
    h = cat.read_ohlcv("x", "BTC/USDT", "1h")
    assert len(h) == 2 and h["open"][0] == 100.0 and h["close"][1] == 220.0
