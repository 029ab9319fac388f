"""Real ``freqtrade trade`` in dry-run against a replay server, and its trade database read back.

`run_dryrun` starts freqtrade in a child process (its own process group) with the given
configs plus a replay overlay (`write_replay_overlay`) last, so that every ccxt URL points at
the `ReplayServer`, the run is a dry-run whatever the configs say, and its trade database is a
run-specific SQLite file. It stops freqtrade with SIGINT (freqtrade's Ctrl-C path: it closes
its exchange and database), then SIGTERM, then SIGKILL, each after a grace period, and returns
once the whole process group is gone. SIGTERM and SIGHUP sent to this process while freqtrade
runs stop the run the same way (freqtrade is in its own session: dying at once would leave it
running); a second Ctrl-C or signal while freqtrade is being stopped kills its process group
at once. `read_trades` reads the trades table of that database.

While it runs, the replay server's ``/metrics`` carries the dry-run's figures read from the
database (open and closed trades, realised P&L, last entry and exit time), and they are logged
once per candle.

Freqtrade's REST API is enabled on 127.0.0.1 only when ``TIERLINE_API_USER`` and
``TIERLINE_API_PASSWORD`` are set: they reach freqtrade through its own environment-variable
configuration (``FREQTRADE__API_SERVER__USERNAME``/``PASSWORD``), never through a file, a
command line or a log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from tierline.data.atomic import write_text_atomic
from tierline.errors import ConfigError, EngineError

if TYPE_CHECKING:
    from tierline.live.replay import ReplayServer

__all__ = [
    "API_PASSWORD_ENV",
    "API_USER_ENV",
    "DryRunResult",
    "read_trades",
    "run_dryrun",
    "trade_metrics",
    "write_replay_overlay",
]

logger = logging.getLogger(__name__)

API_USER_ENV = "TIERLINE_API_USER"
API_PASSWORD_ENV = "TIERLINE_API_PASSWORD"  # noqa: S105 - the variable's name, not a secret
#: Seconds freqtrade gets to exit after SIGINT, then after SIGTERM, before SIGKILL.
STOP_GRACE_S = 30.0
#: Seconds between two freqtrade loop iterations in a replay (freqtrade's default is 5).
REPLAY_THROTTLE_S = 2
#: Log lines after which freqtrade idles forever in a replay: the run is stopped as an error.
FATAL_LOG_LINES = (
    "is not compatible with exchange",
    "Active pair whitelist is empty",
    '"code": -11',  # a Binance request error from the replay (-1120, -1121, -1130): no retry helps
)

#: Columns `read_trades` returns (freqtrade's ``trades`` table, dates as UTC datetimes).
TRADE_COLUMNS = (
    "id",
    "pair",
    "is_open",
    "open_date",
    "close_date",
    "open_rate",
    "close_rate",
    "amount",
    "fee_open",
    "fee_close",
    "close_profit",
    "close_profit_abs",
    "exit_reason",
)


@dataclass(frozen=True, kw_only=True)
class DryRunResult:
    """What a dry-run left behind.

    Attributes
    ----------
    returncode
        Freqtrade's exit code (None when it had to be killed).
    db_path
        The trade database.
    log_path
        Freqtrade's log file.
    overlay_path
        The replay overlay config.
    status
        The replay server's `ReplayServer.status` when the run was stopped (before freqtrade
        was asked to exit: however long that takes, no candle it did not trade on counts).
    stopped_by
        ``condition``, ``interrupt`` (Ctrl-C), ``signal`` (SIGTERM or SIGHUP), ``exited``
        (freqtrade stopped on its own), ``timeout`` or ``error`` (freqtrade logged that it
        cannot trade the pair; see ``error``).
    error
        The log line that stopped the run, if any.
    """

    returncode: int | None
    db_path: Path
    log_path: Path
    overlay_path: Path
    status: dict[str, Any]
    stopped_by: str
    unknown_paths: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def trades(self) -> pl.DataFrame:
        """Return the dry-run's trades (`read_trades` of the database)."""
        return read_trades(self.db_path)

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of freqtrade's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def write_replay_overlay(
    path: Path,
    *,
    server_url: str,
    pair: str,
    db_url: str,
    timeframe: str | None = None,
    api_port: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the freqtrade config layered last over the champion's for a replay run.

    It sets: ``dry_run`` true, ``initial_state`` running, exchange ``binance`` with every ccxt
    URL (sync and async) at ``server_url`` (`tierline.live.replay.ccxt_config`) and no
    websockets, the pair whitelist ``[pair]``, the trade database, a 2 s loop, and optionally
    the timeframe, freqtrade's REST API on 127.0.0.1 (credentials come from the environment,
    not from this file) and ``extra`` keys.

    Parameters
    ----------
    path
        The overlay file to write.
    server_url
        Base URL of the replay server.
    pair
        The one pair to trade (``BTC/USDT``).
    db_url
        Freqtrade's trade database (``sqlite:///...``).
    timeframe
        Overrides the configs' timeframe; None keeps it.
    api_port
        Port of freqtrade's REST API on 127.0.0.1; None leaves the API as configured.
    extra
        More top-level keys, set last.

    Returns
    -------
    pathlib.Path
        ``path`` (written atomically).
    """
    from tierline.live.replay import ccxt_config

    conf = ccxt_config(server_url)
    doc: dict[str, Any] = {
        "dry_run": True,
        "initial_state": "running",
        "db_url": db_url,
        "exchange": {
            "name": "binance",
            "pair_whitelist": [pair],
            "pair_blacklist": [],
            "ccxt_config": conf,
            "ccxt_async_config": conf,
            # websockets would go to stream.binance.com; the replay speaks REST only
            "enable_ws": False,
            "markets_refresh_interval": 60,
        },
        "pairlists": [{"method": "StaticPairList"}],
        "internals": {"process_throttle_secs": REPLAY_THROTTLE_S, "heartbeat_interval": 60},
        "telegram": {"enabled": False, "token": "", "chat_id": ""},
    }
    if timeframe is not None:
        doc["timeframe"] = timeframe
    if api_port is not None:
        doc["api_server"] = {
            "enabled": True,
            "listen_ip_address": "127.0.0.1",
            "listen_port": api_port,
            "verbosity": "error",
            "enable_openapi": False,
            "CORS_origins": [],
        }
    if extra:
        doc.update(extra)
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")
    return path


def _api_env() -> dict[str, str]:
    """Return freqtrade's API credentials as its environment variables (empty when unset)."""
    user, password = os.environ.get(API_USER_ENV), os.environ.get(API_PASSWORD_ENV)
    if not user and not password:
        return {}
    if not user or not password:
        raise ConfigError(
            f"freqtrade's REST API needs both {API_USER_ENV} and {API_PASSWORD_ENV} set "
            "(or neither, to leave it off)"
        )
    return {
        "FREQTRADE__API_SERVER__USERNAME": user,
        "FREQTRADE__API_SERVER__PASSWORD": password,
        "FREQTRADE__API_SERVER__JWT_SECRET_KEY": secrets.token_hex(32),
        "FREQTRADE__API_SERVER__WS_TOKEN": secrets.token_urlsafe(24),
    }


