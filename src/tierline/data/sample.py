"""The embedded sample data set: a deterministic synthetic market for `make demo` and tests.

`tierline data sample` writes it into the catalog, so a fresh clone runs end to end with no
network and no external files. Everything is labelled synthetic (Parquet metadata
``tierline.synthetic = true``, ``tierline.source = tierline-sample:seed=<seed>``).

What is generated, per symbol of `SAMPLE_SYMBOLS` on exchange ``synthetic``:

- 1m OHLCV for ``days`` days from `SAMPLE_START` (2024-01-01 00:00 UTC, fixed: no wall clock),
  from a regime-switching random walk: trending stretches (with an occasional breakout jump),
  mean-reverting ranges (Ornstein-Uhlenbeck around the level where the range began) and quiet
  driftless stretches, under a stochastic log-volatility with bursts (volatility clusters), an
  intraday and weekend seasonality and fat-tailed (Student-t) shocks. Prices sit on the tick
  grid; volume is in whole lots, larger when the market moves.
- 5m OHLCV aggregated exactly from the 1m bars (`aggregate_ohlcv`).
- For the last `WINDOW_MINUTES` minutes: trades and an L2 book (a 20-level snapshot, then
  diffs) consistent with the 1m bars: the trades of each minute rebuild its bar exactly (first
  price = open, max = high, min = low, last = close, quantities sum to the volume in lots),
  every trade prints at the touch of the book at that moment (a buy at the best ask, a sell at
  the best bid), the book is never crossed, and ``ts_local`` = ``ts_exch`` + 5-30 ms.

The generators are pure (arrays and frames, no IO) and deterministic: the same seed gives
byte-identical frames. Every random component draws from its own stream, so the series is
prefix-stable: the first 3 days of a 30-day sample equal a 3-day sample, and samples of
different lengths written into one catalog never contradict each other.
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from tierline.data.schema import BOOK, OHLCV, TRADES
from tierline.errors import ConfigError

if TYPE_CHECKING:
    from tierline.data.catalog import Catalog

__all__ = [
    "BOOK_DEPTH",
    "MAX_DAYS",
    "SAMPLE_EXCHANGE",
    "SAMPLE_START",
    "SAMPLE_SYMBOLS",
    "WINDOW_MINUTES",
    "SampleFrames",
    "SymbolSpec",
    "aggregate_ohlcv",
    "generate_ohlcv_1m",
    "generate_symbol",
    "generate_trades_and_book",
    "sample_source",
    "write_sample",
]

logger = logging.getLogger(__name__)

#: Exchange name of the sample in the catalog.
SAMPLE_EXCHANGE = "synthetic"
#: Open of the first 1m bar (fixed, so the sample never depends on the clock).
SAMPLE_START = datetime(2024, 1, 1, tzinfo=UTC)
#: Length of the trades + L2 window at the end of the sample, in minutes.
WINDOW_MINUTES = 120
#: Price levels per side in the book snapshot and kept by every diff.
BOOK_DEPTH = 20
#: Most days `write_sample` accepts (10 years of 1m bars).
MAX_DAYS = 3660

_MIN_NS = 60_000_000_000
_MS = 1_000_000
_START_NS = int(SAMPLE_START.timestamp()) * 1_000_000_000
_DAY_MIN = 1440

# Stream ids: each random component of a symbol draws from its own generator.
_S_REGIME, _S_SHOCK, _S_VOL, _S_VOLSHOCK, _S_WICK, _S_VOLUME, _S_WINDOW = range(7)

# Regimes of the price walk.
_TREND, _RANGE, _QUIET = 0, 1, 2
#: Next-regime probabilities, by current regime (rows) and next regime (columns).
_TRANSITION = np.array(
    [
        [0.20, 0.55, 0.25],  # after a trend: often a range, sometimes a new trend
        [0.55, 0.20, 0.25],  # after a range: usually a trend (a breakout)
        [0.60, 0.40, 0.00],  # after a quiet stretch: a trend or a range
    ]
)
#: Median duration (minutes), log-sd, and bounds of each regime.
_DURATION = {
    _TREND: (240.0, 0.5, 60, 900),
    _RANGE: (180.0, 0.5, 45, 720),
    _QUIET: (120.0, 0.5, 30, 480),
}
#: Volatility multiplier of each regime.
_REGIME_VOL = (1.15, 0.85, 0.6)

# Volatility process: log-vol AR(1) per minute with ~5 h memory, bursts about once a day.
_VOL_PHI = float(np.exp(-1.0 / 300.0))
_VOL_SD = 0.35
_VOL_BURSTS_PER_DAY = 1.0
_VOL_CAP = 1.4
_T_DF = 5.0
_NORMAL = NormalDist()


@dataclass(frozen=True, kw_only=True)
class SymbolSpec:
    """One symbol of the synthetic market.

    Parameters
    ----------
    symbol
        ccxt spelling, e.g. ``BTC/USDT``.
    start_price
        Price at `SAMPLE_START`.
    ticks_per_unit
        1 / tick size (100 for a 0.01 tick); prices are whole ticks.
    lots_per_unit
        1 / lot size (100_000 for a 0.00001 lot); quantities are whole lots.
    daily_vol
        Target standard deviation of daily log returns (before regime and seasonality).
    volume_per_minute
        Typical 1m volume in base units.
    level_size
        Typical size of a book level in base units.
    level_step
        Spacing in ticks of the book levels beyond the touch.
    """

    symbol: str
    start_price: float
    ticks_per_unit: int
    lots_per_unit: int
    daily_vol: float
    volume_per_minute: float
    level_size: float
    level_step: int

    @property
    def tick(self) -> float:
        """Return the tick size."""
        return 1.0 / self.ticks_per_unit

    @property
    def lot(self) -> float:
        """Return the lot size."""
        return 1.0 / self.lots_per_unit

    @property
    def key(self) -> int:
        """Return a stable integer derived from the symbol, mixed into its seeds."""
        return zlib.crc32(self.symbol.encode())


#: The symbols of the sample: BTC/USDT near 60,000 and ETH/USDT near 3,000, both on a 0.01 tick.
SAMPLE_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec(
        symbol="BTC/USDT",
        start_price=60_000.0,
        ticks_per_unit=100,
        lots_per_unit=100_000,
        daily_vol=0.019,
        volume_per_minute=9.0,
        level_size=0.35,
        level_step=100,
    ),
    SymbolSpec(
        symbol="ETH/USDT",
        start_price=3_000.0,
        ticks_per_unit=100,
        lots_per_unit=10_000,
        daily_vol=0.024,
        volume_per_minute=110.0,
        level_size=4.0,
        level_step=10,
    ),
)


@dataclass(frozen=True, kw_only=True)
class SampleFrames:
    """The frames generated for one symbol (catalog schemas, ready to write)."""

    spec: SymbolSpec
    ohlcv_1m: pl.DataFrame
    ohlcv_5m: pl.DataFrame
    trades: pl.DataFrame
    book: pl.DataFrame
    window_start: datetime
    window_end: datetime


def sample_source(seed: int) -> str:
    """Return the ``source`` label written into the metadata of a sample's files."""
    return f"tierline-sample:seed={seed}"


