"""Tier-3 run configuration: execution style, latency and queue models, fees, synthetic L2.

Loaded from a TOML file in the workspace's ``hft/`` folder (default ``hft/default.toml``, or
``$TIERLINE_HFT_CONFIG``); every key is documented line by line in that file. Each section
decodes into a frozen dataclass validated on construction; an unknown key, a wrong type or
an out-of-range value is a `ConfigError` naming the key and the file. `HftConfig.config_id`
hashes the decoded values, so MLflow tags and reports name the configuration they ran.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tierline.errors import ConfigError

__all__ = [
    "HFT_CONFIG_ENV",
    "LATENCY_MODELS",
    "QUEUE_MODELS",
    "STYLES",
    "ExecutionStyle",
    "FeeConfig",
    "HftConfig",
    "LatencyConfig",
    "QueueConfig",
    "SyntheticL2Config",
    "default_config_path",
    "load_hft_config",
]

#: Environment variable naming the default tier-3 config file.
HFT_CONFIG_ENV = "TIERLINE_HFT_CONFIG"
STYLES: tuple[str, ...] = ("taker", "passive")
LATENCY_MODELS: tuple[str, ...] = ("constant", "feed")
QUEUE_MODELS: tuple[str, ...] = ("risk_averse", "power_prob")

Style = Literal["taker", "passive"]
LatencyModel = Literal["constant", "feed"]
QueueModel = Literal["risk_averse", "power_prob"]


def _need(cond: bool, key: str, value: Any, what: str) -> None:
    if not cond:
        raise ConfigError(f"{key} = {value!r}: {what}")


@dataclass(frozen=True, kw_only=True)
class ExecutionStyle:
    """How a decision becomes orders (``[execution]``).

    Parameters
    ----------
    style
        ``taker``: IOC limits at the far touch; ``passive``: a post-only limit at the near
        touch, cancelled after ``passive_timeout_s`` and the rest crossed as ``taker``.
    passive_timeout_s
        Seconds a passive order rests before it is cancelled.
    taker_limit_ticks
        Ticks beyond the far touch an IOC may reach (0 = the touch price only).
    max_orders
        Most orders per decision (the passive one and the IOC re-sends together).
    partial_fills
        Use hftbacktest's partial-fill exchange (else orders fill whole or not at all).
    """

    style: Style = "taker"
    passive_timeout_s: float = 5.0
    taker_limit_ticks: int = 0
    max_orders: int = 20
    partial_fills: bool = True

    def __post_init__(self) -> None:
        _need(self.style in STYLES, "execution.style", self.style, f"expected one of {STYLES}")
        _need(
            self.passive_timeout_s > 0,
            "execution.passive_timeout_s",
            self.passive_timeout_s,
            "must be > 0",
        )
        _need(
            self.taker_limit_ticks >= 0,
            "execution.taker_limit_ticks",
            self.taker_limit_ticks,
            "must be >= 0",
        )
        _need(self.max_orders >= 1, "execution.max_orders", self.max_orders, "must be >= 1")


@dataclass(frozen=True, kw_only=True)
class LatencyConfig:
    """Order latency (``[latency]``).

    ``constant``: every order reaches the exchange ``entry_ms`` after it is sent and its
    response comes back ``response_ms`` later (hftbacktest ``constant_order_latency``).
    ``feed``: interpolated from the feed's own latency (hftbacktest ``intp_order_latency``):
    the feed latency ``local_ts - exch_ts`` is sampled every ``feed_resample_ms`` (the last
    event of each interval) and entry = ``feed_entry_mul`` x feed + ``feed_entry_offset_ms``,
    response = ``feed_response_mul`` x feed + ``feed_response_offset_ms``.
    """

    model: LatencyModel = "constant"
    entry_ms: float = 10.0
    response_ms: float = 10.0
    feed_entry_mul: float = 1.0
    feed_entry_offset_ms: float = 0.0
    feed_response_mul: float = 1.0
    feed_response_offset_ms: float = 0.0
    feed_resample_ms: float = 1000.0

    def __post_init__(self) -> None:
        _need(
            self.model in LATENCY_MODELS,
            "latency.model",
            self.model,
            f"expected one of {LATENCY_MODELS}",
        )
        for name in (
            "entry_ms",
            "response_ms",
            "feed_entry_mul",
            "feed_response_mul",
            "feed_entry_offset_ms",
            "feed_response_offset_ms",
        ):
            value = getattr(self, name)
            _need(value >= 0, f"latency.{name}", value, "must be >= 0")
        _need(
            self.feed_resample_ms > 0,
            "latency.feed_resample_ms",
            self.feed_resample_ms,
            "must be > 0",
        )


@dataclass(frozen=True, kw_only=True)
class QueueConfig:
    """Queue position model of resting orders (``[queue]``).

    ``risk_averse``: the queue ahead shrinks only by trades at the order's price (and never
    exceeds the level's quantity); ``power_prob``: a level's decrease is also attributed to
    the queue ahead with probability ``f(back) / (f(back) + f(front))``, ``f(x) = x **
    power_n`` (hftbacktest ``power_prob_queue_model``).
    """

    model: QueueModel = "risk_averse"
    power_n: float = 3.0

    def __post_init__(self) -> None:
        _need(
            self.model in QUEUE_MODELS, "queue.model", self.model, f"expected one of {QUEUE_MODELS}"
        )
        _need(self.power_n > 0, "queue.power_n", self.power_n, "must be > 0")


@dataclass(frozen=True, kw_only=True)
class FeeConfig:
    """Fee rates on traded value (``[fees]``); negative = rebate."""

    maker: float = 0.001
    taker: float = 0.001

    def __post_init__(self) -> None:
        for name in ("maker", "taker"):
            value = getattr(self, name)
            _need(-0.01 < value < 0.1, f"fees.{name}", value, "must be in (-0.01, 0.1)")


@dataclass(frozen=True, kw_only=True)
class SyntheticL2Config:
    """The book synthesised from bars where no real L2 covers a span (``[synthetic]``).

    Parameters
    ----------
    spread_ticks
        Quoted spread in ticks (used when ``spread_bps`` is 0).
    spread_bps
        Quoted spread in basis points of the price (rounded up to whole ticks); 0 = use
        ``spread_ticks``.
    levels
        Price levels per side.
    level_step_ticks
        Ticks between consecutive levels.
    level_notional
        Quote value resting at each level (its quantity = notional / price, in lots).
    events_per_bar
        Book updates per bar along open -> low/high -> high/low -> close (4 hits each).
    feed_latency_ms
        Local receive time minus exchange time of every synthetic event.
    """

    spread_ticks: int = 1
    spread_bps: float = 0.0
    levels: int = 5
    level_step_ticks: int = 1
    level_notional: float = 50_000.0
    events_per_bar: int = 4
    feed_latency_ms: float = 5.0

    def __post_init__(self) -> None:
        _need(self.spread_ticks >= 1, "synthetic.spread_ticks", self.spread_ticks, "must be >= 1")
        _need(self.spread_bps >= 0, "synthetic.spread_bps", self.spread_bps, "must be >= 0")
        _need(1 <= self.levels <= 100, "synthetic.levels", self.levels, "must be in [1, 100]")
        _need(
            self.level_step_ticks >= 1,
            "synthetic.level_step_ticks",
            self.level_step_ticks,
            "must be >= 1",
        )
        _need(
            self.level_notional > 0, "synthetic.level_notional", self.level_notional, "must be > 0"
        )
        _need(
            2 <= self.events_per_bar <= 1000,
            "synthetic.events_per_bar",
            self.events_per_bar,
            "must be in [2, 1000]",
        )
        _need(
            self.feed_latency_ms >= 0,
            "synthetic.feed_latency_ms",
            self.feed_latency_ms,
            "must be >= 0",
        )


_SECTIONS: dict[str, type] = {
    "execution": ExecutionStyle,
    "latency": LatencyConfig,
    "queue": QueueConfig,
    "fees": FeeConfig,
    "synthetic": SyntheticL2Config,
}


@dataclass(frozen=True, kw_only=True)
class HftConfig:
    """A complete tier-3 configuration (one TOML file)."""

    execution: ExecutionStyle = field(default_factory=ExecutionStyle)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    fees: FeeConfig = field(default_factory=FeeConfig)
    synthetic: SyntheticL2Config = field(default_factory=SyntheticL2Config)
    #: The file it was read from (None when built in code).
    path: Path | None = None

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Return the values as nested plain dicts (what the TOML file holds)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in _SECTIONS}

    @property
    def config_id(self) -> str:
        """Return a short hash of the values (not of the file's comments or layout)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def with_overrides(
        self,
        *,
        style: str | None = None,
        latency: str | None = None,
        queue: str | None = None,
    ) -> HftConfig:
        """Return a copy with the execution style, latency model or queue model replaced."""
        out = self
        if style is not None:
            out = dataclasses.replace(
                out,
                execution=dataclasses.replace(out.execution, style=style),  # type: ignore[arg-type]
            )
        if latency is not None:
            out = dataclasses.replace(
                out,
                latency=dataclasses.replace(out.latency, model=latency),  # type: ignore[arg-type]
            )
        if queue is not None:
            out = dataclasses.replace(
                out,
                queue=dataclasses.replace(out.queue, model=queue),  # type: ignore[arg-type]
            )
        return out


