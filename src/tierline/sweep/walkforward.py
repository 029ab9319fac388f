"""Walk-forward analysis: choose parameters in-sample, score them on the following block.

The bars are cut into ``train_blocks + K`` contiguous blocks of (nearly) equal length. Fold
``i`` (``i = 0 .. K-1``) tests on block ``train_blocks + i`` (its out-of-sample span, OOS) and
chooses parameters on an in-sample span (IS) that ends where the OOS span starts:

- ``anchored`` (default): IS = blocks ``0 .. train_blocks + i - 1`` (it grows fold by fold);
- ``rolling``: IS = the ``train_blocks`` blocks just before the OOS block (constant length).

In each fold every candidate parameter set is simulated on the IS span (flat at its start,
force-closed at its end) and the best by the objective (default ``sharpe``; ``max_drawdown``
is minimised, every other metric maximised; NaN ranks last; ties go to the earlier set) is
simulated on the OOS span. The concatenated OOS result chains the folds: fold ``i + 1`` starts
with the equity fold ``i`` ended with, and its metrics (`tierline.core.metrics`) over the
whole OOS period are what later tiers and the promotion gate read.

Signals are computed once per parameter set over all bars and then sliced, which equals a run
starting at the span with the history before it: strategies are causal (checked by
``tierline check``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from tierline.core.conventions import ExecutionConfig
from tierline.core.metrics import METRIC_NAMES, compute_metrics
from tierline.errors import ConfigError, DataError
from tierline.sweep.evaluate import BarArrays, Segment, simulate

if TYPE_CHECKING:
    import pandas as pd

    from tierline.strategy.contract import Strategy

__all__ = [
    "MINIMISED",
    "Fold",
    "FoldResult",
    "WalkForwardResult",
    "best_index",
    "make_folds",
    "objective_order",
    "stitch_oos",
]

logger = logging.getLogger(__name__)

WalkForwardMode = Literal["anchored", "rolling"]
#: Metrics where smaller is better.
MINIMISED = frozenset({"max_drawdown"})


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: an in-sample and an out-of-sample span of bars."""

    index: int
    is_seg: Segment
    oos_seg: Segment


def make_folds(
    n_bars: int, k: int, *, mode: WalkForwardMode = "anchored", train_blocks: int = 1
) -> list[Fold]:
    """Return the ``k`` folds over ``n_bars`` bars (see the module docstring).

    Raises
    ------
    ConfigError
        If ``k`` or ``train_blocks`` is below 1, the mode is unknown, or a block would hold
        fewer than two bars.
    """
    if k < 1 or train_blocks < 1:
        raise ConfigError(
            f"walk-forward needs folds >= 1 and train_blocks >= 1 (got {k}, {train_blocks})"
        )
    if mode not in ("anchored", "rolling"):
        raise ConfigError(f"walk-forward mode {mode!r} is not 'anchored' or 'rolling'")
    blocks = train_blocks + k
    if n_bars < 2 * blocks:
        raise ConfigError(
            f"{n_bars} bars are too few for {k} walk-forward folds ({blocks} blocks of >= 2 bars)"
        )
    edges = [round(j * n_bars / blocks) for j in range(blocks + 1)]
    folds = []
    for i in range(k):
        oos_block = train_blocks + i
        first = 0 if mode == "anchored" else oos_block - train_blocks
        folds.append(
            Fold(
                index=i,
                is_seg=Segment(edges[first], edges[oos_block]),
                oos_seg=Segment(edges[oos_block], edges[oos_block + 1]),
            )
        )
    return folds


def objective_order(values: np.ndarray, objective: str) -> np.ndarray:
    """Return positions sorted best first (NaN last, ties in original order)."""
    if objective not in METRIC_NAMES:
        raise ConfigError(f"objective {objective!r} is not one of {', '.join(METRIC_NAMES)}")
    v = np.asarray(values, dtype=np.float64)
    key = v if objective in MINIMISED else -v
    key = np.where(np.isnan(key), np.inf, key)
    return np.argsort(key, kind="stable")


def best_index(values: np.ndarray, objective: str) -> int | None:
    """Return the position of the best value by ``objective``, or None if all are NaN."""
    v = np.asarray(values, dtype=np.float64)
    if not len(v) or np.isnan(v).all():
        return None
    return int(objective_order(v, objective)[0])


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(int(ns) / 1e9, tz=UTC)


