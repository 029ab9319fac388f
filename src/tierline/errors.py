"""One error tree for tierline; the CLI maps each branch to a message and an exit code."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "EngineError",
    "PromotionRejected",
    "TierlineError",
]


class TierlineError(Exception):
    """Base of every error tierline raises on purpose (shown without a traceback)."""

    exit_code = 1


class DataError(TierlineError):
    """Input data is missing, malformed, unsorted, duplicated or inconsistent."""

    exit_code = 3


class ConfigError(TierlineError):
    """A configuration, option or parameter is invalid."""

    exit_code = 2


class EngineError(TierlineError):
    """A backtest engine (or a strategy running inside one) failed."""

    exit_code = 4


class PromotionRejected(TierlineError):
    """The promotion gate rejected a candidate."""

    exit_code = 5
