"""The fused sweep kernel against the reference engine and the common metrics.

Signals are fed through a tiny strategy whose signal function returns fixed arrays, so the
reference engine (`tierline.core.reference`) and the kernel see exactly the same signals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from tierline.core import reference
from tierline.core.conventions import ExecutionConfig
from tierline.core.metrics import METRIC_NAMES, compute_metrics
from tierline.strategy.contract import Int, Strategy, strategy
from tierline.sweep import kernel_nb as K
from tierline.sweep.evaluate import BarArrays, Segment, evaluate, metrics_from_kernel, simulate

FEE = 0.001


def make_bars(n: int, seed: int = 0, minutes: int = 5) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]] * (1.0 + rng.normal(0.0, 0.001, n))
    start = pl.datetime(2024, 1, 1, time_zone="UTC")
    ts = pl.datetime_range(
        start, start + pl.duration(minutes=minutes * (n - 1)), f"{minutes}m", eager=True
    )
    return pl.DataFrame(
        {
            "ts": ts.cast(pl.Datetime("ns", "UTC")),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": 1.0,
        }
    )


def fixed_signals(enter: np.ndarray, exit_: np.ndarray) -> Strategy:
    """A strategy whose signals are the given arrays, whatever its (dummy) parameter."""

    @strategy(name="fixed", params=[Int("k", 0, 0, default=0)], warmup=lambda p: 1)
    def fixed(bars: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
        return pd.DataFrame({"enter_long": enter, "exit_long": exit_}, index=bars.index)

    return fixed


def assert_same(bars: pl.DataFrame, enter: np.ndarray, exit_: np.ndarray, cfg: ExecutionConfig):
    ref = reference.run(fixed_signals(enter, exit_), bars, {}, cfg)
    got = simulate(BarArrays.from_bars(bars), enter, exit_, cfg)
    a, b = ref.trades, got.trades
    assert a.height == b.height
    assert a["entry_ts"].to_list() == b["entry_ts"].to_list()
    assert a["exit_ts"].to_list() == b["exit_ts"].to_list()
    assert a["entry_price"].to_list() == b["entry_price"].to_list()
    assert a["exit_price"].to_list() == b["exit_price"].to_list()
    for col in ("qty", "fees", "pnl", "return"):
        np.testing.assert_allclose(b[col].to_numpy(), a[col].to_numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        got.equity["equity"].to_numpy(), ref.equity["equity"].to_numpy(), rtol=1e-12
    )
    return ref, got


@pytest.mark.parametrize("stake", [None, 4000.0, 10_000.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kernel_equals_reference_on_random_signals(seed: int, stake: float | None) -> None:
    bars = make_bars(1500, seed)
    rng = np.random.default_rng(100 + seed)
    enter = rng.random(len(bars)) < 0.08
    exit_ = rng.random(len(bars)) < 0.08  # many bars carry both: the conflict rule matters
    ref, _ = assert_same(bars, enter, exit_, ExecutionConfig(fee=FEE, stake=stake))
    assert ref.trades.height > 20


def test_kernel_entry_and_exit_on_one_bar_follow_the_position() -> None:
    bars = make_bars(12)
    enter = np.zeros(12, bool)
    exit_ = np.zeros(12, bool)
    enter[[1, 3, 6]] = True
    exit_[[3, 6]] = True
    # bar 1: flat, enter -> fill at 2; bar 3: in position, both -> exit at 4;
    # bar 6: flat, both -> enter at 7; open at the end -> forced exit at the last close.
    _, got = assert_same(bars, enter, exit_, ExecutionConfig(fee=FEE))
    ts = bars["ts"]
    assert got.trades["entry_ts"].to_list() == [ts[2], ts[7]]
    assert got.trades["exit_ts"].to_list() == [ts[4], ts[11] + pd.Timedelta(minutes=5)]
    assert got.trades["exit_price"][1] == bars["close"][11]


def test_kernel_reenters_the_bar_after_an_exit() -> None:
    bars = make_bars(10)
    enter = np.zeros(10, bool)
    exit_ = np.zeros(10, bool)
    enter[[0, 3]] = True
    exit_[2] = True
    _, got = assert_same(bars, enter, exit_, ExecutionConfig(fee=FEE))
    ts = bars["ts"]
    assert got.trades["entry_ts"].to_list() == [ts[1], ts[4]]
    assert got.trades["exit_ts"][0] == ts[3]


def test_kernel_ignores_a_signal_on_the_last_bar() -> None:
    bars = make_bars(8)
    enter = np.zeros(8, bool)
    exit_ = np.zeros(8, bool)
    enter[7] = True
    _ref, got = assert_same(bars, enter, exit_, ExecutionConfig(fee=FEE))
    assert got.trades.height == 0
    assert got.equity["equity"].to_list() == [10_000.0] * 8


def test_kernel_closes_an_entry_filled_on_the_last_bar_at_its_close() -> None:
    bars = make_bars(8)
    enter = np.zeros(8, bool)
    enter[6] = True
    _, got = assert_same(bars, enter, np.zeros(8, bool), ExecutionConfig(fee=FEE))
    t = got.trades.row(0, named=True)
    assert t["entry_price"] == bars["open"][7]
    assert t["exit_price"] == bars["close"][7]
    expected = bars["close"][7] * (1 - FEE) / (bars["open"][7] * (1 + FEE)) - 1
    assert t["return"] == pytest.approx(expected, rel=1e-12)
    assert got.equity["equity"][-1] == pytest.approx(10_000 * (1 + expected), rel=1e-12)


def test_kernel_fixed_stake_larger_than_equity_buys_with_what_is_left() -> None:
    bars = make_bars(400, seed=5)
    rng = np.random.default_rng(9)
    enter = rng.random(400) < 0.1
    exit_ = rng.random(400) < 0.1
    assert_same(bars, enter, exit_, ExecutionConfig(fee=0.01, stake=9_990.0))


@pytest.mark.parametrize("stake", [None, 2500.0])
def test_sweep_kernel_metrics_equal_compute_metrics(stake: float | None) -> None:
    bars = make_bars(3 * 288 * 4, seed=11)  # 12 days of 5m bars: several daily returns
    arrays = BarArrays.from_bars(bars)
    rng = np.random.default_rng(4)
    k = 12
    enter = rng.random((k, len(bars))) < 0.02
    exit_ = rng.random((k, len(bars))) < 0.02
    enter[0] = False  # one row never trades
    cfg = ExecutionConfig(fee=FEE, stake=stake)
    seg = Segment(100, len(bars) - 50)
    de = arrays.day_end(seg)
    stats = np.empty((k, K.N_STATS))
    daily = np.empty((k, len(de)))
    K.sweep_nb(
        arrays.open[seg.start : seg.stop],
        arrays.close[seg.start : seg.stop],
        enter[:, seg.start : seg.stop],
        exit_[:, seg.start : seg.stop],
        FEE,
        cfg.initial_cash,
        math.nan if stake is None else stake,
        de,
        stats,
        daily,
    )
    got = metrics_from_kernel(
        stats, daily, n_bars=len(seg), span_days=arrays.span_days(seg), initial_cash=1e4
    )
    sub = bars[seg.start : seg.stop]
    for j in range(k):
        ref = reference.run(
            fixed_signals(enter[j, seg.start : seg.stop], exit_[j, seg.start : seg.stop]),
            sub,
            {},
            cfg,
        )
        want = compute_metrics(ref.trades, ref.equity, initial_cash=cfg.initial_cash)
        for name in METRIC_NAMES:
            w, g = want[name], float(got[name][j])
            if math.isinf(w) or math.isnan(w):
                assert g == w or (math.isnan(g) and math.isnan(w)), (j, name, w, g)
            else:
                assert g == pytest.approx(w, rel=1e-9, abs=1e-12), (j, name, w, g)
    assert got["trades"][0] == 0.0 and got["total_return"][0] == 0.0


def test_evaluate_isolates_a_failing_parameter_set() -> None:
    bars = make_bars(600, seed=3)

    @strategy(name="picky", params=[Int("n", 1, 5, default=1)], warmup=lambda p: 1)
    def picky(b: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
        if p["n"] == 3:
            raise ValueError("three is not allowed")
        c = b["close"].to_numpy()
        up = np.r_[False, c[1:] > c[:-1]]
        return pd.DataFrame({"enter_long": up, "exit_long": ~up}, index=b.index)

    ev = evaluate(picky, bars, list(picky.grid()), ExecutionConfig(), chunk=2)
    assert list(ev.errors) == [2]
    assert "three is not allowed" in ev.errors[2]
    assert ev.ok.tolist() == [True, True, False, True, True]
    assert math.isnan(ev.metrics[0]["sharpe"][2])
    assert np.isfinite(ev.metrics[0]["total_return"][[0, 1, 3, 4]]).all()
    # every surviving set is the same strategy here: identical results
    assert len(set(ev.metrics[0]["total_return"][[0, 1, 3, 4]].tolist())) == 1
