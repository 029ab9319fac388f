"""Download OHLCV bars from an exchange with ccxt into the catalog.

`ingest_ohlcv` pages through ``fetch_ohlcv`` by ``since`` with ccxt's rate limiter on, retries
transient network errors and rate limits with a bounded exponential backoff, drops the
still-forming current bar, and writes every few pages through `Catalog.write_ohlcv` (each
write atomic), so an interrupted run keeps what it had written and the next run resumes after
the last stored bar. Running it twice over the same span adds nothing.

``api_url`` (or ``$TIERLINE_CCXT_API_URL``) points ccxt at another base URL, a mirror, a proxy
or a local replay server on 127.0.0.1, by rewriting the scheme and host of every URL in the
exchange's ``urls['api']``; see `rewrite_api_urls`.

Public OHLCV needs no API keys; none are read, logged or stored.
"""

from __future__ import annotations

import difflib
import itertools
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import polars as pl

from tierline.data.catalog import Catalog, to_utc_ns
from tierline.data.market import normalize_symbol, timeframe_ns
from tierline.errors import ConfigError, DataError, TierlineError

__all__ = [
    "API_URL_ENV",
    "IngestReport",
    "ingest_ohlcv",
    "make_exchange",
    "rewrite_api_urls",
]

logger = logging.getLogger(__name__)

#: Environment variable with the default for ``api_url`` (the ``--api-url`` option wins).
API_URL_ENV = "TIERLINE_CCXT_API_URL"
#: Pages fetched between two catalog writes.
DEFAULT_BATCH_PAGES = 10
#: Attempts after the first for a request failing with a network error or a rate limit.
DEFAULT_MAX_RETRIES = 5
#: First backoff delay in seconds; doubled on every further attempt, capped at `_MAX_DELAY`.
DEFAULT_RETRY_DELAY = 1.0
_MAX_DELAY = 60.0
#: Consecutive empty pages (each advancing one page span) after which a span is done.
_EMPTY_PAGES_STOP = 3
_NS_PER_MS = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_T = TypeVar("_T")


@dataclass(frozen=True, kw_only=True)
class IngestReport:
    """What an ingest run did.

    ``first_ts``/``last_ts`` span the bars this run wrote (None when it wrote none);
    ``requests`` counts OHLCV page requests, retried attempts included (market and clock
    requests are not counted).
    """

    exchange: str
    symbol: str
    timeframe: str
    rows_added: int
    rows_received: int
    rows_total: int
    first_ts: datetime | None
    last_ts: datetime | None
    requests: int
    retries: int
    batches: int
    forming_dropped: int
    path: Path

    def summary(self) -> str:
        """Return a one-paragraph summary for the command line."""
        head = f"{self.exchange} {self.symbol} {self.timeframe}: "
        if self.rows_added:
            assert self.first_ts is not None and self.last_ts is not None
            head += (
                f"{self.rows_added:,} new bar(s) {_fmt(self.first_ts)} -> {_fmt(self.last_ts)} "
                f"UTC in {self.batches} write(s)"
            )
        else:
            head += "up to date, no new bars"
        head += f"; {self.requests} OHLCV request(s)"
        if self.retries:
            head += f" ({self.retries} retried)"
        if self.forming_dropped:
            head += f"; {self.forming_dropped} still-forming bar(s) not stored"
        return f"{head}\n{self.rows_total:,} bar(s) stored in {self.path}"


