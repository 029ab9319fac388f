"""Execution conventions shared by every engine (what makes tiers comparable).

- A signal on bar t is decided on bar t's close and filled at bar t+1's open.
- Fee rate ``fee`` on both legs (taker); one long position at a time.
- Stake: all current equity (compounding) unless ``stake`` fixes a quote amount per trade.
- Quantity = stake / (entry_price * (1 + fee)), so that stake covers price and fee.
- A position still open after the last bar is closed at that bar's close.
- Per-trade return = exit_price * (1 - fee) / (entry_price * (1 + fee)) - 1.
- An entry signal while in a position, and an exit signal while flat, are ignored; when
  ``enter_long`` and ``exit_long`` are both true on one bar, the exit wins if in a position and
  the entry wins if flat (so a flat strategy can enter on a bar that also says "exit").
"""

from __future__ import annotations

from dataclasses import dataclass

from tierline.errors import ConfigError

__all__ = ["ExecutionConfig", "trade_return"]


@dataclass(frozen=True, kw_only=True)
class ExecutionConfig:
    """How orders fill in every engine.

    Parameters
    ----------
    fee
        Fee rate per leg (0.001 = 0.1 %).
    initial_cash
        Starting equity in quote currency.
    stake
        Fixed quote amount per trade, or None to stake all current equity (compounding).
    """

    fee: float = 0.001
    initial_cash: float = 10_000.0
    stake: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.fee < 0.1:
            raise ConfigError(f"fee {self.fee!r} must be in [0, 0.1) (0.001 = 0.1 %)")
        if not self.initial_cash > 0:
            raise ConfigError(f"initial_cash {self.initial_cash!r} must be > 0")
        if self.stake is not None and not 0 < self.stake <= self.initial_cash:
            raise ConfigError(
                f"stake {self.stake!r} must be > 0 and at most initial_cash {self.initial_cash}"
            )


def trade_return(entry_price: float, exit_price: float, fee: float) -> float:
    """Return a trade's net return: ``exit*(1-fee) / (entry*(1+fee)) - 1``."""
    return exit_price * (1.0 - fee) / (entry_price * (1.0 + fee)) - 1.0
