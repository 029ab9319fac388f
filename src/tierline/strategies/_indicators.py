"""Window-pure indicators for the built-in strategies.

Every value at bar t is a function of the values in its window only, computed in the same
order of floating-point operations wherever the window sits in the array. So the value is
bit-identical whether computed on the full history or on only the last few bars ending at t,
which is what lets NautilusTrader call a signal function per bar on a rolling window and
still agree with vectorbt. Running sums, ``cumsum``, ``ewm`` and pandas ``rolling().mean()``
do not have this property.

The ``tail_*`` functions return one value of the matching array function, the one at
position ``len(x) - 1 - lag``, computed from that window alone in the same order of
operations (so bit-identical to it): the per-bar hooks (``on_bar=``) use them.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "shift",
    "tail_max",
    "tail_mean",
    "tail_min",
    "tail_sum",
    "window_max",
    "window_mean",
    "window_min",
    "window_sum",
]

#: Up to this many window elements `window_sum` cumsums each window (a temporary of this size).
_SMALL = 1 << 16


def window_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Return the sum of the last ``n`` values at each position (NaN before ``n`` values).

    The sum at ``t`` is ``((x[t-n+1] + x[t-n+2]) + ...) + x[t]``, added left to right, so it
    depends on the window's values only, never on where the array starts.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), np.nan)
    m = len(x) - n + 1
    if n < 1 or m <= 0:
        return out
    if m * n <= _SMALL:
        # Few windows (a rolling window a little longer than n): one cumsum along each
        # window, the same left-to-right additions in one NumPy call instead of n - 1.
        from numpy.lib.stride_tricks import as_strided

        step = x.strides[0]
        windows = as_strided(x, shape=(m, n), strides=(step, step), writeable=False)
        out[n - 1 :] = windows.cumsum(axis=1)[:, -1]
        return out
    acc = x[:m].copy()
    for k in range(1, n):
        acc += x[k : k + m]
    out[n - 1 :] = acc
    return out


def window_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Return the arithmetic mean of the last ``n`` values (`window_sum` / n; NaN before n)."""
    return window_sum(x, n) / n


def window_max(x: np.ndarray, n: int) -> np.ndarray:
    """Return the maximum of the last ``n`` values at each position (NaN before ``n`` values)."""
    return _window_reduce(x, n, np.max)


def window_min(x: np.ndarray, n: int) -> np.ndarray:
    """Return the minimum of the last ``n`` values at each position (NaN before ``n`` values)."""
    return _window_reduce(x, n, np.min)


def shift(x: np.ndarray, k: int = 1) -> np.ndarray:
    """Return ``x`` delayed by ``k >= 0`` positions (the value of bar t-k at t; NaN first)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def tail_sum(x: np.ndarray, n: int, lag: int = 0) -> float:
    """Return ``window_sum(x, n)[len(x) - 1 - lag]`` from that window alone (NaN if too few).

    ``cumsum`` adds left to right (``((x[a] + x[a+1]) + ...) + x[b]``), the order
    `window_sum` uses, so the value is bit-identical.
    """
    end = len(x) - lag
    if n < 1 or lag < 0 or end < n:
        return math.nan
    return float(x[end - n : end].cumsum()[-1])


def tail_mean(x: np.ndarray, n: int, lag: int = 0) -> float:
    """Return ``window_mean(x, n)[len(x) - 1 - lag]`` (`tail_sum` / n; NaN if too few)."""
    return tail_sum(x, n, lag) / n if n >= 1 else math.nan


def tail_max(x: np.ndarray, n: int, lag: int = 0) -> float:
    """Return ``window_max(x, n)[len(x) - 1 - lag]`` (NaN if too few values)."""
    end = len(x) - lag
    if n < 1 or lag < 0 or end < n:
        return math.nan
    return float(x[end - n : end].max())


def tail_min(x: np.ndarray, n: int, lag: int = 0) -> float:
    """Return ``window_min(x, n)[len(x) - 1 - lag]`` (NaN if too few values)."""
    end = len(x) - lag
    if n < 1 or lag < 0 or end < n:
        return math.nan
    return float(x[end - n : end].min())


def _window_reduce(x: np.ndarray, n: int, fn: object) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view

    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), np.nan)
    if n < 1 or len(x) < n:
        return out
    out[n - 1 :] = fn(sliding_window_view(x, n), axis=1)  # type: ignore[operator]
    return out
