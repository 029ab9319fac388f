"""SmaCrossDirect: a hand-written freqtrade SMA cross, the baseline of bench_tier2_freqtrade.

What a freqtrade user would write for tierline's ``sma_cross`` (fast 10, slow 50): pandas
rolling means, crossings with ``shift``, no ROI, no stop-loss, exits on the opposite
cross. No tierline import: it measures freqtrade alone.
"""

from __future__ import annotations

from freqtrade.strategy import IStrategy
from pandas import DataFrame


class SmaCrossDirect(IStrategy):
    """Enter when SMA(10) crosses above SMA(50) of the close; exit on the cross below."""

    INTERFACE_VERSION = 3
    timeframe = "1m"
    can_short = False
    minimal_roi = {"0": 100}  # noqa: RUF012  (freqtrade reads these class attributes)
    stoploss = -1.0
    trailing_stop = False
    use_exit_signal = True
    exit_profit_only = False
    ignore_roi_if_entry_signal = False
    process_only_new_candles = True
    startup_candle_count = 50

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["sma_fast"] = dataframe["close"].rolling(10).mean()
        dataframe["sma_slow"] = dataframe["close"].rolling(50).mean()
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        fast, slow = dataframe["sma_fast"], dataframe["sma_slow"]
        cross = (fast > slow) & (fast.shift(1) <= slow.shift(1))
        dataframe.loc[cross, "enter_long"] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        fast, slow = dataframe["sma_fast"], dataframe["sma_slow"]
        cross = (fast < slow) & (fast.shift(1) >= slow.shift(1))
        dataframe.loc[cross, "exit_long"] = 1
        return dataframe
