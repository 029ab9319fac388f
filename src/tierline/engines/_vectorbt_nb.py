"""Numba helper that lets vectorbt's ``from_signals`` follow the conventions' conflict rule.

When ``enter_long`` and ``exit_long`` are both true on one bar, the conventions
(`tierline.core.conventions`) let the exit win in a position and the entry win when flat.
None of vectorbt's ``upon_long_conflict`` modes does that: every mode that exits in a position
ignores both signals when flat. A custom ``signal_func_nb`` could, but vectorbt then compiles
its simulator in every process (numba cannot cache a function that takes another function),
some 15-25 s per run. Instead, this kernel walks the (already shifted) signals once with the
position they imply and clears, on conflict bars only, the signal the rule discards; vectorbt
then simulates conflict-free signals with its cached static simulator.

The position implied by the signals is vectorbt's position: an entry always fills (all-equity
or fixed stake, cash stays positive at positive prices) and an exit always closes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["resolve_conflicts_nb"]


@njit(cache=True)
def resolve_conflicts_nb(entries: np.ndarray, exits: np.ndarray) -> int:  # pragma: no cover
    """Clear the losing signal of every entry+exit bar in place; return how many were cleared.

    ``entries`` and ``exits`` are 2-D ``(n_bars, n_columns)`` boolean arrays, already shifted
    to the fill bar; columns are independent.
    """
    n, k = entries.shape
    cleared = 0
    for col in range(k):
        in_pos = False
        for i in range(n):
            e = entries[i, col]
            x = exits[i, col]
            if e and x:
                cleared += 1
                if in_pos:
                    entries[i, col] = False
                    e = False
                else:
                    exits[i, col] = False
                    x = False
            if in_pos:
                if x:
                    in_pos = False
            elif e:
                in_pos = True
    return cleared