def ingest_ohlcv(
    catalog: Catalog,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    since: str | datetime | int,
    until: str | datetime | int | None = None,
    progress: bool = False,
    api_url: str | None = None,
    page_limit: int | None = None,
    batch_pages: int = DEFAULT_BATCH_PAGES,
    max_retries: int = DEFAULT_MAX_RETRIES,
    retry_delay: float = DEFAULT_RETRY_DELAY,
) -> IngestReport:
    """Download OHLCV bars with ccxt and merge them into the catalog.

    Only the bars the catalog lacks at either end are requested: the run starts after the last
    stored bar (and fetches ``since`` up to the first stored bar when ``since`` is earlier).
    Gaps inside the stored span are not refilled.

    Parameters
    ----------
    catalog
        The catalog to write to (partition ``ohlcv/exchange=<id>/symbol=.../timeframe=...``).
    exchange
        ccxt exchange id, e.g. ``binance``.
    symbol
        ``BASE/QUOTE`` (or ``BASE/QUOTE:SETTLE`` for a perpetual) as the exchange lists it.
    timeframe
        Bar length the exchange supports, e.g. ``5m``.
    since
        First bar open to fetch (ISO string, datetime or epoch ns; naive means UTC).
    until
        Fetch bars opening before this time; default now. Bars still forming at the current
        time (by the exchange's clock or the local clock, whichever is earlier) are dropped.
    progress
        Show a tqdm progress bar on stderr.
    api_url
        Base URL replacing the exchange's API hosts (see `rewrite_api_urls`); default
        ``$TIERLINE_CCXT_API_URL``, else the exchange's own hosts.
    page_limit
        Bars per request; default the exchange's maximum (ccxt ``features``), else 500.
    batch_pages
        Pages fetched between two catalog writes.
    max_retries, retry_delay
        Retries of a request failing with a network error or rate limit, and the first backoff
        delay in seconds (doubled each time, capped at 60 s).

    Returns
    -------
    IngestReport
        Rows added and received, span written, requests made.

    Raises
    ------
    ConfigError
        Unknown exchange id, a symbol the exchange does not list, a timeframe it does not
        support, bad times or options, an invalid ``api_url``.
    DataError
        A response that is not valid OHLCV, an exchange error, or the exchange unreachable
        after the retries.
    """
    sym = normalize_symbol(symbol)
    tf_ns = timeframe_ns(timeframe)
    start_dt = to_utc_ns(since)
    if start_dt is None:
        raise ConfigError("ingest needs --since (the first bar to fetch, e.g. 2024-01-01)")
    until_dt = to_utc_ns(until)
    if until_dt is not None and until_dt <= start_dt:
        raise ConfigError(f"--until {until_dt:%Y-%m-%d %H:%M} is not after --since {start_dt}")
    if batch_pages < 1:
        raise ConfigError(f"batch_pages must be >= 1, got {batch_pages}")
    if page_limit is not None and page_limit < 1:
        raise ConfigError(f"page_limit must be >= 1, got {page_limit}")
    if max_retries < 0 or retry_delay < 0:
        raise ConfigError("max_retries and retry_delay must be >= 0")
    url = api_url if api_url is not None else os.environ.get(API_URL_ENV) or None

    ex = make_exchange(exchange, symbol=sym, api_url=url)
    try:
        _check_timeframe(ex, timeframe)
        client = _Client(ex, max_retries=max_retries, retry_delay=retry_delay)
        client.call(ex.load_markets, f"load the {ex.id} markets")
        _check_symbol(ex, sym)
        limit = page_limit or _page_limit(ex, sym)
        now_ns = _clock_ns(ex, client, replay=bool(url))
        run = _Run(
            catalog=catalog,
            client=client,
            ex_id=ex.id,
            symbol=sym,
            timeframe=timeframe,
            tf_ns=tf_ns,
            now_ns=now_ns,
            limit=limit,
            batch_pages=batch_pages,
        )
        end_ns = _dt_ns(until_dt) if until_dt is not None else now_ns
        spans = _spans(catalog, ex.id, sym, timeframe, tf_ns, _dt_ns(start_dt), end_ns)
        logger.info(
            "ingest %s %s %s: spans %s, now %s, %d bars per page",
            ex.id,
            sym,
            timeframe,
            [(_fmt(_ns_dt(a)), _fmt(_ns_dt(b))) for a, b in spans],
            _fmt(_ns_dt(now_ns)),
            limit,
        )
        run.fetch(spans, progress=progress)
    finally:
        ex.close()
    return run.report()


# ---------------------------------------------------------------------- the exchange
def make_exchange(exchange: str, *, symbol: str | None = None, api_url: str | None = None) -> Any:
    """Return a ccxt exchange for public market data: rate limiter on, no keys.

    For ``binance``, ``load_markets`` fetches only the market type of ``symbol`` (spot unless
    the symbol has a settle currency) and no margin or currency endpoints.

    Parameters
    ----------
    exchange
        ccxt exchange id.
    symbol
        The symbol that will be used (selects the Binance market type); optional.
    api_url
        When given, every API URL of the exchange is rewritten to it (`rewrite_api_urls`).

    Raises
    ------
    ConfigError
        If ccxt has no exchange with that id or ``api_url`` is not a valid base URL.
    """
    import ccxt

    ex_id = exchange.strip().lower()
    if ex_id not in ccxt.exchanges:
        close = difflib.get_close_matches(ex_id, ccxt.exchanges, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown exchange {exchange!r}: ccxt {ccxt.__version__} has no exchange with that "
            f"id{hint} (ids are lowercase, e.g. binance, bybit, okx, kraken)"
        )
    # the raw JSON of the last response lets ingest tell an empty page from a foreign body
    config: dict[str, Any] = {"enableRateLimit": True, "enableLastJsonResponse": True}
    options = _exchange_options(ex_id, symbol)
    if options:
        config["options"] = options
    ex = getattr(ccxt, ex_id)(config)
    if api_url:
        rewrite_api_urls(ex, api_url)
    return ex


