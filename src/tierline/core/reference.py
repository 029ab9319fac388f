"""The reference engine: a plain-Python event loop that implements the conventions exactly.

It is small on purpose, so that it can be read against `tierline.core.conventions` line by
line; every other engine is compared with it. Per bar t, in order:

1. Fill at bar t's open what was decided at bar t-1's close (an entry or an exit).
2. Decide at bar t's close: in a position, ``exit_long[t]`` orders an exit; flat,
   ``enter_long[t]`` orders an entry (so when both are true, the exit wins in a position and
   the entry wins when flat). Other signals are ignored. Nothing is ordered on the last bar
   (there is no next open to fill at).
3. On the last bar, close a still-open position at its close; the trade's ``exit_ts`` is that
   bar's close time (open + timeframe, the timeframe being the bars' median spacing).
4. Mark equity at bar t's close: cash plus ``qty * close`` (no exit fee is deducted until the
   exit fills).

Entry with equity ``E`` (all of it, or ``min(stake, E)`` with a fixed stake, since a stake
cannot exceed the cash there is): ``qty = stake / (entry * (1 + fee))``, cash falls by
``stake``. Exit: cash rises by ``qty * exit * (1 - fee)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tierline.core.conventions import ExecutionConfig, trade_return
from tierline.core.result import BacktestResult, trades_from_rows
from tierline.errors import DataError

if TYPE_CHECKING:
    import polars as pl

    from tierline.strategy.contract import Strategy

__all__ = ["run"]


def run(
    strategy: Strategy,
    bars: pl.DataFrame,
    params: Mapping[str, Any],
    config: ExecutionConfig,
) -> BacktestResult:
    """Backtest ``strategy`` on ``bars`` with the reference event loop.

    Parameters
    ----------
    strategy
        The strategy.
    bars
        Catalog OHLCV bars: ``ts`` (bar open, UTC), ``open, high, low, close, volume``, sorted.
    params
        Strategy parameters (validated here: defaults filled in, constraints checked).
    config
        Fee, initial cash and stake.

    Returns
    -------
    BacktestResult
        ``engine="reference"``, the trades table and one equity row per bar.

    Raises
    ------
    ConfigError
        If the parameters are invalid.
    DataError
        If there are no bars.
    EngineError
        If the signal function fails or returns a malformed frame.
    """
    import numpy as np
    import polars as pl

    from tierline.core.bars import to_strategy_frame

    if bars.is_empty():
        raise DataError(f"no bars to backtest {strategy.name!r} on")
    checked = strategy.validate_params(params)
    signals = strategy.signals(to_strategy_frame(bars), checked)
    enter = signals.enter_long.tolist()
    exit_ = signals.exit_long.tolist()

    ts_ns = bars["ts"].cast(pl.Datetime("ns", "UTC")).dt.epoch("ns").to_numpy()
    ts = [int(v) for v in ts_ns]
    opens = bars["open"].cast(pl.Float64).to_list()
    closes = bars["close"].cast(pl.Float64).to_list()
    n = len(ts)
    fee = config.fee

    cash = float(config.initial_cash)
    in_position = False
    qty = entry_price = stake = 0.0
    entry_ts = 0
    order: str | None = None  # "enter" / "exit", decided at the previous bar's close
    rows: list[tuple[int, int, float, float, float, float, float, float]] = []
    equity: list[float] = []

    def close_trade(exit_at: int, price: float) -> None:
        nonlocal cash, in_position, qty
        proceeds = qty * price * (1.0 - fee)
        fees = qty * entry_price * fee + qty * price * fee
        rows.append(
            (
                entry_ts,
                exit_at,
                entry_price,
                price,
                qty,
                fees,
                proceeds - stake,
                trade_return(entry_price, price, fee),
            )
        )
        cash += proceeds
        in_position, qty = False, 0.0

    for t in range(n):
        # 1. fill at this bar's open
        if order == "enter":
            stake = cash if config.stake is None else min(config.stake, cash)
            if stake > 0:
                entry_price = opens[t]
                qty = stake / (entry_price * (1.0 + fee))
                cash -= stake
                entry_ts = ts[t]
                in_position = True
        elif order == "exit":
            close_trade(ts[t], opens[t])
        order = None
        # 2. decide at this bar's close (no order on the last bar: nothing to fill it)
        if t < n - 1:
            if in_position and exit_[t]:
                order = "exit"
            elif not in_position and enter[t]:
                order = "enter"
        # 3. force-close at the last bar's close
        elif in_position:
            close_trade(ts[t] + _timeframe_ns(ts_ns), closes[t])
        # 4. mark at the close
        equity.append(cash + qty * closes[t] if in_position else cash)

    trades = trades_from_rows(rows)
    curve = pl.DataFrame(
        {
            "ts": bars["ts"].cast(pl.Datetime("ns", "UTC")),
            "equity": np.asarray(equity, dtype=np.float64),
        }
    )
    return BacktestResult(
        engine="reference",
        trades=trades,
        equity=curve,
        extra={"params": checked, "warmup": strategy.warmup(checked)},
    )


def _timeframe_ns(ts_ns: Any) -> int:
    """Return the median spacing of the bar open times in ns."""
    import numpy as np

    if len(ts_ns) < 2:
        raise DataError("cannot infer the timeframe from a single bar")
    return int(np.median(np.diff(ts_ns)))
