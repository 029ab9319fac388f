"""``tierline compare``: a real pipeline run (Binance BTC/USDT 5m, two weeks of March 2024, the
sma_cross grid, 2 candidates) plus a tier-3 run, printed side by side and rendered as HTML.

The printed values are the MLflow metrics; the HTML holds one equity trace per tier run (the
equity artifacts' values), the sweep heatmap, the parity and tier-3 summaries; the report is an
artifact of the pipeline run.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tierline.cli import main

REPO = Path(__file__).resolve().parents[2]
START, END = "2024-03-01", "2024-03-15"
COLUMNS = ("total_return", "sharpe", "max_drawdown", "trades", "shortfall_bps", "fill_ratio")
DECIMALS = {"sharpe": 3, "trades": 0, "shortfall_bps": 2}


def _main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def pipeline(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`tierline run` on real data, a tier-3 run of candidate 1, then `tierline compare`."""
    from tierline.data.catalog import Catalog
    from tierline.engines.hft.config import load_hft_config
    from tierline.engines.hft.execution import run_tier3
    from tierline.engines.hft.report import log_tier3
    from tierline.strategy import get_strategy
    from tierline.tracking import Tracker

    tmp = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    data = str(tmp / "parquet")
    src = shared_data / "ohlcv" / "binance_spot_2024_genetrader" / "BTC_USDT-5m.feather"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        mp.setenv("TIERLINE_FREQTRADE_USERDIR", str(REPO / "freqtrade" / "user_data"))
        mp.setenv("TIERLINE_VENUES", str(REPO / "nautilus" / "venues.toml"))
        market = ["--exchange", "binance", "--symbol", "BTC/USDT"]
        assert _main(["--data-dir", data, "data", "import", str(src), *market])[0] == 0
        rc, out, _ = _main(
            [
                "--data-dir",
                data,
                "run",
                "sma_cross",
                *market,
                "--timeframe",
                "5m",
                "--start",
                START,
                "--end",
                END,
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
        assert rc == 0, out[-3000:]
        tracker = Tracker(uri)
        record = tracker.latest_pipeline("sma_cross")
        assert record is not None
        if not record.find("tier3", rank=1):  # `tierline run` may not run tier 3 itself
            (cand,) = record.find("tier1", "vectorbt", 1)
            strategy = get_strategy("sma_cross")
            params = strategy.validate_params({k: int(v) for k, v in cand.params.items()})
            result = run_tier3(
                strategy,
                params,
                catalog=Catalog(Path(data)),
                exchange="binance",
                symbol="BTC/USDT",
                timeframe="5m",
                config=load_hft_config(REPO / "hft" / "default.toml"),
                l2="synthetic",
                start=START,
                end=END,
            )
            log_tier3(tracker.attach_pipeline(record), result, rank=1)
            record = tracker.pipeline_by_id(record.run_id)
        rc, out, err = _main(["compare", "sma_cross", "--tracking-uri", uri])
    return {
        "rc": rc,
        "out": out,
        "err": err,
        "record": record,
        "tracker": tracker,
        "uri": uri,
        "tmp": tmp,
        "html": (tmp / "reports" / "compare-sma_cross.html").read_text(),
    }


def _rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("run "))
    rows = {}
    for line in lines[head + 1 :]:
        if not line.startswith(("sweep", "#")):
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells
    return rows


def _label(t: Any) -> str:
    return "sweep" if t.rank is None else f"#{t.rank} {t.tier}/{t.engine}"


def test_printed_values_are_the_mlflow_metrics_of_every_tier_run(pipeline: dict[str, Any]) -> None:
    assert pipeline["rc"] == 0, pipeline["err"]
    record = pipeline["record"]
    rows = _rows(pipeline["out"])
    assert sorted(rows) == sorted(_label(t) for t in record.tiers)
    # the sweep, 2 x (vectorbt, nautilus, freqtrade), and tier 3 of candidate 1 (at least)
    assert len([label for label in rows if "tier3" not in label]) == 1 + 2 * 3
    assert "#1 tier3/hftbacktest" in rows
    for t in record.tiers:
        cells = rows[_label(t)]
        assert cells[1] == (
            "(oos)" if t.rank is None else ",".join(f"{k}={v}" for k, v in t.params.items())
        )
        for key, cell in zip(COLUMNS, cells[2:8], strict=True):
            value = t.metrics.get(key)
            if value is None:
                assert cell == "–", (t.label, key)
                continue
            assert math.isfinite(value), (t.label, key)
            decimals = DECIMALS.get(key, 4)
            assert abs(float(cell) - value) <= 0.5 * 10**-decimals + 1e-12, (t.label, key)
        parity = t.metrics.get("parity_passed")
        assert cells[8] == ("–" if parity is None else "PASS" if parity == 1.0 else "FAIL")
    # tiers 1-2 measure no execution cost; tier 3 does
    assert rows["#1 tier2/nautilus"][6:8] == ["–", "–"]
    (t3,) = record.find("tier3", "hftbacktest", 1)
    assert rows["#1 tier3/hftbacktest"][7] == f"{t3.metrics['fill_ratio']:.4f}"
    assert rows["#1 tier2/nautilus"][5] == rows["#1 tier1/vectorbt"][5]  # same trades
    assert "pipeline: causality PASS, parity PASS" in pipeline["out"]


def _plotly_data(html: str, div_id: str) -> list[dict[str, Any]]:
    start = html.index(f'"{div_id}",', html.index(f'id="{div_id}"'))
    data, _ = json.JSONDecoder().raw_decode(html, html.index("[", start))
    return data  # type: ignore[no-any-return]


def test_html_overlays_one_equity_trace_per_tier_run_with_its_values(
    pipeline: dict[str, Any],
) -> None:
    html, record, tracker = pipeline["html"], pipeline["record"], pipeline["tracker"]
    runs = [t for t in record.tiers if t.rank is not None]
    traces = _plotly_data(html, "tierline-equity")
    assert sorted(tr["name"] for tr in traces) == sorted(_label(t) for t in runs)
    assert len(traces) == len(runs) >= 7
    for t in runs:
        (trace,) = [tr for tr in traces if tr["name"] == _label(t)]
        equity = tracker.load_frame(t.run_id, "equity.parquet")
        assert trace["y"][0] == equity["equity"][0] and trace["y"][-1] == equity["equity"][-1]
        assert min(trace["y"]) == equity["equity"].min()  # thinning keeps the lows
        final = 10_000 * (1 + t.metrics["total_return"])
        assert trace["y"][-1] == pytest.approx(final, rel=1e-9)
    embedded = html.split('id="tierline-comparison">', 1)[1].split("</script>", 1)[0]
    doc = json.loads(embedded)
    assert doc["pipeline_run_id"] == record.run_id
    assert doc["equity_traces"] == [r["label"] for r in doc["rows"] if r["rank"] is not None]
    by_label = {r["label"]: r for r in doc["rows"]}
    for t in record.tiers:
        for key in COLUMNS:
            assert by_label[_label(t)]["metrics"][key] == t.metrics.get(key)


def test_html_has_the_sweep_heatmap_parity_and_tier3_summaries(pipeline: dict[str, Any]) -> None:
    html, record, tracker = pipeline["html"], pipeline["record"], pipeline["tracker"]
    (sweep,) = [t for t in record.tiers if t.rank is None]
    table = tracker.load_frame(sweep.run_id, "tables/sweep.parquet").filter(
        pl.col("status") == "ok"
    )
    (heat,) = _plotly_data(html, "tierline-sweep")
    assert heat["type"] == "heatmap"
    assert sorted(heat["x"]) == sorted(table["fast"].unique().to_list())
    assert sorted(heat["y"]) == sorted(table["slow"].unique().to_list())
    z = [v for row in heat["z"] for v in row if v is not None]
    assert max(z) == pytest.approx(table["sharpe"].max())
    parity = html.split("<h2>Tier 2", 1)[1].split("<h2>", 1)[0]
    assert "causality_passed: PASS; parity_passed: PASS" in parity
    assert parity.count("<td>nautilus</td>") == 2 and parity.count("<td>freqtrade</td>") == 2
    tier3 = html.split("<h2>Tier 3", 1)[1].split("<script", 1)[0]
    (t3,) = record.find("tier3", "hftbacktest", 1)
    assert "<td>#1 tier3/hftbacktest</td>" in tier3
    assert f"<td>{t3.metrics['shortfall_bps_max']:.2f}</td>" in tier3
    assert f"<td>{t3.metrics['orders']:.0f}</td>" in tier3
    assert f"<td>{t3.tags['l2']}</td>" in tier3 and t3.tags["l2"] == "synthetic"


def test_report_is_an_artifact_of_the_pipeline_run(pipeline: dict[str, Any]) -> None:
    tracker, record = pipeline["tracker"], pipeline["record"]
    files = [f.path for f in tracker.client.list_artifacts(record.run_id, "reports")]
    assert files == ["reports/compare-sma_cross.html"]
    local = tracker.client.download_artifacts(
        record.run_id, "reports/compare-sma_cross.html", str(pipeline["tmp"] / "dl")
    )
    assert Path(local).read_text() == pipeline["html"]
    assert f"logged to MLflow run {record.run_id}" in pipeline["out"]


def test_run_id_out_and_errors(pipeline: dict[str, Any]) -> None:
    uri, record, tmp = pipeline["uri"], pipeline["record"], pipeline["tmp"]
    out_path = tmp / "elsewhere" / "cmp.html"
    rc, out, _ = _main(
        [
            "compare",
            "sma_cross",
            "--run-id",
            record.run_id,
            "--tracking-uri",
            uri,
            "--out",
            str(out_path),
            "--no-log",
        ]
    )
    assert rc == 0
    assert _rows(out) == _rows(pipeline["out"])
    assert out_path.exists() and [p.name for p in out_path.parent.iterdir()] == ["cmp.html"]
    rc, _, err = _main(
        ["compare", "rsi_reversion", "--run-id", record.run_id, "--tracking-uri", uri]
    )
    assert rc == 2 and "is of strategy 'sma_cross', not 'rsi_reversion'" in err
    rc, _, err = _main(["compare", "donchian_breakout", "--tracking-uri", uri])
    assert rc == 2 and "no finished pipeline run of 'donchian_breakout'" in err
    # A newer partial pipeline (what `tierline sweep` logs: a sweep, no tier 2) is skipped.
    tracker = pipeline["tracker"]
    with tracker.pipeline(strategy="sma_cross", dataset=record.dataset, argv=["sweep"]) as p:
        with p.tier(tier="tier1", engine="vectorbt") as run:
            run.log_metrics({"total_return": 0.5, "trades": 3})
    partial = tracker.latest_pipeline("sma_cross")
    assert partial is not None and partial.run_id != record.run_id
    rc, out, _ = _main(["compare", "sma_cross", "--tracking-uri", uri, "--no-log"])
    assert rc == 0 and f"pipeline run {record.run_id}" in out
    assert _rows(out) == _rows(pipeline["out"])
    rc, out, _ = _main(
        ["compare", "sma_cross", "--run-id", partial.run_id, "--tracking-uri", uri, "--no-log"]
    )
    assert rc == 0 and list(_rows(out)) == ["sweep"]
    assert _rows(out)["sweep"][2:6] == ["0.5000", "–", "–", "3"]
