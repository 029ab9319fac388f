"""Walk-forward folds and objective ordering."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tierline.errors import ConfigError
from tierline.sweep.evaluate import Segment
from tierline.sweep.walkforward import best_index, make_folds, objective_order


def spans(folds):  # type: ignore[no-untyped-def]
    return [((f.is_seg.start, f.is_seg.stop), (f.oos_seg.start, f.oos_seg.stop)) for f in folds]


def test_anchored_folds_grow_from_the_start() -> None:
    assert spans(make_folds(100, 3)) == [
        ((0, 25), (25, 50)),
        ((0, 50), (50, 75)),
        ((0, 75), (75, 100)),
    ]


def test_rolling_folds_keep_their_length() -> None:
    assert spans(make_folds(120, 3, mode="rolling", train_blocks=2)) == [
        ((0, 48), (48, 72)),
        ((24, 72), (72, 96)),
        ((48, 96), (96, 120)),
    ]


def test_folds_cover_uneven_lengths_without_gaps() -> None:
    folds = make_folds(103, 4)
    assert folds[0].is_seg == Segment(0, 21)
    assert [f.oos_seg.start for f in folds] == [f.is_seg.stop for f in folds]
    assert folds[-1].oos_seg.stop == 103
    assert all(folds[i].oos_seg.stop == folds[i + 1].oos_seg.start for i in range(3))


@pytest.mark.parametrize(
    ("n", "k", "mode", "blocks"), [(5, 3, "anchored", 1), (100, 0, "anchored", 1), (100, 2, "x", 1)]
)
def test_bad_fold_settings_are_config_errors(n: int, k: int, mode: str, blocks: int) -> None:
    with pytest.raises(ConfigError):
        make_folds(n, k, mode=mode, train_blocks=blocks)  # type: ignore[arg-type]


def test_objective_order_maximises_minimises_and_puts_nan_last() -> None:
    v = np.array([0.5, math.nan, 2.0, 2.0, -1.0])
    assert objective_order(v, "sharpe").tolist() == [2, 3, 0, 4, 1]
    assert objective_order(v, "max_drawdown").tolist() == [4, 0, 2, 3, 1]
    assert best_index(v, "sharpe") == 2
    assert best_index(np.array([math.nan, math.nan]), "sharpe") is None
    with pytest.raises(ConfigError):
        objective_order(v, "alpha")
