"""Trade-by-trade parity between engines: the flagship property of tierline.

Given the reference engine's trades and another engine's trades on the same bars and
parameters, match trades by entry time and report, per engine: matched trades, trades only in
one of them, entry/exit time and price differences, per-trade return and total P&L
differences, and whether everything is within tolerance.

Tolerance (the design target, the same for every engine unless a looser one is stated):

- identical entry and exit timestamps (same bars);
- entry and exit prices equal to the instrument's tick (``|Δ| < tick / 2``);
- per-trade return within ``1e-6`` (absolute);
- total P&L within 0.01 % of ``max(|reference P&L|, initial cash)``: a relative error on the
  P&L that does not blow up when the reference P&L is near zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

__all__ = ["EngineParity", "ParityTolerance", "compare_trades"]


@dataclass(frozen=True, kw_only=True)
class ParityTolerance:
    """Tolerance of a parity comparison (see the module docstring)."""

    tick: float
    return_abs: float = 1e-6
    pnl_rel: float = 1e-4


@dataclass(frozen=True, kw_only=True)
class EngineParity:
    """One engine compared with the reference."""

    engine: str
    reference_trades: int
    engine_trades: int
    matched: int
    only_reference: pl.DataFrame
    only_engine: pl.DataFrame
    exit_time_mismatches: int
    max_entry_price_diff: float
    max_exit_price_diff: float
    max_return_diff: float
    pnl_reference: float
    pnl_engine: float
    pnl_diff_rel: float
    tolerance: ParityTolerance
    notes: tuple[str, ...] = ()
    #: Matched trades that break a tolerance, with both engines' values.
    offending: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def passed(self) -> bool:
        """Return whether every tolerance holds."""
        half = self.tolerance.tick / 2
        return (
            self.only_reference.is_empty()
            and self.only_engine.is_empty()
            and self.exit_time_mismatches == 0
            and self.max_entry_price_diff < half
            and self.max_exit_price_diff < half
            and self.max_return_diff <= self.tolerance.return_abs
            and self.pnl_diff_rel <= self.tolerance.pnl_rel
        )

    def summary(self) -> str:
        """Return a few lines for the terminal."""
        t = self.tolerance
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"{verdict} {self.engine}: {self.matched}/{self.reference_trades} reference trades "
            f"matched ({self.engine_trades} in {self.engine}); "
            f"only in reference {len(self.only_reference)}, only in {self.engine} "
            f"{len(self.only_engine)}, exit-time mismatches {self.exit_time_mismatches}",
            f"    max |Δ entry price| {self.max_entry_price_diff:.10g}, max |Δ exit price| "
            f"{self.max_exit_price_diff:.10g} (tick {t.tick:g}); max |Δ return| "
            f"{self.max_return_diff:.3g} (tol {t.return_abs:g}); P&L {self.pnl_engine:.6f} vs "
            f"{self.pnl_reference:.6f}, rel diff {self.pnl_diff_rel:.3g} (tol {t.pnl_rel:g})",
        ]
        lines += [f"    note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_row(self) -> dict[str, object]:
        """Return the figures as one flat row (for tables and MLflow)."""
        return {
            "engine": self.engine,
            "passed": self.passed,
            "reference_trades": self.reference_trades,
            "engine_trades": self.engine_trades,
            "matched": self.matched,
            "only_reference": len(self.only_reference),
            "only_engine": len(self.only_engine),
            "exit_time_mismatches": self.exit_time_mismatches,
            "max_entry_price_diff": self.max_entry_price_diff,
            "max_exit_price_diff": self.max_exit_price_diff,
            "max_return_diff": self.max_return_diff,
            "pnl_reference": self.pnl_reference,
            "pnl_engine": self.pnl_engine,
            "pnl_diff_rel": self.pnl_diff_rel,
        }


def compare_trades(
    reference: pl.DataFrame,
    other: pl.DataFrame,
    *,
    engine: str,
    tolerance: ParityTolerance,
    initial_cash: float,
    notes: tuple[str, ...] = (),
) -> EngineParity:
    """Compare an engine's trades table with the reference's.

    Trades are matched on ``entry_ts``; a matched pair whose ``exit_ts`` differs counts as an
    exit-time mismatch.

    Parameters
    ----------
    reference, other
        Trades tables (core/result ``TRADES_TABLE_SCHEMA``).
    engine
        Name of the compared engine.
    tolerance
        The tolerance to judge by.
    initial_cash
        Initial equity, the floor of the P&L scale.
    notes
        The engine's own notes on what it cannot follow exactly.

    Returns
    -------
    EngineParity
    """
    ref = reference.with_row_index("i_ref")
    oth = other.with_row_index("i_eng")
    joined = ref.join(oth, on="entry_ts", how="inner", suffix="_eng")
    only_ref = ref.join(oth.select("entry_ts"), on="entry_ts", how="anti").drop("i_ref")
    only_eng = oth.join(ref.select("entry_ts"), on="entry_ts", how="anti").drop("i_eng")
    diffs = joined.with_columns(
        (pl.col("entry_price_eng") - pl.col("entry_price")).abs().alias("d_entry"),
        (pl.col("exit_price_eng") - pl.col("exit_price")).abs().alias("d_exit"),
        (pl.col("return_eng") - pl.col("return")).abs().alias("d_return"),
        (pl.col("exit_ts_eng") != pl.col("exit_ts")).alias("exit_mismatch"),
    )
    half = tolerance.tick / 2

    def _max(col: str) -> float:
        v = diffs[col].max() if not diffs.is_empty() else 0.0
        return float(v) if v is not None else 0.0  # type: ignore[arg-type]

    pnl_ref = float(reference["pnl"].sum())
    pnl_eng = float(other["pnl"].sum())
    scale = max(abs(pnl_ref), initial_cash)
    offending = diffs.filter(
        pl.col("exit_mismatch")
        | (pl.col("d_entry") >= half)
        | (pl.col("d_exit") >= half)
        | (pl.col("d_return") > tolerance.return_abs)
    ).select(
        "entry_ts",
        "exit_ts",
        "exit_ts_eng",
        "entry_price",
        "entry_price_eng",
        "exit_price",
        "exit_price_eng",
        "return",
        "return_eng",
    )
    return EngineParity(
        engine=engine,
        reference_trades=len(reference),
        engine_trades=len(other),
        matched=len(joined),
        only_reference=only_ref,
        only_engine=only_eng,
        exit_time_mismatches=int(diffs["exit_mismatch"].sum()) if not diffs.is_empty() else 0,
        max_entry_price_diff=_max("d_entry"),
        max_exit_price_diff=_max("d_exit"),
        max_return_diff=_max("d_return"),
        pnl_reference=pnl_ref,
        pnl_engine=pnl_eng,
        pnl_diff_rel=abs(pnl_eng - pnl_ref) / scale,
        tolerance=tolerance,
        notes=notes,
        offending=offending,
    )
