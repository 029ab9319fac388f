"""Evaluate many parameter sets at once: strategy signals in chunks, the fused kernel, metrics.

The signals always come from the strategy (its signal function, or its optional batched hook,
see `tierline.strategy.contract`); the kernel (`tierline.sweep.kernel_nb`) simulates them under
the execution conventions exactly as the vectorbt adapter does, and `metrics_from_kernel` turns
its per-row statistics into the common metrics with the formulas of
`tierline.core.metrics.compute_metrics`.

Memory stays bounded: parameter sets are processed in chunks whose signal buffers take about
``chunk_bytes`` (two boolean arrays per set), and per set only the metrics (and, for the first
segment, the equity at the end of each UTC day) are kept.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from tierline.core.conventions import ExecutionConfig
from tierline.core.metrics import METRIC_NAMES, PERIODS_PER_YEAR
from tierline.core.result import TRADES_TABLE_SCHEMA, BacktestResult
from tierline.errors import DataError, EngineError

if TYPE_CHECKING:
    import pandas as pd

    from tierline.strategy.contract import Strategy

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "BarArrays",
    "Evaluation",
    "Segment",
    "daily_returns",
    "evaluate",
    "metrics_from_kernel",
    "simulate",
]

logger = logging.getLogger(__name__)

_DAY_NS = 86_400 * 10**9
#: Default memory for one chunk's signal buffers (two bytes per bar and parameter set).
DEFAULT_CHUNK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Segment:
    """A span of bars ``[start, stop)`` by position."""

    start: int
    stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise DataError(f"segment [{self.start}, {self.stop}) is empty or negative")

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True, eq=False)
class BarArrays:
    """The bar arrays the kernel needs, extracted once from catalog bars."""

    ts: np.ndarray  # int64 ns since the epoch, UTC, bar open
    open: np.ndarray
    close: np.ndarray

    @classmethod
    def from_bars(cls, bars: pl.DataFrame) -> BarArrays:
        """Extract ``ts`` (ns), ``open`` and ``close`` from catalog bars.

        Raises
        ------
        DataError
            If there are fewer than two bars or prices are not positive and finite.
        """
        if bars.height < 2:
            raise DataError(f"need at least two bars to sweep, got {bars.height}")
        ts = np.ascontiguousarray(
            bars["ts"].cast(pl.Datetime("ns", "UTC")).dt.epoch("ns").to_numpy(), dtype=np.int64
        )
        open_ = np.ascontiguousarray(bars["open"].cast(pl.Float64).to_numpy(), dtype=np.float64)
        close = np.ascontiguousarray(bars["close"].cast(pl.Float64).to_numpy(), dtype=np.float64)
        for name, a in (("open", open_), ("close", close)):
            if not (np.isfinite(a).all() and (a > 0).all()):
                raise DataError(f"bar {name} prices must be positive and finite to sweep")
        return cls(ts=ts, open=open_, close=close)

    def __len__(self) -> int:
        return len(self.ts)

    def full(self) -> Segment:
        """Return the segment of all bars."""
        return Segment(0, len(self.ts))

    def day_end(self, seg: Segment) -> np.ndarray:
        """Return the positions, relative to ``seg``, of the last bar of each UTC day in it."""
        day = self.ts[seg.start : seg.stop] // _DAY_NS
        return np.flatnonzero(np.append(day[1:] != day[:-1], True)).astype(np.int64)

    def span_days(self, seg: Segment) -> float:
        """Return the segment's span in days as `compute_metrics` measures it for CAGR."""
        t = self.ts[seg.start : seg.stop]
        span = int(t[-1] - t[0]) + int(np.median(np.diff(t))) if len(t) >= 2 else _DAY_NS
        return span / _DAY_NS


def daily_returns(daily_equity: np.ndarray, initial_cash: float) -> np.ndarray:
    """Return daily returns from end-of-day equity (rows = parameter sets), as
    `compute_metrics` defines them: the first day against ``initial_cash``."""
    d = np.asarray(daily_equity, dtype=np.float64)
    if d.ndim == 1:
        d = d[None, :]
    full = np.concatenate([np.full((d.shape[0], 1), float(initial_cash)), d], axis=1)
    return full[:, 1:] / full[:, :-1] - 1.0  # type: ignore[no-any-return]


