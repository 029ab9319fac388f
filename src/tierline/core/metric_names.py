"""The common metric names every tier logs (no imports: safe for fast CLI start-up)."""

__all__ = ["METRIC_NAMES"]

#: The metric names, in the order they are printed and logged (`compute_metrics`'s keys).
METRIC_NAMES: tuple[str, ...] = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "trades",
    "win_rate",
    "profit_factor",
    "exposure",
)
