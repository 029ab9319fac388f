"""Tier-3 arithmetic: implementation shortfall of a leg and the totals over legs."""

from __future__ import annotations

import math

import polars as pl
import pytest

from tierline.engines.hft.report import TIER3_METRICS, leg_shortfall_bps, totals


def test_buy_above_the_assumed_open_is_a_positive_cost() -> None:
    assert leg_shortfall_bps(1, 100.0, 100.05) == pytest.approx(5.0)
    assert leg_shortfall_bps(1, 100.0, 99.99) == pytest.approx(-1.0)


def test_sell_below_the_assumed_open_is_a_positive_cost() -> None:
    assert leg_shortfall_bps(-1, 200.0, 199.9) == pytest.approx(5.0)
    assert leg_shortfall_bps(-1, 200.0, 200.2) == pytest.approx(-10.0)


def test_unfilled_leg_has_no_shortfall_and_bad_side_is_refused() -> None:
    assert math.isnan(leg_shortfall_bps(1, 100.0, math.nan))
    with pytest.raises(ValueError, match="side"):
        leg_shortfall_bps(0, 100.0, 100.0)


def _legs(rows: list[dict[str, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows)


def test_totals_weight_shortfall_by_filled_quantity_and_skip_unfilled_legs() -> None:
    legs = _legs(
        [
            # 1 unit at +4 bps, 3 units at 0 bps, an unfilled leg (its NaN is ignored)
            {"requested_qty": 1.0, "filled_qty": 1.0, "maker_qty": 1.0, "fee": 0.1,
             "shortfall_bps": 4.0, "time_to_fill_s": 2.0, "orders": 1},
            {"requested_qty": 4.0, "filled_qty": 3.0, "maker_qty": 0.0, "fee": 0.3,
             "shortfall_bps": 0.0, "time_to_fill_s": 0.5, "orders": 3},
            {"requested_qty": 2.0, "filled_qty": 0.0, "maker_qty": 0.0, "fee": 0.0,
             "shortfall_bps": math.nan, "time_to_fill_s": math.nan, "orders": 20},
        ]
    )  # fmt: skip
    t = totals(legs, initial_cash=1000.0, final_equity=1012.5)
    assert set(t) == set(TIER3_METRICS)
    assert t["shortfall_bps"] == pytest.approx((4.0 * 1 + 0.0 * 3) / 4)
    assert t["shortfall_bps_max"] == 4.0
    assert t["fill_ratio"] == pytest.approx(4 / 7)
    assert t["time_to_fill_s"] == pytest.approx(1.25)
    assert t["maker_share"] == pytest.approx(0.25)
    assert t["net_pnl"] == pytest.approx(12.5)
    assert t["fees"] == pytest.approx(0.4)
    assert t["orders"] == 24


def test_totals_without_fills_are_nan_not_zero() -> None:
    legs = _legs(
        [{"requested_qty": 1.0, "filled_qty": 0.0, "maker_qty": 0.0, "fee": 0.0,
          "shortfall_bps": math.nan, "time_to_fill_s": math.nan, "orders": 2}]
    )  # fmt: skip
    t = totals(legs, initial_cash=100.0, final_equity=100.0)
    assert math.isnan(t["shortfall_bps"]) and math.isnan(t["maker_share"])
    assert t["fill_ratio"] == 0.0
    assert t["net_pnl"] == 0.0
