"""RSI mean reversion: buy when Cutler's RSI is oversold, sell when it is overbought.

Rules, at bar t (decided on bar t's close, filled at bar t+1's open):

- Changes ``d[i] = close[i] - close[i-1]``; gains ``max(d, 0)``, losses ``max(-d, 0)``.
- Cutler's RSI over the last ``period`` changes (bars ``t-period+1 .. t``):
  ``RSI[t] = 100 * G / (G + L)`` with ``G`` and ``L`` the sums of those gains and losses
  (equal to ``100 - 100 / (1 + mean gain / mean loss)``); 50 when every change is zero.
  Simple sums, not Wilder's recursive smoothing, so RSI is a pure function of the window.
- ``enter_long[t]``: ``RSI[t] < lower``. ``exit_long[t]``: ``RSI[t] > upper``
  (levels, not crosses: an entry signal while in a position is ignored by every engine).
- Warm-up: RSI at t reads the closes of bars ``t-period .. t``, so ``warmup = period + 1``
  bars (t included); the first bar that can carry a signal is bar index ``period``.

`rsi_reversion_on_bar` computes one bar's signal from its window (NautilusTrader calls it per
bar), with the same sums in the same order as `cutler_rsi`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from tierline.strategies._indicators import tail_sum, window_sum
from tierline.strategy.contract import BarWindow, Constraint, Int, strategy

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["cutler_rsi", "rsi_reversion", "rsi_reversion_on_bar"]


def cutler_rsi(close: np.ndarray, period: int) -> np.ndarray:
    """Return Cutler's RSI of ``close`` over ``period`` changes (NaN for the first ``period``).

    Parameters
    ----------
    close
        Closing prices in time order.
    period
        Number of price changes in each window.

    Returns
    -------
    numpy.ndarray
        RSI in [0, 100]; 50 where the window has no change at all.
    """
    close = np.asarray(close, dtype=np.float64)
    d = np.full(len(close), np.nan)
    d[1:] = close[1:] - close[:-1]
    gains = window_sum(np.where(d > 0, d, 0.0), period)
    losses = window_sum(np.where(d < 0, -d, 0.0), period)
    gains[:period] = np.nan  # the first window would include the undefined change d[0]
    total = gains + losses
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = np.where(total > 0, 100.0 * gains / total, 50.0)
    rsi[np.isnan(total)] = np.nan
    return rsi  # type: ignore[no-any-return]


def rsi_reversion_on_bar(window: BarWindow, p: Mapping[str, Any]) -> tuple[bool, bool]:
    """Return ``(enter_long, exit_long)`` of the window's last bar (the per-bar hook).

    The RSI of the last ``period`` changes, computed like `cutler_rsi` at that bar: the same
    changes, `tail_sum` (bit-identical to `window_sum`) and ``100 * G / (G + L)``.
    """
    period = int(p["period"])
    close = window.close
    if len(close) < period + 1:
        return False, False
    c = close[len(close) - period - 1 :]
    d = c[1:] - c[:-1]
    gains = tail_sum(np.where(d > 0, d, 0.0), period)
    losses = tail_sum(np.where(d < 0, -d, 0.0), period)
    total = gains + losses
    rsi = 100.0 * gains / total if total > 0 else 50.0
    return rsi < p["lower"], rsi > p["upper"]


@strategy(
    name="rsi_reversion",
    params=[
        Int("period", 2, 50, step=1, default=14),
        Int("lower", 5, 45, step=5, default=30),
        Int("upper", 55, 95, step=5, default=70),
    ],
    constraints=[Constraint("lower < upper", lambda p: p["lower"] < p["upper"])],
    warmup=lambda p: p["period"] + 1,
    on_bar=rsi_reversion_on_bar,
)
def rsi_reversion(bars: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
    """Enter when Cutler's RSI(period) is below ``lower``; exit when it is above ``upper``.

    Parameters
    ----------
    bars
        Bars in the contract's signal-function layout.
    p
        ``period`` (changes per RSI window), ``lower`` and ``upper`` levels.

    Returns
    -------
    pandas.DataFrame
        Boolean ``enter_long`` and ``exit_long``, indexed like ``bars``.
    """
    import pandas as pd

    rsi = cutler_rsi(bars["close"].to_numpy(dtype=np.float64), int(p["period"]))
    enter = rsi < p["lower"]
    exit_ = rsi > p["upper"]
    return pd.DataFrame({"enter_long": enter, "exit_long": exit_}, index=bars.index)