def api_enabled() -> bool:
    """Return whether the environment asks for freqtrade's REST API."""
    return bool(os.environ.get(API_USER_ENV) or os.environ.get(API_PASSWORD_ENV))


def run_dryrun(
    configs: Sequence[Path],
    *,
    server: ReplayServer,
    workdir: Path,
    pair: str,
    timeframe: str | None = None,
    userdir: Path | None = None,
    stop_when: Callable[[], bool] | None = None,
    timeout_s: float | None = None,
    api_port: int | None = None,
    extra_config: Mapping[str, Any] | None = None,
    extra_args: Sequence[str] = (),
    echo: bool = False,
) -> DryRunResult:
    """Run ``freqtrade trade`` (dry-run) against ``server`` until stopped; return what it left.

    Parameters
    ----------
    configs
        Freqtrade config files, in layering order (the replay overlay goes last).
    server
        A started `ReplayServer`.
    workdir
        Where the overlay, the trade database and freqtrade's log are written.
    pair
        The replayed pair (``BTC/USDT``).
    timeframe
        Overrides the configs' timeframe (it must be one the server serves).
    userdir
        Freqtrade user directory (default `tierline.engines.freqtrade.userdir`).
    stop_when
        Checked every second; True stops the run. None: run until freqtrade exits, Ctrl-C, or
        the replay passes the catalog's end.
    timeout_s
        Stop after this many seconds whatever happens.
    api_port
        Port of freqtrade's REST API on 127.0.0.1 (needs ``TIERLINE_API_USER`` and
        ``TIERLINE_API_PASSWORD``); None: the API stays off.
    extra_config
        More keys for the overlay.
    extra_args
        More ``freqtrade trade`` arguments, appended as given.
    echo
        Copy freqtrade's log lines to stderr as they come.

    Raises
    ------
    ConfigError
        If a config file is missing or the API credentials are half set.
    EngineError
        If freqtrade cannot be started.
    """
    from tierline.engines.freqtrade import SHIM_STRATEGY
    from tierline.engines.freqtrade import userdir as default_userdir

    udir = Path(userdir) if userdir is not None else default_userdir()
    for c in configs:
        if not Path(c).exists():
            raise ConfigError(f"freqtrade config {c} does not exist")
    env_api = _api_env() if api_port is not None else {}
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "tradesv3.dryrun.sqlite"
    log_path = workdir / "freqtrade.log"
    overlay = write_replay_overlay(
        workdir / "config.replay.json",
        server_url=server.url,
        pair=pair,
        db_url=f"sqlite:///{db_path.resolve()}",
        timeframe=timeframe,
        api_port=api_port if env_api else None,
        extra=extra_config,
    )
    cmd = [sys.executable, "-m", "freqtrade", "trade"]
    for c in [*configs, overlay]:
        cmd += ["--config", str(c)]
    cmd += ["--strategy", SHIM_STRATEGY, "--userdir", str(udir), "--logfile", str(log_path)]
    cmd += list(extra_args)
    # freqtrade configures no logging (so writes no --logfile) when it sees PYTEST_VERSION
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FREQTRADE__", "PYTEST_"))}
    env.update(env_api)
    env.setdefault("PYTHONUNBUFFERED", "1")
    server.metrics_provider = lambda: trade_metrics(db_path)
    logger.info("freqtrade dry-run against %s; trades in %s, log %s", server.url, db_path, log_path)
    with _signals_stop_the_run() as signalled:
        try:
            return _supervise(
                cmd,
                env,
                server=server,
                db_path=db_path,
                log_path=log_path,
                overlay=overlay,
                signalled=signalled,
                stop_when=stop_when,
                timeout_s=timeout_s,
                echo=echo,
            )
        finally:
            server.metrics_provider = None


