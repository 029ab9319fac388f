"""Start-up time of the CLI: ``tierline --help`` and ``tierline data --help`` (target < 0.5 s).

Runs each command 5 times in fresh processes and writes the median and max wall time to
``bench/results/cli.json``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUT = Path("bench/results/cli.json")
COMMANDS = (["--help"], ["data", "--help"], ["sweep", "--help"])


def main() -> int:
    """Time the commands and write the figures."""
    exe = str(Path(sys.executable).with_name("tierline"))
    results = {}
    for argv in COMMANDS:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([exe, *argv], check=True, capture_output=True)  # noqa: S603
            times.append(time.perf_counter() - t0)
        key = "tierline " + " ".join(argv)
        results[key] = {"median_s": statistics.median(times), "max_s": max(times)}
        print(f"{key:<24} median {results[key]['median_s']:.3f} s  max {max(times):.3f} s")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"target_s": 0.5, "results": results}, indent=2))
    print(f"written: {OUT}")
    return 0 if all(r["max_s"] < 0.5 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
