"""Tier 2 engine: the unchanged strategy inside a NautilusTrader ``BacktestEngine``.

The strategy runs as it would run live: a nautilus ``Strategy`` receives the bars one by one,
keeps the last ``strategy.warmup(params)`` of them in NumPy ring buffers and, on every bar,
computes the signal of that bar from that window alone. Signals are never computed ahead of
time. Two ways, chosen by the strategy:

- its per-bar hook (``on_bar=`` of `tierline.strategy.strategy`), when it declares one: the
  window as a `BarWindow` of read-only NumPy views into the ring buffers, no pandas at all.
  The hook is checked against the vectorised signal function by `tierline check`
  (`tierline.core.causality.check_causality`);
- otherwise its vectorised signal function, on the window as a frame laid out like
  `tierline.core.bars.to_strategy_frame` (``date, open, high, low, close, volume``,
  RangeIndex), reading the last row. Correct for any strategy, but building a frame and
  running pandas code on every bar costs several times what nautilus itself spends per bar
  (see ``benchmarks/bench_tier2_nautilus.py``), hence the hook.

How the execution conventions (`tierline.core.conventions`) are met
-------------------------------------------------------------------
NautilusTrader stamps a bar at its close and, given bars only, fills a market order against
that bar (at its close by default); it has no "fill at the next bar's open" mode. This adapter
therefore feeds the venue two streams, merged in time order:

- one ``TradeTick`` per bar at the bar's **open** price, stamped at the bar's open time, with a
  size no order can exhaust (so an order never slips a tick on an exhausted level);
- the ``Bar`` itself, stamped at its close (open + bar length). The venue runs with
  ``bar_execution=False``, so bars never move the simulated market: only the open ticks do.

On bar t's close the strategy decides (an exit when in a position, an entry when flat: so when
both signals are true the exit wins in a position and the entry wins when flat) and only
records the decision. The next data point is bar t+1's open tick (a stable time sort keeps bar
t before a tick stamped at the same instant, and after a gap the next tick is the next bar's
open, whenever it comes). On that tick the strategy sizes and submits a market order, and the
matching engine fills it at once against the book the tick has just set: at bar t+1's open,
stamped at bar t+1's open time. Entry size is ``stake / (open * (1 + fee))`` rounded down to the
lot, ``stake`` being the account's free quote balance (compounding) or
``min(config.stake, free balance)``; an exit sells the whole position. The venue is a spot cash
account in the quote currency; the instrument a ``CurrencyPair`` whose tick and lot come from
`tierline.core.instruments.instrument_for`, with maker and taker fees both ``config.fee``
(market orders pay the taker fee, on both legs). A signal on the last bar has no next open and
is not acted on. A position still open after the last bar is sold by one more tick at the last
bar's close, stamped ``last open + bar length`` (the median bar spacing, as in
`tierline.core.reference`).

The window holds the catalog's float values of the bar nautilus delivered (checked to be the
same bar by its close time). nautilus keeps prices in fixed point, and converting back does not
always give the catalog's float: real files hold values one ulp away from the decimal they
print as (a third of the Bittrex closes), and one ulp is enough to flip a tie such as an RSI
of exactly 70. Fills are nautilus' own: prices on the tick, quantities on the lot.

The trades table is built from the fills nautilus reports (price, quantity, commission, time):
fees and P&L are nautilus' own (commissions rounded to the quote currency), the return is the
table's definition applied to the fill prices. The equity curve (one row per bar, marked at its
close) comes from the same fills and the closes, and is checked against nautilus' final account
balance (a note if they differ by more than one currency unit per fill). No nautilus statistic
is used; metrics come from `tierline.core.metrics`.

What differs from the conventions is stated in `BacktestResult.notes`: the quantity is rounded
down to the lot (the reference trades an unrounded quantity; the remainder stays in cash, so
P&L differs by at most one lot's worth per trade); the lot is coarsened when nautilus holds the
base currency with fewer decimals (ADA: 6); prices off the tick are rounded to it for fills;
balances above 2**51 currency units are handled in doubles by nautilus. Exchange minimums
(``min_notional``) are not enforced, as in the conventions. The cash account is allowed to
borrow only because nautilus' risk check converts a large sell quantity to a double and would
deny selling the whole position; the sizing above never spends more than the cash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from tierline.core.conventions import ExecutionConfig, trade_return
from tierline.core.result import BacktestResult, trades_from_rows
from tierline.errors import ConfigError, DataError, EngineError, TierlineError
from tierline.strategy.contract import SIGNAL_COLUMNS, BarWindow, bar_signal_pair, format_params

if TYPE_CHECKING:
    import pandas as pd

    from tierline.core.instruments import InstrumentSpec
    from tierline.strategy.contract import Strategy

__all__ = ["ENGINE", "run"]

ENGINE = "nautilus"
#: Exchange and symbol used when the caller names none (the spec is then inferred from bars).
_ANON_EXCHANGE, _ANON_SYMBOL = "backtest", "BASE/QUOTE"
_VENUE = "TIERLINE"  # a name of our own: cash borrowing is registered per venue name
_FRAME_COLUMNS = ("date", "open", "high", "low", "close", "volume")
#: Largest balance, in currency units, that nautilus' double arithmetic keeps to the unit.
_MAX_EXACT_UNITS = 2**51


def run(
    strategy: Strategy,
    bars: pl.DataFrame,
    params: Mapping[str, Any],
    config: ExecutionConfig,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    instrument: InstrumentSpec | None = None,
) -> BacktestResult:
    """Backtest ``strategy`` on ``bars`` in a NautilusTrader ``BacktestEngine``.

    Parameters
    ----------
    strategy
        The strategy; its per-bar hook, or else its signal function, is called once per bar
        on a rolling window.
    bars
        Catalog OHLCV bars: ``ts`` (bar open, UTC), ``open, high, low, close, volume``, sorted.
    params
        Strategy parameters (validated here: defaults filled in, constraints checked).
    config
        Fee, initial cash and stake.
    exchange, symbol
        The market the bars come from; its tick and lot come from ``nautilus/venues.toml`` (see
        `tierline.core.instruments.instrument_for`). When either is None (and no
        ``instrument`` is given) the tick is inferred from the bars and the lot is 1e-8.
    instrument
        The instrument spec to trade, overriding ``exchange`` and ``symbol``.

    Returns
    -------
    BacktestResult
        ``engine="nautilus"``, the trades table, one equity row per bar and notes on what
        differs from the conventions.

    Raises
    ------
    ConfigError
        If the parameters are invalid or the instrument cannot be resolved.
    DataError
        If there are no bars.
    EngineError
        If nautilus fails, or the strategy raises or returns a malformed frame inside it (the
        message names the strategy, its parameters and the bar).
    """
    from tierline.core.instruments import InstrumentSpec, infer_tick, instrument_for

    if bars.is_empty():
        raise DataError(f"no bars to backtest {strategy.name!r} on")
    checked = strategy.validate_params(params)
    notes: list[str] = []
    if instrument is not None:
        spec = instrument
    elif exchange is None or symbol is None:
        spec = InstrumentSpec(
            exchange=_ANON_EXCHANGE,
            symbol=_ANON_SYMBOL,
            price_increment=infer_tick(bars),
            source="inferred",
        )
        notes.append(
            f"no exchange/symbol given: tick {spec.price_increment} inferred from the bars, "
            f"lot {spec.size_increment}"
        )
    else:
        spec = instrument_for(exchange, symbol, bars)
    data = _BarArrays.from_frame(bars)
    notes.extend(data.grid_notes(spec))
    try:
        sim = _simulate(strategy, checked, config, spec, data)
    except TierlineError:
        raise
    except Exception as e:
        raise EngineError(
            f"nautilus failed running {strategy.name!r} (params {format_params(checked)}) on "
            f"{len(bars)} bars: {type(e).__name__}: {e}"
        ) from e
    notes.extend(sim.notes)
    trades, equity = _normalise(sim.fills, data, config)
    balance = sim.final_balances.get(spec.quote)
    last = float(equity["equity"][-1])
    # nautilus rounds each balance change to the currency: allow one unit per fill.
    slack = (len(sim.fills) + 1) * 10.0**-sim.quote_precision + 1e-12 * abs(last)
    if balance is not None and abs(balance - last) > slack:
        notes.append(
            f"nautilus' final {spec.quote} balance {balance!r} differs from the equity "
            f"{last!r} rebuilt from its fills"
        )
    if len(trades) and spec.size_increment:
        notes.append(
            f"entry quantity rounded down to the lot {spec.size_increment} (the reference "
            "trades an unrounded quantity); the unspent remainder stays in cash"
        )
    return BacktestResult(
        engine=ENGINE,
        trades=trades,
        equity=equity,
        notes=tuple(notes),
        extra={
            "params": checked,
            "warmup": strategy.warmup(checked),
            "instrument": spec,
            "signal_calls": sim.signal_calls,
            # which of the strategy's functions produced the signals
            "signal_path": "on_bar" if strategy.on_bar_fn is not None else "frame",
            "final_balances": sim.final_balances,
        },
    )


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True, kw_only=True)
class _BarArrays:
    """Catalog bars as NumPy arrays, with the bar lengths the adapter stamps with."""

    ts: np.ndarray  # int64 ns, bar open
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    step_ns: int  # shortest spacing: bar close stamp = open + step_ns
    median_ns: int  # median spacing: forced-exit stamp = last open + median_ns

    @classmethod
    def from_frame(cls, bars: pl.DataFrame) -> _BarArrays:
        # Writable copies: polars hands out read-only views, which nautilus' Cython rejects.
        ts = np.array(bars["ts"].cast(pl.Datetime("ns", "UTC")).dt.epoch("ns"), dtype=np.int64)
        cols = {
            c: np.array(bars[c].cast(pl.Float64), dtype=np.float64)
            for c in ("open", "high", "low", "close", "volume")
        }
        if len(ts) >= 2:
            d = np.diff(ts)
            if (d <= 0).any():
                raise DataError("bar times must increase strictly")
            step, median = int(d.min()), int(np.median(d))
        else:
            step = median = 60_000_000_000  # one bar: no order can be filled anyway
        return cls(ts=ts, step_ns=step, median_ns=median, **cols)

    def __len__(self) -> int:
        return len(self.ts)

    def grid_notes(self, spec: InstrumentSpec) -> list[str]:
        """Say how many prices are off the tick (nautilus rounds them to it)."""
        tick = spec.tick
        prices = np.concatenate([self.open, self.high, self.low, self.close])
        scaled = prices / tick
        off = int(np.count_nonzero(np.abs(scaled - np.round(scaled)) > 1e-6))
        if not off:
            return []
        return [
            f"{off} bar prices are not multiples of the tick {spec.price_increment} and were "
            "rounded to it: fills and the strategy's window use the rounded prices"
        ]


def _volume_precision(volume: np.ndarray) -> int:
    """Return the fewest decimals (<= 12) that represent every volume exactly."""
    v = np.abs(volume[np.isfinite(volume)])
    if not len(v):
        return 0
    top = float(v.max())
    for d in range(13):
        if top * 10**d >= 2**53:
            return max(d - 1, 0)
        scaled = v * 10.0**d
        if np.all(np.abs(scaled - np.round(scaled)) <= 1e-9 * np.maximum(1.0, scaled)):
            return d
    return 12


def _bar_spec_step(step_ns: int) -> tuple[int, str]:
    """Return (step, BarAggregation name) for a bar length in ns."""
    for unit_ns, name in (
        (86_400_000_000_000, "DAY"),
        (3_600_000_000_000, "HOUR"),
        (60_000_000_000, "MINUTE"),
        (1_000_000_000, "SECOND"),
        (1_000_000, "MILLISECOND"),
    ):
        if step_ns % unit_ns == 0:
            return step_ns // unit_ns, name
    raise DataError(f"bar spacing {step_ns} ns is not a whole number of milliseconds")


# ----------------------------------------------------------------------------- simulation
@dataclass(kw_only=True)
class _Fill:
    ts: int
    side: str  # "BUY" / "SELL"
    order: str
    price: Decimal
    qty: Decimal
    commission: Decimal


@dataclass(kw_only=True)
class _SimResult:
    fills: list[_Fill]
    notes: list[str] = field(default_factory=list)
    signal_calls: int = 0
    final_balances: dict[str, float] = field(default_factory=dict)
    quote_precision: int = 8


@dataclass
class _Context:
    """Everything the nautilus strategy needs, passed by reference (not through its config)."""

    strategy: Strategy
    params: Mapping[str, Any]
    config: ExecutionConfig
    n_bars: int
    window: int
    step_ns: int
    ts: np.ndarray
    close_ns: np.ndarray
    ohlcv: np.ndarray  # (n, 5): open, high, low, close, volume as catalog floats
    fee: Decimal
    lot: Decimal
    base_unit: Decimal
    error: EngineError | None = None
    fills: list[_Fill] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    signal_calls: int = 0
    big_entries: int = 0


def _simulate(
    strategy: Strategy,
    params: Mapping[str, Any],
    config: ExecutionConfig,
    spec: InstrumentSpec,
    data: _BarArrays,
) -> _SimResult:
    from nautilus_trader.accounting.factory import AccountFactory
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig, RiskEngineConfig
    from nautilus_trader.model.data import (
        Bar,
        BarSpecification,
        BarType,
        TradeTick,
    )
    from nautilus_trader.model.enums import (
        AccountType,
        AggregationSource,
        BarAggregation,
        OmsType,
        PriceType,
    )
    from nautilus_trader.model.identifiers import TraderId, Venue
    from nautilus_trader.model.objects import QUANTITY_MAX, Money

    instrument, notes = _currency_pair(spec, config.fee)
    venue = Venue(_VENUE)
    step, agg = _bar_spec_step(data.step_ns)
    bar_type = BarType(
        instrument.id,
        BarSpecification(step, getattr(BarAggregation, agg), PriceType.LAST),
        AggregationSource.EXTERNAL,
    )
    n = len(data)
    vol_prec = _volume_precision(data.volume)

    engine = BacktestEngine(
        config=BacktestEngineConfig(
            trader_id=TraderId("TIERLINE-001"),
            logging=LoggingConfig(bypass_logging=True),
            risk_engine=RiskEngineConfig(bypass=False),
            run_analysis=False,
        )
    )
    # Cash borrowing is registered per venue name in a process-wide table: clear it first (a
    # previous run may have died before its cleanup) and after.
    AccountFactory.deregister_cash_borrowing(_VENUE)
    try:
        engine.add_venue(
            venue=venue,
            oms_type=OmsType.NETTING,
            account_type=AccountType.CASH,
            base_currency=None,
            starting_balances=[Money(config.initial_cash, instrument.quote_currency)],
            bar_execution=False,
            trade_execution=True,
            # The risk engine converts a sell's quantity to a double before comparing it with
            # the free balance; above ~2**51 units that rounds up and denies selling the whole
            # position. Sizing never spends more than the cash (checked after the run).
            allow_cash_borrowing=True,
        )
        engine.add_instrument(instrument)

        close_ns = (data.ts + data.step_ns).astype(np.uint64)
        bar_objs = Bar.from_raw_arrays_to_list(
            bar_type,
            instrument.price_precision,
            vol_prec,
            data.open,
            data.high,
            data.low,
            data.close,
            data.volume,
            close_ns,
            close_ns,
        )
        # Open ticks: one per bar at its open, and a final one at the last close (forced exit).
        tick_px = np.append(data.open, data.close[-1])
        tick_ts = np.append(data.ts, data.ts[-1] + data.median_ns).astype(np.uint64)
        size = float(math.floor(QUANTITY_MAX / 4))
        ticks = TradeTick.from_raw_arrays_to_list(
            instrument.id,
            instrument.price_precision,
            instrument.size_precision,
            tick_px,
            np.full(n + 1, size),
            np.zeros(n + 1, dtype=np.uint8),  # NO_AGGRESSOR: the print sets bid and ask
            [f"o{i}" for i in range(n + 1)],
            tick_ts,
            tick_ts,
        )
        stream: list[Any] = []
        for i in range(n):
            stream.append(ticks[i])
            stream.append(bar_objs[i])
        stream.append(ticks[n])
        engine.add_data(stream, sort=True)  # stable: a bar stays before a tick at its close

        ctx = _Context(
            strategy=strategy,
            params=params,
            config=config,
            n_bars=n,
            window=max(1, strategy.warmup(params)),
            step_ns=data.step_ns,
            ts=data.ts,
            close_ns=close_ns.astype(np.int64),
            # one contiguous row per bar: the window copies a bar in one assignment
            ohlcv=np.ascontiguousarray(
                np.column_stack([data.open, data.high, data.low, data.close, data.volume])
            ),
            fee=Decimal(repr(config.fee)),
            lot=instrument.size_increment.as_decimal(),
            base_unit=Decimal(1).scaleb(-instrument.base_currency.precision),
        )
        algo = _strategy_class()(ctx, instrument, bar_type)
        engine.add_strategy(algo)
        try:
            engine.run()
        except Exception as e:
            if ctx.error is not None:
                raise ctx.error from e.__cause__ or e
            raise EngineError(
                f"nautilus failed running {strategy.name!r} (params {format_params(params)}): "
                f"{type(e).__name__}: {e}"
            ) from e
        if ctx.error is not None:
            raise ctx.error
        account = engine.portfolio.account(venue)
        balances = {
            c.code: float(account.balance_total(c).as_decimal())
            for c in (instrument.base_currency, instrument.quote_currency)
            if account.balance_total(c) is not None
        }
        if ctx.big_entries:
            notes.append(
                f"{ctx.big_entries} entries bought more than 2**51 units of {spec.base}: nautilus "
                "handles such balances in doubles, so they may be off by a unit"
            )
        return _SimResult(
            fills=ctx.fills,
            notes=notes + ctx.problems,
            signal_calls=ctx.signal_calls,
            final_balances=balances,
            quote_precision=instrument.quote_currency.precision,
        )
    finally:
        engine.dispose()
        AccountFactory.deregister_cash_borrowing(_VENUE)


def _currency(code: str) -> Any:
    from nautilus_trader.model.objects import Currency

    # Known codes come from nautilus' map; unknown ones are registered as crypto, 8 decimals.
    return Currency.from_str(code, strict=False)


def _currency_pair(spec: InstrumentSpec, fee: float) -> tuple[Any, list[str]]:
    """Return the nautilus ``CurrencyPair`` for ``spec`` and notes on what had to change."""
    from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
    from nautilus_trader.model.instruments import CurrencyPair
    from nautilus_trader.model.objects import Price, Quantity

    if spec.is_perpetual:
        raise ConfigError(
            f"{spec.exchange} {spec.symbol}: the nautilus adapter trades spot pairs only"
        )
    notes: list[str] = []
    base, quote = _currency(spec.base), _currency(spec.quote)
    size_prec, size_inc = spec.size_precision, spec.size_increment
    if base.precision < size_prec:
        # A balance is held at its currency's precision: a finer lot would leave dust that
        # could never be sold.
        size_prec = base.precision
        size_inc = max(Decimal(size_inc), Decimal(1).scaleb(-size_prec)).to_eng_string()
        notes.append(
            f"lot coarsened from {spec.size_increment} to {size_inc}: nautilus holds {spec.base} "
            f"with {base.precision} decimals"
        )
    symbol = Symbol(spec.symbol)
    fee_d = Decimal(repr(fee))
    pair = CurrencyPair(
        instrument_id=InstrumentId(symbol, Venue(_VENUE)),
        raw_symbol=symbol,
        base_currency=base,
        quote_currency=quote,
        price_precision=spec.price_precision,
        size_precision=size_prec,
        price_increment=Price.from_str(spec.price_increment),
        size_increment=Quantity(float(size_inc), size_prec),
        ts_event=0,
        ts_init=0,
        maker_fee=fee_d,
        taker_fee=fee_d,
    )
    return pair, notes


_STRATEGY_CLASS: Any = None


def _strategy_class() -> Any:
    """Return the nautilus Strategy subclass (built once; nautilus is imported lazily)."""
    global _STRATEGY_CLASS
    if _STRATEGY_CLASS is None:
        _STRATEGY_CLASS = _make_strategy_class()
    return _STRATEGY_CLASS


def _make_strategy_class() -> Any:
    from nautilus_trader.config import StrategyConfig
    from nautilus_trader.model.enums import OrderSide, TimeInForce
    from nautilus_trader.model.objects import Quantity
    from nautilus_trader.trading.strategy import Strategy as NautilusStrategy

    class SignalStrategy(NautilusStrategy):  # type: ignore[misc]
        """Call the tierline signal function per bar on a rolling window; fill at next open."""

        def __init__(self, ctx: _Context, instrument: Any, bar_type: Any) -> None:
            super().__init__(StrategyConfig(order_id_tag="TL"))
            self._ctx = ctx
            self._instrument = instrument
            self._iid = instrument.id
            self._bar_type = bar_type
            self._window = _RingWindow(ctx.window)
            self._fn = ctx.strategy.signal_fn
            self._on_bar_fn = ctx.strategy.on_bar_fn
            self._params = ctx.params
            self._i = -1
            self._pending: str | None = None
            self._in_position = False
            self._position_qty = Quantity.zero(instrument.size_precision)
            self._quote = instrument.quote_currency

        def on_start(self) -> None:
            self.subscribe_bars(self._bar_type)
            self.subscribe_trade_ticks(self._iid)

        def on_bar(self, bar: Any) -> None:
            if self._ctx.error is not None:
                return
            self._i += 1
            i = self._i
            ctx = self._ctx
            if i >= ctx.n_bars or bar.ts_event != ctx.close_ns[i]:
                ctx.error = EngineError(
                    f"nautilus delivered bar {bar!r} where bar {i} closing at "
                    f"{ctx.close_ns[min(i, ctx.n_bars - 1)]} ns was expected"
                )
                raise ctx.error
            # The catalog's floats of this bar (nautilus' fixed-point copy can be an ulp off).
            window = self._window
            window.push(ctx.ts[i], ctx.ohlcv[i])
            if self._on_bar_fn is not None:  # the strategy's per-bar hook on NumPy arrays
                arrays = window.arrays()
                try:
                    enter, exit_ = bar_signal_pair(None, self._on_bar_fn(arrays, self._params))
                except Exception as e:
                    ctx.error = _strategy_error(ctx, i, len(arrays), e, hook="on_bar")
                    raise
            else:  # the vectorised signal function on a frame, reading its last row
                frame = window.frame()
                try:
                    out = self._fn(frame, self._params)
                    enter, exit_ = _last_signals(out, len(frame))
                except Exception as e:
                    ctx.error = _strategy_error(ctx, i, len(frame), e)
                    raise
            ctx.signal_calls += 1
            if i >= ctx.n_bars - 1:  # last bar: no next open; a held position is force-closed
                self._pending = "exit" if self._in_position else None
            elif self._in_position:
                self._pending = "exit" if exit_ else None
            else:
                self._pending = "enter" if enter else None

        def on_trade_tick(self, tick: Any) -> None:
            pending, self._pending = self._pending, None
            if pending == "enter":
                qty = self._entry_qty(tick.price.as_decimal())
                if qty is None:
                    return
                side = OrderSide.BUY
            elif pending == "exit":
                qty = self._position_qty
                side = OrderSide.SELL
            else:
                return
            order = self.order_factory.market(
                instrument_id=self._iid,
                order_side=side,
                quantity=qty,
                time_in_force=TimeInForce.GTC,
            )
            self.submit_order(order)

        def _entry_qty(self, price: Decimal) -> Any:
            ctx = self._ctx
            account = self.portfolio.account(self._iid.venue)
            cash = account.balance_free(self._quote).as_decimal()
            stake = cash if ctx.config.stake is None else min(Decimal(repr(ctx.config.stake)), cash)
            if stake <= 0:
                return None
            raw = stake / (price * (1 + ctx.fee))
            lot = ctx.lot
            if raw / ctx.base_unit >= _MAX_EXACT_UNITS:
                ctx.big_entries += 1
            qty = (raw / lot).to_integral_value(rounding=ROUND_DOWN) * lot
            # Keep notional + commission (rounded to the currency) within the cash, with two
            # units to spare for nautilus' double arithmetic in its balance check.
            unit = Decimal(1).scaleb(-self._quote.precision)

            def cost(q: Decimal) -> Decimal:
                return q * price + (q * price * ctx.fee).quantize(unit, rounding=ROUND_HALF_EVEN)

            if cost(qty) > cash - 2 * unit:
                qty = ((cash - 3 * unit) / (price * (1 + ctx.fee)) / lot).to_integral_value(
                    rounding=ROUND_DOWN
                ) * lot
                while qty > 0 and cost(qty) > cash - 2 * unit:
                    qty -= lot
            if qty <= 0:
                ctx.problems.append(f"bar {self._i + 1}: stake {stake} buys less than one lot")
                return None
            return Quantity.from_str(f"{qty:.{self._instrument.size_precision}f}")

        def on_order_filled(self, event: Any) -> None:
            side = "BUY" if event.order_side == OrderSide.BUY else "SELL"
            self._ctx.fills.append(
                _Fill(
                    ts=int(event.ts_event),
                    side=side,
                    order=event.client_order_id.value,
                    price=event.last_px.as_decimal(),
                    qty=event.last_qty.as_decimal(),
                    commission=event.commission.as_decimal(),
                )
            )
            if side == "BUY":
                self._position_qty = self._position_qty + event.last_qty
            else:
                self._position_qty = self._position_qty - event.last_qty
            self._in_position = self._position_qty.raw > 0

        def on_order_rejected(self, event: Any) -> None:
            self._ctx.problems.append(f"order rejected at {event.ts_event}: {event.reason}")

        def on_order_denied(self, event: Any) -> None:
            self._ctx.problems.append(f"order denied at {event.ts_event}: {event.reason}")

    return SignalStrategy


def _strategy_error(
    ctx: _Context, i: int, rows: int, e: Exception, *, hook: str | None = None
) -> EngineError:
    import pandas as pd

    when = pd.Timestamp(int(ctx.ts[i]), tz="UTC") if i < len(ctx.ts) else "?"
    if isinstance(e, EngineError):
        detail = str(e)
    else:
        detail = f"{hook + ' ' if hook else ''}raised {type(e).__name__}: {e}"
    return EngineError(
        f"strategy {ctx.strategy.name!r} {detail} inside nautilus at bar {i} (open {when}; "
        f"params {format_params(ctx.params)}, window of {rows} bars)"
    )


def _last_signals(out: Any, rows: int) -> tuple[bool, bool]:
    """Return the last row's (enter_long, exit_long), checked like `Strategy.signals`."""
    try:  # positions from a plain list: `in` on a fresh pandas Index builds a hash table
        names = out.columns.tolist()
    except AttributeError:
        names = []
    missing = [c for c in SIGNAL_COLUMNS if c not in names]
    if missing:
        raise EngineError(
            f"returned no column(s) {missing}; a signal function returns a DataFrame with "
            "boolean enter_long and exit_long"
        )
    if len(out) != rows:
        raise EngineError(f"returned {len(out)} rows for {rows} bars")
    try:  # the block manager hands out a column's array without building a Series
        if names.count("enter_long") != 1 or names.count("exit_long") != 1:
            raise LookupError("duplicate signal columns")
        get = out._mgr.iget_values
        enter = get(names.index("enter_long"))[-1]
        exit_ = get(names.index("exit_long"))[-1]
    except Exception:  # duplicate names, another frame type: the public way
        enter = np.asarray(out["enter_long"]).ravel()[-1]
        exit_ = np.asarray(out["exit_long"]).ravel()[-1]
    return _truthy(enter), _truthy(exit_)


