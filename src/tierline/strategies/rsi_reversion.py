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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from tierline.strategies._indicators import window_sum
from tierline.strategy.contract import Constraint, Int, strategy

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["cutler_rsi", "rsi_reversion"]


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


@strategy(
    name="rsi_reversion",
    params=[
        Int("period", 2, 50, step=1, default=14),
        Int("lower", 5, 45, step=5, default=30),
        Int("upper", 55, 95, step=5, default=70),
    ],
    constraints=[Constraint("lower < upper", lambda p: p["lower"] < p["upper"])],
    warmup=lambda p: p["period"] + 1,
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
