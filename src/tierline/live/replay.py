"""A local exchange replay: Binance's public spot REST API answered from the Parquet catalog.

`ReplayServer` serves, on 127.0.0.1, the endpoints ccxt and freqtrade's dry-run call:
``/api/v3/ping``, ``/time``, ``/exchangeInfo``, ``/klines``, ``/ticker/24hr`` (and the rolling
``/ticker``), ``/ticker/price``, ``/ticker/bookTicker``, ``/depth`` and ``/avgPrice``. Any
other path is logged and answered ``404 {"code": -5000, "msg": ...}``, which ccxt raises as an
``ExchangeError``. Two endpoints of its own: ``/tierline/status`` (JSON: the replay clock and
catalog span) and ``/metrics`` (Prometheus text format).

The replay clock
    The catalog bar ``start`` (``--from``) is re-stamped to the candle containing "now" when
    the server starts: every served time is ``catalog time + shift`` with ``shift`` a whole
    number of timeframes, and the replay cursor (the catalog time the server is "at") advances
    with the wall clock, ``speed`` times faster if asked. A candle is served once it has
    opened; it is served complete once it has closed, and while it forms as Binance does, but
    flat at its open (open = high = low = close, volume 0), because bars do not say how the
    price moved inside them. Freqtrade drops that forming candle anyway.

    Freqtrade decides candle closes on the system clock (it refreshes a pair's candles when
    the wall clock passes the last candle's close), so it follows the replay only at speed 1;
    a faster replay runs ahead of its clock and it stops refreshing. Other ccxt clients
    (``tierline data ingest --api-url``, notebooks) may use any speed.

Prices
    While a candle forms, the replayed price (ticker ``last``, ``bid``, ``ask``) is that
    candle's open: the price tiers 1 and 2 fill at (decide at bar t's close, fill at bar
    t+1's open). With no L2 data for the moment, the book is synthesised around that price
    with zero spread (best bid = best ask = the price, with size for any stake; then one tick
    per level, each level the last closed bar's volume). That is the conventions'
    idealisation, made so that a freqtrade dry-run order fills at the bar's open whichever
    side its pricing uses: freqtrade's dry-run fills a buy limit at its own price once the
    best ask is at or below it, and a market order by walking the book. When the catalog
    holds ``book/`` rows for the moment, the book served is the real one
    rebuilt from them (snapshots and diffs up to the cursor, by ``ts_local``) and the ticker's
    bid and ask are its best levels: fills then pay the real spread.

Exchanges
    The API is always Binance spot's, whatever catalog exchange is replayed (``synthetic``,
    ``bittrex``, ...): the symbol id is ``BASE+QUOTE`` (``BTCUSDT``) and the markets come from
    the instrument spec (``nautilus/venues.toml`` or inferred from the bars) through the same
    exchangeInfo builder the freqtrade engine uses offline
    (`tierline.engines.freqtrade.exchange_info`). Point ccxt's ``binance`` at the server with
    `ccxt_config`.

Errors, as Binance answers them
    Unknown symbol: ``400 {"code": -1121, "msg": "Invalid symbol."}`` (ccxt ``BadSymbol``);
    an interval the catalog lacks: ``-1120`` (``BadRequest``); a klines range entirely before
    the catalog's first bar or after its last (``[startTime, endTime]``, or ``limit`` candles
    from ``startTime``): ``-1130`` (``BadRequest``), which is also what a client asking for
    new candles gets once the replay has run past the end of the catalog. A range that
    overlaps the catalog is served for the overlap, as Binance serves a pair's history from
    its listing on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import polars as pl

from tierline.data.catalog import Catalog, to_utc_ns
from tierline.data.market import normalize_symbol, timeframe_ns
from tierline.errors import ConfigError, DataError

if TYPE_CHECKING:
    from tierline.core.instruments import InstrumentSpec

__all__ = [
    "DEFAULT_HISTORY",
    "ReplayClock",
    "ReplayConfig",
    "ReplayMarket",
    "ReplayServer",
    "ccxt_config",
]

logger = logging.getLogger(__name__)

#: Bars of history kept before the replay start when ``--from`` is not given (freqtrade asks
#: for up to 1000 candles at start-up).
DEFAULT_HISTORY = 1000
#: Levels per side of a synthesised book.
SYNTHETIC_DEPTH = 100
#: Quote notional at the touch of a synthesised book (any stake fills there in one piece).
TOUCH_NOTIONAL = 1e12
_MS = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KLINES_MAX = 1000
_DEPTH_LIMITS = (1, 5000)
_BINANCE_INTERVALS = (
    "1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w"  # Binance spot kline intervals
).split()


# ---------------------------------------------------------------------- configuration
@dataclass(frozen=True, kw_only=True)
class ReplayConfig:
    """What to replay and how.

    Attributes
    ----------
    exchange, symbol, timeframe
        The catalog partition replayed (any catalog exchange; the API is Binance's).
    start
        Catalog time of the candle that forms when the server starts (ISO string, datetime or
        ns); None: ``history`` bars after the first bar.
    speed
        Replay seconds per wall second (freqtrade needs 1).
    host, port
        Where to listen (port 0: a free port).
    history
        Bars before the start when ``start`` is None.
    """

    exchange: str
    symbol: str
    timeframe: str = "1m"
    start: str | datetime | int | None = None
    speed: float = 1.0
    host: str = "127.0.0.1"
    port: int = 0
    history: int = DEFAULT_HISTORY

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", normalize_symbol(self.symbol))
        timeframe_ns(self.timeframe)
        if self.timeframe not in _BINANCE_INTERVALS:
            raise ConfigError(
                f"timeframe {self.timeframe!r}: Binance's API has no such kline interval "
                f"({', '.join(_BINANCE_INTERVALS)})"
            )
        if ":" in self.symbol:
            raise ConfigError(f"{self.symbol}: the replay serves spot pairs only")
        if not self.speed > 0:
            raise ConfigError(f"speed {self.speed!r} must be > 0")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port!r} must be in 0-65535")
        if self.history < 0:
            raise ConfigError(f"history {self.history!r} must be >= 0")


# ---------------------------------------------------------------------- the data
@dataclass(frozen=True)
class _Bars:
    ts: np.ndarray  # open time, catalog ms
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    tf_ms: int


class _BookReplay:
    """The catalog's L2 book rebuilt up to a cursor (by ``ts_local``), loaded in chunks."""

    _CHUNK_MS = 3_600_000

    def __init__(self, catalog: Catalog, exchange: str, symbol: str) -> None:
        self._scan_args = {"exchange": exchange, "symbol": symbol}
        self._catalog = catalog
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        if catalog.files("book", exchange, symbol):
            lf = catalog.scan("book", **self._scan_args)
            t = pl.col("ts_local").dt.epoch("ms")
            lo, hi = lf.select(t.min().alias("lo"), t.max().alias("hi")).collect().row(0)
            self.first_ms, self.last_ms = int(lo), int(hi)
        self._reset()

    def _reset(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self._applied_ms = -1  # rows with ts_local <= this are applied
        self._loaded_ms = -1  # rows with ts_local <= this are loaded
        self._rows: list[tuple[int, bool, bool, float, float]] = []
        self._i = 0
        self._prev_snapshot = False
        self.update_id = 0

    def covers(self, cursor_ms: int) -> bool:
        return self.first_ms is not None and self.first_ms <= cursor_ms <= (self.last_ms or 0)

    def advance(self, cursor_ms: int) -> None:
        if cursor_ms < self._applied_ms:
            self._reset()
        while True:
            while self._i < len(self._rows) and self._rows[self._i][0] <= cursor_ms:
                self._apply(self._rows[self._i])
                self._i += 1
            if self._i < len(self._rows) or self._loaded_ms >= cursor_ms:
                break
            self._load(max(self._loaded_ms + 1, self.first_ms or 0))
        self._applied_ms = cursor_ms

    def _load(self, from_ms: int) -> None:
        to_ms = from_ms + self._CHUNK_MS
        df = (
            self._catalog.scan(
                "book",
                **self._scan_args,
                start=_utc(from_ms),
                end=_utc(to_ms),
            )
            .select(
                pl.col("ts_local").dt.epoch("ms"),
                pl.col("is_snapshot"),
                pl.col("side") == "bid",
                "price",
                "qty",
            )
            .collect()
        )
        self._rows = self._rows[self._i :] + [tuple(r) for r in df.iter_rows()]  # type: ignore[misc]
        self._i = 0
        self._loaded_ms = to_ms - 1

    def _apply(self, row: tuple[int, bool, bool, float, float]) -> None:
        _, snapshot, is_bid, price, qty = row
        if snapshot and not self._prev_snapshot:
            self.bids.clear()
            self.asks.clear()
        self._prev_snapshot = snapshot
        side = self.bids if is_bid else self.asks
        if qty > 0:
            side[price] = qty
        else:
            side.pop(price, None)
        self.update_id += 1

    def levels(self, limit: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return bids, asks


class ReplayMarket:
    """The catalog data of one replayed market: bars per timeframe, the instrument, the book.

    Parameters
    ----------
    catalog
        The Parquet catalog.
    config
        The replay configuration (exchange, symbol, primary timeframe).

    Raises
    ------
    DataError
        If the catalog has no bars for the market and timeframe.
    """

    def __init__(self, catalog: Catalog, config: ReplayConfig) -> None:
        from tierline.core.instruments import instrument_for

        self.catalog = catalog
        self.config = config
        self.symbol_id = config.symbol.replace("/", "")
        self._bars: dict[str, _Bars | None] = {}
        self._lock = threading.Lock()
        primary = self.bars(config.timeframe)
        if primary is None:
            raise DataError(
                f"no {config.exchange} {config.symbol} {config.timeframe} bars in the catalog at "
                f"{catalog.root}: import or ingest them first (`tierline data ls` lists the data)"
            )
        self.primary = primary
        frame = catalog.read_ohlcv(config.exchange, config.symbol, config.timeframe)
        self.spec: InstrumentSpec = instrument_for(config.exchange, config.symbol, frame)
        self.book = _BookReplay(catalog, config.exchange, config.symbol)

    def bars(self, timeframe: str) -> _Bars | None:
        """Return the catalog bars of ``timeframe`` (None when the catalog has none)."""
        with self._lock:
            if timeframe not in self._bars:
                self._bars[timeframe] = self._load(timeframe)
            return self._bars[timeframe]

    def _load(self, timeframe: str) -> _Bars | None:
        cfg = self.config
        if not self.catalog.files("ohlcv", cfg.exchange, cfg.symbol, timeframe):
            return None
        df = self.catalog.read_ohlcv(cfg.exchange, cfg.symbol, timeframe)
        cols = {c: df[c].cast(pl.Float64).to_numpy() for c in ("open", "high", "low", "close")}
        return _Bars(
            ts=df["ts"].dt.epoch("ms").to_numpy().astype(np.int64),
            volume=df["volume"].cast(pl.Float64).to_numpy(),
            tf_ms=timeframe_ns(timeframe) // _MS,
            **cols,
        )

    def timeframes(self) -> list[str]:
        """Return the timeframes the catalog holds for the market."""
        cfg = self.config
        root = self.catalog.partition_dir("ohlcv", cfg.exchange, cfg.symbol, cfg.timeframe).parent
        return sorted(
            (p.name.split("=", 1)[1] for p in root.glob("timeframe=*") if p.is_dir()),
            key=timeframe_ns,
        )


# ---------------------------------------------------------------------- the clock
class ReplayClock:
    """Maps wall time to replayed time.

    Served times are catalog times plus ``shift_ms`` (a whole number of timeframes); the
    served "now" is the wall clock at start plus ``speed`` times the wall time elapsed since.

    Parameters
    ----------
    start_ms
        Catalog open time (ms) of the candle that forms at start (on the timeframe grid).
    tf_ms
        The primary timeframe in ms.
    speed
        Replay seconds per wall second.
    wall_ms
        Wall time at start (default: now).
    """

    def __init__(
        self, *, start_ms: int, tf_ms: int, speed: float = 1.0, wall_ms: int | None = None
    ) -> None:
        self.wall0_ms = int(time.time() * 1000) if wall_ms is None else wall_ms
        self.start_ms = start_ms
        self.tf_ms = tf_ms
        self.speed = speed
        self.shift_ms = self.wall0_ms // tf_ms * tf_ms - start_ms

    def now_ms(self) -> int:
        """Return the served "now" (ms since the epoch, what ``/api/v3/time`` answers)."""
        wall = int(time.time() * 1000)
        return self.wall0_ms + int((wall - self.wall0_ms) * self.speed)

    def cursor_ms(self) -> int:
        """Return the catalog time the replay is at."""
        return self.now_ms() - self.shift_ms

    def to_catalog_ms(self, served_ms: int) -> int:
        """Return the catalog time of a served time."""
        return served_ms - self.shift_ms


# ---------------------------------------------------------------------- the server
class _ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.body = {"code": code, "msg": msg}


class ReplayServer:
    """The replay HTTP server (a context manager; `url` is its base URL).

    Parameters
    ----------
    config
        What to replay.
    catalog
        The Parquet catalog (default: the workspace catalog).

    Raises
    ------
    DataError
        If the catalog lacks the bars, or ``start`` lies outside them.
    ConfigError
        If the configuration is invalid or the port cannot be bound.
    """

    def __init__(self, config: ReplayConfig, catalog: Catalog | None = None) -> None:
        self.config = config
        self.market = ReplayMarket(catalog or Catalog(), config)
        bars = self.market.primary
        tf = bars.tf_ms
        first, last = int(bars.ts[0]), int(bars.ts[-1])
        if config.start is None:
            start = first + min(config.history, len(bars.ts) - 1) * tf
        else:
            dt = to_utc_ns(config.start)
            assert dt is not None
            start = (int(dt.timestamp()) * 1000 + dt.microsecond // 1000) // tf * tf
            if not first <= start <= last:
                raise DataError(
                    f"replay start {_iso(start)} is outside the catalog's {config.exchange} "
                    f"{config.symbol} {config.timeframe} bars ({_iso(first)} to {_iso(last)})"
                )
        self.clock = ReplayClock(start_ms=start, tf_ms=tf, speed=config.speed)
        self.requests: Counter[str] = Counter()
        self.unknown_paths: Counter[str] = Counter()
        self.first_klines_ms: int | None = None
        #: Extra Prometheus gauges (name -> value), e.g. from a dry-run's trade database.
        self.metrics_provider: Callable[[], Mapping[str, float]] | None = None
        self._lock = threading.Lock()
        self._info_body: dict[str, Any] | None = None
        try:
            self._httpd = ThreadingHTTPServer((config.host, config.port), _handler(self))
        except OSError as e:
            raise ConfigError(f"cannot listen on {config.host}:{config.port}: {e}") from e
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        if config.speed != 1:
            logger.warning(
                "replay speed %g: freqtrade decides candle closes on the system clock and "
                "follows a replay only at speed 1",
                config.speed,
            )

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """Return the base URL, ``http://127.0.0.1:<port>``."""
        host, port = self._httpd.server_address[:2]
        name = host if isinstance(host, str) else host.decode()
        return f"http://{name}:{port}"

    def start(self) -> ReplayServer:
        """Serve in a background thread; return self."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="tierline-replay", daemon=True
        )
        self._thread.start()
        logger.info("replay of %s at %s", self.describe(), self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> str:
        """Return one line: market, catalog span and the replay's start."""
        c, b = self.config, self.market.primary
        return (
            f"{c.exchange} {c.symbol} {c.timeframe} as Binance {self.market.symbol_id}: catalog "
            f"{_iso(int(b.ts[0]))} to {_iso(int(b.ts[-1]))}, replay from "
            f"{_iso(self.clock.start_ms)} at speed {c.speed:g}"
        )

    def finished(self) -> bool:
        """Return whether the replay has run past the catalog's last bar."""
        b = self.market.primary
        return self.clock.cursor_ms() >= int(b.ts[-1]) + b.tf_ms

    def status(self) -> dict[str, Any]:
        """Return the replay's state (what ``/tierline/status`` answers)."""
        b = self.market.primary
        c = self.config
        cursor = self.clock.cursor_ms()
        return {
            "exchange": c.exchange,
            "symbol": c.symbol,
            "symbol_id": self.market.symbol_id,
            "timeframe": c.timeframe,
            "speed": c.speed,
            "shift_ms": self.clock.shift_ms,
            "wall_start_ms": self.clock.wall0_ms,
            "start": _iso(self.clock.start_ms),
            "start_ms": self.clock.start_ms,
            "cursor": _iso(cursor),
            "cursor_ms": cursor,
            "server_time_ms": self.clock.now_ms(),
            "catalog_first": _iso(int(b.ts[0])),
            "catalog_last": _iso(int(b.ts[-1])),
            "finished": self.finished(),
            "first_klines_ms": self.first_klines_ms,
            "book": "real" if self.market.book.covers(cursor) else "synthetic",
        }

    # ------------------------------------------------------------------ dispatch
    def handle(self, method: str, path: str, params: Mapping[str, str]) -> tuple[int, Any]:
        """Answer one request: return the HTTP status and the JSON body (or text)."""
        routes: dict[str, Callable[[Mapping[str, str]], Any]] = {
            "/api/v3/ping": lambda p: {},
            "/api/v3/time": lambda p: {"serverTime": self.clock.now_ms()},
            "/api/v3/exchangeInfo": self._exchange_info,
            "/api/v3/klines": self._klines,
            "/api/v3/uiKlines": self._klines,
            "/api/v3/ticker/24hr": self._ticker_24hr,
            "/api/v3/ticker": self._ticker_24hr,
            "/api/v3/ticker/price": self._ticker_price,
            "/api/v3/ticker/bookTicker": self._book_ticker,
            "/api/v3/depth": self._depth,
            "/api/v3/avgPrice": self._avg_price,
            "/tierline/status": lambda p: self.status(),
            "/metrics": lambda p: self.metrics_text(),
        }
        with self._lock:
            self.requests[path] += 1
        fn = routes.get(path)
        if fn is None or method != "GET":
            with self._lock:
                self.unknown_paths[f"{method} {path}"] += 1
            logger.warning("replay: %s %s is not served (answered 404)", method, path)
            return 404, {"code": -5000, "msg": f"{method} {path} is not served by the replay"}
        try:
            return 200, fn(params)
        except _ApiError as e:
            logger.info("replay: %s %s -> %s %s", method, path, e.status, e.body)
            return e.status, e.body

    # ------------------------------------------------------------------ endpoints
    def _symbol(self, params: Mapping[str, str], *, required: bool = True) -> str | None:
        sym = params.get("symbol")
        if sym is None and "symbols" in params:
            try:
                syms = json.loads(params["symbols"])
            except ValueError:
                syms = None
            if not isinstance(syms, list) or not syms:
                raise _ApiError(400, -1100, "Illegal characters found in parameter 'symbols'.")
            for s in syms:
                self._check_symbol(str(s))
            return self.market.symbol_id
        if sym is None:
            if required:
                raise _ApiError(
                    400,
                    -1102,
                    "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
                )
            return None
        self._check_symbol(sym)
        return sym

    def _check_symbol(self, sym: str) -> None:
        if sym != self.market.symbol_id:
            raise _ApiError(400, -1121, "Invalid symbol.")

    def _exchange_info(self, params: Mapping[str, str]) -> dict[str, Any]:
        from tierline.engines.freqtrade import exchange_info

        self._symbol(params, required=False)
        if self._info_body is None:
            self._info_body = exchange_info([self.market.spec])
        return {**self._info_body, "serverTime": self.clock.now_ms()}

    def _interval_bars(self, interval: str | None) -> _Bars:
        if interval is None:
            raise _ApiError(
                400,
                -1102,
                "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.",
            )
        bars = None
        if interval in _BINANCE_INTERVALS:
            bars = self.market.bars(interval)
        if bars is None or self.clock.shift_ms % bars.tf_ms:
            offered = [
                tf
                for tf in self.market.timeframes()
                if self.clock.shift_ms % (timeframe_ns(tf) // _MS) == 0
            ]
            msg = f"Invalid interval. The replay serves {', '.join(offered)}."
            raise _ApiError(400, -1120, msg)
        return bars

    def _klines(self, params: Mapping[str, str]) -> list[list[Any]]:
        self._symbol(params)
        bars = self._interval_bars(params.get("interval"))
        limit = _int_param(params, "limit", 500, 1, _KLINES_MAX)
        start = _int_param(params, "startTime", None)
        end = _int_param(params, "endTime", None)
        with self._lock:
            if self.first_klines_ms is None:
                self.first_klines_ms = int(time.time() * 1000)
        shift = self.clock.shift_ms
        cursor = self.clock.cursor_ms()
        tf = bars.tf_ms
        first, last = int(bars.ts[0]), int(bars.ts[-1])
        span = (
            f"the replayed catalog holds {self.config.exchange} {self.config.symbol} from "
            f"{_iso(first + shift)} to {_iso(last + shift)} (replayed time)"
        )
        # the window asked for: [startTime, endTime], or limit candles from startTime
        window_end = end if end is not None else None if start is None else start + limit * tf - 1
        if window_end is not None and window_end - shift < first:
            which = "endTime" if end is not None else "startTime"
            raise _ApiError(400, -1130, f"Data sent for parameter '{which}' is not valid: {span}.")
        if start is not None and start - shift > last:
            what = "the replay has run past the catalog's end" if cursor > last + tf else span
            msg = f"Data sent for parameter 'startTime' is not valid: {what}."
            raise _ApiError(400, -1130, msg)
        # candles that have opened by the cursor (the last one may still be forming)
        hi = int(np.searchsorted(bars.ts, cursor, side="right"))
        if end is not None:
            hi = min(hi, int(np.searchsorted(bars.ts, end - shift, side="right")))
        if start is not None:
            lo = int(np.searchsorted(bars.ts, start - shift, side="left"))
            hi = min(hi, lo + limit)
        else:
            lo = max(0, hi - limit)
        out = []
        for i in range(lo, hi):
            t = int(bars.ts[i])
            o, h, low, c, v = (
                float(bars.open[i]),
                float(bars.high[i]),
                float(bars.low[i]),
                float(bars.close[i]),
                float(bars.volume[i]),
            )
            if t + tf > cursor:  # still forming: flat at its open
                h = low = c = o
                v = 0.0
            out.append(
                [
                    t + shift,
                    _num(o),
                    _num(h),
                    _num(low),
                    _num(c),
                    _num(v),
                    t + shift + tf - 1,
                    _num(v * c),
                    0,
                    "0",
                    "0",
                    "0",
                ]
            )
        return out

    def _price(self, cursor: int) -> tuple[float, float]:
        """Return the replayed price and the last closed bar's volume at ``cursor``."""
        b = self.market.primary
        i = int(np.searchsorted(b.ts, cursor, side="right")) - 1
        if i < 0:
            return float(b.open[0]), 0.0
        closed_vol = float(b.volume[i - 1]) if i >= 1 else 0.0
        if cursor >= int(b.ts[i]) + b.tf_ms:  # past the catalog's end: the last close
            return float(b.close[i]), float(b.volume[i])
        return float(b.open[i]), closed_vol

    def _book(self, limit: int) -> dict[str, Any]:
        cursor = self.clock.cursor_ms()
        book = self.market.book
        with self._lock:
            if book.covers(cursor):
                book.advance(cursor)
                bids, asks = book.levels(limit)
                return {"lastUpdateId": book.update_id, "bids": bids, "asks": asks}
        price, volume = self._price(cursor)
        spec = self.market.spec
        tick, digits = spec.tick, spec.price_precision
        deep = max(volume, 1.0)
        n = min(limit, SYNTHETIC_DEPTH)
        # the touch takes any stake (the conventions have no market impact)
        sizes = [TOUCH_NOTIONAL / price if price > 0 else deep] + [deep] * (n - 1)
        return {
            "lastUpdateId": cursor,
            "bids": [(round(price - k * tick, digits) if k else price, sizes[k]) for k in range(n)],
            "asks": [(round(price + k * tick, digits) if k else price, sizes[k]) for k in range(n)],
        }

    def _top(self) -> tuple[float, float, float, float, float]:
        """Return last price, best bid, bid qty, best ask, ask qty."""
        cursor = self.clock.cursor_ms()
        price, _ = self._price(cursor)
        book = self._book(1)
        bid, bq = book["bids"][0] if book["bids"] else (price, 0.0)
        ask, aq = book["asks"][0] if book["asks"] else (price, 0.0)
        return price, bid, bq, ask, aq

    def _ticker_24hr(self, params: Mapping[str, str]) -> Any:
        sym = self._symbol(params, required=False)
        cursor = self.clock.cursor_ms()
        b = self.market.primary
        hi = int(np.searchsorted(b.ts, cursor - b.tf_ms, side="right"))  # closed bars
        lo = int(np.searchsorted(b.ts, cursor - 86_400_000, side="left"))
        last, bid, bq, ask, aq = self._top()
        if hi > lo:
            open_ = float(b.open[lo])
            high = max(float(b.high[lo:hi].max()), last)
            low = min(float(b.low[lo:hi].min()), last)
            vol = float(b.volume[lo:hi].sum())
            qvol = float((b.volume[lo:hi] * b.close[lo:hi]).sum())
        else:
            open_ = high = low = last
            vol = qvol = 0.0
        now = self.clock.now_ms()
        body = {
            "symbol": self.market.symbol_id,
            "priceChange": _num(last - open_),
            "priceChangePercent": _num(round((last / open_ - 1) * 100, 3) if open_ else 0.0),
            "weightedAvgPrice": _num(qvol / vol if vol else last),
            "prevClosePrice": _num(float(b.close[hi - 1]) if hi else last),
            "lastPrice": _num(last),
            "lastQty": "0",
            "bidPrice": _num(bid),
            "bidQty": _num(bq),
            "askPrice": _num(ask),
            "askQty": _num(aq),
            "openPrice": _num(open_),
            "highPrice": _num(high),
            "lowPrice": _num(low),
            "volume": _num(vol),
            "quoteVolume": _num(qvol),
            "openTime": now - 86_400_000,
            "closeTime": now,
            "firstId": -1,
            "lastId": -1,
            "count": 0,
        }
        return body if sym is not None and "symbols" not in params else [body]

    def _ticker_price(self, params: Mapping[str, str]) -> Any:
        sym = self._symbol(params, required=False)
        price, _ = self._price(self.clock.cursor_ms())
        body = {"symbol": self.market.symbol_id, "price": _num(price)}
        return body if sym is not None and "symbols" not in params else [body]

    def _book_ticker(self, params: Mapping[str, str]) -> Any:
        sym = self._symbol(params, required=False)
        _, bid, bq, ask, aq = self._top()
        body = {
            "symbol": self.market.symbol_id,
            "bidPrice": _num(bid),
            "bidQty": _num(bq),
            "askPrice": _num(ask),
            "askQty": _num(aq),
        }
        return body if sym is not None and "symbols" not in params else [body]

    def _depth(self, params: Mapping[str, str]) -> dict[str, Any]:
        self._symbol(params)
        limit = _int_param(params, "limit", 100, *_DEPTH_LIMITS)
        book = self._book(limit)
        return {
            "lastUpdateId": book["lastUpdateId"],
            "bids": [[_num(p), _num(q)] for p, q in book["bids"]],
            "asks": [[_num(p), _num(q)] for p, q in book["asks"]],
        }

    def _avg_price(self, params: Mapping[str, str]) -> dict[str, Any]:
        self._symbol(params)
        price, _ = self._price(self.clock.cursor_ms())
        return {"mins": 5, "price": _num(price), "closeTime": self.clock.now_ms()}

    # ------------------------------------------------------------------ metrics
    def metrics_text(self) -> str:
        """Return the Prometheus text exposition of the replay (and the provider's gauges)."""
        st = self.status()
        lines = [
            "# HELP tierline_replay_cursor_seconds Catalog time the replay is at.",
            "# TYPE tierline_replay_cursor_seconds gauge",
            f"tierline_replay_cursor_seconds {st['cursor_ms'] / 1000:.3f}",
            "# HELP tierline_replay_shift_seconds Served time minus catalog time.",
            "# TYPE tierline_replay_shift_seconds gauge",
            f"tierline_replay_shift_seconds {st['shift_ms'] / 1000:.3f}",
            "# HELP tierline_replay_price Replayed price (the forming candle's open).",
            "# TYPE tierline_replay_price gauge",
            f"tierline_replay_price {self._price(st['cursor_ms'])[0]!r}",
            "# HELP tierline_replay_finished 1 once the replay has passed the catalog's end.",
            "# TYPE tierline_replay_finished gauge",
            f"tierline_replay_finished {int(st['finished'])}",
            "# HELP tierline_replay_requests_total Requests answered, by path.",
            "# TYPE tierline_replay_requests_total counter",
        ]
        with self._lock:
            counts = sorted(self.requests.items())
            unknown = sum(self.unknown_paths.values())
        lines += [f'tierline_replay_requests_total{{path="{p}"}} {n}' for p, n in counts]
        lines += [
            "# HELP tierline_replay_unknown_requests_total Requests for paths not served.",
            "# TYPE tierline_replay_unknown_requests_total counter",
            f"tierline_replay_unknown_requests_total {unknown}",
        ]
        if self.metrics_provider is not None:
            try:
                extra = dict(self.metrics_provider())
            except Exception as e:  # a broken provider must not break the exchange API
                logger.warning("replay: metrics provider failed: %s", e)
                extra = {}
            for name, value in sorted(extra.items()):
                lines += [f"# TYPE {name} gauge", f"{name} {float(value)!r}"]
        return "\n".join(lines) + "\n"


def _handler(server: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "tierline-replay"

        def _answer(self, method: str) -> None:
            u = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(u.query).items()}
            try:
                status, body = server.handle(method, u.path, params)
            except Exception as e:  # a server bug: answer 500, never drop the connection
                logger.exception("replay: %s %s failed", method, u.path)
                status, body = 500, {"code": -1000, "msg": f"replay error: {type(e).__name__}"}
            if isinstance(body, str):
                data, ctype = body.encode(), "text/plain; version=0.0.4; charset=utf-8"
            else:
                data, ctype = json.dumps(body).encode(), "application/json;charset=UTF-8"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_DELETE(self) -> None:
            self._answer("DELETE")

        def do_PUT(self) -> None:
            self._answer("PUT")

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("replay: " + format, *args)

    return Handler


# ---------------------------------------------------------------------- helpers
def ccxt_config(url: str) -> dict[str, Any]:
    """Return ccxt settings pointing ``binance`` at a replay server (spot markets only).

    Every URL of ``binance.urls['api']`` gets the server's scheme and host
    (`tierline.data.ingest.rewrite_api_urls`), so ``https://api.binance.com/api/v3`` becomes
    ``<url>/api/v3``. ccxt deep-merges ``urls`` into its defaults, and freqtrade passes its
    config's ``exchange.ccxt_config`` / ``ccxt_async_config`` to ccxt as they are.
    """
    import ccxt

    from tierline.data.ingest import rewrite_api_urls

    ex = ccxt.binance()
    rewrite_api_urls(ex, url)
    return {
        "urls": {"api": ex.urls["api"]},
        "options": {
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "defaultType": "spot",
        },
    }


@contextlib.contextmanager
def serve(config: ReplayConfig, catalog: Catalog | None = None) -> Iterator[ReplayServer]:
    """Run a `ReplayServer` in a background thread while inside; yield it."""
    server = ReplayServer(config, catalog)
    with server:
        yield server


def _int_param(
    params: Mapping[str, str],
    name: str,
    default: int | None,
    lo: int | None = None,
    hi: int | None = None,
) -> Any:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        msg = f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]+$'."
        raise _ApiError(400, -1100, msg) from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _ApiError(400, -1100, f"Illegal characters found in parameter '{name}'.")
    return value


def _num(x: float) -> str:
    """Return a decimal string that parses back to exactly ``x`` (no exponent)."""
    return np.format_float_positional(float(x), unique=True, trim="-")


def _utc(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
