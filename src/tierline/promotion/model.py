"""The champion as an MLflow pyfunc model: bars in, the strategy's signals out.

A promoted strategy is registered in the MLflow model registry (``tierline-<strategy>``) with
MLflow's ``loader_module`` flavour: the model's data folder holds ``model.json`` (strategy
name, parameters, where the strategy came from) and, for a workspace strategy, a copy of its
source file; MLflow calls `_load_pyfunc` on that folder. Nothing is pickled, and this module
imports no mlflow (``tierline.tracking`` does the logging)::

    model = mlflow.pyfunc.load_model("models:/tierline-sma_cross@champion")
    signals = model.predict(bars)  # DataFrame: enter_long, exit_long (bool), bars' index

``bars`` is a frame like freqtrade's (``date`` = bar open UTC, ``open, high, low, close,
volume``), as `tierline.strategy.Strategy.signals` takes it.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierline.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from tierline.strategy.contract import Strategy

__all__ = ["MODEL_CONFIG", "SignalModel", "write_model_data"]

#: The model's description file inside its data folder.
MODEL_CONFIG = "model.json"
_SOURCE_DIR = "strategy_source"


def _source_file(strategy: Strategy) -> Path | None:
    if strategy.source.startswith("tierline.strategies."):
        return None  # a built-in: part of the installed package
    module = sys.modules.get(strategy.source)
    file = getattr(module, "__file__", None)
    return Path(file) if file else None


def write_model_data(folder: Path, strategy: Strategy, params: Mapping[str, Any]) -> Path:
    """Write the data folder of a strategy's pyfunc model; return it.

    Parameters
    ----------
    folder
        Empty or missing folder to fill.
    strategy
        The strategy (a built-in is found again by name; a workspace strategy's source file is
        copied, so the model keeps working when the workspace file changes).
    params
        The promoted parameters (validated against the strategy).
    """
    folder.mkdir(parents=True, exist_ok=True)
    params = strategy.validate_params(params)
    source = _source_file(strategy)
    config: dict[str, Any] = {
        "schema_version": 1,
        "strategy": strategy.name,
        "params": params,
        "builtin": source is None,
        "source_file": None,
    }
    if source is not None:
        target = folder / _SOURCE_DIR / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        config["source_file"] = f"{_SOURCE_DIR}/{source.name}"
    (folder / MODEL_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


class SignalModel:
    """A strategy with fixed parameters; `predict` returns its signal columns.

    Parameters
    ----------
    strategy
        The strategy.
    params
        Its parameters (validated).
    """

    def __init__(self, strategy: Strategy, params: Mapping[str, Any]) -> None:
        self.strategy = strategy
        self.params = strategy.validate_params(params)

    def __repr__(self) -> str:
        from tierline.strategy import format_params

        return f"SignalModel({self.strategy.name}, {format_params(self.params)})"

    def predict(self, model_input: pd.DataFrame, params: Mapping[str, Any] | None = None) -> Any:
        """Return ``enter_long``/``exit_long`` (bool) for each bar of ``model_input``.

        ``params`` (MLflow's inference parameters) is not used: the parameters are the
        promoted ones.
        """
        import pandas as pd

        if not isinstance(model_input, pd.DataFrame):
            raise ConfigError(
                f"the {self.strategy.name} model takes a DataFrame of bars, "
                f"got {type(model_input).__name__}"
            )
        sig = self.strategy.signals(model_input, self.params)
        return pd.DataFrame(
            {"enter_long": sig.enter_long, "exit_long": sig.exit_long}, index=model_input.index
        )


def _load_pyfunc(data_path: str) -> SignalModel:
    """Rebuild the model from its data folder (MLflow's ``loader_module`` entry point)."""
    from tierline.strategy.registry import get_strategy

    folder = Path(data_path)
    try:
        config = json.loads((folder / MODEL_CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{folder / MODEL_CONFIG}: cannot be read ({e})") from e
    # A workspace strategy is read from the copy kept in the model, never from the workspace.
    directory = folder / _SOURCE_DIR if config.get("source_file") else folder / "no-such-dir"
    strategy = get_strategy(config["strategy"], directory)
    return SignalModel(strategy, config["params"])
