"""End to end: real ``freqtrade trade`` in dry-run against the replay of real Binance 1m bars.

A strategy that trades on most bars ("flip": long after an up bar, flat after a down bar) runs
for two replayed candles (about two and a half minutes of wall time); its dry-run trades in
freqtrade's database must sit on the candles, and at the prices, where the backtest of the
same candles trades, and nothing may be left running afterwards.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import polars as pl
import pytest

from tierline.core.conventions import ExecutionConfig
from tierline.data.catalog import Catalog
from tierline.live.dryrun import read_trades, run_dryrun
from tierline.live.replay import ReplayConfig, ReplayServer
from tierline.live.shadow import ShadowRun, run_shadow

REPO = Path(__file__).resolve().parents[2]
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
#: 00:02 closes up, 00:03 down, 00:04 up (real Binance BTC/USDT): entry at 00:03's open, exit
#: at 00:04's open, entry at 00:05's open.
START = "2024-04-03T00:03"


@pytest.fixture(scope="module")
def live_env(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("live")
    cat = Catalog(root / "parquet")
    src = shared_data / "ohlcv" / "binance_spot_tradingstrategyga" / "BTC_USDT-1m.feather"
    df = pl.read_ipc(src).rename({"date": "ts"})
    cat.write_ohlcv(df, exchange="binance", symbol="BTC/USDT", timeframe="1m", source=src.name)
    strategies = root / "strategies"
    strategies.mkdir()
    (strategies / "flip.py").write_text(FLIP)
    return {"catalog": cat.root, "strategies": strategies, "root": root}


def _wait_for_minute_start(latest: float = 5.0) -> None:
    """Start within the first ``latest`` seconds of a wall-clock minute.

    The replay's first candle is the wall-clock minute the server starts in, and freqtrade
    must make its first decision (and fill it) inside that candle for the trades below. Its
    start-up takes about 5 s on an idle machine and several times that on a loaded 2-core CI
    runner: starting at a minute's beginning leaves it the whole minute.
    """
    sec = time.time() % 60
    if sec > latest:
        time.sleep(60 - sec + 0.5)


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(d.name))
    return pids


def test_freqtrade_dry_run_trades_where_the_backtest_trades(
    live_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # freqtrade/user_data (the shim) is found from the project root
    monkeypatch.setenv("TIERLINE_STRATEGIES_DIR", str(live_env["strategies"]))
    catalog = Catalog(live_env["catalog"])
    work = live_env["root"] / "shadow"
    work.mkdir()
    overlay = work / "config.shadow.json"
    overlay.write_text(
        json.dumps(
            {
                "tierline": {"strategy": "flip", "params": {}, "stake": None},
                "fee": 0.001,
                "dry_run_wallet": 10_000,
            }
        )
    )
    run = ShadowRun(
        strategy="flip", params={}, exchange="binance", symbol="BTC/USDT", timeframe="1m"
    )
    _wait_for_minute_start()
    report = run_shadow(
        run,
        configs=[REPO / "freqtrade" / "user_data" / "config.json", overlay],
        catalog=catalog,
        config=ExecutionConfig(fee=0.001, initial_cash=10_000.0),
        workdir=work,
        candles=2,
        start=START,
        engine="freqtrade",
        echo=False,
    )
    print(report.summary())
    assert report.span[0] == "2024-04-03 00:02", (
        "freqtrade's first decision was not in the replay's first candle: its start-up took "
        f"over a minute (see {work / 'freqtrade.log'})"
    )
    bars = catalog.read_ohlcv("binance", "BTC/USDT", "1m", "2024-04-03T00:00", "2024-04-03T00:10")
    opens = {t.strftime("%H:%M"): o for t, o in zip(bars["ts"], bars["open"], strict=True)}

    # freqtrade's own database: a closed round trip 00:03 -> 00:04 and an open trade from 00:05
    db = read_trades(work / "tradesv3.dryrun.sqlite")
    assert len(db) == 2
    first, second = db.row(0, named=True), db.row(1, named=True)
    assert (first["is_open"], second["is_open"]) == (False, True)
    assert first["open_rate"] == opens["00:03"] == 65575.05
    assert first["close_rate"] == opens["00:04"] == 65475.96
    assert second["open_rate"] == opens["00:05"] == 65485.85
    # the fills fall in those replayed candles
    live = report.live
    assert [t.strftime("%H:%M") for t in live["entry_ts"]] == ["00:03", "00:05"]
    assert live["exit_ts"][0].strftime("%H:%M") == "00:04"

    # the backtest of the same candles: the same closed trade, to the tick and 1e-6 in return
    assert report.passed, report.summary()
    assert report.parity.matched == 1
    bt = report.backtest.row(0, named=True)
    assert bt["entry_ts"].strftime("%H:%M") == "00:03" and bt["entry_price"] == 65575.05
    assert bt["exit_ts"].strftime("%H:%M") == "00:04" and bt["exit_price"] == 65475.96
    assert abs(first["close_profit"] - bt["return"]) < 1e-6
    assert [e.reason.split(":")[0] for e in report.explained] == ["partial last candle"]

    # nothing left running: no freqtrade process of this run, the replay port closed
    assert _processes_mentioning(str(work)) == []


def test_unknown_pair_makes_freqtrade_report_and_the_run_stop(
    live_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("TIERLINE_STRATEGIES_DIR", str(live_env["strategies"]))
    work = live_env["root"] / "bad"
    champ = live_env["root"] / "champ.json"
    champ.write_text(json.dumps({"tierline": {"strategy": "flip", "params": {}}}))
    cfg = ReplayConfig(exchange="binance", symbol="BTC/USDT", timeframe="1m", start=START)
    with ReplayServer(cfg, Catalog(live_env["catalog"])) as server:
        t0 = time.monotonic()
        result = run_dryrun(
            [REPO / "freqtrade" / "user_data" / "config.json", champ],
            server=server,
            workdir=work,
            pair="ETH/USDT",  # the replay serves BTC/USDT only
            timeframe="1m",
            timeout_s=90,
        )
    assert result.stopped_by == "error"
    assert time.monotonic() - t0 < 60
    assert result.error is not None
    assert "ETH/USDT is not compatible with exchange Binance" in result.error
    assert _processes_mentioning(str(work)) == []
