"""Tier 3: replay a strategy's bar decisions as orders in a real hftbacktest backtest.

`run_tier3` does, in order:

1. **Book.** ``l2="real"``: the catalog's L2 book and trades for the span
   (`tierline.engines.hft.events.l2_events`), a `DataError` when none covers it; ``"auto"``:
   the same, falling back (with a printed notice) to ``"synthetic"``: a book synthesised from
   the bars (`tierline.engines.hft.synthetic.synthetic_events`). A catalog book whose files
   are marked synthetic (the embedded sample) counts as synthetic too.
2. **Bars.** Given, or built with `tierline.data.resample.bars_from_trades` from the catalog
   trades of the book's span at ``timeframe`` (e.g. ``10s``; taken from the trade events the
   L2 conversion already holds, `bars_from_events`, not read again), or read from the
   catalog's OHLCV; on a real book only the bars the book fully covers are kept.
3. **Decisions.** The strategy's own signal function on those bars; at bar t's close, in a
   position ``exit_long[t]`` sells, flat ``enter_long[t]`` buys (the reference engine's rule).
   Tiers 1 and 2 fill that at bar t+1's open price; tier 3 submits at the decision time (bar
   t+1's open time, local clock) and the order reaches the exchange after the latency model's
   entry latency.
4. **Orders** (`tierline.engines.hft._replay_nb`): taker (IOC at the far touch, re-sent at the
   new touch for what is left) or passive (post-only at the near touch, cancelled after the
   timeout, the rest crossed), in hftbacktest's partial-fill (or no-partial-fill) exchange with
   the configured latency model, queue model and maker/taker fees.
5. **Sizing.** Entry quantity = stake / (best ask x (1 + taker fee)) at the decision, rounded
   down to the lot (stake = all equity, or ``ExecutionConfig.stake``); an exit sells the
   position. ``ExecutionConfig.fee`` is not used: tier 3 charges the configured maker/taker
   fees on each fill.
   The end: recorded L2 is read up to one bar (at most 10 minutes) past ``end`` where it
   exists, so the orders at the last close execute; a position the orders leave open is
   closed on paper at the last close the replay reached (the last bar's when the span covers
   it, as in tiers 1-2).
6. **Report** (`tierline.engines.hft.report`): per leg and in total, shortfall against the
   bar-open price, fill ratio, time to fill, maker share, net P&L after fees, and the common
   metrics from the trades table and equity curve.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tierline.errors import ConfigError, DataError, EngineError

if TYPE_CHECKING:
    import polars as pl

    from tierline.core.conventions import ExecutionConfig
    from tierline.data.catalog import Catalog
    from tierline.engines.hft.config import HftConfig, LatencyConfig
    from tierline.engines.hft.events import L2Events
    from tierline.engines.hft.report import Tier3Result
    from tierline.strategy.contract import Strategy

__all__ = [
    "L2_CHOICES",
    "bars_from_events",
    "build_asset",
    "feed_order_latency",
    "resolve_bars",
    "run_tier3",
]

logger = logging.getLogger(__name__)

L2_CHOICES: tuple[str, ...] = ("auto", "real", "synthetic")
L2Choice = Literal["auto", "real", "synthetic"]
_MS = 1_000_000
#: Longest stretch of recorded L2 read past the span's end, so the orders decided at the last
#: bar's close (the forced exit) execute on the book instead of on paper.
_TAIL_NS = 600_000 * _MS


def feed_order_latency(events: np.ndarray, cfg: LatencyConfig) -> np.ndarray:
    """Return an order-latency array for hftbacktest's ``intp_order_latency`` from the feed.

    The events flagged for both processors are bucketed by local time every
    ``feed_resample_ms``; the last event of each bucket gives the feed latency ``f = local_ts -
    exch_ts``, and the row is ``req_ts = local_ts``, ``exch_ts = req_ts + feed_entry_mul * f +
    feed_entry_offset``, ``resp_ts = exch_ts + feed_response_mul * f + feed_response_offset``
    (hftbacktest's ``generate_order_latency`` formula, on the in-memory array). hftbacktest
    interpolates between rows by request time.

    Raises
    ------
    DataError
        If the events carry no row flagged for both processors.
    """
    from hftbacktest.data.utils.feed_order_latency import order_latency_dtype
    from hftbacktest.types import EXCH_EVENT, LOCAL_EVENT

    both = np.uint64(EXCH_EVENT | LOCAL_EVENT)
    rows = events[(events["ev"] & both) == both]
    if not len(rows):
        raise DataError("no event carries both an exchange and a local time: no feed latency")
    step = int(cfg.feed_resample_ms * _MS)
    bucket = rows["local_ts"] // step
    last = np.nonzero(np.append(bucket[1:] != bucket[:-1], True))[0]
    local = rows["local_ts"][last].astype(np.int64)
    feed = np.maximum(local - rows["exch_ts"][last].astype(np.int64), 0)
    out = np.zeros(len(last), dtype=order_latency_dtype)
    out["req_ts"] = local
    out["exch_ts"] = local + np.rint(
        cfg.feed_entry_mul * feed + cfg.feed_entry_offset_ms * _MS
    ).astype(np.int64)
    out["resp_ts"] = out["exch_ts"] + np.rint(
        cfg.feed_response_mul * feed + cfg.feed_response_offset_ms * _MS
    ).astype(np.int64)
    return out


def build_asset(l2: L2Events, config: HftConfig) -> tuple[Any, list[np.ndarray]]:
    """Return the configured hftbacktest ``BacktestAsset`` and the arrays it points into.

    The arrays (events and latency rows) must stay alive as long as the backtest runs:
    hftbacktest reads them through their memory address.
    """
    from hftbacktest import BacktestAsset

    keep: list[np.ndarray] = [l2.events]
    asset = (
        BacktestAsset()
        .data([l2.events])
        .linear_asset(1.0)
        .tick_size(l2.tick_size)
        .lot_size(l2.lot_size)
        .last_trades_capacity(0)
        .trading_value_fee_model(config.fees.maker, config.fees.taker)
    )
    lat = config.latency
    if lat.model == "constant":
        asset = asset.constant_order_latency(
            round(lat.entry_ms * _MS), round(lat.response_ms * _MS)
        )
    else:
        rows = feed_order_latency(l2.events, lat)
        keep.append(rows)
        asset = asset.intp_order_latency(rows)
    q = config.queue
    asset = (
        asset.risk_adverse_queue_model()
        if q.model == "risk_averse"
        else asset.power_prob_queue_model(q.power_n)
    )
    asset = (
        asset.partial_fill_exchange()
        if config.execution.partial_fills
        else asset.no_partial_fill_exchange()
    )
    return asset, keep


def resolve_bars(
    catalog: Catalog,
    exchange: str,
    symbol: str,
    timeframe: str,
    *,
    start: Any = None,
    end: Any = None,
    prefer: Literal["trades", "ohlcv"] = "trades",
) -> tuple[pl.DataFrame, str]:
    """Return catalog bars for the span and where they came from (``trades`` or ``ohlcv``).

    ``prefer="trades"`` builds them from the trades (`bars_from_trades`) and falls back to the
    stored OHLCV at ``timeframe``; ``"ohlcv"`` the other way round.

    Raises
    ------
    DataError
        If neither source has data for the span.
    """
    from tierline.data.resample import bars_from_trades

    def from_trades() -> pl.DataFrame:
        trades = catalog.read("trades", exchange=exchange, symbol=symbol, start=start, end=end)
        return bars_from_trades(trades, timeframe)

    def from_ohlcv() -> pl.DataFrame:
        return catalog.read_ohlcv(exchange, symbol, timeframe, start, end)

    order = (
        (("trades", from_trades), ("ohlcv", from_ohlcv))
        if prefer == "trades"
        else (("ohlcv", from_ohlcv), ("trades", from_trades))
    )
    errors = []
    for name, load in order:
        try:
            bars = load()
        except DataError as e:
            errors.append(f"{name}: {e}")
            continue
        if bars.height:
            return bars, name
        errors.append(f"{name}: no complete {timeframe} bar in the span")
    raise DataError(
        f"no {timeframe} bars for {exchange} {symbol} in the span: " + "; ".join(errors)
    )


#: (path, inode, mtime ns, size) of a book file -> whether its metadata marks it synthetic
_SYNTHETIC_FLAGS: dict[tuple[str, int, int, int], bool] = {}


def _catalog_book_synthetic(catalog: Catalog, exchange: str, symbol: str) -> bool:
    """Return whether the catalog's book files of a market are marked synthetic.

    Each file's flag is read once per process and version (path, modification time, size).
    """
    import pyarrow.parquet as pq

    for f in catalog.files("book", exchange, symbol):
        try:
            st = f.stat()
        except OSError as e:  # a vanished file is reported by the catalog's reader
            logger.debug("cannot stat %s: %s", f, e)
            continue
        key = (str(f), st.st_ino, st.st_mtime_ns, st.st_size)
        flag = _SYNTHETIC_FLAGS.get(key)
        if flag is None:
            try:
                md = pq.ParquetFile(f).schema_arrow.metadata or {}
            except Exception as e:  # an unreadable file is reported by the catalog's reader
                logger.debug("cannot read the metadata of %s: %s", f, e)
                continue
            flag = _SYNTHETIC_FLAGS[key] = md.get(b"tierline.synthetic") == b"true"
        if flag:
            return True
    return False


def _recorded_events(
    catalog: Catalog, exchange: str, symbol: str, start: Any, end: Any, tail_ns: int
) -> L2Events:
    """Return the catalog's L2 events of the span, ``tail_ns`` past ``end`` where recorded.

    The orders decided at the last bar's close (``end``) reach the exchange after it: the
    events run on past ``end`` when the recorded book covers that, else they stop at ``end``
    (and a position still open after the last orders is closed on paper at the last close).

    Raises
    ------
    DataError
        If no recorded L2 covers the span itself.
    """
    from tierline.engines.hft.events import l2_events

    if end is not None:
        try:
            return l2_events(catalog, exchange, symbol, start, _to_ns(end) + tail_ns)
        except DataError as e:
            logger.debug("no recorded L2 past the span's end (%s); stopping at the end", e)
    return l2_events(catalog, exchange, symbol, start, end)


def _to_ns(value: Any) -> int:
    """Return a time bound (epoch ns, ISO string or datetime; naive = UTC) in epoch ns."""
    from datetime import UTC, datetime, timedelta

    from tierline.data.catalog import to_utc_ns

    if isinstance(value, int | np.integer):
        return int(value)
    dt = to_utc_ns(value)
    assert dt is not None
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def bars_from_events(
    events: L2Events, timeframe: str, start: Any = None, end: Any = None
) -> pl.DataFrame | None:
    """Return bars built from the trades inside recorded L2 events; None if there are none.

    The trades are the events' ``TRADE_EVENT`` rows flagged for the exchange (one per
    catalog trade, in the catalog's order) with exchange time in ``[start, end)`` (default:
    the events' span): the rows `l2_events` converted from the catalog's ``trades/``, so the
    bars equal `bars_from_trades` on the catalog trades of that span, without reading them
    again.

    Parameters
    ----------
    events
        Recorded L2 events (`l2_events`).
    timeframe
        Bar length, e.g. ``10s``.
    start, end
        Exchange-time span of the trades (epoch ns, ISO string or datetime).
    """
    import polars as pl

    from tierline.data.market import timeframe_ns
    from tierline.data.resample import bars_from_trades
    from tierline.engines.hft._replay_nb import trade_bars_nb, trade_rows_nb

    ev = events.events
    lo = _to_ns(start) if start is not None else int(events.start_ns)
    hi = _to_ns(end) if end is not None else int(events.end_ns)
    tf_ns = timeframe_ns(timeframe)
    if timeframe[-1] in "smh":  # epoch-aligned buckets in polars (days/weeks: polars below)
        n, ordered, b_ts, o, h, low, c, v = trade_bars_nb(
            ev["ev"], ev["exch_ts"], ev["px"], ev["qty"], lo, hi, tf_ns
        )
        if not n:
            return None
        if ordered:  # one numba pass; equal to bars_from_trades (volume in polars' order)
            return pl.DataFrame(
                [
                    pl.Series("ts", b_ts.copy()).cast(pl.Datetime("ns", "UTC")),
                    pl.Series("open", o.copy()),
                    pl.Series("high", h.copy()),
                    pl.Series("low", low.copy()),
                    pl.Series("close", c.copy()),
                    pl.Series("volume", v.copy()),
                ]
            )
    ts, px, qty = trade_rows_nb(ev["ev"], ev["exch_ts"], ev["px"], ev["qty"], lo, hi)
    if not len(ts):
        return None
    trades = pl.DataFrame(
        {"ts": pl.Series(ts).cast(pl.Datetime("ns", "UTC")), "price": px, "qty": qty}
    )
    return bars_from_trades(trades, timeframe)


def _ns(bars: pl.DataFrame) -> np.ndarray:
    import polars as pl

    return bars["ts"].cast(pl.Datetime("ns", "UTC")).dt.epoch("ns").to_numpy().astype(np.int64)


def _say_default(msg: str) -> None:
    logger.info(msg)


def run_tier3(
    strategy: Strategy,
    params: Mapping[str, Any] | None,
    *,
    catalog: Catalog,
    exchange: str,
    symbol: str,
    timeframe: str,
    config: HftConfig,
    execution: ExecutionConfig | None = None,
    bars: pl.DataFrame | None = None,
    l2: L2Choice = "auto",
    start: Any = None,
    end: Any = None,
    events: L2Events | None = None,
    say: Callable[[str], None] | None = None,
) -> Tier3Result:
    """Replay ``strategy``'s decisions as orders in hftbacktest (see the module docstring).

    Parameters
    ----------
    strategy, params
        The strategy and its parameters (validated here).
    catalog, exchange, symbol, timeframe
        Where the L2 book, trades and bars come from, and the bar length.
    config
        Execution style, latency, queue, fees and synthetic-book parameters.
    execution
        Initial cash and stake (default `ExecutionConfig()`); its ``fee`` is not used.
    bars
        Bars to decide on (default: from the catalog, see `resolve_bars`).
    l2
        ``auto`` (real L2 if the catalog covers the span, else synthetic), ``real`` or
        ``synthetic``.
    start, end
        Span (ISO dates/times, UTC; default: all the book, or all the bars).
    events
        Events to use instead of reading the catalog (e.g. built once for many runs); their
        ``synthetic`` flag decides the ``l2`` label.
    say
        Where progress notices go (default: the module logger).

    Returns
    -------
    Tier3Result

    Raises
    ------
    ConfigError
        On invalid parameters or an unknown ``l2`` choice.
    DataError
        If ``l2="real"`` and no real L2 covers the span, or there are too few bars.
    EngineError
        If the signal function fails or hftbacktest stops with an error.
    """
    import time

    import polars as pl

    from tierline.core.bars import to_strategy_frame
    from tierline.core.conventions import ExecutionConfig
    from tierline.data.market import timeframe_ns

    say = say or _say_default
    if l2 not in L2_CHOICES:
        raise ConfigError(f"l2 {l2!r} is not one of {L2_CHOICES}")
    execution = execution or ExecutionConfig()
    checked = strategy.validate_params(params or {})
    tf_ns = timeframe_ns(timeframe)
    notes: list[str] = []

    # --- 1. the book --------------------------------------------------------------------
    if events is None and l2 != "synthetic":
        try:
            events = _recorded_events(catalog, exchange, symbol, start, end, min(tf_ns, _TAIL_NS))
        except DataError as e:
            if l2 == "real":
                raise DataError(f"--l2 real: no real L2 book for {exchange} {symbol}: {e}") from e
            msg = (
                f"no real L2 covers {exchange} {symbol} in the span ({e}); using a book "
                "synthesised from the bars (l2=synthetic)"
            )
            say(f"[tier 3] {msg}")
            notes.append(msg)
    # --- 2. the bars ----------------------------------------------------------------------
    if bars is None:
        built = None
        if events is not None and not events.synthetic:
            # the catalog trades of the span are already in the events: no second read
            built = bars_from_events(events, timeframe, start, end)
        if built is not None and built.height:
            bars, source = built, "trades"
        elif events is not None:
            span_start = start if start is not None else int(events.start_ns)
            span_end = end if end is not None else int(events.end_ns)
            bars, source = resolve_bars(
                catalog, exchange, symbol, timeframe, start=span_start, end=span_end
            )
        else:
            bars, source = resolve_bars(
                catalog, exchange, symbol, timeframe, start=start, end=end, prefer="ohlcv"
            )
        say(f"[tier 3] {bars.height} {timeframe} bars from the catalog {source}")
    bars = bars.sort("ts")
    if events is not None and not events.synthetic:
        ts = _ns(bars)
        keep = (ts >= events.start_ns) & (ts + tf_ns <= events.end_ns)
        if not keep.all():
            notes.append(
                f"{int((~keep).sum())} bar(s) outside the L2 book's span dropped; "
                f"{int(keep.sum())} kept"
            )
            bars = bars.filter(pl.Series(keep))
    if bars.height < 2:
        raise DataError(
            f"tier 3 needs at least 2 {timeframe} bars inside the book's span; got {bars.height}"
        )
    # --- synthetic book ----------------------------------------------------------------------
    if events is None:
        from tierline.core.instruments import instrument_for
        from tierline.engines.hft.synthetic import synthetic_events

        spec = instrument_for(exchange, symbol, bars)
        events = synthetic_events(
            bars,
            spec=config.synthetic,
            tick_size=spec.tick,
            lot_size=float(spec.size_increment),
        )
    synthetic_book = events.synthetic or _catalog_book_synthetic(catalog, exchange, symbol)
    l2_label = "synthetic" if synthetic_book else "real"

    # --- 3. decisions -------------------------------------------------------------------
    frame = to_strategy_frame(bars)
    try:
        signals = strategy.signals(frame, checked)
    except (ConfigError, DataError, EngineError):
        raise
    except Exception as e:
        raise EngineError(f"{strategy.name}: the signal function failed: {e}") from e
    enter = np.asarray(signals.enter_long, dtype=np.bool_)
    exit_ = np.asarray(signals.exit_long, dtype=np.bool_)
    open_ts = _ns(bars)
    close_ts = open_ts + tf_ns

    # --- 4. the backtest -----------------------------------------------------------------
    from hftbacktest import HashMapMarketDepthBacktest

    from tierline.engines.hft._replay_nb import (
        STYLE_PASSIVE,
        STYLE_TAKER,
        replay_nb,
    )

    n = bars.height
    asset, _keep_alive = build_asset(events, config)
    cap_legs = n + 1
    cap_fills = max(64, cap_legs * config.execution.max_orders * 4)
    equity = np.full(n, np.nan)
    legs_i = np.zeros((cap_legs, 7), dtype=np.int64)
    legs_f = np.zeros((cap_legs, 7), dtype=np.float64)
    fills_i = np.zeros((cap_fills, 6), dtype=np.int64)
    fills_f = np.zeros((cap_fills, 3), dtype=np.float64)
    err = np.zeros(2, dtype=np.int64)
    ex = config.execution
    t0 = time.perf_counter()
    hbt = HashMapMarketDepthBacktest([asset])
    try:
        n_legs, n_fills, reached = replay_nb(
            hbt,
            close_ts,
            enter,
            exit_,
            STYLE_PASSIVE if ex.style == "passive" else STYLE_TAKER,
            round(ex.passive_timeout_s * 1e9),
            int(ex.taker_limit_ticks),
            int(ex.max_orders),
            float(execution.initial_cash),
            float(execution.stake) if execution.stake is not None else 0.0,
            float(config.fees.maker),
            float(config.fees.taker),
            float(events.lot_size),
            float(events.tick_size),
            int(events.end_ns),
            equity,
            legs_i,
            legs_f,
            fills_i,
            fills_f,
            err,
        )
    except Exception as e:
        raise EngineError(f"hftbacktest stopped: {type(e).__name__}: {e}") from e
    finally:
        hbt.close()
    elapsed = time.perf_counter() - t0
    if err[0] != 0:
        from tierline.data.catalog import to_utc_ns

        hint = (
            " hftbacktest 2.4's partial-fill exchange is known to fail like this with resting "
            "(passive) orders on some books; set partial_fills = false in [execution]"
            if ex.partial_fills and ex.style == "passive"
            else ""
        )
        raise EngineError(
            f"hftbacktest returned error code {int(err[0])} at {to_utc_ns(int(err[1]))} "
            f"({strategy.name} on {exchange} {symbol}, style {ex.style}).{hint}"
        )
    if n_fills >= cap_fills:
        raise EngineError(f"more than {cap_fills} fill rows; raise the capacity")
    # --- 5. tables ----------------------------------------------------------------------------
    from tierline.engines.hft.report import Tier3Result

    # bars whose close the replay reached: a position still open is closed on paper at the
    # last of those closes (the price tiers 1-2 close at when every bar is reached)
    last_bar = n if reached < 0 else reached
    if 0 <= reached < n:
        notes.append(
            f"the L2 data ended before the close of bar {reached} of {n} "
            f"({bars['ts'][reached]}); later bars are not replayed"
        )
    elif reached == n:
        notes.append("the L2 data ended before the orders at the last bar's close could execute")
    legs, fills = _tables(
        bars, legs_i[:n_legs], legs_f[:n_legs], fills_i[:n_fills], fills_f[:n_fills]
    )
    lf_used = legs_f[:n_legs]
    filled_qty = lf_used[:, 1]
    trades, cash, (open_qty, open_cost, held_since) = _round_trips(
        filled_qty,
        legs["vwap"].to_numpy(),
        legs_i[:n_legs, 1],
        lf_used[:, 3],
        legs_i[:n_legs, 3],
        legs_i[:n_legs, 4],
        execution.initial_cash,
    )
    closes = bars["close"].cast(pl.Float64).to_numpy()
    if last_bar == 0:
        raise DataError("the L2 data ends before the first bar closes: nothing was replayed")
    final_close = closes[last_bar - 1]
    if open_qty > 0:
        fee = open_qty * final_close * config.fees.taker
        trades = _paper_close(
            trades, open_qty, open_cost, final_close, fee, held_since, int(close_ts[last_bar - 1])
        )
        cash += open_qty * final_close - fee
        notes.append(
            f"{open_qty:g} {symbol.split('/')[0]} still held after the last order: closed on "
            f"paper at the last close {final_close} with the taker fee"
        )
    eq = equity[:last_bar].copy()
    eq[-1] = cash
    curve = pl.DataFrame({"ts": bars["ts"][:last_bar].cast(pl.Datetime("ns", "UTC")), "equity": eq})
    unfilled = legs.filter(pl.col("filled_qty") < pl.col("requested_qty") - 0.5 * events.lot_size)
    if unfilled.height:
        notes.append(
            f"{unfilled.height} leg(s) not completely filled after {ex.max_orders} order(s) each"
        )
    merged = int(fills["merged"].sum()) if fills.height else 0
    if merged:
        notes.append(
            f"{merged} taker fill step(s) spanned several price levels and are booked at the "
            "worst level's price"
        )
    from tierline.core.metrics import compute_metrics
    from tierline.engines.hft.report import totals

    metrics = compute_metrics(trades, curve, initial_cash=execution.initial_cash)
    metrics.update(totals(legs, initial_cash=execution.initial_cash, final_equity=cash))
    return Tier3Result(
        strategy=strategy.name,
        params=checked,
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        l2=l2_label,
        config=config,
        legs=legs,
        fills=fills,
        trades=trades,
        equity=curve,
        metrics=metrics,
        notes=tuple(notes),
        events=len(events.events),
        extra={"replay_seconds": elapsed, "bars": bars.head(last_bar)},
    )


def _tables(
    bars: pl.DataFrame,
    li: np.ndarray,
    lf: np.ndarray,
    fi: np.ndarray,
    ff: np.ndarray,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the leg and fill tables from the kernel's arrays."""
    import polars as pl

    from tierline.engines.hft.report import leg_shortfall_bps

    opens = bars["open"].cast(pl.Float64).to_numpy()
    closes = bars["close"].cast(pl.Float64).to_numpy()
    n = len(opens)
    ts_type = pl.Datetime("ns", "UTC")
    bar = li[:, 0]
    forced = li[:, 6].astype(bool)
    assumed = np.where(forced | (bar + 1 >= n), closes[bar], opens[np.minimum(bar + 1, n - 1)])
    filled = lf[:, 1]
    vwap = np.where(filled > 0, lf[:, 2] / np.where(filled > 0, filled, 1.0), np.nan)
    side = li[:, 1]
    shortfall = np.array(
        [
            leg_shortfall_bps(int(s), float(a), float(v))
            for s, a, v in zip(side, assumed, vwap, strict=True)
        ]
    )
    last_fill = li[:, 4]
    ttf = np.where(last_fill > 0, (last_fill - li[:, 2]) / 1e9, np.nan)

    def ts_col(values: np.ndarray, missing: np.ndarray | None = None) -> pl.Series:
        col = pl.Series(values.astype(np.int64)).cast(ts_type)
        return col.set(pl.Series(missing), None) if missing is not None and missing.any() else col

    legs = pl.DataFrame(
        {
            "leg": np.arange(len(li), dtype=np.int64),
            "bar": bar,
            "decision_ts": ts_col(li[:, 2]),
            "side": side,
            "requested_qty": lf[:, 0],
            "filled_qty": filled,
            "vwap": vwap,
            "assumed_price": assumed,
            "shortfall_bps": shortfall,
            "first_fill_ts": ts_col(np.where(li[:, 3] > 0, li[:, 3], 0), ~(filled > 0)),
            "last_fill_ts": ts_col(np.where(last_fill > 0, last_fill, 0), ~(filled > 0)),
            "time_to_fill_s": ttf,
            "maker_qty": lf[:, 4],
            "fee": lf[:, 3],
            "orders": li[:, 5],
            "bid": lf[:, 5],
            "ask": lf[:, 6],
            "forced": forced,
        }
    )
    fill_side = side[fi[:, 0]] if len(fi) else np.zeros(0, dtype=np.int64)
    fills = pl.DataFrame(
        {
            "leg": fi[:, 0],
            "order": fi[:, 1],
            "local_ts": ts_col(fi[:, 2]),
            "exch_ts": ts_col(fi[:, 3]),
            "side": fill_side,
            "qty": ff[:, 0],
            "price": ff[:, 1],
            "fee": ff[:, 2],
            "maker": fi[:, 4].astype(bool),
            "merged": fi[:, 5].astype(bool),
        }
    )
    return legs, fills


def _round_trips(
    filled: np.ndarray,
    vwaps: np.ndarray,
    sides: np.ndarray,
    fees: np.ndarray,
    first_ts: np.ndarray,
    last_ts: np.ndarray,
    initial_cash: float,
) -> tuple[pl.DataFrame, float, tuple[float, float, int]]:
    """Return (trades table, final cash, (qty still held, its net cost, entry time)).

    The arguments are the leg table's columns ``filled_qty, vwap, side, fee`` and the legs'
    first and last fill times (epoch ns), as NumPy arrays in leg order.

    A trade opens with an entry leg's fills and closes when exit fills bring the position
    back to zero: entry/exit price = the legs' VWAPs, qty = the entry quantity, fees = every
    fee of its legs, pnl = exit value - entry value - fees, return = pnl / (entry value +
    entry fees); entry_ts / exit_ts = the exchange time of the first entry / last exit fill.
    """
    from tierline.core.result import trades_from_rows

    cash = initial_cash
    rows: list[tuple[Any, ...]] = []
    qty = cost = fee_in = 0.0
    value_out = fee_out = qty_out = 0.0
    entry_ts = 0
    columns = (c.tolist() for c in (filled, vwaps, sides, fees, first_ts, last_ts))
    for got, vwap, side, fee, first, last in zip(*columns, strict=True):
        if got <= 0:
            continue
        value = got * vwap
        if side > 0:
            if qty <= 0:
                entry_ts = int(first)
            qty += got
            cost += value
            fee_in += fee
            cash -= value + fee
        else:
            qty_out += got
            value_out += value
            fee_out += fee
            cash += value - fee
            if qty_out >= qty - 1e-12 * max(1.0, qty):
                pnl = value_out - fee_out - cost - fee_in
                rows.append(
                    (
                        entry_ts,
                        int(last),
                        cost / qty,
                        value_out / qty_out,
                        qty,
                        fee_in + fee_out,
                        pnl,
                        pnl / (cost + fee_in),
                    )
                )
                qty = cost = fee_in = value_out = fee_out = qty_out = 0.0
    held = qty - qty_out
    net_cost = cost + fee_in - (value_out - fee_out)
    return trades_from_rows(rows), float(cash), (float(held), float(net_cost), entry_ts)


def _paper_close(
    trades: pl.DataFrame,
    qty: float,
    net_cost: float,
    price: float,
    fee: float,
    entry_ts: int,
    ts: int,
) -> pl.DataFrame:
    """Append the paper close of a position the orders could not close."""
    import polars as pl

    from tierline.core.result import trades_from_rows

    # net_cost = what the open position cost, net of any partial exit proceeds
    entry_price = net_cost / qty if qty else math.nan
    pnl = qty * price - fee - net_cost
    row = trades_from_rows([(entry_ts, ts, entry_price, price, qty, fee, pnl, pnl / net_cost)])
    return pl.concat([trades, row]) if trades.height else row
