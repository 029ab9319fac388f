"""The per-bar hook (``on_bar=``): equal to the signal function, checked, and run by nautilus.

The built-ins' hooks are compared with their vectorised signal functions on every bar of real
5m data (a month of Binance BTC/USDT and the 20 days of a Bittrex alt/BTC pair with 1e-8 ticks,
off-ulp prices and missing bars), several parameter sets each; `check_causality` and
`tierline check` must catch a hook that differs; the nautilus adapter must hand the hook
read-only rolling windows and give the same trades as with frames.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from tierline.core.bars import to_strategy_frame
from tierline.core.causality import check_causality, on_bar_signals
from tierline.core.conventions import ExecutionConfig
from tierline.engines import nautilus
from tierline.errors import EngineError
from tierline.strategies._indicators import (
    tail_max,
    tail_mean,
    tail_min,
    tail_sum,
    window_max,
    window_mean,
    window_min,
    window_sum,
)
from tierline.strategies.donchian_breakout import donchian_breakout
from tierline.strategies.rsi_reversion import rsi_reversion
from tierline.strategies.sma_cross import sma_cross
from tierline.strategy import BarWindow, Int, Strategy, strategy
from tierline.strategy.contract import bar_signal_pair

CASES: list[tuple[Strategy, dict[str, int]]] = [
    (sma_cross, {"fast": 10, "slow": 50}),
    (sma_cross, {"fast": 5, "slow": 20}),
    (sma_cross, {"fast": 45, "slow": 50}),
    (sma_cross, {"fast": 50, "slow": 200}),
    (rsi_reversion, {"period": 14, "lower": 30, "upper": 70}),
    (rsi_reversion, {"period": 2, "lower": 5, "upper": 95}),
    (rsi_reversion, {"period": 6, "lower": 20, "upper": 80}),
    (rsi_reversion, {"period": 50, "lower": 45, "upper": 55}),
    (donchian_breakout, {"entry": 20, "exit": 10}),
    (donchian_breakout, {"entry": 10, "exit": 50}),
    (donchian_breakout, {"entry": 100, "exit": 5}),
]
CASE_IDS = [f"{s.name}-{'-'.join(str(v) for v in p.values())}" for s, p in CASES]


def _read_feather(path: Path) -> pl.DataFrame:
    return (
        pl.read_ipc(path)
        .rename({"date": "ts"})
        .with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
        .select("ts", "open", "high", "low", "close", "volume")
    )


@pytest.fixture(scope="module")
def real_bars(shared_data: Path) -> dict[str, pl.DataFrame]:
    """Catalog bars: Binance BTC/USDT March 2024 and Bittrex ADA/BTC (all of its 20 days)."""
    ohlcv = shared_data / "ohlcv"
    btc = _read_feather(ohlcv / "binance_spot_2024_genetrader" / "BTC_USDT-5m.feather")
    return {
        "binance-BTC/USDT-2024-03": btc.filter(pl.col("ts").dt.month() == 3),
        "bittrex-ADA/BTC": _read_feather(ohlcv / "bittrex_2018_freqtrade" / "ADA_BTC-5m.feather"),
    }


@pytest.fixture(scope="module")
def real_frames(real_bars: dict[str, pl.DataFrame]) -> dict[str, pd.DataFrame]:
    """The same bars as signal-function frames."""
    return {k: to_strategy_frame(v) for k, v in real_bars.items()}


# ----------------------------------------------------------------------------- equality
@pytest.mark.parametrize("market", ["binance-BTC/USDT-2024-03", "bittrex-ADA/BTC"])
@pytest.mark.parametrize(("strat", "params"), CASES, ids=CASE_IDS)
def test_builtin_on_bar_equals_signal_function_on_every_bar_of_real_data(
    real_frames: dict[str, pd.DataFrame], market: str, strat: Strategy, params: dict[str, int]
) -> None:
    frame = real_frames[market]
    full = strat.signals(frame, params)
    hook = on_bar_signals(strat, frame, params)
    assert len(hook.enter_long) == len(frame) > 5_000
    assert full.enter_long.sum() > 0 and full.exit_long.sum() > 0, "the case should signal"
    for column in ("enter_long", "exit_long"):
        want, got = getattr(full, column), getattr(hook, column)
        diff = np.flatnonzero(want != got)
        assert not len(diff), f"{column} differs at bars {diff[:10].tolist()}"
    # no signal on the short windows of the first warmup - 1 bars, in either function
    w = strat.warmup(params)
    assert not hook.enter_long[: w - 1].any() and not hook.exit_long[: w - 1].any()


def _mean_hook(window: BarWindow, p: Mapping[str, Any]) -> tuple[bool, bool]:
    """sma_cross with ``ndarray.mean`` (pairwise summation): right maths, wrong last bits."""
    fast, slow, c = p["fast"], p["slow"], window.close
    if len(c) < slow + 1:
        return False, False
    f, s = c[-fast:].mean(), c[-slow:].mean()
    f_prev, s_prev = c[-fast - 1 : -1].mean(), c[-slow - 1 : -1].mean()
    return bool(f > s and f_prev <= s_prev), bool(f < s and f_prev >= s_prev)


def test_a_hook_summing_in_another_order_is_caught_on_real_data(
    real_frames: dict[str, pd.DataFrame],
) -> None:
    """Why the built-in hooks use `tail_mean`: on Bittrex' 1e-8 ticks exact ties between the
    averages are common, and a sum in another order flips some crosses."""
    frame = real_frames["bittrex-ADA/BTC"]
    params = {"fast": 45, "slow": 50}
    wrong = dataclasses.replace(sma_cross, on_bar_fn=_mean_hook)
    full = sma_cross.signals(frame, params)
    hook = on_bar_signals(wrong, frame, params)
    differ = np.flatnonzero(
        (hook.enter_long != full.enter_long) | (hook.exit_long != full.exit_long)
    )
    assert len(differ) > 0
    report = check_causality(wrong, frame, params, hook_all_bars=True)
    assert not report.passed and report.check == "on_bar" and report.bar == differ[0]


def _tie_prone(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(100 + np.cumsum(rng.choice([-0.03, -0.01, 0.0, 0.01, 0.03], n)), 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_tail_functions_are_bit_identical_to_the_window_functions(seed: int) -> None:
    x = _tie_prone(400, seed)
    pairs = [
        (tail_sum, window_sum),
        (tail_mean, window_mean),
        (tail_max, window_max),
        (tail_min, window_min),
    ]
    for tail, window in pairs:
        for n in (1, 2, 7, 50, 199):
            full = window(x, n)
            for end in range(1, len(x) + 1):
                for lag in (0, 1, 2):
                    got = tail(x[:end], n, lag)
                    t = end - 1 - lag
                    want = full[t] if t >= 0 else np.nan
                    if np.isnan(want):
                        assert np.isnan(got), (tail.__name__, n, end, lag)
                    else:  # exact, not approximate
                        assert got == want, (tail.__name__, n, end, lag, got, want)
    assert np.isnan(tail_mean(x, 0)) and np.isnan(tail_sum(x, 401))


# ----------------------------------------------------------------------------- check
def _lagged(base: Strategy) -> Strategy:
    """``base`` with a hook that answers for the previous bar: wrong by construction.

    The warm-up is one bar longer, so the window minus its last bar is still a full window.
    """
    fn = base.on_bar_fn
    assert fn is not None

    def late(window: BarWindow, p: Mapping[str, Any]) -> tuple[bool, bool]:
        if len(window) < 2:
            return False, False
        return fn(window.tail(len(window) - 1, len(window) - 1), p)

    return dataclasses.replace(
        base,
        name="late_hook",
        warmup_fn=lambda p: base.warmup(p) + 1,
        on_bar_fn=late,
    )


def test_check_causality_covers_the_hook_and_passes_the_builtins(
    real_frames: dict[str, pd.DataFrame],
) -> None:
    frame = real_frames["binance-BTC/USDT-2024-03"]
    params = {"fast": 10, "slow": 50}
    report = check_causality(sma_cross, frame, params)
    assert report.passed, report.summary()
    # sampled bars, the 50 short-window bars before them and the last bar
    assert report.on_bar_checked == len({*report.samples, *range(50), len(frame) - 1})
    assert report.summary().endswith(
        f"the on_bar hook equals the signal function at {report.on_bar_checked} bars"
    )
    everything = check_causality(sma_cross, frame, params, hook_all_bars=True)
    assert everything.passed and everything.on_bar_checked == len(frame)
    plain = dataclasses.replace(sma_cross, on_bar_fn=None)
    assert check_causality(plain, frame, params).on_bar_checked == 0


def test_check_causality_names_the_first_bar_where_the_hook_differs(
    real_frames: dict[str, pd.DataFrame],
) -> None:
    frame = real_frames["binance-BTC/USDT-2024-03"]
    params = {"fast": 10, "slow": 50}
    full = sma_cross.signals(frame, params)
    # the lagged hook gives bar k the signal of bar k-1: first wrong where they differ
    first = {
        c: int(np.flatnonzero(getattr(full, c)[1:] != getattr(full, c)[:-1])[0]) + 1
        for c in ("enter_long", "exit_long")
    }
    column = min(first, key=lambda c: first[c])
    bar = first[column]

    report = check_causality(_lagged(sma_cross), frame, params, hook_all_bars=True)
    assert not report.passed
    assert report.check == "on_bar"
    assert (report.column, report.bar, report.evaluated_at) == (column, bar, bar)
    assert report.full_value is True and report.partial_value is False
    assert report.ts == frame["date"].iloc[bar].to_pydatetime()
    n_sig = int(full.enter_long.sum() + full.exit_long.sum())
    assert report.offences == 2 * n_sig - (1 if full.exit_long[-1] or full.enter_long[-1] else 0)
    assert "on_bar check" in report.summary() and f"at bar {bar} (" in report.summary()
    # the sampled check (half its samples are signal bars) catches it too
    sampled = check_causality(_lagged(sma_cross), frame, params)
    assert not sampled.passed and sampled.check == "on_bar"


def test_hook_failures_are_engine_errors_naming_strategy_and_bar(
    real_frames: dict[str, pd.DataFrame],
) -> None:
    frame = real_frames["binance-BTC/USDT-2024-03"].head(300)

    def boom(window: BarWindow, p: Mapping[str, Any]) -> tuple[bool, bool]:
        if len(window) == 51 and window.ts[0] == frame["date"].iloc[100].value:
            raise ZeroDivisionError("no")
        return False, False

    raising = dataclasses.replace(sma_cross, name="boom", on_bar_fn=boom)
    with pytest.raises(EngineError, match=r"'boom': on_bar raised ZeroDivisionError: no.*bar 150"):
        check_causality(raising, frame, {"fast": 10, "slow": 50}, hook_all_bars=True)

    def single_fn(window: BarWindow, p: Mapping[str, Any]) -> Any:
        return True  # one bool, not a pair

    single = dataclasses.replace(sma_cross, name="single", on_bar_fn=single_fn)
    with pytest.raises(EngineError, match=r"'single': on_bar returned True; it must return a pair"):
        on_bar_signals(single, frame, {"fast": 10, "slow": 50})

    with pytest.raises(EngineError, match="declares no per-bar hook"):
        on_bar_signals(dataclasses.replace(sma_cross, on_bar_fn=None), frame)


def test_bar_signal_pair_reads_numpy_bools_and_treats_nan_and_na_as_false() -> None:
    assert bar_signal_pair("s", (np.True_, np.False_)) == (True, False)
    assert bar_signal_pair("s", [1, 0]) == (True, False)
    assert bar_signal_pair("s", (float("nan"), pd.NA)) == (False, False)
    with pytest.raises(EngineError, match="expected a boolean"):
        bar_signal_pair("s", (np.array([True, False]), False))


def test_bar_window_from_frame_is_read_only_and_tail_clips_at_the_start(
    real_frames: dict[str, pd.DataFrame],
) -> None:
    frame = real_frames["bittrex-ADA/BTC"]
    whole = BarWindow.from_frame(frame)
    assert len(whole) == len(frame)
    assert whole.ts.dtype == np.int64 and whole.close.dtype == np.float64
    assert whole.ts[0] == frame["date"].iloc[0].value  # ns since the epoch
    np.testing.assert_array_equal(whole.close, frame["close"].to_numpy())
    with pytest.raises(ValueError, match="read-only"):
        whole.close[0] = 1.0
    head = whole.tail(3, 10)
    assert len(head) == 3 and head.close.tolist() == frame["close"].iloc[:3].tolist()
    mid = whole.tail(100, 10)
    assert mid.ts.tolist() == [d.value for d in frame["date"].iloc[90:100]]


# ----------------------------------------------------------------------------- nautilus
FIVE_MIN = 300_000_000_000


def test_nautilus_hands_the_hook_read_only_rolling_windows_of_warmup_bars() -> None:
    seen: list[tuple[int, float, int]] = []
    t0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000

    def spy_on_bar(window: BarWindow, p: Mapping[str, Any]) -> tuple[bool, bool]:
        assert all(
            len(a) == len(window)
            for a in (window.open, window.high, window.low, window.close, window.volume)
        )
        with pytest.raises(ValueError, match="read-only"):
            window.close[-1] = 0.0
        # nothing behind the views but the window's bars and older ones
        assert window.close.base is not None and window.close.base.size <= 5 * 2 * p["w"]
        seen.append((len(window), float(window.close[-1]), int(window.ts[-1])))
        return False, False

    @strategy(
        name="spy_hook", params=[Int("w", 2, 50, default=4)], warmup=lambda p: p["w"],
        on_bar=spy_on_bar,
    )  # fmt: skip
    def spy(bars: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
        raise AssertionError("the frame path must not run when the hook exists")

    closes = [100.5 + i for i in range(9)]
    bars = pl.DataFrame(
        {
            "ts": pl.Series([t0 + i * FIVE_MIN for i in range(9)]).cast(pl.Datetime("ns", "UTC")),
            "open": [100.0 + i for i in range(9)],
            "high": [c + 1 for c in closes],
            "low": [99.0 + i for i in range(9)],
            "close": closes,
            "volume": [1.0] * 9,
        }
    )
    nt = nautilus.run(spy, bars, {"w": 4}, ExecutionConfig())
    assert [n for n, _, _ in seen] == [1, 2, 3, 4, 4, 4, 4, 4, 4]
    assert [c for _, c, _ in seen] == closes
    assert [ts for _, _, ts in seen] == [t0 + i * FIVE_MIN for i in range(9)]
    assert nt.extra["signal_calls"] == 9 and nt.extra["signal_path"] == "on_bar"


def test_nautilus_hook_and_frame_paths_give_identical_trades(
    real_bars: dict[str, pl.DataFrame],
) -> None:
    bars = real_bars["bittrex-ADA/BTC"].head(2_500)
    params = {"period": 6, "lower": 20, "upper": 80}
    cfg = ExecutionConfig(initial_cash=1.0)
    hooked = nautilus.run(rsi_reversion, bars, params, cfg, exchange="bittrex", symbol="ADA/BTC")
    plain = nautilus.run(
        dataclasses.replace(rsi_reversion, on_bar_fn=None),
        bars,
        params,
        cfg,
        exchange="bittrex",
        symbol="ADA/BTC",
    )
    assert hooked.extra["signal_path"] == "on_bar" and plain.extra["signal_path"] == "frame"
    assert hooked.trades.height > 20
    assert hooked.trades.equals(plain.trades)
    assert hooked.equity.equals(plain.equity)


def test_nautilus_hook_raising_gives_engine_error_naming_strategy_and_bar() -> None:
    def bad(window: BarWindow, p: Mapping[str, Any]) -> tuple[bool, bool]:
        if window.close[-1] >= 106:
            raise KeyError("gone")
        return False, False

    @strategy(name="bad_hook", params=[], warmup=lambda p: 3, on_bar=bad)
    def fn(bars: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
        raise AssertionError("unused")

    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    bars = pl.DataFrame(
        {
            "ts": [t0 + i * timedelta(minutes=1) for i in range(10)],
            "open": [100.0 + i for i in range(10)],
            "high": [101.0 + i for i in range(10)],
            "low": [99.0 + i for i in range(10)],
            "close": [100.0 + i for i in range(10)],
            "volume": [0.0] * 10,
        },
        schema_overrides={"ts": pl.Datetime("ns", "UTC")},
    )
    with pytest.raises(EngineError) as info:
        nautilus.run(fn, bars, {}, ExecutionConfig())
    msg = str(info.value)
    assert "strategy 'bad_hook' on_bar raised KeyError: 'gone'" in msg
    assert "bar 6 (open 2024-01-01 00:06:00" in msg and "window of 3 bars" in msg
    assert isinstance(info.value.__cause__, KeyError)

    def half(window: BarWindow, p: Mapping[str, Any]) -> Any:
        return window.close[-1] > 103  # one value, not a pair

    with pytest.raises(EngineError) as info:
        nautilus.run(dataclasses.replace(fn, on_bar_fn=half), bars, {}, ExecutionConfig())
    msg = str(info.value)
    assert msg.startswith(
        "strategy 'bad_hook' on_bar returned np.False_; it must return a pair (enter_long, "
        "exit_long) of booleans inside nautilus at bar 0 (open 2024-01-01 00:00:00"
    ), msg


# ----------------------------------------------------------------------------- CLI
USER_HOOKS = '''
from tierline.strategies.sma_cross import sma_cross, sma_cross_on_bar
from tierline.strategy import strategy


def late(window, p):
    """Answers for the previous bar: a hook that does not equal the signal function."""
    if len(window) < 2:
        return False, False
    return sma_cross_on_bar(window.tail(len(window) - 1, len(window) - 1), p)


late_cross = strategy(
    name="late_cross",
    params=list(sma_cross.params),
    constraints=list(sma_cross.constraints),
    warmup=lambda p: p["slow"] + 2,  # one more bar: the window minus its last is full
    on_bar=late,
)(sma_cross.signal_fn)
'''


def test_cli_check_reports_the_hook_and_exits_1_when_it_differs(
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tierline.cli import main
    from tierline.data.catalog import Catalog

    path = shared_data / "ohlcv" / "binance_spot_2024_genetrader" / "BTC_USDT-5m.feather"
    bars = _read_feather(path).filter(pl.col("ts") < datetime(2024, 1, 4, tzinfo=UTC))
    Catalog(tmp_path / "parquet").write_ohlcv(
        bars, exchange="binance", symbol="BTC/USDT", timeframe="5m", source="test"
    )
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "hooks.py").write_text(textwrap.dedent(USER_HOOKS))
    monkeypatch.setenv("TIERLINE_DATA_DIR", str(tmp_path / "parquet"))
    monkeypatch.setenv("TIERLINE_STRATEGIES_DIR", str(tmp_path / "strategies"))

    assert main(["check", "sma_cross", "--params", "fast=5,slow=20", "--hook-all-bars"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PASS sma_cross (fast=5,slow=20)")
    assert f"the on_bar hook equals the signal function at {bars.height} bars" in out

    assert main(["check", "late_cross", "--params", "fast=5,slow=20"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL late_cross (fast=5,slow=20), warm-up 22 bars: on_bar check:")
    assert "on the full history but False in the on_bar hook's signal" in out
