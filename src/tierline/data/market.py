"""Symbols and timeframes: parsing and their on-disk spelling."""

from __future__ import annotations

import re

from tierline.errors import ConfigError

__all__ = [
    "normalize_symbol",
    "symbol_dirname",
    "symbol_from_dirname",
    "timeframe_ns",
    "timeframe_to_polars",
]

_TF_RE = re.compile(r"^(\d+)(s|m|h|d|w)$")
_UNIT_NS = {
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 7 * 86_400_000_000_000,
}
_SYMBOL_RE = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+(:[A-Z0-9]+)?$")


def timeframe_ns(timeframe: str) -> int:
    """Return the length of a timeframe such as ``5m`` or ``1h`` in nanoseconds.

    Parameters
    ----------
    timeframe
        ``<n><unit>`` with unit one of ``s, m, h, d, w``.

    Raises
    ------
    ConfigError
        If the timeframe is not of that form.
    """
    m = _TF_RE.match(timeframe)
    if not m or int(m.group(1)) == 0:
        raise ConfigError(
            f"timeframe {timeframe!r} is not valid: expected <n><unit> with unit s, m, h, d or w "
            "(e.g. 1m, 5m, 1h, 1d)"
        )
    return int(m.group(1)) * _UNIT_NS[m.group(2)]


def timeframe_to_polars(timeframe: str) -> str:
    """Return the polars duration string for a timeframe (``5m`` -> ``5m``, ``1h`` -> ``1h``)."""
    timeframe_ns(timeframe)
    return timeframe


def normalize_symbol(symbol: str) -> str:
    """Return a symbol in ccxt spelling (``BTC/USDT``, ``BTC/USDT:USDT``).

    ``BTC_USDT`` and ``btc/usdt`` are accepted too.

    Raises
    ------
    ConfigError
        If the symbol cannot be read as BASE/QUOTE[:SETTLE].
    """
    s = symbol.strip().upper()
    if "/" not in s and "_" in s:
        parts = s.split("_")
        s = f"{parts[0]}/{parts[1]}" + (f":{parts[2]}" if len(parts) == 3 else "")
    if not _SYMBOL_RE.match(s):
        raise ConfigError(
            f"symbol {symbol!r} is not valid: expected BASE/QUOTE (e.g. BTC/USDT) "
            "or BASE/QUOTE:SETTLE for a perpetual"
        )
    return s


def symbol_dirname(symbol: str) -> str:
    """Return the partition spelling of a symbol: ``BTC/USDT`` -> ``BTC_USDT``."""
    return normalize_symbol(symbol).replace("/", "_").replace(":", "_")


def symbol_from_dirname(name: str) -> str:
    """Return the ccxt spelling of a partition symbol: ``BTC_USDT`` -> ``BTC/USDT``."""
    return normalize_symbol(name)