def _check_args(seed: int, days: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed {seed!r} must be a non-negative integer (e.g. --seed 7)")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"days {days!r} must be an integer in [1, {MAX_DAYS}] (e.g. --days 30)")


def _rng(seed: int, spec: SymbolSpec, stream: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, spec.key, stream, *extra]))


# ---------------------------------------------------------------------- 1m bars
def _ar1(e: np.ndarray, a: float, y0: float = 0.0) -> np.ndarray:
    """Return ``y`` with ``y[t] = a * y[t-1] + e[t]`` and ``y[-1] = y0``, for 0 < a < 1.

    Vectorised by blocks: within a block ``y = a^j (y_prev + cumsum(e / a^j))``, with blocks
    short enough (``a^-len <= e^4``) to keep the rounding error a few ulps. Only sequential
    numpy operations (cumprod, cumsum), so results do not depend on threads or BLAS.
    """
    n = len(e)
    y = np.empty(n)
    block = max(1, int(4.0 / -math.log(a)))
    prev = y0
    for s in range(0, n, block):
        seg = e[s : s + block]
        pw = np.cumprod(np.full(len(seg), a))
        y[s : s + len(seg)] = pw * (prev + np.cumsum(seg / pw))
        prev = float(y[s + len(seg) - 1])
    return y


