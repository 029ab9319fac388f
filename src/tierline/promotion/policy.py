"""The promotion policy: thresholds per tier and the live trading limits, typed and validated.

The default policy is ``promotion/policy.toml`` (documented line by line); ``--policy`` or
``$TIERLINE_POLICY`` name another. Sections::

    [data]   allow_synthetic                                    (optional section)
    [tier1]  min_oos_sharpe, min_dsr, max_pbo, min_trades
    [tier2]  require_parity, min_sharpe, max_drawdown
    [tier3]  required, max_shortfall_bps, min_fill_ratio, min_net_return, allow_synthetic_l2
    [live]   stake_amount ("unlimited" or a number), max_open_trades, stoploss (optional),
             dry_run_wallet
    [live.protections.max_drawdown]    max_allowed_drawdown, lookback_period_candles,
                                       trade_limit, stop_duration_candles
    [live.protections.stoploss_guard]  trade_limit, lookback_period_candles,
                                       stop_duration_candles, only_per_pair

Every key is required unless marked optional; an unknown key, a wrong type or a value out of
range raises `ConfigError` naming the file and the key. The causality check has no switch: it
is always enforced. `Policy.sha256` is the SHA-256 of the file's bytes (what registry records
cite).
"""

from __future__ import annotations

import hashlib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from tierline.errors import ConfigError

__all__ = [
    "DEFAULT_POLICY_PATH",
    "POLICY_ENV",
    "DataPolicy",
    "LivePolicy",
    "MaxDrawdownProtection",
    "Policy",
    "Protections",
    "StoplossGuardProtection",
    "Tier1Policy",
    "Tier2Policy",
    "Tier3Policy",
    "load_policy",
]

#: The policy used when none is named (relative to the current directory).
DEFAULT_POLICY_PATH = Path("promotion") / "policy.toml"
#: Environment variable naming the policy file (``--policy`` wins).
POLICY_ENV = "TIERLINE_POLICY"


@dataclass(frozen=True, kw_only=True)
class DataPolicy:
    """What the evidence may have run on."""

    allow_synthetic: bool = False


@dataclass(frozen=True, kw_only=True)
class Tier1Policy:
    """Tier-1 thresholds, on the sweep's walk-forward out-of-sample metrics."""

    min_oos_sharpe: float
    min_dsr: float
    max_pbo: float
    min_trades: int


@dataclass(frozen=True, kw_only=True)
class Tier2Policy:
    """Tier-2 thresholds, on the candidate's NautilusTrader and Freqtrade runs."""

    require_parity: bool
    min_sharpe: float
    max_drawdown: float


@dataclass(frozen=True, kw_only=True)
class Tier3Policy:
    """Tier-3 thresholds, on the candidate's hftbacktest run."""

    required: bool
    max_shortfall_bps: float
    min_fill_ratio: float
    min_net_return: float
    allow_synthetic_l2: bool


@dataclass(frozen=True, kw_only=True)
class MaxDrawdownProtection:
    """Freqtrade's ``MaxDrawdown`` protection."""

    max_allowed_drawdown: float
    lookback_period_candles: int
    trade_limit: int
    stop_duration_candles: int


@dataclass(frozen=True, kw_only=True)
class StoplossGuardProtection:
    """Freqtrade's ``StoplossGuard`` protection."""

    trade_limit: int
    lookback_period_candles: int
    stop_duration_candles: int
    only_per_pair: bool


@dataclass(frozen=True, kw_only=True)
class Protections:
    """Freqtrade protections the live config carries."""

    max_drawdown: MaxDrawdownProtection
    stoploss_guard: StoplossGuardProtection


@dataclass(frozen=True, kw_only=True)
class LivePolicy:
    """What the generated freqtrade config trades.

    ``stake_amount`` is ``"unlimited"`` or a positive number; ``stoploss`` a negative fraction
    (e.g. -0.10) or None (no stop-loss).
    """

    stake_amount: str | float
    max_open_trades: int
    stoploss: float | None
    dry_run_wallet: float
    protections: Protections