def metrics_from_kernel(
    stats: np.ndarray, daily: np.ndarray, *, n_bars: int, span_days: float, initial_cash: float
) -> dict[str, np.ndarray]:
    """Return the common metrics (one array per name, one value per row) from kernel output.

    The formulas are those of `tierline.core.metrics.compute_metrics`, vectorised.
    """
    from tierline.sweep import kernel_nb as K

    cash0 = float(initial_cash)
    last = stats[:, K.STAT_FINAL_EQUITY]
    n_tr = stats[:, K.STAT_TRADES]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        total_return = last / cash0 - 1.0
        cagr = np.where(last > 0, (last / cash0) ** (PERIODS_PER_YEAR / span_days) - 1.0, -1.0)
        r = daily_returns(daily, cash0)
        m = r.shape[1]
        if m >= 2:
            mean = r.mean(axis=1)
            std = r.std(axis=1, ddof=1)
            scale = math.sqrt(PERIODS_PER_YEAR)
            sharpe = np.where(std > 0, mean / std * scale, 0.0)
            downside = np.sqrt(np.sum(np.minimum(r, 0.0) ** 2, axis=1) / (m - 1))
            sortino = np.where(
                downside > 0, mean / downside * scale, np.where(mean > 0, np.inf, 0.0)
            )
        else:
            sharpe = np.full(len(last), np.nan)
            sortino = np.full(len(last), np.nan)
        win_rate = np.where(n_tr > 0, stats[:, K.STAT_WINS] / n_tr, 0.0)
        gw, gl = stats[:, K.STAT_GROSS_WIN], stats[:, K.STAT_GROSS_LOSS]
        profit_factor = np.where(gl > 0, gw / gl, np.where(gw > 0, np.inf, 0.0))
        exposure = np.where(n_tr > 0, stats[:, K.STAT_BARS_HELD] / n_bars, 0.0)
    out = {
        "total_return": total_return,
        "cagr": cagr,
        "sharpe": sharpe,
        "sortino": sortino,
        "max_drawdown": stats[:, K.STAT_MAX_DD].copy(),
        "trades": n_tr.copy(),
        "win_rate": win_rate,
        "profit_factor": profit_factor,
        "exposure": exposure,
    }
    assert tuple(out) == METRIC_NAMES
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _stake(config: ExecutionConfig) -> float:
    return math.nan if config.stake is None else float(config.stake)