def _seasonality(n: int) -> np.ndarray:
    """Volatility/volume multiplier by minute: busier 13-17 UTC, calmer 2-6 UTC and weekends."""
    minute = np.arange(n)
    hour = (minute % _DAY_MIN) / 60.0
    day = minute // _DAY_MIN
    weekend = ((day % 7) >= 5).astype(float)  # 2024-01-01 is a Monday
    intraday = (
        1.0
        + 0.35 * np.exp(-0.5 * ((hour - 15.0) / 2.0) ** 2)
        - 0.25 * np.exp(-0.5 * ((hour - 4.0) / 2.0) ** 2)
    )
    return intraday * (1.0 - 0.2 * weekend)


def _log_vol(seed: int, spec: SymbolSpec, n: int) -> np.ndarray:
    """Stochastic log-volatility: AR(1) with Gaussian innovations and occasional bursts."""
    z = _rng(seed, spec, _S_VOL).standard_normal(n)
    u = _rng(seed, spec, _S_VOLSHOCK).random((n, 2))
    bursts = np.where(u[:, 0] < _VOL_BURSTS_PER_DAY / _DAY_MIN, 0.4 + 0.6 * u[:, 1], 0.0)
    innovation = _VOL_SD * np.sqrt(1.0 - _VOL_PHI**2) * z + bursts
    h = _ar1(innovation, _VOL_PHI)
    # Soft cap: stacked bursts saturate near e^1.4 (4x) the base volatility.
    h = np.where(h > 0.0, _VOL_CAP * np.tanh(h / _VOL_CAP), h)
    return h - 0.5 * _VOL_SD**2