@dataclass(frozen=True, kw_only=True)
class Policy:
    """A promotion policy as loaded from ``path``; ``sha256`` hashes the file's bytes."""

    path: Path
    sha256: str
    data: DataPolicy
    tier1: Tier1Policy
    tier2: Tier2Policy
    tier3: Tier3Policy
    live: LivePolicy


# ----------------------------------------------------------------------------- reading


class _Section:
    """Typed access to one TOML table; every read key is recorded to find unknown ones."""

    def __init__(self, path: Path, name: str, table: Any) -> None:
        self.path = path
        self.name = name
        if not isinstance(table, Mapping):
            self.fail(None, f"must be a table, got {type(table).__name__}")
        self.table: Mapping[str, Any] = table
        self.read: set[str] = set()

    def fail(self, key: str | None, msg: str) -> NoReturn:
        where = f"[{self.name}]" + (f" {key}" if key else "")
        raise ConfigError(f"{self.path}: {where}: {msg}")

    def raw(self, key: str, *, optional: bool = False) -> Any:
        self.read.add(key)
        if key not in self.table:
            if optional:
                return None
            self.fail(key, "missing (every key of the default policy is required)")
        return self.table[key]

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {value!r}")
        return bool(value)

    def number(
        self,
        key: str,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        hi_open: bool = False,
        optional: bool = False,
    ) -> float:
        value = self.raw(key, optional=optional)
        if value is None and optional:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"expected a number, got {value!r}")
        f = float(value)
        if not math.isfinite(f):
            self.fail(key, f"expected a finite number, got {value!r}")
        self._range(key, f, lo, hi, lo_open, hi_open)
        return f

    def integer(self, key: str, *, lo: int | None = None, hi: int | None = None) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {value!r}")
        self._range(key, value, lo, hi, False, False)
        return int(value)

    def _range(
        self,
        key: str,
        value: float,
        lo: float | None,
        hi: float | None,
        lo_open: bool,
        hi_open: bool,
    ) -> None:
        low_bad = lo is not None and (value <= lo if lo_open else value < lo)
        high_bad = hi is not None and (value >= hi if hi_open else value > hi)
        if low_bad or high_bad:
            left = "any" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
            right = "any" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
            self.fail(key, f"{value!r} is out of range {left}, {right}")

    def done(self, *, subtables: tuple[str, ...] = ()) -> None:
        unknown = sorted(set(self.table) - self.read - set(subtables))
        if unknown:
            self.fail(unknown[0], f"unknown key (known: {', '.join(sorted(self.read))})")


def _tier1(s: _Section) -> Tier1Policy:
    out = Tier1Policy(
        min_oos_sharpe=s.number("min_oos_sharpe"),
        min_dsr=s.number("min_dsr", lo=0.0, hi=1.0),
        max_pbo=s.number("max_pbo", lo=0.0, hi=1.0),
        min_trades=s.integer("min_trades", lo=0),
    )
    s.done()
    return out


def _tier2(s: _Section) -> Tier2Policy:
    out = Tier2Policy(
        require_parity=s.boolean("require_parity"),
        min_sharpe=s.number("min_sharpe"),
        max_drawdown=s.number("max_drawdown", lo=0.0, hi=1.0, lo_open=True),
    )
    s.done()
    return out


def _tier3(s: _Section) -> Tier3Policy:
    out = Tier3Policy(
        required=s.boolean("required"),
        max_shortfall_bps=s.number("max_shortfall_bps", lo=0.0),
        min_fill_ratio=s.number("min_fill_ratio", lo=0.0, hi=1.0),
        min_net_return=s.number("min_net_return", lo=-1.0, lo_open=True),
        allow_synthetic_l2=s.boolean("allow_synthetic_l2"),
    )
    s.done()
    return out


