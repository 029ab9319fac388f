"""The strategy contract: written once, run unchanged by every tier.

A strategy is a name, a parameter space (grid values and Optuna distributions, with
constraints such as ``fast < slow``), a warm-up length as a function of its parameters, and one
vectorised signal function::

    signals(bars: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame

``bars`` has the columns ``date`` (bar OPEN time, tz-aware UTC), ``open``, ``high``, ``low``,
``close``, ``volume`` (float64) in time order; its index is arbitrary (freqtrade passes a
RangeIndex). The function must use the columns only, positionally, and return a frame with the
same index and length holding boolean ``enter_long`` and ``exit_long`` columns. A signal at bar
t means "decided on bar t's close"; every engine fills it at bar t+1's open.

Strategies are declared with the `strategy` decorator::

    @strategy(
        name="sma_cross",
        params=[Int("fast", 5, 50, step=5, default=10), Int("slow", 20, 200, step=10, default=50)],
        constraints=[Constraint("fast < slow", lambda p: p["fast"] < p["slow"])],
        warmup=lambda p: p["slow"] + 1,
    )
    def sma_cross(bars, p):
        ...

Optional batched signals (for parameter sweeps): ``batch=fn`` declares a generator
``fn(bars, params_list)`` yielding one ``(enter_long, exit_long)`` pair of boolean NumPy arrays
per parameter set, in order, equal element for element to what the signal function returns for
that set. It exists only so that a sweep can compute each distinct indicator once (e.g. one
moving average per window) instead of once per parameter set; `Strategy.iter_signals` uses it
when present and the signal function otherwise, and sweeps compare it with the signal function
on sampled parameter sets.

Optional per-bar signal (for event-driven engines): ``on_bar=fn`` declares
``fn(window: BarWindow, params) -> (enter_long, exit_long)``, the signal of the window's LAST
bar computed from that window alone. ``window`` holds the last ``warmup(params)`` bars up to
and including bar t (fewer on the first ``warmup - 1`` bars of the data) as read-only NumPy
arrays (`BarWindow`); the arrays are valid during the call only. It must equal the signal
function at every bar, bit for bit: it exists only because building a pandas frame and
calling the vectorised function on every bar costs far more than the backtest engine itself
(NautilusTrader calls it when present; see `tierline.engines.nautilus`). `tierline check`
(`tierline.core.causality.check_causality`) compares it with the signal function.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tierline.errors import ConfigError, EngineError

if TYPE_CHECKING:
    import numpy as np
    import optuna
    import pandas as pd

__all__ = [
    "SIGNAL_COLUMNS",
    "BarSignalFn",
    "BarWindow",
    "BatchSignalFn",
    "Choice",
    "Constraint",
    "Float",
    "Int",
    "Param",
    "Signals",
    "Strategy",
    "bar_signal_pair",
    "format_params",
    "parse_params",
    "strategy",
]

#: Signal column names (freqtrade's); the short side will use enter_short / exit_short.
SIGNAL_COLUMNS = ("enter_long", "exit_long")
#: Input columns a signal function may read.
BAR_COLUMNS = ("date", "open", "high", "low", "close", "volume")


@dataclass(frozen=True, kw_only=True)
class Int:
    """An integer parameter: Optuna samples ``low..high`` by ``step``; the grid is the same
    range unless ``grid`` lists values."""

    name: str
    low: int
    high: int
    step: int = 1
    default: int
    grid: tuple[int, ...] | None = None

    def __init__(
        self,
        name: str,
        low: int,
        high: int,
        *,
        step: int = 1,
        default: int,
        grid: Sequence[int] | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "low", int(low))
        object.__setattr__(self, "high", int(high))
        object.__setattr__(self, "step", int(step))
        object.__setattr__(self, "default", int(default))
        object.__setattr__(self, "grid", tuple(int(v) for v in grid) if grid else None)
        if low > high or step <= 0:
            raise ConfigError(f"parameter {name!r}: need low <= high and step > 0")

    def values(self) -> tuple[int, ...]:
        """Return the grid values."""
        return self.grid or tuple(range(self.low, self.high + 1, self.step))

    def coerce(self, value: Any) -> int:
        """Return ``value`` as an int within bounds, or raise ConfigError."""
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"parameter {self.name!r}: {value!r} is not an integer") from None
        if not f.is_integer():
            raise ConfigError(f"parameter {self.name!r}: {value!r} is not an integer")
        v = int(f)
        if not self.low <= v <= self.high:
            raise ConfigError(
                f"parameter {self.name!r}: {v} is outside its range [{self.low}, {self.high}]"
            )
        return v

    def suggest(self, trial: optuna.Trial) -> int:
        """Sample the parameter in an Optuna trial."""
        return trial.suggest_int(self.name, self.low, self.high, step=self.step)


@dataclass(frozen=True, kw_only=True)
class Float:
    """A float parameter: Optuna samples ``[low, high]`` (log scale if ``log``); the grid is
    ``grid`` or ``low..high`` by ``step``."""

    name: str
    low: float
    high: float
    step: float | None = None
    log: bool = False
    default: float
    grid: tuple[float, ...] | None = None

    def __init__(
        self,
        name: str,
        low: float,
        high: float,
        *,
        default: float,
        step: float | None = None,
        log: bool = False,
        grid: Sequence[float] | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "low", float(low))
        object.__setattr__(self, "high", float(high))
        object.__setattr__(self, "step", step)
        object.__setattr__(self, "log", log)
        object.__setattr__(self, "default", float(default))
        object.__setattr__(self, "grid", tuple(float(v) for v in grid) if grid else None)
        if low > high:
            raise ConfigError(f"parameter {name!r}: need low <= high")
        if grid is None and step is None:
            raise ConfigError(f"parameter {name!r}: a float parameter needs a step or a grid")

    def values(self) -> tuple[float, ...]:
        """Return the grid values."""
        if self.grid:
            return self.grid
        assert self.step is not None
        n = math.floor((self.high - self.low) / self.step + 1e-9)
        return tuple(round(self.low + i * self.step, 12) for i in range(n + 1))

    def coerce(self, value: Any) -> float:
        """Return ``value`` as a float within bounds, or raise ConfigError."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"parameter {self.name!r}: {value!r} is not a number") from None
        if not self.low <= v <= self.high:
            raise ConfigError(
                f"parameter {self.name!r}: {v} is outside its range [{self.low}, {self.high}]"
            )
        return v

    def suggest(self, trial: optuna.Trial) -> float:
        """Sample the parameter in an Optuna trial."""
        if self.step is not None and not self.log:
            return trial.suggest_float(self.name, self.low, self.high, step=self.step)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


