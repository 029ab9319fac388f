"""Tier-3 results: per-leg and per-trade execution quality, totals, the printed report, MLflow.

Definitions (``side`` +1 buy, -1 sell; ``assumed`` = the price tiers 1 and 2 fill the decision
at: the next bar's open, or the last bar's close for the forced exit at the end):

- ``shortfall_bps`` of a leg: ``side * (vwap - assumed) / assumed * 1e4``, ``vwap`` the
  quantity-weighted mean fill price of the leg; positive = a cost against the tiers-1/2
  assumption. Unfilled legs have none. Total: the filled-quantity-weighted mean over legs;
  ``shortfall_bps_max``: the worst (largest) leg.
- ``fill_ratio``: filled / requested quantity (a leg requests the quantity decided at the
  bar's close; the total sums over legs).
- ``time_to_fill_s``: decision time to the leg's last fill (exchange time), mean over filled
  legs.
- ``maker_share``: maker quantity / filled quantity.
- ``net_pnl``: final equity minus initial cash (quote, after fees); ``fees``: quote fees paid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierline.core.metric_names import METRIC_NAMES

if TYPE_CHECKING:
    import polars as pl

    from tierline.core.result import BacktestResult
    from tierline.engines.hft.config import HftConfig

__all__ = [
    "TIER3_METRICS",
    "Tier3Result",
    "format_report",
    "leg_shortfall_bps",
    "log_tier3",
    "totals",
    "write_fill_plot",
]

#: Tier-3 metrics logged beside the common ones (`METRIC_NAMES`).
TIER3_METRICS: tuple[str, ...] = (
    "shortfall_bps",
    "shortfall_bps_max",
    "fill_ratio",
    "time_to_fill_s",
    "maker_share",
    "net_pnl",
    "fees",
    "orders",
)


def leg_shortfall_bps(side: int, assumed: float, vwap: float) -> float:
    """Return a leg's implementation shortfall in bps (positive = cost).

    Parameters
    ----------
    side
        +1 buy, -1 sell.
    assumed
        The price tiers 1 and 2 assume (the next bar's open).
    vwap
        The leg's quantity-weighted fill price (NaN when nothing filled).
    """
    if side not in (1, -1):
        raise ValueError(f"side must be +1 or -1, not {side!r}")
    if not (assumed > 0) or math.isnan(vwap):
        return math.nan
    return side * (vwap - assumed) / assumed * 1e4


def totals(legs: pl.DataFrame, *, initial_cash: float, final_equity: float) -> dict[str, float]:
    """Return the tier-3 totals of a leg table (see the module docstring).

    Parameters
    ----------
    legs
        One row per leg with ``requested_qty, filled_qty, maker_qty, fee, shortfall_bps,
        time_to_fill_s, orders``.
    initial_cash, final_equity
        Quote equity before the first bar and after the last.
    """
    import numpy as np

    filled = legs["filled_qty"].to_numpy() if legs.height else np.zeros(0)
    requested = legs["requested_qty"].to_numpy() if legs.height else np.zeros(0)
    got = filled > 0
    sf = legs["shortfall_bps"].to_numpy() if legs.height else np.zeros(0)
    ttf = legs["time_to_fill_s"].to_numpy() if legs.height else np.zeros(0)
    total_filled = float(filled.sum())
    return {
        "shortfall_bps": float(np.sum(sf[got] * filled[got]) / total_filled)
        if total_filled > 0
        else math.nan,
        "shortfall_bps_max": float(sf[got].max()) if got.any() else math.nan,
        "fill_ratio": total_filled / float(requested.sum()) if requested.sum() > 0 else math.nan,
        "time_to_fill_s": float(ttf[got].mean()) if got.any() else math.nan,
        "maker_share": float(legs["maker_qty"].sum()) / total_filled
        if total_filled > 0
        else math.nan,
        "net_pnl": float(final_equity - initial_cash),
        "fees": float(legs["fee"].sum()) if legs.height else 0.0,
        "orders": float(legs["orders"].sum()) if legs.height else 0.0,
    }


@dataclass(frozen=True, kw_only=True)
class Tier3Result:
    """What one tier-3 run produced.

    Attributes
    ----------
    strategy, params, exchange, symbol, timeframe
        What ran on what.
    l2
        ``real`` or ``synthetic`` (a book synthesised from bars, or a catalog book marked
        synthetic such as the embedded sample).
    config
        The tier-3 configuration.
    legs
        One row per decision's orders: ``bar, decision_ts, side, requested_qty, filled_qty,
        vwap, assumed_price, shortfall_bps, first_fill_ts, last_fill_ts, time_to_fill_s,
        maker_qty, fee, orders, bid, ask, forced``.
    fills
        One row per order-response step that filled: ``leg, order, local_ts, exch_ts, side,
        qty, price, fee, maker, merged``.
    trades, equity
        The common trades table (`tierline.core.result.TRADES_TABLE_SCHEMA`) and equity curve.
    metrics
        The common metrics (`METRIC_NAMES`) plus `TIER3_METRICS`.
    notes
        What did not go exactly as configured (data ended early, unfilled quantity, ...).
    events
        Number of hftbacktest events replayed.
    """

    strategy: str
    params: dict[str, Any]
    exchange: str
    symbol: str
    timeframe: str
    l2: str
    config: HftConfig
    legs: pl.DataFrame
    fills: pl.DataFrame
    trades: pl.DataFrame
    equity: pl.DataFrame
    metrics: dict[str, float]
    notes: tuple[str, ...] = ()
    events: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        """Return whether the book was synthetic."""
        return self.l2 == "synthetic"

    def as_backtest_result(self) -> BacktestResult:
        """Return the trades and equity as the common `BacktestResult` (engine hftbacktest)."""
        from tierline.core.result import BacktestResult

        return BacktestResult(
            engine="hftbacktest", trades=self.trades, equity=self.equity, notes=self.notes
        )

    def tags(self) -> dict[str, str]:
        """Return the MLflow tags of the run (contract: l2, style, latency and queue model)."""
        c = self.config
        return {
            "l2": self.l2,
            "style": c.execution.style,
            "latency_model": c.latency.model,
            "queue_model": c.queue.model,
            "hft_config_id": c.config_id,
            "hft_config": str(c.path) if c.path is not None else "built-in defaults",
        }


def format_report(result: Tier3Result) -> str:
    """Return the human-readable tier-3 report (what ``tierline hft`` prints)."""
    from tierline.strategy import format_params

    m = result.metrics
    c = result.config
    lat = (
        f"constant {c.latency.entry_ms:g}/{c.latency.response_ms:g} ms"
        if c.latency.model == "constant"
        else "feed (interpolated)"
    )
    queue = c.queue.model + (f" (n={c.queue.power_n:g})" if c.queue.model == "power_prob" else "")
    lines = [
        f"tier 3 {result.strategy} ({format_params(result.params)}) on {result.exchange} "
        f"{result.symbol} {result.timeframe}: hftbacktest, {result.events:,} events",
        f"  L2: {result.l2}"
        + ("  (SYNTHETIC book: execution figures are modelled)" if result.synthetic else ""),
        f"  style {c.execution.style}, latency {lat}, queue {queue}, "
        f"fees maker {c.fees.maker:g} / taker {c.fees.taker:g}",
        f"  legs {result.legs.height}, orders {int(m['orders'])}, trades {int(m['trades'])}",
        f"  shortfall: {_f(m['shortfall_bps'], '.2f')} bps mean (qty-weighted), "
        f"{_f(m['shortfall_bps_max'], '.2f')} bps worst leg (positive = cost vs the bar open)",
        f"  fill ratio: {_f(m['fill_ratio'], '.4f')}   time to fill: "
        f"{_f(m['time_to_fill_s'], '.3f')} s   maker share: {_f(m['maker_share'], '.3f')}",
        f"  net P&L: {m['net_pnl']:.2f} (after fees {m['fees']:.2f})   total return "
        f"{m['total_return']:.4f}   sharpe {_f(m['sharpe'], '.3f')}   max dd "
        f"{m['max_drawdown']:.4f}",
    ]
    if result.legs.height:
        lines.append(
            "  leg  side  decision (UTC)              requested      filled        vwap"
            "     assumed  shortfall_bps  ttf_s"
        )
        for row in result.legs.head(20).iter_rows(named=True):
            lines.append(
                f"  {row['leg']:<4} {'buy ' if row['side'] > 0 else 'sell'}  "
                f"{str(row['decision_ts'])[:26]:<26} {row['requested_qty']:>11.6g} "
                f"{row['filled_qty']:>11.6g} {_f(row['vwap'], '>11.2f')} "
                f"{row['assumed_price']:>11.2f} {_f(row['shortfall_bps'], '>14.2f')} "
                f"{_f(row['time_to_fill_s'], '>6.3f')}"
            )
        if result.legs.height > 20:
            lines.append(f"  ... {result.legs.height - 20} more legs")
    lines.extend(f"  note: {n}" for n in result.notes)
    return "\n".join(lines)


def _f(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        width = "".join(ch for ch in spec if ch.isdigit() and spec.index(ch) < spec.find("."))
        return "n/a".rjust(int(width) if width else 0)
    return format(value, spec)


def write_fill_plot(result: Tier3Result, path: Path) -> Path | None:
    """Write the fill-price-vs-assumed plot (plotly HTML) atomically; None without legs.

    One marker per filled leg at its decision time: the assumed bar-open price and the leg's
    fill VWAP (buys and sells apart), with the shortfall in the hover text.
    """
    if not result.legs.height:
        return None
    import plotly.graph_objects as go

    from tierline.data.atomic import write_text_atomic

    legs = result.legs.filter(result.legs["filled_qty"] > 0)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=legs["decision_ts"].to_list(),
            y=legs["assumed_price"].to_list(),
            mode="markers",
            name="assumed (bar open)",
            marker={"symbol": "line-ew-open", "size": 14},
        )
    )
    for side, name in ((1, "buy fill (vwap)"), (-1, "sell fill (vwap)")):
        part = legs.filter(legs["side"] == side)
        fig.add_trace(
            go.Scatter(
                x=part["decision_ts"].to_list(),
                y=part["vwap"].to_list(),
                mode="markers",
                name=name,
                text=[f"shortfall {v:.2f} bps" for v in part["shortfall_bps"].to_list()],
                marker={"symbol": "triangle-up" if side > 0 else "triangle-down", "size": 9},
            )
        )
    fig.update_layout(
        title=f"tier 3 fills vs the bar-open price ({result.strategy}, l2={result.l2})",
        xaxis_title="decision time (UTC)",
        yaxis_title="price",
    )
    write_text_atomic(path, fig.to_html(include_plotlyjs="cdn", full_html=True))
    return path


def log_tier3(
    parent: Any,
    result: Tier3Result,
    *,
    rank: int | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log a tier-3 result as the ``tier3/hftbacktest`` child run of a pipeline.

    Metrics: every name of `METRIC_NAMES` and `TIER3_METRICS`; tags ``l2, style,
    latency_model, queue_model``; artifacts: trades and equity (`log_result`), the ``fills``
    and ``legs`` tables and ``tier3_fills.html`` (fill price vs assumed).

    Returns
    -------
    str
        The child run id.
    """
    import tempfile

    all_tags = {**result.tags(), **dict(tags or {})}
    with parent.tier(
        tier="tier3", engine="hftbacktest", params=result.params, rank=rank, tags=all_tags
    ) as run:
        run.log_metrics({k: result.metrics[k] for k in (*METRIC_NAMES, *TIER3_METRICS)})
        run.log_result(result.as_backtest_result())
        run.log_table("fills", result.fills)
        run.log_table("legs", result.legs)
        if result.notes:
            run.set_tags({"engine_notes": " | ".join(result.notes)[:4000]})
        with tempfile.TemporaryDirectory(prefix="tierline-tier3-") as tmp:
            plot = write_fill_plot(result, Path(tmp) / "tier3_fills.html")
            if plot is not None:
                run.log_artifact(plot)
        return str(run.run_id)