def _stake(s: _Section) -> str | float:
    value = s.raw("stake_amount")
    if value == "unlimited":
        return "unlimited"
    if isinstance(value, bool) or not isinstance(value, int | float):
        s.fail("stake_amount", f'expected "unlimited" or a number, got {value!r}')
    return s.number("stake_amount", lo=0.0, lo_open=True)


def _live(path: Path, table: Any) -> LivePolicy:
    s = _Section(path, "live", table)
    stake = _stake(s)
    max_open = s.integer("max_open_trades", lo=1)
    stoploss = s.number("stoploss", lo=-1.0, hi=0.0, lo_open=True, hi_open=True, optional=True)
    wallet = s.number("dry_run_wallet", lo=0.0, lo_open=True)
    prot = _Section(path, "live.protections", s.raw("protections"))
    md = _Section(path, "live.protections.max_drawdown", prot.raw("max_drawdown"))
    max_dd = MaxDrawdownProtection(
        max_allowed_drawdown=md.number("max_allowed_drawdown", lo=0.0, hi=1.0, lo_open=True),
        lookback_period_candles=md.integer("lookback_period_candles", lo=1),
        trade_limit=md.integer("trade_limit", lo=1),
        stop_duration_candles=md.integer("stop_duration_candles", lo=1),
    )
    md.done()
    sg = _Section(path, "live.protections.stoploss_guard", prot.raw("stoploss_guard"))
    guard = StoplossGuardProtection(
        trade_limit=sg.integer("trade_limit", lo=1),
        lookback_period_candles=sg.integer("lookback_period_candles", lo=1),
        stop_duration_candles=sg.integer("stop_duration_candles", lo=1),
        only_per_pair=sg.boolean("only_per_pair"),
    )
    sg.done()
    prot.done()
    s.done()
    return LivePolicy(
        stake_amount=stake,
        max_open_trades=max_open,
        stoploss=None if math.isnan(stoploss) else stoploss,
        dry_run_wallet=wallet,
        protections=Protections(max_drawdown=max_dd, stoploss_guard=guard),
    )


def _policy_path(path: Path | str | None) -> Path:
    if path is not None:
        return Path(path)
    env = os.environ.get(POLICY_ENV)
    return Path(env) if env else DEFAULT_POLICY_PATH


def load_policy(path: Path | str | None = None) -> Policy:
    """Read and validate a promotion policy.

    Parameters
    ----------
    path
        The TOML file (default: ``$TIERLINE_POLICY``, else ``promotion/policy.toml`` in the
        current directory).

    Returns
    -------
    Policy
        Frozen, typed; ``sha256`` is the hash of the file's bytes.

    Raises
    ------
    ConfigError
        If the file is missing or not TOML, or a key is unknown, missing, of the wrong type or
        out of range (the message names the file and the key).
    """
    file = _policy_path(path)
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise ConfigError(
            f"promotion policy {file}: cannot be read ({e.strerror or e}); name one with "
            f"--policy or ${POLICY_ENV}"
        ) from e
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{file}: not valid TOML: {e}") from e
    known = ("data", "tier1", "tier2", "tier3", "live")
    unknown = sorted(set(doc) - set(known))
    if unknown:
        raise ConfigError(
            f"{file}: [{unknown[0]}]: unknown section or key (known: {', '.join(known)})"
        )
    for name in known[1:]:
        if name not in doc:
            raise ConfigError(f"{file}: [{name}]: missing section")
    data = DataPolicy()
    if "data" in doc:
        ds = _Section(file, "data", doc["data"])
        data = DataPolicy(allow_synthetic=ds.boolean("allow_synthetic"))
        ds.done()
    return Policy(
        path=file,
        sha256=hashlib.sha256(raw).hexdigest(),
        data=data,
        tier1=_tier1(_Section(file, "tier1", doc["tier1"])),
        tier2=_tier2(_Section(file, "tier2", doc["tier2"])),
        tier3=_tier3(_Section(file, "tier3", doc["tier3"])),
        live=_live(file, doc["live"]),
    )