def _regime_path(
    seed: int, spec: SymbolSpec, sigma: np.ndarray, sigma_base: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return log prices (one per minute close) and the regime of each minute."""
    n = len(sigma)
    shocks = _rng(seed, spec, _S_SHOCK).standard_t(_T_DF, n) / np.sqrt(_T_DF / (_T_DF - 2.0))
    # One row of uniforms per regime segment; a segment lasts >= 30 minutes, so n // 30 + 2
    # rows always suffice, and rows do not depend on n (the path is prefix-stable).
    draws = _rng(seed, spec, _S_REGIME).random((n // 30 + 2, 6))
    x0 = float(np.log(spec.start_price))
    logp = np.empty(n)
    regime = np.empty(n, dtype=np.int8)
    x = x0
    t = 0
    state = int(draws[0, 0] * 3)
    for row in draws[1:]:
        if t >= n:
            break
        median, log_sd, lo, hi = _DURATION[state]
        z = _NORMAL.inv_cdf(float(np.clip(row[0], 1e-12, 1.0 - 1e-12)))
        duration = int(np.clip(median * math.exp(log_sd * z), lo, hi))
        end = min(t + duration, n)
        eps = shocks[t:end] * sigma[t:end] * _REGIME_VOL[state]
        if state == _TREND:
            # Trend direction leans back toward the start price, so the walk stays in range.
            p_up = 0.5 - 0.3 * np.tanh((x - x0) / 0.2)
            direction = 1.0 if row[1] < p_up else -1.0
            drift = direction * (0.05 + 0.10 * row[2]) * sigma_base
            step = drift + eps
            if row[3] < 0.35:  # a breakout: the trend opens with a jump
                step[0] += direction * (1.0 + 1.5 * row[4]) * sigma_base * np.sqrt(60.0)
            path = x + np.cumsum(step)
        elif state == _RANGE:
            # Ornstein-Uhlenbeck around the level where the range began (half-life 15-55 min).
            a = 1.0 - 1.0 / (20.0 + 60.0 * row[1])
            path = x + _ar1(eps, a)
        else:
            path = x + np.cumsum(eps)
        logp[t:end] = path
        regime[t:end] = state
        x = float(path[-1])
        t = end
        state = int(np.searchsorted(np.cumsum(_TRANSITION[state]), row[5], side="right"))
        state = min(state, 2)
    return logp, regime


def generate_ohlcv_1m(spec: SymbolSpec, *, seed: int = 7, days: int = 30) -> pl.DataFrame:
    """Return ``days`` days of synthetic 1m bars for one symbol, from `SAMPLE_START`.

    Parameters
    ----------
    spec
        The symbol (start price, tick, lot, volatility, volume).
    seed
        Random seed; each symbol derives its own streams from it.
    days
        Number of days of bars (1440 bars a day).

    Returns
    -------
    polars.DataFrame
        `OHLCV` schema, ``ts`` = bar open; prices are whole ticks, volumes whole lots.
        ``open`` equals the previous bar's ``close``.
    """
    _check_args(seed, days)
    n = days * _DAY_MIN
    season = _seasonality(n)
    sigma_base = spec.daily_vol / np.sqrt(_DAY_MIN)
    sigma = sigma_base * season * np.exp(_log_vol(seed, spec, n))
    logp, regime = _regime_path(seed, spec, sigma, sigma_base)

    tpu = spec.ticks_per_unit
    close = np.rint(np.exp(logp) * tpu).astype(np.int64)
    open_ = np.empty_like(close)
    open_[0] = round(spec.start_price * tpu)
    open_[1:] = close[:-1]
    # Wicks beyond the body: exponential, scaled by this minute's volatility.
    sigma_eff = sigma * np.asarray(_REGIME_VOL)[regime]
    wick = _rng(seed, spec, _S_WICK).exponential(size=(n, 2))
    scale = 0.45 * sigma_eff * close
    high = np.maximum(open_, close) + np.floor(wick[:, 0] * scale).astype(np.int64)
    low = np.minimum(open_, close) - np.floor(wick[:, 1] * scale).astype(np.int64)

    # Volume: seasonal, larger in volatile regimes and on big moves; lognormal noise.
    ret = np.diff(np.log(close), prepend=np.log(open_[0]))
    move = np.minimum(np.abs(ret) / sigma_eff, 6.0)
    noise = np.exp(0.45 * _rng(seed, spec, _S_VOLUME).standard_normal(n) - 0.5 * 0.45**2)
    vol_units = (
        spec.volume_per_minute
        * season
        * (sigma_eff / sigma_base) ** 0.7
        * (0.55 + 0.45 * move)
        * noise
        / 1.1
    )
    lots = np.maximum(np.rint(vol_units * spec.lots_per_unit), 1000).astype(np.int64)

    ts = _START_NS + np.arange(n, dtype=np.int64) * _MIN_NS
    return pl.DataFrame(
        {
            "ts": pl.Series(ts).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"),
            "open": open_ / tpu,
            "high": high / tpu,
            "low": low / tpu,
            "close": close / tpu,
            "volume": lots / spec.lots_per_unit,
        },
        schema=OHLCV.schema,
    )


def aggregate_ohlcv(
    bars: pl.DataFrame, minutes: int, *, lots_per_unit: int | None = None
) -> pl.DataFrame:
    """Aggregate 1m bars into ``minutes``-minute bars, stamped at the bar open.

    open = first open, high = max, low = min, close = last close, volume = sum. Only complete
    buckets (all ``minutes`` bars present) are kept.

    Parameters
    ----------
    bars
        1m bars with the `OHLCV` schema.
    minutes
        Length of the target bars (must divide a day for aligned buckets, e.g. 5 or 15).
    lots_per_unit
        When given, volumes are summed in whole lots, so the result is the decimal sum
        exactly (rather than a float sum that depends on the order of additions).

    Returns
    -------
    polars.DataFrame
        `OHLCV` schema.
    """
    if minutes < 1:
        raise ConfigError(f"minutes {minutes!r} must be >= 1")
    volume = pl.col("volume")
    if lots_per_unit is not None:
        vol_expr = (volume * lots_per_unit).round().cast(pl.Int64).sum() / lots_per_unit
    else:
        vol_expr = volume.sum()
    out = (
        bars.sort("ts")
        .group_by_dynamic("ts", every=f"{minutes}m", closed="left", label="left")
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            vol_expr.alias("volume"),
            pl.len().alias("__n"),
        )
    )
    return out.filter(pl.col("__n") == minutes).drop("__n").select(list(OHLCV.schema))


# ---------------------------------------------------------------------- trades + book
class _Draws:
    """Scalar uniforms and normals from a buffered generator (fast in Python loops)."""

    def __init__(self, rng: np.random.Generator, size: int = 65_536) -> None:
        self._rng = rng
        self._size = size
        self._u: list[float] = []
        self._z: list[float] = []

    def u(self) -> float:
        if not self._u:
            self._u = self._rng.random(self._size).tolist()
            self._u.reverse()
        return self._u.pop()

    def z(self) -> float:
        if not self._z:
            self._z = self._rng.standard_normal(self._size).tolist()
            self._z.reverse()
        return self._z.pop()


def _bar_points(o: int, h: int, lo: int, c: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``m`` >= 4 trade prices (ticks) from ``o`` to ``c`` touching ``h`` and ``lo``."""
    low_first = rng.random() < (0.7 if c >= o else 0.3)
    e1, e2 = (lo, h) if low_first else (h, lo)
    legs = [(o, e1), (e1, e2), (e2, c)]
    weight = np.array([abs(b - a) + 1.0 for a, b in legs])
    extra = m - 4
    alloc = np.floor(extra * weight / weight.sum()).astype(int)
    alloc[int(np.argmax(weight))] += extra - int(alloc.sum())
    steps = 1 + alloc
    noise = rng.standard_normal(int(steps.sum()))
    points = [np.array([o], dtype=np.int64)]
    used = 0
    for (a, b), k in zip(legs, steps, strict=True):
        j = np.arange(1, k + 1)
        s = 0.5 * max(abs(b - a), (h - lo) / 4.0, 2.0) / np.sqrt(k)
        walk = np.cumsum(noise[used : used + k]) * s
        used += k
        bridge = walk - (j / k) * walk[-1]
        leg = np.rint(a + (b - a) * j / k + bridge).astype(np.int64)
        leg[-1] = b
        points.append(np.clip(leg, lo, h))
    return np.concatenate(points)


def _split_lots(total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` lots into ``n`` positive whole-lot quantities (heavy-tailed)."""
    w = np.exp(rng.standard_normal(n))
    q = 1 + np.floor((total - n) * w / w.sum()).astype(np.int64)
    q[int(np.argmax(w))] += total - int(q.sum())
    return q


class _Book:
    """An L2 book of whole ticks and lots, emitting diffs that keep `BOOK_DEPTH` levels a side.

    Each side holds its touch plus `BOOK_DEPTH` - 1 levels on a coarser grid of
    ``spec.level_step`` ticks beyond it, so deeper levels persist while the touch moves and
    only the levels that the move crosses are deleted or inserted.
    """

    def __init__(self, spec: SymbolSpec, draws: _Draws) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._draws = draws
        self._size = spec.level_size * spec.lots_per_unit
        self._step = spec.level_step

    def _new_size(self, depth: int) -> int:
        z = self._draws.z()
        return max(1, int(self._size * (1.0 + 0.08 * depth) * math.exp(0.6 * z - 0.18)))

    def _levels(self, touch: int, side: int) -> list[int]:
        g = self._step
        first = ((touch - 1) // g) * g if side < 0 else (touch // g + 1) * g
        return [touch] + [first + side * g * k for k in range(BOOK_DEPTH - 1)]

    def _side(
        self, old: dict[int, int], touch: int, side: int, consumed: tuple[int, int] | None
    ) -> dict[int, int]:
        new: dict[int, int] = {}
        u, z = self._draws.u, self._draws.z
        for k, p in enumerate(self._levels(touch, side)):
            q = old.get(p)
            if q is not None and consumed is not None and consumed[0] == p:
                q = q - consumed[1] if q > consumed[1] else None
            if q is None:
                q = self._new_size(k)
            elif u() < 0.2:  # resting size changes: orders added or cancelled
                q = max(1, int(q * math.exp(0.3 * z())))
            new[p] = q
        return new

    def move(
        self,
        bid: int,
        ask: int,
        *,
        need: tuple[str, int] | None = None,
        consumed: tuple[str, int, int] | None = None,
    ) -> list[tuple[str, int, int]]:
        """Move the touch to ``bid``/``ask``; return the diff rows ``(side, price, lots)``.

        ``need`` = (side, lots): the touch of that side holds at least that much.
        ``consumed`` = (side, price, lots): liquidity taken by trades since the last move.
        Rows are ordered deletions first, so the book is never crossed between rows.
        """
        c_bid = (consumed[1], consumed[2]) if consumed and consumed[0] == "bid" else None
        c_ask = (consumed[1], consumed[2]) if consumed and consumed[0] == "ask" else None
        bids = self._side(self.bids, bid, -1, c_bid)
        asks = self._side(self.asks, ask, +1, c_ask)
        if need is not None:
            book, p = (bids, bid) if need[0] == "bid" else (asks, ask)
            u = self._draws.u()
            extra = 0 if u < 0.3 else int(need[1] * 1.5 * u)  # sometimes the level is swept
            book[p] = max(book[p], need[1] + extra)
        rows = [("bid", p, 0) for p in self.bids if p not in bids]
        rows += [("ask", p, 0) for p in self.asks if p not in asks]
        rows += [("bid", p, q) for p, q in bids.items() if self.bids.get(p) != q]
        rows += [("ask", p, q) for p, q in asks.items() if self.asks.get(p) != q]
        self.bids, self.asks = bids, asks
        return rows

    def snapshot(self, bid: int, ask: int) -> list[tuple[str, int, int]]:
        """Replace the book by fresh levels around ``bid``/``ask``; return its rows."""
        self.bids = self._side({}, bid, -1, None)
        self.asks = self._side({}, ask, +1, None)
        return [("bid", p, q) for p, q in self.bids.items()] + [
            ("ask", p, q) for p, q in self.asks.items()
        ]


def _spread(u: float) -> int:
    """Spread in ticks: mostly one tick, sometimes wider."""
    if u < 0.75:
        return 1
    if u < 0.90:
        return 2
    return 3 + int((u - 0.90) * 40)  # 3..6


def generate_trades_and_book(
    spec: SymbolSpec,
    bars_1m: pl.DataFrame,
    *,
    seed: int = 7,
    window_minutes: int = WINDOW_MINUTES,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return trades and L2 book events consistent with the last ``window_minutes`` 1m bars.

    Each minute's trades rebuild its bar (first price = open, max = high, min = low, last =
    close, quantities sum to the volume in whole lots). Trades come in short bursts at one
    price; before each burst a book diff moves the touch so that a buy prints at the best ask
    and a sell at the best bid (side by the tick rule). The book starts with a
    `BOOK_DEPTH`-level snapshot at the window's first bar open and keeps `BOOK_DEPTH` levels
    per side (the touch, then levels every ``spec.level_step`` ticks); diffs delete levels
    that leave, insert levels that enter, take the traded size off the touch and let resting
    sizes change.

    Parameters
    ----------
    spec
        The symbol.
    bars_1m
        1m bars of that symbol (from `generate_ohlcv_1m`), at least ``window_minutes`` long.
    seed
        Random seed (the window's stream also depends on its start, so windows differ).
    window_minutes
        Length of the window at the end of ``bars_1m``.

    Returns
    -------
    tuple of polars.DataFrame
        ``(trades, book)`` with the `TRADES` and `BOOK` schemas. Trade ``ts`` is exchange
        time, comparable with the book's ``ts_exch``; ``ts_local`` = ``ts_exch`` + 5-30 ms
        latency (non-decreasing, so both clocks order the events alike).
    """
    _check_args(seed, 1)
    if window_minutes < 1 or len(bars_1m) < window_minutes:
        raise ConfigError(
            f"window_minutes {window_minutes!r} must be in [1, {len(bars_1m)}] (bars given)"
        )
    tpu, lpu = spec.ticks_per_unit, spec.lots_per_unit
    win = bars_1m.sort("ts").tail(window_minutes)
    ts0 = win["ts"].dt.epoch("ns").to_numpy()
    o_t, h_t, l_t, c_t = (
        np.rint(win[c].to_numpy() * tpu).astype(np.int64) for c in ("open", "high", "low", "close")
    )
    v_l = np.rint(win["volume"].to_numpy() * lpu).astype(np.int64)
    v_mean = float(v_l.mean())

    rng = _rng(seed, spec, _S_WINDOW, int(ts0[0] // _MIN_NS))
    draws = _Draws(rng)
    book = _Book(spec, draws)

    t_ts: list[int] = []
    t_px: list[int] = []
    t_q: list[int] = []
    t_side: list[str] = []
    b_ts: list[int] = []  # ts_exch of each message
    b_rows: list[list[tuple[str, int, int]]] = []
    b_snap: list[bool] = []

    s0 = _spread(draws.u())
    b_ts.append(int(ts0[0]))
    b_rows.append(book.snapshot(int(o_t[0]) - s0, int(o_t[0])))
    b_snap.append(True)

    last_price = int(o_t[0])
    last_side = "buy" if draws.u() < 0.5 else "sell"
    consumed: tuple[str, int, int] | None = None
    for i in range(len(win)):
        o, h, lo, c, vol = int(o_t[i]), int(h_t[i]), int(l_t[i]), int(c_t[i]), int(v_l[i])
        m = int(np.clip(6 + rng.poisson(14.0 * vol / v_mean), 4, 60))
        points = _bar_points(o, h, lo, c, m, rng)
        bursts = 1 + np.minimum(rng.poisson(0.8, m), 5)
        n = int(bursts.sum())
        qty = _split_lots(vol, n, rng)
        slots = np.sort(rng.choice(np.arange(1, 600), size=m, replace=False))
        jitter = np.floor(rng.random(m) * 40_000).astype(np.int64) * 1000  # 0-40 ms, in us
        t_point = int(ts0[i]) + slots * 100 * _MS + jitter
        lead = (1 + np.floor(rng.random(m) * 39_000)).astype(np.int64) * 1000  # 1-40 ms
        k = 0
        for j in range(m):
            p = int(points[j])
            if p > last_price:
                side = "buy"
            elif p < last_price:
                side = "sell"
            else:
                side = last_side
            spread = _spread(draws.u())
            bid, ask = (p - spread, p) if side == "buy" else (p, p + spread)
            burst_q = qty[k : k + int(bursts[j])]
            need = ("ask" if side == "buy" else "bid", int(burst_q.sum()))
            b_ts.append(int(t_point[j] - lead[j]))
            b_rows.append(book.move(bid, ask, need=need, consumed=consumed))
            b_snap.append(False)
            t = int(t_point[j])
            for q in burst_q:
                t_ts.append(t)
                t_px.append(p)
                t_q.append(int(q))
                t_side.append(side)
                t += 500_000 + int(draws.u() * 2_500_000)  # 0.5-3 ms apart
            consumed = (need[0], p, need[1])
            k += int(bursts[j])
            last_price, last_side = p, side

    # Latency: ts_local = ts_exch + 5-30 ms, made non-decreasing.
    msg_exch = np.asarray(b_ts, dtype=np.int64)
    latency = (5_000 + np.floor(rng.random(len(msg_exch)) * 25_000)).astype(np.int64) * 1000
    msg_local = np.maximum.accumulate(msg_exch + latency)
    sizes = np.array([len(r) for r in b_rows])
    flat = [row for rows in b_rows for row in rows]

    trade_base = int(ts0[0] // _MIN_NS) * 10_000
    trades = pl.DataFrame(
        {
            "ts": _ts_series(np.asarray(t_ts, dtype=np.int64)),
            "price": np.asarray(t_px, dtype=np.int64) / tpu,
            "qty": np.asarray(t_q, dtype=np.int64) / lpu,
            "side": t_side,
            "trade_id": [str(trade_base + i) for i in range(len(t_ts))],
        },
        schema=TRADES.schema,
    )
    book_df = pl.DataFrame(
        {
            "ts_exch": _ts_series(np.repeat(msg_exch, sizes)),
            "ts_local": _ts_series(np.repeat(msg_local, sizes)),
            "side": [r[0] for r in flat],
            "price": np.asarray([r[1] for r in flat], dtype=np.int64) / tpu,
            "qty": np.asarray([r[2] for r in flat], dtype=np.int64) / lpu,
            "is_snapshot": np.repeat(np.asarray(b_snap), sizes),
        },
        schema=BOOK.schema,
    )
    return trades, book_df


def _ts_series(ns: np.ndarray) -> pl.Series:
    return pl.Series(ns, dtype=pl.Int64).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")


# ---------------------------------------------------------------------- whole sample
def generate_symbol(spec: SymbolSpec, *, seed: int = 7, days: int = 30) -> SampleFrames:
    """Return every frame of the sample for one symbol (no IO).

    Parameters
    ----------
    spec
        The symbol.
    seed
        Random seed.
    days
        Days of 1m bars from `SAMPLE_START`; the trades/book window is the last
        `WINDOW_MINUTES` minutes.
    """
    bars = generate_ohlcv_1m(spec, seed=seed, days=days)
    trades, book = generate_trades_and_book(spec, bars, seed=seed)
    end = SAMPLE_START + timedelta(days=days)
    return SampleFrames(
        spec=spec,
        ohlcv_1m=bars,
        ohlcv_5m=aggregate_ohlcv(bars, 5, lots_per_unit=spec.lots_per_unit),
        trades=trades,
        book=book,
        window_start=end - timedelta(minutes=WINDOW_MINUTES),
        window_end=end,
    )


def _stored_source(catalog: Catalog, symbol: str) -> str | None:
    import pyarrow.parquet as pq

    files = catalog.files("ohlcv", SAMPLE_EXCHANGE, symbol, "1m")
    if not files:
        return None
    md = pq.ParquetFile(files[0]).schema_arrow.metadata or {}
    value = md.get(b"tierline.source")
    return value.decode() if value is not None else ""


def write_sample(catalog: Catalog, *, seed: int = 7, days: int = 30) -> str:
    """Write the synthetic sample into a catalog; return a summary of what was written.

    Writes, for each of `SAMPLE_SYMBOLS` on exchange ``synthetic``: 1m and 5m OHLCV for
    ``days`` days from 2024-01-01 UTC, and trades plus L2 book events for the last two hours.
    All files are marked synthetic with source ``tierline-sample:seed=<seed>``. Idempotent:
    writing the same sample again adds nothing.

    Parameters
    ----------
    catalog
        Where to write.
    seed
        Random seed (the same seed gives the same data).
    days
        Days of 1m bars, 1 to `MAX_DAYS`.

    Returns
    -------
    str
        A few human-readable lines: rows written and new per dataset, and the window.

    Raises
    ------
    ConfigError
        If seed or days are out of range, or the catalog already holds a sample written with
        another seed (mixing them would make trades disagree with bars).
    """
    _check_args(seed, days)
    source = sample_source(seed)
    for spec in SAMPLE_SYMBOLS:
        stored = _stored_source(catalog, spec.symbol)
        if stored is not None and stored != source:
            raise ConfigError(
                f"the catalog at {catalog.root} already holds {SAMPLE_EXCHANGE} "
                f"{spec.symbol} data from {stored or 'an unknown source'!r}, not {source!r}; "
                f"delete the exchange={SAMPLE_EXCHANGE} folders under {catalog.root}/ohlcv, "
                "/trades and /book, or pass another --data-dir"
            )
    lines = [
        f"synthetic sample (seed {seed}): {days} day(s) of 1m bars from "
        f"{SAMPLE_START:%Y-%m-%d %H:%M} UTC on exchange {SAMPLE_EXCHANGE!r}"
    ]
    added = 0
    for spec in SAMPLE_SYMBOLS:
        f = generate_symbol(spec, seed=seed, days=days)
        kw = {"exchange": SAMPLE_EXCHANGE, "symbol": spec.symbol, "source": source}
        r1 = catalog.write_ohlcv(f.ohlcv_1m, timeframe="1m", synthetic=True, **kw)
        r5 = catalog.write_ohlcv(f.ohlcv_5m, timeframe="5m", synthetic=True, **kw)
        rt = catalog.write_trades(f.trades, synthetic=True, **kw)
        rb = catalog.write_book(f.book, synthetic=True, **kw)
        n_added = r1.rows_added + r5.rows_added + rt.rows_added + rb.rows_added
        added += n_added
        logger.info("sample %s: %d new rows (seed %d, %d days)", spec.symbol, n_added, seed, days)
        lines.append(
            f"  {spec.symbol}: ohlcv 1m {r1.rows_in:,} bars ({r1.rows_added:,} new), "
            f"5m {r5.rows_in:,} ({r5.rows_added:,} new); "
            f"{f.window_start:%Y-%m-%d %H:%M} to {f.window_end:%Y-%m-%d %H:%M} UTC: "
            f"trades {rt.rows_in:,} ({rt.rows_added:,} new), "
            f"book {rb.rows_in:,} rows ({rb.rows_added:,} new)"
        )
    lines.append(
        f"{added:,} new row(s) written"
        if added
        else "nothing new: the catalog already holds this sample"
    )
    return "\n".join(lines)
