"""Benchmark the freqtrade adapter against freqtrade run directly on a hand-written strategy.

Both run freqtrade's own backtester on the same synthetic 1-minute bars (200k by default, 20k
with ``--quick``; `tierline.data.sample`, BTC/USDT, tick 0.01), offline (generated markets):

- ``adapter_cli``: ``tierline backtest sma_cross --engine freqtrade`` in a fresh process, bars
  read from a Parquet catalog: imports, catalog read, feather export, freqtrade, normalisation,
  equity curve and metrics; what a user waits for;
- ``direct_cli``: ``freqtrade backtesting --strategy SmaCrossDirect`` in a fresh process on
  the same bars already in freqtrade's feather format (the hand-written strategy in
  ``benchmarks/freqtrade_strategies``; markets served on 127.0.0.1), ``--export none``;
- ``adapter_api`` / ``direct_api``: the same two in this process after a warm-up (imports
  done): `tierline.engines.freqtrade.run` versus freqtrade's ``Backtesting`` class loading the
  feather file and running SmaCrossDirect.

Writes ``bench/results/freqtrade.json``; ``ratio`` = adapter_cli / direct_cli (target <= 1.2),
``ratio_api`` = adapter_api / direct_api.

Usage::

    python benchmarks/bench_tier2_freqtrade.py [--quick] [--bars N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

REPO = Path(__file__).resolve().parents[1]
USERDIR = REPO / "freqtrade" / "user_data"
STRATEGY_PATH = REPO / "benchmarks" / "freqtrade_strategies"
TARGET_RATIO = 1.2
PARAMS = {"fast": 10, "slow": 50}


def sample_bars(n: int) -> pl.DataFrame:
    """Return ``n`` synthetic 1-minute BTC/USDT bars (tierline's sample generator, seed 7)."""
    from tierline.data.sample import SAMPLE_SYMBOLS, generate_ohlcv_1m

    days = -(-n // 1440)
    return generate_ohlcv_1m(SAMPLE_SYMBOLS[0], seed=7, days=days).head(n)


def _timed_process(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return seconds, proc.stdout + proc.stderr


def adapter_cli(catalog_root: Path, env: dict[str, str]) -> tuple[float, int]:
    """Return (seconds, trades) of ``tierline backtest --engine freqtrade`` in a new process."""
    cmd = [
        sys.executable,
        "-m",
        "tierline",
        "backtest",
        "sma_cross",
        "--engine",
        "freqtrade",
        "--exchange",
        "synthetic",
        "--symbol",
        "BTC/USDT",
        "--timeframe",
        "1m",
        "--params",
        ",".join(f"{k}={v}" for k, v in PARAMS.items()),
    ]
    seconds, out = _timed_process(cmd, {**env, "TIERLINE_DATA_DIR": str(catalog_root)})
    trades = next(int(line.split()[0]) for line in out.splitlines() if line.endswith(" trades"))
    return seconds, trades


def direct_cli(work: Path, url: str, env: dict[str, str]) -> tuple[float, int]:
    """Return (seconds, trades) of ``freqtrade backtesting`` on SmaCrossDirect, new process."""
    exe = Path(sys.executable).parent / "freqtrade"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "freqtrade"]
    cmd += [
        "backtesting",
        "--userdir",
        str(USERDIR),
        "-c",
        str(USERDIR / "config.json"),
        "-c",
        str(work / "config.direct.json"),
        "--strategy",
        "SmaCrossDirect",
        "--strategy-path",
        str(STRATEGY_PATH),
        "--datadir",
        str(work / "data"),
        "--export",
        "none",
        "--cache",
        "none",
    ]
    seconds, out = _timed_process(cmd, env)
    row = next(line for line in out.splitlines() if "SmaCrossDirect" in line and "│" in line)
    trades = int(row.split("│")[2])
    return seconds, trades


def adapter_api(bars: pl.DataFrame) -> tuple[float, int]:
    """Return (seconds, trades) of `tierline.engines.freqtrade.run` in this process."""
    from tierline.core.conventions import ExecutionConfig
    from tierline.engines import freqtrade
    from tierline.strategies.sma_cross import sma_cross

    t0 = time.perf_counter()
    result = freqtrade.run(
        sma_cross, bars, PARAMS, ExecutionConfig(), exchange="synthetic", symbol="BTC/USDT"
    )
    return time.perf_counter() - t0, len(result.trades)


def direct_api(work: Path) -> tuple[float, int]:
    """Return (seconds, trades) of freqtrade's Backtesting on SmaCrossDirect in this process."""
    from freqtrade.optimize.backtesting import Backtesting

    from tierline.core.instruments import instrument_for
    from tierline.engines import freqtrade

    markets = freqtrade.ccxt_markets([instrument_for("synthetic", "BTC/USDT")])
    t0 = time.perf_counter()
    with freqtrade._quiet_freqtrade(), freqtrade.offline_markets(markets):
        conf = freqtrade._freqtrade_config(
            [USERDIR / "config.json", work / "config.direct.json"], USERDIR, work / "data"
        )
        conf.update(strategy="SmaCrossDirect", strategy_path=str(STRATEGY_PATH))
        bt = Backtesting(conf)
        try:
            data, timerange = bt.load_bt_data()
            strat = bt.strategylist[0]
            bt.backtest_one_strategy(strat, data, timerange)
            trades = len(bt.all_bt_content["SmaCrossDirect"]["results"])
        finally:
            bt.cleanup()
            bt.exchange.close()
    return time.perf_counter() - t0, trades


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the JSON figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20k bars instead of 200k")
    ap.add_argument("--bars", type=int, default=None, help="number of 1m bars")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "freqtrade.json")
    args = ap.parse_args(argv)
    n = args.bars or (20_000 if args.quick else 200_000)

    os.environ.setdefault("TIERLINE_FREQTRADE_USERDIR", str(USERDIR))
    os.environ.setdefault("TIERLINE_VENUES", str(REPO / "nautilus" / "venues.toml"))
    env = dict(os.environ)

    from tierline.core.conventions import ExecutionConfig
    from tierline.core.instruments import instrument_for
    from tierline.data.catalog import Catalog
    from tierline.engines import freqtrade

    bars = sample_bars(n)
    spec = instrument_for("synthetic", "BTC/USDT")
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-freqtrade-") as tmp:
        work = Path(tmp)
        catalog = Catalog(work / "parquet")
        catalog.write_ohlcv(
            bars, exchange="synthetic", symbol="BTC/USDT", timeframe="1m", source="bench"
        )
        freqtrade.export_bars(bars, spec.symbol, "1m", work / "data", pad=False)
        with freqtrade.serve_exchange_info([spec]) as url:
            freqtrade.write_run_config(
                work / "config.direct.json",
                strategy="sma_cross",
                params=PARAMS,
                config=ExecutionConfig(),
                pair=spec.symbol,
                timeframe="1m",
                api_url=url,
            )
            print(f"freqtrade run directly (CLI, hand-written SmaCrossDirect), {n} bars ...")
            figures["direct_cli"] = direct_cli(work, url, env)
        print(f"adapter (tierline backtest --engine freqtrade, new process), {n} bars ...")
        figures["adapter_cli"] = adapter_cli(work / "parquet", env)
        print("in-process runs (after a warm-up) ...")
        adapter_api(bars.head(2_000))  # imports and first-call costs
        figures["direct_api"] = direct_api(work)
        figures["adapter_api"] = adapter_api(bars)

    out: dict[str, Any] = {
        "benchmark": "tier2_freqtrade",
        "bars": n,
        "timeframe": "1m",
        "strategy": "sma_cross",
        "params": PARAMS,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
    }
    for key, (seconds, trades) in figures.items():
        out[key] = {"seconds": round(seconds, 3), "trades": trades}
    out["ratio"] = round(figures["adapter_cli"][0] / figures["direct_cli"][0], 3)
    out["ratio_api"] = round(figures["adapter_api"][0] / figures["direct_api"][0], 3)
    out["target_ratio"] = TARGET_RATIO
    out["within_target"] = out["ratio"] <= TARGET_RATIO
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for key in ("direct_cli", "adapter_cli", "direct_api", "adapter_api"):
        print(f"  {key:<12} {out[key]['seconds']:8.2f} s  {out[key]['trades']} trades")
    print(
        f"ratio adapter/direct: {out['ratio']:.2f} (new processes), {out['ratio_api']:.2f} "
        f"(in process); target <= {TARGET_RATIO}"
    )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
