"""TierlineShim: run a tierline strategy, unchanged, inside freqtrade.

The strategy and its parameters come from the config's ``tierline`` section (or a registry
record it names), resolved by `tierline.engines.freqtrade.shim_settings`::

    "tierline": {"strategy": "sma_cross", "params": {"fast": 10, "slow": 50}, "stake": null}
    "tierline": {"registry": "../../registry/sma_cross.json", "protections": [...]}

A relative ``registry`` path is resolved against the config file's folder. Freqtrade
protections come from ``tierline.protections`` (freqtrade no longer reads them from a config;
the strategy's ``protections`` property returns them).

Everything that decides trades lives in the strategy's signal function; this class only makes
freqtrade follow tierline's execution conventions (see `tierline.engines.freqtrade`): no ROI,
no stop-loss, one position, exits on ``exit_long`` only, on a bar with both signals the exit
winning in a position and the entry when flat, and a stake that covers price and fee.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from freqtrade.enums import TRADE_MODES
from freqtrade.exchange import timeframe_to_seconds
from freqtrade.persistence import Trade
from freqtrade.strategy import IStrategy
from pandas import DataFrame

from tierline.engines import freqtrade as tl
from tierline.strategy import format_params

logger = logging.getLogger(__name__)


class TierlineShim(IStrategy):
    """A tierline strategy as a freqtrade strategy (name and parameters from the config)."""

    INTERFACE_VERSION = 3
    timeframe = "5m"
    can_short = False
    minimal_roi = {"0": 100}  # noqa: RUF012  (10,000 %: never reached, i.e. no ROI exits)
    stoploss = -1.0  # no stop-loss unless the config sets one
    trailing_stop = False
    use_exit_signal = True
    exit_profit_only = False
    # ROI is off; an entry signal while in a position changes nothing (conventions).
    ignore_roi_if_entry_signal = False
    position_adjustment_enable = False
    max_open_trades = 1
    process_only_new_candles = True
    startup_candle_count: int = 0  # set per instance: the strategy's warm-up - 1
    order_types = {  # noqa: RUF012  (freqtrade reads these class attributes)
        "entry": "limit",
        "exit": "limit",
        "stoploss": "market",
        "stoploss_on_exchange": False,
    }

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.tierline = tl.shim_settings(config)
        self.startup_candle_count = self.tierline.startup_candles
        self.tierline_conflicts: dict[str, int] = {}
        self.tierline_early_signals: dict[str, int] = {}
        self._conflict_fills: dict[str, frozenset[int]] = {}
        self._tf_secs = 0
        self._live = config.get("runmode") in TRADE_MODES
        if self._live:
            self.custom_exit = self._live_custom_exit  # type: ignore[method-assign]
            section = config.get("tierline") or {}
            logger.info(
                "TierlineShim runs %s (%s), warm-up %d candles%s",
                self.tierline.strategy.name,
                format_params(self.tierline.params),
                self.startup_candle_count + 1,
                f", champion record {section['registry']}" if section.get("registry") else "",
            )

    @property
    def protections(self) -> list[dict[str, Any]]:  # type: ignore[override]
        # Freqtrade 2026.9 refuses "protections" in a config; a strategy property is where
        # they go. The champion's config carries the policy's as tierline.protections.
        section = self.config.get("tierline") or {}
        return [dict(p) for p in section.get("protections") or ()]

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        pair = metadata["pair"]
        self._tf_secs = int(timeframe_to_seconds(self.timeframe))
        sig = tl.shim_signals(dataframe, self.tierline, self._tf_secs, live=self._live)
        dataframe["enter_long"] = sig.enter_long
        dataframe["exit_long"] = sig.exit_long
        self._conflict_fills[pair] = sig.conflict_fills
        self.tierline_conflicts[pair] = sig.conflicts
        self.tierline_early_signals[pair] = sig.early_signals
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        if "exit_long" not in dataframe.columns:  # entry trend not run on this frame
            dataframe = self.populate_entry_trend(dataframe, metadata)
        return dataframe

    def _live_custom_exit(
        self,
        pair: str,
        trade: Trade,
        current_time: datetime,
        current_rate: float,
        current_profit: float,
        **kwargs: Any,
    ) -> str | None:
        # Live only (bound as custom_exit in __init__): both signals on the last closed bar
        # and a position opened before it: the exit wins. Backtests resolve this in the
        # signal columns instead, because freqtrade deep-copies the trade on every call of
        # an overridden custom_exit (seconds per thousand candles).
        fills = self._conflict_fills.get(pair)
        if not fills:
            return None
        return tl.conflict_exit(fills, self._tf_secs, current_time, trade.open_date_utc)

    def custom_stake_amount(
        self,
        pair: str,
        current_time: datetime,
        current_rate: float,
        proposed_stake: float,
        min_stake: float | None,
        max_stake: float,
        leverage: float,
        entry_tag: str | None,
        side: str,
        **kwargs: Any,
    ) -> float:
        return tl.shim_stake(self.tierline, max_stake, self.config.get("fee"))
