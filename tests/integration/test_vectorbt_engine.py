"""The vectorbt engine against the reference engine on real Binance 5m bars.

One month each of BTC/USDT (January 2024) and ETH/USDT (February 2024), every built-in
strategy with three parameter sets: the same trades (entry and exit times), the same fill
prices, per-trade returns within 1e-9 and total return within 0.01 %. The sweep kernel is
checked to reproduce the vectorbt engine bit for bit on the same signals.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tierline.core import reference
from tierline.core.bars import to_strategy_frame
from tierline.core.conventions import ExecutionConfig
from tierline.core.metrics import METRIC_NAMES, compute_metrics
from tierline.engines import run_backtest
from tierline.strategy import get_strategy
from tierline.sweep.evaluate import BarArrays, evaluate, simulate

CASES = {
    "sma_cross": [{"fast": 10, "slow": 50}, {"fast": 5, "slow": 20}, {"fast": 30, "slow": 120}],
    "rsi_reversion": [
        {"period": 14, "lower": 30, "upper": 70},
        {"period": 2, "lower": 10, "upper": 90},
        {"period": 30, "lower": 40, "upper": 60},
    ],
    "donchian_breakout": [
        {"entry": 20, "exit": 10},
        {"entry": 10, "exit": 50},
        {"entry": 100, "exit": 5},
    ],
}
MONTHS = {
    "BTC": (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)),
    "ETH": (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
}


def _month(shared_data: Path, base: str) -> pl.DataFrame:
    path = shared_data / "ohlcv" / "binance_spot_2024_genetrader" / f"{base}_USDT-5m.feather"
    lo, hi = MONTHS[base]
    return (
        pl.read_ipc(path)
        .rename({"date": "ts"})
        .with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
        .filter((pl.col("ts") >= lo) & (pl.col("ts") < hi))
    )


@pytest.fixture(scope="module")
def months(shared_data: Path) -> dict[str, pl.DataFrame]:
    return {base: _month(shared_data, base) for base in MONTHS}


@pytest.mark.parametrize("base", list(MONTHS))
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("stake", [None, 2_500.0])
def test_vectorbt_trades_equal_reference_trades(
    months: dict[str, pl.DataFrame], base: str, name: str, stake: float | None
) -> None:
    bars = months[base]
    strategy = get_strategy(name)
    cfg = ExecutionConfig(fee=0.001, stake=stake)
    for params in CASES[name]:
        ref = reference.run(strategy, bars, params, cfg)
        vbt = run_backtest("vectorbt", strategy, bars, params, cfg)
        a, b = ref.trades, vbt.trades
        assert vbt.engine == "vectorbt"
        assert a.height == b.height > 0, (name, params)
        assert b["entry_ts"].to_list() == a["entry_ts"].to_list()
        assert b["exit_ts"].to_list() == a["exit_ts"].to_list()
        assert b["entry_price"].to_list() == a["entry_price"].to_list()
        assert b["exit_price"].to_list() == a["exit_price"].to_list()
        np.testing.assert_allclose(b["return"].to_numpy(), a["return"].to_numpy(), atol=1e-9)
        np.testing.assert_allclose(b["qty"].to_numpy(), a["qty"].to_numpy(), rtol=1e-9)
        tr_ref = ref.equity["equity"][-1] / cfg.initial_cash - 1
        tr_vbt = vbt.equity["equity"][-1] / cfg.initial_cash - 1
        assert abs(tr_vbt - tr_ref) <= 1e-4 * (1 + abs(tr_ref))
        assert vbt.equity["ts"].to_list() == bars["ts"].to_list()
        np.testing.assert_allclose(
            vbt.equity["equity"].to_numpy(), ref.equity["equity"].to_numpy(), rtol=1e-9
        )


def test_vectorbt_forced_exit_is_stamped_at_the_last_bar_close(
    months: dict[str, pl.DataFrame],
) -> None:
    bars = months["BTC"]
    strategy = get_strategy("sma_cross")
    frame = to_strategy_frame(bars)
    # a parameter set whose position is still open after the last bar (found from signals)
    params = None
    for fast in range(5, 50, 5):
        for slow in range(max(20, fast + 5), 200, 15):
            sig = strategy.signals(frame, {"fast": fast, "slow": slow})
            e = np.flatnonzero(sig.enter_long[:-1])
            x = np.flatnonzero(sig.exit_long[:-1])
            if len(e) and (not len(x) or e[-1] > x[-1]):
                params = {"fast": fast, "slow": slow}
                break
        if params:
            break
    assert params is not None
    res = run_backtest("vectorbt", strategy, bars, params, ExecutionConfig())
    last = res.trades.row(-1, named=True)
    assert (last["exit_ts"] - bars["ts"][-1]).total_seconds() == 300
    assert last["exit_price"] == bars["close"][-1]
    assert last["fees"] == pytest.approx(
        last["qty"] * (last["entry_price"] + last["exit_price"]) * 0.001, rel=1e-12
    )
    assert res.equity["equity"][-1] == pytest.approx(10_000 + res.trades["pnl"].sum(), rel=1e-12)


@pytest.mark.parametrize("stake", [None, 3_000.0])
def test_sweep_kernel_reproduces_vectorbt_bit_for_bit(
    months: dict[str, pl.DataFrame], stake: float | None
) -> None:
    bars = months["ETH"]
    cfg = ExecutionConfig(fee=0.001, stake=stake)
    arrays = BarArrays.from_bars(bars)
    frame = to_strategy_frame(bars)
    for name, sets in CASES.items():
        strategy = get_strategy(name)
        ev = evaluate(strategy, bars, sets, cfg)
        for j, params in enumerate(sets):
            sig = strategy.signals(frame, params)
            vbt = run_backtest("vectorbt", strategy, bars, params, cfg)
            ker = simulate(arrays, sig.enter_long, sig.exit_long, cfg)
            assert ker.trades.equals(vbt.trades), (name, params)
            assert np.array_equal(ker.equity["equity"].to_numpy(), vbt.equity["equity"].to_numpy())
            want = compute_metrics(vbt.trades, vbt.equity, initial_cash=cfg.initial_cash)
            for m in METRIC_NAMES:
                assert ev.metrics[0][m][j] == pytest.approx(want[m], rel=1e-12, abs=1e-15), (
                    name,
                    params,
                    m,
                )
