"""tierline: a research-to-production workbench for systematic crypto trading.

A strategy is written once and climbs a ladder of ever more realistic simulations (vectorbt
sweeps, NautilusTrader and Freqtrade event-driven backtests, hftbacktest L2 simulation);
MLflow tracks every tier and a promotion gate decides what `freqtrade trade` runs.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
