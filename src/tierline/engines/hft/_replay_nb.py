"""The numba loop that replays bar decisions as orders in a hftbacktest backtest.

Kept apart from its wrapper (`tierline.engines.hft.execution`); NumPy arrays and scalars in,
besides the backtest object. Not ``cache=True``: hftbacktest's jitclasses reach its library
through ctypes pointers, which numba refuses to cache ("uses dynamic globals"), so the loop
compiles once per process (a few seconds, paid by the first call).

One call walks the bars in time order. For bar t:

1. elapse to bar t's close (= bar t+1's open) on the local clock and mark equity there (cash
   plus the position at the local mid);
2. decide as the reference engine does: in a position and ``exit_long[t]`` -> sell the whole
   position; flat and ``enter_long[t]`` -> buy; on the last bar only a forced exit;
3. execute that leg before moving on: ``passive`` first rests a post-only (GTX) limit at the
   near touch and cancels it at the timeout; then, for whatever is left (``taker``: all of
   it), IOC limits at the far touch (plus ``limit_ticks``), re-priced and re-sent up to
   ``max_orders`` times while quantity remains.

Fills are booked from the order responses, not from hftbacktest's local state: the local
processor of hftbacktest 2.4 applies a fill to its state only when the response says FILLED,
so partial fills (PARTIALLY_FILLED responses) never reach ``state_values``. Each response step
gives the filled quantity as the drop of ``leaves_qty``; a maker fill is at the order price; a
taker step whose quantity exceeds the response's ``exec_qty`` merged several price levels
(their responses arrive at one timestamp) and is booked at the last, worst, level's price and
flagged (``merged``).
"""

from __future__ import annotations

import math

import numpy as np
from hftbacktest import GTX, LIMIT
from hftbacktest.order import CANCELED, EXPIRED, FILLED, IOC, NEW, PARTIALLY_FILLED
from hftbacktest.types import EXCH_EVENT, TRADE_EVENT
from numba import njit

__all__ = [
    "FILL_F_COLS",
    "FILL_I_COLS",
    "LEG_F_COLS",
    "LEG_I_COLS",
    "STYLE_PASSIVE",
    "STYLE_TAKER",
    "replay_nb",
    "trade_bars_nb",
    "trade_rows_nb",
]

#: Columns of the int64 fill array.
FILL_I_COLS = ("leg", "order", "local_ts", "exch_ts", "maker", "merged")
#: Columns of the float64 fill array.
FILL_F_COLS = ("qty", "price", "fee")
#: Columns of the int64 leg array (a leg = the orders of one decision).
LEG_I_COLS = ("bar", "side", "decision_ts", "first_fill_ts", "last_fill_ts", "orders", "forced")
#: Columns of the float64 leg array.
LEG_F_COLS = ("requested_qty", "filled_qty", "value", "fee", "maker_qty", "bid", "ask")

STYLE_TAKER = 0
STYLE_PASSIVE = 1
_MAX_TS = 9223372036854775807
_KIND_MASK = np.uint64(0xFF)
_TRADE = np.uint64(TRADE_EVENT)
_EXCH = np.uint64(EXCH_EVENT)
_ZERO = np.uint64(0)
_WAIT_NS = 3_600_000_000_000  # an order response later than this means the data ended


@njit(cache=True)
def trade_rows_nb(flags, exch_ts, px, qty, lo, hi):  # type: ignore[no-untyped-def]
    """Return (exch_ts, px, qty) of the trade events flagged for the exchange in ``[lo, hi)``.

    One pass over the event array's fields, in array order (cached: no hftbacktest object
    involved).
    """
    n = flags.shape[0]
    ts_out = np.empty(n, dtype=np.int64)
    px_out = np.empty(n, dtype=np.float64)
    qty_out = np.empty(n, dtype=np.float64)
    k = 0
    for i in range(n):
        f = flags[i]
        if (f & _KIND_MASK) == _TRADE and (f & _EXCH) != _ZERO:
            t = exch_ts[i]
            if t >= lo and t < hi:
                ts_out[k] = t
                px_out[k] = px[i]
                qty_out[k] = qty[i]
                k += 1
    return ts_out[:k].copy(), px_out[:k].copy(), qty_out[:k].copy()


_BLOCK = 128  # polars' pairwise-summation block (polars-compute float_sum)
_LANES = 16  # polars' SIMD stripe within a block


@njit(cache=True)
def _block_sum(a, s, lanes):  # type: ignore[no-untyped-def]
    """Sum ``a[s:s+128]`` as polars does: 16 lanes over 8 stripes, then halving the lanes."""
    for j in range(_LANES):
        lanes[j] = 0.0
    for b in range(s, s + _BLOCK, _LANES):
        for j in range(_LANES):
            lanes[j] = lanes[j] + a[b + j]
    w = _LANES
    while w > 1:
        w //= 2
        for j in range(w):
            lanes[j] = lanes[j] + lanes[j + w]
    return lanes[0]


