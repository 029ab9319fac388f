"""The common metrics: one definition for every tier, computed from trades and equity.

Engines' own statistics are never used (their Sharpe definitions differ); every tier's trades
table and equity curve go through `compute_metrics`, and the same names are logged to MLflow.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tierline.core.metric_names import METRIC_NAMES
from tierline.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

__all__ = ["METRIC_NAMES", "PERIODS_PER_YEAR", "compute_metrics"]

#: The metric names, in the order they are printed and logged.
METRIC_NAMES: tuple[str, ...] = METRIC_NAMES
#: Daily returns per year (crypto trades every day): the annualisation factor is its root.
PERIODS_PER_YEAR = 365
_DAY_NS = 86_400 * 10**9


def compute_metrics(
    trades: pl.DataFrame, equity: pl.DataFrame, *, initial_cash: float
) -> dict[str, float]:
    """Compute the common metrics of one backtest.

    Parameters
    ----------
    trades
        Trades table (`tierline.core.result.TRADES_TABLE_SCHEMA`; ``entry_ts``, ``exit_ts`` and
        ``pnl`` are used).
    equity
        Equity curve: ``ts`` (bar open, UTC) and ``equity`` (marked at that bar's close), one
        row per bar, in time order.
    initial_cash
        Equity before the first bar.

    Returns
    -------
    dict[str, float]
        Exactly the keys of `METRIC_NAMES`, all floats:

        - ``total_return``: ``E_last / initial_cash - 1``, with ``E_last`` the last equity value.
        - ``cagr``: ``(E_last / initial_cash) ** (365 / days) - 1``, where ``days`` is the span
          from the first bar's open to the last bar's close (last ``ts`` plus the median bar
          spacing; one day when there is a single bar), in days of 86,400 s. ``-1`` when the
          equity ends at or below zero.
        - ``sharpe``: daily returns ``r`` of the equity curve, annualised: ``mean(r) /
          std(r, ddof=1) * sqrt(365)``. A day's equity is the last equity value of that UTC
          calendar day (days without bars are skipped); the first day's return is taken
          against ``initial_cash``. 0 when ``std`` is 0 (flat equity), NaN with fewer than two
          daily returns.
        - ``sortino``: ``mean(r) / d * sqrt(365)`` with the downside deviation
          ``d = sqrt(sum(min(r, 0) ** 2) / (N - 1))`` over all ``N`` daily returns (ddof=1).
          When ``d`` is 0: ``inf`` if ``mean(r) > 0``, else 0. NaN with fewer than two returns.
        - ``max_drawdown``: the largest fall from a running peak, as a positive fraction of that
          peak: ``max_t(1 - E_t / max(initial_cash, E_0..E_t))``; 0 when equity never falls.
        - ``trades``: the number of closed trades (rows of ``trades``).
        - ``win_rate``: the fraction of trades with ``pnl > 0``; 0 with no trades.
        - ``profit_factor``: gross wins / gross losses, i.e. ``sum(pnl > 0) / -sum(pnl < 0)``;
          ``inf`` when there are wins but no losses, 0 when there are no wins (including no
          trades).
        - ``exposure``: the fraction of equity rows (bars) during which a position was held: a
          bar whose open time ``ts`` satisfies ``entry_ts <= ts < exit_ts`` for some trade (an
          entry fills at a bar's open; an exit at a later bar's open, or at the last bar's
          close for a forced exit).

    Raises
    ------
    ConfigError
        If ``initial_cash`` is not positive or the frames lack the needed columns.
    """
    import numpy as np

    if not initial_cash > 0:
        raise ConfigError(f"initial_cash {initial_cash!r} must be > 0")
    for frame, cols, what in (
        (trades, ("entry_ts", "exit_ts", "pnl"), "trades"),
        (equity, ("ts", "equity"), "equity"),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ConfigError(f"compute_metrics: the {what} frame has no column(s) {missing}")

    eq = equity["equity"].cast(float).to_numpy()
    ts = _ts_ns(equity["ts"])
    cash0 = float(initial_cash)
    last = float(eq[-1]) if len(eq) else cash0

    total_return = last / cash0 - 1.0
    if len(ts) >= 2:
        span_ns = int(ts[-1] - ts[0]) + int(np.median(np.diff(ts)))
    else:
        span_ns = _DAY_NS
    days = span_ns / _DAY_NS
    if last <= 0:
        cagr = -1.0
    else:
        cagr = (last / cash0) ** (PERIODS_PER_YEAR / days) - 1.0

    r = _daily_returns(ts, eq, cash0)
    sharpe, sortino = _sharpe_sortino(r)

    peak = np.maximum.accumulate(np.concatenate(([cash0], eq)))
    max_drawdown = float(np.max(1.0 - np.concatenate(([cash0], eq)) / peak)) if len(eq) else 0.0

    pnl = trades["pnl"].cast(float).to_numpy()
    n_trades = len(pnl)
    wins = float(pnl[pnl > 0].sum())
    losses = float(-pnl[pnl < 0].sum())
    win_rate = float((pnl > 0).sum() / n_trades) if n_trades else 0.0
    if losses > 0:
        profit_factor = wins / losses
    else:
        profit_factor = math.inf if wins > 0 else 0.0

    exposure = 0.0
    if len(ts) and n_trades:
        held = np.zeros(len(ts), dtype=bool)
        starts = np.searchsorted(ts, _ts_ns(trades["entry_ts"]), side="left")
        ends = np.searchsorted(ts, _ts_ns(trades["exit_ts"]), side="left")
        for a, b in zip(starts, ends, strict=True):
            held[a:b] = True
        exposure = float(held.mean())

    return {
        "total_return": float(total_return),
        "cagr": float(cagr),
        "sharpe": sharpe,
        "sortino": sortino,
        "max_drawdown": max_drawdown,
        "trades": float(n_trades),
        "win_rate": win_rate,
        "profit_factor": float(profit_factor),
        "exposure": exposure,
    }


def _ts_ns(col: pl.Series) -> np.ndarray:
    import numpy as np
    import polars as pl

    return np.asarray(col.cast(pl.Datetime("ns", "UTC")).dt.epoch("ns").to_numpy(), dtype=np.int64)


def _daily_returns(ts: np.ndarray, eq: np.ndarray, cash0: float) -> np.ndarray:
    import numpy as np

    if not len(ts):
        return np.empty(0)
    day = ts // _DAY_NS
    # last row of each UTC day (ts is sorted)
    last_of_day = np.flatnonzero(np.append(day[1:] != day[:-1], True))
    daily = np.concatenate(([cash0], eq[last_of_day]))
    return daily[1:] / daily[:-1] - 1.0  # type: ignore[no-any-return]


def _sharpe_sortino(r: np.ndarray) -> tuple[float, float]:
    import numpy as np

    if len(r) < 2:
        return math.nan, math.nan
    mean = float(r.mean())
    std = float(r.std(ddof=1))
    scale = math.sqrt(PERIODS_PER_YEAR)
    sharpe = mean / std * scale if std > 0 else 0.0
    downside = math.sqrt(float(np.sum(np.minimum(r, 0.0) ** 2)) / (len(r) - 1))
    if downside > 0:
        sortino = mean / downside * scale
    else:
        sortino = math.inf if mean > 0 else 0.0
    return sharpe, sortino
