"""Dry-run housekeeping: stopping the freqtrade process group, finding the latest run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tierline.live.dryrun import _stop, latest_replay_run
from tierline.live.shadow import MANIFEST, ShadowRun, write_manifest


def _run(udir: Path, name: str, strategy: str, mtime: float) -> Path:
    work = udir / "replay" / name
    work.mkdir(parents=True)
    run = ShadowRun(
        strategy=strategy, params={}, exchange="binance", symbol="BTC/USDT", timeframe="1m"
    )
    path = write_manifest(work, run, {"shift_ms": 0})
    os.utime(path, (mtime, mtime))
    return work


def test_latest_run_is_the_newest_manifest_naming_the_strategy(tmp_path: Path) -> None:
    old = _run(tmp_path, "trade-sma-20240101T000000", "sma", 1_000.0)
    new = _run(tmp_path, "shadow-sma-20240102T000000", "sma", 2_000.0)
    # newer, and its directory matches "*-sma-*", but it is another strategy's run
    _run(tmp_path, "trade-sma-x-20240103T000000", "sma-x", 3_000.0)
    broken = tmp_path / "replay" / "trade-sma-20240104T000000"
    broken.mkdir()
    (broken / MANIFEST).write_text("{not json")
    os.utime(broken / MANIFEST, (4_000.0, 4_000.0))
    assert latest_replay_run("sma", tmp_path) == new
    assert (
        latest_replay_run("sma-x", tmp_path) == tmp_path / "replay" / "trade-sma-x-20240103T000000"
    )
    new.joinpath(MANIFEST).unlink()
    assert latest_replay_run("sma", tmp_path) == old
    assert latest_replay_run("rsi", tmp_path) is None


#: A stand-in for a freqtrade that does not stop on Ctrl-C, with a child in its group.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""


def test_a_second_ctrl_c_while_stopping_kills_the_whole_group() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())

    def second_ctrl_c(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, second_ctrl_c)
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(KeyboardInterrupt):
            _stop(proc)  # SIGINT is ignored: it would wait 30 s, then SIGTERM (ignored too)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 10
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and "zombie" not in _status(child):
        assert time.monotonic() < deadline, "the group's other process outlived the stop"
        time.sleep(0.05)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"
