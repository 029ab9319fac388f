"""The embedded synthetic sample: determinism, bar/trade/book consistency, catalog, CLI."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from tierline.data.sample import (
    BOOK_DEPTH,
    SAMPLE_EXCHANGE,
    SAMPLE_START,
    SAMPLE_SYMBOLS,
    WINDOW_MINUTES,
    SampleFrames,
    aggregate_ohlcv,
    generate_ohlcv_1m,
    generate_symbol,
    generate_trades_and_book,
    write_sample,
)
from tierline.errors import ConfigError

BTC, ETH = SAMPLE_SYMBOLS
MS = 1_000_000


@pytest.fixture(scope="module")
def short() -> dict[str, SampleFrames]:
    """A 3-day sample of both symbols (seed 7)."""
    return {s.symbol: generate_symbol(s, seed=7, days=3) for s in SAMPLE_SYMBOLS}


@pytest.fixture(scope="module")
def month() -> dict[tuple[str, int], pl.DataFrame]:
    """30 days of 1m bars for both symbols and two seeds."""
    return {
        (s.symbol, seed): generate_ohlcv_1m(s, seed=seed, days=30)
        for s in SAMPLE_SYMBOLS
        for seed in (7, 11)
    }


def _ipc(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_ipc(buf)
    return buf.getvalue()


def _lots(s: pl.Series | np.ndarray, lots_per_unit: int) -> np.ndarray:
    return np.rint(np.asarray(s) * lots_per_unit).astype(np.int64)


# ---------------------------------------------------------------------- determinism
def test_generate_symbol_same_seed_gives_byte_identical_frames() -> None:
    a = generate_symbol(BTC, seed=7, days=2)
    b = generate_symbol(BTC, seed=7, days=2)
    for name in ("ohlcv_1m", "ohlcv_5m", "trades", "book"):
        assert _ipc(getattr(a, name)) == _ipc(getattr(b, name)), name


def test_generate_ohlcv_other_seed_gives_different_prices() -> None:
    a = generate_ohlcv_1m(BTC, seed=7, days=2)["close"].to_numpy()
    b = generate_ohlcv_1m(BTC, seed=8, days=2)["close"].to_numpy()
    assert np.mean(a != b) > 0.99
    assert not np.array_equal(np.diff(np.log(a)), np.diff(np.log(b)))


def test_generate_ohlcv_symbols_use_different_streams() -> None:
    btc = np.diff(np.log(generate_ohlcv_1m(BTC, seed=7, days=2)["close"].to_numpy()))
    eth = np.diff(np.log(generate_ohlcv_1m(ETH, seed=7, days=2)["close"].to_numpy()))
    assert abs(np.corrcoef(btc, eth)[0, 1]) < 0.1


def test_generate_ohlcv_is_prefix_stable_across_lengths() -> None:
    three = generate_ohlcv_1m(ETH, seed=7, days=3)
    five = generate_ohlcv_1m(ETH, seed=7, days=5)
    assert five.head(len(three)).equals(three)


@pytest.mark.parametrize(("seed", "days"), [(-1, 3), (7, 0), (7, 10_000)])
def test_generate_ohlcv_rejects_bad_seed_or_days(seed: int, days: int) -> None:
    with pytest.raises(ConfigError):
        generate_ohlcv_1m(BTC, seed=seed, days=days)


# ---------------------------------------------------------------------- bars
@pytest.mark.parametrize("spec", SAMPLE_SYMBOLS, ids=lambda s: s.symbol)
def test_ohlcv_1m_fixed_start_tick_grid_lots_and_continuity(
    spec, short: dict[str, SampleFrames]
) -> None:
    bars = short[spec.symbol].ohlcv_1m
    assert len(bars) == 3 * 1440
    assert bars["ts"][0] == SAMPLE_START
    assert (bars["ts"].diff().drop_nulls().dt.total_seconds() == 60).all()
    for col in ("open", "high", "low", "close"):
        # On the tick grid: exactly the decimal price k / 100 (not k * 0.01).
        ticks = np.rint(bars[col].to_numpy() * spec.ticks_per_unit)
        assert np.array_equal(bars[col].to_numpy(), ticks / spec.ticks_per_unit)
    vol = bars["volume"].to_numpy()
    assert (vol > 0).all()
    assert np.array_equal(vol, _lots(vol, spec.lots_per_unit) / spec.lots_per_unit)
    assert bars["open"][0] == spec.start_price
    assert np.array_equal(bars["open"].to_numpy()[1:], bars["close"].to_numpy()[:-1])
    assert (bars["high"] >= bars["low"]).all()
    assert (
        0.5 * spec.start_price < bars["close"].min() < bars["close"].max() < 1.5 * spec.start_price
    )


@pytest.mark.parametrize("spec", SAMPLE_SYMBOLS, ids=lambda s: s.symbol)
def test_ohlcv_5m_equals_aggregation_of_1m(spec, short: dict[str, SampleFrames]) -> None:
    one = short[spec.symbol].ohlcv_1m
    five = short[spec.symbol].ohlcv_5m
    assert len(five) == len(one) // 5
    o, h, lo, c, v = (one[x].to_numpy().reshape(-1, 5) for x in OHLCV_COLS)
    assert five["ts"].to_list() == one["ts"].to_list()[::5]
    assert np.array_equal(five["open"].to_numpy(), o[:, 0])
    assert np.array_equal(five["high"].to_numpy(), h.max(axis=1))
    assert np.array_equal(five["low"].to_numpy(), lo.min(axis=1))
    assert np.array_equal(five["close"].to_numpy(), c[:, -1])
    lpu = spec.lots_per_unit
    assert np.array_equal(_lots(five["volume"], lpu), _lots(v, lpu).sum(axis=1))
    np.testing.assert_allclose(five["volume"].to_numpy(), v.sum(axis=1), rtol=1e-12)


OHLCV_COLS = ("open", "high", "low", "close", "volume")


def test_aggregate_ohlcv_drops_incomplete_last_bucket() -> None:
    bars = generate_ohlcv_1m(BTC, seed=7, days=1).head(13)
    out = aggregate_ohlcv(bars, 5)
    assert len(out) == 2
    assert out["close"][1] == bars["close"][9]
    assert out["volume"][0] == pytest.approx(bars["volume"].head(5).sum(), rel=1e-12)


# ---------------------------------------------------------------------- trades
@pytest.mark.parametrize("spec", SAMPLE_SYMBOLS, ids=lambda s: s.symbol)
def test_trades_rebuild_the_1m_bars_of_the_window(spec, short: dict[str, SampleFrames]) -> None:
    f = short[spec.symbol]
    window = f.ohlcv_1m.tail(WINDOW_MINUTES)
    assert window["ts"][0] == f.window_start
    assert f.trades["ts"].min() >= f.window_start
    assert f.trades["ts"].max() < f.window_end
    assert f.trades["ts"].is_sorted()
    assert f.trades["trade_id"].n_unique() == len(f.trades)
    rebuilt = (
        f.trades.group_by(pl.col("ts").dt.truncate("1m"), maintain_order=True)
        .agg(
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            pl.col("qty").sum().alias("volume"),
            (pl.col("qty") * spec.lots_per_unit).round().cast(pl.Int64).sum().alias("lots"),
        )
        .sort("ts")
    )
    assert rebuilt["ts"].to_list() == window["ts"].to_list()
    for col in ("open", "high", "low", "close"):
        assert np.array_equal(rebuilt[col].to_numpy(), window[col].to_numpy()), col
    assert np.array_equal(rebuilt["lots"].to_numpy(), _lots(window["volume"], spec.lots_per_unit))
    np.testing.assert_allclose(rebuilt["volume"].to_numpy(), window["volume"].to_numpy(), 1e-12)
    assert (f.trades["qty"] > 0).all()
    assert set(f.trades["side"].unique()) == {"buy", "sell"}
    assert 20 * WINDOW_MINUTES < len(f.trades) < 400 * WINDOW_MINUTES


# ---------------------------------------------------------------------- book
@dataclass
class Replay:
    """Apply book rows in order; check the book after each row and each message."""

    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)
    snapshot_ts: int | None = None
    crossed_rows: int = 0
    messages: int = 0
    deletions: int = 0

    def apply(self, ts: int, side: str, price: float, qty: float, snap: bool) -> None:
        if snap and ts != self.snapshot_ts:
            self.bids.clear()
            self.asks.clear()
            self.snapshot_ts = ts
        levels = self.bids if side == "bid" else self.asks
        if qty == 0:
            assert price in levels, f"delete of a missing {side} level {price} at {ts}"
            del levels[price]
            self.deletions += 1
        else:
            levels[price] = qty
        if self.bids and self.asks and max(self.bids) >= min(self.asks):
            self.crossed_rows += 1

    @property
    def best_bid(self) -> float:
        return max(self.bids)

    @property
    def best_ask(self) -> float:
        return min(self.asks)


def _replay_to_trades(book: pl.DataFrame, trades: pl.DataFrame) -> tuple[Replay, dict]:
    """Replay the book to each trade's time (ts_exch <= trade ts); check the trade's touch."""
    rows = book.select(
        pl.col("ts_exch").dt.epoch("ns"), "side", "price", "qty", "is_snapshot"
    ).rows()
    r = Replay()
    stats = {"at_touch": 0, "within_touch_size": 0, "spreads": [], "bids": []}
    i = 0

    def advance(until: int) -> None:
        nonlocal i
        while i < len(rows) and rows[i][0] <= until:
            r.apply(*rows[i])
            end_of_message = i + 1 == len(rows) or rows[i + 1][0] != rows[i][0]
            if end_of_message:
                r.messages += 1
                assert len(r.bids) == BOOK_DEPTH and len(r.asks) == BOOK_DEPTH
                assert r.best_bid < r.best_ask
                stats["spreads"].append(r.best_ask - r.best_bid)
                stats["bids"].append(r.best_bid)
            i += 1

    for ts, price, qty, side in trades.select(
        pl.col("ts").dt.epoch("ns"), "price", "qty", "side"
    ).rows():
        advance(ts)
        touch = r.best_ask if side == "buy" else r.best_bid
        levels = r.asks if side == "buy" else r.bids
        stats["at_touch"] += price == touch
        stats["within_touch_size"] += qty <= levels[touch] + 1e-12
    advance(2**63 - 1)
    return r, stats


@pytest.mark.parametrize("spec", SAMPLE_SYMBOLS, ids=lambda s: s.symbol)
def test_every_trade_prints_at_the_touch_of_the_replayed_book(
    spec, short: dict[str, SampleFrames]
) -> None:
    f = short[spec.symbol]
    replay, stats = _replay_to_trades(f.book, f.trades)
    n = len(f.trades)
    assert stats["at_touch"] == n
    assert stats["within_touch_size"] == n
    assert replay.crossed_rows == 0
    # One snapshot message, then one diff message per trade burst.
    assert replay.messages == f.book["ts_exch"].n_unique()
    assert replay.messages > WINDOW_MINUTES * 10


@pytest.mark.parametrize("spec", SAMPLE_SYMBOLS, ids=lambda s: s.symbol)
def test_book_snapshot_then_diffs_moving_with_the_price(
    spec, short: dict[str, SampleFrames]
) -> None:
    f = short[spec.symbol]
    book = f.book
    snap = book.filter(pl.col("is_snapshot"))
    assert len(snap) == 2 * BOOK_DEPTH
    assert snap["ts_exch"].n_unique() == 1
    assert snap["ts_exch"][0] == f.window_start
    assert book["is_snapshot"].head(2 * BOOK_DEPTH).all()
    assert not book["is_snapshot"].tail(len(book) - 2 * BOOK_DEPTH).any()
    price = book["price"].to_numpy()
    assert np.array_equal(price, np.rint(price * spec.ticks_per_unit) / spec.ticks_per_unit)
    replay, stats = _replay_to_trades(book, f.trades)
    window = f.ohlcv_1m.tail(WINDOW_MINUTES)
    bids = np.asarray(stats["bids"])
    # The touch travels over the window's whole range: levels are deleted and inserted.
    assert bids.min() <= window["low"].min()
    assert bids.max() >= window["high"].max() - 10 * spec.tick
    assert replay.deletions > 1000
    diffs = book.filter(~pl.col("is_snapshot") & (pl.col("qty") > 0))
    assert diffs["qty"].n_unique() > 1000
    spreads = np.rint(np.asarray(stats["spreads"]) * spec.ticks_per_unit)
    assert spreads.min() == 1
    assert 0.6 < np.mean(spreads == 1) < 0.9
    assert spreads.max() <= 6


@pytest.mark.parametrize("spec", SAMPLE_SYMBOLS, ids=lambda s: s.symbol)
def test_book_local_time_is_exchange_time_plus_latency(
    spec, short: dict[str, SampleFrames]
) -> None:
    book = short[spec.symbol].book
    lat = (book["ts_local"] - book["ts_exch"]).dt.total_nanoseconds().to_numpy()
    assert lat.min() >= 5 * MS
    assert lat.max() <= 30 * MS
    assert np.unique(lat).size > 100
    assert book["ts_local"].is_sorted()
    assert book["ts_exch"].is_sorted()


def test_trades_and_book_differ_by_window_start() -> None:
    bars = generate_ohlcv_1m(BTC, seed=7, days=2)
    a, _ = generate_trades_and_book(BTC, bars, seed=7)
    b, _ = generate_trades_and_book(BTC, bars.head(1440), seed=7)
    assert a["ts"].min() > b["ts"].max()
    assert a["trade_id"][0] != b["trade_id"][0]


# ---------------------------------------------------------------------- catalog + CLI
def test_write_sample_validates_marks_synthetic_and_is_idempotent(catalog) -> None:
    first = write_sample(catalog, seed=7, days=3)
    assert "new row(s) written" in first
    assert catalog.validate_all() == []
    entries = catalog.entries()
    assert len(entries) == 2 * 4  # per symbol: ohlcv 1m, ohlcv 5m, trades, book
    assert all(e.synthetic and e.exchange == SAMPLE_EXCHANGE for e in entries)
    rows = {(e.dataset, e.symbol, e.timeframe): e.rows for e in entries}
    assert rows[("ohlcv", "BTC/USDT", "1m")] == 3 * 1440
    assert rows[("ohlcv", "ETH/USDT", "5m")] == 3 * 288
    for e in entries:
        for f in e.path.rglob("*.parquet"):
            md = pq.ParquetFile(f).schema_arrow.metadata
            assert md[b"tierline.source"] == b"tierline-sample:seed=7"
            assert md[b"tierline.synthetic"] == b"true"

    gen = generate_symbol(ETH, seed=7, days=3)
    assert catalog.read_ohlcv(SAMPLE_EXCHANGE, "ETH/USDT", "1m").equals(gen.ohlcv_1m)
    assert catalog.read("trades", exchange=SAMPLE_EXCHANGE, symbol="ETH/USDT").equals(gen.trades)
    assert catalog.read("book", exchange=SAMPLE_EXCHANGE, symbol="ETH/USDT").equals(gen.book)

    mtimes = {f: f.stat().st_mtime_ns for f in catalog.root.rglob("*.parquet")}
    second = write_sample(catalog, seed=7, days=3)
    assert "nothing new" in second
    assert "(0 new)" in second
    assert {e.rows for e in catalog.entries()} == {e.rows for e in entries}
    assert {f: f.stat().st_mtime_ns for f in catalog.root.rglob("*.parquet")} == mtimes


def test_write_sample_longer_run_extends_without_contradiction(catalog) -> None:
    write_sample(catalog, seed=7, days=1)
    write_sample(catalog, seed=7, days=2)
    assert catalog.validate_all() == []
    bars = catalog.read_ohlcv(SAMPLE_EXCHANGE, "BTC/USDT", "1m")
    assert bars.equals(generate_ohlcv_1m(BTC, seed=7, days=2))
    trades = catalog.read("trades", exchange=SAMPLE_EXCHANGE, symbol="BTC/USDT")
    # Two trade windows, each consistent with the (shared) bars.
    assert trades["ts"].dt.date().n_unique() == 2


def test_write_sample_refuses_to_mix_seeds(catalog) -> None:
    write_sample(catalog, seed=7, days=1)
    with pytest.raises(ConfigError, match="seed=7"):
        write_sample(catalog, seed=8, days=1)


def test_cli_data_sample_writes_labelled_synthetic_and_second_run_adds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tierline.cli import main

    monkeypatch.setenv("TIERLINE_DATA_DIR", str(tmp_path / "unused"))  # restored afterwards
    root = tmp_path / "parquet"
    assert main(["--data-dir", str(root), "data", "sample", "--days", "3"]) == 0
    out = capsys.readouterr().out
    assert "BTC/USDT" in out and "ETH/USDT" in out
    assert str(root) in out

    assert main(["--data-dir", str(root), "data", "ls"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    body = lines[1:]
    assert len(body) == 8
    # Exchange column "synthetic" plus the synthetic label at the end of every row.
    assert all(line.split()[1] == SAMPLE_EXCHANGE for line in body)
    assert all(line.endswith("synthetic") and line.split().count("synthetic") == 2 for line in body)
    assert any(" 4,320 " in line for line in body)  # 3 days of 1m bars

    assert main(["--data-dir", str(root), "data", "sample", "--days", "3"]) == 0
    again = capsys.readouterr().out
    assert "nothing new" in again
    assert main(["--data-dir", str(root), "data", "validate"]) == 0


# ---------------------------------------------------------------------- market-likeness
def _sma(x: np.ndarray, n: int) -> np.ndarray:
    return np.convolve(x, np.ones(n) / n, "valid")


def _rsi(close: np.ndarray, n: int = 14) -> np.ndarray:
    d = np.diff(close)
    up = pl.Series(np.maximum(d, 0.0)).ewm_mean(alpha=1 / n, adjust=False).to_numpy()
    dn = pl.Series(np.maximum(-d, 0.0)).ewm_mean(alpha=1 / n, adjust=False).to_numpy()
    return 100.0 * up / (up + dn)


@pytest.mark.parametrize("seed", [7, 11])
@pytest.mark.parametrize("spec", SAMPLE_SYMBOLS, ids=lambda s: s.symbol)
def test_thirty_days_look_like_a_crypto_market(
    spec, seed: int, month: dict[tuple[str, int], pl.DataFrame]
) -> None:
    one = month[(spec.symbol, seed)]
    five = aggregate_ohlcv(one, 5, lots_per_unit=spec.lots_per_unit)
    c = five["close"].to_numpy()
    r = np.diff(np.log(c))

    # SMA(10)/SMA(50) on 5m: a healthy number of crosses (~1 per 40 bars; measured 190-250).
    gap = _sma(c, 10)[40:] - _sma(c, 50)
    crosses = int(np.sum(np.diff(np.sign(gap)) != 0))
    assert 150 <= crosses <= 320

    # RSI(14) dips below 30 and 20-bar Donchian breakouts happen often (measured 110-170, 320-400).
    rsi = _rsi(c)
    assert 60 <= int(np.sum((rsi[1:] < 30) & (rsi[:-1] >= 30))) <= 300
    prior_high = pl.Series(five["high"]).rolling_max(20).shift(1).to_numpy()
    breakouts = int(np.sum((c[1:] > prior_high[1:]) & (c[:-1] <= prior_high[:-1])))
    assert 200 <= breakouts <= 600

    # Daily volatility in a crypto range: from 5m returns (measured 2.2-3.3 %) and close-to-close.
    assert 0.015 <= r.std() * np.sqrt(288) <= 0.045
    daily = np.diff(np.log(np.r_[spec.start_price, one["close"].to_numpy()[1439::1440]]))
    assert 0.015 <= daily.std() <= 0.08

    # Volatility clusters, fat tails, volume follows activity, intraday seasonality.
    a = np.abs(r)
    assert np.corrcoef(a[:-1], a[1:])[0, 1] > 0.1
    assert np.corrcoef(a[:-12], a[12:])[0, 1] > 0.05
    kurtosis = ((r - r.mean()) ** 4).mean() / r.var() ** 2
    assert 5 < kurtosis < 60
    v = five["volume"].to_numpy()[1:]
    assert np.corrcoef(a, v)[0, 1] > 0.2
    hour = five["ts"].dt.hour().to_numpy()[1:]
    busy, calm = a[(hour >= 14) & (hour < 17)].mean(), a[(hour >= 2) & (hour < 6)].mean()
    assert busy > 1.2 * calm
    # Bounded drift: the month stays within a plausible band around the start price.
    assert 0.7 * spec.start_price < c.min() < c.max() < 1.4 * spec.start_price
