"""Instrument specifications (tick, lot, minimums, fees) shared by every engine adapter.

Read from the workspace venue configuration ``nautilus/venues.toml`` (or
``$TIERLINE_VENUES``); a symbol not configured there gets a spec inferred from its bars (tick =
the finest price step the data shows). No network: exchange metadata is never fetched here.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierline.data.market import normalize_symbol
from tierline.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

__all__ = ["VENUES_ENV", "InstrumentSpec", "instrument_for", "load_venues"]

VENUES_ENV = "TIERLINE_VENUES"


@dataclass(frozen=True, kw_only=True)
class InstrumentSpec:
    """One tradable instrument as every engine must see it.

    Attributes
    ----------
    exchange, symbol
        Catalog exchange and ccxt symbol (``BTC/USDT``, ``BTC/USDT:USDT`` for a perpetual).
    price_increment, size_increment
        Tick size and lot size, as decimal strings (exact).
    min_qty, min_notional
        Exchange minimums (0 = none).
    maker_fee, taker_fee
        Fee rates; the execution conventions charge ``taker_fee``-style fees via
        ``ExecutionConfig.fee`` in every engine, these are the venue's nominal rates.
    source
        ``venues.toml`` or ``inferred``.
    """

    exchange: str
    symbol: str
    price_increment: str
    size_increment: str = "0.00000001"
    min_qty: float = 0.0
    min_notional: float = 0.0
    maker_fee: float = 0.001
    taker_fee: float = 0.001
    source: str = "venues.toml"

    @property
    def base(self) -> str:
        """Return the base currency."""
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        """Return the quote currency."""
        return self.symbol.split("/")[1].split(":")[0]

    @property
    def is_perpetual(self) -> bool:
        """Return whether the symbol is a perpetual swap (``BASE/QUOTE:SETTLE``)."""
        return ":" in self.symbol

    @property
    def price_precision(self) -> int:
        """Return the number of decimals of the tick."""
        return _decimals(self.price_increment)

    @property
    def size_precision(self) -> int:
        """Return the number of decimals of the lot."""
        return _decimals(self.size_increment)

    @property
    def tick(self) -> float:
        """Return the tick size as a float."""
        return float(self.price_increment)


def _decimals(text: str) -> int:
    exp = Decimal(text).normalize().as_tuple().exponent
    return max(0, -int(exp))


def venues_path() -> Path:
    """Return the venue configuration path (``$TIERLINE_VENUES`` or ``nautilus/venues.toml``)."""
    return Path(os.environ.get(VENUES_ENV, Path("nautilus") / "venues.toml"))


def load_venues(path: Path | None = None) -> dict[tuple[str, str], InstrumentSpec]:
    """Load ``[[instrument]]`` tables from the venue file; empty when the file is absent.

    Raises
    ------
    ConfigError
        If the file is not valid TOML or an entry has unknown or missing fields.
    """
    path = path or venues_path()
    if not path.exists():
        return {}
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e
    out: dict[tuple[str, str], InstrumentSpec] = {}
    fields = set(InstrumentSpec.__dataclass_fields__) - {"source"}
    for i, entry in enumerate(doc.get("instrument", [])):
        unknown = set(entry) - fields
        if unknown:
            raise ConfigError(f"{path}: instrument #{i + 1} has unknown field(s) {sorted(unknown)}")
        try:
            spec = InstrumentSpec(
                **{**_typed(entry), "symbol": normalize_symbol(entry["symbol"])},
                source=str(path),
            )
            Decimal(spec.price_increment)
            Decimal(spec.size_increment)
        except (KeyError, TypeError, ArithmeticError) as e:
            raise ConfigError(f"{path}: instrument #{i + 1} is invalid ({e})") from e
        out[(spec.exchange.lower(), spec.symbol)] = spec
    return out


def _typed(entry: dict[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    for k in ("price_increment", "size_increment"):
        if k in out:
            out[k] = str(out[k])
    return out


def instrument_for(
    exchange: str, symbol: str, bars: pl.DataFrame | None = None, path: Path | None = None
) -> InstrumentSpec:
    """Return the spec of ``exchange``/``symbol``: configured, else inferred from ``bars``.

    Raises
    ------
    ConfigError
        If the instrument is not configured and no bars are given to infer it from.
    """
    symbol = normalize_symbol(symbol)
    venues = load_venues(path)
    spec = venues.get((exchange.lower(), symbol))
    if spec is not None:
        return spec
    if bars is None:
        raise ConfigError(
            f"no instrument {exchange} {symbol} in {path or venues_path()} and no bars to infer "
            "its tick size from"
        )
    return InstrumentSpec(
        exchange=exchange.lower(),
        symbol=symbol,
        price_increment=infer_tick(bars),
        source="inferred",
    )


def infer_tick(bars: pl.DataFrame) -> str:
    """Return the finest decimal tick the bar prices need (at most 10 decimals)."""
    import numpy as np

    prices = np.unique(
        np.concatenate([bars[c].to_numpy() for c in ("open", "high", "low", "close")])
    )[:5000]
    for d in range(0, 11):
        scaled = prices * 10**d
        if np.all(
            np.abs(scaled - np.round(scaled)) < 1e-6 * np.maximum(1.0, np.abs(scaled)) * 1e-3
        ):
            return format(Decimal(1).scaleb(-d), "f")
    return "0.0000000001"
