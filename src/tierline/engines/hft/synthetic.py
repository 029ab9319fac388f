"""A level-2 book synthesised from bars, for spans no recorded L2 covers.

Per bar, the mid walks ``open -> low -> high -> close`` (an up bar, close >= open) or ``open ->
high -> low -> close`` (a down bar), piecewise linearly, sampled at ``events_per_bar`` points
evenly spaced in time from the bar's open (point 0 = the open at the bar's open time; with 4
points the walk hits open, low/high, high/low and close exactly). Two more points, at the last
bar's close time and one bar later, hold the last close, so an order sent at the last close
still meets a book (and the data does not end at that instant).

At each point ``p`` (prices in ticks, ``s`` = the spread in ticks):

- best bid = ``floor(p - s/2 + 1/2)``, best ask = best bid + ``s``; ``levels`` levels per side,
  ``level_step_ticks`` apart, each holding ``level_notional / price`` (in whole lots);
- only the changes are emitted: levels that leave the book are deleted (qty 0), levels that
  enter it are added; a level that stays keeps its quantity, so queue positions behave as on a
  real book (a wholesale refresh would reset every queue);
- a trade of ``volume / events_per_bar`` (whole lots; none below one lot) prints at the touch
  after the update: a buy at the best ask when the mid rose from the previous point (or stayed,
  on an up bar), else a sell at the best bid. Passive orders fill from these prints.

Exchange time = the point's time; local time = exchange time + ``feed_latency_ms``. Every row is
flagged for both the exchange and the local processor, in time order (deletions, additions,
then the trade, at one timestamp), as hftbacktest requires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tierline.errors import DataError

if TYPE_CHECKING:
    import polars as pl

    from tierline.engines.hft.config import SyntheticL2Config
    from tierline.engines.hft.events import L2Events

__all__ = ["synthetic_events"]


def _path(bars: pl.DataFrame, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (times ns, mid prices, bar index) of the walk's points."""
    import polars as pl

    ts = bars["ts"].cast(pl.Datetime("ns", "UTC")).dt.epoch("ns").to_numpy().astype(np.int64)
    o, h, lo, c = (bars[k].cast(pl.Float64).to_numpy() for k in ("open", "high", "low", "close"))
    n = len(ts)
    if n < 2:
        raise DataError("the synthetic book needs at least 2 bars (to know the bar length)")
    tf = int(np.median(np.diff(ts)))
    up = c >= o
    v1 = np.where(up, lo, h)
    v2 = np.where(up, h, lo)
    verts = np.stack([o, v1, v2, c], axis=1)  # (n, 4)
    frac = np.arange(e) / (e - 1) * 3.0  # position along the 3 segments, 0..3
    seg = np.minimum(frac.astype(np.int64), 2)
    w = frac - seg
    mids = verts[:, seg] * (1.0 - w) + verts[:, seg + 1] * w  # (n, e)
    times = ts[:, None] + (np.arange(e) * tf // e)[None, :]
    bar = np.repeat(np.arange(n), e)
    times = np.concatenate([times.ravel(), [ts[-1] + tf, ts[-1] + 2 * tf]])
    mids = np.concatenate([mids.ravel(), [c[-1], c[-1]]])
    bar = np.concatenate([bar, [n - 1, n - 1]])
    return times, mids, bar


def _interval_diff(
    old_lo: np.ndarray, new_lo: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """For intervals [lo, lo + width) per point, return (start, count) of old minus new."""
    shift = new_lo - old_lo
    count = np.minimum(np.abs(shift), width)
    # moved up: the old bottom leaves; moved down: the old top leaves
    start = np.where(shift > 0, old_lo, old_lo + width - count)
    return start, count


def _expand(start: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (point index, value) for every ``start[i] + j``, ``j < count[i]``."""
    idx = np.repeat(np.arange(len(start)), count)
    offs = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return idx, np.repeat(start, count) + offs


def synthetic_events(
    bars: pl.DataFrame,
    *,
    spec: SyntheticL2Config,
    tick_size: float,
    lot_size: float,
) -> L2Events:
    """Return hftbacktest events of a book synthesised from ``bars`` (``synthetic=True``).

    Parameters
    ----------
    bars
        OHLCV bars (``ts`` = bar open, UTC; ``open, high, low, close, volume``), sorted,
        evenly spaced (the median spacing is the bar length).
    spec
        Spread, depth and event-rate parameters (the ``[synthetic]`` section of the config).
    tick_size, lot_size
        Price and quantity steps of the instrument.

    Returns
    -------
    L2Events
        The events (exchange and local time kept apart), ``synthetic=True``, no partitions.

    Raises
    ------
    DataError
        With fewer than 2 bars or non-positive prices.
    """
    from hftbacktest.types import (
        BUY_EVENT,
        DEPTH_EVENT,
        EXCH_EVENT,
        LOCAL_EVENT,
        SELL_EVENT,
        TRADE_EVENT,
        event_dtype,
    )

    from tierline.engines.hft.events import L2Events

    if tick_size <= 0 or lot_size <= 0:
        raise DataError(f"tick size {tick_size} and lot size {lot_size} must be > 0")
    e = spec.events_per_bar
    times, mids, bar = _path(bars, e)
    if not np.all(np.isfinite(mids)) or np.any(mids <= 0):
        raise DataError("bars with non-positive or missing prices cannot carry a synthetic book")
    k = len(times)
    volume = bars["volume"].to_numpy().astype(np.float64)
    c = mids / tick_size
    if spec.spread_bps > 0:
        s = np.maximum(1, np.ceil(mids * spec.spread_bps / 1e4 / tick_size - 1e-9)).astype(np.int64)
    else:
        s = np.full(k, spec.spread_ticks, dtype=np.int64)
    bid = np.floor(c - s / 2 + 0.5 + 1e-9).astype(np.int64)
    ask = bid + s
    step = spec.level_step_ticks
    width = spec.levels
    level_qty = np.maximum(1.0, np.floor(spec.level_notional / mids / lot_size)) * lot_size

    # Levels as indices on each side's grid: bid levels bid - step*j, ask levels ask + step*j.
    # Work on the grid index g = tick // step (per side, with the side's phase) only when
    # step == 1; for larger steps levels are re-anchored each point (ticks not on the old grid
    # all leave). Both cases: "range" = the set of level ticks of a point.
    rows_pt: list[np.ndarray] = []
    rows_px: list[np.ndarray] = []
    rows_qty: list[np.ndarray] = []
    rows_ev: list[np.ndarray] = []
    rows_ord: list[np.ndarray] = []  # 0 = deletion, 1 = addition, 2 = trade (within a point)

    def side_rows(top: np.ndarray, sign: int, flag: int) -> None:
        # level ticks of point i: top + sign * step * j, j = 0..width-1, as the interval
        # lo..lo+width-1 in units of step when the phase (top % step) is unchanged.
        lo = np.where(sign > 0, top, top - step * (width - 1)) // step
        phase = top % step
        same = np.concatenate([[False], phase[1:] == phase[:-1]])
        old_lo = np.concatenate([[lo[0]], lo[:-1]])
        # deletions (points 1..): old levels that left
        d_start, d_count = _interval_diff(old_lo, lo, width)
        d_count = np.where(same, d_count, width)
        d_start = np.where(same, d_start, old_lo)
        d_count[0] = 0
        d_pt, d_g = _expand(d_start, d_count)
        old_phase = np.concatenate([[phase[0]], phase[:-1]])
        d_px = (d_g * step + old_phase[d_pt]) * tick_size
        # additions: new levels that entered (everything at point 0)
        a_start, a_count = _interval_diff(lo, old_lo, width)
        a_count = np.where(same, a_count, width)
        a_start = np.where(same, a_start, lo)
        a_count[0] = width
        a_start[0] = lo[0]
        a_pt, a_g = _expand(a_start, a_count)
        a_px = (a_g * step + phase[a_pt]) * tick_size
        for pt, px, qty, order in (
            (d_pt, d_px, np.zeros(len(d_pt)), 0),
            (a_pt, a_px, level_qty[a_pt], 1),
        ):
            rows_pt.append(pt)
            rows_px.append(px)
            rows_qty.append(qty)
            rows_ev.append(np.full(len(pt), DEPTH_EVENT | flag, dtype=np.uint64))
            rows_ord.append(np.full(len(pt), order, dtype=np.int64))

    side_rows(bid, -1, BUY_EVENT)
    side_rows(ask, +1, SELL_EVENT)

    # Trades at the touch after each update.
    trade_qty = np.floor(volume[bar] / e / lot_size + 1e-9) * lot_size
    trade_qty[-2:] = 0.0  # the closing points carry no trade
    prev = np.concatenate([[mids[0]], mids[:-1]])
    bar_up = (bars["close"].to_numpy() >= bars["open"].to_numpy())[bar]
    buy = (mids > prev) | ((mids == prev) & bar_up)
    has = trade_qty >= lot_size
    t_pt = np.nonzero(has)[0]
    rows_pt.append(t_pt)
    rows_px.append(np.where(buy[t_pt], ask[t_pt], bid[t_pt]) * tick_size)
    rows_qty.append(trade_qty[t_pt])
    rows_ev.append(
        np.where(buy[t_pt], TRADE_EVENT | BUY_EVENT, TRADE_EVENT | SELL_EVENT).astype(np.uint64)
    )
    rows_ord.append(np.full(len(t_pt), 2, dtype=np.int64))

    # The last point restates the best bid (an unchanged level, no queue effect) so the data
    # runs one bar past the last close even when nothing moved.
    last = k - 1
    rows_pt.append(np.array([last]))
    rows_px.append(np.array([bid[last] * tick_size]))
    rows_qty.append(np.array([level_qty[last - 1]]))
    rows_ev.append(np.array([DEPTH_EVENT | BUY_EVENT], dtype=np.uint64))
    rows_ord.append(np.array([1], dtype=np.int64))

    pt = np.concatenate(rows_pt)
    order = np.lexsort((np.concatenate(rows_ord), pt))
    out = np.zeros(len(pt), dtype=event_dtype)
    pt = pt[order]
    out["ev"] = np.concatenate(rows_ev)[order] | np.uint64(EXCH_EVENT | LOCAL_EVENT)
    out["exch_ts"] = times[pt]
    out["local_ts"] = times[pt] + round(spec.feed_latency_ms * 1e6)
    out["px"] = np.round(np.concatenate(rows_px)[order] / tick_size) * tick_size
    out["qty"] = np.concatenate(rows_qty)[order]
    return L2Events(
        events=out,
        tick_size=float(tick_size),
        lot_size=float(lot_size),
        start_ns=int(out["local_ts"][0]),
        end_ns=int(out["local_ts"][-1]) + 1,
        synthetic=True,
        partitions=(),
    )