def _truthy(value: Any) -> bool:
    """Return a signal value as bool the way `Strategy.signals` does (NA and NaN are False)."""
    if value is True or value is False:
        return value
    if value is None or value is _PD_NA:
        return False
    if isinstance(value, float | np.floating) and math.isnan(value):
        return False
    return bool(value)


#: pandas.NA, bound when the first frame maker is built (pandas is imported lazily).
_PD_NA: Any = object()


class _RingWindow:
    """The last ``size`` bars in doubled ring buffers: every window is one contiguous slice.

    Bar k is written at ``k % size`` and ``k % size + size``, so the last ``m`` bars always
    sit at ``[s, s + m)`` for ``s = (k - m + 1) % size``. The buffers only ever hold bars
    already delivered: nothing in a window, or behind its arrays, lies in the future.

    Two read-outs: `frame` (a fresh pandas frame, for signal functions) and `arrays` (a
    `BarWindow` of read-only views, for per-bar hooks). Once ``size`` bars have arrived there
    are only ``size`` distinct full windows, one per start ``s``, so their views are built once
    and reused: a full window costs no allocation at all.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        self.ts = np.zeros(2 * size, dtype=np.int64)
        self.values = np.zeros((5, 2 * size), dtype=np.float64)
        self._make: Any = None  # the frame maker, built on first use (imports pandas)
        self._full: list[BarWindow | None] = [None] * size

    def push(self, ts: int, ohlcv: np.ndarray) -> None:
        """Append one bar: its open time (ns) and its ``open, high, low, close, volume``."""
        j = self.count % self.size
        k = j + self.size
        self.ts[j] = self.ts[k] = ts
        self.values[:, j] = ohlcv
        self.values[:, k] = ohlcv
        self.count += 1

    def frame(self) -> pd.DataFrame:
        """Return the window as a new frame in the `to_strategy_frame` layout."""
        if self._make is None:
            self._make = _frame_maker()
        m = min(self.count, self.size)
        s = (self.count - m) % self.size
        frame: pd.DataFrame = self._make(
            self.ts[s : s + m].copy(), self.values[:, s : s + m].copy()
        )
        return frame

    def arrays(self) -> BarWindow:
        """Return the window as read-only array views (valid until the next `push`)."""
        if self.count >= self.size:
            s = self.count % self.size
            window = self._full[s]
            if window is None:
                window = self._full[s] = self._views(s, s + self.size)
            return window
        return self._views(0, self.count)  # the first bars: positions 0 .. count-1

    def _views(self, start: int, stop: int) -> BarWindow:
        views = [self.ts[start:stop], *(row[start:stop] for row in self.values)]
        for v in views:
            v.flags.writeable = False
        return BarWindow(*views)


def _frame_maker() -> Any:
    """Return ``make(ts_ns, values_5xm) -> DataFrame`` in the `to_strategy_frame` layout.

    Builds the frame straight from two pandas blocks (a datetime block and one 5-row float
    block: no per-column sanitising, no consolidation copy; about 4x faster than the dict
    constructor). The fast path is checked once against the public constructor and replaced by
    it if pandas' internals differ.
    """
    global _PD_NA
    import pandas as pd

    _PD_NA = pd.NA
    dtype = pd.DatetimeTZDtype(tz="UTC")
    columns = pd.Index(list(_FRAME_COLUMNS))

    def public(ts: np.ndarray, values: np.ndarray) -> pd.DataFrame:
        data: dict[str, Any] = {"date": pd.DatetimeIndex(ts.view("M8[ns]")).tz_localize("UTC")}
        for name, row in zip(_FRAME_COLUMNS[1:], values, strict=True):
            data[name] = row
        return pd.DataFrame(data)

    try:
        from pandas._libs.internals import BlockPlacement
        from pandas.core.arrays import DatetimeArray
        from pandas.core.internals import BlockManager
        from pandas.core.internals.blocks import new_block

        at_date, at_values = BlockPlacement(slice(0, 1)), BlockPlacement(slice(1, 6))
        from_mgr = pd.DataFrame._from_mgr  # type: ignore[attr-defined]

        indexes: dict[int, pd.RangeIndex] = {}  # immutable, so frames can share them

        def fast(ts: np.ndarray, values: np.ndarray) -> pd.DataFrame:
            n = len(ts)
            index = indexes.get(n)
            if index is None:
                index = indexes[n] = pd.RangeIndex(n)
            dates = DatetimeArray._simple_new(  # type: ignore[attr-defined]
                ts.view("M8[ns]"), dtype=dtype
            )
            blocks = (
                new_block(dates.reshape(1, -1), placement=at_date, ndim=2),
                new_block(values, placement=at_values, ndim=2),
            )
            mgr = BlockManager(blocks, [columns, index], verify_integrity=False)
            return from_mgr(mgr, axes=mgr.axes)

        probe_ts = np.array([0, 300_000_000_000], dtype=np.int64)
        probe = np.arange(10, dtype=np.float64).reshape(5, 2)
        frame = fast(probe_ts, probe.copy())
        pd.testing.assert_frame_equal(frame, public(probe_ts, probe))
        frame["extra"] = frame["close"] * 2  # a strategy may add columns (freqtrade style)
    except Exception:
        return public
    return fast


# ----------------------------------------------------------------------------- outputs
def _normalise(
    fills: list[_Fill], data: _BarArrays, config: ExecutionConfig
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the trades table and the equity curve from nautilus' fills."""
    # Merge partial fills per order (a market order against an unexhaustible level fills once).
    orders: dict[str, _Fill] = {}
    for f in fills:
        o = orders.get(f.order)
        if o is None:
            orders[f.order] = _Fill(
                ts=f.ts,
                side=f.side,
                order=f.order,
                price=f.price,
                qty=f.qty,
                commission=f.commission,
            )
        else:
            notional = o.price * o.qty + f.price * f.qty
            o.qty += f.qty
            o.price = notional / o.qty
            o.commission += f.commission
    rows: list[tuple[int, int, float, float, float, float, float, float]] = []
    entry: _Fill | None = None
    n = len(data)
    cash_delta = np.zeros(n)
    qty_delta = np.zeros(n)
    for o in orders.values():
        k = int(np.searchsorted(data.ts, o.ts, side="right")) - 1
        k = min(max(k, 0), n - 1)
        notional = o.price * o.qty
        if o.side == "BUY":
            cash_delta[k] -= float(notional + o.commission)
            qty_delta[k] += float(o.qty)
            entry = o
            continue
        cash_delta[k] += float(notional - o.commission)
        qty_delta[k] -= float(o.qty)
        if entry is None:
            raise EngineError("nautilus reported a sell without a preceding buy")
        cost = entry.price * entry.qty + entry.commission
        proceeds = notional - o.commission
        rows.append(
            (
                entry.ts,
                o.ts,
                float(entry.price),
                float(o.price),
                float(entry.qty),
                float(entry.commission + o.commission),
                float(proceeds - cost),
                # the table's definition, from nautilus' fill prices (its commissions are
                # rounded to the quote currency, which the P&L keeps)
                trade_return(float(entry.price), float(o.price), config.fee),
            )
        )
        entry = None
    trades = trades_from_rows(rows)
    cash = config.initial_cash + np.cumsum(cash_delta)
    held = np.cumsum(qty_delta)
    held[np.abs(held) < 1e-12] = 0.0
    equity = pl.DataFrame(
        {
            "ts": pl.Series(data.ts).cast(pl.Datetime("ns", "UTC")),
            "equity": cash + held * data.close,
        }
    )
    return trades, equity
