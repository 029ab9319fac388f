"""``tierline shadow STRATEGY``: a freqtrade dry-run on replayed candles vs their backtest."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``shadow`` to the parser."""
    p = sub.add_parser(
        "shadow",
        help="dry-run the strategy on replayed candles, backtest them, compare trade by trade",
        description=(
            "Start the local replay of the catalog (see `tierline replay serve`) and real "
            "`freqtrade trade` in dry-run against it for --candles candles, then backtest the "
            "same candles and compare the dry-run's trades (read from its trade database) with "
            "the backtest's, with the tier-2 parity tolerance. Differences with a known cause "
            "(a trade still open at the end, the partial last candle, a backtest position from "
            "before the live start) are listed and not counted. Exit code 1 beyond tolerance. "
            "Strategy, parameters and market come from registry/STRATEGY.json when the "
            "strategy has a champion, otherwise from the options. --run analyses a finished "
            "`tierline trade STRATEGY --replay` run instead of starting one. The run lasts "
            "--candles timeframes (freqtrade follows the replay in real time)."
        ),
    )
    p.add_argument("strategy", help="strategy name")
    p.add_argument("--candles", type=int, default=None, help="candles to dry-run (default 10)")
    p.add_argument("--timeframe", default=None, help="candle length (default: champion's, or 1m)")
    p.add_argument("--from", dest="start", default=None, help="catalog time of the first candle")
    p.add_argument("--params", default=None, help="e.g. fast=10,slow=50 (default: champion's)")
    p.add_argument("--exchange", default=None, help="catalog exchange (default: champion's)")
    p.add_argument("--symbol", default=None, help="BASE/QUOTE (default: champion's)")
    p.add_argument(
        "--engine",
        default="freqtrade",
        help="backtest engine: freqtrade (default) or reference",
    )
    p.add_argument(
        "--run",
        default=None,
        help="report on a recorded replay run: its directory, or `latest`",
    )
    p.add_argument("--config", type=Path, default=None, help="freqtrade config to run")
    p.add_argument(
        "--registry", type=Path, default=None, help="registry folder (default registry/)"
    )
    p.add_argument("--workdir", type=Path, default=None, help="run directory (default: new one)")
    p.add_argument("--report", type=Path, default=None, help="write the trade table (Parquet)")
    p.add_argument("--quiet", action="store_true", help="do not echo freqtrade's log")
    g = p.add_argument_group("execution conventions (default: the champion's)")
    g.add_argument("--fee", type=float, default=None, help="fee rate per leg (default 0.001)")
    g.add_argument("--stake", type=float, default=None, help="fixed quote stake per trade")
    g.add_argument("--cash", type=float, default=None, help="initial equity (default 10000)")
    p.set_defaults(func=_cmd_shadow)


def _cmd_shadow(args: argparse.Namespace) -> int:
    import json

    from tierline.core.conventions import ExecutionConfig
    from tierline.data.atomic import write_text_atomic
    from tierline.data.catalog import Catalog
    from tierline.engines.freqtrade import userdir
    from tierline.errors import ConfigError
    from tierline.live.dryrun import latest_replay_run, read_trades, replay_workdir
    from tierline.live.shadow import (
        DEFAULT_CANDLES,
        ShadowRun,
        read_manifest,
        run_shadow,
        shadow_report,
    )
    from tierline.promotion.registry import read_record, registry_root
    from tierline.strategy import get_strategy, parse_params
    from tierline.strategy.registry import strategies_dir

    root = registry_root(args.registry)
    record = read_record(args.strategy, root) or {}
    execution = record.get("execution") or {}
    fee = args.fee if args.fee is not None else execution.get("fee", 0.001)
    stake = args.stake if args.stake is not None else execution.get("stake")
    cash = args.cash if args.cash is not None else execution.get("initial_cash", 10_000.0)
    config = ExecutionConfig(fee=float(fee), stake=stake, initial_cash=float(cash))
    catalog = Catalog()

    if args.run:
        run_dir = latest_replay_run(args.strategy) if args.run == "latest" else Path(args.run)
        if run_dir is None:
            raise ConfigError(
                f"no recorded replay run of {args.strategy!r} under {userdir() / 'replay'}: "
                f"run `tierline trade {args.strategy} --replay` first"
            )
        run, status = read_manifest(run_dir)
        print(f"shadow {run.strategy}: the replay run in {run_dir}", flush=True)
        report = shadow_report(
            read_trades(run_dir / "tradesv3.dryrun.sqlite"),
            status,
            run,
            catalog=catalog,
            config=config,
            engine=args.engine,
        )
    else:
        strategy = get_strategy(args.strategy)
        params = dict(record.get("params") or {})
        params.update(parse_params(args.params))
        params = strategy.validate_params(params)
        symbols = record.get("symbols") or ["BTC/USDT"]
        folder = strategies_dir()
        run = ShadowRun(
            strategy=strategy.name,
            params=params,
            exchange=args.exchange or record.get("exchange") or "binance",
            symbol=args.symbol or symbols[0],
            timeframe=args.timeframe or record.get("timeframe") or "1m",
            strategies_dir=str(folder.resolve()) if folder.is_dir() else None,
            record=str(root / f"{strategy.name}.json") if record else None,
        )
        work = args.workdir or replay_workdir(strategy.name, "shadow")
        configs = _configs(args, record, root)
        # the strategy, parameters and conventions the backtest uses, layered on top
        overlay = work / "config.shadow.json"
        section: dict[str, Any] = {"strategy": run.strategy, "params": params, "stake": stake}
        if run.strategies_dir:
            section["strategies_dir"] = run.strategies_dir
        doc = {"tierline": section, "fee": config.fee, "dry_run_wallet": config.initial_cash}
        work.mkdir(parents=True, exist_ok=True)
        write_text_atomic(overlay, json.dumps(doc, indent=2) + "\n")
        candles = args.candles if args.candles is not None else DEFAULT_CANDLES
        print(
            f"shadow {run.strategy} ({', '.join(f'{k}={v}' for k, v in params.items())}): "
            f"{run.exchange} {run.symbol} {run.timeframe}, {candles} candle(s) of freqtrade "
            f"dry-run against the replay; run directory {work}",
            flush=True,
        )
        report = run_shadow(
            run,
            configs=[*configs, overlay],
            catalog=catalog,
            config=config,
            workdir=work,
            candles=candles,
            start=args.start,
            engine=args.engine,
            echo=not args.quiet,
        )
    print(report.summary())
    with _wide_tables():
        print(report.table())
    if args.report:
        from tierline.data.atomic import atomic_path

        with atomic_path(args.report) as tmp:
            report.table().write_parquet(tmp)
        print(f"trade table written to {args.report}")
    return 0 if report.passed else 1


def _configs(args: argparse.Namespace, record: dict[str, Any], root: Path) -> list[Path]:
    """Return the freqtrade configs of the run: --config, the champion's, or the template."""
    from tierline.engines.freqtrade import userdir

    if args.config is not None:
        return [args.config]
    if record:
        from tierline.promotion.handoff import prepare_trade

        cmd = prepare_trade(args.strategy, registry_root=root)
        cmd.remove_temporaries()
        argv = cmd.argv
        return [Path(argv[i + 1]) for i, a in enumerate(argv) if a == "--config"]
    return [userdir() / "config.json"]


def _wide_tables() -> Any:
    import polars as pl

    return pl.Config(tbl_rows=50, tbl_cols=20, tbl_width_chars=200)
