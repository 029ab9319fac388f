"""Tier 3 on real L2: the Binance USD-M BTCUSDT stream of ../shared/data, replayed in hftbacktest.

The raw file is imported into a throwaway catalog once per module and converted with
`l2_events`; a decision schedule on 10 s bars built from its trades is replayed as orders.
Fills are checked against an independent replay of the same events: a plain Python book built
from the rows flagged for the exchange, read at the time the order reaches the exchange
(decision time + entry latency), and a plain implementation of the risk-averse queue rule.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from tierline.core.conventions import ExecutionConfig
from tierline.data.catalog import Catalog
from tierline.data.importers import ImportOptions
from tierline.data.importers.binance_raw import load as load_raw
from tierline.engines.hft.config import HftConfig, LatencyConfig, SyntheticL2Config
from tierline.engines.hft.execution import feed_order_latency, run_tier3
from tierline.errors import DataError
from tierline.strategy.contract import Int, strategy

USDM_BTC = Path("l2/hftbacktest_raw/usdm/btcusdt_20240808.gz")
EXCHANGE, SYMBOL, TF = "binanceusdm", "BTC/USDT", "10s"
EXCH, BUY, SELL = 1 << 31, 1 << 29, 1 << 28
DEPTH, TRADE, CLEAR, SNAPSHOT = 1, 2, 3, 4
MS = 1_000_000
LOT = 0.001


@strategy(
    name="hft_schedule",
    params=[Int("every", 2, 20, default=4)],
    warmup=lambda p: 1,
)
def schedule(bars: pd.DataFrame, p: Any) -> pd.DataFrame:
    """Enter on every `every`-th 10 s slot, exit half a cycle later (a fixed schedule)."""
    slot = (bars["date"].astype("int64") // 10_000_000_000) % p["every"]
    return pd.DataFrame(
        {"enter_long": slot == 0, "exit_long": slot == p["every"] // 2}, index=bars.index
    )


@pytest.fixture(scope="module")
def real(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    cat = Catalog(tmp_path_factory.mktemp("hft") / "parquet")
    got = load_raw([shared_data / USDM_BTC], ImportOptions())
    assert got.book is not None and got.trades is not None
    cat.write_book(got.book, exchange=EXCHANGE, symbol=SYMBOL, source="test")
    cat.write_trades(got.trades, exchange=EXCHANGE, symbol=SYMBOL, source="test")
    return cat


@pytest.fixture(scope="module")
def events(real: Catalog) -> Any:
    from tierline.engines.hft.events import l2_events

    return l2_events(real, EXCHANGE, SYMBOL)


def _config(**execution: Any) -> HftConfig:
    base = HftConfig()
    return dataclasses.replace(
        base,
        execution=dataclasses.replace(base.execution, **execution),
        latency=LatencyConfig(model="constant", entry_ms=10.0, response_ms=10.0),
    )


def _run(real: Catalog, events: Any, config: HftConfig, stake: float = 150.0) -> Any:
    return run_tier3(
        schedule,
        {"every": 4},
        catalog=real,
        exchange=EXCHANGE,
        symbol=SYMBOL,
        timeframe=TF,
        config=config,
        execution=ExecutionConfig(initial_cash=10_000.0, stake=stake),
        events=events,
    )


@pytest.fixture(scope="module")
def taker(real: Catalog, events: Any) -> Any:
    return _run(real, events, _config(style="taker"))


def _passive_config() -> HftConfig:
    # the no-partial-fill exchange: hftbacktest 2.4's partial-fill exchange stops with error
    # code 14 on this file when a resting sell is hit (see docs/architecture.md)
    return _config(style="passive", passive_timeout_s=8.0, partial_fills=False)


@pytest.fixture(scope="module")
def passive(real: Catalog, events: Any) -> Any:
    return _run(real, events, _passive_config())


# ---------------------------------------------------------------------- the oracle
class ExchangeBook:
    """The exchange-side book of an event array, advanced in exchange time."""

    def __init__(self, ev: np.ndarray) -> None:
        rows = _exch_rows(ev)
        self.rows = rows
        self.i = 0
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def advance(self, until: int) -> None:
        """Apply every exchange row with ``exch_ts <= until``."""
        rows = self.rows
        while self.i < len(rows) and rows[self.i][1] <= until:
            flags, _, px, qty = rows[self.i]
            kind = flags & 0xFF
            side = self.bids if flags & BUY else self.asks
            if kind == CLEAR:
                if flags & BUY:
                    self.bids.clear()
                elif flags & SELL:
                    self.asks.clear()
                else:
                    self.bids.clear()
                    self.asks.clear()
            elif kind in (DEPTH, SNAPSHOT):
                if qty > 0:
                    side[px] = qty
                else:
                    side.pop(px, None)
            self.i += 1

    def best_ask(self) -> tuple[float, float]:
        p = min(self.asks)
        return p, self.asks[p]

    def best_bid(self) -> tuple[float, float]:
        p = max(self.bids)
        return p, self.bids[p]


_ROWS: dict[int, list[tuple[int, int, float, float]]] = {}


def _exch_rows(ev: np.ndarray) -> list[tuple[int, int, float, float]]:
    """The exchange rows as Python tuples (flags, exch_ts, px rounded to the tick, qty)."""
    key = id(ev)
    if key not in _ROWS:
        rows = ev[(ev["ev"] & EXCH) != 0]
        _ROWS[key] = list(
            zip(
                rows["ev"].astype(np.int64).tolist(),
                rows["exch_ts"].tolist(),
                np.round(rows["px"], 1).tolist(),
                rows["qty"].tolist(),
                strict=True,
            )
        )
    return _ROWS[key]


def _book_at(ev: np.ndarray, t: int) -> ExchangeBook:
    book = ExchangeBook(ev)
    book.advance(t)
    return book


# ---------------------------------------------------------------------- taker
def test_taker_fills_at_the_far_touch_after_the_entry_latency(taker: Any, events: Any) -> None:
    legs, fills = taker.legs, taker.fills
    assert taker.l2 == "real"
    assert legs.height >= 10  # a decision every 20 s over ~5.5 minutes
    assert legs["side"].to_list()[:2] == [1, -1]
    assert np.all(legs["filled_qty"].to_numpy() == pytest.approx(legs["requested_qty"].to_numpy()))
    checked = 0
    for leg in legs.iter_rows(named=True):
        mine = fills.filter(pl.col("leg") == leg["leg"]).sort("exch_ts")
        decision = int(pl.Series([leg["decision_ts"]]).dt.epoch("ns")[0])
        first = mine.row(0, named=True)
        first_exch = int(pl.Series([first["exch_ts"]]).dt.epoch("ns")[0])
        first_local = int(pl.Series([first["local_ts"]]).dt.epoch("ns")[0])
        # every order reaches the exchange 10 ms after it is sent, the answer 10 ms later
        assert first_local - first_exch == 10 * MS
        assert not first["maker"]
        if first["order"] != 0:
            continue  # the first IOC met nothing at its limit; re-sent after the round trip
        assert first_exch == decision + 10 * MS
        book = _book_at(events.events, first_exch)
        touch, qty = book.best_ask() if leg["side"] > 0 else book.best_bid()
        assert first["price"] == pytest.approx(touch, abs=1e-9)
        assert first["qty"] == pytest.approx(min(qty, leg["requested_qty"]), abs=1e-9)
        checked += 1
    assert checked >= legs.height - 2


def test_taker_leg_vwap_shortfall_and_trades_follow_from_the_fills(taker: Any) -> None:
    legs, fills = taker.legs, taker.fills
    for leg in legs.iter_rows(named=True):
        mine = fills.filter(pl.col("leg") == leg["leg"])
        vwap = float((mine["qty"] * mine["price"]).sum() / mine["qty"].sum())
        assert leg["vwap"] == pytest.approx(vwap, rel=1e-12)
        expected = leg["side"] * (vwap - leg["assumed_price"]) / leg["assumed_price"] * 1e4
        assert leg["shortfall_bps"] == pytest.approx(expected, rel=1e-9)
        assert leg["fee"] == pytest.approx(float((mine["qty"] * mine["price"]).sum()) * 0.001)
    # the assumed price is the next bar's open, built from the same trades
    bars = taker.extra["bars"]
    first = legs.row(0, named=True)
    assert first["assumed_price"] == bars["open"][first["bar"] + 1]
    # round trips: buy then sell, fees of both legs, pnl = proceeds - cost - fees
    t = taker.trades.row(0, named=True)
    buy, sell = legs.row(0, named=True), legs.row(1, named=True)
    assert t["entry_price"] == pytest.approx(buy["vwap"])
    assert t["exit_price"] == pytest.approx(sell["vwap"])
    assert t["fees"] == pytest.approx(buy["fee"] + sell["fee"])
    pnl = sell["filled_qty"] * sell["vwap"] - buy["filled_qty"] * buy["vwap"] - t["fees"]
    assert t["pnl"] == pytest.approx(pnl)
    m = taker.metrics
    assert m["fill_ratio"] == pytest.approx(1.0)
    assert m["maker_share"] == 0.0
    assert m["trades"] == taker.trades.height
    assert m["net_pnl"] == pytest.approx(float(taker.trades["pnl"].sum()), abs=1e-6)
    assert m["net_pnl"] == pytest.approx(float(taker.equity["equity"][-1]) - 10_000.0)
    assert m["time_to_fill_s"] >= 0.010


def test_orders_at_the_last_close_execute_on_the_recorded_book_past_the_span(
    real: Catalog, taker: Any
) -> None:
    # bars and a span ending well before the recorded book does (as in a pipeline): the events
    # run on past the span's end, so the forced exit at the last close is a real order, not a
    # paper close, and every bar of the span is replayed
    bars = taker.extra["bars"]
    ts = bars["ts"].dt.epoch("ns").to_numpy()
    k = next(i for i in range(len(ts) - 6, 0, -1) if (ts[i] // 10**10) % 4 == 1)
    end = bars["ts"][k] + timedelta(seconds=10)
    res = run_tier3(
        schedule,
        {"every": 4},
        catalog=real,
        exchange=EXCHANGE,
        symbol=SYMBOL,
        timeframe=TF,
        config=_config(style="taker"),
        execution=ExecutionConfig(initial_cash=10_000.0, stake=150.0),
        bars=bars.head(k + 1),
        start=bars["ts"][0],
        end=end,
        l2="real",
    )
    assert res.extra["bars"]["ts"].to_list() == bars["ts"][: k + 1].to_list()
    assert res.equity.height == k + 1
    last = res.legs.row(-1, named=True)
    assert last["forced"] and last["side"] == -1 and last["bar"] == k
    assert last["filled_qty"] == pytest.approx(last["requested_qty"])
    assert last["last_fill_ts"] > end  # executed on the book recorded after the span
    assert last["assumed_price"] == bars["close"][k]
    assert res.trades["exit_price"][-1] == pytest.approx(last["vwap"])
    assert not res.notes


def test_bars_from_the_events_trades_equal_bars_from_the_catalog_trades(
    real: Catalog, events: Any, taker: Any
) -> None:
    from tierline.data.resample import bars_from_trades
    from tierline.engines.hft.events import l2_events
    from tierline.engines.hft.execution import bars_from_events

    def from_catalog(start: int, end: int, tf: str) -> pl.DataFrame:
        lo, hi = (datetime.fromtimestamp(t / 1e9, tz=UTC) for t in (start, end))
        trades = real.read("trades", exchange=EXCHANGE, symbol=SYMBOL, start=lo, end=hi)
        return bars_from_trades(trades, tf)

    lo, hi = events.start_ns, events.end_ns
    for tf in ("1s", "10s", "1m"):
        want = from_catalog(lo, hi, tf)
        got = bars_from_events(events, tf)
        assert got is not None and got.height == want.height > 0
        assert got.equals(want), tf
    # the adapter's own bars (no bars given) are those: it no longer reads the trades again
    assert taker.extra["bars"].equals(from_catalog(lo, hi, "10s"))
    assert taker.extra["bars"].height == 33
    # a span inside the book, and events read past its end (the forced exit's tail)
    start, end = lo + 60 * 10**9, lo + 180 * 10**9
    want = from_catalog(start, end, "10s")
    inside = l2_events(real, EXCHANGE, SYMBOL, start, end)
    longer = l2_events(real, EXCHANGE, SYMBOL, start, end + 10 * 10**9)
    for ev in (inside, longer):
        got = bars_from_events(ev, "10s", start, end)
        assert got is not None and got.equals(want)
    assert want.height == 11  # [first trade, last trade] of the span hold 11 whole buckets


# ---------------------------------------------------------------------- passive
def _risk_averse_fill(ev: np.ndarray, accept: int, side: int, price: float) -> tuple[int, float]:
    """Return (exchange time, quantity) of the first fill of a resting order, by hand.

    The queue ahead is the level's quantity when the order arrives; trades at the price on
    the other side reduce it; a smaller level quantity caps it; the order fills once a trade
    takes the queue below zero (or a trade prints through its price, or the book crosses it).
    """
    price = round(price, 1)  # the engine's prices are tick multiples (0.1 * 618126 ...)
    book = _book_at(ev, accept)
    levels = book.bids if side > 0 else book.asks
    front = levels.get(price, 0.0)
    for flags, ts, px, qty in book.rows[book.i :]:
        kind = flags & 0xFF
        ours = bool(flags & BUY) == (side > 0)
        if kind in (DEPTH, SNAPSHOT):
            if ours and px == price:
                front = min(front, qty)
            if not ours and qty > 0 and (px <= price if side > 0 else px >= price):
                return ts, -1.0  # the other side crossed our price: a whole fill
        elif kind == TRADE:
            taker_sells = bool(flags & SELL)
            if taker_sells != (side > 0):
                continue  # only trades against our side can reach us
            if px == price:
                front -= qty
                if round(front / LOT) < 0:
                    return ts, np.floor(-front / LOT + 1e-9) * LOT
            elif (px < price) if side > 0 else (px > price):
                return ts, -1.0
    raise AssertionError("the order never filled in the data")


def test_passive_fills_only_after_the_queue_ahead_is_traded_through(
    passive: Any, events: Any
) -> None:
    legs, fills = passive.legs, passive.fills
    makers = fills.filter(pl.col("maker") & (pl.col("order") == 0))
    assert makers.height >= 3
    assert 0 < passive.metrics["maker_share"] <= 1
    checked = 0
    for leg in legs.iter_rows(named=True):
        mine = makers.filter(pl.col("leg") == leg["leg"]).sort("exch_ts")
        if not mine.height:
            continue
        decision = int(pl.Series([leg["decision_ts"]]).dt.epoch("ns")[0])
        price = leg["bid"] if leg["side"] > 0 else leg["ask"]
        assert set(mine["price"].to_list()) == {price}  # maker fills at the order's price
        ts, _qty = _risk_averse_fill(events.events, decision + 10 * MS, leg["side"], price)
        first = mine.row(0, named=True)
        assert int(pl.Series([first["exch_ts"]]).dt.epoch("ns")[0]) == ts
        assert first["qty"] == pytest.approx(leg["requested_qty"])  # no partial fills
        assert ts > decision + 10 * MS  # never on arrival: the queue ahead had to trade first
        checked += 1
    assert checked >= 3


def test_passive_unfilled_rest_is_crossed_after_the_timeout(passive: Any) -> None:
    legs, fills = passive.legs, passive.fills
    crossed = fills.filter(pl.col("order") >= 1)
    assert crossed.height >= 1
    assert not crossed["maker"].any()
    for leg_no in crossed["leg"].unique().to_list():
        leg = legs.filter(pl.col("leg") == leg_no).row(0, named=True)
        first_cross = crossed.filter(pl.col("leg") == leg_no)["local_ts"].min()
        waited = (first_cross - leg["decision_ts"]).total_seconds()
        assert waited >= 8.0  # the passive order rested its whole timeout first
    assert passive.metrics["fill_ratio"] == pytest.approx(1.0)


def test_power_prob_queue_fills_passive_orders_no_later(
    real: Catalog, events: Any, passive: Any
) -> None:
    cfg = _passive_config().with_overrides(queue="power_prob")
    prob = _run(real, events, cfg)
    assert prob.tags()["queue_model"] == "power_prob"
    assert prob.metrics["maker_share"] >= passive.metrics["maker_share"]
    assert prob.metrics["time_to_fill_s"] <= passive.metrics["time_to_fill_s"]


# ---------------------------------------------------------------------- feed latency
def test_feed_latency_model_delays_orders_by_the_interpolated_feed_latency(
    real: Catalog, events: Any
) -> None:
    cfg = dataclasses.replace(
        _config(style="taker"),
        latency=LatencyConfig(model="feed", feed_entry_offset_ms=2.0, feed_response_offset_ms=3.0),
    )
    rows = feed_order_latency(events.events, cfg.latency)
    assert np.all(rows["exch_ts"] - rows["req_ts"] >= 2 * MS)
    assert np.all(np.diff(rows["req_ts"]) > 0)
    res = _run(real, events, cfg)
    firsts = res.fills.filter(pl.col("order") == 0).group_by("leg").agg(pl.col("exch_ts").min())
    for leg in res.legs.iter_rows(named=True):
        decision = int(pl.Series([leg["decision_ts"]]).dt.epoch("ns")[0])
        got = firsts.filter(pl.col("leg") == leg["leg"])["exch_ts"]
        if not got.len():
            continue
        lat = np.interp(decision, rows["req_ts"], rows["exch_ts"] - rows["req_ts"])
        assert int(pl.Series([got[0]]).dt.epoch("ns")[0]) - decision == pytest.approx(
            lat, abs=1_000
        )  # hftbacktest rounds in its interpolation
    assert res.tags()["latency_model"] == "feed"


# ---------------------------------------------------------------------- synthetic path
@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    from tierline.data.sample import write_sample

    cat = Catalog(tmp_path_factory.mktemp("sample") / "parquet")
    write_sample(cat, days=2)
    return cat


def test_synthetic_book_from_sample_bars_fills_a_half_spread_away(sample: Catalog) -> None:
    from tierline.engines import run_backtest
    from tierline.strategies.sma_cross import sma_cross

    cfg = dataclasses.replace(
        _config(style="taker"), synthetic=SyntheticL2Config(spread_ticks=2, levels=5)
    )
    bars = sample.read_ohlcv("synthetic", "BTC/USDT", "5m")
    res = run_tier3(
        sma_cross,
        {"fast": 5, "slow": 20},
        catalog=sample,
        exchange="synthetic",
        symbol="BTC/USDT",
        timeframe="5m",
        config=cfg,
        bars=bars,
        l2="synthetic",
    )
    assert res.l2 == "synthetic" and res.tags()["l2"] == "synthetic"
    legs = res.legs
    assert legs.height > 10
    # the book at a bar's open: bid = open - 1 tick, ask = open + 1 tick; orders arrive 10 ms
    # after the open, before the next synthetic update (1/4 bar later)
    side = legs["side"].to_numpy()
    assert legs["vwap"].to_numpy() == pytest.approx(legs["assumed_price"].to_numpy() + side * 0.01)
    expected = 0.01 / legs["assumed_price"].to_numpy() * 1e4
    assert legs["shortfall_bps"].to_numpy() == pytest.approx(expected, rel=1e-6)
    assert res.metrics["fill_ratio"] == pytest.approx(1.0)
    assert res.metrics["time_to_fill_s"] == pytest.approx(0.010)
    # same decisions as tiers 1-2: the reference engine's trades, filled 10 ms later
    ref = run_backtest("reference", sma_cross, bars, {"fast": 5, "slow": 20}, ExecutionConfig())
    assert res.trades.height == ref.trades.height
    delay = (res.trades["entry_ts"] - ref.trades["entry_ts"]).dt.total_milliseconds()
    assert delay.to_list() == [10] * ref.trades.height


def test_auto_falls_back_to_synthetic_where_no_real_l2_covers_the_span(sample: Catalog) -> None:
    from tierline.strategies.sma_cross import sma_cross

    said: list[str] = []
    args: dict[str, Any] = {
        "catalog": sample,
        "exchange": "synthetic",
        "symbol": "BTC/USDT",
        "timeframe": "5m",
        "config": _config(style="taker"),
        "start": "2024-01-01",
        "end": "2024-01-02",
    }
    res = run_tier3(sma_cross, {"fast": 5, "slow": 20}, l2="auto", say=said.append, **args)
    assert res.l2 == "synthetic"
    assert any("l2=synthetic" in s for s in said)
    assert any("no real L2" in n for n in res.notes)
    assert res.extra["bars"].height == 288  # one day of 5m bars from the catalog OHLCV
    with pytest.raises(DataError, match="--l2 real"):
        run_tier3(sma_cross, {"fast": 5, "slow": 20}, l2="real", **args)


def test_sample_catalog_book_counts_as_synthetic(sample: Catalog) -> None:
    from tierline.strategies.sma_cross import sma_cross

    res = run_tier3(
        sma_cross,
        {"fast": 5, "slow": 20},
        catalog=sample,
        exchange="synthetic",
        symbol="BTC/USDT",
        timeframe="1m",
        config=_config(style="taker"),
        l2="real",
    )
    assert res.l2 == "synthetic"  # the embedded sample's book is marked synthetic
    assert res.extra["bars"].height >= 100  # 1m bars rebuilt from the sample's 2 h of trades
