"""The nautilus adapter: real nautilus_trader backtests that must give the reference's trades.

Real data (one month of Binance BTC/USDT and ETH/USDT 5m, two Bittrex 2018 alt/BTC 5m pairs with
1e-8 ticks and missing bars), every built-in strategy with two parameter sets, compared trade by
trade with `tierline.core.reference`; then crafted bars for the edge cases (a signal on the last
bar, entry and exit on consecutive bars, a gap, tiny prices, a strategy that raises).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from tierline.core import reference
from tierline.core.conventions import ExecutionConfig
from tierline.core.instruments import instrument_for
from tierline.core.result import TRADES_TABLE_SCHEMA, BacktestResult
from tierline.engines import nautilus
from tierline.errors import EngineError
from tierline.strategies.donchian_breakout import donchian_breakout
from tierline.strategies.rsi_reversion import rsi_reversion
from tierline.strategies.sma_cross import sma_cross
from tierline.strategy.contract import BarWindow, Int, Strategy, strategy

FIVE_MIN = 300_000_000_000
ONE_MIN = 60_000_000_000

# (strategy, two parameter sets)
BUILTINS: list[tuple[Strategy, list[dict[str, int]]]] = [
    (sma_cross, [{"fast": 10, "slow": 50}, {"fast": 5, "slow": 20}]),
    (
        rsi_reversion,
        [{"period": 14, "lower": 30, "upper": 70}, {"period": 6, "lower": 20, "upper": 80}],
    ),
    (donchian_breakout, [{"entry": 20, "exit": 10}, {"entry": 50, "exit": 25}]),
]
CASES = [(s, p) for s, sets in BUILTINS for p in sets]
CASE_IDS = [f"{s.name}-{'-'.join(str(v) for v in p.values())}" for s, p in CASES]

# data set key -> (exchange, symbol, tick, execution config)
MARKETS: dict[str, tuple[str, str, float, ExecutionConfig]] = {
    # all-equity compounding
    "binance-BTC/USDT": ("binance", "BTC/USDT", 0.01, ExecutionConfig()),
    # a fixed stake per trade
    "binance-ETH/USDT": ("binance", "ETH/USDT", 0.01, ExecutionConfig(stake=1_000.0)),
    # 10,000 BTC of cash: 1e8+ ADA per entry, ADA held with 6 decimals by nautilus
    "bittrex-ADA/BTC": ("bittrex", "ADA/BTC", 1e-8, ExecutionConfig()),
    # a realistic 1 BTC account
    "bittrex-TRX/BTC": ("bittrex", "TRX/BTC", 1e-8, ExecutionConfig(initial_cash=1.0)),
}


def _read_feather(path: Path) -> pl.DataFrame:
    return (
        pl.read_ipc(path)
        .rename({"date": "ts"})
        .with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
        .select("ts", "open", "high", "low", "close", "volume")
    )


@pytest.fixture(scope="session")
def market_bars(shared_data: Path) -> dict[str, pl.DataFrame]:
    """Real bars per data set key (Binance: March / May 2024; Bittrex: the whole 20 days)."""
    ohlcv = shared_data / "ohlcv"
    binance = ohlcv / "binance_spot_2024_genetrader"
    bittrex = ohlcv / "bittrex_2018_freqtrade"

    def month(path: Path, m: int) -> pl.DataFrame:
        return _read_feather(path).filter(pl.col("ts").dt.month() == m)

    return {
        "binance-BTC/USDT": month(binance / "BTC_USDT-5m.feather", 3),
        "binance-ETH/USDT": month(binance / "ETH_USDT-5m.feather", 5),
        "bittrex-ADA/BTC": _read_feather(bittrex / "ADA_BTC-5m.feather"),
        "bittrex-TRX/BTC": _read_feather(bittrex / "TRX_BTC-5m.feather"),
    }


def assert_same_trades(ref: BacktestResult, nt: BacktestResult, tick: float) -> None:
    """Assert the parity contract: same fill times, prices on the same tick, returns, P&L."""
    a, b = ref.trades, nt.trades
    assert dict(b.schema) == TRADES_TABLE_SCHEMA
    assert len(b) == len(a), f"{len(b)} nautilus trades vs {len(a)} reference trades"
    assert b["entry_ts"].to_list() == a["entry_ts"].to_list()
    assert b["exit_ts"].to_list() == a["exit_ts"].to_list()
    for col in ("entry_price", "exit_price"):
        ticks_a = np.round(a[col].to_numpy() / tick)
        ticks_b = np.round(b[col].to_numpy() / tick)
        np.testing.assert_array_equal(ticks_b, ticks_a, err_msg=col)
    np.testing.assert_allclose(b["return"].to_numpy(), a["return"].to_numpy(), rtol=0, atol=1e-6)
    pnl_a, pnl_b = float(a["pnl"].sum()), float(b["pnl"].sum())
    assert abs(pnl_b - pnl_a) <= 1e-4 * abs(pnl_a) + 1e-9, (pnl_a, pnl_b)
    assert nt.equity["ts"].to_list() == ref.equity["ts"].to_list()
    np.testing.assert_allclose(
        nt.equity["equity"].to_numpy(), ref.equity["equity"].to_numpy(), rtol=1e-6
    )


# ----------------------------------------------------------------------------- real data
@pytest.mark.parametrize("market", list(MARKETS))
@pytest.mark.parametrize(("strat", "params"), CASES, ids=CASE_IDS)
def test_nautilus_trades_equal_reference_trades_on_real_data(
    market_bars: dict[str, pl.DataFrame], market: str, strat: Strategy, params: dict[str, int]
) -> None:
    exchange, symbol, tick, config = MARKETS[market]
    bars = market_bars[market]
    ref = reference.run(strat, bars, params, config)
    nt = nautilus.run(strat, bars, params, config, exchange=exchange, symbol=symbol)
    assert len(ref.trades) > 0, "the case should trade"
    assert_same_trades(ref, nt, tick)
    assert nt.engine == "nautilus"
    assert nt.extra["signal_calls"] == len(bars)
    assert nt.extra["signal_path"] == "on_bar"  # the built-ins' per-bar hook, not frames
    assert not any("denied" in n or "rejected" in n for n in nt.notes), nt.notes
    # the equity rebuilt from the fills agrees with nautilus' own account
    assert not any("differs from the equity" in n for n in nt.notes), nt.notes


def test_bittrex_data_has_gaps_and_off_ulp_prices(market_bars: dict[str, pl.DataFrame]) -> None:
    """The Bittrex cases above really cover missing bars and floats an ulp off their decimal."""
    bars = market_bars["bittrex-ADA/BTC"]
    steps = np.diff(bars["ts"].dt.epoch("ns").to_numpy())
    assert (steps > FIVE_MIN).any()
    close = bars["close"].to_numpy()
    assert (np.array([float(f"{v:.8f}") for v in close]) != close).any()


def test_lot_coarsened_to_the_base_currency_precision_is_noted(
    market_bars: dict[str, pl.DataFrame],
) -> None:
    nt = nautilus.run(
        sma_cross,
        market_bars["bittrex-ADA/BTC"],
        {"fast": 10, "slow": 50},
        ExecutionConfig(),
        exchange="bittrex",
        symbol="ADA/BTC",
    )
    assert any("lot coarsened" in n and "ADA" in n for n in nt.notes), nt.notes
    assert any("rounded down to the lot" in n for n in nt.notes)
    assert nt.extra["final_balances"]["ADA"] == 0.0


# ----------------------------------------------------------------------------- crafted bars
@strategy(name="marker", params=[], warmup=lambda p: 1)
def marker(bars: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
    """Signal from the volume column: 1 = enter, 2 = exit, 3 = both."""
    v = bars["volume"].to_numpy()
    return pd.DataFrame(
        {"enter_long": (v == 1) | (v == 3), "exit_long": (v == 2) | (v == 3)}, index=bars.index
    )


def _marker_on_bar(window: BarWindow, p: Mapping[str, Any]) -> tuple[bool, bool]:
    v = window.volume[-1]
    return bool(v == 1 or v == 3), bool(v == 2 or v == 3)


#: The same strategy with a per-bar hook: nautilus takes the hook path.
marker_hooked = dataclasses.replace(marker, on_bar_fn=_marker_on_bar)


def crafted(
    opens: Sequence[float],
    closes: Sequence[float],
    volume: Sequence[float],
    *,
    minutes: Sequence[int] | None = None,
) -> pl.DataFrame:
    """Return 1-minute bars (or at ``minutes`` offsets) with the given opens, closes, volume."""
    o, c = np.asarray(opens, dtype=float), np.asarray(closes, dtype=float)
    offsets = np.arange(len(o)) if minutes is None else np.asarray(minutes)
    ts = np.datetime64("2024-01-01T00:00", "ns").astype(np.int64) + offsets * ONE_MIN
    return pl.DataFrame(
        {
            "ts": pl.Series(ts).cast(pl.Datetime("ns", "UTC")),
            "open": o,
            "high": np.maximum(o, c) + 0.5,
            "low": np.minimum(o, c) - 0.5,
            "close": c,
            "volume": np.asarray(volume, dtype=float),
        }
    )


def t(minute: int) -> pd.Timestamp:
    return pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(minutes=minute)


def trade_rows(result: BacktestResult) -> list[tuple[Any, ...]]:
    return [
        (r["entry_ts"], r["exit_ts"], r["entry_price"], r["exit_price"])
        for r in result.trades.iter_rows(named=True)
    ]


def both(bars: pl.DataFrame, config: ExecutionConfig | None = None) -> BacktestResult:
    """Run nautilus (frame path and hook path) and the reference; assert parity; return the
    nautilus result of the frame path."""
    config = config or ExecutionConfig()
    nt = nautilus.run(marker, bars, {}, config)
    hooked = nautilus.run(marker_hooked, bars, {}, config)
    assert (nt.extra["signal_path"], hooked.extra["signal_path"]) == ("frame", "on_bar")
    ref = reference.run(marker, bars, {}, config)
    tick = float(nt.extra["instrument"].price_increment)
    assert_same_trades(ref, nt, tick)
    assert_same_trades(ref, hooked, tick)
    assert hooked.trades.equals(nt.trades)
    return nt


def _as_py(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(pd.Timestamp(a), pd.Timestamp(b), p, q) for a, b, p, q in rows]


def test_entry_signal_on_last_bar_is_not_filled() -> None:
    bars = crafted([100 + i for i in range(6)], [100.5 + i for i in range(6)], [0] * 5 + [1])
    nt = both(bars)
    assert nt.trades.is_empty()
    assert nt.equity["equity"].to_list() == [10_000.0] * 6


def test_exit_signal_on_last_bar_closes_at_last_close_stamped_one_bar_later() -> None:
    # enter on bar 1 (filled at bar 2's open); exit signal on the last bar (5): no next open,
    # so the position is closed at bar 5's close, at 00:05 + 1 minute.
    bars = crafted(
        [100, 101, 102, 103, 104, 105],
        [100.5, 101.5, 102.5, 103.5, 104.5, 106.5],
        [0, 1, 0, 0, 0, 2],
    )
    nt = both(bars)
    assert _as_py(trade_rows(nt)) == [(t(2), t(6), 102.0, 106.5)]
    assert nt.equity["equity"][-1] == pytest.approx(
        10_000 * 106.5 * (1 - 0.001) / (102 * 1.001), rel=1e-9
    )


def test_entry_and_exit_on_consecutive_bars() -> None:
    # enter signal on bar 2 -> filled at bar 3's open; exit signal on bar 3 -> bar 4's open
    bars = crafted(
        [100, 101, 102, 103, 104, 105],
        [100.5, 101.5, 102.5, 103.5, 104.5, 105.5],
        [0, 0, 1, 2, 0, 0],
    )
    nt = both(bars)
    assert _as_py(trade_rows(nt)) == [(t(3), t(4), 103.0, 104.0)]
    row = nt.trades.row(0, named=True)
    assert row["return"] == pytest.approx(104 * 0.999 / (103 * 1.001) - 1, abs=1e-12)
    assert row["fees"] == pytest.approx(row["qty"] * (103 + 104) * 0.001, rel=1e-9)


def test_both_signals_on_one_bar_enter_when_flat_and_exit_when_in_position() -> None:
    # bar 1: both (flat -> enter at bar 2's open); bar 3: both (in position -> exit at bar 4)
    bars = crafted(
        [100, 101, 102, 103, 104, 105],
        [100.5, 101.5, 102.5, 103.5, 104.5, 105.5],
        [0, 3, 0, 3, 0, 0],
    )
    nt = both(bars)
    assert _as_py(trade_rows(nt)) == [(t(2), t(4), 102.0, 104.0)]


def test_order_decided_before_a_gap_fills_at_the_first_open_after_it() -> None:
    # bars at minutes 0-4, then 10-14 (five missing bars); enter on minute 4's close ->
    # filled at minute 10's open; exit on minute 11's close -> minute 12's open.
    minutes = [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    opens = [100, 101, 102, 103, 104, 110, 111, 112, 113, 114]
    bars = crafted(opens, [o + 0.5 for o in opens], [0, 0, 0, 0, 1, 0, 2, 0, 0, 0], minutes=minutes)
    nt = both(bars)
    assert _as_py(trade_rows(nt)) == [(t(10), t(12), 110.0, 112.0)]


def test_position_open_at_the_end_after_a_gap_is_stamped_with_the_median_spacing() -> None:
    minutes = [0, 1, 2, 3, 4, 10, 11]
    opens = [100, 101, 102, 103, 104, 110, 111]
    bars = crafted(opens, [o + 0.5 for o in opens], [0, 0, 0, 1, 0, 0, 0], minutes=minutes)
    nt = both(bars)
    assert _as_py(trade_rows(nt)) == [(t(4), t(12), 104.0, 111.5)]


def test_very_small_prices_on_a_1e8_tick() -> None:
    rng = np.random.default_rng(3)
    n = 40
    opens = np.round(1.2e-6 + rng.integers(-20, 20, n) * 1e-8, 8)
    closes = np.round(opens + rng.integers(-5, 6, n) * 1e-8, 8)
    vol = np.zeros(n)
    vol[[3, 9, 15, 22, 30]] = [1, 2, 1, 2, 1]  # the last entry is force-closed
    bars = crafted(list(opens), list(closes), list(vol))
    for config in (ExecutionConfig(), ExecutionConfig(initial_cash=0.5)):
        nt = both(bars, config)
        assert nt.extra["instrument"].price_increment == "0.00000001"
        assert len(nt.trades) == 3
        np.testing.assert_array_equal(nt.trades["entry_price"].to_numpy(), opens[[4, 16, 31]])


def test_single_bar_gives_no_trade_and_flat_equity() -> None:
    nt = both(crafted([100.0], [101.0], [1.0]))
    assert nt.trades.is_empty()
    assert nt.equity["equity"].to_list() == [10_000.0]


def test_signal_function_sees_a_rolling_window_of_warmup_bars() -> None:
    seen: list[tuple[int, float]] = []

    @strategy(name="spy", params=[Int("w", 2, 50, default=4)], warmup=lambda p: p["w"])
    def spy(bars: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
        assert list(bars.columns) == ["date", "open", "high", "low", "close", "volume"]
        assert str(bars["date"].dtype) == "datetime64[ns, UTC]"
        assert isinstance(bars.index, pd.RangeIndex)
        seen.append((len(bars), float(bars["close"].iloc[-1])))
        false = np.zeros(len(bars), dtype=bool)
        return pd.DataFrame({"enter_long": false, "exit_long": false}, index=bars.index)

    closes = [100.5 + i for i in range(8)]
    nt = nautilus.run(
        spy, crafted([100 + i for i in range(8)], closes, [0] * 8), {"w": 4}, ExecutionConfig()
    )
    assert [n for n, _ in seen] == [1, 2, 3, 4, 4, 4, 4, 4]
    assert [c for _, c in seen] == closes
    assert nt.extra["signal_calls"] == 8


# ----------------------------------------------------------------------------- errors
def _raising(at: float) -> Strategy:
    @strategy(name="boom", params=[Int("level", 1, 10_000, default=int(at))], warmup=lambda p: 3)
    def boom(bars: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
        if bars["close"].iloc[-1] >= p["level"]:
            raise ValueError("kaboom")
        false = np.zeros(len(bars), dtype=bool)
        return pd.DataFrame({"enter_long": false, "exit_long": false}, index=bars.index)

    return boom


def test_strategy_raising_inside_nautilus_gives_engine_error_naming_strategy_and_bar() -> None:
    bars = crafted([100 + i for i in range(10)], [100 + i for i in range(10)], [0] * 10)
    with pytest.raises(EngineError) as info:
        nautilus.run(_raising(106), bars, {"level": 106}, ExecutionConfig())
    msg = str(info.value)
    assert "'boom'" in msg
    assert "ValueError: kaboom" in msg
    assert "bar 6" in msg
    assert "2024-01-01 00:06:00" in msg
    assert "level=106" in msg
    assert isinstance(info.value.__cause__, ValueError)


def test_malformed_signal_frame_gives_engine_error() -> None:
    @strategy(name="nocols", params=[], warmup=lambda p: 2)
    def nocols(bars: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
        return pd.DataFrame({"enter_long": np.zeros(len(bars), dtype=bool)}, index=bars.index)

    bars = crafted([100.0, 101.0, 102.0], [100.5, 101.5, 102.5], [0, 0, 0])
    with pytest.raises(
        EngineError, match=r"'nocols' returned no column\(s\) \['exit_long'\].*bar 0"
    ):
        nautilus.run(nocols, bars, {}, ExecutionConfig())


def test_engine_runs_again_after_a_failed_run() -> None:
    bars = crafted([100 + i for i in range(10)], [100 + i for i in range(10)], [0] * 10)
    with pytest.raises(EngineError):
        nautilus.run(_raising(105), bars, {"level": 105}, ExecutionConfig())
    both(crafted([100, 101, 102, 103], [100.5, 101.5, 102.5, 103.5], [1, 2, 0, 0]))


# ----------------------------------------------------------------------------- dispatcher
def test_dispatcher_passes_exchange_and_symbol(market_bars: dict[str, pl.DataFrame]) -> None:
    from tierline.engines import run_backtest

    bars = market_bars["binance-BTC/USDT"].head(1_500)
    params = {"fast": 10, "slow": 50}
    via: Callable[..., BacktestResult] = run_backtest
    res = via(
        "nautilus",
        sma_cross,
        bars,
        params,
        ExecutionConfig(),
        exchange="binance",
        symbol="BTC/USDT",
    )
    assert res.engine == "nautilus"
    assert res.extra["instrument"].source.endswith("venues.toml")
    ref = reference.run(sma_cross, bars, params, ExecutionConfig())
    assert_same_trades(ref, res, 0.01)
    inferred = run_backtest("nautilus", sma_cross, bars, params, ExecutionConfig())
    assert any("inferred" in n for n in inferred.notes)
    assert_same_trades(ref, inferred, 0.01)
    spec = instrument_for("binance", "BTC/USDT")
    given = run_backtest("nautilus", sma_cross, bars, params, ExecutionConfig(), instrument=spec)
    assert given.extra["instrument"] is spec
    assert_same_trades(ref, given, 0.01)
