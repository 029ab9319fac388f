"""Tier-1 sweeps on a month of real Binance BTC/USDT 5m bars (January 2024).

Grid with walk-forward, a resumed Optuna study, failure isolation, the batched-signal hook,
outputs on disk and the ``tierline sweep`` command.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from tierline.core import reference
from tierline.core.bars import to_strategy_frame
from tierline.core.conventions import ExecutionConfig
from tierline.core.metrics import METRIC_NAMES, compute_metrics
from tierline.errors import ConfigError, EngineError
from tierline.strategies._indicators import shift, window_mean
from tierline.strategy import get_strategy
from tierline.strategy.contract import Constraint, Int, strategy
from tierline.sweep import run_sweep
from tierline.sweep.evaluate import Segment, evaluate

CFG = ExecutionConfig(fee=0.001)
FEED = Path("ohlcv") / "binance_spot_2024_genetrader" / "BTC_USDT-5m.feather"


@pytest.fixture(scope="module")
def jan(shared_data: Path) -> pl.DataFrame:
    return (
        pl.read_ipc(shared_data / FEED)
        .rename({"date": "ts"})
        .with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
        .filter(pl.col("ts") < datetime(2024, 2, 1, tzinfo=UTC))
    )


@pytest.fixture(scope="module")
def grid_result(jan: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("grid")
    return run_sweep(get_strategy("sma_cross"), jan, CFG, folds=3, out_dir=out, progress=False)


def _fixed(enter: np.ndarray, exit_: np.ndarray):  # type: ignore[no-untyped-def]
    @strategy(name="fixed", params=[Int("k", 0, 0, default=0)], warmup=lambda p: 1)
    def fixed(bars: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
        return pd.DataFrame({"enter_long": enter, "exit_long": exit_}, index=bars.index)

    return fixed


def _reference_on_span(
    jan: pl.DataFrame, params: dict[str, Any], a: int, b: int
) -> dict[str, float]:
    """Reference engine on bars a..b-1 with signals computed on all bars (with history)."""
    sig = get_strategy("sma_cross").signals(to_strategy_frame(jan), params)
    res = reference.run(_fixed(sig.enter_long[a:b], sig.exit_long[a:b]), jan[a:b], {}, CFG)
    return compute_metrics(res.trades, res.equity, initial_cash=CFG.initial_cash)


def _close(a: Mapping[str, float], b: Mapping[str, float]) -> None:
    for k in METRIC_NAMES:
        if math.isfinite(a[k]):
            assert b[k] == pytest.approx(a[k], rel=1e-9, abs=1e-12), k
        else:
            assert b[k] == a[k] or (math.isnan(a[k]) and math.isnan(b[k])), k


def test_grid_table_has_one_row_per_valid_combination(grid_result, jan) -> None:  # type: ignore[no-untyped-def]
    s = get_strategy("sma_cross")
    table = grid_result.table
    assert table.columns == ["id", "fast", "slow", *METRIC_NAMES, "status", "error"]
    combos = list(s.grid())
    assert table.height == len(combos) == 174
    assert table.select("fast", "slow").rows() == [(p["fast"], p["slow"]) for p in combos]
    assert (table["status"] == "ok").all() and table["error"].null_count() == 174
    assert not grid_result.failures
    # a row equals the reference engine's metrics on the full month
    row = table.filter((pl.col("fast") == 10) & (pl.col("slow") == 50)).row(0, named=True)
    _close(_reference_on_span(jan, {"fast": 10, "slow": 50}, 0, jan.height), row)


def test_grid_walk_forward_chooses_in_sample_and_scores_out_of_sample(grid_result, jan) -> None:  # type: ignore[no-untyped-def]
    wf = grid_result.walkforward
    assert wf is not None and wf.n_folds == 3 and wf.mode == "anchored"
    n = jan.height
    edges = [round(j * n / 4) for j in range(5)]
    table = grid_result.table
    for i, f in enumerate(wf.folds):
        assert f.is_start == jan["ts"][0] and f.oos_start == jan["ts"][edges[i + 1]]
        assert f.oos_end == jan["ts"][edges[i + 2] - 1]
        _close(_reference_on_span(jan, f.params, 0, edges[i + 1]), f.is_metrics)
        _close(_reference_on_span(jan, f.params, edges[i + 1], edges[i + 2]), f.oos_metrics)
        assert f.n_candidates == table.height
    # the chosen set is the in-sample best: no other set beats it on the fold-3 IS span
    ev = evaluate(
        get_strategy("sma_cross"),
        jan,
        table.select("fast", "slow").to_dicts(),
        CFG,
        segments=[Segment(0, edges[3])],
        keep_daily=False,
    )
    assert np.nanmax(ev.metrics[0]["sharpe"]) == wf.folds[2].is_metrics["sharpe"]
    # concatenated OOS: all-equity stakes chain, so returns compound across folds
    growth = np.prod([1 + f.oos_metrics["total_return"] for f in wf.folds]) - 1
    assert wf.oos_metrics["total_return"] == pytest.approx(growth, rel=1e-9)
    assert wf.oos_metrics["trades"] == sum(f.oos_metrics["trades"] for f in wf.folds)
    assert wf.oos_equity.height == n - edges[1]


def test_grid_top_k_dsr_pbo_and_files(grid_result) -> None:  # type: ignore[no-untyped-def]
    r = grid_result
    assert len(r.top) == 10 and [c.rank for c in r.top] == list(range(1, 11))
    assert r.top[0].params == r.walkforward.folds[-1].params
    is_sharpes = [c.is_metrics["sharpe"] for c in r.top]
    assert is_sharpes == sorted(is_sharpes, reverse=True)
    assert all(set(c.oos_metrics) == set(METRIC_NAMES) for c in r.top)
    assert 0.0 <= r.dsr <= 1.0 and r.dsr_detail["n_trials"] == 174
    assert 0.0 <= r.pbo <= 1.0 and r.pbo_detail["n_trials"] == 174
    assert r.pbo_detail["n_splits"] == 14  # 31 daily returns: S lowered so blocks hold 2 rows
    out = r.out_dir
    assert r.table_path == out / "results.parquet" and r.plot_path == out / "heatmap.html"
    assert pl.read_parquet(r.table_path).equals(r.table)
    top = pl.read_parquet(r.top_path)
    assert top.height == 10 and {
        "rank",
        "params",
        "fast",
        "slow",
        "is_sharpe",
        "oos_sharpe",
    } <= set(top.columns)
    assert pl.read_parquet(out / "folds.parquet").height == 3
    assert pl.read_parquet(out / "oos_trades.parquet").height == r.walkforward.oos_metrics["trades"]
    assert "Plotly.newPlot" in r.plot_path.read_text() and (out / "plotly.min.js").exists()
    assert (out / "surface.html").exists()
    summary = json.loads(r.summary_path.read_text())
    assert summary["parameter_sets"] == 174 and summary["pbo"] == pytest.approx(r.pbo)
    assert not any(p.name.startswith(".tmp-") for p in out.iterdir())


def test_optuna_study_resumes_to_the_requested_trials(jan: pl.DataFrame, tmp_path: Path) -> None:
    s = get_strategy("sma_cross")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    kw = {"method": "optuna", "storage": storage, "study_name": "t", "folds": 0, "progress": False}
    first = run_sweep(s, jan, CFG, n_trials=10, **kw)  # type: ignore[arg-type]
    assert first.table.height == 10
    assert first.table.columns[:3] == ["trial", "fast", "slow"]
    second = run_sweep(s, jan, CFG, n_trials=15, **kw)  # type: ignore[arg-type]
    assert second.table.height == 15
    assert second.table["trial"].to_list() == list(range(15))
    # the first ten trials come back from the storage unchanged
    assert second.table.head(10).equals(first.table)
    ok = second.table.filter(pl.col("status") == "ok")
    best = ok.sort("sharpe", descending=True, nulls_last=True).row(0, named=True)
    assert second.top[0].params == {"fast": best["fast"], "slow": best["slow"]}
    assert second.top[0].oos_metrics == {}  # no folds: ranked on the full sample
    assert second.dsr_detail["n_trials"] == ok.height
    # a rerun asks for nothing new
    third = run_sweep(s, jan, CFG, n_trials=15, **kw)  # type: ignore[arg-type]
    assert third.table.equals(second.table)
    # the same study name on other data is refused
    with pytest.raises(ConfigError, match="other data"):
        run_sweep(s, jan.head(5000), CFG, n_trials=15, **kw)  # type: ignore[arg-type]


def test_optuna_walk_forward_runs_one_study_per_fold(jan: pl.DataFrame, tmp_path: Path) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'wf.db'}"
    r = run_sweep(
        get_strategy("sma_cross"),
        jan,
        CFG,
        method="optuna",
        n_trials=8,
        storage=storage,
        study_name="w",
        folds=3,
        progress=False,
        top_k=3,
    )
    names = sorted(x.study_name for x in optuna.get_all_study_summaries(storage))
    assert names == ["w", "w.wf-anchored3-fold1", "w.wf-anchored3-fold2", "w.wf-anchored3-fold3"]
    assert len(r.walkforward.folds) == 3
    for f in r.walkforward.folds:
        assert f.params and math.isfinite(f.oos_metrics["total_return"])
    assert len(r.top) == 3 and r.top[0].params == r.walkforward.folds[-1].params


@strategy(
    name="fragile_cross",
    params=[Int("fast", 5, 20, step=5, default=5), Int("slow", 20, 40, step=10, default=20)],
    constraints=[Constraint("fast < slow", lambda p: p["fast"] < p["slow"])],
    warmup=lambda p: p["slow"] + 1,
)
def fragile_cross(bars: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
    """SMA cross that raises for fast=15 (to test failure isolation)."""
    if p["fast"] == 15:
        raise RuntimeError("indicator blew up")
    return get_strategy("sma_cross").signal_fn(bars, p)


def test_a_failing_parameter_set_is_isolated_and_reported(jan: pl.DataFrame) -> None:
    r = run_sweep(fragile_cross, jan, CFG, folds=2, progress=False, plot=False)
    bad = r.table.filter(pl.col("status") == "error")
    assert bad["fast"].to_list() == [15, 15, 15]
    assert all("indicator blew up" in e for e in bad["error"].to_list())
    assert bad["sharpe"].is_nan().all()
    good = r.table.filter(pl.col("status") == "ok")
    assert good.height == r.table.height - 3 and good["sharpe"].is_finite().all()
    assert len(r.failures) == 3 and r.failures[0][0]["fast"] == 15
    assert all(f.params["fast"] != 15 for f in r.walkforward.folds)
    assert r.pbo_detail["n_trials"] == good.height


def _batched_cross(
    bars: pd.DataFrame, sets: Sequence[Mapping[str, Any]]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    close = bars["close"].to_numpy(dtype=np.float64)
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def ma(n: int) -> tuple[np.ndarray, np.ndarray]:
        if n not in cache:
            m = window_mean(close, n)
            cache[n] = (m, shift(m))
        return cache[n]

    for p in sets:
        (f, fp), (s, sp) = ma(int(p["fast"])), ma(int(p["slow"]))
        yield (f > s) & (fp <= sp), (f < s) & (fp >= sp)


def _with_batch(batch):  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(get_strategy("sma_cross"), batch_fn=batch)


def test_batched_signal_hook_gives_identical_results(jan: pl.DataFrame, grid_result) -> None:  # type: ignore[no-untyped-def]
    fast = _with_batch(_batched_cross)
    r = run_sweep(fast, jan, CFG, folds=3, progress=False, plot=False)
    assert r.table.equals(grid_result.table)
    assert r.extra["batched_signals"] is True
    assert [f.params for f in r.walkforward.folds] == [
        f.params for f in grid_result.walkforward.folds
    ]


def test_a_wrong_batched_hook_is_caught(jan: pl.DataFrame) -> None:
    def off_by_one(bars, sets):  # type: ignore[no-untyped-def]
        for e, x in _batched_cross(bars, sets):
            yield np.roll(e, 1), x

    with pytest.raises(EngineError, match="batched signals differ"):
        run_sweep(_with_batch(off_by_one), jan, CFG, folds=0, progress=False, plot=False)


def test_a_failing_batched_hook_falls_back_to_the_signal_function(
    jan: pl.DataFrame, grid_result
) -> None:  # type: ignore[no-untyped-def]
    def broken(bars, sets):  # type: ignore[no-untyped-def]
        raise MemoryError("no room")
        yield  # pragma: no cover

    r = run_sweep(_with_batch(broken), jan, CFG, folds=3, progress=False, plot=False)
    assert r.table.equals(grid_result.table)


def test_cli_sweep_prints_candidates_and_writes_outputs(
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tierline.cli import main

    data = tmp_path / "parquet"
    assert (
        main(
            [
                "--data-dir",
                str(data),
                "data",
                "import",
                str(shared_data / FEED),
                "--exchange",
                "binance",
                "--symbol",
                "BTC/USDT",
            ]
        )
        == 0
    )
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = main(
        [
            "--data-dir",
            str(data),
            "sweep",
            "sma_cross",
            "--start",
            "2024-01-01",
            "--end",
            "2024-02-01",
            "--values",
            "fast=5:20:5",
            "--values",
            "slow=30:60:10",
            "--folds",
            "2",
            "--top",
            "3",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "16 parameter sets" in out
    assert "top 3 by sharpe" in out and "OOS sharpe" in out
    assert "walk-forward (anchored, 2 folds)" in out and "concatenated OOS" in out
    assert "deflated Sharpe ratio" in out and "probability of backtest overfitting" in out
    runs = list((tmp_path / "runs" / "sma_cross").iterdir())
    assert len(runs) == 1
    assert f"results: {Path('runs') / 'sma_cross' / runs[0].name / 'results.parquet'}" in out
    assert pl.read_parquet(runs[0] / "results.parquet").height == 16
    # logged to MLflow: a pipeline parent with the tier-1 child holding the sweep
    import json

    from tierline.tracking import Tracker

    summary = json.loads((runs[0] / "summary.json").read_text())
    record = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}").latest_pipeline("sma_cross")
    assert record is not None and record.status == "FINISHED"
    (tier1,) = record.find("tier1", "vectorbt")
    assert tier1.metrics["parameter_sets"] == 16
    assert tier1.metrics["dsr"] == pytest.approx(summary["dsr"], abs=1e-12)
    assert tier1.metrics["sharpe"] == pytest.approx(
        summary["walkforward"]["oos_metrics"]["sharpe"], abs=1e-12
    )
    # bad --values is a clean configuration error (exit code 2)
    assert main(["--data-dir", str(data), "sweep", "sma_cross", "--values", "fast=9:1"]) == 2


def test_the_batched_hook_runs_once_across_chunks(jan: pl.DataFrame) -> None:
    calls = []

    def counting(bars, sets):  # type: ignore[no-untyped-def]
        calls.append(len(sets))
        yield from _batched_cross(bars, sets)

    s = _with_batch(counting)
    sets = list(s.grid())[:20]
    ev = evaluate(s, jan, sets, CFG, chunk=6)
    plain = evaluate(get_strategy("sma_cross"), jan, sets, CFG, chunk=6)
    assert calls == [20]
    for name in METRIC_NAMES:
        np.testing.assert_array_equal(ev.metrics[0][name], plain.metrics[0][name])
