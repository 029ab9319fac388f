"""`tierline promote` and `tierline registry` on the demo path (synthetic sample, demo policy).

One `tierline run` on the embedded sample (30 days, as `make demo`, one candidate) is shared by
the module; the tests run in order on one workspace, like a user would.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tierline.cli import main

REPO = Path(__file__).resolve().parents[2]
DEMO_POLICY = REPO / "promotion" / "demo-policy.toml"
DEFAULT_POLICY = REPO / "promotion" / "policy.toml"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tierline.data.catalog import Catalog
    from tierline.data.sample import write_sample

    tmp = tmp_path_factory.mktemp("promote_cli")
    write_sample(Catalog(tmp / "parquet"), days=30)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp)
    mp.setenv("TIERLINE_FREQTRADE_USERDIR", str(REPO / "freqtrade" / "user_data"))
    mp.setenv("TIERLINE_VENUES", str(REPO / "nautilus" / "venues.toml"))
    try:
        rc = main(
            [
                "--data-dir",
                str(tmp / "parquet"),
                "run",
                "sma_cross",
                "--exchange",
                "synthetic",
                "--symbol",
                "BTC/USDT",
                "--timeframe",
                "5m",
                "--tracking-uri",
                uri,
                "--top",
                "1",
                "--out",
                str(tmp / "runs"),
                "--no-progress",
            ]
        )
    finally:
        mp.undo()
    assert rc == 0
    return {"tmp": tmp, "uri": uri}


def _places(demo: dict[str, Any]) -> list[str]:
    tmp = demo["tmp"]
    return [
        "--tracking-uri",
        demo["uri"],
        "--registry",
        str(tmp / "registry"),
        "--freqtrade-config",
        str(tmp / "user_data" / "config.{strategy}.json"),
    ]


def _run(demo: dict[str, Any], capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main([*args, *_places(demo)])
    cap = capsys.readouterr()
    return code, cap.out + cap.err


def test_default_policy_rejects_the_synthetic_demo_with_a_table(demo, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out = _run(demo, capsys, "promote", "sma_cross", "--policy", str(DEFAULT_POLICY))
    assert code == 5
    lines = out.splitlines()
    header = next(
        line
        for line in lines
        if line.split()[:5] == ["check", "tier", "threshold", "value", "result"]
    )
    assert header
    row = next(line for line in lines if line.strip().startswith("synthetic data"))
    assert row.split()[-3:] == ["real", "synthetic", "FAIL"]
    # `tierline run` now includes tier 3: on the sample it replays on a book synthesised from
    # the bars, which the default policy does not accept as execution evidence.
    l2_row = next(line for line in lines if line.strip().startswith("L2 book"))
    assert l2_row.split()[-3:] == ["real", "synthetic", "FAIL"]
    assert "verdict: FAIL" in out
    assert "error: sma_cross was not promoted" in out and "unchanged" in out
    assert not (demo["tmp"] / "registry" / "sma_cross.json").exists()
    assert not (demo["tmp"] / "user_data").exists()


def test_dry_run_with_the_demo_policy_passes_and_changes_nothing(demo, capsys) -> None:  # type: ignore[no-untyped-def]
    args = ("promote", "sma_cross", "--policy", str(DEMO_POLICY), "--dry-run")
    code, out = _run(demo, capsys, *args)
    assert code == 0, out
    assert "verdict: PASS (16/16 checks passed)" in out
    assert "SYNTHETIC data, allowed by" in out and "would be promoted" in out
    assert not (demo["tmp"] / "registry" / "sma_cross.json").exists()
    assert not (demo["tmp"] / "user_data").exists()  # no freqtrade config
    from tierline.tracking import Tracker

    assert Tracker(demo["uri"]).model_versions("tierline-sma_cross") == []  # nor a model


def test_promote_ls_show_rollback_sync(demo, capsys) -> None:  # type: ignore[no-untyped-def]
    from tierline.tracking import Tracker

    tmp = demo["tmp"]
    code, out = _run(demo, capsys, "registry", "ls")
    assert code == 0 and "no champions" in out
    code, out = _run(demo, capsys, "promote", "sma_cross", "--policy", str(DEMO_POLICY))
    assert code == 0, out
    assert "promoted sma_cross (fast=15,slow=130): tierline-sma_cross@champion = version 1" in out
    assert "note: the evidence is SYNTHETIC data" in out
    record = json.loads((tmp / "registry" / "sma_cross.json").read_text())
    assert record["params"] == {"fast": 15, "slow": 130} and record["data"][0]["synthetic"]
    assert record["policy"]["path"] == str(DEMO_POLICY)
    config = json.loads((tmp / "user_data" / "config.sma_cross.json").read_text())
    assert config["dry_run"] is True

    code, out = _run(demo, capsys, "registry", "ls")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("sma_cross"))
    assert row.split()[:3] == ["sma_cross", "1", "fast=15,slow=130"] and row.endswith("consistent")
    code, out = _run(demo, capsys, "registry", "show", "sma_cross")
    assert code == 0 and json.loads(out) == record

    code, out = _run(
        demo, capsys, "registry", "rollback", "sma_cross", "--policy", str(DEMO_POLICY)
    )
    assert code == 2 and "no previous champion" in out

    code, out = _run(demo, capsys, "promote", "sma_cross", "--policy", str(DEMO_POLICY))
    assert code == 0 and "version 2" in out
    code, out = _run(
        demo, capsys, "registry", "rollback", "sma_cross", "--policy", str(DEMO_POLICY)
    )
    assert code == 0 and "tierline-sma_cross@champion = version 1" in out
    assert json.loads((tmp / "registry" / "sma_cross.json").read_text())["model"]["version"] == "1"

    # MLflow loses the alias (e.g. someone deleted it in the UI): ls says so, sync repairs it
    Tracker(demo["uri"]).delete_alias("tierline-sma_cross", "champion")
    code, out = _run(demo, capsys, "registry", "ls")
    assert code == 1 and "OUT OF SYNC" in out and "champion is not set" in out
    code, out = _run(demo, capsys, "registry", "sync", "sma_cross", "--policy", str(DEMO_POLICY))
    assert code == 0 and "tierline-sma_cross@champion: not set -> version 1" in out
    code, out = _run(demo, capsys, "registry", "ls")
    assert code == 0 and "consistent" in out
    assert Tracker(demo["uri"]).get_alias_version("tierline-sma_cross", "champion") == "1"


def test_bad_input_is_refused_clearly(demo, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_POLICY.read_text().replace("max_pbo = 0.5", "max_pbo = 5"))
    code, out = _run(demo, capsys, "promote", "sma_cross", "--policy", str(bad))
    assert code == 2 and f"{bad}: [tier1] max_pbo: 5.0 is out of range [0, 1]" in out
    code, out = _run(demo, capsys, "promote", "sma_cross", "--run-id", "0123abcd")
    assert code == 2 and "no MLflow run '0123abcd'" in out
    code, out = _run(demo, capsys, "promote", "no_such_strategy")
    assert code == 2 and "unknown strategy 'no_such_strategy'" in out
    code, out = _run(demo, capsys, "promote", "sma_cross", "--params", "fast=5,slow=20")
    assert code == 2 and "is not a candidate of pipeline" in out
    code, out = _run(demo, capsys, "promote", "rsi_reversion")
    assert code == 2 and "no complete pipeline of rsi_reversion" in out and "--run-missing" in out
    code, out = _run(demo, capsys, "registry", "show", "rsi_reversion")
    assert code == 2 and "has no champion" in out


def test_make_promote_calls_the_cli() -> None:
    out = subprocess.run(
        ["make", "-n", "promote", "STRATEGY=donchian_breakout", "ARGS=--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ".venv/bin/tierline promote donchian_breakout --dry-run" in out
