"""Tier 1: parameter sweeps (grid or Optuna), walk-forward, overfitting statistics.

`run_sweep` is the entry point; `SweepResult` is what it returns (tables, top-k candidates,
deflated Sharpe ratio, PBO, per-fold and concatenated out-of-sample metrics, output paths).
Importing this package loads neither numba nor optuna; they load when a sweep runs.
"""

from tierline.sweep.report import Candidate, SweepResult
from tierline.sweep.runner import DEFAULT_STORAGE, run_sweep
from tierline.sweep.walkforward import FoldResult, WalkForwardResult

__all__ = [
    "DEFAULT_STORAGE",
    "Candidate",
    "FoldResult",
    "SweepResult",
    "WalkForwardResult",
    "run_sweep",
]
