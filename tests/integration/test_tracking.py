"""tierline.tracking against a real MLflow SQLite store (one store for the whole session)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from tierline import tracking
from tierline.core.conventions import ExecutionConfig
from tierline.core.result import TRADES_TABLE_SCHEMA
from tierline.errors import ConfigError, EngineError
from tierline.tracking import (
    INF_SENTINEL,
    DatasetRef,
    Tracker,
    dataset_fingerprint,
    redact_argv,
    resolve_tracking_uri,
)

STRATEGY = "sma_cross"


# ----------------------------------------------------------------------------- fixtures


def make_bars(n: int = 300, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "ts": [start + timedelta(minutes=5 * i) for i in range(n)],
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.uniform(1, 10, n),
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("ns"))


def make_trades() -> pl.DataFrame:
    t0 = datetime(2024, 1, 1, 1, tzinfo=UTC)
    rows = {
        "entry_ts": [t0, t0 + timedelta(hours=2), t0 + timedelta(hours=5)],
        "exit_ts": [t0 + timedelta(hours=1), t0 + timedelta(hours=3), t0 + timedelta(hours=7)],
        "entry_price": [100.0, 101.5, 99.25],
        "exit_price": [101.0, 100.5, 102.125],
        "qty": [0.5, 0.49, 0.51],
        "fees": [0.1005, 0.099, 0.1027],
        "pnl": [0.3995, -0.589, 1.3638],
        "return": [0.008, -0.0119, 0.0269],
    }
    return pl.DataFrame(rows, schema=TRADES_TABLE_SCHEMA)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    """One SQLite store for the session (MLflow's migrations take seconds per new store)."""
    root = tmp_path_factory.mktemp("mlflow")
    return Tracker(f"sqlite:///{root / 'mlflow.db'}")


@dataclass
class Logged:
    parent_id: str
    child_ids: dict[str, str]
    bars: pl.DataFrame
    trades: pl.DataFrame
    sweep: pl.DataFrame
    metrics: dict[str, dict[str, float]]
    params: dict[str, dict[str, Any]]


@pytest.fixture(scope="session")
def logged(store: Tracker) -> Logged:
    """A pipeline with a tier-1 run (sweep table) and two tier-2 runs."""
    bars = make_bars()
    trades = make_trades()
    sweep = pl.DataFrame(
        {
            "fast": np.repeat(np.arange(5, 65, 1), 50),
            "slow": np.tile(np.arange(20, 520, 10), 60),
            "sharpe": np.linspace(-1, 2, 3000),
        }
    )
    metrics = {
        "tier1": {"total_return": 0.1234, "sharpe": 1.87, "trades": 42.0, "max_drawdown": -0.081},
        "tier2-reference": {"total_return": 0.1201, "sharpe": 1.8, "trades": 41.0},
        "tier2-nautilus": {"total_return": 0.1199, "sharpe": 1.79, "trades": 41.0},
    }
    params: dict[str, dict[str, Any]] = {
        "tier1": {"fast": 10, "slow": 50},
        "tier2-reference": {"fast": 10, "slow": 50},
        "tier2-nautilus": {"fast": 10, "slow": 50},
    }
    dataset = DatasetRef.from_bars(bars, exchange="binance", symbol="BTC/USDT", timeframe="5m")
    config = {"execution": ExecutionConfig(fee=0.001), "top_k": 2}
    child_ids: dict[str, str] = {}
    argv = ["tierline", "pipeline", STRATEGY, "--top-k", "2"]
    with store.pipeline(strategy=STRATEGY, dataset=dataset, config=config, argv=argv) as parent:
        with parent.tier(tier="tier1", engine="vectorbt", params=params["tier1"], rank=0) as run:
            run.log_metrics(metrics["tier1"])
            run.log_table("sweep", sweep)
            child_ids["tier1"] = run.run_id
        for engine in ("reference", "nautilus"):
            key = f"tier2-{engine}"
            with parent.tier(tier="tier2", engine=engine, params=params[key], rank=0) as run:
                run.log_metrics(metrics[key])
                run.log_trades(trades)
                child_ids[key] = run.run_id
    return Logged(parent.run_id, child_ids, bars, trades, sweep, metrics, params)


# ----------------------------------------------------------------------------- logging


def test_pipeline_parent_run_carries_dataset_code_and_config_tags(
    store: Tracker, logged: Logged
) -> None:
    run = store.client.get_run(logged.parent_id)
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert tags["tierline.kind"] == "pipeline"
    assert tags["strategy"] == STRATEGY
    assert (tags["exchange"], tags["symbol"], tags["timeframe"]) == ("binance", "BTC/USDT", "5m")
    assert tags["data_fingerprint"] == dataset_fingerprint(logged.bars)
    assert tags["data_rows"] == "300"
    assert tags["data_start"] == "2024-01-01T00:00:00+00:00"
    assert tags["argv"] == "tierline pipeline sma_cross --top-k 2"
    assert len(tags["config_hash"]) == 16
    assert tags["tierline_version"] == tracking.code_version()["tierline_version"]
    commit = tags["git_commit"]
    in_checkout = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "__init__.py"],
        cwd=Path(tracking.__file__).parent,
        capture_output=True,
        check=False,
    )
    if in_checkout.returncode == 0:  # running from the checkout
        # HEAD may have moved since the run (others commit meanwhile): the logged commit must
        # be HEAD or one of its ancestors.
        assert len(commit) == 40
        ancestor = subprocess.run(
            ["git", "merge-base", "--is-ancestor", commit, "HEAD"],
            cwd=Path(tracking.__file__).parent,
            check=False,
        )
        assert ancestor.returncode == 0
        assert tags["code_version"] in (commit, f"{commit}+dirty")
        assert tags["git_dirty"] == ("true" if tags["code_version"].endswith("+dirty") else "false")
    else:
        assert tags["code_version"] == f"tierline=={tags['tierline_version']}"
    # config: flattened params and a config.json artifact
    assert run.data.params["config.execution.fee"] == "0.001"
    assert run.data.params["config.top_k"] == "2"
    assert run.info.artifact_uri.startswith(
        (store.artifact_root / STRATEGY).as_uri()  # type: ignore[operator]
    )


