"""The replay commands as a user runs them: ``tierline replay serve``, ``tierline trade
--replay`` and ``tierline shadow --run latest`` (real freqtrade, real Binance 1m bars)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from tierline.cli import main
from tierline.data.catalog import Catalog
from tierline.live.dryrun import read_trades

REPO = Path(__file__).resolve().parents[2]
TIERLINE = [sys.executable, "-m", "tierline"]
FLIP = '''
from __future__ import annotations

import pandas as pd

from tierline.strategy.contract import strategy


@strategy(name="flip", params=[], warmup=lambda p: 1)
def flip(bars: pd.DataFrame, p: dict) -> pd.DataFrame:
    """Long after a bar that closed above its open, flat after one that closed below."""
    up = (bars["close"] > bars["open"]).to_numpy()
    down = (bars["close"] < bars["open"]).to_numpy()
    return pd.DataFrame({"enter_long": up, "exit_long": down}, index=bars.index)
'''


@pytest.fixture(scope="module")
def workspace(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A catalog with real 1m bars, a user strategy, a registry record and a user dir."""
    root = tmp_path_factory.mktemp("replaycli")
    cat = Catalog(root / "parquet")
    src = shared_data / "ohlcv" / "binance_spot_tradingstrategyga" / "BTC_USDT-1m.feather"
    df = pl.read_ipc(src).rename({"date": "ts"})
    cat.write_ohlcv(df, exchange="binance", symbol="BTC/USDT", timeframe="1m", source=src.name)
    (root / "strategies").mkdir()
    (root / "strategies" / "flip.py").write_text(FLIP)
    udir = root / "user_data"
    (udir / "strategies").mkdir(parents=True)
    shutil.copy(REPO / "freqtrade/user_data/strategies/tierline_shim.py", udir / "strategies")
    shutil.copy(REPO / "freqtrade/user_data/config.json", udir)
    (root / "registry").mkdir()
    record = {
        "schema_version": 1,
        "strategy": "flip",
        "params": {},
        "exchange": "binance",
        "symbols": ["BTC/USDT"],
        "timeframe": "1m",
        "execution": {"fee": 0.001, "stake": None, "initial_cash": 10000.0},
        "promoted_at": "2024-04-07T00:00:00Z",
        "previous": None,
    }
    (root / "registry" / "flip.json").write_text(json.dumps(record))
    return {
        "TIERLINE_DATA_DIR": str(cat.root),
        "TIERLINE_STRATEGIES_DIR": str(root / "strategies"),
        "TIERLINE_FREQTRADE_USERDIR": str(udir),
        "TIERLINE_REGISTRY_DIR": str(root / "registry"),
    }


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_replay_serve_answers_and_stops_cleanly_on_a_signal(
    workspace: dict[str, str], sig: signal.Signals
) -> None:
    env = {**os.environ, **workspace}
    proc = subprocess.Popen(
        [*TIERLINE, "replay", "serve", "--from", "2024-04-03T00:00", "--port", "0"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "binance BTC/USDT 1m as Binance BTCUSDT" in first
        line = proc.stdout.readline()
        url = line.split("serving at ", 1)[1].split()[0]
        body = json.loads(urllib.request.urlopen(f"{url}/api/v3/time", timeout=5).read())
        assert abs(body["serverTime"] - time.time() * 1000) < 3000
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
        assert "replay: stopped at 2024-04-03T00:0" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_replay_serve_unknown_symbol_is_a_clear_error(workspace: dict[str, str]) -> None:
    env = {**os.environ, **workspace}
    out = subprocess.run(
        [*TIERLINE, "replay", "serve", "--symbol", "DOGE/USDT", "--port", "0"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 3  # DataError
    assert "no binance DOGE/USDT 1m bars in the catalog" in out.stderr


def test_trade_replay_then_shadow_of_that_run(
    workspace: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, **workspace}
    udir = Path(workspace["TIERLINE_FREQTRADE_USERDIR"])
    # 00:02 closed up: the champion enters at 00:03's open as soon as freqtrade runs (when it
    # starts within the replay's first candle: begin early in a wall-clock minute)
    sec = time.time() % 60
    if sec > 30:
        time.sleep(61 - sec)
    proc = _trade_replay(env)
    try:
        # a start-up slower than the first candle trades at 00:05's open: two candles after
        # the start, plus freqtrade's loop on a loaded machine (the loop ends at the trade)
        deadline = time.monotonic() + 150
        trades = None
        while time.monotonic() < deadline and proc.poll() is None:
            dbs = list((udir / "replay").glob("trade-flip-*/tradesv3.dryrun.sqlite"))
            if dbs and read_trades(dbs[0]).height > 0:
                trades = read_trades(dbs[0])
                break
            time.sleep(1)
        assert trades is not None, "no dry-run trade within 150 s"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run_dir = dbs[0].parent
    assert "replay stopped (interrupt)" in err
    assert (run_dir / "replay.json").is_file() and (run_dir / "freqtrade.log").is_file()
    assert not [p for p in Path("/proc").glob("[0-9]*") if str(run_dir) in _cmdline(p)]
    # the champion's config (market orders, order-book pricing) filled at the replayed open
    assert trades["open_rate"][0] in (65575.05, 65485.85)  # 00:03's or 00:05's open

    for k, v in workspace.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(REPO)
    rc = main(["shadow", "flip", "--run", "latest", "--engine", "reference"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"the replay run in {run_dir}" in out
    assert "PASS shadow" in out


def _trade_replay(env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``tierline trade flip --replay`` from 00:03 (stderr piped)."""
    return subprocess.Popen(
        [*TIERLINE, "trade", "flip", "--replay", "--replay-from", "2024-04-03T00:03"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _freqtrade_of(run_dirs: Path) -> tuple[Path, int] | None:
    """Return the replay run directory under ``run_dirs`` whose freqtrade runs, and its pid."""
    for p in Path("/proc").glob("[0-9]*"):
        cmdline = _cmdline(p)
        if " -m freqtrade trade " in cmdline and str(run_dirs) in cmdline:
            run_dir = Path(cmdline.split(str(run_dirs) + "/", 1)[1].split("/", 1)[0])
            return run_dirs / run_dir, int(p.name)
    return None


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_trade_replay_stopped_by_sigterm_leaves_nothing_running(
    workspace: dict[str, str], tmp_path: Path, sig: str
) -> None:
    """SIGTERM (a service manager, ``kill``) or SIGHUP (a closed terminal) stops freqtrade, in
    its own session, and the server: nothing keeps trading against a dead replay."""
    udir = tmp_path / "user_data"  # a run directory of its own, apart from the other tests'
    shutil.copytree(workspace["TIERLINE_FREQTRADE_USERDIR"], udir)
    env = {**os.environ, **workspace, "TIERLINE_FREQTRADE_USERDIR": str(udir)}
    proc = _trade_replay(env)
    try:
        deadline = time.monotonic() + 120
        found = None
        while found is None and proc.poll() is None and time.monotonic() < deadline:
            found = _freqtrade_of(udir / "replay")
            time.sleep(0.2)
        assert found is not None, "freqtrade did not start within 120 s"
        run_dir, freqtrade_pid = found
        proc.send_signal(getattr(signal, sig))
        code = proc.wait(timeout=90)
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _gone(freqtrade_pid), f"freqtrade (pid {freqtrade_pid}) outlived tierline"
    assert not [p for p in Path("/proc").glob("[0-9]*") if str(run_dir) in _cmdline(p)]
    assert code == 0, err
    assert "replay stopped (signal)" in err
    assert (run_dir / "replay.json").is_file()


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