def _supervise(
    cmd: list[str],
    env: dict[str, str],
    *,
    server: ReplayServer,
    db_path: Path,
    log_path: Path,
    overlay: Path,
    signalled: list[int],
    stop_when: Callable[[], bool] | None,
    timeout_s: float | None,
    echo: bool,
) -> DryRunResult:
    """Start freqtrade, watch it until a stop condition, stop it; return what it left."""
    try:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter, arguments built here
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as e:
        raise EngineError(f"cannot start freqtrade ({cmd[0]} -m freqtrade): {e}") from e
    stopped_by = "exited"
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    tail = _LogTail(log_path, echo=echo)
    last_report = 0
    try:
        while proc.poll() is None:
            time.sleep(1.0)
            tail.pump()
            if signalled:
                logger.warning("signal %d received: stopping freqtrade", signalled[0])
                stopped_by = "signal"
                break
            candle = server.clock.cursor_ms() // server.clock.tf_ms
            if candle != last_report:
                last_report = candle
                _log_metrics(db_path, server)
            if tail.fatal is not None:
                stopped_by = "error"
                logger.error("freqtrade cannot trade the replay: %s", tail.fatal)
                break
            if stop_when is not None and stop_when():
                stopped_by = "condition"
                break
            if stop_when is None and server.finished():
                logger.warning("the replay has reached the end of the catalog: stopping")
                stopped_by = "condition"
                break
            if deadline is not None and time.monotonic() > deadline:
                stopped_by = "timeout"
                break
    except KeyboardInterrupt:
        stopped_by = "interrupt"
    finally:
        status = server.status()  # where the replay was when the run was stopped
        returncode = _stop(proc)
        tail.pump()
    return DryRunResult(
        returncode=returncode,
        db_path=db_path,
        log_path=log_path,
        overlay_path=overlay,
        status=status,
        stopped_by=stopped_by,
        unknown_paths=dict(server.unknown_paths),
        error=tail.fatal,
    )


