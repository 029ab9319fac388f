"""Causality checks: prove a signal function neither peeks ahead nor depends on where data starts.

Two checks, after freqtrade's ``lookahead-analysis`` and ``recursive-analysis``, at sampled
bars k: half of them bars that carry a signal on the full history (the first ones and seeded
random ones), half evenly spaced and seeded random bars (see `sample_bars`).

- **lookahead**: the signals computed on the prefix ``bars[:k+1]`` equal the full-history
  signals on every bar ``0..k``. A function that reads a later bar (``shift(-1)``, a centred
  window, a normalisation over the whole history) changes its past when the future is cut off.
- **window** (recursive stability): the signal at k computed on only the last
  ``warmup(params)`` bars ending at k (``bars[k-warmup+1 : k+1]``) equals the full-history
  signal at k. This is how NautilusTrader (and live trading) call the function, so a running
  sum, an ``ewm`` or a too-short warm-up shows up here.

A third check when the strategy declares a per-bar hook (``on_bar=``, see
`tierline.strategy.contract`):

- **on_bar**: the hook's signal on the rolling window ending at k (the last ``warmup`` bars,
  fewer on the first bars) equals the full-history signal at k, at the sampled bars, the
  first ``warmup - 1`` bars (short windows) and the last bar, or at every bar
  (``hook_all_bars``). NautilusTrader runs the hook instead of the signal function, so this is
  what makes its signals the signal function's. `on_bar_signals` runs it on every bar.

All compare ``enter_long`` and ``exit_long`` exactly (booleans).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tierline.errors import DataError, EngineError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import polars as pl

    from tierline.strategy.contract import Signals, Strategy

__all__ = ["CausalityReport", "check_causality", "on_bar_signals", "sample_bars"]

_COLUMNS = ("enter_long", "exit_long")


@dataclass(frozen=True, kw_only=True)
class CausalityReport:
    """The outcome of `check_causality`.

    Attributes
    ----------
    strategy, params
        What was checked.
    passed
        True when no sampled bar differed.
    bars, warmup
        Number of bars and the strategy's warm-up for ``params``.
    checked
        Number of signal evaluations compared (prefixes plus windows).
    on_bar_checked
        Number of bars at which the per-bar hook was compared (0: the strategy has none).
    samples
        The sampled bar indices k.
    check
        ``"lookahead"``, ``"window"`` or ``"on_bar"`` for the first offence, else None.
    column
        The signal column that differed first (``enter_long`` or ``exit_long``).
    bar, ts
        Index (0-based, in the checked bars) and open time of the earliest offending bar
        among those checked.
    full_value, partial_value
        The signal there on the full history and on the prefix or window (from the hook for
        ``"on_bar"``).
    evaluated_at
        The k of the prefix or window that exposed the offence.
    offences
        Number of (evaluation, column) pairs that differed.
    """

    strategy: str
    params: dict[str, Any]
    passed: bool
    bars: int
    warmup: int
    checked: int
    samples: tuple[int, ...] = field(repr=False)
    on_bar_checked: int = 0
    check: str | None = None
    column: str | None = None
    bar: int | None = None
    ts: datetime | None = None
    full_value: bool | None = None
    partial_value: bool | None = None
    evaluated_at: int | None = None
    offences: int = 0

    def summary(self) -> str:
        """Return a one-paragraph human summary."""
        from tierline.strategy.contract import format_params

        head = f"{self.strategy} ({format_params(self.params)}), warm-up {self.warmup} bars"
        hook = (
            f"; the on_bar hook equals the signal function at {self.on_bar_checked} bars"
            if self.on_bar_checked
            else ""
        )
        if self.passed:
            return (
                f"PASS {head}: {self.checked} prefix/window evaluations at "
                f"{len(self.samples)} sampled bars of {self.bars} agree with the full history"
                f"{hook}"
            )
        if self.check == "lookahead":
            how = f"signals on the prefix ending at bar {self.evaluated_at}"
        elif self.check == "window":
            how = f"signals on the {self.warmup}-bar window ending at bar {self.evaluated_at}"
        else:
            how = f"on_bar hook's signal on the window ending at bar {self.evaluated_at}"
        return (
            f"FAIL {head}: {self.check} check: {self.column} at bar {self.bar} "
            f"({self.ts.isoformat() if self.ts else '?'}) is {self.full_value} on the full "
            f"history but {self.partial_value} in the {how} "
            f"({self.offences} offence(s) in {self.checked + self.on_bar_checked} "
            "evaluations; the earliest offending bar among those checked is named)"
        )


def sample_bars(
    n: int,
    warmup: int,
    samples: int = 50,
    seed: int = 0,
    signal_bars: Sequence[int] | np.ndarray = (),
) -> list[int]:
    """Return the bar indices k to check.

    Like freqtrade's lookahead analysis, half of the budget goes to bars that carry a signal
    on the full history (a lookahead bug usually shows where a signal fires): the first
    ``samples // 4`` of them and as many seeded random ones. The other half is evenly spaced
    and seeded random bars. Candidates are ``warmup-1 .. n-2`` (the first bar that can carry
    a signal up to the bar before the last; the prefix ending at the last bar is the full
    history). Fewer indices are returned when they coincide.

    Raises
    ------
    DataError
        If there are fewer than ``warmup + 1`` bars.
    """
    import numpy as np

    lo, hi = max(warmup - 1, 0), n - 2
    if hi < lo:
        raise DataError(f"causality check needs at least warm-up + 1 = {warmup + 1} bars, got {n}")
    rng = np.random.default_rng(seed)
    sig = np.asarray(signal_bars, dtype=np.int64)
    sig = sig[(sig >= lo) & (sig <= hi)]
    n_sig = min(samples // 2, len(sig))
    n_first = (n_sig + 1) // 2
    picked = [*sig[:n_first]]
    rest = sig[n_first:]
    if len(rest):
        picked += list(rng.choice(rest, size=min(n_sig - n_first, len(rest)), replace=False))
    n_plain = samples - n_sig
    n_even = (n_plain + 1) // 2
    picked += list(np.linspace(lo, hi, num=min(n_even, hi - lo + 1)).round().astype(int))
    picked += list(rng.integers(lo, hi + 1, size=max(n_plain - n_even, 0)))
    return sorted({int(k) for k in picked})


def check_causality(
    strategy: Strategy,
    bars: pl.DataFrame | pd.DataFrame,
    params: Mapping[str, Any] | None = None,
    *,
    samples: int = 50,
    seed: int = 0,
    hook_all_bars: bool = False,
) -> CausalityReport:
    """Check that ``strategy``'s signals are causal and window-stable on ``bars``, and that
    its per-bar hook, if it declares one, equals its signal function.

    Parameters
    ----------
    strategy
        The strategy.
    bars
        Catalog OHLCV bars (polars, ``ts`` column) or a signal-function frame (pandas,
        ``date`` column).
    params
        Parameters (defaults filled in and validated).
    samples
        About how many bars k to check (evenly spaced plus random).
    seed
        Seed of the random samples.
    hook_all_bars
        Compare the per-bar hook at every bar instead of the sampled ones (plus the first
        ``warmup - 1`` and the last).

    Returns
    -------
    CausalityReport
        Pass or the earliest offending bar among those checked.

    Raises
    ------
    ConfigError
        If the parameters are invalid.
    DataError
        If there are fewer than ``warmup + 1`` bars.
    EngineError
        If the signal function fails on the full history, a prefix or a window, or the hook
        fails on a window.
    """
    import numpy as np

    checked_params = strategy.validate_params(params)
    frame = _frame(bars)
    n = len(frame)
    w = strategy.warmup(checked_params)
    full = _arrays(strategy, frame, checked_params, "the full history")
    ks = sample_bars(n, w, samples, seed, np.flatnonzero(full["enter_long"] | full["exit_long"]))

    best: dict[str, Any] | None = None
    offences = 0
    evaluations = 0

    def offend(check: str, column: str, bar: int, k: int, partial: bool) -> None:
        nonlocal best, offences
        offences += 1
        order = (bar, ("lookahead", "window", "on_bar").index(check))
        if best is None or order < best["order"]:
            best = {
                "order": order,
                "check": check,
                "column": column,
                "bar": bar,
                "k": k,
                "partial": partial,
            }

    for k in ks:
        prefix = _arrays(strategy, frame.iloc[: k + 1], checked_params, f"the prefix to bar {k}")
        evaluations += 1
        for c in _COLUMNS:
            diff = np.flatnonzero(prefix[c] != full[c][: k + 1])
            if len(diff):
                offend("lookahead", c, int(diff[0]), k, bool(prefix[c][diff[0]]))
        if k - w + 1 < 0:
            continue
        window = _arrays(
            strategy, frame.iloc[k - w + 1 : k + 1], checked_params, f"the window to bar {k}"
        )
        evaluations += 1
        for c in _COLUMNS:
            if window[c][-1] != full[c][k]:
                offend("window", c, k, k, bool(window[c][-1]))

    hook_bars: list[int] = []
    if strategy.on_bar_fn is not None:
        if hook_all_bars:
            hook_bars = list(range(n))
        else:
            hook_bars = sorted({*range(min(w - 1, n)), *ks, n - 1})
        hook = on_bar_signals(strategy, frame, checked_params, at=hook_bars)
        for c in _COLUMNS:
            for j in np.flatnonzero(getattr(hook, c) != full[c][hook_bars]):
                k = hook_bars[int(j)]
                offend("on_bar", c, k, k, bool(getattr(hook, c)[j]))

    common: dict[str, Any] = {
        "strategy": strategy.name,
        "params": checked_params,
        "bars": n,
        "warmup": w,
        "checked": evaluations,
        "samples": tuple(ks),
        "on_bar_checked": len(hook_bars),
        "offences": offences,
    }
    if best is None:
        return CausalityReport(passed=True, **common)
    bar = best["bar"]
    return CausalityReport(
        passed=False,
        check=best["check"],
        column=best["column"],
        bar=bar,
        ts=frame["date"].iloc[bar].to_pydatetime(),
        full_value=bool(full[best["column"]][bar]),
        partial_value=best["partial"],
        evaluated_at=best["k"],
        **common,
    )


def on_bar_signals(
    strategy: Strategy,
    bars: pl.DataFrame | pd.DataFrame,
    params: Mapping[str, Any] | None = None,
    *,
    at: Sequence[int] | None = None,
) -> Signals:
    """Return the per-bar hook's signals, each bar from its own rolling window alone.

    The window ending at bar k holds the last ``warmup(params)`` bars (fewer before that), as
    NautilusTrader's adapter passes it.

    Parameters
    ----------
    strategy
        A strategy declaring ``on_bar=``.
    bars
        Catalog OHLCV bars (polars) or a signal-function frame (pandas).
    params
        Parameters (defaults filled in and validated).
    at
        The bar indices to evaluate (default: every bar); the arrays follow this order.

    Returns
    -------
    Signals
        ``enter_long`` and ``exit_long``, one element per evaluated bar.

    Raises
    ------
    ConfigError
        If the parameters are invalid.
    EngineError
        If the strategy declares no hook, or the hook fails (naming the bar).
    """
    import numpy as np

    from tierline.strategy.contract import BarWindow, Signals

    checked_params = strategy.validate_params(params)
    frame = _frame(bars)
    whole = BarWindow.from_frame(frame)
    w = max(1, strategy.warmup(checked_params))
    bars_at = range(len(frame)) if at is None else at
    enter = np.zeros(len(bars_at), dtype=bool)
    exit_ = np.zeros(len(bars_at), dtype=bool)
    for j, k in enumerate(bars_at):
        try:
            enter[j], exit_[j] = strategy.bar_signal(whole.tail(k + 1, w), checked_params)
        except EngineError as e:
            raise EngineError(f"{e}, at bar {k}") from e
    return Signals(enter_long=enter, exit_long=exit_)


def _frame(bars: pl.DataFrame | pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    if isinstance(bars, pd.DataFrame):
        return bars.reset_index(drop=True)
    from tierline.core.bars import to_strategy_frame

    return to_strategy_frame(bars)


def _arrays(
    strategy: Strategy, frame: pd.DataFrame, params: Mapping[str, Any], where: str
) -> dict[str, np.ndarray]:
    try:
        s = strategy.signals(frame, params)
    except EngineError as e:
        raise EngineError(f"causality check, on {where}: {e}") from e
    return {"enter_long": s.enter_long, "exit_long": s.exit_long}
