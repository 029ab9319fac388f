"""Benchmark the tier-3 adapter against a plain hand-written hftbacktest loop.

Both replay the same orders over the same L2 events, on two real sessions of
``../shared/data/l2/hftbacktest_raw`` (each imported into a temporary catalog and converted
once with `l2_events`; the conversion is timed separately and excluded from the ratio):

- ``usdm``: Binance USD-M BTCUSDT, one file (467k events, ~5.5 minutes, 16 legs);
- ``spot``: Binance spot BTCUSDT, two chained files across midnight (fewer events, 318k, but
  twice the time span, ~11 minutes, so about twice the legs): the largest real L2 there is.

Per session:

- ``adapter``: `tierline.engines.hft.execution.run_tier3`, taker style, on 10 s bars it builds
  itself (from the trades inside the converted L2 events), with a fixed-schedule strategy
  (enter every 4th bar, exit two bars later), constant 10 ms latency, risk-averse queue,
  partial-fill exchange; it builds the bars, calls the signal function, runs its numba loop
  (equity marks, sizing, fill booking) and builds the leg, fill and trades tables and metrics;
- ``adapter_given_bars``: the same with the bars passed in;
- ``baseline``: a hand-written ``@njit`` loop over a fresh hftbacktest backtest on the same
  events and models that elapses to each decision time the adapter used and sends the same
  IOC orders (same side, quantity and limit price), waiting for each response.

Each side runs once to compile (numba compiles per process), then ``--repeat`` times,
interleaved; the ratio compares the best (fastest) of the repeats, the figure least disturbed
by other work on a shared machine (the medians are written too). ``fixed_ms`` = adapter minus
baseline: what the adapter adds around the replay, mostly independent of the number of events.
Writes ``bench/results/tier3_hft.json`` (ratio = adapter / baseline; target <= 1.2).

Usage::

    python benchmarks/bench_tier3_hft.py [--repeat 9] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.2
RAW = Path("l2/hftbacktest_raw")
TF = "10s"
#: name -> (raw files under RAW, catalog exchange, symbol)
SESSIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "usdm": (("usdm/btcusdt_20240808.gz",), "binanceusdm", "BTC/USDT"),
    "spot": (("spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz"), "binance", "BTC/USDT"),
}


def shared_data() -> Path:
    """Return ../shared/data (or $TIERLINE_SHARED_DATA)."""
    return Path(os.environ.get("TIERLINE_SHARED_DATA", REPO.parent / "shared" / "data"))


def schedule_strategy() -> Any:
    """Return a strategy entering on every 4th 10 s slot and exiting two slots later."""
    from tierline.strategy.contract import Int, strategy

    @strategy(name="bench_schedule", params=[Int("every", 2, 20, default=4)], warmup=lambda p: 1)
    def schedule(bars: pd.DataFrame, p: Any) -> pd.DataFrame:
        slot = (bars["date"].astype("int64") // 10_000_000_000) % p["every"]
        return pd.DataFrame(
            {"enter_long": slot == 0, "exit_long": slot == p["every"] // 2}, index=bars.index
        )

    return schedule


def baseline_loop() -> Any:
    """Return the hand-written njit loop (compiled on first call)."""
    from hftbacktest import LIMIT
    from hftbacktest.order import IOC
    from numba import njit

    @njit
    def run(hbt, ts, side, qty, ticks):  # type: ignore[no-untyped-def]
        hbt.elapse(0)
        filled = 0.0
        for i in range(ts.shape[0]):
            if ts[i] > hbt.current_timestamp:
                if hbt.elapse(ts[i] - hbt.current_timestamp) != 0:
                    break
            depth = hbt.depth(0)
            oid = i + 1
            if side[i] > 0:
                price = depth.best_ask + ticks * depth.tick_size
                hbt.submit_buy_order(0, oid, price, qty[i], IOC, LIMIT, False)
            else:
                price = depth.best_bid - ticks * depth.tick_size
                hbt.submit_sell_order(0, oid, price, qty[i], IOC, LIMIT, False)
            hbt.wait_order_response(0, oid, 3_600_000_000_000)
            order = hbt.orders(0).get(oid)
            if order is not None:
                filled += order.arr[0].qty - order.arr[0].leaves_qty
            hbt.clear_inactive_orders(0)
        return filled

    return run


def measure(name: str, repeat: int) -> dict[str, Any]:
    """Import, convert and time one session; return its figures."""
    from hftbacktest import HashMapMarketDepthBacktest

    from tierline.core.conventions import ExecutionConfig
    from tierline.data.catalog import Catalog
    from tierline.data.importers import ImportOptions
    from tierline.data.importers.binance_raw import load as load_raw
    from tierline.engines.hft.config import HftConfig
    from tierline.engines.hft.events import l2_events
    from tierline.engines.hft.execution import build_asset, run_tier3

    files, exchange, symbol = SESSIONS[name]
    with tempfile.TemporaryDirectory(prefix="bench-tier3-") as tmp:
        catalog = Catalog(Path(tmp) / "parquet")
        t0 = time.perf_counter()
        got = load_raw([shared_data() / RAW / f for f in files], ImportOptions(symbol=symbol))
        assert got.book is not None and got.trades is not None
        catalog.write_book(got.book, exchange=exchange, symbol=symbol, source="bench")
        catalog.write_trades(got.trades, exchange=exchange, symbol=symbol, source="bench")
        t_import = time.perf_counter() - t0
        t0 = time.perf_counter()
        events = l2_events(catalog, exchange, symbol, cache=False)
        t_convert = time.perf_counter() - t0
        n_events = len(events.events)
        config = HftConfig()
        strategy = schedule_strategy()
        execution = ExecutionConfig(initial_cash=10_000.0)

        def adapter(bars: Any = None) -> Any:
            return run_tier3(
                strategy,
                {"every": 4},
                catalog=catalog,
                exchange=exchange,
                symbol=symbol,
                timeframe=TF,
                config=config,
                execution=execution,
                events=events,
                bars=bars,
            )

        first = adapter()  # compiles the adapter's loop
        orders = first.fills.join(first.legs.select("leg", "side"), on="leg").filter(
            pl.col("order") >= 0
        )
        legs = first.legs
        ts = legs["decision_ts"].dt.epoch("ns").to_numpy().astype(np.int64)
        side = legs["side"].to_numpy().astype(np.int64)
        qty = legs["requested_qty"].to_numpy().astype(np.float64)
        loop = baseline_loop()

        def baseline() -> float:
            asset, keep = build_asset(events, config)
            hbt = HashMapMarketDepthBacktest([asset])
            try:
                return float(loop(hbt, ts, side, qty, config.execution.taker_limit_ticks))
            finally:
                hbt.close()
                del keep

        base_filled = baseline()  # compiles the baseline loop
        bars = first.extra["bars"]
        a_times, g_times, b_times = [], [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            adapter()
            a_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            adapter(bars)
            g_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            baseline()
            b_times.append(time.perf_counter() - t0)
    a, g, b = min(a_times), min(g_times), min(b_times)
    a_med, g_med, b_med = (statistics.median(x) for x in (a_times, g_times, b_times))
    return {
        "data": [str(RAW / f) for f in files],
        "events": n_events,
        "bars": bars.height,
        "legs": legs.height,
        "orders_adapter": int(legs["orders"].sum()),
        "fill_rows_adapter": orders.height,
        "filled_qty_adapter": float(legs["filled_qty"].sum()),
        "filled_qty_baseline_first_orders": base_filled,
        "import_seconds": round(t_import, 3),
        "conversion_seconds": round(t_convert, 3),
        "conversion_events_per_s": round(n_events / t_convert),
        "adapter_seconds": round(a, 4),
        "baseline_seconds": round(b, 4),
        "adapter_given_bars_seconds": round(g, 4),
        "adapter_events_per_s": round(n_events / a),
        "baseline_events_per_s": round(n_events / b),
        "ratio": round(a / b, 3),
        "ratio_given_bars": round(g / b, 3),
        "fixed_ms": round((a - b) * 1e3, 1),
        "bars_ms": round((a - g) * 1e3, 1),
        "median_adapter_seconds": round(a_med, 4),
        "median_baseline_seconds": round(b_med, 4),
        "median_ratio": round(a_med / b_med, 3),
        "median_ratio_given_bars": round(g_med / b_med, 3),
        "met": a / b <= TARGET_RATIO,
    }


def main() -> int:
    """Run the benchmark; print and write the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tier3_hft.json")
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))
    for files, _, _ in SESSIONS.values():
        for f in files:
            if not (shared_data() / RAW / f).exists():
                print(
                    f"bench_tier3_hft: {shared_data() / RAW / f} not found "
                    "(set TIERLINE_SHARED_DATA)",
                    file=sys.stderr,
                )
                return 1
    sessions = {name: measure(name, args.repeat) for name in SESSIONS}
    result = {
        "benchmark": "tier3_hft",
        "timing": f"best of {args.repeat} interleaved repeats (medians too)",
        "target_ratio": TARGET_RATIO,
        "met": all(r["met"] for r in sessions.values()),
        "sessions": sessions,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    for name, r in sessions.items():
        print(
            f"{name}: {r['events']:,} events, {r['legs']} legs: adapter {r['adapter_seconds']}s "
            f"vs baseline {r['baseline_seconds']}s = {r['ratio']}x (given bars "
            f"{r['ratio_given_bars']}x; medians {r['median_ratio']}x); fixed {r['fixed_ms']} ms"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
