"""The promotion gate on real Binance BTC/USDT 5m bars (two weeks of January 2024).

One `tierline run` pipeline (tiers 1 and 2, real engines; its tier 3 off, so that the tests
start without tier-3 evidence) is logged once per module; each test
promotes from a private copy of that MLflow store, with its own registry folder and freqtrade
config, so the champion state of one test never leaks into another.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from tierline.core.conventions import ExecutionConfig
from tierline.errors import ConfigError, PromotionRejected, TierlineError
from tierline.promotion.champion import Places, consistency, promote, reconcile, rollback
from tierline.promotion.gate import GateRejected, PromotionRequest
from tierline.promotion.policy import Policy, load_policy
from tierline.promotion.registry import read_record
from tierline.tracking import Tracker

REPO = Path(__file__).resolve().parents[2]
FEED = Path("ohlcv") / "binance_spot_2024_genetrader" / "BTC_USDT-5m.feather"
START, END = "2024-01-01", "2024-01-15"
MODEL = "tierline-sma_cross"

LOOKAHEAD = '''
import pandas as pd
from tierline.strategy import Int, strategy


@strategy(name="peek_ahead", params=[Int("k", 12, 24, step=12, default=12)], warmup=lambda p: 2)
def peek_ahead(bars, p):
    """Buy when the close k bars AHEAD is 1 % higher: a lookahead with a superb backtest."""
    ahead = bars["close"].shift(-p["k"])
    enter = (ahead > bars["close"] * 1.01).fillna(False)
    exit_ = (ahead < bars["close"]).fillna(False)
    return pd.DataFrame({"enter_long": enter, "exit_long": exit_}, index=bars.index)
'''


# ----------------------------------------------------------------------------- fixtures


@dataclass
class Evidence:
    root: Path
    db: Path
    run_id: str
    lookahead_run_id: str
    bars: pl.DataFrame


@pytest.fixture(scope="module")
def evidence(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evidence]:
    from tierline.cli import main
    from tierline.data.catalog import Catalog
    from tierline.pipeline import run_pipeline
    from tierline.strategy import get_strategy

    root = tmp_path_factory.mktemp("promotion")
    mp = pytest.MonkeyPatch()
    mp.setenv("TIERLINE_DATA_DIR", str(root / "parquet"))
    mp.setenv("TIERLINE_FREQTRADE_USERDIR", str(REPO / "freqtrade" / "user_data"))
    mp.setenv("TIERLINE_VENUES", str(REPO / "nautilus" / "venues.toml"))
    (root / "strategies").mkdir()
    (root / "strategies" / "peek_ahead.py").write_text(LOOKAHEAD)
    mp.setenv("TIERLINE_STRATEGIES_DIR", str(root / "strategies"))
    try:
        args = ["data", "import", str(shared_data / FEED), "--exchange", "binance"]
        assert main([*args, "--symbol", "BTC/USDT"]) == 0
        bars = Catalog().read_ohlcv("binance", "BTC/USDT", "5m", START, END)
        db = root / "mlflow.db"
        market = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "5m"}
        # tiers 1 and 2 only: the tier-3 tests run it through `promote --run-missing`
        common = {"tracking_uri": f"sqlite:///{db}", "progress": False, "folds": 2}
        common["tier3_top"] = 0
        result = run_pipeline(
            get_strategy("sma_cross"),
            bars,
            ExecutionConfig(),
            **market,
            **common,
            top_k=2,
            out_dir=root / "runs" / "sma",
        )
        assert result.causality_passed and result.parity_passed
        peek = run_pipeline(
            get_strategy("peek_ahead"),
            bars,
            ExecutionConfig(),
            **market,
            **common,
            top_k=1,
            out_dir=root / "runs" / "peek",
        )
        yield Evidence(
            root=root,
            db=db,
            run_id=result.parent_run_id,
            lookahead_run_id=peek.parent_run_id,
            bars=bars,
        )
    finally:
        mp.undo()


@dataclass
class Workspace:
    places: Places
    tracker: Tracker
    uri: str
    tmp: Path

    @property
    def config(self) -> Path:
        return self.places.config_path("sma_cross")


@pytest.fixture
def ws(evidence: Evidence, tmp_path: Path) -> Workspace:
    """A private copy of the evidence store, an empty registry folder and freqtrade dir."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(evidence.db, db)
    uri = f"sqlite:///{db}"
    tracker = Tracker(uri, artifact_root=evidence.root / "mlruns")
    places = Places(
        tracker,
        root=tmp_path / "registry",
        freqtrade_config=tmp_path / "user_data" / "config.{strategy}.json",
        lock_timeout=120,
    )
    return Workspace(places=places, tracker=tracker, uri=uri, tmp=tmp_path)