def default_config_path() -> Path:
    """Return ``$TIERLINE_HFT_CONFIG`` or ``hft/default.toml``."""
    return Path(os.environ.get(HFT_CONFIG_ENV, Path("hft") / "default.toml"))


def _decode(section: str, cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: [{section}] must be a table, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} in [{section}]; known: {sorted(fields)}"
        )
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        want = type(getattr(defaults, key))
        ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(
                f"{where}: {section}.{key} = {value!r} must be a {want.__name__}, "
                f"not {type(value).__name__}"
            )
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def load_hft_config(path: Path | str | None = None) -> HftConfig:
    """Load a tier-3 configuration from TOML.

    Parameters
    ----------
    path
        The file (default `default_config_path`). When no path is given and the default file
        does not exist, the built-in defaults are returned (the same values as the shipped
        ``hft/default.toml``).

    Raises
    ------
    ConfigError
        If the file is missing (when named), not TOML, or has an unknown section or key, a
        value of the wrong type or out of range; the message names the file and the key.
    """
    explicit = path is not None
    p = Path(path) if path is not None else default_config_path()
    if not p.exists():
        if explicit or HFT_CONFIG_ENV in os.environ:
            raise ConfigError(f"tier-3 config {p} does not exist")
        return HftConfig()
    try:
        doc = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from e
    unknown = sorted(set(doc) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{p}: unknown section(s) {unknown}; known: {sorted(_SECTIONS)}")
    parts = {name: _decode(name, cls, doc.get(name, {}), str(p)) for name, cls in _SECTIONS.items()}
    return HftConfig(**parts, path=p)