@njit(cache=True)
def _pairwise_sum(a, s, blocks, lanes):  # type: ignore[no-untyped-def]
    """Sum ``blocks`` whole blocks from ``a[s]`` pairwise, halving the block count as polars."""
    if blocks == 1:
        return _block_sum(a, s, lanes)
    first = blocks // 2
    left = _pairwise_sum(a, s, first, lanes)
    return left + _pairwise_sum(a, s + first * _BLOCK, blocks - first, lanes)


@njit(cache=True)
def _polars_sum(a, s, e, lanes):  # type: ignore[no-untyped-def]
    """Sum ``a[s:e]`` in polars' order (the leading ``len % 128`` values sequentially, the rest
    pairwise by blocks of 128), so float sums equal polars' ``sum`` bit for bit."""
    rem = (e - s) % _BLOCK
    rest = 0.0
    for i in range(s, s + rem):
        rest += a[i]
    blocks = (e - s) // _BLOCK
    main = _pairwise_sum(a, s + rem, blocks, lanes) if blocks else 0.0
    return rest + main


@njit(cache=True)
def trade_bars_nb(flags, exch_ts, px, qty, lo, hi, tf_ns):  # type: ignore[no-untyped-def]
    """Return OHLCV bars of the trade events flagged for the exchange in ``[lo, hi)``.

    The trades as `trade_rows_nb` picks them, bucketed as `tierline.data.resample.bars_from_trades`
    does: buckets ``[k * tf_ns, (k + 1) * tf_ns)`` stamped at their open, open = first price,
    close = last, volume summed in polars' order; buckets without a trade give no bar, and
    only buckets lying within [first trade, last trade] are kept.

    Returns
    -------
    tuple
        ``(n_trades, ordered, ts, open, high, low, close, volume)``; ``ordered`` False (the
        trades' times decrease somewhere) means no bars were built: sort first, as polars does.
    """
    ts, p, q = trade_rows_nb(flags, exch_ts, px, qty, lo, hi)
    n = ts.shape[0]
    b_ts = np.empty(n, dtype=np.int64)
    b_o = np.empty(n, dtype=np.float64)
    b_h = np.empty(n, dtype=np.float64)
    b_l = np.empty(n, dtype=np.float64)
    b_c = np.empty(n, dtype=np.float64)
    b_v = np.empty(n, dtype=np.float64)
    if n == 0:
        return 0, True, b_ts, b_o, b_h, b_l, b_c, b_v
    for i in range(1, n):
        if ts[i] < ts[i - 1]:
            return n, False, b_ts[:0], b_o[:0], b_h[:0], b_l[:0], b_c[:0], b_v[:0]
    first, last = ts[0], ts[n - 1]
    lanes = np.empty(_LANES, dtype=np.float64)
    k = 0
    i = 0
    while i < n:
        bucket = ts[i] - ts[i] % tf_ns
        end = bucket + tf_ns
        j = i
        hi_p = p[i]
        lo_p = p[i]
        while j < n and ts[j] < end:
            if p[j] > hi_p:
                hi_p = p[j]
            if p[j] < lo_p:
                lo_p = p[j]
            j += 1
        if bucket >= first and end <= last:
            b_ts[k] = bucket
            b_o[k] = p[i]
            b_h[k] = hi_p
            b_l[k] = lo_p
            b_c[k] = p[j - 1]
            b_v[k] = _polars_sum(q, i, j, lanes)
            k += 1
        i = j
    return n, True, b_ts[:k], b_o[:k], b_h[:k], b_l[:k], b_c[:k], b_v[:k]


@njit
def _book(  # type: ignore[no-untyped-def]
    hbt,
    leg,
    order_no,
    order_id,
    order_price,
    qty,
    leaves_before,
    fee_maker,
    fee_taker,
    lot,
    fills_i,
    fills_f,
    n_fills,
):
    """Book the fill of one response step; return (n_fills, leaves, status)."""
    order = hbt.orders(0).get(order_id)
    if order is None:
        return n_fills, leaves_before, -1
    rec = order.arr[0]
    status = rec.status
    leaves = rec.leaves_qty
    if status == EXPIRED and rec.exec_qty == 0.0 and leaves == 0.0:
        leaves = qty  # an order that never traded reports no leaves in some paths
    step = leaves_before - leaves
    if step >= 0.5 * lot and n_fills < fills_i.shape[0]:
        tick = rec.tick_size
        maker = rec.maker
        merged = False
        if maker:
            price = order_price
        else:
            price = rec.exec_price_tick * tick
            merged = step > rec.exec_qty + 0.5 * lot
        fee_rate = fee_maker if maker else fee_taker
        fills_i[n_fills, 0] = leg
        fills_i[n_fills, 1] = order_no
        fills_i[n_fills, 2] = hbt.current_timestamp
        fills_i[n_fills, 3] = rec.exch_timestamp
        fills_i[n_fills, 4] = 1 if maker else 0
        fills_i[n_fills, 5] = 1 if merged else 0
        fills_f[n_fills, 0] = step
        fills_f[n_fills, 1] = price
        fills_f[n_fills, 2] = step * price * fee_rate
        n_fills += 1
    else:
        leaves = leaves_before
    return n_fills, leaves, status


