"""Research notebooks: committed stripped, run headless with parameters, same numbers as code.

The sweep notebook is executed in a real kernel (nbclient) on a temporary catalog and MLflow
store; its final record, and what it logged, must equal `run_sweep` called here on the same
bars and grid. The parameter injection and the failing-cell report are checked on a tiny
notebook written by the test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tierline.errors import ConfigError, EngineError
from tierline.notebooks import (
    INJECTED_TAG,
    PARAMETERS_TAG,
    NotebookError,
    execute_notebook,
    inject_parameters,
    parse_parameter,
    read_notebook,
    strip_notebook,
)

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "research" / "notebooks"
SWEEP_NOTEBOOK = NOTEBOOKS / "sweep_sma_cross.ipynb"
#: A small grid (9 sets) and two folds keep the headless run short.
GRID = {
    "fast_min": 5,
    "fast_max": 15,
    "fast_step": 5,
    "slow_min": 20,
    "slow_max": 40,
    "slow_step": 10,
}
FOLDS = 2
SAMPLE_DAYS = 5


def _stdout(cell: Any) -> str:
    return "".join(
        o.get("text", "")
        for o in cell.outputs
        if o.output_type == "stream" and o.get("name") == "stdout"
    )


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# ----------------------------------------------------------------- committed notebooks
@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs_counts_or_injected_cells(path: Path) -> None:
    nb = read_notebook(path)
    nbformat.validate(nb)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert dirty == [], f"{path.name}: cells {dirty} carry outputs; `tierline notebook strip`"
    assert not [c for c in nb.cells if INJECTED_TAG in c.metadata.get("tags", [])]
    assert strip_notebook(nb) == nb


def test_sweep_notebook_has_one_parameters_cell_with_the_synthetic_defaults() -> None:
    nb = read_notebook(SWEEP_NOTEBOOK)
    cells = [c for c in nb.cells if PARAMETERS_TAG in c.metadata.get("tags", [])]
    assert len(cells) == 1
    defaults: dict[str, Any] = {}
    exec(cells[0].source, {}, defaults)  # literals only: the cell papermill would read
    assert defaults["exchange"] == "synthetic"
    assert defaults["symbol"] == "BTC/USDT"
    assert defaults["timeframe"] == "5m"
    assert set(GRID) | {"data_dir", "tracking_uri", "folds", "start", "end"} <= set(defaults)


# ----------------------------------------------------------------- the sweep notebook
def test_sweep_notebook_headless_equals_run_sweep_and_logs_tier1(tmp_path: Path) -> None:
    from tierline.core.conventions import ExecutionConfig
    from tierline.data.catalog import Catalog
    from tierline.data.sample import write_sample
    from tierline.strategy import get_strategy
    from tierline.sweep import run_sweep
    from tierline.tracking import Tracker, dataset_fingerprint

    catalog = Catalog(tmp_path / "parquet")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    nb = execute_notebook(
        SWEEP_NOTEBOOK,
        {
            "data_dir": catalog.root,  # empty: the notebook writes the sample itself
            "sample_days": SAMPLE_DAYS,
            "tracking_uri": uri,
            "folds": FOLDS,
            **GRID,
        },
        cwd=tmp_path,
        timeout=180,
    )
    # the notebook wrote exactly the sample write_sample gives
    assert "nothing new" in write_sample(catalog, days=SAMPLE_DAYS)

    final = [c for c in nb.cells if c.cell_type == "code"][-1]
    lines = _stdout(final).strip().splitlines()
    record = json.loads(lines[-1])

    bars = catalog.read_ohlcv("synthetic", "BTC/USDT", "5m")
    strategy = get_strategy("sma_cross")
    param_sets = [
        {"fast": f, "slow": s}
        for f in range(5, 16, 5)
        for s in range(20, 41, 10)
        if f < s  # sma_cross's constraint
    ]
    direct = run_sweep(
        strategy,
        bars,
        ExecutionConfig(fee=0.001),
        param_sets=param_sets,
        folds=FOLDS,
        progress=False,
    )
    assert direct.table.height == 9
    assert record["strategy"] == "sma_cross"
    assert record["top_params"] == direct.top[0].params
    assert lines[-2] == (
        f"top candidate: fast={direct.top[0].params['fast']},"
        f"slow={direct.top[0].params['slow']}; DSR {direct.dsr:.3f}, PBO {direct.pbo:.3f}"
    )
    assert _same(record["dsr"], direct.dsr)
    assert _same(record["pbo"], direct.pbo)
    assert set(record["oos_metrics"]) == set(direct.oos_metrics)
    for name, value in direct.oos_metrics.items():
        assert _same(record["oos_metrics"][name], value), name

    # the heatmap is an inline plotly figure of the full-sample objective of every set
    heatmap = next(c for c in nb.cells if c.get("id") == "heatmap")
    (fig,) = [o.data["application/vnd.plotly.v1+json"] for o in heatmap.outputs if "data" in o]
    trace = fig["data"][0]
    assert trace["type"] == "heatmap"
    assert sorted(zip(trace["x"], trace["y"], trace["z"], strict=True)) == sorted(
        direct.table.select("fast", "slow", "sharpe").iter_rows()
    )

    # MLflow: a finished pipeline run with one tier-1 child holding the OOS metrics and table
    tracker = Tracker(uri)
    pipeline = tracker.latest_pipeline("sma_cross")
    assert pipeline is not None
    assert pipeline.run_id == record["mlflow_run_id"]
    assert pipeline.status == "FINISHED"
    assert pipeline.dataset.synthetic
    assert pipeline.dataset.fingerprint == dataset_fingerprint(bars)
    (tier1,) = pipeline.find("tier1", "vectorbt")
    assert tier1.status == "FINISHED"
    for name, value in direct.oos_metrics.items():
        assert _same(tier1.metrics[name], value), name
    assert _same(tier1.metrics["dsr"], direct.dsr)
    assert _same(tier1.metrics["pbo"], direct.pbo)
    assert tier1.metrics["parameter_sets"] == 9
    assert tracker.load_frame(tier1.run_id, "tables/sweep.parquet").equals(direct.table)
    assert tracker.load_frame(tier1.run_id, "tables/folds.parquet").equals(
        direct.walkforward.folds_table()
    )


# ----------------------------------------------------------------- parameters and errors
def _tiny_notebook(path: Path) -> Path:
    params = new_code_cell("x = 1\nlabel = 'a'", metadata={"tags": [PARAMETERS_TAG]})
    nb = new_notebook(
        cells=[
            new_markdown_cell("# tiny"),
            params,
            new_code_cell("y = x + 1\nprint(label, y)"),
            new_code_cell("if y > 2:\n    raise ValueError(f'boom {y}')\nprint('fine')"),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    nbformat.write(nb, path)
    return path


def test_parse_parameter_reads_literals_else_strings() -> None:
    assert parse_parameter("folds=2") == ("folds", 2)
    assert parse_parameter("fee=0.001") == ("fee", 0.001)
    assert parse_parameter("end=None") == ("end", None)
    assert parse_parameter("grid=[5, 10]") == ("grid", [5, 10])
    assert parse_parameter("symbol=BTC/USDT") == ("symbol", "BTC/USDT")
    assert parse_parameter("start=2024-01-01") == ("start", "2024-01-01")
    assert parse_parameter("url=sqlite:///a=b.db") == ("url", "sqlite:///a=b.db")
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_parameter("folds")
    with pytest.raises(ConfigError, match="identifier"):
        parse_parameter("class=1")


def test_inject_parameters_goes_after_the_parameters_cell_and_replaces_old_ones(
    tmp_path: Path,
) -> None:
    nb = read_notebook(_tiny_notebook(tmp_path / "tiny.ipynb"))
    once = inject_parameters(nb, {"x": 5, "label": tmp_path})
    assert len(once.cells) == len(nb.cells) + 1
    assert once.cells[2].metadata["tags"] == [INJECTED_TAG]
    assert once.cells[2].source == f"# Parameters\nx = 5\nlabel = {str(tmp_path)!r}\n"
    twice = inject_parameters(once, {"x": 7})
    assert [c.source for c in twice.cells if INJECTED_TAG in c.metadata.get("tags", [])] == [
        "# Parameters\nx = 7\n"
    ]
    nbformat.validate(twice)
    assert strip_notebook(twice) == strip_notebook(nb)
    with pytest.raises(ConfigError, match="'z' is not in the notebook's parameters cell"):
        inject_parameters(nb, {"z": 1})
    with pytest.raises(ConfigError, match="literal"):
        inject_parameters(nb, {"x": float("nan")})


def test_failing_cell_is_named_and_the_cli_saves_the_partial_notebook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tierline.cli import main

    path = _tiny_notebook(tmp_path / "tiny.ipynb")
    nb = execute_notebook(path, {"x": 0}, timeout=60)  # y = 1: no error
    assert _stdout(nb.cells[3]) == "a 1\n" and _stdout(nb.cells[4]) == "fine\n"

    out = tmp_path / "out" / "executed.ipynb"
    code = main(["notebook", "run", str(path), "-p", "x=41", "-p", "label=b", "--out", str(out)])
    err = capsys.readouterr()
    assert code == EngineError.exit_code
    assert "b 42" in err.out  # the injected values reached the kernel
    assert "cell 4 ('if y > 2:') raised ValueError: boom 42" in err.err
    executed = read_notebook(out)
    errors = [o for o in executed.cells[4].outputs if o.output_type == "error"]
    assert [(o.ename, o.evalue) for o in errors] == [("ValueError", "boom 42")]

    with pytest.raises(NotebookError) as info:
        execute_notebook(path, {"x": 41}, timeout=60)
    assert info.value.cell_index == 3
    assert isinstance(info.value, EngineError)
    assert "ValueError: boom 42" in info.value.traceback


def test_cli_strip_check_fails_on_outputs_and_strip_cleans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tierline.cli import main

    path = _tiny_notebook(tmp_path / "tiny.ipynb")
    nb = inject_parameters(read_notebook(path), {"x": 3})
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="a 4\n")]
    nb.cells[3].execution_count = 2
    nbformat.write(nb, path)
    assert main(["notebook", "strip", "--check", str(path)]) == 1
    assert main(["notebook", "strip", str(path)]) == 0
    assert main(["notebook", "strip", "--check", str(path)]) == 0
    clean = read_notebook(path)
    assert len(clean.cells) == 4
    assert clean.cells[2].outputs == [] and clean.cells[2].execution_count is None
    assert "not stripped" in capsys.readouterr().out
