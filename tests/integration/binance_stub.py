"""A local Binance-like spot REST server for tests (127.0.0.1, any free port).

It answers ``/api/v3/ping``, ``/api/v3/time`` (a settable fake "now"), ``/api/v3/exchangeInfo``
(the recorded Binance response in ../shared/data) and ``/api/v3/klines`` built from the real
freqtrade feather bars in ../shared/data/ohlcv/binance_spot_2024_genetrader, in Binance's array
layout with string prices. Klines honour ``symbol, interval, startTime, endTime, limit`` like
Binance (open times in [startTime, endTime], the first ``limit`` of them, default 500, max
1000); with neither time given, the latest ``limit`` bars. Bars opening after "now" do not
exist yet; the bar containing "now" is served still forming (close = open, half the volume).

Switches: ``fail_klines`` (answer that many klines requests with HTTP 429), ``garbage_klines``
(answer klines with that body instead, e.g. one that is not OHLCV). Every request is recorded
in ``requests``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl

_INTERVAL_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "1d": 86_400_000}


@dataclass(frozen=True)
class Request:
    """One request the stub received."""

    path: str
    params: dict[str, str]


class BinanceStub:
    """The server; use as a context manager, ``url`` is its base URL."""

    def __init__(self, shared_data: Path, *, now_ms: int) -> None:
        self.responses = shared_data / "exchange_responses" / "binance"
        self.ohlcv_dir = shared_data / "ohlcv" / "binance_spot_2024_genetrader"
        self.now_ms = now_ms
        self.fail_klines = 0
        #: when not None, klines answer 200 with this body (a str is sent as text/html)
        self.garbage_klines: Any = None
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._bars: dict[tuple[str, str], pl.DataFrame] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> BinanceStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def klines_requests(self) -> list[dict[str, str]]:
        """Return the query parameters of every klines request, in order."""
        with self._lock:
            return [r.params for r in self.requests if r.path == "/api/v3/klines"]

    def bars(self, symbol: str, interval: str) -> pl.DataFrame | None:
        """Return the real bars of a Binance symbol id and interval (None if there are none)."""
        key = (symbol, interval)
        if key not in self._bars:
            if not symbol.endswith("USDT"):
                return None
            path = self.ohlcv_dir / f"{symbol[:-4]}_USDT-{interval}.feather"
            if not path.exists():
                return None
            df = pl.read_ipc(path)
            self._bars[key] = df.select(
                pl.col("date").dt.epoch("ms").alias("t"), "open", "high", "low", "close", "volume"
            )
        return self._bars[key]

    # ------------------------------------------------------------------ endpoints
    def handle(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(Request(path, params))
        if path == "/api/v3/ping":
            return 200, {}
        if path == "/api/v3/time":
            return 200, {"serverTime": self.now_ms}
        if path == "/api/v3/exchangeInfo":
            body = json.loads((self.responses / "http_spot_market_exchange_info.json").read_text())
            body["serverTime"] = self.now_ms
            return 200, body
        if path == "/api/v3/klines":
            return self._klines(params)
        return 404, {"code": -1, "msg": f"stub: no endpoint {path}"}

    def _klines(self, params: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            if self.fail_klines > 0:
                self.fail_klines -= 1
                return 429, {"code": -1003, "msg": "Too many requests; stub rate limit."}
        if self.garbage_klines is not None:
            return 200, self.garbage_klines
        interval = params.get("interval", "")
        if interval not in _INTERVAL_MS:
            return 400, {"code": -1120, "msg": "Invalid interval."}
        bars = self.bars(params.get("symbol", ""), interval)
        if bars is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        limit = int(params.get("limit", 500))
        if not 1 <= limit <= 1000:
            return 400, {"code": -1100, "msg": "Illegal characters found in parameter 'limit'."}
        step = _INTERVAL_MS[interval]
        live = bars.filter(pl.col("t") <= self.now_ms)
        if "startTime" in params:
            live = live.filter(pl.col("t") >= int(params["startTime"]))
        if "endTime" in params:
            live = live.filter(pl.col("t") <= int(params["endTime"]))
        # from startTime forwards; without it, the latest bars (up to endTime)
        page = live.head(limit) if "startTime" in params else live.tail(limit)
        out = []
        for t, o, h, lo, c, v in page.iter_rows():
            if t + step > self.now_ms:  # still forming
                c, v = o, v / 2
            out.append(
                [
                    t,
                    f"{o:.8f}",
                    f"{h:.8f}",
                    f"{lo:.8f}",
                    f"{c:.8f}",
                    f"{v:.8f}",
                    t + step - 1,
                    f"{v * c:.8f}",
                    100,
                    f"{v / 2:.8f}",
                    f"{v * c / 2:.8f}",
                    "0",
                ]
            )
        return 200, out


def _handler(stub: BinanceStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            u = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(u.query).items()}
            try:
                status, body = stub.handle(u.path, params)
            except Exception as e:  # a stub bug: answer 500 rather than drop the connection
                status, body = 500, {"code": -1000, "msg": f"stub error: {e!r}"}
            if isinstance(body, str):
                data, ctype = body.encode(), "text/html;charset=UTF-8"
            else:
                data, ctype = json.dumps(body).encode(), "application/json;charset=UTF-8"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