@contextlib.contextmanager
def _signals_stop_the_run() -> Iterator[list[int]]:
    """While inside, SIGTERM and SIGHUP ask the run to stop instead of killing this process.

    Yields the list the received signal numbers are appended to. The default action would end
    this process at once and leave freqtrade (in a session of its own) running; a second
    signal raises KeyboardInterrupt, which `_stop` answers by killing freqtrade's process
    group. Only the main thread can install handlers: elsewhere nothing changes.
    """
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt

    from tierline.signals import signal_handlers

    with signal_handlers(on_signal, (signal.SIGTERM, signal.SIGHUP)):
        yield received


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    """Stop freqtrade and everything in its process group; return its exit code.

    A KeyboardInterrupt while waiting for it (a second Ctrl-C) kills the group at once and is
    raised again: nothing is left running.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        if proc.poll() is not None:
            break
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            logger.warning("freqtrade did not stop on %s", sig.name)
        except BaseException:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        return None
    # freqtrade is gone; anything it left in its group goes too
    _signal_group(proc.pid, signal.SIGKILL)
    return proc.returncode


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


class _LogTail:
    """Follows freqtrade's log file: copies new lines to stderr when asked, and keeps the
    first line showing that freqtrade cannot trade the replayed pair (`FATAL_LOG_LINES`)."""

    def __init__(self, path: Path, *, echo: bool) -> None:
        self.path = path
        self.echo = echo
        self.fatal: str | None = None
        self._pos = 0

    def pump(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("r", errors="replace") as f:
            f.seek(self._pos)
            chunk = f.read()
            self._pos = f.tell()
        if not chunk:
            return
        if self.echo:
            sys.stderr.write(chunk)
            sys.stderr.flush()
        if self.fatal is None:
            for line in chunk.splitlines():
                if any(p in line for p in FATAL_LOG_LINES):
                    self.fatal = line.split(" - ", 3)[-1].strip()
                    break


# ---------------------------------------------------------------------- the trade database
def read_trades(db_path: Path) -> pl.DataFrame:
    """Return freqtrade's trades from its SQLite database, oldest first.

    Columns `TRADE_COLUMNS`; ``open_date``/``close_date`` are UTC datetimes (freqtrade
    stores naive UTC). An absent database (freqtrade never got as far as creating it) gives
    an empty frame.
    """
    schema: dict[str, Any] = {
        "id": pl.Int64,
        "pair": pl.String,
        "is_open": pl.Boolean,
        "open_date": pl.Datetime("us", "UTC"),
        "close_date": pl.Datetime("us", "UTC"),
        "open_rate": pl.Float64,
        "close_rate": pl.Float64,
        "amount": pl.Float64,
        "fee_open": pl.Float64,
        "fee_close": pl.Float64,
        "close_profit": pl.Float64,
        "close_profit_abs": pl.Float64,
        "exit_reason": pl.String,
    }
    if not Path(db_path).exists():
        return pl.DataFrame(schema=schema)
    con = sqlite3.connect(f"file:{Path(db_path).resolve()}?mode=ro", uri=True, timeout=10)
    try:
        try:
            cur = con.execute(f"SELECT {', '.join(TRADE_COLUMNS)} FROM trades ORDER BY id")  # noqa: S608
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return pl.DataFrame(schema=schema)
            raise
        rows = cur.fetchall()
    finally:
        con.close()
    data = {c: [r[i] for r in rows] for i, c in enumerate(TRADE_COLUMNS)}
    for c in ("open_date", "close_date"):
        data[c] = [_parse_dt(v) for v in data[c]]
    data["is_open"] = [bool(v) for v in data["is_open"]]
    return pl.DataFrame(data, schema=schema)


def _parse_dt(v: Any) -> datetime | None:
    if v is None:
        return None
    dt = datetime.fromisoformat(str(v))
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def trade_metrics(db_path: Path) -> dict[str, float]:
    """Return Prometheus gauges of a dry-run from its database.

    ``tierline_dryrun_open_trades``, ``..._closed_trades``, ``..._realized_pnl`` (quote
    currency, after fees), ``..._last_entry_seconds`` and ``..._last_exit_seconds`` (epoch
    seconds of the last fill; 0 before the first).
    """
    try:
        t = read_trades(db_path)
    except sqlite3.Error:
        return {}
    closed = t.filter(~pl.col("is_open"))
    last_entry = t["open_date"].max()
    last_exit = closed["close_date"].max()
    return {
        "tierline_dryrun_open_trades": float(t["is_open"].sum()),
        "tierline_dryrun_closed_trades": float(len(closed)),
        "tierline_dryrun_realized_pnl": float(closed["close_profit_abs"].sum() or 0.0),
        "tierline_dryrun_last_entry_seconds": _epoch(last_entry),
        "tierline_dryrun_last_exit_seconds": _epoch(last_exit),
    }


def _epoch(v: Any) -> float:
    return v.timestamp() if isinstance(v, datetime) else 0.0


def _log_metrics(db_path: Path, server: ReplayServer) -> None:
    m = trade_metrics(db_path)
    if not m:
        return
    logger.info(
        "replay at %s: %d open trade(s), %d closed, realised P&L %.6f",
        server.status()["cursor"],
        int(m["tierline_dryrun_open_trades"]),
        int(m["tierline_dryrun_closed_trades"]),
        m["tierline_dryrun_realized_pnl"],
    )


# ---------------------------------------------------------------------- tierline trade --replay
def replay_workdir(strategy: str, kind: str = "trade", userdir: Path | None = None) -> Path:
    """Return a new run directory ``<userdir>/replay/<kind>-<strategy>-<UTC time>``.

    Parameters
    ----------
    strategy
        Strategy name.
    kind
        ``trade`` (``tierline trade --replay``) or ``shadow``.
    userdir
        Freqtrade user directory (default `tierline.engines.freqtrade.userdir`).
    """
    from tierline.engines.freqtrade import userdir as default_userdir

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    base = (userdir or default_userdir()) / "replay"
    path = base / f"{kind}-{strategy}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = base / f"{kind}-{strategy}-{stamp}-{n}"
    return path


def latest_replay_run(strategy: str, userdir: Path | None = None) -> Path | None:
    """Return the newest replay run directory of ``strategy`` with a manifest, or None.

    The strategy is the one the manifest names (a directory name cannot tell ``sma`` from
    ``sma-x``); unreadable manifests are passed over.

    Parameters
    ----------
    strategy
        Strategy name.
    userdir
        Freqtrade user directory (default `tierline.engines.freqtrade.userdir`).
    """
    from tierline.engines.freqtrade import userdir as default_userdir
    from tierline.live.shadow import MANIFEST, read_manifest

    base = (userdir or default_userdir()) / "replay"
    runs = []
    for p in base.glob(f"*-{strategy}-*"):
        if not (p / MANIFEST).is_file():
            continue
        try:
            run, _ = read_manifest(p)
        except ConfigError:
            continue
        if run.strategy == strategy:
            runs.append(p)
    return max(runs, key=lambda p: (p / MANIFEST).stat().st_mtime) if runs else None


def trade_replay(
    record: Mapping[str, Any],
    configs: Sequence[Path],
    *,
    start: str | None = None,
    workdir: Path | None = None,
    extra_args: Sequence[str] = (),
) -> DryRunResult:
    """Run the champion of ``record`` in a freqtrade dry-run against a local replay.

    The replay serves the record's catalog exchange, first symbol and timeframe from the
    workspace catalog (from ``start``, default 1000 candles in). It runs until Ctrl-C,
    freqtrade exits, or the replay reaches the end of the catalog; freqtrade and the server
    are stopped either way. The run directory (overlay, database, log, manifest) is printed;
    ``tierline shadow STRATEGY --run latest`` reports its parity with the backtest.

    Parameters
    ----------
    record
        The champion's registry record (strategy, params, exchange, symbols, timeframe).
    configs
        The champion's freqtrade configs, in layering order.
    start
        Catalog time of the first replayed candle (None: 1000 candles in).
    workdir
        The run directory (None: a new `replay_workdir`).
    extra_args
        More ``freqtrade trade`` arguments.

    Returns
    -------
    DryRunResult
        What the run left (database, log, final replay status, why it stopped).

    Raises
    ------
    ConfigError
        If the record lacks its market.
    DataError
        If the catalog lacks the bars.
    """
    from tierline.data.catalog import Catalog
    from tierline.live.replay import ReplayConfig, ReplayServer
    from tierline.live.shadow import ShadowRun, write_manifest

    try:
        strategy = str(record["strategy"])
        exchange = str(record["exchange"])
        symbol = str(record["symbols"][0])
        timeframe = str(record["timeframe"])
    except (KeyError, IndexError, TypeError) as e:
        raise ConfigError(f"registry record lacks its market ({e})") from e
    work = workdir or replay_workdir(strategy)
    server = ReplayServer(
        ReplayConfig(exchange=exchange, symbol=symbol, timeframe=timeframe, start=start),
        Catalog(),
    )
    with server:
        print(f"replay: {server.describe()} at {server.url}", file=sys.stderr)
        print(f"replay: freqtrade dry-run in {work} (Ctrl-C stops it)", file=sys.stderr, flush=True)
        result = run_dryrun(
            configs,
            server=server,
            workdir=work,
            pair=symbol,
            api_port=8080 if api_enabled() else None,
            extra_args=extra_args,
            echo=True,
        )
    run = ShadowRun(
        strategy=strategy,
        params=dict(record.get("params") or {}),
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
    )
    write_manifest(work, run, result.status)
    return result
