"""Shadow trading: a freqtrade dry-run on replayed candles, the backtest of the same candles, and
their trade-by-trade parity.

`run_shadow` starts a `tierline.live.replay.ReplayServer` and real ``freqtrade trade`` in
dry-run against it (`tierline.live.dryrun.run_dryrun`) for a number of candles, then
`shadow_report` compares the dry-run's trades (read from freqtrade's SQLite database) with a
backtest of the same catalog candles (``tierline.engines.run_backtest``, freqtrade's own
backtester by default) through `tierline.core.parity.compare_trades`, with the tier-2
tolerance: same entry and exit candles, prices within half a tick, per-trade return within
1e-6, total P&L within 0.01 % of max(|P&L|, initial cash).

How live times map to candles: a dry-run fill at wall time ``t`` falls in the replayed candle
``floor(t - shift, timeframe)`` (catalog time), which is the candle whose open the backtest
fills at (decide at t's close, fill at t+1's open): both tables then carry the fill candle's
open time, as the trades table does.

Which candles are backtested: from ``warmup - 1`` candles before the live run's first decision
(the last candle closed when freqtrade first asked for candles) to the last candle closed when
the run stopped. The backtest therefore starts flat exactly where the live run did, with the
history the strategy needs (the built-ins are window-stable, so the signals agree with the
live run's, computed on freqtrade's longer window).

Mismatches that are explained rather than counted:

- still open at the end: a dry-run trade open when the run stopped is compared on its entry
  only; the backtest closes it at the last closed candle's close;
- partial last candle: a fill decided on the last closed candle lands in the candle that was
  forming when the run stopped; the backtest fills it at the last close, the dry-run at the
  forming candle's open (the replay's price), so only its entry (or nothing) is compared;
- start-up: a backtest trade entered before the live run's first decision (the live loop
  starts flat) and the dry-run trades it overlaps.

Anything else (a trade in one of them only, another candle, another price) is a mismatch and
fails the report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from tierline.core.result import TRADES_TABLE_SCHEMA
from tierline.errors import ConfigError, DataError

if TYPE_CHECKING:
    from tierline.core.conventions import ExecutionConfig
    from tierline.core.parity import EngineParity
    from tierline.data.catalog import Catalog
    from tierline.strategy.contract import Strategy

__all__ = [
    "DEFAULT_CANDLES",
    "ShadowReport",
    "ShadowRun",
    "live_trades_table",
    "run_shadow",
    "shadow_report",
]

logger = logging.getLogger(__name__)

#: Candles a shadow run replays by default.
DEFAULT_CANDLES = 10
#: Seconds the dry-run keeps going after its last candle closes (freqtrade acts on it).
SETTLE_S = 15.0
#: File in a dry-run's work directory describing the run (read by `shadow_report` callers).
MANIFEST = "replay.json"
_MS = 1_000_000
LIVE = "freqtrade dry-run"


@dataclass(frozen=True, kw_only=True)
class ShadowRun:
    """What a shadow run is: strategy, parameters, market and conventions.

    Attributes
    ----------
    strategy
        Strategy name (see `tierline.strategy.get_strategy`).
    params
        Its parameters (checked).
    exchange, symbol, timeframe
        The catalog market replayed.
    strategies_dir
        User strategies folder (None: the workspace's).
    record
        Path of the registry record the run follows, if any.
    """

    strategy: str
    params: dict[str, Any]
    exchange: str
    symbol: str
    timeframe: str
    strategies_dir: str | None = None
    record: str | None = None


@dataclass(frozen=True, kw_only=True)
class Explained:
    """A difference between dry-run and backtest that has a known cause."""

    entry_ts: Any
    reason: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class ShadowReport:
    """The parity of a dry-run with the backtest of its candles.

    Attributes
    ----------
    parity
        `compare_trades` of the comparable trades (backtest = reference side).
    explained
        Differences with a known cause, not counted against parity.
    mismatches
        Differences without one (besides those in ``parity``).
    live, backtest
        Both trades tables (the live one with an ``is_open`` column).
    span
        Catalog times: first decision candle, last closed candle (ISO strings).
    """

    parity: EngineParity
    explained: tuple[Explained, ...]
    mismatches: tuple[str, ...]
    live: pl.DataFrame
    backtest: pl.DataFrame
    span: tuple[str, str]
    engine: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        """Return whether the dry-run traded like the backtest, within tolerance."""
        return self.parity.passed and not self.mismatches

    def summary(self) -> str:
        """Return the report for the terminal."""
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"{verdict} shadow: {len(self.live)} dry-run trade(s) "
            f"({int(self.live['is_open'].sum()) if len(self.live) else 0} open at the end) vs "
            f"{len(self.backtest)} backtest trade(s) ({self.engine}) on the candles "
            f"{self.span[0]} .. {self.span[1]} (catalog time)",
            self.parity.summary().replace(f"{self.parity.engine}:", "compared trades:", 1),
        ]
        for e in self.explained:
            lines.append(
                f"    explained: {_ts(e.entry_ts)} {e.reason}{': ' + e.detail if e.detail else ''}"
            )
        for m in self.mismatches:
            lines.append(f"    MISMATCH: {m}")
        lines += [f"    note: {n}" for n in self.notes]
        return "\n".join(lines)

    def table(self) -> pl.DataFrame:
        """Return both sides trade by trade (joined on the entry candle)."""
        bt = self.backtest.select(
            "entry_ts",
            pl.col("exit_ts").alias("bt_exit_ts"),
            pl.col("entry_price").alias("bt_entry"),
            pl.col("exit_price").alias("bt_exit"),
            pl.col("return").alias("bt_return"),
        )
        lv = self.live.select(
            "entry_ts",
            pl.col("exit_ts").alias("live_exit_ts"),
            pl.col("entry_price").alias("live_entry"),
            pl.col("exit_price").alias("live_exit"),
            pl.col("return").alias("live_return"),
            "is_open",
        )
        return bt.join(lv, on="entry_ts", how="full", coalesce=True).sort("entry_ts")


def live_trades_table(trades: pl.DataFrame, *, shift_ms: int, tf_ms: int) -> pl.DataFrame:
    """Return a dry-run's trades (`tierline.live.dryrun.read_trades`) as a trades table.

    Fill times become the open time (catalog time) of the replayed candle they fell in; open
    trades keep null exit columns; ``is_open`` is added.

    Parameters
    ----------
    trades
        The dry-run's trades as `tierline.live.dryrun.read_trades` returns them.
    shift_ms
        The replay's served time minus catalog time (``status["shift_ms"]``).
    tf_ms
        The timeframe in milliseconds.
    """

    def candle(col: str) -> pl.Expr:
        ms = pl.col(col).dt.epoch("ms") - shift_ms
        return ((ms // tf_ms) * tf_ms * _MS).cast(pl.Datetime("ns", "UTC"))

    qty = pl.col("amount")
    out = trades.select(
        candle("open_date").alias("entry_ts"),
        candle("close_date").alias("exit_ts"),
        pl.col("open_rate").alias("entry_price"),
        pl.col("close_rate").alias("exit_price"),
        qty.alias("qty"),
        (
            qty * pl.col("open_rate") * pl.col("fee_open")
            + (qty * pl.col("close_rate") * pl.col("fee_close")).fill_null(0.0)
        ).alias("fees"),
        pl.col("close_profit_abs").alias("pnl"),
        pl.col("close_profit").alias("return"),
        pl.col("is_open"),
    )
    return out.select(*(pl.col(c).cast(d) for c, d in TRADES_TABLE_SCHEMA.items()), "is_open").sort(
        "entry_ts"
    )


def shadow_report(
    dryrun_trades: pl.DataFrame,
    status: Mapping[str, Any],
    run: ShadowRun,
    *,
    catalog: Catalog,
    config: ExecutionConfig,
    engine: str = "freqtrade",
) -> ShadowReport:
    """Compare a dry-run's trades with the backtest of the candles it ran on.

    Parameters
    ----------
    dryrun_trades
        `tierline.live.dryrun.read_trades` of the run's database.
    status
        The replay server's `ReplayServer.status` when the run stopped (shift, clock, first
        candle request).
    run
        Strategy, parameters and market.
    catalog
        The catalog the replay served.
    config
        Execution conventions of the backtest (fee, stake, initial cash of the dry-run).
    engine
        Backtest engine (``freqtrade`` or ``reference``; any of `tierline.engines.ENGINES`).

    Raises
    ------
    DataError
        If the run never asked for candles (freqtrade did not get going) or no candle closed.
    """
    from tierline.core.instruments import instrument_for
    from tierline.core.parity import ParityTolerance, compare_trades
    from tierline.data.market import timeframe_ns
    from tierline.engines import run_backtest
    from tierline.strategy import get_strategy

    tf = timeframe_ns(run.timeframe) // _MS
    shift = int(status["shift_ms"])
    first_klines = status.get("first_klines_ms")
    if first_klines is None:
        raise DataError(
            "the dry-run never asked the replay for candles (freqtrade did not start trading); "
            "see its log"
        )
    wall0, speed = int(status["wall_start_ms"]), float(status["speed"])
    served = wall0 + int((int(first_klines) - wall0) * speed)
    first_decision = (served - shift) // tf * tf - tf
    last_closed = int(status["cursor_ms"]) // tf * tf - tf
    if last_closed < first_decision:
        raise DataError("no candle closed during the dry-run: nothing to compare")
    strategy: Strategy = get_strategy(
        run.strategy, Path(run.strategies_dir) if run.strategies_dir else None
    )
    params = strategy.validate_params(run.params)
    start = first_decision - (strategy.warmup(params) - 1) * tf
    bars = catalog.read_ohlcv(
        run.exchange, run.symbol, run.timeframe, _dt(start), _dt(last_closed + tf)
    )
    market = {"exchange": run.exchange, "symbol": run.symbol}
    bt = run_backtest(engine, strategy, bars, params, config, **market)
    live = live_trades_table(dryrun_trades, shift_ms=shift, tf_ms=tf)
    spec = instrument_for(run.exchange, run.symbol, bars)
    half = spec.tick / 2
    end_candle = _dt(last_closed + tf)
    live_start = _dt(first_decision + tf)

    explained: list[Explained] = []
    mismatches: list[str] = []
    bt_rest, live_rest = bt.trades, live.drop("is_open")
    # start-up: backtest trades entered before the live loop's first decision
    early = bt.trades.filter(pl.col("entry_ts") < live_start)
    for row in early.iter_rows(named=True):
        explained.append(
            Explained(
                entry_ts=row["entry_ts"],
                reason="backtest trade entered before the live run's first decision",
                detail=f"the live loop starts flat at {_ts(live_start)}",
            )
        )
        overlapped = live_rest.filter(pl.col("entry_ts") < row["exit_ts"])
        for lrow in overlapped.iter_rows(named=True):
            explained.append(
                Explained(
                    entry_ts=lrow["entry_ts"],
                    reason="dry-run trade while the backtest held its start-up position",
                )
            )
        live_rest = live_rest.filter(pl.col("entry_ts") >= row["exit_ts"])
    bt_rest = bt_rest.filter(pl.col("entry_ts") >= live_start)
    # the end: open dry-run trades, fills in the candle forming when the run stopped
    at_end = bt_rest.filter(pl.col("exit_ts") >= end_candle)
    open_live = live.filter(pl.col("is_open"))
    end_live = live.filter(pl.col("is_open") | (pl.col("exit_ts") >= end_candle))
    for row in at_end.iter_rows(named=True):
        match = end_live.filter(pl.col("entry_ts") == row["entry_ts"])
        if match.is_empty():
            continue  # left to compare_trades: it will show as a one-sided trade
        lrow = match.row(0, named=True)
        d_entry = abs(lrow["entry_price"] - row["entry_price"])
        if row["entry_ts"] >= end_candle:
            reason = "partial last candle: entry decided on the last closed candle"
        elif lrow["is_open"]:
            reason = "still open at the end of the dry-run (the backtest closes at the last close)"
        else:
            reason = "partial last candle: exit decided on the last closed candle"
        if d_entry >= half and row["entry_ts"] < end_candle:
            mismatches.append(
                f"{_ts(row['entry_ts'])}: entry price {lrow['entry_price']!r} (dry-run) vs "
                f"{row['entry_price']!r} (backtest)"
            )
        explained.append(
            Explained(
                entry_ts=row["entry_ts"],
                reason=reason,
                detail=f"entry {lrow['entry_price']!r} vs {row['entry_price']!r}",
            )
        )
        bt_rest = bt_rest.filter(pl.col("entry_ts") != row["entry_ts"])
        live_rest = live_rest.filter(pl.col("entry_ts") != row["entry_ts"])
    for lrow in live.filter(pl.col("entry_ts") >= end_candle).iter_rows(named=True):
        if live_rest.filter(pl.col("entry_ts") == lrow["entry_ts"]).is_empty():
            continue
        explained.append(
            Explained(
                entry_ts=lrow["entry_ts"],
                reason="partial last candle: entry decided on the last closed candle, filled in "
                "the candle forming when the run stopped (the backtest has no candle to fill in)",
            )
        )
        live_rest = live_rest.filter(pl.col("entry_ts") != lrow["entry_ts"])
    for lrow in open_live.iter_rows(named=True):
        if live_rest.filter(pl.col("entry_ts") == lrow["entry_ts"]).is_empty():
            continue
        mismatches.append(
            f"{_ts(lrow['entry_ts'])}: dry-run trade still open, the backtest has no trade "
            "entered there that runs to the end"
        )
        live_rest = live_rest.filter(pl.col("entry_ts") != lrow["entry_ts"])
    parity = compare_trades(
        bt_rest,
        live_rest,
        engine=LIVE,
        tolerance=ParityTolerance(tick=spec.tick),
        initial_cash=config.initial_cash,
    )
    return ShadowReport(
        parity=parity,
        explained=tuple(explained),
        mismatches=tuple(mismatches),
        live=live,
        backtest=bt.trades,
        span=(_ts(_dt(first_decision)), _ts(_dt(last_closed))),
        engine=engine,
        notes=tuple(bt.notes),
    )


def run_shadow(
    run: ShadowRun,
    *,
    configs: list[Path],
    catalog: Catalog,
    config: ExecutionConfig,
    workdir: Path,
    candles: int = DEFAULT_CANDLES,
    start: str | None = None,
    engine: str = "freqtrade",
    echo: bool = False,
) -> ShadowReport:
    """Dry-run ``candles`` replayed candles with freqtrade, then report parity with the backtest.

    Parameters
    ----------
    run
        Strategy, parameters and market.
    configs
        Freqtrade configs of the strategy (the champion's), in layering order.
    catalog
        The catalog to replay.
    config
        Execution conventions of the backtest.
    workdir
        Where the dry-run writes its overlay, database, log and `MANIFEST`.
    candles
        Candles to run live (the run lasts that many timeframes at speed 1).
    start
        Catalog time of the first live candle (default: the replay's default start).
    engine
        Backtest engine.
    echo
        Copy freqtrade's log to stderr.

    Raises
    ------
    ConfigError
        If ``candles`` is not positive.
    DataError
        If the catalog lacks the bars or the run produced nothing to compare.
    """
    from tierline.live.dryrun import run_dryrun
    from tierline.live.replay import ReplayConfig, ReplayServer

    if candles < 1:
        raise ConfigError(f"--candles {candles} must be at least 1")
    rc = ReplayConfig(
        exchange=run.exchange, symbol=run.symbol, timeframe=run.timeframe, start=start
    )
    with ReplayServer(rc, catalog) as server:
        tf = server.clock.tf_ms
        stop_at = server.clock.start_ms + candles * tf + int(SETTLE_S * 1000)
        last = int(server.market.primary.ts[-1])
        if server.clock.start_ms + candles * tf > last + tf:
            raise DataError(
                f"the catalog ends at {_ts(_dt(last))}: fewer than {candles} candles after the "
                f"replay start {_ts(_dt(server.clock.start_ms))} (use --from or fewer --candles)"
            )
        logger.info(
            "shadow: %s, %d candle(s), about %.0f s",
            server.describe(),
            candles,
            (stop_at - server.clock.cursor_ms()) / 1000,
        )
        result = run_dryrun(
            configs,
            server=server,
            workdir=workdir,
            pair=run.symbol,
            timeframe=run.timeframe,
            stop_when=lambda: server.clock.cursor_ms() >= stop_at,
            timeout_s=candles * tf / 1000 + 300,
            echo=echo,
        )
    write_manifest(workdir, run, result.status)
    if result.stopped_by not in ("condition", "interrupt", "signal"):
        raise DataError(
            f"freqtrade stopped before the shadow run ended ({result.stopped_by}, exit code "
            f"{result.returncode}); its log ends:\n{result.log_tail()}"
        )
    return shadow_report(
        result.trades(), result.status, run, catalog=catalog, config=config, engine=engine
    )


def write_manifest(workdir: Path, run: ShadowRun, status: Mapping[str, Any]) -> Path:
    """Write `MANIFEST` (the run and the replay's final status) into a dry-run's directory.

    Parameters
    ----------
    workdir
        The run directory.
    run
        Strategy, parameters and market of the run.
    status
        The replay server's `ReplayServer.status` when the run stopped.
    """
    from dataclasses import asdict

    from tierline.data.atomic import write_text_atomic

    path = workdir / MANIFEST
    write_text_atomic(path, json.dumps({"run": asdict(run), "status": dict(status)}, indent=2))
    return path


def read_manifest(workdir: Path) -> tuple[ShadowRun, dict[str, Any]]:
    """Return the run and replay status recorded in a dry-run's directory.

    Raises
    ------
    ConfigError
        If the directory holds no readable `MANIFEST`.
    """
    path = workdir / MANIFEST
    try:
        doc = json.loads(path.read_text())
        return ShadowRun(**doc["run"]), dict(doc["status"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a replay run manifest ({e})") from e


def _dt(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _ts(value: Any) -> str:
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M")
