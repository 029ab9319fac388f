"""`tierline hft` on the real Binance USD-M BTCUSDT L2 sample: report, exit codes, MLflow run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tierline.cli import main
from tierline.core.metric_names import METRIC_NAMES
from tierline.engines.hft.report import TIER3_METRICS

USDM_BTC = Path("l2/hftbacktest_raw/usdm/btcusdt_20240808.gz")
MARKET = ["--exchange", "binanceusdm", "--symbol", "BTC/USDT", "--timeframe", "10s"]


@pytest.fixture(scope="module")
def data_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hftcli") / "parquet"
    rc = main(["--data-dir", str(root), "data", "import", str(shared_data / USDM_BTC),
               "--exchange", "binanceusdm", "--symbol", "BTC/USDT"])  # fmt: skip
    assert rc == 0
    return root


def _hft(data_dir: Path, *args: str) -> int:
    return main(["--data-dir", str(data_dir), "hft", "sma_cross", *args])


@pytest.fixture(scope="module")
def tracked(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("hfttrack")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    rc = _hft(data_dir, "--params", "fast=5,slow=20", *MARKET, "--tracking-uri", uri,
              "--out", str(tmp / "out"))  # fmt: skip
    from tierline.tracking import Tracker

    return rc, Tracker(uri).latest_pipeline("sma_cross"), tmp


def test_hft_prints_shortfall_fill_ratio_and_net_pnl(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = _hft(data_dir, "--params", "fast=5,slow=20", *MARKET, "--no-track")
    out = capsys.readouterr().out
    assert rc == 0
    assert "L2: real" in out
    assert "10s bars from the catalog trades" in out
    shortfall = re.search(r"shortfall: (-?[\d.]+) bps mean", out)
    fill = re.search(r"fill ratio: ([\d.]+)", out)
    pnl = re.search(r"net P&L: (-?[\d.]+) \(after fees ([\d.]+)\)", out)
    assert shortfall and fill and pnl
    assert float(fill.group(1)) == 1.0
    assert float(pnl.group(2)) > 0  # fees were paid on real fills
    assert "MLflow" not in out


def test_hft_logs_a_tier3_child_run_with_the_contract_metrics_and_tags(tracked: Any) -> None:
    rc, record, tmp = tracked
    assert rc == 0
    assert record is not None
    (run,) = [t for t in record.tiers if t.tier == "tier3"]
    assert run.engine == "hftbacktest"
    assert run.tags["l2"] == "real"
    assert run.tags["style"] == "taker"
    assert run.tags["latency_model"] == "constant"
    assert run.tags["queue_model"] == "risk_averse"
    assert set(METRIC_NAMES) | set(TIER3_METRICS) <= set(run.metrics)
    assert run.metrics["fill_ratio"] == 1.0
    assert run.params == {"fast": "5", "slow": "20"}
    for name in ("trades.parquet", "legs.parquet", "fills.parquet", "tier3_fills.html"):
        assert (tmp / "out" / name).exists()


def test_hft_l2_real_without_a_book_is_a_data_error(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = _hft(data_dir, "--l2", "real", "--exchange", "binanceusdm", "--symbol", "ETH/USDT",
              "--timeframe", "10s", "--no-track")  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 3
    assert "--l2 real: no real L2 book for binanceusdm ETH/USDT" in err


def test_hft_bad_arguments_are_clear_errors(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _hft(data_dir, *MARKET, "--style", "market")
    assert info.value.code == 2
    assert "invalid choice: 'market'" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[queue]\nmodel = 'fifo'\n")
    assert _hft(data_dir, *MARKET, "--config", str(bad), "--no-track") == 2
    err = capsys.readouterr().err
    assert "queue.model = 'fifo'" in err and str(bad) in err
    assert _hft(data_dir, *MARKET, "--params", "fast=100", "--no-track") == 2
    assert "fast" in capsys.readouterr().err
