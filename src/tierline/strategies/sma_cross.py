"""SMA crossover: long while the fast simple moving average is above the slow one.

Rules, at bar t (decided on bar t's close, filled at bar t+1's open):

- ``SMA_n[t]`` is the arithmetic mean of the closes of bars ``t-n+1 .. t``; it is undefined
  (no signal) before ``n`` bars.
- ``enter_long[t]``: ``SMA_fast[t] > SMA_slow[t]`` and ``SMA_fast[t-1] <= SMA_slow[t-1]``
  (the fast average crosses above the slow one).
- ``exit_long[t]``: ``SMA_fast[t] < SMA_slow[t]`` and ``SMA_fast[t-1] >= SMA_slow[t-1]``
  (the opposite cross).
- Warm-up: the signal at t reads the closes of bars ``t-slow .. t``, so ``warmup = slow + 1``
  bars (t included); the first bar that can carry a signal is bar index ``slow`` (0-based),
  i.e. ``slow`` bars come before it.

The averages are window-pure (see `tierline.strategies._indicators`): bit-identical on the
full history and on the last ``warmup`` bars. `sma_cross_on_bar` computes the signal of one
bar from its window (NautilusTrader calls it per bar), with the same sums in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tierline.strategies._indicators import shift, tail_mean, window_mean
from tierline.strategy.contract import BarWindow, Constraint, Int, strategy

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["sma_cross", "sma_cross_batch", "sma_cross_on_bar"]


def sma_cross_batch(
    bars: pd.DataFrame, params_list: Sequence[Mapping[str, Any]]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(enter_long, exit_long)`` for many parameter sets, each window's mean once.

    The sweep's batched hook: the same indicator (`window_mean`) and comparisons as
    `sma_cross`, so the signals are identical (the sweep checks the first set of every chunk
    against `sma_cross` itself); ``x[t-1]`` is read by slicing (at bar 0 the single-set
    function compares with NaN: no signal).
    """
    close = bars["close"].to_numpy(dtype=np.float64)
    n = len(close)
    cache: dict[int, np.ndarray] = {}

    def ma(w: int) -> np.ndarray:
        if w not in cache:
            cache[w] = window_mean(close, w)
        return cache[w]

    for p in params_list:
        f, s = ma(int(p["fast"])), ma(int(p["slow"]))
        enter = np.zeros(n, dtype=bool)
        exit_ = np.zeros(n, dtype=bool)
        enter[1:] = (f[1:] > s[1:]) & (f[:-1] <= s[:-1])
        exit_[1:] = (f[1:] < s[1:]) & (f[:-1] >= s[:-1])
        yield enter, exit_


def sma_cross_on_bar(window: BarWindow, p: Mapping[str, Any]) -> tuple[bool, bool]:
    """Return ``(enter_long, exit_long)`` of the window's last bar (the per-bar hook).

    The means at t and t-1 are `tail_mean` values, bit-identical to `window_mean` at those
    bars; before ``slow + 1`` bars there is no signal, as in `sma_cross`.
    """
    fast, slow = int(p["fast"]), int(p["slow"])
    close = window.close
    if len(close) < slow + 1:
        return False, False
    f, s = tail_mean(close, fast), tail_mean(close, slow)
    f_prev, s_prev = tail_mean(close, fast, 1), tail_mean(close, slow, 1)
    return (f > s and f_prev <= s_prev), (f < s and f_prev >= s_prev)


@strategy(
    name="sma_cross",
    params=[
        Int("fast", 5, 50, step=5, default=10),
        Int("slow", 20, 200, step=10, default=50),
    ],
    constraints=[Constraint("fast < slow", lambda p: p["fast"] < p["slow"])],
    warmup=lambda p: p["slow"] + 1,
    batch=sma_cross_batch,
    on_bar=sma_cross_on_bar,
)
def sma_cross(bars: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
    """Enter when SMA(fast) crosses above SMA(slow) of the close; exit on the cross below.

    Parameters
    ----------
    bars
        Bars in the contract's signal-function layout.
    p
        ``fast`` and ``slow`` window lengths in bars (``fast < slow``).

    Returns
    -------
    pandas.DataFrame
        Boolean ``enter_long`` and ``exit_long``, indexed like ``bars``.
    """
    import pandas as pd

    close = bars["close"].to_numpy(dtype=np.float64)
    fast = window_mean(close, int(p["fast"]))
    slow = window_mean(close, int(p["slow"]))
    fast_prev, slow_prev = shift(fast), shift(slow)
    # Comparisons with NaN are False: no signal before both averages exist at t-1 and t.
    enter = (fast > slow) & (fast_prev <= slow_prev)
    exit_ = (fast < slow) & (fast_prev >= slow_prev)
    return pd.DataFrame({"enter_long": enter, "exit_long": exit_}, index=bars.index)