def test_tier_runs_are_children_with_params_metrics_and_tags(
    store: Tracker, logged: Logged
) -> None:
    for key, run_id in logged.child_ids.items():
        run = store.client.get_run(run_id)
        tier, _, engine = key.partition("-")
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == logged.parent_id
        assert run.data.tags["tier"] == tier
        assert run.data.tags["engine"] == (engine or "vectorbt")
        assert run.data.tags["rank"] == "0"
        assert run.data.tags["data_fingerprint"] == dataset_fingerprint(logged.bars)
        assert run.data.params == {k: str(v) for k, v in logged.params[key].items()}
        assert run.data.metrics == logged.metrics[key]


def test_trades_artifact_round_trips_to_the_same_frame(store: Tracker, logged: Logged) -> None:
    run_id = logged.child_ids["tier2-nautilus"]
    back = store.load_frame(run_id, tracking.TRADES_ARTIFACT)
    assert back.schema == logged.trades.schema
    assert back.equals(logged.trades)
    # and through the plain MLflow client
    local = store.client.download_artifacts(run_id, "trades.parquet", str(Path(run_id)))
    assert pl.read_parquet(local).equals(logged.trades)
    Path(local).unlink()
    Path(run_id).rmdir()


def test_sweep_is_one_table_artifact_not_one_run_per_combination(
    store: Tracker, logged: Logged
) -> None:
    back = store.load_frame(logged.child_ids["tier1"], "tables/sweep.parquet")
    assert back.equals(logged.sweep)
    runs = store.client.search_runs(
        [store.experiment_id(STRATEGY)],
        filter_string=f"tags.`mlflow.parentRunId` = '{logged.parent_id}'",
    )
    assert len(runs) == 3


def test_latest_pipeline_record_has_tiers_side_by_side(store: Tracker, logged: Logged) -> None:
    rec = store.latest_pipeline(STRATEGY)
    assert rec is not None
    assert rec.run_id == logged.parent_id
    assert rec.dataset.fingerprint == dataset_fingerprint(logged.bars)
    assert [t.label for t in rec.tiers] == [
        "tier1/vectorbt#0",
        "tier2/reference#0",
        "tier2/nautilus#0",
    ]
    (naut,) = rec.find("tier2", "nautilus")
    assert naut.metrics == logged.metrics["tier2-nautilus"]
    assert naut.params == {"fast": "10", "slow": "50"}
    assert len(rec.find("tier2")) == 2


