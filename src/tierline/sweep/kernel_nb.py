"""Fused numba kernel: the execution conventions simulated for many parameter sets at once.

Inputs are precomputed signal arrays (one row per parameter set, as the strategy decided them,
not shifted) and the bars' open and close. Each row is simulated exactly as
`tierline.engines.vectorbt` simulates it, down to vectorbt's floating-point steps:

- an order decided at bar t's close fills at bar t+1's open; nothing is ordered on the last bar;
- in a position ``exit`` orders an exit, flat ``enter`` orders an entry (so the exit wins in a
  position and the entry wins when flat);
- entry with all equity: ``max_cash = cash / (1 + fee)``, ``qty = max_cash / open``, fee
  ``cash - max_cash``, cash 0 (vectorbt's ``buy_nb`` with ``size=inf``); with a fixed stake
  the requested ``qty = stake / (open * (1 + fee))`` is bought if cash covers
  ``qty * open * (1 + fee)`` (vectorbt's tolerance), else all cash as above;
- exit: cash rises by ``qty * open - qty * open * fee``;
- equity at bar t: cash as vectorbt re-derives it from its order records, plus
  ``close * qty``; a position still open at the end is closed at the last close, its exit fee
  ``qty * close * fee`` taken off the last equity value (as the vectorbt adapter does);
- trade P&L ``(exit - entry) * qty - entry_fees - exit_fees``, as the adapter computes it.

Where results can still differ: only once equity has decayed to dust. vectorbt compares
sizes and cash with an absolute tolerance of 1e-12 (an exit within 1e-12 units of zero is
ignored, leaving the dust position open; the kernel, like the reference engine, closes it),
so a strategy that has lost all but ~1e-6 of its quote equity may count trades differently.
The benchmark's 7,830 sets, some of which trade 11,000 times, agree exactly.

`sweep_nb` runs rows in parallel (``prange``) and keeps, per row, only what the common metrics
need: final equity, trade counts, gross wins and losses, bars held, maximum drawdown and the
equity at the end of each UTC day. `simulate_nb` runs one row and can also record the equity
curve and the trades (for tests and for stitching walk-forward segments).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = [
    "N_STATS",
    "N_TRADE_FIELDS",
    "STAT_BARS_HELD",
    "STAT_FINAL_EQUITY",
    "STAT_GROSS_LOSS",
    "STAT_GROSS_WIN",
    "STAT_MAX_DD",
    "STAT_TRADES",
    "STAT_WINS",
    "simulate_nb",
    "sweep_nb",
]

STAT_FINAL_EQUITY = 0
STAT_TRADES = 1
STAT_WINS = 2
STAT_GROSS_WIN = 3
STAT_GROSS_LOSS = 4
STAT_BARS_HELD = 5
STAT_MAX_DD = 6
N_STATS = 7
#: Trade record columns: entry_idx, exit_idx (n for a forced exit), entry_price, exit_price,
#: qty, entry_fees, exit_fees, pnl.
N_TRADE_FIELDS = 8

_REL_TOL = 1e-9  # vectorbt.utils.math_.rel_tol
_ABS_TOL = 1e-12  # vectorbt.utils.math_.abs_tol


@njit(cache=True)
def _is_close_nb(a: float, b: float) -> bool:  # pragma: no cover - compiled
    if np.isnan(a) or np.isnan(b) or np.isinf(a) or np.isinf(b):
        return False
    if a == b:
        return True
    return abs(a - b) <= max(_REL_TOL * max(abs(a), abs(b)), _ABS_TOL)


@njit(cache=True)
def _write_trade_nb(
    row: np.ndarray,
    entry_idx: int,
    exit_idx: int,
    entry_price: float,
    exit_price: float,
    qty: float,
    entry_fees: float,
    exit_fees: float,
    pnl: float,
) -> None:  # pragma: no cover - compiled
    """Fill one trade record (columns as `N_TRADE_FIELDS` describes)."""
    row[0] = entry_idx
    row[1] = exit_idx
    row[2] = entry_price
    row[3] = exit_price
    row[4] = qty
    row[5] = entry_fees
    row[6] = exit_fees
    row[7] = pnl


@njit(cache=True)
def _add_nb(a: float, b: float) -> float:  # pragma: no cover - compiled
    """vectorbt's ``add_nb``: a sum that snaps to 0 when the terms (nearly) cancel."""
    if np.sign(a) != np.sign(b):
        if _is_close_nb(abs(a), abs(b)):
            return 0.0
    elif _is_close_nb(a + b, 0.0):
        return 0.0
    return a + b


