"""Benchmark: tier-1 sweep throughput and peak memory against a plain vectorbt loop.

Workload: ``sma_cross`` on 200,000 deterministic synthetic 1-minute bars (the embedded
sample generator, `tierline.data.sample`, BTC/USDT, seed 7), grid ``fast`` 5..50 step 1 x
``slow`` 20..200 step 1 with ``fast < slow``: 7,830 parameter sets (``--quick``: steps 5 and
10, 174 sets). Fee 0.001, all-equity stakes.

Each contender runs in its own subprocess (peak memory = that process's ``ru_maxrss``, imports
included) after a small warm-up call (numba compilation and caches are not timed):

- ``sweep-batched``: ``run_sweep`` (grid, no walk-forward) on the built-in ``sma_cross``, which
  declares a batched signal hook (`sma_cross_batch`: one window mean per distinct window; the
  contract's optional ``batch=``); the sweep checks it against the strategy's signal function
  on the first set of every chunk. This is what `tierline sweep` runs.
- ``sweep-plain``: ``run_sweep`` with the hook removed (the signal function called once per
  set), to show what a strategy without a hook gets.
- ``vectorbt-loop``: the plain loop: per set, the strategy's signal function (two moving
  averages per set), then ``Portfolio.from_signals`` (the vectorbt adapter's settings) per
  chunk of 256 columns.

All three are compared set by set: same number of trades and the same total return (the
sweep's kernel follows vectorbt's arithmetic, so the difference is 0 or a few ulp). Results:
``bench/results/sweep.json`` and a short text table (``sweep.txt``, also printed).
Run with ``make bench`` or ``python benchmarks/bench_sweep.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "bench" / "results"
VBT_CHUNK = 256
PHASES = ("sweep-batched", "sweep-plain", "vectorbt-loop")


# ------------------------------------------------------------------------------- workload
def grid(quick: bool) -> list[dict[str, int]]:
    """Return the parameter sets (fast-major order)."""
    fs, ss = (range(5, 51, 5), range(20, 201, 10)) if quick else (range(5, 51), range(20, 201))
    return [{"fast": f, "slow": s} for f in fs for s in ss if f < s]


def make_bars(n: int) -> Any:
    """Return ``n`` deterministic synthetic 1m bars (BTC/USDT sample, seed 7)."""
    from tierline.data.sample import SAMPLE_SYMBOLS, generate_ohlcv_1m

    days = math.ceil(n / 1440)
    return generate_ohlcv_1m(SAMPLE_SYMBOLS[0], seed=7, days=days).head(n)


def _strategy(batched: bool) -> Any:
    import dataclasses

    from tierline.strategy import get_strategy

    s = get_strategy("sma_cross")  # declares the batched hook `sma_cross_batch`
    return s if batched else dataclasses.replace(s, batch_fn=None)


# ------------------------------------------------------------------------------- phases
def _sweep(bars: Any, sets: list[dict[str, int]], batched: bool) -> tuple[np.ndarray, np.ndarray]:
    from tierline.core.conventions import ExecutionConfig
    from tierline.sweep import run_sweep

    r = run_sweep(
        _strategy(batched),
        bars,
        ExecutionConfig(fee=0.001),
        param_sets=sets,
        folds=0,
        plot=False,
        progress=False,
        top_k=5,
    )
    assert not r.failures, r.failures[:3]
    return r.table["trades"].to_numpy(), r.table["total_return"].to_numpy()


def _vectorbt_loop(bars: Any, sets: list[dict[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    from tierline.core.bars import to_strategy_frame
    from tierline.core.conventions import ExecutionConfig
    from tierline.engines.vectorbt import portfolio

    cfg = ExecutionConfig(fee=0.001)
    s = _strategy(False)
    frame = to_strategy_frame(bars)
    open_ = bars["open"].to_numpy()
    close = bars["close"].to_numpy()
    n = len(close)
    trades = np.empty(len(sets))
    total = np.empty(len(sets))
    for lo in range(0, len(sets), VBT_CHUNK):
        chunk = sets[lo : lo + VBT_CHUNK]
        enter = np.empty((n, len(chunk)), dtype=bool)
        exit_ = np.empty((n, len(chunk)), dtype=bool)
        for j, p in enumerate(chunk):
            sig = s.signals(frame, p)
            enter[:, j], exit_[:, j] = sig.enter_long, sig.exit_long
        pf = portfolio(open_, close, enter, exit_, cfg)
        rec = pf.trades.records
        counts = np.bincount(rec["col"], minlength=len(chunk))
        value = np.asarray(pf.value().iloc[-1], dtype=np.float64)
        # the adapter closes an open position at the last close and charges its exit fee
        open_rec = rec[rec["status"] == 0]
        fee = np.zeros(len(chunk))
        np.add.at(fee, open_rec["col"], open_rec["size"] * close[-1] * cfg.fee)
        trades[lo : lo + len(chunk)] = counts
        total[lo : lo + len(chunk)] = (value - fee) / cfg.initial_cash - 1.0
        del pf, rec, enter, exit_
        gc.collect()  # vectorbt objects hold reference cycles: free each chunk now
    return trades, total


def run_phase(phase: str, n_bars: int, quick: bool, out: Path) -> None:
    """Run one contender (in this process) and save its timing and per-set results."""
    bars = make_bars(n_bars)
    sets = grid(quick)
    fn = {
        "sweep-batched": lambda b, s: _sweep(b, s, True),
        "sweep-plain": lambda b, s: _sweep(b, s, False),
        "vectorbt-loop": _vectorbt_loop,
    }[phase]
    fn(bars.head(3000), sets[:3])  # warm-up: imports, numba caches
    t0 = time.perf_counter()
    trades, total = fn(bars, sets)
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    np.savez(out, trades=trades, total_return=total)
    print(json.dumps({"phase": phase, "seconds": elapsed, "peak_rss_mb": peak}))


# ------------------------------------------------------------------------------- driver
def _child(phase: str, n_bars: int, quick: bool, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", phase, "--bars", str(n_bars), "--npz", str(out)]
    if quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)  # noqa: S603
    if proc.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{proc.stderr[-4000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or one phase of it with ``--phase``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="174 sets instead of 7,830")
    ap.add_argument("--bars", type=int, default=200_000, help="1m bars (default 200,000)")
    ap.add_argument(
        "--phases", default=",".join(PHASES), help=f"contenders to run (default {','.join(PHASES)})"
    )
    ap.add_argument("--out", type=Path, default=OUT_DIR / "sweep.json", help="JSON output")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--npz", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:
        run_phase(args.phase, args.bars, args.quick, args.npz)
        return 0

    sets = grid(args.quick)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        ap.error(f"unknown phase(s) {sorted(unknown)}")
    work = len(sets) * args.bars
    print(
        f"sma_cross grid {'quick' if args.quick else 'full'}: {len(sets)} parameter sets x "
        f"{args.bars} bars = {work / 1e9:.3g} G set-bars"
    )
    results: dict[str, dict[str, Any]] = {}
    arrays: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for phase in phases:
            print(f"  running {phase} ...", flush=True)
            out = Path(tmp) / f"{phase}.npz"
            r = _child(phase, args.bars, args.quick, out)
            r["set_bars_per_s"] = work / r["seconds"]
            results[phase] = r
            with np.load(out) as z:
                arrays[phase] = (z["trades"], z["total_return"])
            print(
                f"    {r['seconds']:.1f} s, {r['set_bars_per_s'] / 1e6:.1f} M set-bars/s, "
                f"peak {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    checks: dict[str, Any] = {}
    if "vectorbt-loop" in arrays:
        vt, vr = arrays["vectorbt-loop"]
        for phase in phases:
            if phase == "vectorbt-loop":
                continue
            t, r = arrays[phase]
            checks[phase] = {
                "trade_count_mismatches": int((t != vt).sum()),
                "max_abs_total_return_diff": float(np.max(np.abs(r - vr))),
                "identical": bool((t == vt).all() and np.max(np.abs(r - vr)) <= 1e-9),
                "speedup_vs_vectorbt_loop": results["vectorbt-loop"]["seconds"]
                / results[phase]["seconds"],
            }
    report = {
        "benchmark": "tier-1 sweep vs plain vectorbt loop",
        "strategy": "sma_cross",
        "grid": "fast 5..50 step 5, slow 20..200 step 10"
        if args.quick
        else "fast 5..50 step 1, slow 20..200 step 1",
        "constraint": "fast < slow",
        "parameter_sets": len(sets),
        "bars": args.bars,
        "bars_source": "tierline.data.sample.generate_ohlcv_1m(BTC/USDT, seed=7), 1m",
        "fee": 0.001,
        "stake": "all equity",
        "vectorbt_chunk_columns": VBT_CHUNK,
        "results": results,
        "checks": checks,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    lines = [
        f"{'contender':<15}{'seconds':>10}{'M set-bars/s':>15}{'peak MB':>10}"
        f"{'x vectorbt':>12}{'identical':>11}",
    ]
    for phase, r in results.items():
        c = checks.get(phase, {})
        sp = c.get("speedup_vs_vectorbt_loop")
        lines.append(
            f"{phase:<15}{r['seconds']:>10.1f}{r['set_bars_per_s'] / 1e6:>15.1f}"
            f"{r['peak_rss_mb']:>10.0f}{(f'{sp:.1f}' if sp else '-'):>12}"
            f"{c.get('identical', '-')!s:>11}"
        )
    text = "\n".join(lines)
    report["table"] = text
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from tierline.data.atomic import write_text_atomic

    write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    write_text_atomic(args.out.with_suffix(".txt"), text + "\n")
    print(text)
    print(f"written: {args.out} and {args.out.with_suffix('.txt')}")
    bad = [p for p, c in checks.items() if not c["identical"]]
    if bad:
        print(f"results differ from the vectorbt loop: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
