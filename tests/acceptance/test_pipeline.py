"""`tierline run` on the synthetic sample: tier 1 and tier 2 under one MLflow parent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierline.cli import main
from tierline.core.metrics import METRIC_NAMES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tierline.data.catalog import Catalog
    from tierline.data.sample import write_sample

    tmp = tmp_path_factory.mktemp("pipeline")
    write_sample(Catalog(tmp / "parquet"), days=10)
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
                "2",
                "--folds",
                "2",
                "--out",
                str(tmp / "runs"),
                "--no-progress",
            ]
        )
    finally:
        mp.undo()
    from tierline.tracking import Tracker

    return rc, Tracker(uri).latest_pipeline("sma_cross"), tmp


def test_run_exits_zero_when_every_engine_matches(pipeline_run) -> None:  # type: ignore[no-untyped-def]
    rc, record, _ = pipeline_run
    assert rc == 0
    assert record is not None and record.status == "FINISHED"


def test_tier_runs_share_the_metric_names_and_candidates(pipeline_run) -> None:  # type: ignore[no-untyped-def]
    _, record, _ = pipeline_run
    (sweep,) = [t for t in record.find("tier1", "vectorbt") if t.rank is None]
    assert set(METRIC_NAMES) <= set(sweep.metrics)
    assert 0.0 <= sweep.metrics["dsr"] <= 1.0 and 0.0 <= sweep.metrics["pbo"] <= 1.0
    for rank in (1, 2):
        (vbt,) = record.find("tier1", "vectorbt", rank)
        for engine in ("nautilus", "freqtrade"):
            (t2,) = record.find("tier2", engine, rank)
            assert t2.status == "FINISHED"
            assert t2.params == vbt.params
            assert set(METRIC_NAMES) <= set(t2.metrics)
            assert t2.metrics["parity_passed"] == 1.0
            assert t2.metrics["trades"] == vbt.metrics["trades"] > 0
            assert abs(t2.metrics["total_return"] - vbt.metrics["total_return"]) < 1e-4


def test_tier3_runs_candidate_one_beside_tiers_1_and_2(pipeline_run) -> None:  # type: ignore[no-untyped-def]
    from tierline.engines.hft.report import TIER3_METRICS

    _, record, _ = pipeline_run
    (t3,) = record.find("tier3", "hftbacktest")
    (vbt,) = record.find("tier1", "vectorbt", 1)
    assert t3.rank == 1 and t3.status == "FINISHED"
    assert t3.params == vbt.params
    assert set(METRIC_NAMES) | set(TIER3_METRICS) <= set(t3.metrics)
    # the sample's 5m bars span 10 days, its book only the last 2 h: a synthetic book
    assert t3.tags["l2"] == "synthetic"
    assert t3.tags["style"] == "taker"
    # same decisions as tier 1, filled 10 ms after the bar open on a 1-tick synthetic spread
    assert t3.metrics["trades"] == vbt.metrics["trades"]
    assert t3.metrics["fill_ratio"] == 1.0
    assert 0.0 <= t3.metrics["shortfall_bps"] < 0.01
    assert t3.metrics["time_to_fill_s"] == pytest.approx(0.010)


def test_sweep_table_is_one_artifact_not_thousands_of_runs(pipeline_run) -> None:  # type: ignore[no-untyped-def]
    from tierline.tracking import Tracker

    _, record, tmp = pipeline_run
    # sweep + (vectorbt, nautilus, freqtrade) x 2 + tier 3 on candidate 1
    assert len(record.tiers) == 1 + 2 * 3 + 1
    (sweep,) = [t for t in record.find("tier1", "vectorbt") if t.rank is None]
    table = Tracker(f"sqlite:///{tmp / 'mlflow.db'}").load_frame(
        sweep.run_id, "tables/sweep.parquet"
    )
    assert table.height == sweep.metrics["parameter_sets"] > 100