@njit
def _failed(hbt, rc, err):  # type: ignore[no-untyped-def]
    """Record an hftbacktest error code (anything but 0 = ok, 1 = end of data)."""
    if rc == 0 or rc == 1:
        return False
    if err[0] == 0:
        err[0] = rc
        err[1] = hbt.current_timestamp
    return True


@njit
def _done(status):  # type: ignore[no-untyped-def]
    return status == FILLED or status == EXPIRED or status == CANCELED or status == -1


@njit
def _taker(  # type: ignore[no-untyped-def]
    hbt,
    leg,
    order_no,
    side,
    qty,
    order_id,
    limit_ticks,
    tick,
    fee_maker,
    fee_taker,
    lot,
    fills_i,
    fills_f,
    n_fills,
    err,
):
    """Send one IOC limit at the far touch (+ ``limit_ticks``); book its responses.

    Returns (n_fills, filled qty, data ended).
    """
    depth = hbt.depth(0)
    if side > 0:
        price = depth.best_ask + limit_ticks * tick
        rc = hbt.submit_buy_order(0, order_id, price, qty, IOC, LIMIT, False)
    else:
        price = depth.best_bid - limit_ticks * tick
        rc = hbt.submit_sell_order(0, order_id, price, qty, IOC, LIMIT, False)
    leaves = qty
    ended = _failed(hbt, rc, err)
    status = NEW
    while not ended and not _done(status):
        rc = hbt.wait_order_response(0, order_id, _WAIT_NS)
        if rc == 1 or _failed(hbt, rc, err):
            ended = True
        n_fills, leaves, status = _book(
            hbt,
            leg,
            order_no,
            order_id,
            price,
            qty,
            leaves,
            fee_maker,
            fee_taker,
            lot,
            fills_i,
            fills_f,
            n_fills,
        )
        if ended:
            break
    hbt.clear_inactive_orders(0)
    return n_fills, qty - leaves, ended


@njit
def _passive(  # type: ignore[no-untyped-def]
    hbt,
    leg,
    order_no,
    side,
    qty,
    order_id,
    timeout_ns,
    fee_maker,
    fee_taker,
    lot,
    fills_i,
    fills_f,
    n_fills,
    err,
):
    """Rest a post-only limit at the near touch; cancel what is left at the timeout.

    Returns (n_fills, filled qty, data ended).
    """
    depth = hbt.depth(0)
    if side > 0:
        price = depth.best_bid
        rc = hbt.submit_buy_order(0, order_id, price, qty, GTX, LIMIT, False)
    else:
        price = depth.best_ask
        rc = hbt.submit_sell_order(0, order_id, price, qty, GTX, LIMIT, False)
    deadline = hbt.current_timestamp + timeout_ns
    leaves = qty
    ended = _failed(hbt, rc, err)
    cancelled = False
    status = NEW
    while not ended and not _done(status):
        now = hbt.current_timestamp
        if now >= deadline and not cancelled:
            if status == NEW or status == PARTIALLY_FILLED:
                if _failed(hbt, hbt.cancel(0, order_id, False), err):
                    ended = True
                    break
            cancelled = True
        wait = _WAIT_NS if cancelled else deadline - now
        rc = hbt.wait_order_response(0, order_id, wait)
        if rc == 1 or _failed(hbt, rc, err):
            ended = True
        n_fills, leaves, status = _book(
            hbt,
            leg,
            order_no,
            order_id,
            price,
            qty,
            leaves,
            fee_maker,
            fee_taker,
            lot,
            fills_i,
            fills_f,
            n_fills,
        )
        if ended:
            break
    hbt.clear_inactive_orders(0)
    return n_fills, qty - leaves, ended