@dataclass(frozen=True, kw_only=True)
class FoldResult:
    """The outcome of one fold.

    Attributes
    ----------
    fold
        Fold number (0-based).
    is_start, is_end, oos_start, oos_end
        Open time of the first and of the last bar of each span (UTC).
    params
        Parameters chosen in-sample (empty when no candidate ran).
    is_metrics, oos_metrics
        Common metrics of the chosen parameters on each span.
    n_candidates
        Parameter sets compared in-sample.
    """

    fold: int
    is_start: datetime
    is_end: datetime
    oos_start: datetime
    oos_end: datetime
    params: dict[str, Any]
    is_metrics: dict[str, float]
    oos_metrics: dict[str, float]
    n_candidates: int

    def as_row(self) -> dict[str, Any]:
        """Return a flat record (``is_*`` and ``oos_*`` metrics, params as text)."""
        from tierline.strategy.contract import format_params

        row: dict[str, Any] = {
            "fold": self.fold,
            "is_start": self.is_start,
            "is_end": self.is_end,
            "oos_start": self.oos_start,
            "oos_end": self.oos_end,
            "params": format_params(self.params),
            "n_candidates": self.n_candidates,
        }
        row.update({f"is_{k}": self.is_metrics.get(k, math.nan) for k in METRIC_NAMES})
        row.update({f"oos_{k}": self.oos_metrics.get(k, math.nan) for k in METRIC_NAMES})
        return row


@dataclass(frozen=True, kw_only=True)
class WalkForwardResult:
    """Walk-forward outcome: per-fold choices and the concatenated out-of-sample result."""

    mode: str
    n_folds: int
    train_blocks: int
    objective: str
    folds: tuple[FoldResult, ...]
    oos_metrics: dict[str, float]
    oos_equity: pl.DataFrame = field(repr=False)
    oos_trades: pl.DataFrame = field(repr=False)

    def folds_table(self) -> pl.DataFrame:
        """Return one row per fold (spans, chosen params, IS and OOS metrics)."""
        return pl.DataFrame([f.as_row() for f in self.folds])


def fold_result(
    fold: Fold,
    arrays: BarArrays,
    params: Mapping[str, Any] | None,
    is_metrics: Mapping[str, float],
    oos_metrics: Mapping[str, float],
    n_candidates: int,
) -> FoldResult:
    """Build a `FoldResult` (timestamps from the bar arrays)."""
    return FoldResult(
        fold=fold.index,
        is_start=_utc(arrays.ts[fold.is_seg.start]),
        is_end=_utc(arrays.ts[fold.is_seg.stop - 1]),
        oos_start=_utc(arrays.ts[fold.oos_seg.start]),
        oos_end=_utc(arrays.ts[fold.oos_seg.stop - 1]),
        params=dict(params or {}),
        is_metrics={k: float(v) for k, v in is_metrics.items()},
        oos_metrics={k: float(v) for k, v in oos_metrics.items()},
        n_candidates=n_candidates,
    )


def stitch_oos(
    strategy: Strategy,
    frame: pd.DataFrame,
    arrays: BarArrays,
    folds: Sequence[Fold],
    chosen: Sequence[Mapping[str, Any] | None],
    config: ExecutionConfig,
) -> tuple[dict[str, float], pl.DataFrame, pl.DataFrame]:
    """Chain each fold's chosen parameters over its OOS span; return metrics, equity, trades.

    A fold without a choice stays flat (its equity is carried unchanged).

    Raises
    ------
    DataError
        If there are no folds.
    """
    if not folds:
        raise DataError("no walk-forward folds to stitch")
    cash = float(config.initial_cash)
    equities, trades = [], []
    for fold, params in zip(folds, chosen, strict=True):
        seg = fold.oos_seg
        if params is None:
            n = len(seg)
            enter = np.zeros(len(arrays), dtype=bool)
            exit_ = enter
        else:
            sig = strategy.signals(frame, params)
            enter, exit_ = sig.enter_long, sig.exit_long
            n = len(seg)
        res = simulate(arrays, enter, exit_, config, segment=seg, initial_cash=cash)
        assert res.equity.height == n
        equities.append(res.equity)
        trades.append(res.trades)
        cash = float(res.equity["equity"][-1])
    equity = pl.concat(equities)
    trade_table = pl.concat(trades)
    metrics = compute_metrics(trade_table, equity, initial_cash=config.initial_cash)
    return metrics, equity, trade_table