def _policy(tmp: Path, name: str, **changes: Any) -> Policy:
    """The default policy with keys replaced (key=value pairs, TOML values as text)."""
    text = (REPO / "promotion" / "policy.toml").read_text()
    lines = text.splitlines()
    for key, value in changes.items():
        hits = [i for i, line in enumerate(lines) if line.startswith(f"{key} = ")]
        assert len(hits) == 1, key
        lines[hits[0]] = f"{key} = {value}"
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_policy(path)


#: Loose tier-1 and tier-2 thresholds (two weeks of bars prove little), parity required,
#: tier 3 not required, real data only.
LAX = {
    "min_oos_sharpe": "-100.0",
    "min_dsr": "0.0",
    "max_pbo": "1.0",
    "min_trades": "1",
    "min_sharpe": "-100.0",
    "max_drawdown": "1.0",
    "required": "false",
}


def _lax(tmp: Path, **extra: Any) -> Policy:
    return _policy(tmp, "lax", **{**LAX, **extra})


def _quiet(_: str) -> None:
    return None


def _promote(w: Workspace, policy: Policy, **request: Any) -> dict[str, Any]:
    req = PromotionRequest(strategy=request.pop("strategy", "sma_cross"), **request)
    return promote(req, policy, w.places, say=_quiet)


def _aliases(w: Workspace, model: str = MODEL) -> dict[str, str | None]:
    return {a: w.tracker.get_alias_version(model, a) for a in ("champion", "previous")}


def _snapshot(w: Workspace) -> dict[str, Any]:
    reg = w.places.root
    return {
        "registry": {p.name: p.read_bytes() for p in sorted(reg.iterdir())} if reg.exists() else {},
        "aliases": _aliases(w),
        "config": w.config.read_bytes() if w.config.exists() else None,
        "versions": [v.version for v in w.tracker.model_versions(MODEL)],
    }


def _pipeline(w: Workspace, run_id: str):  # type: ignore[no-untyped-def]
    return w.tracker.pipeline_by_id(run_id)


# ----------------------------------------------------------------------------- tests


