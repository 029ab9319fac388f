"""`tierline strategies`, `tierline check` and `tierline backtest` on a temporary catalog."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from tierline.cli import main
from tierline.core.conventions import ExecutionConfig
from tierline.core.reference import run
from tierline.data.catalog import Catalog
from tierline.strategies.sma_cross import sma_cross

USER_STRATEGIES = '''
import pandas as pd
from tierline.strategy import Int, strategy


@strategy(name="user_momentum", params=[Int("n", 2, 20, default=5)], warmup=lambda p: p["n"] + 1)
def user_momentum(bars, p):
    """Buy when the close is above the close n bars ago; sell when below."""
    c = bars["close"].to_numpy()
    prev = pd.Series(c).shift(p["n"]).to_numpy()
    return pd.DataFrame({"enter_long": c > prev, "exit_long": c < prev}, index=bars.index)


@strategy(name="user_peek", params=[], warmup=lambda p: 2)
def user_peek(bars, p):
    """Looks one bar ahead (a bug the check must catch)."""
    c = bars["close"]
    return pd.DataFrame(
        {"enter_long": c.shift(-1) > c, "exit_long": c.shift(-1) < c}, index=bars.index
    )
'''


@pytest.fixture(scope="module")
def workspace(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ws")
    path = shared_data / "ohlcv" / "binance_spot_2024_genetrader" / "BTC_USDT-5m.feather"
    bars = (
        pl.read_ipc(path)
        .rename({"date": "ts"})
        .with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
        .filter(pl.col("ts") < datetime(2024, 1, 8, tzinfo=UTC))
    )
    Catalog(root / "parquet").write_ohlcv(
        bars, exchange="binance", symbol="BTC/USDT", timeframe="5m", source="test"
    )
    (root / "strategies").mkdir()
    (root / "strategies" / "mine.py").write_text(textwrap.dedent(USER_STRATEGIES))
    return root


@pytest.fixture
def env(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIERLINE_DATA_DIR", str(workspace / "parquet"))
    monkeypatch.setenv("TIERLINE_STRATEGIES_DIR", str(workspace / "strategies"))
    return workspace


def test_strategies_lists_builtins_and_user_folder(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    for name in ("sma_cross", "rsi_reversion", "donchian_breakout", "user_momentum", "user_peek"):
        assert f"\n{name}\n" in f"\n{out}"
    assert "fast 5..50 step 5 (default 10); slow 20..200 step 10 (default 50)" in out
    assert "constraints: fast < slow" in out
    assert 'warm-up:     lambda p: p["slow"] + 1 (51 bars at the defaults)' in out
    assert "n 2..20 (default 5)" in out
    assert "source:      tierline.strategies.sma_cross\n" in out
    assert f"source:      tierline_user_strategies.mine ({env / 'strategies' / 'mine.py'})" in out
    assert "5 strategies" in out


def test_backtest_reference_writes_trades_equal_to_reference_result(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trades_out = env / "out" / "trades.parquet"
    equity_out = env / "out" / "equity.parquet"
    argv = [
        "backtest", "sma_cross", "--engine", "reference", "--params", "fast=10,slow=50",
        "--start", "2024-01-02", "--end", "2024-01-06", "--fee", "0.002", "--stake", "5000",
        "--trades-out", str(trades_out), "--equity-out", str(equity_out),
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out

    bars = Catalog(env / "parquet").read_ohlcv(
        "binance", "BTC/USDT", "5m", "2024-01-02", "2024-01-06"
    )
    cfg = ExecutionConfig(fee=0.002, stake=5000.0, initial_cash=10_000.0)
    want = run(sma_cross, bars, {"fast": 10, "slow": 50}, cfg)
    got = pl.read_parquet(trades_out)
    assert want.trades.height > 5
    assert got.equals(want.trades)
    assert pl.read_parquet(equity_out).equals(want.equity)
    assert f"{want.trades.height} trades written to {trades_out}" in out
    assert f"  trades        {want.trades.height}\n" in out
    for name in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "win_rate",
                 "profit_factor", "exposure"):  # fmt: skip
        assert f"  {name}" in out


def test_backtest_unbuilt_engine_and_bad_params_exit_2(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", "sma_cross", "--params", "fast=60,slow=50"]) == 2
    assert "outside its range" in capsys.readouterr().err
    assert main(["backtest", "sma_cross", "--params", "fast=50,slow=50"]) == 2
    assert "constraint fast < slow" in capsys.readouterr().err
    assert main(["backtest", "nope"]) == 2
    assert "unknown strategy 'nope'" in capsys.readouterr().err


def test_check_passes_builtin_and_user_strategy(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "sma_cross", "--params", "fast=10,slow=50"]) == 0
    assert capsys.readouterr().out.startswith("PASS sma_cross (fast=10,slow=50)")
    assert main(["check", "user_momentum", "--params", "n=7", "--samples", "20"]) == 0
    assert "PASS user_momentum" in capsys.readouterr().out


def test_check_lookahead_user_strategy_exits_1_naming_the_bar(env: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tierline", "check", "user_peek", "--end", "2024-01-02"],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    bars = Catalog(env / "parquet").read_ohlcv("binance", "BTC/USDT", "5m", None, "2024-01-02")
    close = bars["close"].to_list()
    first = next(k for k in range(1, len(close) - 1) if close[k + 1] != close[k])
    ts = bars["ts"][first].isoformat()
    assert proc.stdout.startswith("FAIL user_peek")
    assert "lookahead check: " in proc.stdout
    assert f"at bar {first} ({ts})" in proc.stdout