def simulate(
    arrays: BarArrays,
    enter: np.ndarray,
    exit_: np.ndarray,
    config: ExecutionConfig,
    *,
    segment: Segment | None = None,
    initial_cash: float | None = None,
) -> BacktestResult:
    """Simulate one signal pair with the kernel and return trades and equity.

    Parameters
    ----------
    arrays
        Bar arrays.
    enter, exit_
        Signals of all bars (as the strategy decided them, not shifted).
    config
        Execution conventions.
    segment
        Simulate only these bars (flat at its start, force-closed at its end); all when None.
    initial_cash
        Starting equity (default ``config.initial_cash``); walk-forward chains segments.

    Returns
    -------
    BacktestResult
        ``engine="sweep-kernel"``.
    """
    from tierline.sweep.kernel_nb import N_TRADE_FIELDS, simulate_nb

    seg = segment or arrays.full()
    a, b = seg.start, seg.stop
    n = b - a
    cash0 = float(config.initial_cash if initial_cash is None else initial_cash)
    eq = np.empty(n, dtype=np.float64)
    tr = np.empty((n // 2 + 1, N_TRADE_FIELDS), dtype=np.float64)
    ts = arrays.ts[a:b]
    stats = simulate_nb(
        arrays.open[a:b],
        arrays.close[a:b],
        np.ascontiguousarray(enter[a:b], dtype=np.bool_),
        np.ascontiguousarray(exit_[a:b], dtype=np.bool_),
        float(config.fee),
        cash0,
        _stake(config),
        np.empty(0, dtype=np.int64),
        np.empty(0, dtype=np.float64),
        eq,
        tr,
    )
    k = int(stats[1])
    rows = tr[:k]
    ei = rows[:, 0].astype(np.int64)
    xi = rows[:, 1].astype(np.int64)
    tf = int(np.median(np.diff(ts))) if n >= 2 else int(np.median(np.diff(arrays.ts)))
    exit_ts = np.where(xi >= n, ts[-1] + tf, ts[np.minimum(xi, n - 1)])
    fee = float(config.fee)
    entry_price, exit_price = rows[:, 2], rows[:, 3]
    trades = pl.DataFrame(
        {
            "entry_ts": pl.Series(ts[ei], dtype=pl.Int64),
            "exit_ts": pl.Series(exit_ts, dtype=pl.Int64),
            "entry_price": entry_price,
            "exit_price": exit_price,
            "qty": rows[:, 4],
            "fees": rows[:, 5] + rows[:, 6],
            "pnl": rows[:, 7],
            "return": exit_price * (1.0 - fee) / (entry_price * (1.0 + fee)) - 1.0,
        }
    ).with_columns(
        pl.col("entry_ts", "exit_ts").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
    )
    trades = trades.cast(TRADES_TABLE_SCHEMA)  # type: ignore[arg-type]
    equity = pl.DataFrame({"ts": pl.Series(ts, dtype=pl.Int64), "equity": eq}).with_columns(
        pl.col("ts").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
    )
    return BacktestResult(engine="sweep-kernel", trades=trades, equity=equity)


@dataclass(eq=False)
class Evaluation:
    """Metrics of many parameter sets on one or more segments.

    Attributes
    ----------
    params
        The parameter sets, in order.
    segments
        The segments evaluated.
    metrics
        One mapping per segment: metric name -> array (one value per parameter set; NaN where
        the set failed).
    daily
        End-of-day equity on the first segment, shape ``(len(params), days)`` (NaN rows for
        failures), or None when not kept.
    errors
        Position of each failed parameter set -> error message.
    """

    params: list[dict[str, Any]]
    segments: list[Segment]
    metrics: list[dict[str, np.ndarray]]
    daily: np.ndarray | None
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> np.ndarray:
        """Return a boolean mask of the parameter sets that ran."""
        mask = np.ones(len(self.params), dtype=bool)
        mask[list(self.errors)] = False
        return mask


def _chunk_size(n_bars: int, chunk: int | None, chunk_bytes: int) -> int:
    if chunk is not None:
        return max(1, int(chunk))
    return int(min(1024, max(8, chunk_bytes // max(1, 2 * n_bars))))


class _SignalSource:
    """Signals of a sweep's parameter sets, consumed chunk by chunk in order.

    With a batched hook (``batch=`` of the strategy) one generator runs over *all* the sets, so
    the hook can keep its indicator cache for the whole sweep; the first set of every chunk is
    compared with the signal function (the hook must reproduce it exactly). If the hook fails,
    the remaining sets fall back to the signal function, set by set, so that only the sets
    whose signal function fails are lost.
    """

    def __init__(
        self,
        strategy: Strategy,
        frame: pd.DataFrame,
        params: Sequence[Mapping[str, Any]],
        verify: bool,
    ) -> None:
        self.strategy = strategy
        self.frame = frame
        self.params = params
        self.verify = verify
        self.batched: Any = (
            iter(strategy.iter_signals(frame, params)) if strategy.batch_fn is not None else None
        )

    def fill(
        self, lo: int, enter: np.ndarray, exit_: np.ndarray, m: int, errors: dict[int, str]
    ) -> None:
        """Fill rows ``0..m-1`` with the signals of sets ``lo..lo+m-1``; record failures."""
        enter[:m] = False
        exit_[:m] = False
        for i in range(m):
            if self.batched is not None:
                try:
                    sig = next(self.batched)
                except (EngineError, StopIteration) as e:
                    logger.info("batched signals failed (%s); continuing set by set", e)
                    self.batched = None
                else:
                    enter[i] = sig.enter_long
                    exit_[i] = sig.exit_long
                    if i == 0 and self.verify:
                        self._check(lo, enter[0], exit_[0])
                    continue
            try:
                sig = self.strategy.signals(self.frame, self.params[lo + i])
            except EngineError as e:
                errors[lo + i] = str(e)
                continue
            enter[i] = sig.enter_long
            exit_[i] = sig.exit_long

    def _check(self, pos: int, enter: np.ndarray, exit_: np.ndarray) -> None:
        ref = self.strategy.signals(self.frame, self.params[pos])
        if not (np.array_equal(ref.enter_long, enter) and np.array_equal(ref.exit_long, exit_)):
            from tierline.strategy.contract import format_params

            raise EngineError(
                f"strategy {self.strategy.name!r}: its batched signals differ from its signal "
                f"function for {format_params(self.params[pos])}; fix the batch hook"
            )


def evaluate(
    strategy: Strategy,
    bars: pl.DataFrame,
    params: Sequence[Mapping[str, Any]],
    config: ExecutionConfig,
    *,
    segments: Sequence[Segment] | None = None,
    arrays: BarArrays | None = None,
    frame: pd.DataFrame | None = None,
    keep_daily: bool = True,
    chunk: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    verify_batch: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Compute the common metrics of every parameter set on every segment.

    Parameters
    ----------
    strategy
        The strategy; its signals are computed once per set over all ``bars`` (signals are
        causal, so a segment's signals equal those of a run that starts with history).
    bars
        Catalog OHLCV bars.
    params
        Validated parameter sets.
    config
        Execution conventions.
    segments
        Bar spans to simulate, each flat at its start and force-closed at its end
        (default: all bars).
    arrays, frame
        Precomputed `BarArrays` and strategy frame of ``bars`` (computed when None).
    keep_daily
        Keep the end-of-day equity of the first segment (for PBO and the deflated Sharpe).
    chunk
        Parameter sets per chunk (default: sized from ``chunk_bytes``).
    chunk_bytes
        Memory budget of one chunk's signal buffers.
    verify_batch
        Check a strategy's batched hook against its signal function once per chunk.
    progress
        Called with the number of sets finished after each chunk.

    Returns
    -------
    Evaluation
        Metrics per segment and parameter set; failed sets are NaN and listed in ``errors``.
    """
    from tierline.core.bars import to_strategy_frame
    from tierline.sweep.kernel_nb import N_STATS, sweep_nb

    arrays = arrays or BarArrays.from_bars(bars)
    frame = frame if frame is not None else to_strategy_frame(bars)
    segs = list(segments) if segments else [arrays.full()]
    for s in segs:
        if s.stop > len(arrays):
            raise DataError(f"segment [{s.start}, {s.stop}) beyond the {len(arrays)} bars")
    plist = [dict(p) for p in params]
    k = len(plist)
    n = len(arrays)
    size = _chunk_size(n, chunk, chunk_bytes)
    enter = np.zeros((min(size, max(k, 1)), n), dtype=np.bool_)
    exit_ = np.zeros_like(enter)
    day_ends = [arrays.day_end(s) for s in segs]
    spans = [arrays.span_days(s) for s in segs]
    metrics = [{name: np.full(k, np.nan) for name in METRIC_NAMES} for _ in segs]
    daily = np.full((k, len(day_ends[0])), np.nan) if keep_daily else None
    errors: dict[int, str] = {}
    fee, cash0, stake = float(config.fee), float(config.initial_cash), _stake(config)
    source = _SignalSource(strategy, frame, plist, verify_batch)
    for lo in range(0, k, size):
        m = min(size, k - lo)
        source.fill(lo, enter, exit_, m, errors)
        for si, seg in enumerate(segs):
            st = np.empty((m, N_STATS), dtype=np.float64)
            dl = np.empty((m, len(day_ends[si])), dtype=np.float64)
            sweep_nb(
                arrays.open[seg.start : seg.stop],
                arrays.close[seg.start : seg.stop],
                enter[:m, seg.start : seg.stop],
                exit_[:m, seg.start : seg.stop],
                fee,
                cash0,
                stake,
                day_ends[si],
                st,
                dl,
            )
            got = metrics_from_kernel(
                st, dl, n_bars=len(seg), span_days=spans[si], initial_cash=cash0
            )
            for name, values in got.items():
                metrics[si][name][lo : lo + m] = values
            if si == 0 and daily is not None:
                daily[lo : lo + m] = dl
        if progress is not None:
            progress(m)
    bad = sorted(errors)
    if bad:
        for seg_metrics in metrics:
            for values in seg_metrics.values():
                values[bad] = np.nan
        if daily is not None:
            daily[bad] = np.nan
    return Evaluation(params=plist, segments=segs, metrics=metrics, daily=daily, errors=errors)
