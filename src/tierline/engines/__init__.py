"""Engine adapters and the dispatcher that picks one by name.

Each adapter module (``tierline.engines.<engine>``; the reference engine lives in
``tierline.core.reference``) exposes ``run(strategy, bars, params, config) -> BacktestResult``.
Adapters are imported inside `run_backtest`'s branch only, so importing this package loads no
engine.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tierline.errors import ConfigError, DataError

if TYPE_CHECKING:
    import polars as pl

    from tierline.core.conventions import ExecutionConfig
    from tierline.core.result import BacktestResult
    from tierline.strategy.contract import Strategy

__all__ = ["ENGINES", "MARKET_AWARE", "available_engines", "engine_module", "run_backtest"]

#: Engine names `run_backtest` accepts.
ENGINES: tuple[str, ...] = ("reference", "vectorbt", "nautilus", "freqtrade")
#: Engines that read the instrument (tick, lot, minimums) from ``exchange=``/``symbol=``;
#: `run_backtest` drops those two options for the others, so callers may always pass them.
MARKET_AWARE: frozenset[str] = frozenset({"nautilus", "freqtrade"})


def engine_module(engine: str) -> str:
    """Return the module that implements ``engine``.

    Raises
    ------
    ConfigError
        If the name is not one of `ENGINES`.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
    return "tierline.core.reference" if engine == "reference" else f"tierline.engines.{engine}"


def run_backtest(
    engine: str,
    strategy: Strategy,
    bars: pl.DataFrame,
    params: Mapping[str, Any],
    config: ExecutionConfig,
    **options: Any,
) -> BacktestResult:
    """Run one backtest on the named engine.

    Parameters
    ----------
    engine
        One of `ENGINES`.
    strategy
        The strategy to run.
    bars
        Catalog OHLCV bars (``ts`` = bar open, UTC ns; ``open, high, low, close, volume``).
    params
        Strategy parameters; defaults are filled in and bounds and constraints checked here.
    config
        Execution conventions (fee, initial cash, stake).
    **options
        Engine-specific keyword arguments passed to the adapter's ``run`` unchanged (e.g.
        ``exchange=`` and ``symbol=`` for nautilus, which reads the instrument's tick and lot
        from them); only pass what the chosen engine accepts.

    Returns
    -------
    BacktestResult
        The engine's trades table and equity curve in the common shape.

    Raises
    ------
    ConfigError
        If the engine is unknown or not built yet, or the parameters are invalid.
    DataError
        If ``bars`` is empty.
    EngineError
        If the engine or the strategy fails.
    """
    name = engine_module(engine)
    checked = strategy.validate_params(params)
    if bars.is_empty():
        raise DataError(f"no bars to backtest {strategy.name!r} on")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        raise ConfigError(
            f"engine {engine!r} is not built yet (no module {name}); available: "
            f"{', '.join(available_engines())}"
        ) from None
    if engine not in MARKET_AWARE:
        # reference and vectorbt need no instrument: they trade unrounded quantities
        options = {k: v for k, v in options.items() if k not in ("exchange", "symbol")}
    result: BacktestResult = module.run(strategy, bars, checked, config, **options)
    return result


def available_engines() -> list[str]:
    """Return the engines whose adapter module exists (without importing it)."""
    import importlib.util

    out = []
    for engine in ENGINES:
        name = engine_module(engine)
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            out.append(engine)
    return out
