"""Built-in strategies and the reference engine on hand-made candles (freqtrade BTContainer style).

Each scenario is a short list of opens/closes plus scripted signals, with the expected trades
as (entry bar, exit bar) pairs: the entry fills at the entry bar's open; the exit fills at the
exit bar's open, or at the last bar's close when the exit bar is ``END`` (a forced exit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from tierline.core.bars import to_strategy_frame
from tierline.core.conventions import ExecutionConfig, trade_return
from tierline.core.reference import run
from tierline.engines import ENGINES, run_backtest
from tierline.errors import ConfigError, EngineError
from tierline.strategies._indicators import shift, window_max, window_mean, window_min, window_sum
from tierline.strategies.donchian_breakout import donchian_breakout
from tierline.strategies.rsi_reversion import cutler_rsi, rsi_reversion
from tierline.strategies.sma_cross import sma_cross
from tierline.strategy import Strategy, strategy

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
END = -1  # exit bar of a forced exit at the last bar's close


def make_bars(
    closes: Sequence[float],
    opens: Sequence[float] | None = None,
    highs: Sequence[float] | None = None,
    lows: Sequence[float] | None = None,
) -> pl.DataFrame:
    """Return catalog-shaped 5m bars; opens default to the previous close."""
    closes = [float(c) for c in closes]
    opens = [float(o) for o in opens] if opens else [closes[0], *closes[:-1]]
    highs = highs or [max(o, c) for o, c in zip(opens, closes, strict=True)]
    lows = lows or [min(o, c) for o, c in zip(opens, closes, strict=True)]
    return pl.DataFrame(
        {
            "ts": [T0 + i * STEP for i in range(len(closes))],
            "open": opens,
            "high": highs,
            "low": lows,
            "close": closes,
            "volume": [1.0] * len(closes),
        },
        schema_overrides={"ts": pl.Datetime("ns", "UTC")},
    ).with_columns(pl.exclude("ts").cast(pl.Float64))


def scripted(enter: set[int], exit_: set[int]) -> Strategy:
    """Return a strategy whose signals are the given bar positions."""

    @strategy(name="scripted", params=[], warmup=lambda p: 1)
    def fn(bars: pd.DataFrame, p: Any) -> pd.DataFrame:
        n = len(bars)
        return pd.DataFrame(
            {
                "enter_long": [i in enter for i in range(n)],
                "exit_long": [i in exit_ for i in range(n)],
            },
            index=bars.index,
        )

    return fn


@dataclass
class Scenario:
    id: str
    closes: list[float]
    enter: set[int]
    exit: set[int]
    trades: list[tuple[int, int]]  # (entry bar, exit bar or END)
    opens: list[float] | None = None
    notes: str = field(default="")


CLOSES = [100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0, 107.0]
SCENARIOS = [
    Scenario("entry-on-last-bar-no-fill", CLOSES, {7}, set(), []),
    Scenario("simple-round-trip", CLOSES, {1}, {3}, [(2, 4)]),
    Scenario("no-signal-no-trade", CLOSES, set(), set(), []),
    Scenario("exit-while-flat-ignored", CLOSES, {2}, {0, 1, 4}, [(3, 5)]),
    Scenario("entry-while-in-position-ignored", CLOSES, {0, 1, 2}, {4}, [(1, 5)]),
    Scenario("exit-then-reentry-consecutive-bars", CLOSES, {0, 3}, {2}, [(1, 3), (4, END)]),
    Scenario("both-signals-in-position-exit-wins", CLOSES, {0, 2}, {2}, [(1, 3)]),
    Scenario("both-signals-flat-entry-wins", CLOSES, {2}, {2, 4}, [(3, 5)]),
    Scenario("open-at-end-force-closed", CLOSES, {4}, set(), [(5, END)]),
    Scenario("exit-signal-on-last-bar-force-closed", CLOSES, {4}, {7}, [(5, END)]),
    Scenario("entry-on-second-to-last-bar", CLOSES, {6}, set(), [(7, END)]),
    Scenario("exit-on-second-to-last-bar", CLOSES, {1}, {6}, [(2, 7)]),
    Scenario("signal-on-bar-0", CLOSES, {0}, {1}, [(1, 2)]),
    Scenario(
        "gap-opens-fill-at-open-not-close",
        CLOSES,
        {1},
        {3},
        [(2, 4)],
        opens=[99.0, 100.5, 99.5, 104.0, 110.0, 104.5, 105.5, 106.5],
    ),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_reference_scenario_trades_match_expected_bars_and_prices(sc: Scenario) -> None:
    bars = make_bars(sc.closes, sc.opens)
    fee = 0.001
    res = run(scripted(sc.enter, sc.exit), bars, {}, ExecutionConfig(fee=fee))
    opens = bars["open"].to_list()
    ts = bars["ts"].to_list()
    last = len(sc.closes) - 1
    expected = []
    for e, x in sc.trades:
        xp = sc.closes[last] if x == END else opens[x]
        xt = ts[last] + STEP if x == END else ts[x]
        expected.append((ts[e], xt, opens[e], xp))
    got = res.trades.select("entry_ts", "exit_ts", "entry_price", "exit_price").rows()
    assert got == expected
    assert res.trades["return"].to_list() == pytest.approx(
        [trade_return(e[2], e[3], fee) for e in expected], abs=1e-12
    )
    assert res.equity.height == len(sc.closes)


def test_reference_fee_math_single_trade_matches_convention_formulas() -> None:
    bars = make_bars([100.0, 100.0, 100.0, 120.0, 120.0], opens=[100, 100, 100, 110, 125])
    fee, cash = 0.002, 1000.0
    res = run(scripted({1}, {3}), bars, {}, ExecutionConfig(fee=fee, initial_cash=cash))
    (row,) = res.trades.to_dicts()
    entry, exit_ = 100.0, 125.0  # open of bar 2, open of bar 4
    qty = cash / (entry * (1 + fee))
    ret = exit_ * (1 - fee) / (entry * (1 + fee)) - 1
    assert row["entry_price"] == entry and row["exit_price"] == exit_
    assert row["qty"] == pytest.approx(qty, rel=1e-12)
    assert row["fees"] == pytest.approx(qty * entry * fee + qty * exit_ * fee, rel=1e-12)
    assert row["return"] == pytest.approx(ret, abs=1e-12)
    assert row["pnl"] == pytest.approx(cash * ret, abs=1e-9)
    # equity: flat before the entry; marked at the close while held (no exit fee yet); cash after
    eq = res.equity["equity"].to_list()
    assert eq[:2] == [cash, cash]
    assert eq[2] == pytest.approx(qty * 100.0, rel=1e-12)  # all cash staked, close 100
    assert eq[3] == pytest.approx(qty * 120.0, rel=1e-12)
    assert eq[4] == pytest.approx(cash * (1 + ret), rel=1e-12)


def _two_trades(stake: float | None) -> tuple[list[float], float]:
    bars = make_bars(
        [100.0, 100.0, 110.0, 110.0, 100.0, 100.0, 90.0],
        opens=[100.0, 100.0, 100.0, 110.0, 100.0, 100.0, 90.0],
    )
    cfg = ExecutionConfig(fee=0.001, initial_cash=1000.0, stake=stake)
    res = run(scripted({1, 4}, {2}), bars, {}, cfg)
    return res.trades["return"].to_list(), res.equity["equity"][-1]


def test_reference_compounding_stakes_all_equity_and_fixed_stake_does_not() -> None:
    fee = 0.001
    r1 = trade_return(100.0, 110.0, fee)  # bars 2 -> 3 opens
    r2 = trade_return(100.0, 90.0, fee)  # bar 5 open -> forced exit at last close 90
    returns, final = _two_trades(None)
    assert returns == pytest.approx([r1, r2], abs=1e-12)
    assert final == pytest.approx(1000.0 * (1 + r1) * (1 + r2), rel=1e-12)
    returns, final = _two_trades(250.0)
    assert returns == pytest.approx([r1, r2], abs=1e-12)
    assert final == pytest.approx(1000.0 + 250.0 * r1 + 250.0 * r2, rel=1e-12)


def test_reference_fixed_stake_above_remaining_cash_spends_the_cash() -> None:
    bars = make_bars([100.0, 100.0, 100.0, 50.0, 50.0, 50.0, 50.0], opens=[100] * 3 + [50] * 4)
    cfg = ExecutionConfig(fee=0.0, initial_cash=1000.0, stake=1000.0)
    res = run(scripted({1, 4}, {2}), bars, {}, cfg)
    # trade 1: 100 -> 50 (open of bar 3) loses half; trade 2 can only stake the 500 left
    assert res.trades["pnl"].to_list() == pytest.approx([-500.0, 0.0])
    assert res.trades["qty"].to_list() == pytest.approx([10.0, 10.0])


def test_reference_forced_exit_ts_is_last_close_time_from_median_spacing() -> None:
    bars = make_bars([1.0, 2.0, 3.0, 4.0])
    res = run(scripted({0}, set()), bars, {}, ExecutionConfig(fee=0.0))
    assert res.trades["exit_ts"][0] == T0 + 4 * STEP
    assert res.trades["exit_price"][0] == 4.0
    assert res.equity["ts"].to_list() == bars["ts"].to_list()


# --------------------------------------------------------------------------- indicators
def test_window_sum_is_left_to_right_sum_of_each_window() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert np.isnan(window_sum(x, 3)[:2]).all()
    assert window_sum(x, 3)[2:].tolist() == [6.0, 9.0, 12.0]
    assert window_mean(x, 2)[1:].tolist() == [1.5, 2.5, 3.5, 4.5]
    assert window_max(np.array([3.0, 1.0, 2.0, 5.0]), 2)[1:].tolist() == [3.0, 2.0, 5.0]
    assert window_min(np.array([3.0, 1.0, 2.0, 5.0]), 2)[1:].tolist() == [1.0, 1.0, 2.0]
    assert np.isnan(window_sum(x, 6)).all()
    assert shift(x, 2)[2:].tolist() == [1.0, 2.0, 3.0]


def test_window_mean_bit_identical_on_any_suffix_while_cumsum_is_not() -> None:
    rng = np.random.default_rng(3)
    x = np.round(60_000 + np.cumsum(rng.normal(0, 30, 5000)), 2)
    full = window_mean(x, 50)
    for start in (1, 17, 1234, 4900):
        assert np.array_equal(window_mean(x[start:], 50)[49:], full[start + 49 :])
    # a running sum (what rolling().mean() and cumsum do) drifts at the ULP level
    c = np.cumsum(x)
    running = (c[49:] - np.concatenate(([0.0], c[:-50]))) / 50
    assert not np.array_equal(running, full[49:])


def test_window_sum_short_and_long_paths_are_bit_identical(monkeypatch: Any) -> None:
    """Few windows are summed by one cumsum per window, many by n - 1 vector adds: the same
    left-to-right additions, so the same bits (ties between averages depend on it)."""
    import tierline.strategies._indicators as ind

    rng = np.random.default_rng(5)
    x = np.round(0.00001234 + np.cumsum(rng.choice([-2e-8, -1e-8, 0.0, 1e-8, 2e-8], 3000)), 8)
    for n in (1, 2, 9, 50, 200):
        monkeypatch.setattr(ind, "_SMALL", 0)
        loop = window_sum(x, n)
        monkeypatch.setattr(ind, "_SMALL", 10**9)
        strided = window_sum(x, n)
        assert np.array_equal(loop, strided, equal_nan=True), n
    monkeypatch.undo()
    assert ind._SMALL >= 200 * 52  # a 200-bar mean on a 201-bar window takes the short path


# --------------------------------------------------------------------------- built-in rules
def test_sma_cross_enters_on_first_possible_bar_and_exits_on_next_cross() -> None:
    # 20 flat closes, then 110 (fast 5 crosses above slow 20 at bar 20), then 80 (crosses back)
    closes = [100.0] * 20 + [110.0, 80.0, 80.0, 80.0]
    sig = sma_cross.signals(to_strategy_frame(make_bars(closes)), {"fast": 5, "slow": 20})
    # bar 20: fast (4*100+110)/5 = 102 > slow (19*100+110)/20 = 100.5; bar 19: 100 <= 100
    assert np.flatnonzero(sig.enter_long).tolist() == [20]
    # bar 21: fast (3*100+110+80)/5 = 98 < slow (18*100+110+80)/20 = 99.5; bar 20: 102 >= 100.5
    assert np.flatnonzero(sig.exit_long).tolist() == [21]
    assert sma_cross.warmup({"fast": 5, "slow": 20}) == 21  # bars 0..20 feed the bar-20 signal
    res = run(sma_cross, make_bars(closes), {"fast": 5, "slow": 20}, ExecutionConfig(fee=0.0))
    assert res.trades.select("entry_ts", "exit_ts").rows() == [(T0 + 21 * STEP, T0 + 22 * STEP)]


def test_sma_cross_no_signal_during_warmup_even_when_averages_cross_early() -> None:
    # fast crosses slow's partial average early, but no signal may come before bar `slow`
    closes = [100.0, 90.0, 80.0, 90.0, 100.0, 110.0, 120.0, 90.0, 80.0] + [
        70.0 + i for i in range(15)
    ]
    p = {"fast": 5, "slow": 20}
    sig = sma_cross.signals(to_strategy_frame(make_bars(closes)), p)
    assert not sig.enter_long[:20].any() and not sig.exit_long[:20].any()
    res = run(sma_cross, make_bars(closes[:20]), p, ExecutionConfig())
    assert res.trades.is_empty()
    assert res.equity["equity"].to_list() == [10_000.0] * 20


def test_cutler_rsi_is_100_times_gains_over_gains_plus_losses() -> None:
    closes = np.array([100.0, 101.0, 102.0, 101.0, 99.0, 98.0, 100.0, 103.0, 103.0, 103.0])
    rsi = cutler_rsi(closes, 2)
    assert np.isnan(rsi[:2]).all()
    # changes: +1 +1 -1 -2 -1 +2 +3 0 0
    assert rsi[2:].tolist() == pytest.approx([100.0, 50.0, 0.0, 0.0, 200 / 3, 100.0, 100.0, 50.0])


def test_rsi_reversion_enters_below_lower_and_exits_above_upper() -> None:
    closes = [100.0, 101.0, 102.0, 101.0, 99.0, 98.0, 100.0, 103.0]
    p = {"period": 2, "lower": 30, "upper": 70}
    sig = rsi_reversion.signals(to_strategy_frame(make_bars(closes)), p)
    assert np.flatnonzero(sig.enter_long).tolist() == [4, 5]  # RSI 0, 0
    assert np.flatnonzero(sig.exit_long).tolist() == [2, 7]  # RSI 100, 100
    res = run(rsi_reversion, make_bars(closes), p, ExecutionConfig(fee=0.0))
    # entry at bar 5's open (= close 99 of bar 4), exit forced at last close: signal 7 is the last
    assert res.trades.select("entry_price", "exit_price").rows() == [(99.0, 103.0)]
    assert rsi_reversion.warmup(p) == 3


def test_donchian_breakout_uses_previous_bars_only() -> None:
    closes = [100.0] * 10 + [101.0, 102.0, 101.0, 100.0, 98.5, 98.0]
    highs = [c + 1 for c in closes]
    lows = [c - 1 for c in closes]
    bars = make_bars(closes, opens=closes, highs=highs, lows=lows)
    sig = donchian_breakout.signals(to_strategy_frame(bars), {"entry": 10, "exit": 5})
    # bar 10: close 101 == highest high 101 of bars 0..9 (not above); bar 11: 102 > 102? no
    # (bar 10's high is 102) -> no breakout at all until a close beats the prior highs
    assert not sig.enter_long.any()
    closes[11] = 102.5  # now 102.5 > max(high[1..10]) = 102
    bars = make_bars(closes, opens=closes, highs=[c + 1 for c in closes], lows=lows)
    sig = donchian_breakout.signals(to_strategy_frame(bars), {"entry": 10, "exit": 5})
    assert np.flatnonzero(sig.enter_long).tolist() == [11]
    # exit: close below the lowest low of the 5 previous bars: bar 14: 98.5 < min(low[9..13])
    # = 99; bar 15: 98 is not below min(low[10..14]) = 97.5 (bar 14's own low now counts)
    assert np.flatnonzero(sig.exit_long).tolist() == [14]
    assert donchian_breakout.warmup({"entry": 10, "exit": 5}) == 11
    # with a longer exit channel the bar-11 breakout falls inside the warm-up: no signal
    sig = donchian_breakout.signals(to_strategy_frame(bars), {"entry": 10, "exit": 15})
    assert not sig.enter_long.any()
    assert donchian_breakout.warmup({"entry": 10, "exit": 15}) == 16


# --------------------------------------------------------------------------- window stability
def _random_bars(seed: int, n: int = 1200) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    # tick-grid prices with many repeated values, so exact ties between averages occur
    steps = rng.choice([-0.02, -0.01, 0.0, 0.0, 0.01, 0.02], size=n)
    closes = np.round(100 + np.cumsum(steps), 2).tolist()
    opens = [closes[0], *closes[:-1]]
    highs = [
        round(max(o, c) + 0.01 * rng.integers(0, 3), 2) for o, c in zip(opens, closes, strict=True)
    ]
    lows = [
        round(min(o, c) - 0.01 * rng.integers(0, 3), 2) for o, c in zip(opens, closes, strict=True)
    ]
    return make_bars(closes, opens, highs, lows)


@pytest.mark.parametrize(
    ("strat", "params"),
    [
        (sma_cross, {"fast": 10, "slow": 50}),
        (sma_cross, {"fast": 5, "slow": 20}),
        (rsi_reversion, {"period": 14, "lower": 30, "upper": 70}),
        (rsi_reversion, {"period": 3, "lower": 20, "upper": 80}),
        (donchian_breakout, {"entry": 20, "exit": 10}),
        (donchian_breakout, {"entry": 10, "exit": 40}),
    ],
    ids=lambda v: v.name if isinstance(v, Strategy) else ",".join(map(str, v.values())),
)
@pytest.mark.parametrize("seed", [1, 2])
def test_builtin_signal_on_warmup_window_equals_full_history(
    strat: Strategy, params: dict[str, int], seed: int
) -> None:
    frame = to_strategy_frame(_random_bars(seed))
    w = strat.warmup(params)
    full = strat.signals(frame, params)
    assert full.enter_long.any() and full.exit_long.any()
    assert not full.enter_long[: w - 1].any() and not full.exit_long[: w - 1].any()
    # every bar with a signal, every 4th bar, and the first bars after the warm-up
    signal_bars = np.flatnonzero(full.enter_long | full.exit_long)
    ks = sorted({*signal_bars.tolist(), *range(w - 1, len(frame), 4), *range(w - 1, w + 10)})
    for k in ks:
        if k < w - 1:
            continue
        win = strat.signals(frame.iloc[k - w + 1 : k + 1], params)
        assert win.enter_long[-1] == full.enter_long[k], k
        assert win.exit_long[-1] == full.exit_long[k], k


def test_sma_cross_warmup_is_tight_one_bar_less_misses_a_cross() -> None:
    frame = to_strategy_frame(_random_bars(1))
    p = {"fast": 10, "slow": 50}
    full = sma_cross.signals(frame, p)
    k = int(np.flatnonzero(full.enter_long)[0])
    short = sma_cross.signals(frame.iloc[k - 49 : k + 1], p)  # warmup - 1 = 50 bars
    assert not short.enter_long[-1]


# --------------------------------------------------------------------------- parameters
def test_sma_cross_fast_not_below_slow_raises_config_error_naming_constraint() -> None:
    with pytest.raises(ConfigError, match="fast < slow"):
        sma_cross.validate_params({"fast": 50, "slow": 50})
    with pytest.raises(ConfigError, match="fast < slow"):
        run(sma_cross, make_bars(CLOSES), {"fast": 50, "slow": 40}, ExecutionConfig())


def test_builtin_params_out_of_range_or_unknown_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="outside its range"):
        sma_cross.validate_params({"fast": 4})
    with pytest.raises(ConfigError, match="no parameter"):
        rsi_reversion.validate_params({"length": 14})
    assert donchian_breakout.validate_params({"entry": "30"}) == {"entry": 30, "exit": 10}
    assert sma_cross.defaults == {"fast": 10, "slow": 50}
    assert sma_cross.warmup(sma_cross.defaults) == 51
    assert all(p["fast"] < p["slow"] for p in sma_cross.grid())


# --------------------------------------------------------------------------- dispatcher
def test_run_backtest_reference_equals_direct_run() -> None:
    bars = _random_bars(5, 400)
    cfg = ExecutionConfig(fee=0.001)
    a = run_backtest("reference", sma_cross, bars, {"fast": 5, "slow": 20}, cfg)
    b = run(sma_cross, bars, {"fast": 5, "slow": 20}, cfg)
    assert a.engine == "reference" and a.trades.height > 0
    assert a.trades.equals(b.trades) and a.equity.equals(b.equity)


def test_run_backtest_unknown_or_unbuilt_engine_raises_config_error(monkeypatch: Any) -> None:
    import tierline.engines as engines

    assert ENGINES == ("reference", "vectorbt", "nautilus", "freqtrade")
    with pytest.raises(ConfigError, match="unknown engine 'zipline'"):
        run_backtest("zipline", sma_cross, make_bars(CLOSES), {}, ExecutionConfig())
    monkeypatch.setattr(engines, "ENGINES", (*ENGINES, "notyet"))
    with pytest.raises(ConfigError, match="'notyet' is not built yet"):
        run_backtest("notyet", sma_cross, make_bars(CLOSES), {}, ExecutionConfig())


def test_signal_function_failure_is_engine_error_naming_strategy() -> None:
    @strategy(name="broken", params=[], warmup=lambda p: 1)
    def broken(bars: pd.DataFrame, p: Any) -> pd.DataFrame:
        raise KeyError("rsi")

    with pytest.raises(EngineError, match="'broken' raised KeyError"):
        run(broken, make_bars(CLOSES), {}, ExecutionConfig())
