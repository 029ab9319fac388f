"""Parity comparison: matched trades, one-sided trades, tolerances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from tierline.core.parity import ParityTolerance, compare_trades
from tierline.core.result import TRADES_TABLE_SCHEMA

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _trades(rows: list[tuple[int, int, float, float]]) -> pl.DataFrame:
    f = 0.001
    data = []
    for e, x, pe, px in rows:
        qty = 1.0
        ret = px * (1 - f) / (pe * (1 + f)) - 1
        data.append(
            {
                "entry_ts": T0 + timedelta(minutes=5 * e),
                "exit_ts": T0 + timedelta(minutes=5 * x),
                "entry_price": pe,
                "exit_price": px,
                "qty": qty,
                "fees": f * (pe + px),
                "pnl": qty * (px * (1 - f) - pe * (1 + f)),
                "return": ret,
            }
        )
    return pl.DataFrame(data, schema=TRADES_TABLE_SCHEMA)


TOL = ParityTolerance(tick=0.01)


def test_identical_trades_pass_with_zero_differences() -> None:
    ref = _trades([(1, 5, 100.0, 101.0), (7, 9, 102.0, 99.5)])
    p = compare_trades(ref, ref.clone(), engine="x", tolerance=TOL, initial_cash=10_000)
    assert p.passed and p.matched == 2
    assert p.max_entry_price_diff == 0 and p.max_return_diff == 0 and p.pnl_diff_rel == 0


def test_a_price_one_tick_off_fails_and_is_listed() -> None:
    ref = _trades([(1, 5, 100.0, 101.0), (7, 9, 102.0, 99.5)])
    eng = _trades([(1, 5, 100.0, 101.0), (7, 9, 102.01, 99.5)])
    p = compare_trades(ref, eng, engine="x", tolerance=TOL, initial_cash=10_000)
    assert not p.passed
    assert abs(p.max_entry_price_diff - 0.01) < 1e-9
    assert p.offending["entry_price_eng"].to_list() == [102.01]


def test_missing_and_extra_trades_and_exit_bar_shift_are_reported() -> None:
    ref = _trades([(1, 5, 100.0, 101.0), (7, 9, 102.0, 99.5)])
    eng = _trades([(1, 6, 100.0, 101.0), (11, 12, 100.0, 100.5)])
    p = compare_trades(ref, eng, engine="x", tolerance=TOL, initial_cash=10_000)
    assert not p.passed
    assert p.matched == 1 and p.exit_time_mismatches == 1
    assert p.only_reference["entry_ts"].to_list() == [T0 + timedelta(minutes=35)]
    assert p.only_engine["entry_ts"].to_list() == [T0 + timedelta(minutes=55)]
    assert "FAIL x" in p.summary()


def test_pnl_tolerance_is_relative_to_the_larger_of_pnl_and_cash() -> None:
    ref = _trades([(1, 5, 100.0, 101.0)])
    eng = ref.with_columns(pl.col("pnl") + 0.5)  # 0.5 on 10,000 cash = 5e-5 < 1e-4
    p = compare_trades(ref, eng, engine="x", tolerance=TOL, initial_cash=10_000)
    assert p.passed and abs(p.pnl_diff_rel - 5e-5) < 1e-12
    eng = ref.with_columns(pl.col("pnl") + 2.0)
    assert not compare_trades(ref, eng, engine="x", tolerance=TOL, initial_cash=10_000).passed