def rewrite_api_urls(ex: Any, api_url: str) -> int:
    """Point every URL in ``ex.urls['api']`` at ``api_url``; return how many were rewritten.

    The scheme and host (with port) of each URL are replaced by those of ``api_url``; a path in
    ``api_url`` is put before each URL's own path. So with ``http://127.0.0.1:8000``,
    ``https://api.binance.com/api/v3`` becomes ``http://127.0.0.1:8000/api/v3`` and
    ``https://fapi.binance.com/fapi/v1`` becomes ``http://127.0.0.1:8000/fapi/v1``.
    Host placeholders such as ``https://api.{hostname}`` are replaced too.

    Raises
    ------
    ConfigError
        If ``api_url`` is not ``http(s)://host[:port][/path]`` (credentials, query and fragment
        are refused).
    """
    base = _parse_api_url(api_url)
    count = 0

    def rewrite(url: str) -> str:
        nonlocal count
        u = urlsplit(url)
        if not u.scheme or not u.netloc:
            return url
        count += 1
        path = base.path.rstrip("/") + u.path
        return urlunsplit((base.scheme, base.netloc, path, u.query, u.fragment))

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            return rewrite(node)
        return node

    ex.urls["api"] = walk(ex.urls["api"])
    logger.info("%s: %d API URL(s) now point at %s", ex.id, count, _redact(api_url))
    return count


def _parse_api_url(api_url: str) -> Any:
    u = urlsplit(api_url.strip())
    problem = None
    if u.scheme not in ("http", "https"):
        problem = "it must start with http:// or https://"
    elif not u.hostname:
        problem = "it has no host"
    elif u.username is not None or u.password is not None:
        problem = "it must not carry credentials"
    elif u.query or u.fragment:
        problem = "it must not have a query or fragment"
    else:
        try:
            u.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            problem = "its port is not a number in 0-65535"
    if problem:
        raise ConfigError(
            f"API URL {_redact(api_url)!r} (--api-url or ${API_URL_ENV}) is not valid: {problem} "
            "(e.g. http://127.0.0.1:8000)"
        )
    return u


def _redact(url: str) -> str:
    u = urlsplit(url)
    if u.username is None and u.password is None:
        return url
    host = u.hostname or ""
    if u.port is not None:
        host += f":{u.port}"
    return urlunsplit((u.scheme, host, u.path, u.query, u.fragment))


def _market_kind(symbol: str) -> str:
    if ":" not in symbol:
        return "spot"
    pair, settle = symbol.split(":", 1)
    quote = pair.split("/", 1)[1]
    return "linear" if settle == quote else "inverse"


def _exchange_options(ex_id: str, symbol: str | None) -> dict[str, Any]:
    if ex_id != "binance":
        return {}
    kind = _market_kind(symbol) if symbol else "spot"
    opts: dict[str, Any] = {
        # only the exchangeInfo of the symbol's market type (default: spot, linear, inverse)
        "fetchMarkets": {"types": [kind], "loadAllOptions": False},
        # no sapi margin-pair or currency requests (they need keys anyway)
        "fetchMargins": False,
        "fetchCurrencies": False,
        # parse_market reads these; fetch_markets sets them, set_markets (offline) does not
        "crossMarginPairsData": [],
        "isolatedMarginPairsData": [],
    }
    if kind == "spot":
        opts["defaultType"] = "spot"
    else:
        opts["defaultType"] = "swap"
        opts["defaultSubType"] = kind
    return opts


def _check_timeframe(ex: Any, timeframe: str) -> None:
    tfs = getattr(ex, "timeframes", None) or {}
    if not ex.has.get("fetchOHLCV"):
        raise ConfigError(f"exchange {ex.id} does not serve OHLCV bars through ccxt")
    if tfs and timeframe not in tfs:
        raise ConfigError(
            f"timeframe {timeframe!r} is not supported by {ex.id}; it offers {', '.join(tfs)}"
        )