@njit(cache=True)
def simulate_nb(
    open_: np.ndarray,
    close: np.ndarray,
    enter: np.ndarray,
    exit_: np.ndarray,
    fee: float,
    init_cash: float,
    stake: float,
    day_end: np.ndarray,
    daily_out: np.ndarray,
    equity_out: np.ndarray,
    trades_out: np.ndarray,
) -> tuple[float, float, float, float, float, float, float]:  # pragma: no cover - compiled
    """Simulate one row of signals; return the statistics tuple (see ``STAT_*``).

    Parameters
    ----------
    open_, close
        Bar prices, length n.
    enter, exit_
        Signals as decided at each bar's close (not shifted), length n.
    fee, init_cash
        Fee rate per leg and starting cash.
    stake
        Fixed quote stake per trade, or NaN for all equity.
    day_end
        Sorted indices of the last bar of each UTC day.
    daily_out
        Filled with the equity at each ``day_end`` bar (pass an empty array to skip).
    equity_out
        Filled with the equity of every bar (pass an empty array to skip).
    trades_out
        Filled with one row per trade (``N_TRADE_FIELDS`` columns; pass shape ``(0, 8)`` to
        skip); it needs at least ``n // 2 + 1`` rows.
    """
    n = open_.shape[0]
    record_eq = equity_out.shape[0] > 0
    record_tr = trades_out.shape[0] > 0
    record_daily = daily_out.shape[0] > 0
    cash = init_cash  # in-simulation cash (sizes orders)
    cash_v = init_cash  # cash as vectorbt's value series derives it from the orders
    pos = 0.0
    order = 0  # 1 enter, 2 exit, decided at the previous bar's close
    entry_idx = 0
    entry_price = 0.0
    entry_fees = 0.0
    n_trades = 0
    wins = 0
    gross_win = 0.0
    gross_loss = 0.0
    bars_held = 0
    peak = init_cash
    max_dd = 0.0
    d = 0
    n_days = day_end.shape[0]
    eq = init_cash
    for t in range(n):
        # 1. fill at this bar's open
        if order == 1:
            price = open_[t]
            size = 0.0
            fees_paid = 0.0
            filled = False
            if not np.isnan(stake):
                req_size = stake / (price * (1.0 + fee))
                req_cash = req_size * price
                req_fees = req_cash * fee
                total = req_cash + req_fees
                if _is_close_nb(total, cash) or total < cash:
                    size = req_size
                    fees_paid = req_fees
                    cash = _add_nb(cash, -total)
                    filled = True
            if not filled and cash != 0.0:
                max_req_cash = _add_nb(cash, -0.0) / (1.0 + fee)
                if max_req_cash > 0.0:
                    size = max_req_cash / price
                    fees_paid = cash - max_req_cash
                    cash = _add_nb(cash, -cash)
                    filled = True
            if filled:
                cash_v = _add_nb(cash_v, -size * price - fees_paid)
                pos = size
                entry_idx = t
                entry_price = price
                entry_fees = fees_paid
        elif order == 2:
            price = open_[t]
            acq = pos * price
            exit_fees = acq * fee
            cash = cash + _add_nb(acq, -exit_fees)
            cash_v = _add_nb(cash_v, pos * price - exit_fees)
            pnl = (price - entry_price) * pos - entry_fees - exit_fees
            if record_tr:
                _write_trade_nb(
                    trades_out[n_trades],
                    entry_idx,
                    t,
                    entry_price,
                    price,
                    pos,
                    entry_fees,
                    exit_fees,
                    pnl,
                )
            n_trades += 1
            if pnl > 0:
                wins += 1
                gross_win += pnl
            elif pnl < 0:
                gross_loss -= pnl
            bars_held += t - entry_idx
            pos = _add_nb(pos, -pos)
        order = 0
        # 2. decide at this bar's close (nothing on the last bar)
        if t < n - 1:
            if pos > 0:
                if exit_[t]:
                    order = 2
            elif enter[t]:
                order = 1
        # 3. mark at the close; force-close on the last bar
        eq = cash_v + close[t] * pos
        if t == n - 1 and pos > 0:
            price = close[t]
            exit_fees = pos * price * fee
            pnl = (price - entry_price) * pos - entry_fees - exit_fees
            if record_tr:
                _write_trade_nb(
                    trades_out[n_trades],
                    entry_idx,
                    n,
                    entry_price,
                    price,
                    pos,
                    entry_fees,
                    exit_fees,
                    pnl,
                )
            n_trades += 1
            if pnl > 0:
                wins += 1
                gross_win += pnl
            elif pnl < 0:
                gross_loss -= pnl
            bars_held += n - entry_idx
            eq = eq - exit_fees
        if record_eq:
            equity_out[t] = eq
        if eq > peak:
            peak = eq
        dd = 1.0 - eq / peak
        if dd > max_dd:
            max_dd = dd
        if record_daily and d < n_days and day_end[d] == t:
            daily_out[d] = eq
            d += 1
    return (
        eq,
        float(n_trades),
        float(wins),
        gross_win,
        gross_loss,
        float(bars_held),
        max_dd,
    )


@njit(cache=True, parallel=True)
def sweep_nb(
    open_: np.ndarray,
    close: np.ndarray,
    enter: np.ndarray,
    exit_: np.ndarray,
    fee: float,
    init_cash: float,
    stake: float,
    day_end: np.ndarray,
    stats_out: np.ndarray,
    daily_out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Simulate every row of ``enter``/``exit_`` (shape ``(k, n)``) in parallel.

    Fills ``stats_out`` (``(k, N_STATS)``) and ``daily_out`` (``(k, len(day_end))``, or
    ``(k, 0)`` to skip the daily equity).
    """
    k = enter.shape[0]
    for j in prange(k):
        no_eq = np.empty(0, dtype=np.float64)
        no_tr = np.empty((0, N_TRADE_FIELDS), dtype=np.float64)
        s = simulate_nb(
            open_,
            close,
            enter[j],
            exit_[j],
            fee,
            init_cash,
            stake,
            day_end,
            daily_out[j],
            no_eq,
            no_tr,
        )
        for m in range(N_STATS):
            stats_out[j, m] = s[m]