@dataclass(frozen=True, kw_only=True)
class Choice:
    """A categorical parameter."""

    name: str
    choices: tuple[Any, ...]
    default: Any

    def __init__(self, name: str, choices: Sequence[Any], *, default: Any) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "choices", tuple(choices))
        object.__setattr__(self, "default", default)
        if default not in self.choices:
            raise ConfigError(f"parameter {name!r}: default {default!r} not among its choices")

    def values(self) -> tuple[Any, ...]:
        """Return the grid values."""
        return self.choices

    def coerce(self, value: Any) -> Any:
        """Return ``value`` if it is one of the choices (string forms accepted)."""
        for c in self.choices:
            if value == c or str(value) == str(c):
                return c
        raise ConfigError(f"parameter {self.name!r}: {value!r} is not one of {self.choices}")

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample the parameter in an Optuna trial."""
        return trial.suggest_categorical(self.name, list(self.choices))


Param = Int | Float | Choice
#: Optional batched signal hook: ``(bars, params_list) -> iterable of (enter, exit) arrays``.
BatchSignalFn = Callable[
    ["pd.DataFrame", Sequence[Mapping[str, Any]]], "Iterable[tuple[np.ndarray, np.ndarray]]"
]


#: Optional per-bar hook: ``(window, params) -> (enter_long, exit_long)`` of the last bar.
BarSignalFn = Callable[["BarWindow", Mapping[str, Any]], "tuple[bool, bool]"]


@dataclass(frozen=True, slots=True)
class BarWindow:
    """The bars a per-bar hook sees: the last bars up to and including bar t, in time order.

    Every attribute is a read-only 1-D NumPy array of the same length (``len(window)``):
    ``ts`` (int64 ns since the epoch, bar OPEN time, UTC) and float64 ``open, high, low,
    close, volume``. The window's last element is bar t, the bar the hook decides on.
    """

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def from_frame(cls, bars: pd.DataFrame) -> BarWindow:
        """Return read-only copies of a signal-function frame's columns as a window.

        Parameters
        ----------
        bars
            A frame in the signal-function layout (``date``, ``open, high, low, close,
            volume``).
        """
        import numpy as np

        date = bars["date"]
        if getattr(date.dt, "tz", None) is not None:
            date = date.dt.tz_convert("UTC").dt.tz_localize(None)
        arrays = [np.array(date.astype("datetime64[ns]").to_numpy().view(np.int64))]
        arrays += [
            np.array(bars[c].to_numpy(dtype=np.float64))
            for c in ("open", "high", "low", "close", "volume")
        ]
        for a in arrays:
            a.setflags(write=False)
        return cls(*arrays)

    def tail(self, stop: int, size: int) -> BarWindow:
        """Return the last ``size`` bars (fewer at the start) ending at index ``stop - 1``.

        Parameters
        ----------
        stop
            One past the index of the window's last bar.
        size
            The window length (the strategy's warm-up).
        """
        start = max(stop - size, 0)
        return BarWindow(
            self.ts[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
        )


@dataclass(frozen=True)
class Constraint:
    """A cross-parameter rule such as ``fast < slow``: a description and a predicate."""

    description: str
    check: Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True, kw_only=True)
class Signals:
    """Signals of one strategy run as NumPy boolean arrays aligned to the bars."""

    enter_long: np.ndarray
    exit_long: np.ndarray


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """A strategy: name, parameter space, warm-up rule and signal function.

    Use the `strategy` decorator to make one.
    """

    name: str
    description: str
    params: tuple[Param, ...]
    constraints: tuple[Constraint, ...] = ()
    warmup_fn: Callable[[Mapping[str, Any]], int]
    signal_fn: Callable[[pd.DataFrame, Mapping[str, Any]], pd.DataFrame]
    source: str = field(default="", compare=False)
    batch_fn: BatchSignalFn | None = field(default=None, compare=False)
    on_bar_fn: BarSignalFn | None = field(default=None, compare=False)

    # --------------------------------------------------------------- parameters
    @property
    def defaults(self) -> dict[str, Any]:
        """Return the default parameters."""
        return {p.name: p.default for p in self.params}

    def validate_params(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Return complete, typed parameters: defaults filled in, bounds and constraints checked.

        Raises
        ------
        ConfigError
            If a name is unknown, a value is out of range or a constraint fails.
        """
        params = dict(params or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(
                f"strategy {self.name!r} has no parameter(s) {unknown}; its parameters are "
                f"{list(known)}"
            )
        out = {
            name: p.coerce(params[name]) if name in params else p.default
            for name, p in known.items()
        }
        for c in self.constraints:
            if not c.check(out):
                raise ConfigError(
                    f"strategy {self.name!r}: parameters {format_params(out)} break the "
                    f"constraint {c.description}"
                )
        return out

    def is_valid(self, params: Mapping[str, Any]) -> bool:
        """Return whether ``params`` satisfy every constraint."""
        return all(c.check(params) for c in self.constraints)

    def grid(self) -> Iterator[dict[str, Any]]:
        """Yield every grid combination that satisfies the constraints."""
        names = [p.name for p in self.params]
        for combo in itertools.product(*(p.values() for p in self.params)):
            params = dict(zip(names, combo, strict=True))
            if self.is_valid(params):
                yield params

    def suggest(self, trial: optuna.Trial) -> dict[str, Any] | None:
        """Sample parameters in an Optuna trial; None when they break a constraint."""
        params = {p.name: p.suggest(trial) for p in self.params}
        return params if self.is_valid(params) else None

    def warmup(self, params: Mapping[str, Any]) -> int:
        """Return the bars the signal at bar t reads, bar t included.

        A window of exactly this many bars ending at t must reproduce the full-history signal
        at t (NautilusTrader evaluates on such a rolling window; `tierline check` verifies
        it), so the first bar that can carry a signal has index ``warmup - 1``. For
        ``sma_cross`` it is ``slow + 1``: the cross at t compares the means at t-1 and t.
        """
        return int(self.warmup_fn(params))

    # --------------------------------------------------------------- signals
    def signals(self, bars: pd.DataFrame, params: Mapping[str, Any]) -> Signals:
        """Run the signal function and check its output.

        Parameters
        ----------
        bars
            Bars in the signal-function layout (module docstring).
        params
            The parameters (as validated by `validate_params`).

        Returns
        -------
        Signals
            Boolean ``enter_long``/``exit_long`` arrays, one element per bar (NA as False).

        Raises
        ------
        EngineError
            If the function raises, or returns the wrong shape, columns or types; the message
            names the strategy and parameters.
        """
        import numpy as np

        try:
            out = self.signal_fn(bars, params)
        except Exception as e:
            raise EngineError(
                f"strategy {self.name!r} raised {type(e).__name__}: {e} "
                f"(params {format_params(params)}, {len(bars)} bars)"
            ) from e
        missing = [c for c in SIGNAL_COLUMNS if c not in getattr(out, "columns", ())]
        if missing:
            raise EngineError(
                f"strategy {self.name!r} returned no column(s) {missing}; a signal function "
                "returns a DataFrame with boolean enter_long and exit_long"
            )
        if len(out) != len(bars):
            raise EngineError(
                f"strategy {self.name!r} returned {len(out)} rows for {len(bars)} bars"
            )
        arrays = {}
        for c in SIGNAL_COLUMNS:
            col = out[c]
            if col.isna().any():
                col = col.astype("boolean").fillna(False)
            arrays[c] = np.asarray(col, dtype=bool)
        return Signals(enter_long=arrays["enter_long"], exit_long=arrays["exit_long"])

    def bar_signal(self, window: BarWindow, params: Mapping[str, Any]) -> tuple[bool, bool]:
        """Return the per-bar hook's ``(enter_long, exit_long)`` for the window's last bar.

        Parameters
        ----------
        window
            The last ``warmup(params)`` bars up to and including the bar decided on.
        params
            The parameters (as validated by `validate_params`).

        Raises
        ------
        EngineError
            If the strategy declares no hook, or the hook raises or returns something other
            than a pair; the message names the strategy and parameters.
        """
        if self.on_bar_fn is None:
            raise EngineError(f"strategy {self.name!r} declares no per-bar hook (on_bar=)")
        try:
            out = self.on_bar_fn(window, params)
        except Exception as e:
            raise EngineError(
                f"strategy {self.name!r}: on_bar raised {type(e).__name__}: {e} "
                f"(params {format_params(params)}, window of {len(window)} bars)"
            ) from e
        return bar_signal_pair(self.name, out)

    def iter_signals(
        self, bars: pd.DataFrame, params_list: Sequence[Mapping[str, Any]]
    ) -> Iterator[Signals]:
        """Yield the signals of each parameter set in order (for sweeps).

        Uses the optional batched hook (``batch=`` of `strategy`) when the strategy declares
        one, else calls `signals` per set.

        Raises
        ------
        EngineError
            If the hook raises, yields too few or too many pairs, or a pair of the wrong length.
        """
        import numpy as np

        if self.batch_fn is None:
            for p in params_list:
                yield self.signals(bars, p)
            return
        n = len(bars)
        count = 0
        try:
            for enter, exit_ in self.batch_fn(bars, params_list):
                if count >= len(params_list):
                    raise EngineError(
                        f"strategy {self.name!r}: batched signals yielded more than "
                        f"{len(params_list)} pairs"
                    )
                e, x = np.asarray(enter, dtype=bool), np.asarray(exit_, dtype=bool)
                if e.shape != (n,) or x.shape != (n,):
                    raise EngineError(
                        f"strategy {self.name!r}: batched signals for "
                        f"{format_params(params_list[count])} have shapes {e.shape}/{x.shape}, "
                        f"expected ({n},)"
                    )
                count += 1
                yield Signals(enter_long=e, exit_long=x)
        except EngineError:
            raise
        except Exception as e:
            raise EngineError(
                f"strategy {self.name!r}: batched signals raised {type(e).__name__}: {e}"
            ) from e
        if count != len(params_list):
            raise EngineError(
                f"strategy {self.name!r}: batched signals yielded {count} pairs for "
                f"{len(params_list)} parameter sets"
            )


def strategy(
    *,
    name: str,
    params: Sequence[Param],
    warmup: Callable[[Mapping[str, Any]], int],
    constraints: Sequence[Constraint] = (),
    description: str | None = None,
    batch: BatchSignalFn | None = None,
    on_bar: BarSignalFn | None = None,
) -> Callable[[Callable[..., pd.DataFrame]], Strategy]:
    """Declare a strategy from its signal function (see the module docstring).

    Parameters
    ----------
    name
        The strategy's name (``tierline strategies`` lists it; registry records use it).
    params
        Its parameter space (`Int`, `Float`, `Choice`).
    warmup
        ``warmup(params)``: the bars the signal at t reads, t included.
    constraints
        Cross-parameter rules such as ``fast < slow``.
    description
        One line for listings (default: the first paragraph of the function's docstring).
    batch
        Optional batched signal generator for sweeps (module docstring); must equal the
        signal function.
    on_bar
        Optional per-bar signal for event-driven engines (module docstring, `BarWindow`);
        must equal the signal function bit for bit (``tierline check`` compares them).

    Returns
    -------
    callable
        A decorator turning the signal function into a `Strategy`.
    """

    def wrap(fn: Callable[..., pd.DataFrame]) -> Strategy:
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise ConfigError(f"strategy {name!r}: duplicate parameter names {names}")
        doc = description or (fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        s = Strategy(
            name=name,
            description=doc,
            params=tuple(params),
            constraints=tuple(constraints),
            warmup_fn=warmup,
            signal_fn=fn,
            source=getattr(fn, "__module__", ""),
            batch_fn=batch,
            on_bar_fn=on_bar,
        )
        s.validate_params(s.defaults)
        return s

    return wrap


def bar_signal_pair(name: str | None, out: Any) -> tuple[bool, bool]:
    """Return a per-bar hook's result as two bools (NaN and NA count as False).

    Parameters
    ----------
    name
        The strategy's name, to start error messages with (None: the caller names it).
    out
        What the hook returned.

    Raises
    ------
    EngineError
        If ``out`` is not a pair of booleans.
    """
    try:
        enter, exit_ = out
    except (TypeError, ValueError):
        raise EngineError(
            f"{_who(name)}on_bar returned {out!r}; it must return a pair "
            "(enter_long, exit_long) of booleans"
        ) from None
    return _flag(name, enter), _flag(name, exit_)


def _who(name: str | None) -> str:
    return f"strategy {name!r}: " if name is not None else ""


def _flag(name: str | None, value: Any) -> bool:
    if value is True or value is False:
        return value
    try:
        if value != value:  # NaN: no signal, as in `Strategy.signals`
            return False
        return bool(value)
    except TypeError:  # pandas.NA: no signal
        return False
    except ValueError:
        raise EngineError(
            f"{_who(name)}on_bar returned {value!r} for a signal; expected a boolean"
        ) from None


def parse_params(text: str | None) -> dict[str, str]:
    """Parse ``fast=10,slow=50`` into ``{"fast": "10", "slow": "50"}`` (values typed later).

    Raises
    ------
    ConfigError
        If an item is not ``name=value``.
    """
    if not text:
        return {}
    out: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ConfigError(f"--params item {item!r} is not name=value (e.g. fast=10,slow=50)")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def format_params(params: Mapping[str, Any]) -> str:
    """Return ``fast=10,slow=50`` for a parameter mapping (stable order)."""
    return ",".join(f"{k}={v}" for k, v in params.items())