def _check_symbol(ex: Any, symbol: str) -> None:
    markets = ex.markets or {}
    if symbol in markets:
        return
    close = difflib.get_close_matches(symbol, list(markets), n=3, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise ConfigError(
        f"symbol {symbol!r} is not listed by {ex.id} ({len(markets)} market(s) loaded{hint})"
    )


def _page_limit(ex: Any, symbol: str) -> int:
    market = ex.markets.get(symbol, {})
    kind = "spot" if market.get("spot", True) else "swap"
    feats = (getattr(ex, "features", None) or {}).get(kind) or {}
    if kind == "swap" and isinstance(feats, dict):
        feats = feats.get("linear" if market.get("linear") else "inverse") or feats
    limit = (feats.get("fetchOHLCV") or {}).get("limit") if isinstance(feats, dict) else None
    return int(limit) if isinstance(limit, int | float) and limit > 0 else 500


def _clock_ns(ex: Any, client: _Client, *, replay: bool) -> int:
    """Return "now": the earlier of the local clock and the exchange's clock."""
    local = time.time_ns()
    if not ex.has.get("fetchTime"):
        return local
    try:
        server_ms = client.call(ex.fetch_time, f"fetch the {ex.id} server time")
    except TierlineError as e:
        logger.warning("%s: no server time (%s); using the local clock", ex.id, e)
        return local
    if not isinstance(server_ms, int) or server_ms <= 0:
        logger.warning("%s: server time %r is not valid; using the local clock", ex.id, server_ms)
        return local
    server = server_ms * _NS_PER_MS
    if abs(server - local) > 60 * 1_000_000_000:
        # a replay server behind an API URL may well run a clock of its own
        logger.log(
            logging.INFO if replay else logging.WARNING,
            "%s clock is %+.0f s off the local clock; using the earlier of the two",
            ex.id,
            (server - local) / 1e9,
        )
    return min(local, server)


class _Client:
    """Calls into ccxt with bounded retries and tierline errors."""

    def __init__(self, ex: Any, *, max_retries: int, retry_delay: float) -> None:
        self.ex = ex
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.attempts = 0
        self.retries = 0

    def call(self, fn: Callable[..., _T], what: str, *args: Any, **kwargs: Any) -> _T:
        import ccxt

        attempt = 0
        while True:
            self.attempts += 1
            try:
                return fn(*args, **kwargs)
            except ccxt.NetworkError as e:  # incl. RateLimitExceeded, DDoSProtection, timeouts
                if attempt >= self.max_retries:
                    raise DataError(
                        f"cannot {what}: {self.ex.id} still failing after {attempt + 1} "
                        f"attempt(s): {type(e).__name__}: {_clip(e)}"
                    ) from e
                delay = min(self.retry_delay * 2**attempt, _MAX_DELAY)
                logger.warning(
                    "%s: %s (%s); retry %d/%d in %.1f s",
                    what,
                    type(e).__name__,
                    _clip(e, 160),
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                attempt += 1
                self.retries += 1
                time.sleep(delay)
            except (ccxt.BadSymbol, ccxt.BadRequest) as e:
                raise ConfigError(f"cannot {what}: {self.ex.id} refused the request: {e}") from e
            except (ccxt.AuthenticationError, ccxt.PermissionDenied) as e:
                raise ConfigError(
                    f"cannot {what}: {self.ex.id} wants credentials for it ({e}); public OHLCV "
                    "should not need any"
                ) from e
            except ccxt.BaseError as e:
                raise DataError(f"cannot {what}: {type(e).__name__}: {_clip(e)}") from e
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
                raise DataError(
                    f"cannot {what}: {self.ex.id} sent a response ccxt cannot parse "
                    f"({type(e).__name__}: {e})"
                ) from e


# ---------------------------------------------------------------------- the run
def _spans(
    catalog: Catalog,
    ex_id: str,
    symbol: str,
    timeframe: str,
    tf_ns: int,
    start: int,
    end: int,
) -> list[tuple[int, int]]:
    """Return the [start, end) spans (ns) the catalog lacks at its ends."""
    files = catalog.files("ohlcv", ex_id, symbol, timeframe)
    if not files:
        return [(start, end)] if start < end else []
    first = pl.scan_parquet(files[0]).select(pl.col("ts").min().dt.epoch("ns")).collect().item()
    last_dt = catalog.last_ts("ohlcv", ex_id, symbol, timeframe)
    if first is None or last_dt is None:
        return [(start, end)] if start < end else []
    last = _dt_ns(last_dt)
    spans = []
    if start < first:
        spans.append((start, min(end, first)))
    tail = max(start, last + tf_ns)
    if tail < end:
        spans.append((tail, end))
    return spans


class _Run:
    def __init__(
        self,
        *,
        catalog: Catalog,
        client: _Client,
        ex_id: str,
        symbol: str,
        timeframe: str,
        tf_ns: int,
        now_ns: int,
        limit: int,
        batch_pages: int,
    ) -> None:
        self.catalog = catalog
        self.client = client
        self.ex_id = ex_id
        self.symbol = symbol
        self.timeframe = timeframe
        self.tf_ns = tf_ns
        self.now_ns = now_ns
        self.limit = limit
        self.batch_pages = batch_pages
        self.buffer: list[tuple[int, float, float, float, float, float]] = []
        self.requests = 0
        self.retries = 0
        self.rows_received = 0
        self.rows_added = 0
        self.batches = 0
        self.forming = 0
        self.first: int | None = None
        self.last: int | None = None

    def fetch(self, spans: list[tuple[int, int]], *, progress: bool) -> None:
        from tqdm import tqdm

        # a bar is complete when ts + tf <= now
        complete_end = self.now_ns - self.tf_ns + 1
        total = sum(max(0, math.ceil((min(b, complete_end) - a) / self.tf_ns)) for a, b in spans)
        with tqdm(
            total=total,
            unit="bar",
            desc=f"{self.ex_id} {self.symbol} {self.timeframe}",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        ) as bar:
            for start, end in spans:
                self._fetch_span(start, end, min(end, complete_end), bar)
            self._flush()

    def _fetch_span(self, start: int, end: int, complete_end: int, bar: Any) -> None:
        cursor = start
        pages = 0
        empty = 0
        while cursor < complete_end:
            since_ms = -(-cursor // _NS_PER_MS)
            where = (
                f"{self.ex_id} fetch_ohlcv {self.symbol} {self.timeframe} since "
                f"{_fmt(_ns_dt(since_ms * _NS_PER_MS))} limit {self.limit}"
            )
            before = self.client.attempts, self.client.retries
            page = self.client.call(
                self.client.ex.fetch_ohlcv,
                f"download {self.symbol} {self.timeframe} bars",
                self.symbol,
                self.timeframe,
                since=since_ms,
                limit=self.limit,
            )
            self.requests += self.client.attempts - before[0]
            self.retries += self.client.retries - before[1]
            rows = _parse_page(page, where, self.tf_ns)
            if not rows:
                _check_empty_response(self.client.ex, where)
            rows = [r for r in rows if r[0] * _NS_PER_MS >= cursor]
            if not rows:
                empty += 1
                logger.debug("%s: empty page (%d in a row)", where, empty)
                if empty >= _EMPTY_PAGES_STOP:
                    logger.info("%s: %d empty pages in a row; span done", where, empty)
                    break
                step = self.limit * self.tf_ns
            else:
                empty = 0
                self.rows_received += len(rows)
                for r in rows:
                    ts = r[0] * _NS_PER_MS
                    if ts >= end:
                        break
                    if ts >= complete_end:
                        self.forming += 1
                        continue
                    self.buffer.append(r)
                step = rows[-1][0] * _NS_PER_MS + self.tf_ns - cursor
            done = min(step, max(0, complete_end - cursor))
            bar.update(min(math.ceil(done / self.tf_ns), bar.total - bar.n))
            cursor += step
            pages += 1
            if pages % self.batch_pages == 0:
                self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        rows, self.buffer = self.buffer, []
        df = (
            pl.DataFrame(
                rows,
                schema={
                    "ts": pl.Int64,
                    "open": pl.Float64,
                    "high": pl.Float64,
                    "low": pl.Float64,
                    "close": pl.Float64,
                    "volume": pl.Float64,
                },
                orient="row",
            )
            .unique(subset="ts", keep="last")
            .sort("ts")
            .with_columns((pl.col("ts") * _NS_PER_MS).cast(pl.Datetime("ns", "UTC")))
        )
        w = self.catalog.write_ohlcv(
            df,
            exchange=self.ex_id,
            symbol=self.symbol,
            timeframe=self.timeframe,
            source=f"ccxt:{self.ex_id}",
        )
        self.batches += 1
        self.rows_added += w.rows_added
        lo, hi = min(r[0] for r in rows), max(r[0] for r in rows)
        self.first = lo if self.first is None else min(self.first, lo)
        self.last = hi if self.last is None else max(self.last, hi)
        logger.info(
            "%s %s %s: wrote %d bar(s) (%d new) up to %s",
            self.ex_id,
            self.symbol,
            self.timeframe,
            len(df),
            w.rows_added,
            _fmt(_ns_dt(hi * _NS_PER_MS)),
        )

    def report(self) -> IngestReport:
        files = self.catalog.files("ohlcv", self.ex_id, self.symbol, self.timeframe)
        total = pl.scan_parquet(files).select(pl.len()).collect().item() if files else 0
        return IngestReport(
            exchange=self.ex_id,
            symbol=self.symbol,
            timeframe=self.timeframe,
            rows_added=self.rows_added,
            rows_received=self.rows_received,
            rows_total=int(total),
            first_ts=None if self.first is None else _ns_dt(self.first * _NS_PER_MS),
            last_ts=None if self.last is None else _ns_dt(self.last * _NS_PER_MS),
            requests=self.requests,
            retries=self.retries,
            batches=self.batches,
            forming_dropped=self.forming,
            path=self.catalog.partition_dir("ohlcv", self.ex_id, self.symbol, self.timeframe),
        )


def _parse_page(
    page: Any, where: str, tf_ns: int
) -> list[tuple[int, float, float, float, float, float]]:
    """Check a ``fetch_ohlcv`` answer and return its bars as tuples sorted by time."""
    if not isinstance(page, list):
        raise DataError(
            f"{where}: the response is not OHLCV: expected a list of "
            f"[timestamp, open, high, low, close, volume], got {type(page).__name__} "
            f"{_clip(page, 200)}"
        )
    out = []
    names = ("open", "high", "low", "close", "volume")
    for i, c in enumerate(page):
        if not isinstance(c, Sequence) or isinstance(c, str) or len(c) < 6:
            raise DataError(
                f"{where}: the response is not OHLCV: candle {i} is {_clip(c, 200)}, expected "
                "[timestamp, open, high, low, close, volume]"
            )
        ts = c[0]
        if not _is_number(ts) or ts != int(ts) or ts < 0:
            raise DataError(
                f"{where}: the response is not OHLCV: candle {i} has timestamp {ts!r}, "
                "expected epoch milliseconds"
            )
        vals = []
        for name, v in zip(names, c[1:6], strict=True):
            if not _is_number(v) or not math.isfinite(v):
                raise DataError(
                    f"{where}: the response is not OHLCV: candle {i} "
                    f"({_fmt(_ns_dt(int(ts) * _NS_PER_MS))}) has {name} {v!r}"
                )
            vals.append(float(v))
        if (int(ts) * _NS_PER_MS) % tf_ns:
            raise DataError(
                f"{where}: candle {i} opens at {_ns_dt(int(ts) * _NS_PER_MS)}, which is not "
                "aligned to the timeframe (the catalog stores bars at multiples of it since "
                "1970-01-01)"
            )
        out.append((int(ts), vals[0], vals[1], vals[2], vals[3], vals[4]))
    out.sort(key=lambda r: r[0])
    for a, b in itertools.pairwise(out):
        if a[0] == b[0] and a != b:
            raise DataError(
                f"{where}: the response holds two different bars at {_ns_dt(a[0] * _NS_PER_MS)}"
            )
    return out


def _check_empty_response(ex: Any, where: str) -> None:
    """Raise when ccxt made no candles out of a body that cannot be an OHLCV answer.

    ccxt turns many foreign bodies (an HTML page, a JSON object of scalars) into an empty
    page; an exchange's genuine empty answer is JSON holding a (possibly empty) list.
    """
    raw = getattr(ex, "last_json_response", None)
    if raw is None:
        body = getattr(ex, "last_http_response", None)
        if body is not None and str(body).strip():
            raise DataError(
                f"{where}: the response is not OHLCV (not a JSON list or object): "
                f"{_clip(body, 200)}"
            )
        return
    if not _has_list(raw):
        raise DataError(
            f"{where}: the response is not OHLCV: no list of candles in {_clip(raw, 200)}"
        )


def _has_list(node: Any) -> bool:
    if isinstance(node, list):
        return True
    if isinstance(node, dict):
        return any(_has_list(v) for v in node.values())
    return False


# ---------------------------------------------------------------------- helpers
def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _clip(obj: Any, n: int = 300) -> str:
    s = str(obj)
    return s if len(s) <= n else s[: n - 3] + "..."


def _dt_ns(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1) * 1000


def _ns_dt(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _fmt(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
