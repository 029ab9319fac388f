"""``tierline replay serve``: a local Binance-like exchange answering from the Parquet catalog."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``replay`` (with ``serve``) to the parser."""
    p = sub.add_parser(
        "replay",
        help="serve catalog data as a local exchange (Binance spot REST) for live dry-runs",
    )
    rsub = p.add_subparsers(dest="replay_command", metavar="SUBCOMMAND")
    p.set_defaults(help_parser=p)
    s = rsub.add_parser(
        "serve",
        help="start the replay server on 127.0.0.1 until Ctrl-C / SIGTERM",
        description=(
            "Answer Binance's public spot REST endpoints (ping, time, exchangeInfo, klines, "
            "ticker/24hr, ticker/price, ticker/bookTicker, depth, avgPrice) from the catalog, "
            "re-stamped so that the --from candle is forming now and the replay advances with "
            "the wall clock. Point ccxt's binance at the printed URL (`tierline data ingest "
            "--api-url URL`, or `exchange.ccxt_config.urls` in freqtrade). Freqtrade follows a "
            "replay only at --speed 1 (it decides candle closes on the system clock). "
            "GET /tierline/status and /metrics describe the replay."
        ),
    )
    s.add_argument("--exchange", default="binance", help="catalog exchange (default binance)")
    s.add_argument("--symbol", default="BTC/USDT", help="BASE/QUOTE (default BTC/USDT)")
    s.add_argument("--timeframe", default="1m", help="candle length (default 1m)")
    s.add_argument(
        "--from",
        dest="start",
        default=None,
        help="catalog time of the candle forming at start (default: 1000 candles in)",
    )
    s.add_argument("--speed", type=float, default=1.0, help="replay speed (default 1)")
    s.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: a free one)")
    s.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from tierline.data.catalog import Catalog
    from tierline.live.replay import ReplayConfig, ReplayServer
    from tierline.signals import signal_handlers

    config = ReplayConfig(
        exchange=args.exchange,
        symbol=args.symbol,
        timeframe=args.timeframe,
        start=args.start,
        speed=args.speed,
        host=args.host,
        port=args.port,
    )
    server = ReplayServer(config, Catalog())
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    with signal_handlers(on_signal, (signal.SIGINT, signal.SIGTERM)), server:
        print(f"replay: {server.describe()}")
        print(f"replay: serving at {server.url} (Ctrl-C to stop)", flush=True)
        while not stop.wait(1.0):
            pass
    print(f"replay: stopped at {server.status()['cursor']} (catalog time)", flush=True)
    return 0
