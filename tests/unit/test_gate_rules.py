"""The gate's rules on hand-made pipeline records: what each check reads and how it decides."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tierline.errors import ConfigError
from tierline.promotion.gate import Verdict, candidates, evaluate, select_candidate
from tierline.promotion.policy import Policy, load_policy
from tierline.strategy import get_strategy
from tierline.tracking import DatasetRef, PipelineRecord, TierRecord

REPO = Path(__file__).resolve().parents[2]
GOOD = {"sharpe": 2.0, "max_drawdown": 0.1, "trades": 40.0, "total_return": 0.2}


def _tier(
    tier: str,
    engine: str,
    rank: int | None,
    metrics: dict[str, float],
    *,
    status: str = "FINISHED",
    tags: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> TierRecord:
    return TierRecord(
        run_id=f"{tier}-{engine}-{rank}",
        tier=tier,
        engine=engine,
        rank=rank,
        status=status,
        params=params if params is not None else ({"fast": "10", "slow": "50"} if rank else {}),
        metrics=metrics,
        tags=tags or {},
        artifact_uri="",
        start_time=None,
        end_time=None,
    )


def _record(*tiers: TierRecord, synthetic: bool = False, **metrics: float) -> PipelineRecord:
    return PipelineRecord(
        run_id="parent",
        experiment_id="1",
        strategy="sma_cross",
        status="FINISHED",
        dataset=DatasetRef(
            exchange="binance",
            symbol="BTC/USDT",
            timeframe="5m",
            fingerprint="f" * 64,
            synthetic=synthetic,
        ),
        code_version="abc",
        config_hash="",
        tags={"causality": "FAIL ... lookahead at bar 7"},
        start_time=None,
        end_time=None,
        tiers=tiers,
        metrics={"causality_passed": 1.0, **metrics},
    )


def _good(**tier3: Any) -> list[TierRecord]:
    runs = [
        _tier("tier1", "vectorbt", None, {**GOOD, "dsr": 0.99, "pbo": 0.1}),
        _tier("tier1", "vectorbt", 1, GOOD),
        _tier("tier2", "nautilus", 1, {**GOOD, "parity_passed": 1.0}),
        _tier("tier2", "freqtrade", 1, {**GOOD, "parity_passed": 1.0}),
    ]
    if tier3:
        runs.append(
            _tier(
                "tier3",
                "hftbacktest",
                1,
                {**GOOD, "shortfall_bps": 2.0, "fill_ratio": 1.0, "orders": 80.0, **tier3},
                tags={"l2": "real"},
            )
        )
    return runs


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(REPO / "promotion" / "policy.toml")


def _by_name(record: PipelineRecord, policy: Policy, rank: int = 1) -> dict[str, Any]:
    return {c.name: c for c in evaluate(record, policy, rank)}


def test_good_evidence_passes_every_check(policy: Policy) -> None:
    checks = evaluate(_record(*_good(total_return=0.2)), policy, 1)
    assert all(c.passed and not c.skipped for c in checks), [c for c in checks if not c.passed]
    assert [c.tier for c in checks][:3] == ["data", "check", "tier1"]
    assert len(checks) == 1 + 1 + 4 + 6 + 4


def test_each_threshold_is_compared_the_documented_way(policy: Policy) -> None:
    runs = _good(total_return=0.0, shortfall_bps=10.0, fill_ratio=0.95)
    runs[0] = _tier(
        "tier1", "vectorbt", None, {**GOOD, "sharpe": 0.5, "dsr": 0.95, "pbo": 0.5, "trades": 30.0}
    )
    c = _by_name(_record(*runs), policy)
    # boundaries: >= and <= include the threshold; net return must be strictly above it
    assert c["out-of-sample sharpe"].passed and c["deflated sharpe ratio"].passed
    assert c["probability of overfitting"].passed and c["out-of-sample trades"].passed
    assert c["shortfall (bps)"].passed and c["fill ratio"].passed
    assert not c["net return"].passed and c["net return"].op == ">"


def test_nan_and_missing_metrics_fail(policy: Policy) -> None:
    runs = _good(shortfall_bps=math.nan)
    runs[2] = _tier("tier2", "nautilus", 1, {"sharpe": 2.0, "max_drawdown": 0.1})  # no parity
    c = _by_name(_record(*runs), policy)
    assert not c["shortfall (bps)"].passed and math.isnan(c["shortfall (bps)"].value)
    parity = c["nautilus parity with reference"]
    assert not parity.passed and parity.value == "missing" and parity.note == "not logged"


def test_missing_or_failed_runs_fail_naming_them(policy: Policy) -> None:
    runs = [r for r in _good() if r.engine != "freqtrade"]
    runs.append(
        _tier("tier2", "freqtrade", 1, {}, status="FAILED", tags={"error": "EngineError: boom"})
    )
    runs = [r for r in runs if r.rank is not None or r.tier != "tier1"]  # no sweep
    c = _by_name(_record(*runs), policy)
    assert c["freqtrade backtest"].value == "FAILED" and "boom" in c["freqtrade backtest"].note
    assert c["out-of-sample sharpe"].value == "missing" and not c["deflated sharpe ratio"].passed
    assert c["hftbacktest execution run"].value == "missing"  # required by the default policy


def test_causality_is_enforced_for_the_promoted_candidate(policy: Policy) -> None:
    c = _by_name(_record(*_good(), causality_passed=0.0), policy)
    assert not c["causality (lookahead, window)"].passed
    assert "lookahead at bar 7" in c["causality (lookahead, window)"].note
    runs = [*_good(), _tier("tier2", "nautilus", 2, GOOD)]
    c2 = _by_name(_record(*runs), policy, rank=2)  # the pipeline checked candidate 1 only
    assert c2["causality (lookahead, window)"].value == "missing"
    c2 = _by_name(_record(*runs, causality_passed_r2=1.0), policy, rank=2)
    assert c2["causality (lookahead, window)"].passed


def test_synthetic_data_and_synthetic_l2_follow_the_policy(policy: Policy, tmp_path: Path) -> None:
    record = _record(*_good(total_return=0.2), synthetic=True)
    runs = list(record.tiers)
    runs[-1] = _tier("tier3", "hftbacktest", 1, runs[-1].metrics, tags={"l2": "synthetic"})
    c = _by_name(_record(*runs, synthetic=True), policy)
    assert not c["synthetic data"].passed and not c["L2 book"].passed
    text = (REPO / "promotion" / "demo-policy.toml").read_text()
    demo = load_policy(REPO / "promotion" / "demo-policy.toml")
    assert "DEMO POLICY" in text and demo.data.allow_synthetic and demo.tier3.allow_synthetic_l2
    c = _by_name(_record(*runs, synthetic=True), demo)
    assert c["synthetic data"].passed and c["L2 book"].passed


def test_tier3_not_required_is_skipped_when_absent_failed_or_empty(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        (REPO / "promotion" / "policy.toml")
        .read_text()
        .replace("required = true", "required = false")
    )
    lax = load_policy(path)
    for runs in (
        _good(),
        [*_good(), _tier("tier3", "hftbacktest", 1, {}, status="FAILED")],
        _good(orders=0.0, shortfall_bps=math.nan, fill_ratio=math.nan),
    ):
        (t3,) = [c for c in evaluate(_record(*runs), lax, 1) if c.tier == "tier3"]
        assert t3.skipped and t3.passed and t3.result == "SKIP"
    # a tier-3 run that exists is checked even when not required
    c = _by_name(_record(*_good(shortfall_bps=50.0)), lax)
    assert not c["shortfall (bps)"].passed
    # required: a run without orders is no evidence
    strict = load_policy(REPO / "promotion" / "policy.toml")
    (t3,) = [
        c
        for c in evaluate(_record(*_good(orders=0.0, fill_ratio=math.nan)), strict, 1)
        if c.tier == "tier3"
    ]
    assert not t3.passed and t3.value == "0 orders"


def test_candidate_selection_by_params(policy: Policy) -> None:
    runs = [*_good(), _tier("tier2", "nautilus", 2, GOOD, params={"fast": "20", "slow": "60"})]
    record = _record(*runs)
    assert candidates(record) == {1: {"fast": "10", "slow": "50"}, 2: {"fast": "20", "slow": "60"}}
    strategy = get_strategy("sma_cross")
    assert select_candidate(record, strategy, None) == (1, {"fast": 10, "slow": 50})
    assert select_candidate(record, strategy, {"fast": "20", "slow": 60}) == (
        2,
        {"fast": 20, "slow": 60},
    )
    with pytest.raises(
        ConfigError, match=r"fast=5,slow=20 is not a candidate .* 2: fast=20,slow=60"
    ):
        select_candidate(record, strategy, {"fast": 5, "slow": 20})
    assert select_candidate(_record(), strategy, None) == (None, {})
    (only,) = evaluate(_record(), policy, None)
    assert not only.passed and only.name == "candidates"


def test_verdict_table_lists_every_check_with_threshold_value_and_result(policy: Policy) -> None:
    record = _record(*_good(total_return=0.2, shortfall_bps=12.5))
    verdict = Verdict(
        strategy="sma_cross",
        pipeline=record,
        rank=1,
        params={"fast": 10, "slow": 50},
        checks=evaluate(record, policy, 1),
        policy=policy,
    )
    lines = verdict.table().splitlines()
    row = next(line for line in lines if line.strip().startswith("shortfall (bps)"))
    assert row.split()[-4:] == ["<=", "10", "12.5", "FAIL"]
    assert lines[-1] == "verdict: FAIL (15/16 checks passed)"
    assert not verdict.passed and [c.name for c in verdict.failed] == ["shortfall (bps)"]
    assert verdict.runs()["tier2"] == {
        "nautilus": "tier2-nautilus-1",
        "freqtrade": "tier2-freqtrade-1",
    }
