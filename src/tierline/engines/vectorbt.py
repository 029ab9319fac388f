"""Tier 1 engine: vectorbt ``Portfolio.from_signals`` made to follow the execution conventions.

How each convention of `tierline.core.conventions` is met:

- decide on bar t, fill at bar t+1's open: the strategy's signals are shifted one bar and
  ``price`` is the open;
- ``fees`` is the fee rate on both legs;
- all-equity stake: ``size=np.inf`` (vectorbt then buys ``cash / (1 + fee) / open``, the
  conventions' quantity); a fixed stake is an amount per bar,
  ``stake / (open * (1 + fee))`` (vectorbt fills less when cash is short);
- one long position, no accumulation (``direction="longonly"``, ``accumulate=False``), no
  minimum order size (``min_size=0``; vectorbt's default 1e-8 rejects the entries of a
  strategy whose equity has decayed to dust);
- entry and exit on one bar (exit wins in a position, entry wins when flat; none of
  vectorbt's conflict modes does this): `tierline.engines._vectorbt_nb.resolve_conflicts_nb`
  clears the losing signal of such bars using the position the signals imply, before vectorbt
  runs (see that module for why not a custom ``signal_func_nb``);
- the index is a naive UTC ``DatetimeIndex`` (a tz-aware one makes vectorbt ~25x slower);
- a position open after the last bar: vectorbt reports it as an open trade valued at the last
  close; this adapter closes it there, charges the exit fee, stamps it
  ``last bar open + timeframe`` and takes the fee off the last equity value.

Trades and equity are read from vectorbt's records and value series; no vectorbt statistic is
used (metrics come from `tierline.core.metrics`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from tierline.core.bars import to_strategy_frame
from tierline.core.conventions import ExecutionConfig
from tierline.core.result import TRADES_TABLE_SCHEMA, BacktestResult
from tierline.errors import DataError, EngineError

if TYPE_CHECKING:
    import pandas as pd

    from tierline.strategy.contract import Strategy

__all__ = ["bar_ns", "portfolio", "run", "run_signals", "shift_signals"]

logger = logging.getLogger(__name__)

ENGINE = "vectorbt"


def shift_signals(signals: np.ndarray) -> np.ndarray:
    """Return boolean signals moved one bar later along axis 0 (first bar False).

    A signal decided on bar t's close becomes an order on bar t+1; a signal on the last bar
    has no bar to fill on and is dropped.
    """
    a = np.asarray(signals, dtype=bool)
    out = np.zeros_like(a)
    out[1:] = a[:-1]
    return out


def bar_ns(ts: np.ndarray) -> int:
    """Return the bar length in nanoseconds: the median step between consecutive bars.

    The same rule as the reference engine, which stamps a forced final exit at the last bar's
    open plus this length.

    Raises
    ------
    DataError
        If there are fewer than two bars or the times do not increase.
    """
    t = np.asarray(ts).astype("datetime64[ns]").astype(np.int64)
    if len(t) < 2:
        raise DataError("cannot tell the bar length from fewer than two bars")
    d = np.diff(t)
    if (d <= 0).any():
        raise DataError("bar times must increase strictly")
    return int(np.median(d))


def portfolio(
    open_: np.ndarray,
    close: np.ndarray,
    enter: np.ndarray,
    exit_: np.ndarray,
    config: ExecutionConfig,
    *,
    index: pd.DatetimeIndex | None = None,
    freq: Any = None,
) -> Any:
    """Simulate signals with ``vectorbt.Portfolio.from_signals`` under the conventions.

    Parameters
    ----------
    open_, close
        Bar open and close prices, shape ``(n,)``.
    enter, exit_
        Signals as decided (not yet shifted), shape ``(n,)`` or ``(n, k)`` for ``k`` columns
        simulated independently.
    config
        Fee, initial cash and stake.
    index
        Naive UTC DatetimeIndex of the bars (RangeIndex when None).
    freq
        Bar frequency passed to vectorbt (only used by its own statistics).

    Returns
    -------
    vectorbt.Portfolio
        One column per signal column.
    """
    import pandas as pd
    import vectorbt as vbt

    from tierline.engines._vectorbt_nb import resolve_conflicts_nb

    if index is not None and getattr(index, "tz", None) is not None:
        raise EngineError("vectorbt adapter: pass a naive UTC index (tz-aware is ~25x slower)")
    enter2 = np.asarray(enter, dtype=bool)
    exit2 = np.asarray(exit_, dtype=bool)
    if enter2.ndim == 1:
        enter2 = enter2[:, None]
        exit2 = exit2[:, None]
    n, k = enter2.shape
    if exit2.shape != (n, k) or len(open_) != n or len(close) != n:
        raise EngineError(
            f"vectorbt adapter: signal shapes {enter2.shape}/{exit2.shape} do not match "
            f"{len(open_)} bars"
        )
    entries = np.ascontiguousarray(shift_signals(enter2))
    exits = np.ascontiguousarray(shift_signals(exit2))
    resolve_conflicts_nb(entries, exits)
    idx = index if index is not None else pd.RangeIndex(n)
    open_a = np.asarray(open_, dtype=np.float64)
    close_df = pd.DataFrame(
        np.broadcast_to(np.asarray(close, dtype=np.float64)[:, None], (n, k)), index=idx
    )
    if config.stake is None:
        size: Any = np.inf
    else:
        size = (config.stake / (open_a * (1.0 + config.fee)))[:, None]
    return vbt.Portfolio.from_signals(
        close_df,
        entries=entries,
        exits=exits,
        price=open_a[:, None],
        size=size,
        size_type="amount",
        fees=config.fee,
        init_cash=config.initial_cash,
        direction="longonly",
        upon_long_conflict="ignore",  # no conflict is left (resolve_conflicts_nb)
        min_size=0.0,  # the conventions have no minimum order (vectorbt's default is 1e-8)
        accumulate=False,
        freq=freq,
    )


def _trades_from_records(
    rec: np.ndarray,
    ts_ns: np.ndarray,
    open_: np.ndarray,
    close_last: float,
    fee: float,
    tf_ns: int,
) -> tuple[pl.DataFrame, float]:
    """Return the trades table of one column and the fee charged on a forced final exit.

    Prices are the fill prices (the bars' opens; the last close for a forced exit) rather
    than vectorbt's size-weighted average entry price, which can differ in the last bit.
    P&L is ``(exit - entry) * qty - entry_fees - exit_fees`` for every trade.
    """
    n_bars = len(ts_ns)
    entry_idx = rec["entry_idx"].astype(np.int64)
    exit_idx = rec["exit_idx"].astype(np.int64)
    is_open = rec["status"] == 0  # TradeStatus.Open
    qty = rec["size"].astype(np.float64)
    entry_price = open_[entry_idx]
    exit_price = np.where(is_open, close_last, open_[np.minimum(exit_idx, n_bars - 1)])
    entry_fees = rec["entry_fees"].astype(np.float64)
    exit_fees = np.where(is_open, qty * close_last * fee, rec["exit_fees"]).astype(np.float64)
    pnl = (exit_price - entry_price) * qty - entry_fees - exit_fees
    exit_ts = np.where(is_open, ts_ns[-1] + tf_ns, ts_ns[np.minimum(exit_idx, n_bars - 1)])
    # `trade_return`, elementwise in the same order of operations
    ret = exit_price * (1.0 - fee) / (entry_price * (1.0 + fee)) - 1.0
    forced_fee = float(exit_fees[is_open].sum()) if len(rec) else 0.0
    df = pl.DataFrame(
        {
            "entry_ts": pl.Series(ts_ns[entry_idx], dtype=pl.Int64),
            "exit_ts": pl.Series(exit_ts.astype(np.int64), dtype=pl.Int64),
            "entry_price": entry_price,
            "exit_price": exit_price,
            "qty": qty,
            "fees": entry_fees + exit_fees,
            "pnl": pnl,
            "return": ret,
        }
    ).with_columns(
        pl.col("entry_ts").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"),
        pl.col("exit_ts").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"),
    )
    return df.cast(TRADES_TABLE_SCHEMA), forced_fee  # type: ignore[arg-type]


def run_signals(
    bars: pl.DataFrame,
    enter: np.ndarray,
    exit_: np.ndarray,
    config: ExecutionConfig,
    *,
    notes: tuple[str, ...] = (),
) -> BacktestResult:
    """Backtest given (unshifted) signals on catalog bars and normalise the result.

    Parameters
    ----------
    bars
        Catalog OHLCV bars (``ts`` = bar open, UTC).
    enter, exit_
        Boolean signals aligned to ``bars``, as the strategy decided them.
    config
        Execution conventions.

    Returns
    -------
    BacktestResult
        Trades table and per-bar equity.
    """
    import pandas as pd

    if bars.is_empty():
        raise DataError("vectorbt adapter: no bars to backtest")
    ts_ns = bars["ts"].dt.cast_time_unit("ns").dt.replace_time_zone(None).to_numpy()
    ts_i = ts_ns.astype("datetime64[ns]").astype(np.int64)
    tf_ns = bar_ns(ts_i)
    open_ = bars["open"].to_numpy().astype(np.float64)
    close = bars["close"].to_numpy().astype(np.float64)
    index = pd.DatetimeIndex(ts_ns.astype("datetime64[ns]"))
    pf = portfolio(
        open_, close, enter, exit_, config, index=index, freq=pd.Timedelta(tf_ns, unit="ns")
    )
    rec = pf.trades.records
    trades, forced_fee = _trades_from_records(rec, ts_i, open_, float(close[-1]), config.fee, tf_ns)
    value = np.asarray(pf.value()).reshape(-1).astype(np.float64)
    if forced_fee:
        value = value.copy()
        value[-1] -= forced_fee
    equity = pl.DataFrame({"ts": bars["ts"], "equity": value})
    return BacktestResult(engine=ENGINE, trades=trades, equity=equity, notes=notes)


def run(
    strategy: Strategy,
    bars: pl.DataFrame,
    params: Mapping[str, Any] | None,
    config: ExecutionConfig,
) -> BacktestResult:
    """Backtest one strategy and parameter set with vectorbt.

    Parameters
    ----------
    strategy
        The strategy (its signal function is called once over all bars).
    bars
        Catalog OHLCV bars, ``ts`` = bar open (UTC), sorted.
    params
        Parameters (defaults filled in and checked against the strategy's space).
    config
        Execution conventions.

    Returns
    -------
    BacktestResult
        ``engine="vectorbt"``; trades table and equity curve.

    Raises
    ------
    ConfigError
        If the parameters are invalid.
    EngineError
        If the strategy's signal function fails or vectorbt does.
    """
    p = strategy.validate_params(params)
    sig = strategy.signals(to_strategy_frame(bars), p)
    try:
        return run_signals(bars, sig.enter_long, sig.exit_long, config)
    except (DataError, EngineError):
        raise
    except Exception as e:  # vectorbt / numba errors
        raise EngineError(
            f"vectorbt failed for {strategy.name!r} {p}: {type(e).__name__}: {e}"
        ) from e
