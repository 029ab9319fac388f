"""Donchian channel breakout: buy a close above the recent high, sell a close below the low.

Rules, at bar t (decided on bar t's close, filled at bar t+1's open):

- ``upper[t]`` = the highest high of the ``entry`` bars before t (bars ``t-entry .. t-1``,
  bar t excluded); ``lower[t]`` = the lowest low of the ``exit`` bars before t.
- ``enter_long[t]``: ``close[t] > upper[t]``. ``exit_long[t]``: ``close[t] < lower[t]``.
  Both cannot hold on one bar (both channels contain bar t-1, whose high >= low).
- No signal until both channels exist, i.e. before bar index ``max(entry, exit)`` (so no
  engine sees an entry before the warm-up is over, even when ``entry < exit``).
- Warm-up: the signal at t reads bars ``t-max(entry, exit) .. t``, so
  ``warmup = max(entry, exit) + 1`` bars (t included); the first bar that can carry a
  signal is bar index ``max(entry, exit)``.

`donchian_breakout_on_bar` computes one bar's signal from its window (NautilusTrader calls it
per bar).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from tierline.strategies._indicators import shift, tail_max, tail_min, window_max, window_min
from tierline.strategy.contract import BarWindow, Int, strategy

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["donchian_breakout", "donchian_breakout_on_bar"]


def donchian_breakout_on_bar(window: BarWindow, p: Mapping[str, Any]) -> tuple[bool, bool]:
    """Return ``(enter_long, exit_long)`` of the window's last bar (the per-bar hook).

    The channels are the `tail_max` / `tail_min` of the bars before the last one; no signal
    before ``max(entry, exit) + 1`` bars, as in `donchian_breakout`.
    """
    entry, exit_ = int(p["entry"]), int(p["exit"])
    close = window.close
    if len(close) < max(entry, exit_) + 1:
        return False, False
    upper = tail_max(window.high, entry, 1)
    lower = tail_min(window.low, exit_, 1)
    last = float(close[-1])
    return last > upper, last < lower


@strategy(
    name="donchian_breakout",
    params=[
        Int("entry", 10, 100, step=5, default=20),
        Int("exit", 5, 50, step=5, default=10),
    ],
    warmup=lambda p: max(p["entry"], p["exit"]) + 1,
    on_bar=donchian_breakout_on_bar,
)
def donchian_breakout(bars: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
    """Enter on a close above the prior ``entry``-bar high; exit below the ``exit``-bar low.

    Parameters
    ----------
    bars
        Bars in the contract's signal-function layout.
    p
        ``entry`` and ``exit`` channel lengths in bars.

    Returns
    -------
    pandas.DataFrame
        Boolean ``enter_long`` and ``exit_long``, indexed like ``bars``.
    """
    import pandas as pd

    close = bars["close"].to_numpy(dtype=np.float64)
    upper = shift(window_max(bars["high"].to_numpy(dtype=np.float64), int(p["entry"])))
    lower = shift(window_min(bars["low"].to_numpy(dtype=np.float64), int(p["exit"])))
    ready = ~np.isnan(upper) & ~np.isnan(lower)
    enter = ready & (close > upper)
    exit_ = ready & (close < lower)
    return pd.DataFrame({"enter_long": enter, "exit_long": exit_}, index=bars.index)
