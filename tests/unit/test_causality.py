"""Causality checks: the built-ins pass; lookahead and window-unstable strategies are caught."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from tierline.core.bars import to_strategy_frame
from tierline.core.causality import check_causality, sample_bars
from tierline.errors import DataError
from tierline.strategies.donchian_breakout import donchian_breakout
from tierline.strategies.rsi_reversion import rsi_reversion
from tierline.strategies.sma_cross import sma_cross
from tierline.strategy import Strategy, strategy

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)


def bars_from_closes(closes: list[float]) -> pl.DataFrame:
    opens = [closes[0], *closes[:-1]]
    return pl.DataFrame(
        {
            "ts": [T0 + i * STEP for i in range(len(closes))],
            "open": opens,
            "high": [max(o, c) for o, c in zip(opens, closes, strict=True)],
            "low": [min(o, c) for o, c in zip(opens, closes, strict=True)],
            "close": closes,
            "volume": [1.0] * len(closes),
        },
        schema_overrides={"ts": pl.Datetime("ns", "UTC")},
    )


@pytest.fixture(scope="module")
def btc_jan(shared_data: Path) -> pl.DataFrame:
    path = shared_data / "ohlcv" / "binance_spot_2024_genetrader" / "BTC_USDT-5m.feather"
    return (
        pl.read_ipc(path)
        .rename({"date": "ts"})
        .with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
        .filter(pl.col("ts") < datetime(2024, 2, 1, tzinfo=UTC))
    )


@strategy(name="peek", params=[], warmup=lambda p: 2)
def peek(bars: pd.DataFrame, p: Any) -> pd.DataFrame:
    """Deliberate lookahead: compares the next close with this one."""
    c = bars["close"]
    nxt = c.shift(-1)
    return pd.DataFrame({"enter_long": nxt > c, "exit_long": nxt < c}, index=bars.index)


@strategy(name="expanding", params=[], warmup=lambda p: 20)
def expanding(bars: pd.DataFrame, p: Any) -> pd.DataFrame:
    """Window-unstable: compares the close with the mean of the whole history so far."""
    c = bars["close"]
    m = c.expanding().mean()
    return pd.DataFrame({"enter_long": c > m, "exit_long": c < m}, index=bars.index)


sma_short_warmup = strategy(
    name="sma_short_warmup",
    params=list(sma_cross.params),
    constraints=list(sma_cross.constraints),
    warmup=lambda p: p["slow"],  # one bar short: the cross at t reads SMA_slow[t-1]
)(sma_cross.signal_fn)


@pytest.mark.parametrize(
    ("strat", "params"),
    [
        (sma_cross, {"fast": 10, "slow": 50}),
        (sma_cross, {"fast": 50, "slow": 200}),
        (rsi_reversion, {"period": 14, "lower": 30, "upper": 70}),
        (donchian_breakout, {"entry": 20, "exit": 10}),
        (donchian_breakout, {"entry": 10, "exit": 50}),
    ],
    ids=lambda v: v.name if isinstance(v, Strategy) else ",".join(map(str, v.values())),
)
def test_builtins_pass_causality_on_real_btc(
    btc_jan: pl.DataFrame, strat: Strategy, params: dict[str, int]
) -> None:
    report = check_causality(strat, btc_jan, params)
    assert report.passed, report.summary()
    assert report.check is None and report.bar is None and report.offences == 0
    assert report.bars == btc_jan.height == 8928
    assert report.warmup == strat.warmup(params)
    assert 40 <= len(report.samples) <= 50
    assert report.checked == 2 * len(report.samples)
    assert report.summary().startswith("PASS")
    # the per-bar hook is compared too: sampled bars, the short first windows, the last bar
    w = report.warmup
    assert report.on_bar_checked == len({*report.samples, *range(w - 1), btc_jan.height - 1})


def test_lookahead_strategy_fails_with_first_offending_bar_named() -> None:
    closes = [100.0, 100.0, 100.0, 100.0, 101.0, 101.0, 99.0, 99.5] + [100.0 + i for i in range(40)]
    bars = bars_from_closes(closes)
    report = check_causality(peek, bars)
    assert not report.passed
    # bar 3 is the first whose next close differs (101 > 100): enter_long is True on the full
    # history and False on the prefix that ends there
    assert (report.check, report.column, report.bar) == ("lookahead", "enter_long", 3)
    assert report.ts == T0 + 3 * STEP
    assert (report.full_value, report.partial_value, report.evaluated_at) == (True, False, 3)
    assert report.offences > 1
    text = report.summary()
    assert text.startswith("FAIL") and "bar 3" in text and "2024-01-01T00:15:00+00:00" in text


def test_lookahead_strategy_is_caught_on_real_btc(btc_jan: pl.DataFrame) -> None:
    report = check_causality(peek, btc_jan)
    close = btc_jan["close"].to_numpy()
    first = int(np.flatnonzero(close[2:] != close[1:-1])[0]) + 1  # first k >= 1 with a move
    assert not report.passed and report.check == "lookahead"
    assert report.bar == first
    assert report.column == ("enter_long" if close[first + 1] > close[first] else "exit_long")


def test_window_unstable_strategy_fails_window_check_not_lookahead() -> None:
    rng = np.random.default_rng(0)
    closes = np.round(100 + np.cumsum(rng.normal(0, 1, 400)), 2).tolist()
    report = check_causality(expanding, bars_from_closes(closes))
    assert not report.passed
    assert report.check == "window"


def test_too_short_warmup_is_caught_at_the_first_cross(btc_jan: pl.DataFrame) -> None:
    report = check_causality(sma_short_warmup, btc_jan, {"fast": 10, "slow": 50})
    full = sma_cross.signals(to_strategy_frame(btc_jan), {"fast": 10, "slow": 50})
    first = int(np.flatnonzero(full.enter_long | full.exit_long)[0])
    assert first == 84
    assert (report.check, report.column, report.bar) == ("window", "enter_long", first)
    assert report.ts == datetime(2024, 1, 1, 7, 0, tzinfo=UTC)


def test_check_accepts_pandas_frames_with_any_index(btc_jan: pl.DataFrame) -> None:
    frame = to_strategy_frame(btc_jan.head(600))
    frame.index = frame.index + 1000
    assert check_causality(sma_cross, frame, {"fast": 5, "slow": 20}).passed


def test_sample_bars_covers_first_signals_evenly_spaced_and_is_seeded() -> None:
    ks = sample_bars(1000, 51, samples=20, seed=1, signal_bars=[3, 60, 70, 80, 500, 990, 999])
    assert ks == sample_bars(
        1000, 51, samples=20, seed=1, signal_bars=[3, 60, 70, 80, 500, 990, 999]
    )
    assert min(ks) == 50 and max(ks) == 998  # warm-up - 1 .. n - 2
    assert {60, 70, 80} <= set(ks)  # the first signal bars in range
    assert 3 not in ks and 999 not in ks
    assert len(ks) <= 20
    with pytest.raises(DataError, match="at least"):
        sample_bars(51, 51)