def test_non_finite_metrics_are_logged_safely_and_restored(store: Tracker) -> None:
    dataset = DatasetRef(exchange="x", symbol="A/B", timeframe="1h", fingerprint="f")
    with (
        store.pipeline(strategy="nonfinite", dataset=dataset, argv=["t"]) as parent,
        parent.tier(tier="tier1", engine="reference") as run,
    ):
        run.log_metrics(
            {
                "profit_factor": math.inf,
                "sortino": -math.inf,
                "sharpe": math.nan,
                "cagr": None,
                "trades": np.int64(0),
                "exposure": np.float64(0.25),
                "win_rate": math.nan,
            }
        )
        run.log_metrics({"win_rate": 0.5})  # a finite value replaces the NaN
    stored = store.client.get_run(run.run_id).data
    assert stored.metrics == {
        "profit_factor": INF_SENTINEL,
        "sortino": -INF_SENTINEL,
        "trades": 0.0,
        "exposure": 0.25,
        "win_rate": 0.5,
    }
    assert "tierline.nonfinite.win_rate" not in stored.tags
    assert stored.tags["tierline.nonfinite.sharpe"] == "nan"
    assert stored.tags["tierline.nonfinite.profit_factor"] == "inf"
    rec = store.latest_pipeline("nonfinite")
    assert rec is not None
    m = rec.tiers[0].metrics
    assert m["profit_factor"] == math.inf and m["sortino"] == -math.inf
    assert math.isnan(m["sharpe"]) and math.isnan(m["cagr"])
    assert m["win_rate"] == 0.5
    with pytest.raises(ConfigError, match="not a number"):
        with store.pipeline(strategy="nonfinite", dataset=dataset, argv=["t"]) as parent:
            with parent.tier(tier="tier1", engine="reference") as run:
                run.log_metrics({"sharpe": "high"})


def test_failing_block_marks_runs_failed_and_reraises(store: Tracker) -> None:
    dataset = DatasetRef(exchange="x", symbol="A/B", timeframe="1h", fingerprint="f")
    with pytest.raises(EngineError, match="engine exploded"):
        with store.pipeline(strategy="failing", dataset=dataset, argv=["t"]) as parent:
            with parent.tier(tier="tier2", engine="freqtrade") as run:
                raise EngineError("engine exploded")
    p = store.client.get_run(parent.run_id)
    c = store.client.get_run(run.run_id)
    assert p.info.status == "FAILED"
    assert c.info.status == "FAILED"
    assert c.data.tags["error"] == "EngineError: engine exploded"
    assert store.latest_pipeline("failing") is None
    with pytest.raises(ConfigError, match="has ended"):
        run.log_metrics({"sharpe": 1.0})


def test_latest_pipeline_returns_the_newest_finished_one(store: Tracker) -> None:
    def once(symbol: str, fail: bool = False) -> str:
        dataset = DatasetRef(exchange="x", symbol=symbol, timeframe="1h", fingerprint=symbol)
        try:
            with store.pipeline(strategy="latest", dataset=dataset, argv=["t"]) as parent:
                with parent.tier(tier="tier1", engine="vectorbt") as run:
                    run.log_metrics({"sharpe": 1.0})
                if fail:
                    raise RuntimeError("boom")
        except RuntimeError:
            pass
        return parent.run_id

    first = once("A/B")
    second = once("C/D")
    once("E/F", fail=True)
    rec = store.latest_pipeline("latest")
    assert rec is not None and rec.run_id == second and rec.status == "FINISHED"
    by_symbol = store.latest_pipeline("latest", symbol="A/B")
    assert by_symbol is not None and by_symbol.run_id == first
    assert [r.status for r in store.pipelines("latest")] == ["FAILED", "FINISHED", "FINISHED"]
    assert store.latest_pipeline("no_such_strategy") is None


