"""The reference engine on real Binance BTC/USDT 5m bars, January 2024, sma_cross 10/50.

The expected trades are derived here independently of the package: the averages are
recomputed exactly in integer cents (Binance prices sit on a 0.01 tick) and, for the first
trade, with plain pandas means over explicit windows; trades are then read off the crosses
with the conventions (fill at the next bar's open, forced exit at the last close).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from tierline.core.conventions import ExecutionConfig, trade_return
from tierline.core.metrics import compute_metrics
from tierline.core.reference import run
from tierline.strategies.sma_cross import sma_cross

FAST, SLOW = 10, 50
FEE = 0.001


@pytest.fixture(scope="module")
def jan(shared_data: Path) -> pl.DataFrame:
    path = shared_data / "ohlcv" / "binance_spot_2024_genetrader" / "BTC_USDT-5m.feather"
    return (
        pl.read_ipc(path)
        .rename({"date": "ts"})
        .with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
        .filter(pl.col("ts") < datetime(2024, 2, 1, tzinfo=UTC))
    )


def exact_crosses(closes: list[float]) -> tuple[list[int], list[int]]:
    """Return the bars where SMA10 crosses above / below SMA50, in exact integer arithmetic."""
    cents = [round(c * 100) for c in closes]
    assert all(abs(c * 100 - k) < 1e-6 for c, k in zip(closes, cents, strict=True))
    sign: list[int | None] = [None] * len(cents)
    for t in range(SLOW - 1, len(cents)):
        # SMA_fast > SMA_slow  <=>  sum_fast * SLOW > sum_slow * FAST
        a = sum(cents[t - FAST + 1 : t + 1]) * SLOW
        b = sum(cents[t - SLOW + 1 : t + 1]) * FAST
        sign[t] = (a > b) - (a < b)
    up = [t for t in range(SLOW, len(cents)) if sign[t] == 1 and sign[t - 1] <= 0]  # type: ignore[operator]
    down = [t for t in range(SLOW, len(cents)) if sign[t] == -1 and sign[t - 1] >= 0]  # type: ignore[operator]
    return up, down


def expected_trades(up: list[int], down: list[int], n: int) -> list[tuple[int, int | None]]:
    """(entry fill bar, exit fill bar or None for a forced exit), alternating cross by cross."""
    out: list[tuple[int, int | None]] = []
    t = -1
    while True:
        e = next((u for u in up if u > t), None)
        if e is None or e + 1 >= n:
            return out
        x = next((d for d in down if d > e), None)
        if x is None or x + 1 >= n:
            out.append((e + 1, None))
            return out
        out.append((e + 1, x + 1))
        t = x


def test_sma_cross_first_trade_from_pandas_window_means(jan: pl.DataFrame) -> None:
    close = pd.Series(jan["close"].to_list())
    fast = {t: close.iloc[t - FAST + 1 : t + 1].mean() for t in range(SLOW - 1, 400)}
    slow = {t: close.iloc[t - SLOW + 1 : t + 1].mean() for t in range(SLOW - 1, 400)}
    first_up = next(t for t in range(SLOW, 400) if fast[t] > slow[t] and fast[t - 1] <= slow[t - 1])
    first_down = next(
        t for t in range(first_up, 400) if fast[t] < slow[t] and fast[t - 1] >= slow[t - 1]
    )
    assert (first_up, first_down) == (84, 172)  # 07:00 and 14:20 closes on 2024-01-01

    res = run(sma_cross, jan, {"fast": FAST, "slow": SLOW}, ExecutionConfig(fee=FEE))
    first = res.trades.row(0, named=True)
    assert first["entry_ts"] == datetime(2024, 1, 1, 7, 5, tzinfo=UTC)
    assert first["exit_ts"] == datetime(2024, 1, 1, 14, 25, tzinfo=UTC)
    assert first["entry_price"] == jan["open"][first_up + 1] == 42432.0
    assert first["exit_price"] == jan["open"][first_down + 1]
    assert first["return"] == pytest.approx(
        trade_return(42432.0, jan["open"][first_down + 1], FEE), abs=1e-12
    )
    assert first["qty"] == pytest.approx(10_000.0 / (42432.0 * (1 + FEE)), rel=1e-12)


def test_sma_cross_january_trades_match_exact_crosses(jan: pl.DataFrame) -> None:
    closes = jan["close"].to_list()
    opens = jan["open"].to_list()
    ts = jan["ts"].to_list()
    n = len(closes)
    assert n == 31 * 288
    up, down = exact_crosses(closes)
    want = expected_trades(up, down, n)
    assert len(want) == 134

    cfg = ExecutionConfig(fee=FEE, initial_cash=10_000.0)
    res = run(sma_cross, jan, {"fast": FAST, "slow": SLOW}, cfg)
    assert res.trades.height == len(want)
    got = res.trades.select("entry_ts", "exit_ts", "entry_price", "exit_price").rows()
    for (e, x), row in zip(want, got, strict=True):
        exit_ts = ts[x] if x is not None else ts[-1] + (ts[1] - ts[0])
        exit_price = opens[x] if x is not None else closes[-1]
        assert row == (ts[e], exit_ts, opens[e], exit_price)

    # compounding: the final equity is the product of the trade returns
    growth = 1.0
    for e, x in want:
        growth *= 1 + trade_return(opens[e], opens[x] if x is not None else closes[-1], FEE)
    assert res.equity["equity"][-1] == pytest.approx(10_000.0 * growth, rel=1e-9)
    assert res.equity.height == n

    m = compute_metrics(res.trades, res.equity, initial_cash=10_000.0)
    assert m["trades"] == 134.0
    assert m["total_return"] == pytest.approx(growth - 1, rel=1e-9)
    held = sum((x if x is not None else n) - e for e, x in want)
    assert m["exposure"] == pytest.approx(held / n, abs=1e-15)
