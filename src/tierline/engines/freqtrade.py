"""Tier 2 engine: freqtrade's own backtester, driven through a thin ``IStrategy`` shim.

`run` exports the catalog bars to a feather file freqtrade reads, writes a freqtrade config,
and runs freqtrade's ``Backtesting`` class in this process on the shim
``freqtrade/user_data/strategies/tierline_shim.py`` (class ``TierlineShim``), which calls the
tierline strategy's signal function unchanged in ``populate_entry_trend``. Freqtrade's trade
list is then normalised to the common trades table and the equity curve is rebuilt from the
trades and the bars. No freqtrade statistic is used.

How each convention of `tierline.core.conventions` is met:

- decide on bar t's close, fill at bar t+1's open: freqtrade shifts the signal columns one
  candle and fills at that candle's open (limit orders at the open always fill: it lies in
  [low, high]);
- fee ``config.fee`` on both legs: freqtrade's ``fee`` setting (its fee applies on both legs);
- one long position: ``max_open_trades = 1``, no position stacking or adjustment;
- stake: the shim's ``custom_stake_amount`` returns ``cash / (1 + fee)`` (or
  ``min(stake, cash) / (1 + fee)`` with a fixed stake), so freqtrade buys
  ``cash / (open * (1 + fee))`` like the reference (freqtrade adds the fee on top of the stake);
- no ROI (``minimal_roi = {"0": 100}``), no stop-loss (``stoploss = -1``), no trailing stop;
  exits only on the strategy's ``exit_long``;
- entry and exit signals on one bar: freqtrade enters only when ``exit_long`` is false and
  exits only when ``enter_long`` is false, so on such a bar it would do neither. In a backtest
  the position at every bar follows from the signals alone, so the shim keeps only the signal
  that acts there (`resolve_conflicts`: the exit in a position, the entry when flat). Live,
  the shim clears ``exit_long`` there and a ``custom_exit`` closes a position opened before
  that bar (not used in backtests: freqtrade deep-copies the trade on every call of an
  overridden ``custom_exit``, which tripled the run time);
- prices: entries and exits fill at the candle's open exactly as stored. The adapter's
  backtester gives freqtrade no price precision (see `_backtesting_class`): freqtrade would
  otherwise re-round exit prices through a decimal string of the tick, which moves a stored
  float that is not the nearest to its decimal value by one ulp, and an exit at an open equal
  to the candle's low then fails freqtrade's fill check and waits a candle;
- a position open after the last bar is closed at the last close and stamped last open +
  timeframe: freqtrade opens nothing on its final candle and force-exits at that candle's
  *open*, stamped with its open time. The exported data therefore ends with one flat candle
  (open = high = low = close = the last close, volume 0) one timeframe after the last bar. A
  signal on the second-to-last bar then fills at the last bar's open, a signal on the last bar
  (or the forced exit) at the last close, stamped last open + timeframe, exactly as the
  reference does. The flat candle never appears in the results.

Warm-up (``startup_candle_count``): freqtrade discards the signals of the first
``startup_candle_count`` candles (it trims them before shifting the signals) and starts its
backtest window after them. The contract's ``warmup`` counts the first bar that can signal
(sma_cross: ``slow + 1``), so the shim sets ``startup_candle_count = warmup - 1``: freqtrade
drops exactly the bars on which the strategy cannot signal, and the first bar that can signal
keeps its signal. With ``startup_candle_count = warmup`` a signal on that first bar (common
for rsi_reversion, whose level condition can hold on bar ``period``) would be lost.

Gaps: freqtrade fills missing candles with flat "no action" candles when it loads data; the
adapter loads without filling, so the signal function sees the same bars as every other
engine (the filling stays on in a hand-run ``freqtrade backtesting``, see below).

Offline markets: freqtrade loads the exchange's markets at start-up and has no offline mode.
The markets are generated from the instrument specs (`tierline.core.instruments`): a Binance
``GET /api/v3/exchangeInfo`` body (tick = ``PRICE_FILTER.tickSize``, lot =
``LOT_SIZE.stepSize``, ``NOTIONAL.minNotional``) that ccxt's own binance parser turns into
ccxt markets. Two routes feed them to ccxt:

- in this process (`run`): `offline_markets` wraps ccxt's ``load_markets`` on the binance
  classes so that it calls ``set_markets`` with those markets instead of fetching; ccxt's API
  URLs point at a closed port on 127.0.0.1 as well, so any other request fails locally;
- another process (a hand-run ``freqtrade backtesting``): `serve_exchange_info` answers
  ``/api/v3/exchangeInfo`` on 127.0.0.1 and `offline_ccxt_config` points ccxt at it (every
  binance API URL, spot markets only); `write_run_config` writes that into the config.

Freqtrade always runs as exchange ``binance``: the markets come from the spec, not from the
exchange, and fees from ``config.fee``. A catalog exchange freqtrade does not support
(``synthetic``, ``bittrex``: freqtrade dropped bittrex) therefore runs too; the notes say so.

What does not hold exactly (each is stated in the result's notes when it applies):

- freqtrade floors quantities to the lot (``size_increment``); the reference does not round,
  so up to one lot of each stake stays in cash (P&L differs by ~1e-8 relative on the
  workspace's 1e-8 lots);
- a minimum notional is enforced: freqtrade raises a stake below ``1.5 * min_notional`` to
  it, or skips the entry when that is more than 30 % more; the reference has no minimum (and
  after a skipped entry the shim's conflict resolution assumes a position freqtrade lacks);
- signals on the first ``warmup - 1`` bars (a strategy breaking its warm-up promise) are
  discarded by freqtrade and counted in the notes;
- freqtrade rounds a trade's ``profit_abs`` to 8 decimals of the quote currency: with a
  stake of ~1 BTC (the Bittrex alt/BTC tests) per-trade returns agree to ~1e-8, with 10,000
  USDT to ~1e-12.

A hand-run ``freqtrade backtesting`` on the shim (same config, `export_bars` data) also fills
gaps with flat candles, re-rounds exit prices (see above), and, on data exported without the
flat end candle, force-exits at the last candle's open stamped with its open time.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from tierline.core.conventions import ExecutionConfig
from tierline.core.result import TRADES_TABLE_SCHEMA, BacktestResult
from tierline.errors import ConfigError, DataError, EngineError, TierlineError
from tierline.strategy.contract import BAR_COLUMNS, format_params

if TYPE_CHECKING:
    import pandas as pd

    from tierline.core.instruments import InstrumentSpec
    from tierline.strategy.contract import Strategy

__all__ = [
    "FT_EXCHANGE",
    "SHIM_STRATEGY",
    "USERDIR_ENV",
    "ShimSettings",
    "ShimSignals",
    "ccxt_markets",
    "config_relative_path",
    "conflict_exit",
    "default_instrument",
    "exchange_info",
    "export_bars",
    "freqtrade_timeframe",
    "offline_ccxt_config",
    "offline_markets",
    "resolve_conflicts",
    "run",
    "serve_exchange_info",
    "shim_settings",
    "shim_signals",
    "shim_stake",
    "userdir",
    "write_run_config",
]

logger = logging.getLogger(__name__)

ENGINE = "freqtrade"
#: ccxt/freqtrade exchange every run uses (markets are generated, so any catalog exchange fits).
FT_EXCHANGE = "binance"
#: Class name of the shim in ``<userdir>/strategies/tierline_shim.py``.
SHIM_STRATEGY = "TierlineShim"
#: Environment variable naming the freqtrade user directory (default ``freqtrade/user_data``).
USERDIR_ENV = "TIERLINE_FREQTRADE_USERDIR"
#: Symbol used when `run` is given no instrument (freqtrade needs a pair and a stake currency).
DEFAULT_SYMBOL = "ASSET/QUOTE"
#: Where in-process runs point every ccxt API URL: a closed loopback port (fails at once).
_DEAD_URL = "http://127.0.0.1:9"
#: Freqtrade backtests keep global state (trades, locks, wallets): one run at a time.
_RUN_LOCK = threading.RLock()
#: Strategy objects pinned by `run` for the shim to pick up by name (under `_RUN_LOCK`).
_PINNED: dict[str, Strategy] = {}
_TIMEFRAME_UNITS = (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60))


# ---------------------------------------------------------------------- workspace
def userdir() -> Path:
    """Return the freqtrade user directory: ``$TIERLINE_FREQTRADE_USERDIR`` or
    ``freqtrade/user_data`` (relative to the working directory, like the rest of the
    workspace)."""
    return Path(os.environ.get(USERDIR_ENV, Path("freqtrade") / "user_data"))


def freqtrade_timeframe(seconds: int) -> str:
    """Return freqtrade's name of a bar length (300 -> ``5m``, 3600 -> ``1h``).

    Raises
    ------
    ConfigError
        If the length is not a whole number of minutes.
    """
    if seconds <= 0 or seconds % 60:
        raise ConfigError(
            f"freqtrade needs bars of whole minutes (1m or longer); these are {seconds} s apart"
        )
    for unit, size in _TIMEFRAME_UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def default_instrument(bars: pl.DataFrame) -> InstrumentSpec:
    """Return the spec `run` uses when given none: ``ASSET/QUOTE``, tick inferred from bars."""
    from tierline.core.instruments import InstrumentSpec, infer_tick

    return InstrumentSpec(
        exchange="synthetic",
        symbol=DEFAULT_SYMBOL,
        price_increment=infer_tick(bars),
        source="inferred",
    )


# ---------------------------------------------------------------------- markets
def exchange_info(specs: list[InstrumentSpec]) -> dict[str, Any]:
    """Return a Binance ``GET /api/v3/exchangeInfo`` body for spot ``specs``.

    Tick size, lot size, minimum quantity and minimum notional come from each spec; maxima are
    set far beyond any backtest (freqtrade caps stakes at them).

    Raises
    ------
    ConfigError
        If a spec is a perpetual (spot only here).
    """
    symbols = []
    for spec in specs:
        if spec.is_perpetual:
            raise ConfigError(
                f"{spec.symbol}: the freqtrade adapter backtests spot pairs only (no perpetuals)"
            )
        symbols.append(
            {
                "symbol": f"{spec.base}{spec.quote}",
                "status": "TRADING",
                "baseAsset": spec.base,
                "baseAssetPrecision": 8,
                "quoteAsset": spec.quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT"],
                "icebergAllowed": False,
                "ocoAllowed": False,
                "quoteOrderQtyMarketAllowed": True,
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": spec.price_increment,
                        "maxPrice": "1000000000000",
                        "tickSize": spec.price_increment,
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": _plain(spec.min_qty),
                        "maxQty": "1000000000000000",
                        "stepSize": spec.size_increment,
                    },
                    {
                        "filterType": "NOTIONAL",
                        "minNotional": _plain(spec.min_notional),
                        "applyMinToMarket": True,
                        "maxNotional": "1000000000000000",
                        "applyMaxToMarket": False,
                        "avgPriceMins": 5,
                    },
                ],
                "permissions": [],
                "permissionSets": [["SPOT"]],
            }
        )
    return {
        "timezone": "UTC",
        "serverTime": 0,
        "rateLimits": [],
        "exchangeFilters": [],
        "symbols": symbols,
    }


def _plain(x: float) -> str:
    return format(float(x), "f")


def ccxt_markets(specs: list[InstrumentSpec]) -> dict[str, dict[str, Any]]:
    """Return ccxt markets for ``specs``, parsed offline by ccxt's binance parser.

    Fee rates are set from each spec (``taker_fee``/``maker_fee``).

    Raises
    ------
    ConfigError
        If ccxt reads a symbol differently from the spec (a currency-code alias).
    """
    import ccxt

    api = ccxt.binance({"urls": {"api": dict.fromkeys(ccxt.binance().urls["api"], _DEAD_URL)}})
    # parse_market reads these two lists, which fetch_markets fills from margin endpoints.
    api.options["crossMarginPairsData"] = []
    api.options["isolatedMarginPairsData"] = []
    out: dict[str, dict[str, Any]] = {}
    for spec, market in zip(specs, api.parse_markets(exchange_info(specs)["symbols"]), strict=True):
        if market["symbol"] != spec.symbol:
            raise ConfigError(
                f"ccxt reads {spec.symbol} as {market['symbol']} (a currency alias); rename the "
                "instrument"
            )
        market["taker"] = spec.taker_fee
        market["maker"] = spec.maker_fee
        out[market["symbol"]] = market
    return out


@contextlib.contextmanager
def offline_markets(markets: Mapping[str, Mapping[str, Any]]) -> Iterator[None]:
    """Make ccxt's binance classes load ``markets`` instead of fetching them, while inside.

    ``load_markets`` (sync and async, so also ccxt.pro) is wrapped on the binance classes only:
    it calls ``set_markets`` with a copy of ``markets`` and returns them; nothing is fetched.
    """
    import ccxt
    import ccxt.async_support

    def load_sync(self: Any, reload: bool = False, params: Any = None) -> Any:
        if self.markets and not reload:
            return self.markets
        return self.set_markets(copy.deepcopy(dict(markets)))

    async def load_async(self: Any, reload: bool = False, params: Any = None) -> Any:
        return load_sync(self, reload, params)

    classes = ((ccxt.binance, load_sync), (ccxt.async_support.binance, load_async))
    for cls, fn in classes:
        if "load_markets" in cls.__dict__:
            raise EngineError(f"{cls.__module__}.binance defines load_markets already")
        cls.load_markets = fn  # type: ignore[method-assign]
    try:
        yield
    finally:
        for cls, _ in classes:
            with contextlib.suppress(AttributeError):
                delattr(cls, "load_markets")


def offline_ccxt_config(api_url: str = _DEAD_URL) -> dict[str, Any]:
    """Return ccxt settings that send every binance request to ``api_url`` (spot markets only).

    With `serve_exchange_info`'s URL, ``load_markets`` reads the generated exchangeInfo from
    127.0.0.1; with the default (a closed loopback port) every request fails locally.
    """
    import ccxt

    base = api_url.rstrip("/")
    urls = {
        key: (f"{base}/api/v3" if key == "public" else f"{base}/{key}")
        for key in ccxt.binance().urls["api"]
    }
    return {
        "urls": {"api": urls},
        "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False},
    }


@contextlib.contextmanager
def serve_exchange_info(specs: list[InstrumentSpec]) -> Iterator[str]:
    """Serve the generated exchangeInfo on 127.0.0.1 (a free port) while inside; yield its URL.

    ``GET /api/v3/exchangeInfo`` returns `exchange_info` of ``specs``, ``/api/v3/ping`` and
    ``/api/v3/time`` answer as Binance does; anything else is a 404. For freqtrade run in
    another process: put ``offline_ccxt_config(url)`` into its ``exchange.ccxt_config`` and
    ``ccxt_async_config`` (`write_run_config` does).
    """
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = json.dumps(exchange_info(specs)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/api/v3/exchangeInfo":
                payload = body
            elif path == "/api/v3/ping":
                payload = b"{}"
            elif path == "/api/v3/time":
                payload = b'{"serverTime": 0}'
            else:
                self.send_error(404, "not served offline")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("exchangeInfo server: " + format, *args)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="tierline-exchangeinfo")
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------- data and config
def export_bars(
    bars: pl.DataFrame,
    pair: str,
    timeframe: str,
    datadir: Path,
    *,
    pad: bool = True,
) -> Path:
    """Write catalog bars as freqtrade's feather file ``<datadir>/<PAIR>-<tf>.feather``.

    Parameters
    ----------
    bars
        Catalog OHLCV bars (``ts`` = bar open, UTC).
    pair
        ccxt pair (``BTC/USDT``).
    timeframe
        Freqtrade timeframe (``5m``).
    datadir
        Freqtrade data directory (created if missing).
    pad
        Append one flat candle one timeframe after the last bar (see the module docstring).

    Returns
    -------
    pathlib.Path
        The file written (by freqtrade's own feather data handler).
    """
    from freqtrade.data.history import get_datahandler
    from freqtrade.enums import CandleType

    frame = _pandas_bars(bars, timeframe, pad=pad)
    Path(datadir).mkdir(parents=True, exist_ok=True)
    handler = get_datahandler(Path(datadir), "feather")
    handler.ohlcv_store(pair, timeframe, data=frame, candle_type=CandleType.SPOT)
    return Path(handler._pair_data_filename(datadir, pair, timeframe, CandleType.SPOT))


def _pandas_bars(bars: pl.DataFrame, timeframe: str, *, pad: bool) -> pd.DataFrame:
    from tierline.data.market import timeframe_ns

    df = bars.select(
        pl.col("ts").cast(pl.Datetime("ns", "UTC")).alias("date"),
        *(pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume")),
    )
    if pad:
        last = df.row(-1, named=True)
        close = last["close"]
        extra = pl.DataFrame(
            {
                "date": [last["date"]],
                "open": [close],
                "high": [close],
                "low": [close],
                "close": [close],
                "volume": [0.0],
            },
            schema=df.schema,
        ).with_columns(pl.col("date") + pl.duration(nanoseconds=timeframe_ns(timeframe)))
        df = pl.concat([df, extra])
    return df.to_pandas()


def write_run_config(
    path: Path,
    *,
    strategy: str,
    params: Mapping[str, Any],
    config: ExecutionConfig,
    pair: str,
    timeframe: str,
    api_url: str = _DEAD_URL,
    stake_currency: str | None = None,
) -> Path:
    """Write the run-specific freqtrade config layered over ``<userdir>/config.json``.

    Pass both files to freqtrade, the template first (``-c config.json -c <path>``); this one
    sets the tierline strategy and parameters (section ``tierline``), fee, wallet, stake,
    timeframe, pair and the offline ccxt settings (`offline_ccxt_config` of ``api_url``).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    ccxt_conf = offline_ccxt_config(api_url)
    doc = {
        "strategy": SHIM_STRATEGY,
        "tierline": {
            "strategy": strategy,
            "params": dict(params),
            "stake": config.stake,
        },
        "max_open_trades": 1,
        "stake_currency": stake_currency or pair.split("/")[1].split(":")[0],
        "stake_amount": "unlimited",
        "tradable_balance_ratio": 1.0,
        "dry_run_wallet": config.initial_cash,
        "fee": config.fee,
        "timeframe": timeframe,
        "trading_mode": "spot",
        "margin_mode": "",
        "exchange": {
            "name": FT_EXCHANGE,
            "pair_whitelist": [pair],
            "pair_blacklist": [],
            "ccxt_config": ccxt_conf,
            "ccxt_async_config": ccxt_conf,
        },
        "pairlists": [{"method": "StaticPairList"}],
        "dataformat_ohlcv": "feather",
        "export": "none",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------- the shim's logic
@dataclass(frozen=True, kw_only=True)
class ShimSettings:
    """What the shim runs: the strategy, its checked parameters and the stake rule.

    Attributes
    ----------
    strategy
        The tierline strategy.
    params
        Parameters, defaults filled in and checked.
    stake
        Fixed quote stake per trade, or None for all available equity.
    startup_candles
        ``warmup - 1``: freqtrade's ``startup_candle_count`` (see the module docstring).
    """

    strategy: Strategy
    params: dict[str, Any]
    stake: float | None
    startup_candles: int


@dataclass(frozen=True, kw_only=True)
class ShimSignals:
    """Signal columns for freqtrade, resolved so that freqtrade follows the conventions.

    Attributes
    ----------
    enter_long, exit_long
        0/1 columns for freqtrade, never both 1 on one bar (freqtrade would act on neither).
    conflicts
        Bars on which the strategy set both signals.
    conflict_fills
        Open times (epoch s) of the candles after those bars; live, `conflict_exit` closes a
        position opened before such a candle (empty unless ``live``).
    early_signals
        Signals on the first ``startup_candles`` bars, which freqtrade discards (0 for a
        strategy that honours its warm-up).
    """

    enter_long: np.ndarray
    exit_long: np.ndarray
    conflicts: int
    conflict_fills: frozenset[int]
    early_signals: int


def shim_settings(ft_config: Mapping[str, Any]) -> ShimSettings:
    """Resolve the strategy, parameters and stake the shim runs from a freqtrade config.

    The config's ``tierline`` section names them: ``strategy`` (a name the strategy registry
    knows, or one `run` pinned), ``params`` (a mapping, defaults filled in), ``stake`` (fixed
    quote stake or null), optionally ``strategies_dir`` (user strategies folder) and
    ``registry`` (path of a ``registry/<strategy>.json`` record whose ``strategy`` and
    ``params`` are used; keys in the section win over the record's). A relative ``registry``
    or ``strategies_dir`` is resolved against the folder of each config file freqtrade loaded
    (``config_files``), the first that exists winning, else against the working directory: a
    config in ``freqtrade/user_data`` names ``../../registry/x.json`` and works from anywhere.

    Parameters
    ----------
    ft_config
        The freqtrade config as freqtrade resolved it (all ``--config`` files merged).

    Returns
    -------
    ShimSettings
        The strategy, its checked parameters, the stake rule and the startup candles.

    Raises
    ------
    ConfigError
        If the section is missing, the registry record cannot be read, the strategy is
        unknown, or the parameters or stake are invalid.
    """
    from tierline.strategy.registry import get_strategy

    section = dict(ft_config.get("tierline") or {})
    if section.get("registry"):
        record_path = config_relative_path(section["registry"], ft_config)
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"tierline.registry {record_path}: cannot be read ({e})") from e
        section = {
            "strategy": record.get("strategy"),
            "params": record.get("params", {}),
            **{k: v for k, v in section.items() if k != "registry"},
        }
    name = section.get("strategy")
    if not name:
        raise ConfigError(
            "the freqtrade config has no tierline.strategy: add a section such as "
            '"tierline": {"strategy": "sma_cross", "params": {"fast": 10, "slow": 50}}'
        )
    strategy = _PINNED.get(name)
    if strategy is None:
        folder = section.get("strategies_dir")
        strategy = get_strategy(name, config_relative_path(folder, ft_config) if folder else None)
    params = strategy.validate_params(section.get("params") or {})
    stake = section.get("stake")
    if stake is not None:
        stake = float(stake)
        if not stake > 0:
            raise ConfigError(f"tierline.stake {stake!r} must be > 0 or null (all equity)")
    return ShimSettings(
        strategy=strategy,
        params=params,
        stake=stake,
        startup_candles=max(strategy.warmup(params) - 1, 0),
    )


def config_relative_path(value: str | Path, ft_config: Mapping[str, Any]) -> Path:
    """Return a path named in a freqtrade config, resolving a relative one.

    An absolute path is returned as is; a relative one is tried against the folder of each
    file in ``ft_config["config_files"]`` (what freqtrade loaded), the first that exists
    winning, and is otherwise left relative to the working directory.

    Parameters
    ----------
    value
        The path as written in the config (``~`` expanded).
    ft_config
        The freqtrade config (its ``config_files``).

    Returns
    -------
    pathlib.Path
        The resolved path (which may not exist).
    """
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    for name in ft_config.get("config_files") or ():
        if name == "-":
            continue
        candidate = Path(name).resolve().parent / path
        if candidate.exists():
            return candidate
    return path


def shim_signals(
    dataframe: pd.DataFrame, settings: ShimSettings, timeframe_secs: int, *, live: bool = False
) -> ShimSignals:
    """Run the strategy's signal function on freqtrade's dataframe (see `ShimSignals`).

    Freqtrade enters only when ``exit_long`` is false and exits only when ``enter_long`` is
    false; the conventions let the exit win in a position and the entry win when flat. In a
    backtest the position at each bar follows from the signals alone, so on a bar with both
    signals the shim keeps the one that acts (`resolve_conflicts`). Live, the bot's position
    is the truth: ``exit_long`` is cleared there and `conflict_exit` does the exit.

    Raises
    ------
    EngineError
        If the signal function fails or returns a malformed frame.
    """
    frame = dataframe.loc[:, list(BAR_COLUMNS)]
    sig = settings.strategy.signals(frame, settings.params)
    enter, exit_ = sig.enter_long, sig.exit_long
    both = enter & exit_
    n_both = int(both.sum())
    fills: frozenset[int] = frozenset()
    if n_both and live:
        opens = dataframe["date"].to_numpy(dtype="datetime64[s]").astype(np.int64)
        nxt = np.empty_like(opens)
        nxt[:-1] = opens[1:]
        nxt[-1] = opens[-1] + timeframe_secs
        fills = frozenset(int(v) for v in nxt[both])
        exit_ = exit_ & ~enter
    elif n_both:
        enter, exit_ = resolve_conflicts(enter, exit_)
    k = settings.startup_candles
    return ShimSignals(
        enter_long=enter.astype(np.int8),
        exit_long=exit_.astype(np.int8),
        conflicts=n_both,
        conflict_fills=fills,
        early_signals=int(sig.enter_long[:k].sum() + sig.exit_long[:k].sum()),
    )


def resolve_conflicts(enter: np.ndarray, exit_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return signals with, on each bar where both are set, only the one that acts.

    Walks the position the conventions imply (flat at the start; an entry decided at t holds
    from t+1, an exit decided at t flattens from t+1): on a bar with both signals the exit is
    kept in a position and the entry when flat. Other bars are unchanged.
    """
    enter = np.asarray(enter, dtype=bool).copy()
    exit_ = np.asarray(exit_, dtype=bool).copy()
    both = np.flatnonzero(enter & exit_)
    in_position = False
    t0 = 0
    for b in both.tolist():
        in_position = _walk(enter, exit_, t0, b, in_position)
        if in_position:
            enter[b] = False
        else:
            exit_[b] = False
        t0 = b
    return enter, exit_


def _walk(enter: np.ndarray, exit_: np.ndarray, start: int, stop: int, in_position: bool) -> bool:
    """Return the position at bar ``stop``'s close, before its signals act, from ``start``."""
    t = start
    while t < stop:
        if in_position:
            hits = np.flatnonzero(exit_[t:stop])
        else:
            hits = np.flatnonzero(enter[t:stop])
        if not len(hits):
            return in_position
        t += int(hits[0]) + 1
        in_position = not in_position
    return in_position


def conflict_exit(
    fills: frozenset[int], timeframe_secs: int, current_time: datetime, opened: datetime
) -> str | None:
    """Return ``"exit_signal"`` when a live position must exit on a bar with both signals.

    ``current_time`` falls in the candle after the signal bar; the position must have been
    opened before that candle (a position opened on that bar's entry stays).
    """
    fill = int(current_time.timestamp()) // timeframe_secs * timeframe_secs
    if fill in fills and opened.timestamp() < fill:
        return "exit_signal"
    return None


def shim_stake(settings: ShimSettings, available: float, fee: float | None) -> float:
    """Return the stake freqtrade should use so that its quantity is the reference's.

    Freqtrade buys ``stake / open`` and charges the fee on top; the conventions spend
    ``stake`` including the fee, so the shim passes ``stake / (1 + fee)``, with ``stake`` the
    available equity (or ``min(fixed stake, available)``).
    """
    stake = available if settings.stake is None else min(settings.stake, available)
    return stake / (1.0 + fee) if fee else stake


# ---------------------------------------------------------------------- the run
def run(
    strategy: Strategy,
    bars: pl.DataFrame,
    params: Mapping[str, Any] | None,
    config: ExecutionConfig,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    instrument: InstrumentSpec | None = None,
    workdir: Path | None = None,
) -> BacktestResult:
    """Backtest one strategy and parameter set with freqtrade's backtester.

    Parameters
    ----------
    strategy
        The strategy; the shim calls its signal function.
    bars
        Catalog OHLCV bars, ``ts`` = bar open (UTC), sorted.
    params
        Parameters (defaults filled in and checked against the strategy's space).
    config
        Execution conventions.
    exchange, symbol
        The market the bars come from; its tick, lot and minimums come from
        ``nautilus/venues.toml`` or are inferred from the bars
        (`tierline.core.instruments.instrument_for`). When either is None (and no
        ``instrument``), the pair is ``ASSET/QUOTE`` with the tick inferred from the bars.
    instrument
        The instrument spec itself (wins over ``exchange``/``symbol``).
    workdir
        Keep freqtrade's data and config here (for inspection); default a temporary folder in
        ``<userdir>/data`` removed after the run.

    Returns
    -------
    BacktestResult
        ``engine="freqtrade"``; trades table, per-bar equity, notes on what differs.

    Raises
    ------
    ConfigError
        If the parameters are invalid, the bars are not whole minutes apart, the instrument is
        a perpetual, or the freqtrade user directory (with the shim) is missing.
    DataError
        If there are fewer than two bars.
    EngineError
        If freqtrade or the strategy fails; the message names the strategy and parameters.
    """
    p = strategy.validate_params(params)
    if len(bars) < 2:
        raise DataError(f"freqtrade adapter: {strategy.name!r} needs at least two bars")
    if instrument is not None:
        spec = instrument
    elif exchange is not None and symbol is not None:
        from tierline.core.instruments import instrument_for

        spec = instrument_for(exchange, symbol, bars)
    else:
        spec = default_instrument(bars)
    ts_ns = bars["ts"].cast(pl.Datetime("ns", "UTC")).dt.epoch("ns").to_numpy()
    tf_ns = int(np.median(np.diff(ts_ns)))
    timeframe = freqtrade_timeframe(tf_ns // 1_000_000_000 if tf_ns % 1_000_000_000 == 0 else 0)
    udir = userdir()
    if not (udir / "strategies" / "tierline_shim.py").exists():
        raise ConfigError(
            f"no freqtrade shim at {udir / 'strategies' / 'tierline_shim.py'}: run from the "
            f"project root or set {USERDIR_ENV} to the freqtrade user directory"
        )
    if strategy.warmup(p) > len(bars):
        # No bar can carry a signal; freqtrade would refuse to start ("No data left after
        # adjusting for startup candles") where the reference simply trades nothing.
        return BacktestResult(
            engine=ENGINE,
            trades=pl.DataFrame(schema=TRADES_TABLE_SCHEMA),
            equity=_equity_curve(bars, pl.DataFrame(schema=TRADES_TABLE_SCHEMA), config),
            notes=(
                f"{len(bars)} bars are fewer than the warm-up ({strategy.warmup(p)}): no signal "
                "is possible, freqtrade was not started",
            ),
            extra={"params": p, "warmup": strategy.warmup(p), "pair": spec.symbol},
        )
    what = f"{strategy.name!r} ({format_params(p)})"
    with _RUN_LOCK, contextlib.ExitStack() as stack:
        if workdir is None:
            (udir / "data").mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix="tierline-run-", dir=udir / "data"))
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        else:
            work = Path(workdir)
            work.mkdir(parents=True, exist_ok=True)
        _PINNED[strategy.name] = strategy
        stack.callback(_PINNED.pop, strategy.name, None)
        # A thread of its own: freqtrade drives an asyncio loop with run_until_complete, which
        # fails in a thread that already runs one (a Jupyter kernel, an async caller).
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierline-freqtrade")
        stack.callback(pool.shutdown)
        try:
            outcome = pool.submit(
                _backtest, strategy.name, p, bars, config, spec, timeframe, udir, work
            ).result()
        except TierlineError:
            raise
        except Exception as e:
            raise EngineError(f"freqtrade failed for {what}: {type(e).__name__}: {e}") from e
    trades = _normalise_trades(outcome["results"], config.fee)
    equity = _equity_curve(bars, trades, config)
    notes = _notes(spec, outcome)
    return BacktestResult(
        engine=ENGINE,
        trades=trades,
        equity=equity,
        notes=tuple(notes),
        extra={
            "params": p,
            "warmup": strategy.warmup(p),
            "startup_candle_count": outcome["startup"],
            "pair": spec.symbol,
            "timeframe": timeframe,
            "freqtrade_exchange": FT_EXCHANGE,
            "exit_reasons": outcome["results"]["exit_reason"].value_counts().to_dict(),
            "same_bar_signals": outcome["conflicts"],
        },
    )


def _backtest(
    name: str,
    params: dict[str, Any],
    bars: pl.DataFrame,
    config: ExecutionConfig,
    spec: InstrumentSpec,
    timeframe: str,
    udir: Path,
    work: Path,
) -> dict[str, Any]:
    """Run freqtrade's Backtesting in this process; return its results and diagnostics."""
    datadir = work / "data"
    export_bars(bars, spec.symbol, timeframe, datadir)
    run_conf = write_run_config(
        work / "config.run.json",
        strategy=name,
        params=params,
        config=config,
        pair=spec.symbol,
        timeframe=timeframe,
        stake_currency=spec.quote,
    )
    markets = ccxt_markets([spec])
    with _quiet_freqtrade(), offline_markets(markets):
        ft_config = _freqtrade_config([udir / "config.json", run_conf], udir, datadir)
        bt = _backtesting_class()(ft_config)
        try:
            data, timerange = bt.load_bt_data()
            shim = bt.strategylist[0]
            bt.backtest_one_strategy(shim, data, timerange)
            content = bt.all_bt_content[shim.get_strategy_name()]
            return {
                "results": content["results"],
                "startup": int(bt.required_startup),
                "early_signals": int(sum(getattr(shim, "tierline_early_signals", {}).values())),
                "conflicts": int(sum(getattr(shim, "tierline_conflicts", {}).values())),
            }
        finally:
            bt.cleanup()
            bt.exchange.close()
            asyncio.set_event_loop(None)


def _freqtrade_config(files: list[Path], udir: Path, datadir: Path) -> dict[str, Any]:
    """Load the config the way ``freqtrade backtesting`` does, without touching logging."""
    from unittest import mock

    from freqtrade.configuration import Configuration
    from freqtrade.enums import RunMode

    args = {
        "config": [str(f) for f in files],
        "user_data_dir": str(udir),
        "datadir": str(datadir),
        "command": "backtesting",
        "export": "none",
    }
    # Configuration calls logging.config.dictConfig, which would reset the host's logging.
    with mock.patch("freqtrade.configuration.configuration.setup_logging"):
        return Configuration(args, RunMode.BACKTEST).get_config()


def _backtesting_class() -> type:
    """Return freqtrade's Backtesting, loading data without filling gaps and keeping the
    candles' prices as they are (see the module docstring)."""
    import functools

    from freqtrade.data import history
    from freqtrade.optimize.backtesting import Backtesting

    class TierlineBacktesting(Backtesting):  # type: ignore[misc]
        def load_bt_data(self) -> Any:
            original = history.load_data
            history.load_data = functools.partial(original, fill_up_missing=False)
            try:
                return super().load_bt_data()
            finally:
                history.load_data = original

        def get_pair_precision(self, pair: str, current_time: Any) -> tuple[None, int]:
            # No price precision: freqtrade then fills at the candle's price unchanged. With
            # one, it rounds exits through a decimal string of the tick, which moves a price
            # that is not the float nearest its decimal value by one ulp; an exit at an open
            # equal to the candle's low then fails the low <= price <= high fill check and
            # waits a candle (324 of 5,760 Bittrex XLM/BTC 5m candles).
            return None, int(self.precision_mode_price)

    return TierlineBacktesting


@contextlib.contextmanager
def _quiet_freqtrade() -> Iterator[None]:
    """Raise freqtrade's loggers to ERROR while inside (its INFO chatter is per run)."""
    log = logging.getLogger("freqtrade")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


# ---------------------------------------------------------------------- normalisation
def _normalise_trades(results: pd.DataFrame, fee: float) -> pl.DataFrame:
    """Return freqtrade's trade list as the common trades table."""
    if results is None or len(results) == 0:
        return pl.DataFrame(schema=TRADES_TABLE_SCHEMA)
    qty = results["amount"].to_numpy(dtype=np.float64)
    entry = results["open_rate"].to_numpy(dtype=np.float64)
    exit_ = results["close_rate"].to_numpy(dtype=np.float64)
    fee_open = results["fee_open"].to_numpy(dtype=np.float64)
    fee_close = results["fee_close"].to_numpy(dtype=np.float64)
    df = pl.DataFrame(
        {
            "entry_ts": _to_ns(results["open_date"]),
            "exit_ts": _to_ns(results["close_date"]),
            "entry_price": entry,
            "exit_price": exit_,
            "qty": qty,
            "fees": qty * entry * fee_open + qty * exit_ * fee_close,
            "pnl": results["profit_abs"].to_numpy(dtype=np.float64),
            "return": results["profit_ratio"].to_numpy(dtype=np.float64),
        }
    ).with_columns(pl.col("entry_ts", "exit_ts").cast(pl.Datetime("ns", "UTC")))
    return df.select(pl.col(c).cast(d) for c, d in TRADES_TABLE_SCHEMA.items()).sort("entry_ts")


def _to_ns(col: pd.Series) -> np.ndarray:
    import pandas as pd

    return np.asarray(pd.to_datetime(col, utc=True).astype("int64"), dtype=np.int64)


def _equity_curve(
    bars: pl.DataFrame, trades: pl.DataFrame, config: ExecutionConfig
) -> pl.DataFrame:
    """Rebuild equity marked at each bar's close from the trades (the reference's bookkeeping).

    Cash falls by ``qty * entry * (1 + fee)`` at an entry and rises by
    ``qty * exit * (1 - fee)`` at an exit; in a position equity is ``cash + qty * close``. A
    trade whose exit comes after the last bar's open (the forced exit) is closed at the last
    bar, so the last equity value is cash, fee paid.
    """
    ts = bars["ts"].cast(pl.Datetime("ns", "UTC")).dt.epoch("ns").to_numpy()
    close = bars["close"].cast(pl.Float64).to_numpy()
    n = len(ts)
    fee = config.fee
    equity = np.empty(n, dtype=np.float64)
    cash = float(config.initial_cash)
    t = 0
    entry_ts = trades["entry_ts"].dt.epoch("ns").to_numpy()
    exit_ts = trades["exit_ts"].dt.epoch("ns").to_numpy()
    for k in range(len(trades)):
        i = int(np.searchsorted(ts, entry_ts[k], side="left"))
        j = int(np.searchsorted(ts, exit_ts[k], side="left"))
        qty = float(trades["qty"][k])
        equity[t:i] = cash
        cash_in = cash - qty * float(trades["entry_price"][k]) * (1.0 + fee)
        proceeds = qty * float(trades["exit_price"][k]) * (1.0 - fee)
        held_to = min(j, n)
        equity[i:held_to] = cash_in + qty * close[i:held_to]
        cash = cash_in + proceeds
        if j >= n:  # forced exit after the last bar's open: closed at the last close
            equity[n - 1] = cash
        t = held_to if j < n else n
    equity[t:] = cash
    return pl.DataFrame({"ts": bars["ts"].cast(pl.Datetime("ns", "UTC")), "equity": equity})


def _notes(spec: InstrumentSpec, outcome: Mapping[str, Any]) -> list[str]:
    notes = []
    if spec.symbol == DEFAULT_SYMBOL:
        notes.append(
            f"no instrument given: traded as {DEFAULT_SYMBOL} on freqtrade exchange "
            f"{FT_EXCHANGE!r} with the tick inferred from the bars ({spec.price_increment}) and "
            f"lot {spec.size_increment}"
        )
    elif spec.exchange != FT_EXCHANGE:
        notes.append(
            f"freqtrade ran as exchange {FT_EXCHANGE!r} with markets generated from the "
            f"{spec.exchange} {spec.symbol} instrument spec (tick {spec.price_increment}, lot "
            f"{spec.size_increment}); freqtrade does not support {spec.exchange!r}"
        )
    notes.append(
        f"quantities are floored to the lot {spec.size_increment} by freqtrade (the reference "
        "does not round): up to one lot of each stake stays in cash"
    )
    if spec.min_notional > 0:
        notes.append(
            f"freqtrade raises a stake below {1.5 * spec.min_notional:g} {spec.quote} to that "
            f"minimum (min notional {spec.min_notional:g} plus its 50 % stop-loss reserve) or, "
            "if it is more than 30 % short, skips the entry; the reference has no minimum"
        )
    if outcome.get("early_signals"):
        notes.append(
            f"{outcome['early_signals']} signal(s) fell on the first {outcome['startup']} bars "
            "(before the strategy's warm-up ends): freqtrade discards them, the reference does not"
        )
    return notes
