"""`tierline data ingest` against a local Binance-like server serving real Binance bars.

The server (binance_stub.py) answers with the recorded Binance exchangeInfo and klines built
from the real BTC/USDT 5m bars in ../shared/data; every stored bar is compared with those.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from tierline.cli import main
from tierline.data.catalog import Catalog
from tierline.data.ingest import API_URL_ENV, ingest_ohlcv
from tierline.errors import DataError

_spec = importlib.util.spec_from_file_location(
    "binance_stub", Path(__file__).with_name("binance_stub.py")
)
assert _spec is not None and _spec.loader is not None
binance_stub = importlib.util.module_from_spec(_spec)
sys.modules["binance_stub"] = binance_stub
_spec.loader.exec_module(binance_stub)

FIVE_MIN_MS = 300_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def real_bars(shared_data: Path) -> pl.DataFrame:
    path = shared_data / "ohlcv" / "binance_spot_2024_genetrader" / "BTC_USDT-5m.feather"
    return pl.read_ipc(path).rename({"date": "ts"})


def expected(real_bars: pl.DataFrame, start: str, end: str) -> pl.DataFrame:
    return real_bars.filter((pl.col("ts") >= utc(start)) & (pl.col("ts") < utc(end)))


@pytest.fixture
def stub(shared_data: Path) -> Iterator[Any]:
    # "now" well after the spans the tests ask for, unless a test moves it
    with binance_stub.BinanceStub(shared_data, now_ms=ms("2024-03-10T00:02:30")) as s:
        yield s


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_URL_ENV, raising=False)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # main() sets TIERLINE_DATA_DIR from --data-dir; monkeypatch restores it afterwards
    root = tmp_path / "parquet"
    monkeypatch.setenv("TIERLINE_DATA_DIR", str(root))
    return root


def cli(data_dir: Path, *args: str) -> int:
    return main(["--data-dir", str(data_dir), "data", "ingest", "--no-progress", *args])


def btc_args(stub: Any, since: str, until: str | None = None) -> list[str]:
    args = ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "5m"]
    args += ["--since", since, "--api-url", stub.url]
    return args + (["--until", until] if until else [])


def stored(root: Path) -> pl.DataFrame:
    return Catalog(root).read_ohlcv("binance", "BTC/USDT", "5m")


def start_times(requests: list[dict[str, str]]) -> list[int]:
    return [int(r["startTime"]) for r in requests]


# ---------------------------------------------------------------------- happy path
def test_cli_ingest_week_stores_the_real_bars_exactly(
    stub: Any, data_dir: Path, real_bars: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli(data_dir, *btc_args(stub, "2024-03-01", "2024-03-08"))

    assert rc == 0
    got = stored(data_dir)
    assert len(got) == 2016
    assert got["ts"][0] == utc("2024-03-01T00:00")
    assert got["ts"][-1] == utc("2024-03-07T23:55")
    assert_frame_equal(got, expected(real_bars, "2024-03-01", "2024-03-08"))
    # paginated by startTime with Binance's page limit (1000 bars from ccxt's features)
    klines = stub.klines_requests()
    assert [r["limit"] for r in klines] == ["1000"] * 3
    assert start_times(klines) == [
        ms("2024-03-01T00:00"),
        ms("2024-03-01T00:00") + 1000 * FIVE_MIN_MS,
        ms("2024-03-01T00:00") + 2000 * FIVE_MIN_MS,
    ]
    assert {r["symbol"] for r in klines} == {"BTCUSDT"}
    assert {r["interval"] for r in klines} == {"5m"}
    # load_markets asked for the spot exchangeInfo only: no futures, margin or currency calls
    assert {r.path for r in stub.requests} == {
        "/api/v3/exchangeInfo",
        "/api/v3/time",
        "/api/v3/klines",
    }
    assert sum(r.path == "/api/v3/exchangeInfo" for r in stub.requests) == 1
    out = capsys.readouterr().out
    assert "2,016 new bar(s) 2024-03-01 00:00 -> 2024-03-07 23:55" in out
    assert "3 OHLCV request(s)" in out
    files = Catalog(data_dir).files("ohlcv", "binance", "BTC/USDT", "5m")
    assert [f.name for f in files] == ["2024.parquet"]
    md = pq.read_schema(files[0]).metadata
    assert md[b"tierline.source"] == b"ccxt:binance"


def test_second_run_adds_nothing_and_extending_until_fetches_only_the_new_part(
    stub: Any, data_dir: Path, real_bars: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(data_dir, *btc_args(stub, "2024-03-01", "2024-03-08")) == 0
    n_first = len(stub.klines_requests())
    capsys.readouterr()

    assert cli(data_dir, *btc_args(stub, "2024-03-01", "2024-03-08")) == 0
    assert "up to date, no new bars; 0 OHLCV request(s)" in capsys.readouterr().out
    assert len(stub.klines_requests()) == n_first
    assert len(stored(data_dir)) == 2016

    assert cli(data_dir, *btc_args(stub, "2024-03-01", "2024-03-09")) == 0
    new = stub.klines_requests()[n_first:]
    assert start_times(new) == [ms("2024-03-08T00:00")]
    assert "288 new bar(s) 2024-03-08 00:00 -> 2024-03-08 23:55" in capsys.readouterr().out
    assert_frame_equal(stored(data_dir), expected(real_bars, "2024-03-01", "2024-03-09"))


def test_since_before_the_stored_span_fetches_only_the_missing_head(
    stub: Any, catalog: Catalog, real_bars: pl.DataFrame
) -> None:
    common = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "5m", "api_url": stub.url}
    ingest_ohlcv(catalog, since="2024-03-02", until="2024-03-03", **common)
    n = len(stub.klines_requests())

    r = ingest_ohlcv(catalog, since="2024-03-01", until="2024-03-03", **common)

    assert r.rows_added == 288
    assert start_times(stub.klines_requests()[n:]) == [ms("2024-03-01T00:00")]
    got = catalog.read_ohlcv("binance", "BTC/USDT", "5m")
    assert_frame_equal(got, expected(real_bars, "2024-03-01", "2024-03-03"))


def test_api_url_from_the_environment_variable(
    stub: Any, data_dir: Path, real_bars: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_URL_ENV, stub.url)
    args = ["--exchange", "binance", "--symbol", "BTC_USDT", "--timeframe", "5m"]

    rc = cli(data_dir, *args, "--since", "2024-03-01", "--until", "2024-03-01T12:00")

    assert rc == 0
    assert len(stub.klines_requests()) == 1
    assert_frame_equal(stored(data_dir), expected(real_bars, "2024-03-01", "2024-03-01T12:00"))


def test_progress_bar_goes_to_stderr_with_bar_counts(
    stub: Any, catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest_ohlcv(
        catalog,
        exchange="binance",
        symbol="BTC/USDT",
        timeframe="5m",
        since="2024-03-01",
        until="2024-03-08",
        progress=True,
        api_url=stub.url,
    )
    cap = capsys.readouterr()
    assert "2016/2016" in cap.err
    assert "bar" in cap.err
    assert cap.out == ""


# ---------------------------------------------------------------------- the current bar
def test_still_forming_bar_is_not_stored_and_is_fetched_once_complete(
    stub: Any, catalog: Catalog, real_bars: pl.DataFrame
) -> None:
    stub.now_ms = ms("2024-03-08T00:02:30")  # the 00:00 bar is still forming
    common = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "5m", "api_url": stub.url}

    r = ingest_ohlcv(catalog, since="2024-03-07", **common)  # until = now

    assert r.forming_dropped == 1
    assert r.rows_received == 289  # the stub did serve the forming bar ...
    assert r.rows_added == 288  # ... and it was not stored
    assert catalog.last_ts("ohlcv", "binance", "BTC/USDT", "5m") == utc("2024-03-07T23:55")
    assert r.last_ts == utc("2024-03-07T23:55")

    stub.now_ms = ms("2024-03-08T00:12:30")  # 00:00 and 00:05 are complete now
    n = len(stub.klines_requests())
    r2 = ingest_ohlcv(catalog, since="2024-03-07", **common)

    assert start_times(stub.klines_requests()[n:]) == [ms("2024-03-08T00:00")]
    assert r2.rows_added == 2
    assert r2.forming_dropped == 1  # 00:10 is forming
    got = catalog.read_ohlcv("binance", "BTC/USDT", "5m")
    # the stored 00:00 bar has the final values, not the forming ones the first run saw
    assert_frame_equal(got, expected(real_bars, "2024-03-07", "2024-03-08T00:10"))


# ---------------------------------------------------------------------- retries
def test_http_429_is_retried_and_counted(
    stub: Any, catalog: Catalog, real_bars: pl.DataFrame
) -> None:
    stub.fail_klines = 1

    r = ingest_ohlcv(
        catalog,
        exchange="binance",
        symbol="BTC/USDT",
        timeframe="5m",
        since="2024-03-01",
        until="2024-03-08",
        api_url=stub.url,
        retry_delay=0.01,
    )

    assert r.retries == 1
    assert r.requests == 4  # 3 pages + the 429
    assert start_times(stub.klines_requests())[:2] == [ms("2024-03-01T00:00")] * 2
    assert_frame_equal(
        catalog.read_ohlcv("binance", "BTC/USDT", "5m"),
        expected(real_bars, "2024-03-01", "2024-03-08"),
    )


def test_persistent_rate_limit_gives_up_after_the_bounded_retries(
    stub: Any, catalog: Catalog
) -> None:
    stub.fail_klines = 100

    with pytest.raises(DataError, match=r"still failing after 3 attempt\(s\)") as e:
        ingest_ohlcv(
            catalog,
            exchange="binance",
            symbol="BTC/USDT",
            timeframe="5m",
            since="2024-03-01",
            until="2024-03-02",
            api_url=stub.url,
            max_retries=2,
            retry_delay=0.01,
        )
    assert "DDoSProtection" in str(e.value) or "RateLimit" in str(e.value)
    assert len(stub.klines_requests()) == 3
    assert catalog.files("ohlcv", "binance", "BTC/USDT", "5m") == []


# ---------------------------------------------------------------------- interruption
def test_interrupted_run_keeps_the_first_batch_and_the_next_run_completes(
    stub: Any, catalog: Catalog, real_bars: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = {
        "exchange": "binance",
        "symbol": "BTC/USDT",
        "timeframe": "5m",
        "since": "2024-03-01",
        "until": "2024-03-08",
        "api_url": stub.url,
        "page_limit": 100,
        "batch_pages": 3,  # a write every 300 bars
    }
    real_write = pq.write_table
    calls = 0

    def write_then_die(table: Any, where: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second batch: leave a half-written temp file, then Ctrl-C
            Path(where).write_bytes(b"PAR1 half a file")
            raise KeyboardInterrupt
        real_write(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        ingest_ohlcv(catalog, **common)
    monkeypatch.undo()

    assert_frame_equal(
        catalog.read_ohlcv("binance", "BTC/USDT", "5m"),
        expected(real_bars, "2024-03-01", "2024-03-02T01:00"),  # 300 bars
    )
    assert len(stub.klines_requests()) == 6
    assert [p.name for p in catalog.root.rglob("*") if p.is_file()] == ["2024.parquet"]

    n = len(stub.klines_requests())
    r = ingest_ohlcv(catalog, **common)

    assert start_times(stub.klines_requests()[n:])[0] == ms("2024-03-02T01:00")
    assert r.rows_added == 2016 - 300
    assert r.batches == 6  # 18 pages (the last one short) in writes of 3 pages
    assert_frame_equal(
        catalog.read_ohlcv("binance", "BTC/USDT", "5m"),
        expected(real_bars, "2024-03-01", "2024-03-08"),
    )


# ---------------------------------------------------------------------- errors
def test_unknown_exchange_is_named(
    data_dir: Path, capsys: pytest.CaptureFixture[str], stub: Any
) -> None:
    args = btc_args(stub, "2024-03-01", "2024-03-02")
    args[1] = "binanse"

    assert cli(data_dir, *args) == 2
    err = capsys.readouterr().err
    assert "unknown exchange 'binanse'" in err
    assert "did you mean binance" in err
    assert stub.requests == []


def test_symbol_the_exchange_does_not_list_is_named(
    data_dir: Path, capsys: pytest.CaptureFixture[str], stub: Any
) -> None:
    args = btc_args(stub, "2024-03-01", "2024-03-02")
    args[3] = "SOL/USDT"

    assert cli(data_dir, *args) == 2
    err = capsys.readouterr().err
    assert "symbol 'SOL/USDT' is not listed by binance (2 market(s) loaded" in err
    assert stub.klines_requests() == []


def test_timeframe_the_exchange_does_not_support_is_named(
    data_dir: Path, capsys: pytest.CaptureFixture[str], stub: Any
) -> None:
    args = btc_args(stub, "2024-03-01", "2024-03-02")
    args[5] = "7m"

    assert cli(data_dir, *args) == 2
    err = capsys.readouterr().err
    assert "timeframe '7m' is not supported by binance" in err
    assert "5m" in err
    assert stub.requests == []


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ({"symbol": "BTCUSDT", "note": "not klines"}, "no list of candles"),
        ("<html><body>502 Bad Gateway</body></html>", "not a JSON list or object"),
        ([[ms("2024-03-01T00:00"), "1", "2", "0.5", "1.5"]], "has volume None"),
        ([[ms("2024-03-01T00:00"), "1", "2", "0.5", "1.5", "NaN"]], "has volume nan"),
        ([[ms("2024-03-01T00:01"), "1", "2", "0.5", "1.5", "3"]], "not aligned"),
    ],
)
def test_response_that_is_not_ohlcv_is_a_data_error(
    data_dir: Path, capsys: pytest.CaptureFixture[str], stub: Any, body: Any, what: str
) -> None:
    stub.garbage_klines = body

    assert cli(data_dir, *btc_args(stub, "2024-03-01", "2024-03-02")) == 3
    err = capsys.readouterr().err
    assert "binance fetch_ohlcv BTC/USDT 5m since 2024-03-01 00:00" in err
    assert what in err
    assert not data_dir.exists() or not any(data_dir.rglob("*.parquet"))


def test_invalid_api_url_is_a_config_error(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "5m"]

    assert cli(data_dir, *args, "--since", "2024-03-01", "--api-url", "ftp://127.0.0.1:1") == 2
    assert "'ftp://127.0.0.1:1'" in capsys.readouterr().err


def test_unreachable_api_url_gives_up_with_a_data_error(catalog: Catalog) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="cannot load the binance markets"):
        ingest_ohlcv(
            catalog,
            exchange="binance",
            symbol="BTC/USDT",
            timeframe="5m",
            since="2024-03-01",
            api_url=f"http://127.0.0.1:{port}",
            max_retries=1,
            retry_delay=0.01,
        )