def test_passing_promotion_writes_the_champion_everywhere(
    evidence: Evidence, ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-Exchange-Key-0xDEADBEEF"
    monkeypatch.setenv("TIERLINE_EXCHANGE_SECRET", secret)
    monkeypatch.setenv("TIERLINE_EXCHANGE_KEY", secret)
    policy = _lax(ws.tmp)
    record = _promote(ws, policy)
    pipe = _pipeline(ws, evidence.run_id)
    (sweep,) = [t for t in pipe.find("tier1", "vectorbt") if t.rank is None]
    (cand,) = pipe.find("tier1", "vectorbt", 1)
    # the champion is candidate 1 of the newest complete pipeline, with its lineage
    assert record["strategy"] == "sma_cross" and record["candidate_rank"] == 1
    assert record["params"] == {k: int(v) for k, v in cand.params.items()}
    assert record["runs"]["parent"] == evidence.run_id
    assert record["runs"]["tier1"] == cand.run_id and record["runs"]["tier1_sweep"] == sweep.run_id
    assert record["runs"]["tier2"] == {
        e: pipe.find("tier2", e, 1)[0].run_id for e in ("nautilus", "freqtrade")
    }
    assert record["runs"]["tier3"] is None
    (data,) = record["data"]
    assert data["fingerprint"] == pipe.dataset.fingerprint and data["rows"] == evidence.bars.height
    assert data["start"].startswith("2024-01-01T00:00") and data["synthetic"] is False
    assert record["execution"] == {"fee": 0.001, "stake": None, "initial_cash": 10000.0}
    assert record["policy"] == {"path": str(policy.path), "sha256": policy.sha256}
    assert record["model"] == {"name": MODEL, "version": "1"} and record["previous"] is None
    checks = {c["name"]: c for c in record["verdict"]["checks"]}
    assert record["verdict"]["passed"] and all(c["passed"] for c in checks.values())
    assert checks["out-of-sample sharpe"]["value"] == pytest.approx(sweep.metrics["sharpe"])
    assert checks["probability of overfitting"]["value"] == pytest.approx(sweep.metrics["pbo"])
    assert checks["freqtrade parity with reference"]["value"] == 1.0
    assert checks["hftbacktest execution run"]["skipped"] is True
    # the same record on disk, the alias and the verdict tags in MLflow, the freqtrade config
    assert read_record("sma_cross", ws.places.root) == record
    assert _aliases(ws) == {"champion": "1", "previous": None}
    version = ws.tracker.model_version(MODEL, "1")
    assert version.tags["tierline.verdict"] == "passed"
    assert json.loads(version.tags["tierline.params"]) == record["params"]
    assert version.tags["tierline.committed"] == record["promoted_at"]
    assert json.loads(version.tags["tierline.checks"]) == record["verdict"]["checks"]  # whole
    config = json.loads(ws.config.read_text())
    assert config["dry_run"] is True and config["exchange"]["pair_whitelist"] == ["BTC/USDT"]
    registry = (ws.config.parent / config["tierline"]["registry"]).resolve()
    assert registry == (ws.places.root / "sma_cross.json").resolve()
    assert consistency("sma_cross", ws.places) == []
    # no secret from the environment reaches registry/, the config or the model version
    assert secret not in (ws.places.root / "sma_cross.json").read_text()
    assert secret not in ws.config.read_text()
    assert secret not in json.dumps(version.tags)


def test_failing_promotion_changes_nothing(evidence: Evidence, ws: Workspace) -> None:
    _promote(ws, _lax(ws.tmp))  # a champion that must survive the failed attempt
    before = _snapshot(ws)
    strict = _policy(ws.tmp, "strict", **{**LAX, "min_oos_sharpe": "50.0"})
    with pytest.raises(GateRejected) as info:
        _promote(ws, strict)
    assert info.value.exit_code == 5 and isinstance(info.value, PromotionRejected)
    failed = info.value.verdict.failed
    assert [c.name for c in failed] == ["out-of-sample sharpe"]
    sweep = next(t for t in _pipeline(ws, evidence.run_id).find("tier1") if t.rank is None)
    assert failed[0].value == pytest.approx(sweep.metrics["sharpe"]) and failed[0].value < 50
    assert _snapshot(ws) == before  # registry bytes, aliases, config bytes, no new version


def test_default_policy_requires_tier3_and_names_what_is_missing(ws: Workspace) -> None:
    before = _snapshot(ws)
    with pytest.raises(GateRejected) as info:
        _promote(ws, load_policy(REPO / "promotion" / "policy.toml"))
    checks = {c.name: c for c in info.value.verdict.checks}
    tier3 = checks["hftbacktest execution run"]
    assert not tier3.passed and tier3.value == "missing" and "--run-missing" in tier3.note
    assert checks["causality (lookahead, window)"].passed
    assert "missing" in info.value.verdict.table() and "verdict: FAIL" in info.value.verdict.table()
    assert _snapshot(ws) == before


def test_lookahead_strategy_with_a_great_backtest_is_rejected(
    evidence: Evidence, ws: Workspace
) -> None:
    pipe = _pipeline(ws, evidence.lookahead_run_id)
    (cand,) = pipe.find("tier1", "vectorbt", 1)
    # +57 % in two weeks of BTC (the sma_cross candidates: a few %), Sharpe far above 10
    assert cand.metrics["total_return"] > 0.5 and cand.metrics["sharpe"] > 10
    policy = _lax(ws.tmp, require_parity="false")
    with pytest.raises(GateRejected) as info:
        _promote(ws, policy, strategy="peek_ahead")
    (failed,) = info.value.verdict.failed
    assert failed.name == "causality (lookahead, window)" and failed.value == 0.0
    assert "lookahead" in failed.note
    assert read_record("peek_ahead", ws.places.root) is None
    assert ws.tracker.model_versions("tierline-peek_ahead") == []


def test_pyfunc_champion_loads_by_alias_and_returns_the_strategy_signals(
    evidence: Evidence, ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pyfunc

    from tierline.core.bars import to_strategy_frame
    from tierline.strategy import get_strategy

    record = _promote(ws, _lax(ws.tmp))
    # Through Tracker: the process-wide MLflow URIs (and MLFLOW_TRACKING_URI, which later
    # default-URI Trackers would read) are left as they were.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    via_tracker = Tracker(ws.uri).load_pyfunc(f"models:/{MODEL}@champion")
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    # As a user would, with MLflow's own API pointed at the store.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", ws.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", ws.uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    frame = to_strategy_frame(evidence.bars)
    out = model.predict(frame)
    want = get_strategy("sma_cross").signals(frame, record["params"])
    assert list(out.columns) == ["enter_long", "exit_long"] and out.index.equals(frame.index)
    assert np.array_equal(out["enter_long"].to_numpy(), want.enter_long)
    assert np.array_equal(out["exit_long"].to_numpy(), want.exit_long)
    assert 0 < out["enter_long"].sum() < len(frame)
    assert via_tracker.predict(frame).equals(out)


def test_second_promotion_keeps_the_previous_and_rollback_restores_it(
    evidence: Evidence, ws: Workspace
) -> None:
    policy = _lax(ws.tmp)
    first = _promote(ws, policy)
    cand2 = _pipeline(ws, evidence.run_id).find("tier2", "nautilus", 2)[0].params
    # candidate 2 was not causality-checked by the pipeline: --run-missing checks it
    with pytest.raises(GateRejected) as info:
        _promote(ws, policy, params=cand2)
    assert [c.name for c in info.value.verdict.failed] == ["causality (lookahead, window)"]
    second = _promote(ws, policy, params=cand2, run_missing=True)
    assert second["candidate_rank"] == 2 and second["params"] != first["params"]
    assert second["model"]["version"] == "2"
    assert second["previous"] == {k: v for k, v in first.items() if k != "previous"}
    assert _aliases(ws) == {"champion": "2", "previous": "1"}
    assert _pipeline(ws, evidence.run_id).metrics["causality_passed_r2"] == 1.0

    restored = rollback("sma_cross", policy, ws.places, say=_quiet)
    assert restored["params"] == first["params"] and restored["model"]["version"] == "1"
    assert restored["previous"] is None and restored["rolled_back_from"]["model"]["version"] == "2"
    assert read_record("sma_cross", ws.places.root) == restored
    assert _aliases(ws) == {"champion": "1", "previous": None}
    assert "tierline.rolled_back_at" in ws.tracker.model_version(MODEL, "2").tags
    assert json.loads(ws.config.read_text())["tierline"]["promoted_at"] == first["promoted_at"]
    assert consistency("sma_cross", ws.places) == []
    with pytest.raises(ConfigError, match="no previous champion"):
        rollback("sma_cross", policy, ws.places, say=_quiet)


def test_interruption_between_mlflow_and_registry_keeps_the_previous_champion(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tierline.promotion.champion as champion

    policy = _lax(ws.tmp)
    _promote(ws, policy)
    before = _snapshot(ws)

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # a Ctrl-C after the model version, before the record

    monkeypatch.setattr(champion, "write_record", killed)
    with pytest.raises(KeyboardInterrupt):
        _promote(ws, policy)
    monkeypatch.undo()
    after = _snapshot(ws)
    # the orphan version 2 exists, but nothing points at it; all else is the champion's
    assert after["versions"] == ["2", "1"]
    assert "tierline.committed" not in ws.tracker.model_version(MODEL, "2").tags
    assert {**after, "versions": before["versions"]} == before
    assert consistency("sma_cross", ws.places) == []
    assert not list(ws.places.root.glob(".tmp-*"))


def test_interruption_after_the_registry_commit_is_repaired_from_the_record(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = _lax(ws.tmp)
    _promote(ws, policy)

    def down(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("MLflow went away")

    monkeypatch.setattr(Tracker, "set_alias", down)
    with pytest.raises(TierlineError, match="registry sync sma_cross"):
        _promote(ws, policy)
    monkeypatch.undo()
    record = read_record("sma_cross", ws.places.root)
    assert record is not None and record["model"]["version"] == "2"
    assert record["previous"]["model"]["version"] == "1"  # the previous champion is kept
    assert _aliases(ws) == {"champion": "1", "previous": None}  # MLflow lags the commit
    assert len(consistency("sma_cross", ws.places)) == 2
    done = reconcile("sma_cross", ws.places, policy=policy)
    assert len(done) == 2 and _aliases(ws) == {"champion": "2", "previous": "1"}
    assert consistency("sma_cross", ws.places) == []


def test_a_failed_config_write_after_the_commit_still_moves_the_aliases(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tierline.promotion.champion as champion

    policy = _lax(ws.tmp)
    first = _promote(ws, policy)

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(champion, "_write_config", full)
    with pytest.raises(TierlineError, match=r"No space left on device.*registry sync sma_cross"):
        _promote(ws, policy)
    monkeypatch.undo()
    record = read_record("sma_cross", ws.places.root)
    assert record is not None and record["model"]["version"] == "2"
    assert _aliases(ws) == {"champion": "2", "previous": "1"}  # the next step still ran
    (problem,) = consistency("sma_cross", ws.places)
    assert problem.startswith(f"freqtrade config {ws.config} is of the promotion of")
    assert first["promoted_at"] in problem
    assert reconcile("sma_cross", ws.places, policy=policy) == [
        f"freqtrade config {ws.config} regenerated"
    ]
    config = json.loads(ws.config.read_text())
    assert config["tierline"]["promoted_at"] == record["promoted_at"]
    assert consistency("sma_cross", ws.places) == []


def test_two_concurrent_promotions_serialise(evidence: Evidence, ws: Workspace) -> None:
    from tierline.promotion.lock import file_lock
    from tierline.promotion.registry import lock_path

    policy = _lax(ws.tmp)
    cmd = [
        sys.executable,
        "-m",
        "tierline",
        "promote",
        "sma_cross",
        "--policy",
        str(policy.path),
        "--tracking-uri",
        ws.uri,
        "--registry",
        str(ws.places.root),
        "--freqtrade-config",
        str(ws.config),
    ]
    env = {**os.environ, "TIERLINE_FREQTRADE_USERDIR": str(REPO / "freqtrade" / "user_data")}
    procs: list[subprocess.Popen[str]] = []
    # Hold the lock while both start, so that both must wait for it and then for each other.
    with file_lock(lock_path("sma_cross", ws.places.root), timeout=5):
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=ws.tmp,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        waiting: list[str] = []
        for p in procs:
            assert p.stdout is not None
            deadline = time.monotonic() + 120
            for line in p.stdout:
                if "waiting for pid" in line:
                    waiting.append(line)
                    break
                assert time.monotonic() < deadline, "promotion did not reach the lock"
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(waiting) == 2 and all(f"pid {os.getpid()}" in w for w in waiting)
    # one after the other: versions 1 and 2, the second's previous is the first
    record = read_record("sma_cross", ws.places.root)
    assert record is not None and record["model"]["version"] == "2"
    assert record["previous"]["model"]["version"] == "1"
    assert record["previous"]["promoted_at"] <= record["promoted_at"]
    assert _aliases(ws) == {"champion": "2", "previous": "1"}
    assert sorted(ws.tracker.model_versions(MODEL)[i].version for i in range(2)) == ["1", "2"]
    assert consistency("sma_cross", ws.places) == []


def test_model_of_a_workspace_strategy_keeps_its_own_copy_of_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, evidence: Evidence
) -> None:
    from tierline.core.bars import to_strategy_frame
    from tierline.promotion.model import _load_pyfunc, write_model_data
    from tierline.strategy import get_strategy

    folder = tmp_path / "strategies"
    folder.mkdir()
    (folder / "peek_ahead.py").write_text(LOOKAHEAD)
    monkeypatch.setenv("TIERLINE_STRATEGIES_DIR", str(folder))
    data = write_model_data(tmp_path / "model", get_strategy("peek_ahead"), {"k": 24})
    (folder / "peek_ahead.py").unlink()  # the workspace file is gone; the model is not
    model = _load_pyfunc(str(data))
    frame = to_strategy_frame(evidence.bars.head(500))
    out = model.predict(frame)
    ahead = frame["close"].shift(-24)
    assert out["enter_long"].tolist() == (ahead > frame["close"] * 1.01).tolist()
    assert model.params == {"k": 24}
    with pytest.raises(ConfigError, match="DataFrame"):
        model.predict([1, 2, 3])  # type: ignore[arg-type]


def test_tier3_checks_run_missing_tier3_and_judge_synthetic_l2(
    evidence: Evidence, ws: Workspace
) -> None:
    # January 2024 has no real L2 in the data: tier 3 replays on a book synthesised from bars.
    no_synthetic = _lax(ws.tmp, required="true", min_fill_ratio="0.5")
    with pytest.raises(GateRejected) as info:
        _promote(ws, no_synthetic, run_missing=True)  # runs tier 3 (hftbacktest) first
    (failed,) = info.value.verdict.failed
    assert (failed.name, failed.value, failed.threshold) == ("L2 book", "synthetic", "real")
    assert read_record("sma_cross", ws.places.root) is None
    (t3,) = _pipeline(ws, evidence.run_id).find("tier3", "hftbacktest", 1)
    assert t3.status == "FINISHED" and t3.tags["l2"] == "synthetic"
    assert t3.metrics["orders"] > 0 and 0.0 <= t3.metrics["fill_ratio"] <= 1.0
    checks = {c.name: c for c in info.value.verdict.checks}
    assert checks["shortfall (bps)"].value == pytest.approx(t3.metrics["shortfall_bps"])
    assert checks["fill ratio"].value == pytest.approx(t3.metrics["fill_ratio"])
    assert checks["net return"].value == pytest.approx(t3.metrics["total_return"])

    # net return must be ABOVE the minimum: a minimum at the measured value fails
    at_value = _lax(
        ws.tmp,
        required="true",
        allow_synthetic_l2="true",
        min_fill_ratio="0.5",
        min_net_return=repr(t3.metrics["total_return"]),
    )
    with pytest.raises(GateRejected) as info:
        _promote(ws, at_value)  # the tier-3 run now exists: nothing is run again
    assert [c.name for c in info.value.verdict.failed] == ["net return"]
    assert len(_pipeline(ws, evidence.run_id).find("tier3")) == 1

    allowed = _lax(ws.tmp, required="true", allow_synthetic_l2="true", min_fill_ratio="0.5")
    record = _promote(ws, allowed)
    assert record["runs"]["tier3"] == t3.run_id
    passed = {c["name"]: c for c in record["verdict"]["checks"]}
    assert passed["L2 book"]["value"] == "synthetic" and passed["L2 book"]["passed"]
    assert passed["fill ratio"]["value"] == pytest.approx(t3.metrics["fill_ratio"])


def test_lock_held_elsewhere_times_out_naming_the_holder(tmp_path: Path) -> None:
    from tierline.promotion.lock import LockTimeout, file_lock

    path = tmp_path / ".x.lock"
    with file_lock(path, timeout=1):
        started = time.monotonic()
        with pytest.raises(LockTimeout, match=rf"held by another process \(pid {os.getpid()}\)"):
            with file_lock(path, timeout=0.3, what="promotion of x"):
                pass  # pragma: no cover
        assert 0.3 <= time.monotonic() - started < 5
    with file_lock(path, timeout=0):  # released: free at once
        assert path.read_text().strip() == str(os.getpid())


KILLER = """
import os, signal, sys
from pathlib import Path
import tierline.promotion.champion as champion
from tierline.promotion.gate import PromotionRequest
from tierline.promotion.policy import load_policy
from tierline.tracking import Tracker

def die(*args, **kwargs):  # killed right after the registry commit, before config and aliases
    os.kill(os.getpid(), signal.SIGKILL)

champion._write_config = die
uri, root, config, policy = sys.argv[1:5]
places = champion.Places(Tracker(uri), root=Path(root), freqtrade_config=config)
champion.promote(PromotionRequest(strategy="sma_cross"), load_policy(policy), places)
"""


def test_a_process_killed_after_the_commit_leaves_a_state_the_next_command_repairs(
    ws: Workspace,
) -> None:
    policy = _lax(ws.tmp)
    first = _promote(ws, policy)
    config_before = ws.config.read_bytes()
    args = [ws.uri, str(ws.places.root), str(ws.config), str(policy.path)]
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, *args], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    record = read_record("sma_cross", ws.places.root)
    assert record is not None and record["model"]["version"] == "2"  # committed
    assert record["previous"] == {k: v for k, v in first.items() if k != "previous"}
    assert _aliases(ws) == {"champion": "1", "previous": None}  # MLflow lags
    assert ws.config.read_bytes() == config_before  # so does the config: `ls` says both
    problems = consistency("sma_cross", ws.places)
    assert len(problems) == 3, problems
    assert problems[2] == (
        f"freqtrade config {ws.config} is of the promotion of {first['promoted_at']}, the "
        f"registry's champion was promoted at {record['promoted_at']}"
    )
    # the kernel released the lock: the next promotion gets it, repairs, and goes on
    third = _promote(ws, policy)
    assert third["model"]["version"] == "3" and third["previous"]["model"]["version"] == "2"
    assert _aliases(ws) == {"champion": "3", "previous": "2"}
    assert consistency("sma_cross", ws.places) == []


def test_record_from_another_mlflow_store_does_not_block_a_promotion(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    from tierline.promotion.registry import write_record

    foreign = {"strategy": "sma_cross", "params": {"fast": 5, "slow": 20}}
    foreign |= {"model": {"name": MODEL, "version": "7"}, "previous": None}
    write_record(foreign, ws.places.root)  # e.g. committed to git, promoted elsewhere
    record = _promote(ws, _lax(ws.tmp))
    assert record["model"]["version"] == "1"
    assert record["previous"] == {k: v for k, v in foreign.items() if k != "previous"}
    assert _aliases(ws) == {"champion": "1", "previous": None}
    (problem,) = consistency("sma_cross", ws.places)
    assert "previous is not set, the registry says 7" in problem
    # sync cannot set an alias to a version this store lacks: it says so and exits 1
    from tierline.cli import main

    places = ["--tracking-uri", ws.uri, "--registry", str(ws.places.root)]
    places += ["--freqtrade-config", str(ws.config), "--policy", str(_lax(ws.tmp).path)]
    assert main(["registry", "sync", "sma_cross", *places]) == 1
    out = capsys.readouterr().out
    assert f"! {problem}" in out and "sma_cross: still out of sync" in out
    assert "agree" not in out