def test_unknown_tier_or_engine_and_too_many_runs_are_refused(
    store: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = DatasetRef(exchange="x", symbol="A/B", timeframe="1h", fingerprint="f")
    monkeypatch.setattr(tracking, "MAX_TIER_RUNS", 1)
    with store.pipeline(strategy="guards", dataset=dataset, argv=["t"]) as parent:
        with pytest.raises(ConfigError, match="tier 'tier9'"):
            with parent.tier(tier="tier9", engine="vectorbt"):
                pass
        with pytest.raises(ConfigError, match="engine 'backtrader'"):
            with parent.tier(tier="tier1", engine="backtrader"):
                pass
        with parent.tier(tier="tier1", engine="vectorbt"):
            pass
        with pytest.raises(ConfigError, match="log_table"):
            with parent.tier(tier="tier1", engine="vectorbt"):
                pass


def test_config_keys_mlflow_rejects_are_sanitised_and_no_config_logs_no_params(
    store: Tracker,
) -> None:
    dataset = DatasetRef(exchange="x", symbol="A/B", timeframe="1h", fingerprint="f")
    with store.pipeline(strategy="keys", dataset=dataset, argv=["t"]) as bare:
        pass
    with store.pipeline(
        strategy="keys", dataset=dataset, config={"venue:binance": {"lat(ms)": 5}}, argv=["t"]
    ) as odd:
        pass
    assert store.client.get_run(bare.run_id).data.params == {}
    assert store.client.get_run(odd.run_id).data.params == {"config.venue_binance.lat_ms_": "5"}


# ----------------------------------------------------------------------------- secrets


def test_secrets_never_reach_the_store(
    store: Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINANCE_API_SECRET", "SEKRET-ENV")
    config = {
        "exchange": {"name": "binance", "api_key": "SEKRET-1", "secret": "SEKRET-2"},
        "db_url": "postgresql://bob:SEKRET-3@db.local/optuna",
        "nested": [{"password": "SEKRET-4"}],
        "Telegram_Token": "SEKRET-5",
        "fee": 0.001,
    }
    argv = [
        "tierline",
        "--api-key",
        "SEKRET-6",
        "--token=SEKRET-7",
        "--params",
        "fast=10,api_secret=SEKRET-8",
    ]
    notes = tmp_path / "notes.txt"
    notes.write_text("harmless\n")
    dataset = DatasetRef(exchange="x", symbol="A/B", timeframe="1h", fingerprint="f")
    with store.pipeline(strategy="secrets", dataset=dataset, config=config, argv=argv) as parent:
        parent.log_artifact(notes)
        with parent.tier(
            tier="tier2",
            engine="freqtrade",
            params={"fast": 10, "auth_token": "SEKRET-9"},
            tags={"private_key": "SEKRET-10", "note": "password=SEKRET-11"},
        ) as run:
            run.log_metrics({"sharpe": 1.0})
    texts: list[str] = []
    for run_id in (parent.run_id, run.run_id):
        data = store.client.get_run(run_id).data
        texts += [*data.tags.values(), *data.tags, *data.params.values(), *data.params]
    art_dir = Path(store.client.get_run(parent.run_id).info.artifact_uri.removeprefix("file://"))
    texts += [p.read_text() for p in art_dir.rglob("*") if p.is_file()]
    assert not [t for t in texts if "SEKRET" in t]
    assert "harmless" in "".join(texts)
    params = store.client.get_run(parent.run_id).data.params
    assert params["config.exchange.api_key"] == "***"
    assert params["config.exchange.name"] == "binance"
    assert params["config.db_url"] == "postgresql://bob:***@db.local/optuna"
    assert params["config.fee"] == "0.001"
    assert store.client.get_run(parent.run_id).data.tags["argv"] == (
        "tierline --api-key *** --token=*** --params fast=10,api_secret=***"
    )
    db = tracking.sqlite_path(store.uri)
    assert db is not None and b"SEKRET" not in db.read_bytes()


def test_redact_argv_keeps_ordinary_options() -> None:
    argv = ["tierline", "sweep", "--fast", "10", "--password", "p", "--symbol=BTC/USDT"]
    assert redact_argv(argv) == [
        "tierline",
        "sweep",
        "--fast",
        "10",
        "--password",
        "***",
        "--symbol=BTC/USDT",
    ]


# ----------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_across_processes_and_layouts(tmp_path: Path) -> None:
    bars = make_bars()
    path = tmp_path / "bars.parquet"
    bars.write_parquet(path)
    code = (
        "import sys, polars as pl\n"
        "from tierline.tracking import dataset_fingerprint\n"
        "print(dataset_fingerprint(pl.read_parquet(sys.argv[1])))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    fp = dataset_fingerprint(bars)
    assert out.stdout.strip() == fp
    assert len(fp) == 64
    chunked = pl.concat([bars.head(100), bars.tail(200)], rechunk=False)
    assert chunked.n_chunks() > 1
    assert dataset_fingerprint(chunked) == fp
    ms = bars.with_columns(pl.col("ts").dt.cast_time_unit("ms"))
    assert dataset_fingerprint(ms) == fp
    assert dataset_fingerprint(bars.select(reversed(bars.columns))) == fp


def test_fingerprint_changes_with_one_price_or_one_timestamp() -> None:
    bars = make_bars()
    fp = dataset_fingerprint(bars)
    one_price = bars.with_columns(
        pl.when(pl.int_range(pl.len()) == 123)
        .then(pl.col("close") + 1e-9)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    one_ts = bars.with_columns(
        pl.when(pl.int_range(pl.len()) == 299)
        .then(pl.col("ts") + timedelta(minutes=1))
        .otherwise(pl.col("ts"))
        .alias("ts")
    )
    assert dataset_fingerprint(one_price) != fp
    assert dataset_fingerprint(one_ts) != fp
    assert dataset_fingerprint(bars.head(299)) != fp


# ----------------------------------------------------------------------------- URIs, CLI


def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIERLINE_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert Tracker().artifact_root == tmp_path.resolve() / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri() == "http://127.0.0.1:5000"
    assert Tracker().artifact_root is None
    monkeypatch.setenv("TIERLINE_TRACKING_URI", "sqlite:///other.db")
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'other.db'}"
    assert resolve_tracking_uri("postgresql://h/db") == "postgresql://h/db"


def test_mlflow_runs_offline(store: Tracker) -> None:
    store.client  # noqa: B018 - make sure mlflow is imported through the tracker
    from mlflow.telemetry.utils import is_telemetry_disabled

    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert is_telemetry_disabled()


def test_runs_command_prints_tiers_side_by_side(
    store: Tracker, logged: Logged, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tierline.cli import main

    assert main(["runs", STRATEGY, "--tracking-uri", store.uri]) == 0
    out = capsys.readouterr().out
    assert logged.parent_id in out
    header = next(line for line in out.splitlines() if line.strip().startswith("metric"))
    assert header.split() == ["metric", "tier1/vectorbt#0", "tier2/reference#0", "tier2/nautilus#0"]
    sharpe = next(line for line in out.splitlines() if line.strip().startswith("sharpe"))
    assert sharpe.split() == ["sharpe", "1.87", "1.8", "1.79"]
    trades = next(line for line in out.splitlines() if line.strip().startswith("trades"))
    assert trades.split() == ["trades", "42", "41", "41"]

    assert main(["runs", "--tracking-uri", store.uri, "--limit", "50"]) == 0
    out = capsys.readouterr().out
    assert "latest" in out and "failing" in out and STRATEGY in out

    missing = tmp_path / "nowhere" / "x.db"
    assert main(["runs", "--tracking-uri", f"sqlite:///{missing}"]) == 0
    assert "no tracking store" in capsys.readouterr().out
    assert not missing.parent.exists()


def test_ui_command_execs_mlflow_ui_on_localhost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tierline.cli import main

    calls: list[tuple[str, list[str], dict[str, str]]] = []

    class Exec(Exception):
        pass

    def fake_execve(path: str, args: list[str], env: dict[str, str]) -> None:
        calls.append((path, args, env))
        raise Exec

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIERLINE_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(os, "execve", fake_execve)
    with pytest.raises(Exec):
        main(["ui", "--port", "5123"])
    ((path, args, env),) = calls
    assert Path(path).exists()
    joined = " ".join(args)
    assert "ui --backend-store-uri sqlite:///" in joined
    assert f"{tmp_path.resolve() / 'mlflow.db'}" in joined
    assert "--host 127.0.0.1 --port 5123 --workers 1" in joined
    assert f"--default-artifact-root {(tmp_path.resolve() / 'mlruns').as_uri()}" in joined
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["DO_NOT_TRACK"] == "true"
