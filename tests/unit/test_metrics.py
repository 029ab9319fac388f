"""Common metrics on a crafted equity curve and trades table, against hand-computed values."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from tierline.core.metrics import METRIC_NAMES, compute_metrics
from tierline.core.result import TRADES_TABLE_SCHEMA, empty_trades
from tierline.errors import ConfigError

D1 = datetime(2024, 3, 1, tzinfo=UTC)
H12 = timedelta(hours=12)


def equity_frame(values: list[float], step: timedelta = H12) -> pl.DataFrame:
    return pl.DataFrame(
        {"ts": [D1 + i * step for i in range(len(values))], "equity": values},
        schema={"ts": pl.Datetime("ns", "UTC"), "equity": pl.Float64},
    )


def trades_frame(rows: list[tuple[datetime, datetime, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "entry_ts": [r[0] for r in rows],
            "exit_ts": [r[1] for r in rows],
            "entry_price": [1.0] * len(rows),
            "exit_price": [1.0] * len(rows),
            "qty": [1.0] * len(rows),
            "fees": [0.0] * len(rows),
            "pnl": [r[2] for r in rows],
            "return": [0.0] * len(rows),
        },
        schema=TRADES_TABLE_SCHEMA,
    )


# Six 12-hour bars over three UTC days (Mar 1, 2, 3), starting from 100.
EQUITY = [100.0, 110.0, 105.0, 99.0, 120.0, 102.0]
TRADES = [
    (D1 + 1 * H12, D1 + 2 * H12, 10.0),  # held bar 1
    (D1 + 3 * H12, D1 + 5 * H12, -5.0),  # held bars 3, 4
    (D1 + 5 * H12, D1 + 6 * H12, 3.0),  # forced exit at the last bar's close: held bar 5
]


def test_compute_metrics_crafted_curve_matches_hand_values() -> None:
    m = compute_metrics(trades_frame(TRADES), equity_frame(EQUITY), initial_cash=100.0)
    assert tuple(m) == METRIC_NAMES
    assert m["total_return"] == pytest.approx(0.02, abs=1e-15)
    # span: first open to last close = 6 bars * 12 h = 3 days
    assert m["cagr"] == pytest.approx(1.02 ** (365 / 3) - 1, rel=1e-12)
    # daily closes 110, 99, 102 against 100 before the first day
    r = [0.1, -0.1, 102 / 99 - 1]
    mean = sum(r) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in r) / 2)
    assert m["sharpe"] == pytest.approx(mean / std * math.sqrt(365), rel=1e-12)
    downside = math.sqrt(0.1**2 / 2)
    assert m["sortino"] == pytest.approx(mean / downside * math.sqrt(365), rel=1e-12)
    # peaks 100 110 110 110 120 120 -> worst 1 - 102/120 = 0.15
    assert m["max_drawdown"] == pytest.approx(0.15, abs=1e-15)
    assert m["trades"] == 3.0
    assert m["win_rate"] == pytest.approx(2 / 3)
    assert m["profit_factor"] == pytest.approx(13 / 5)
    assert m["exposure"] == pytest.approx(4 / 6)


def test_compute_metrics_no_trades_flat_equity() -> None:
    m = compute_metrics(empty_trades(), equity_frame([50.0] * 8), initial_cash=50.0)
    assert m == {
        "total_return": 0.0,
        "cagr": 0.0,
        "sharpe": 0.0,
        "sortino": 0.0,
        "max_drawdown": 0.0,
        "trades": 0.0,
        "win_rate": 0.0,
        "profit_factor": 0.0,
        "exposure": 0.0,
    }


def test_compute_metrics_wins_only_gives_infinite_profit_factor() -> None:
    trades = trades_frame([(D1, D1 + H12, 4.0), (D1 + 2 * H12, D1 + 3 * H12, 1.0)])
    m = compute_metrics(trades, equity_frame([104.0, 104.0, 105.0, 105.0]), initial_cash=100.0)
    assert m["profit_factor"] == math.inf
    assert m["win_rate"] == 1.0
    assert m["exposure"] == 0.5
    assert m["max_drawdown"] == 0.0
    # daily returns 0.04, 105/104 - 1: no downside -> Sortino inf, Sharpe finite and positive
    assert m["sortino"] == math.inf
    assert m["sharpe"] > 0


def test_compute_metrics_single_day_has_undefined_sharpe() -> None:
    m = compute_metrics(
        empty_trades(), equity_frame([100.0, 90.0], timedelta(hours=1)), initial_cash=100.0
    )
    assert math.isnan(m["sharpe"]) and math.isnan(m["sortino"])
    assert m["max_drawdown"] == pytest.approx(0.1)
    # two hourly bars = 2 h span
    assert m["cagr"] == pytest.approx(0.9 ** (365 * 12) - 1)


def test_compute_metrics_drawdown_from_initial_cash_and_ruin() -> None:
    m = compute_metrics(empty_trades(), equity_frame([80.0, 120.0, 0.0]), initial_cash=100.0)
    assert m["max_drawdown"] == 1.0
    assert m["cagr"] == -1.0
    assert m["total_return"] == -1.0


def test_compute_metrics_rejects_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="initial_cash"):
        compute_metrics(empty_trades(), equity_frame([1.0]), initial_cash=0.0)
    with pytest.raises(ConfigError, match="no column"):
        compute_metrics(empty_trades(), equity_frame([1.0]).drop("equity"), initial_cash=1.0)