@njit
def replay_nb(  # type: ignore[no-untyped-def]
    hbt,
    close_ts,
    enter,
    exit_,
    style,
    timeout_ns,
    limit_ticks,
    max_orders,
    initial_cash,
    stake,
    fee_maker,
    fee_taker,
    lot,
    tick,
    span_end,
    equity,
    legs_i,
    legs_f,
    fills_i,
    fills_f,
    err,
):
    """Replay the decisions of ``len(close_ts)`` bars; return (n_legs, n_fills, reached).

    ``stake <= 0`` stakes all equity. ``span_end`` is the end of the span the events cover
    (local time, exclusive): a bar close at or before it is reached even when no event falls
    between the last one and the close (the book is then the last one). ``equity``
    (float64[n]) receives the equity marked at each bar's close; ``legs_*``/``fills_*`` are
    filled row by row (columns `LEG_I_COLS`, `LEG_F_COLS`, `FILL_I_COLS`, `FILL_F_COLS`).
    ``reached`` is -1 when the data lasted through every bar's orders; else the number of
    bars whose close was reached before the data ran out (a bar whose orders the end of the
    data cut short counts: its close was reached). Later bars keep equity NaN.
    """
    n = close_ts.shape[0]
    cash = initial_cash
    position = 0.0
    n_legs = 0
    n_fills = 0
    next_id = 1
    ended_at = -1
    if hbt.current_timestamp == _MAX_TS:  # not started: load the first events
        if _failed(hbt, hbt.elapse(0), err):
            return 0, 0, -1
    for t in range(n):
        now = hbt.current_timestamp
        if close_ts[t] > now:
            rc = hbt.elapse(close_ts[t] - now)
            if _failed(hbt, rc, err):
                break
            if rc == 1:
                # no event left: the close is reached only if the span covers it (the book
                # is the last one); no order can execute after the end of the data
                ended_at = t
                if close_ts[t] <= span_end:
                    depth = hbt.depth(0)
                    equity[t] = cash + position * 0.5 * (depth.best_bid + depth.best_ask)
                    ended_at = t + 1
                break
        depth = hbt.depth(0)
        bid = depth.best_bid
        ask = depth.best_ask
        equity[t] = cash + position * 0.5 * (bid + ask)
        in_position = position >= 0.5 * lot
        side = 0
        forced = 0
        if t < n - 1:
            if in_position and exit_[t]:
                side = -1
            elif not in_position and enter[t]:
                side = 1
        elif in_position:
            side = -1
            forced = 1
        if side == 0 or n_legs >= legs_i.shape[0]:
            continue
        if side > 0:
            budget = equity[t] if stake <= 0.0 else min(stake, equity[t])
            qty = math.floor(budget / (ask * (1.0 + fee_taker)) / lot + 1e-9) * lot
        else:
            qty = round(position / lot) * lot
        if qty < 0.5 * lot:
            continue
        leg = n_legs
        n_legs += 1
        legs_i[leg, 0] = t
        legs_i[leg, 1] = side
        legs_i[leg, 2] = hbt.current_timestamp
        legs_f[leg, 0] = qty
        legs_f[leg, 5] = bid
        legs_f[leg, 6] = ask
        first = n_fills
        orders = 0
        done = 0.0
        ended = False
        if style == STYLE_PASSIVE and forced == 0:
            n_fills, got, ended = _passive(
                hbt,
                leg,
                orders,
                side,
                qty,
                next_id,
                timeout_ns,
                fee_maker,
                fee_taker,
                lot,
                fills_i,
                fills_f,
                n_fills,
                err,
            )
            next_id += 1
            orders += 1
            done += got
        while not ended and qty - done >= 0.5 * lot and orders < max_orders:
            rest = round((qty - done) / lot) * lot
            n_fills, got, ended = _taker(
                hbt,
                leg,
                orders,
                side,
                rest,
                next_id,
                limit_ticks,
                tick,
                fee_maker,
                fee_taker,
                lot,
                fills_i,
                fills_f,
                n_fills,
                err,
            )
            next_id += 1
            orders += 1
            done += got
        legs_i[leg, 5] = orders
        legs_i[leg, 6] = forced
        legs_i[leg, 3] = -1
        legs_i[leg, 4] = -1
        filled = 0.0
        value = 0.0
        fee = 0.0
        maker_qty = 0.0
        for k in range(first, n_fills):
            q = fills_f[k, 0]
            filled += q
            value += q * fills_f[k, 1]
            fee += fills_f[k, 2]
            maker_qty += q * fills_i[k, 4]
            if legs_i[leg, 3] < 0:
                legs_i[leg, 3] = fills_i[k, 3]
            legs_i[leg, 4] = fills_i[k, 3]
        legs_f[leg, 1] = filled
        legs_f[leg, 2] = value
        legs_f[leg, 3] = fee
        legs_f[leg, 4] = maker_qty
        position += side * filled
        cash -= side * value + fee
        if err[0] != 0:
            break
        if ended:
            ended_at = t + 1  # bar t's close was reached; its orders were cut short
            break
    return n_legs, n_fills, ended_at
