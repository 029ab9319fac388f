"""Hand-off to freqtrade: the champion's config passes freqtrade's own validation, the shim
loads the champion's parameters from the registry record through it (from any working
directory), and ``freqtrade backtesting`` on that config gives the trades of
``tierline backtest --engine freqtrade``.

Real data: Binance BTC/USDT 5m from ../shared/data (two weeks of March 2024). The policy is the
shipped ``promotion/policy.toml``. No network: markets come from a server on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tierline.cli import main
from tierline.errors import ConfigError
from tierline.promotion.handoff import (
    champion_config_path,
    freqtrade_config,
    write_freqtrade_config,
)
from tierline.promotion.policy import Policy, load_policy

REPO = Path(__file__).resolve().parents[2]
USERDIR = REPO / "freqtrade" / "user_data"
PARAMS = {"fast": 10, "slow": 50}
START, END = "2024-03-01", "2024-03-15"


def _freqtrade_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "freqtrade"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "freqtrade"]


@pytest.fixture(scope="module", autouse=True)
def workspace_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIERLINE_FREQTRADE_USERDIR", str(USERDIR))
        mp.setenv("TIERLINE_VENUES", str(REPO / "nautilus" / "venues.toml"))
        yield


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(REPO / "promotion" / "policy.toml")


def _record(**over: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "schema_version": 1,
        "strategy": "sma_cross",
        "params": dict(PARAMS),
        "exchange": "binance",
        "symbols": ["BTC/USDT"],
        "timeframe": "5m",
        "execution": {"fee": 0.001, "stake": None, "initial_cash": 10_000.0},
        "policy": {"path": "promotion/policy.toml", "sha256": "ab" * 32},
        "promoted_at": "2024-03-20T00:00:00Z",
        "previous": None,
    }
    record.update(over)
    return record


@pytest.fixture
def champion(tmp_path: Path, policy: Policy) -> tuple[Path, dict[str, Any], Path]:
    """A workspace in tmp_path: registry/sma_cross.json and the generated config."""
    registry = tmp_path / "registry"
    registry.mkdir()
    record = _record()
    (registry / "sma_cross.json").write_text(json.dumps(record))
    path = write_freqtrade_config(
        record,
        policy,
        path=tmp_path / "freqtrade" / "user_data" / "config.sma_cross.json",
        registry_root=registry,
    )
    return path, record, registry


def _load_in_freqtrade(config: Path) -> tuple[dict[str, Any], Any]:
    """Load the config as ``freqtrade trade`` does, check it, and resolve the strategy."""
    from unittest import mock

    from freqtrade.configuration import Configuration, validate_config_consistency
    from freqtrade.enums import RunMode
    from freqtrade.resolvers import StrategyResolver

    args = {"config": [str(config)], "user_data_dir": str(USERDIR)}
    with mock.patch("freqtrade.configuration.configuration.setup_logging"):
        cfg = Configuration(args, RunMode.DRY_RUN).get_config()
    validate_config_consistency(cfg)
    strategy = StrategyResolver.load_strategy(cfg)
    validate_config_consistency(cfg)  # again, with what the strategy set (freqtrade's order)
    return cfg, strategy


# ---------------------------------------------------------------------- validation
def test_generated_config_passes_freqtrade_show_config(
    champion: tuple[Path, dict[str, Any], Path], policy: Policy, tmp_path: Path
) -> None:
    config, _, _ = champion
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [*_freqtrade_cmd(), "show-config", "--userdir", str(USERDIR), "-c", str(config)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    shown = json.loads(proc.stdout.split("Your combined configuration is:", 1)[1])
    assert shown["dry_run"] is True
    assert shown["dry_run_wallet"] == policy.live.dry_run_wallet == 10_000
    assert shown["exchange"]["name"] == "binance"
    assert shown["exchange"]["pair_whitelist"] == ["BTC/USDT"]
    assert shown["stake_currency"] == "USDT"
    assert shown["stake_amount"] == "unlimited" == policy.live.stake_amount
    assert shown["max_open_trades"] == 1 == policy.live.max_open_trades
    assert shown["timeframe"] == "5m"
    assert shown["strategy"] == "TierlineShim"
    assert shown["minimal_roi"] == {"0": 100}
    assert shown["stoploss"] == -1.0  # the shipped policy sets no stop-loss
    assert shown["tierline"]["registry"] == "../../registry/sma_cross.json"
    assert "protections" not in shown  # freqtrade 2026.9 refuses them in a config


def test_shim_loads_champion_params_and_policy_protections_from_any_directory(
    champion: tuple[Path, dict[str, Any], Path],
    policy: Policy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from freqtrade.plugins.protectionmanager import ProtectionManager

    config, record, _ = champion
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the registry path is relative to the config, not the cwd
    cfg, shim = _load_in_freqtrade(config)
    assert type(shim).__name__ == "TierlineShim"
    assert shim.tierline.strategy.name == "sma_cross"
    assert shim.tierline.params == record["params"] == {"fast": 10, "slow": 50}
    assert shim.startup_candle_count == 50  # warm-up 51 - 1
    assert shim.tierline.stake is None
    assert shim.stoploss == -1.0 and shim.minimal_roi == {0: 100}
    assert shim.order_types["entry"] == shim.order_types["exit"] == "market"
    assert cfg["entry_pricing"]["price_side"] == cfg["exit_pricing"]["price_side"] == "other"
    dd, guard = policy.live.protections.max_drawdown, policy.live.protections.stoploss_guard
    assert shim.protections == [
        {
            "method": "MaxDrawdown",
            "lookback_period_candles": dd.lookback_period_candles,
            "trade_limit": dd.trade_limit,
            "stop_duration_candles": dd.stop_duration_candles,
            "max_allowed_drawdown": dd.max_allowed_drawdown,
        },
        {
            "method": "StoplossGuard",
            "lookback_period_candles": guard.lookback_period_candles,
            "trade_limit": guard.trade_limit,
            "stop_duration_candles": guard.stop_duration_candles,
            "only_per_pair": guard.only_per_pair,
        },
    ]
    manager = ProtectionManager(cfg, shim.protections)  # freqtrade's own validation
    assert manager.name_list == ["MaxDrawdown", "StoplossGuard"]
    assert "0.2 within 288 candles" in manager.short_desc()[0]["MaxDrawdown"]
    # A new champion in the registry is what the next bot start runs.
    (tmp_path / "registry" / "sma_cross.json").write_text(
        json.dumps(_record(params={"fast": 20, "slow": 100}))
    )
    _, shim2 = _load_in_freqtrade(config)
    assert shim2.tierline.params == {"fast": 20, "slow": 100}


def test_policy_stake_and_stoploss_reach_config_and_shim(tmp_path: Path, policy: Policy) -> None:
    live = dataclasses.replace(policy.live, stake_amount=250.0, stoploss=-0.05, max_open_trades=1)
    fixed = dataclasses.replace(policy, live=live)
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "sma_cross.json").write_text(json.dumps(_record()))
    config = write_freqtrade_config(
        _record(), fixed, path=tmp_path / "ud" / "config.sma_cross.json", registry_root=registry
    )
    cfg, shim = _load_in_freqtrade(config)
    assert cfg["stake_amount"] == 250.0 and shim.tierline.stake == 250.0
    assert shim.stoploss == -0.05
    # The shim's stake: min(fixed stake, available) / (1 + fee), as the conventions spend it.
    assert shim.custom_stake_amount(
        "BTC/USDT", None, 1.0, 250.0, None, 9_000.0, 1.0, None, "long"
    ) == pytest.approx(250.0 / 1.001)


def test_exchange_freqtrade_cannot_trade_becomes_binance_with_a_note(
    tmp_path: Path, policy: Policy
) -> None:
    doc = freqtrade_config(_record(exchange="synthetic"), policy, config_dir=tmp_path)
    assert doc["exchange"]["name"] == "binance"
    assert "'synthetic'" in doc["tierline"]["exchange_note"]
    doc = freqtrade_config(_record(exchange="kraken"), policy, config_dir=tmp_path)
    assert doc["exchange"]["name"] == "kraken" and "exchange_note" not in doc["tierline"]


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"symbols": ["BTC/USDT:USDT"]}, "spot pairs only"),
        ({"symbols": ["BTC/USDT", "ETH/BTC"]}, "one quote"),
        ({"symbols": []}, "'symbols' is missing"),
        ({"timeframe": None}, "'timeframe' is missing"),
    ],
)
def test_bad_record_is_refused_and_leaves_the_old_config(
    tmp_path: Path, policy: Policy, over: dict[str, Any], match: str
) -> None:
    target = tmp_path / "config.sma_cross.json"
    target.write_text("old\n")
    with pytest.raises(ConfigError, match=match):
        write_freqtrade_config(_record(**over), policy, path=target)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.sma_cross.json"]


def test_default_path_is_the_user_directory() -> None:
    assert champion_config_path("sma_cross") == USERDIR / "config.sma_cross.json"


# ---------------------------------------------------------------------- same trades
@pytest.fixture(scope="module")
def btc_catalog(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("handoff-catalog") / "parquet"
    src = shared_data / "ohlcv" / "binance_spot_2024_genetrader" / "BTC_USDT-5m.feather"
    rc = main(
        [
            "--data-dir",
            str(root),
            "data",
            "import",
            str(src),
            "--exchange",
            "binance",
            "--symbol",
            "BTC/USDT",
        ]
    )
    assert rc == 0
    return root


def test_freqtrade_backtesting_on_champion_config_gives_tierline_backtest_trades(
    champion: tuple[Path, dict[str, Any], Path], btc_catalog: Path, tmp_path: Path
) -> None:
    """``freqtrade backtesting -c config.sma_cross.json`` (plus an overlay that only points
    ccxt at 127.0.0.1 and names the data) trades exactly as ``tierline backtest --engine
    freqtrade`` with the champion's parameters: same bars, same prices, same returns."""
    from freqtrade.data.btanalysis import load_backtest_data

    from tierline.core.instruments import instrument_for
    from tierline.data.catalog import Catalog
    from tierline.engines import freqtrade as ft

    config, record, _ = champion
    ours = tmp_path / "tierline.parquet"
    rc = main(
        [
            "--data-dir",
            str(btc_catalog),
            "backtest",
            "sma_cross",
            "--engine",
            "freqtrade",
            "--params",
            "fast=10,slow=50",
            "--start",
            START,
            "--end",
            END,
            "--trades-out",
            str(ours),
        ]
    )
    assert rc == 0
    expected = pl.read_parquet(ours)
    assert expected.height >= 10

    bars = Catalog(btc_catalog).read_ohlcv("binance", "BTC/USDT", "5m", START, END)
    spec = instrument_for("binance", "BTC/USDT", bars)
    data = tmp_path / "data"
    ft.export_bars(bars, spec.symbol, "5m", data)  # plus the flat end candle, as the adapter
    (tmp_path / "results").mkdir()
    with ft.serve_exchange_info([spec]) as url:
        ccxt_conf = ft.offline_ccxt_config(url)
        overlay = tmp_path / "offline.json"
        overlay.write_text(
            json.dumps(
                {
                    "exchange": {"ccxt_config": ccxt_conf, "ccxt_async_config": ccxt_conf},
                    "dry_run_wallet": record["execution"]["initial_cash"],
                }
            )
        )
        proc = subprocess.run(
            [
                *_freqtrade_cmd(),
                "backtesting",
                "--userdir",
                str(USERDIR),
                "-c",
                str(config),
                "-c",
                str(overlay),
                "--datadir",
                str(data),
                "--export",
                "trades",
                "--backtest-directory",
                str(tmp_path / "results"),
                "--cache",
                "none",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    got = ft._normalise_trades(load_backtest_data(tmp_path / "results"), 0.001)
    assert got["entry_ts"].to_list() == expected["entry_ts"].to_list()
    assert got["exit_ts"].to_list() == expected["exit_ts"].to_list()
    assert got["entry_price"].to_list() == expected["entry_price"].to_list()
    assert got["exit_price"].to_list() == expected["exit_price"].to_list()
    # The config stakes 99 % of the wallet (tradable_balance_ratio), the backtest all of it:
    # quantities differ, per-trade returns do not.
    diff = (got["return"] - expected["return"]).abs().max()
    assert diff is not None and float(diff) < 1e-6  # type: ignore[arg-type]
