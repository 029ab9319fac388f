"""The strategy contract and registry (see `tierline.strategy.contract`)."""

from tierline.strategy.contract import (
    SIGNAL_COLUMNS,
    BarWindow,
    Choice,
    Constraint,
    Float,
    Int,
    Signals,
    Strategy,
    format_params,
    parse_params,
    strategy,
)
from tierline.strategy.registry import get_strategy, list_strategies, strategies_dir

__all__ = [
    "SIGNAL_COLUMNS",
    "BarWindow",
    "Choice",
    "Constraint",
    "Float",
    "Int",
    "Signals",
    "Strategy",
    "format_params",
    "get_strategy",
    "list_strategies",
    "parse_params",
    "strategies_dir",
    "strategy",
]
