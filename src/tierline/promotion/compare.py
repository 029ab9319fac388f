"""The tiers side by side: one pipeline run's tier runs compared under the same metric names.

`build_comparison` reads a pipeline (parent) run from MLflow with its tier runs: the tier-1
sweep (walk-forward out-of-sample metrics), and per candidate rank the tier-1 vectorbt, tier-2
nautilus and freqtrade and tier-3 hftbacktest runs. `format_comparison` prints them one row
per run with the same columns (`COLUMNS`; a metric a tier does not log shows as ``–``), and
`write_report` writes an HTML page with:

- the same table;
- every tier run's equity curve overlaid (``equity.parquet`` of each run; curves longer than
  `MAX_POINTS` are thinned to that many points for the page, keeping each bucket's lowest and
  highest value so drawdowns stay visible);
- the tier-1 sweep's objective heatmap, rebuilt from its ``tables/sweep.parquet``;
- the parity summary (the parent's ``tables/parity.parquet``) and the parent's
  ``causality_passed`` and ``parity_passed``;
- the tier-3 execution summary (shortfall, fill ratio, time to fill, maker share, fees, L2
  source and models) when tier-3 runs exist.

The page embeds plotly.js, so it opens offline and inside the MLflow UI, where `compare`
logs it as ``reports/compare-<strategy>.html`` of the pipeline run. A machine-readable copy of
the table is embedded as ``<script type="application/json" id="tierline-comparison">``.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierline.engines.hft.report import TIER3_METRICS
from tierline.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

    from tierline.tracking import PipelineRecord, TierRecord, Tracker

__all__ = [
    "COLUMNS",
    "MAX_POINTS",
    "TIER3_COLUMNS",
    "CompareRow",
    "Comparison",
    "build_comparison",
    "compare",
    "default_report_path",
    "format_comparison",
    "format_value",
    "write_report",
]

logger = logging.getLogger(__name__)

#: Metric columns of the comparison, in order (MLflow metric names of the tier runs).
COLUMNS: tuple[str, ...] = (
    "total_return",
    "sharpe",
    "max_drawdown",
    "trades",
    "shortfall_bps",
    "fill_ratio",
)
#: Tier-3 execution metrics shown in the shortfall summary: what the tier-3 run logs beside
#: the common metrics, and its return.
TIER3_COLUMNS: tuple[str, ...] = (*TIER3_METRICS, "total_return")
#: Tier-3 tags shown in the shortfall summary.
TIER3_TAGS: tuple[str, ...] = ("l2", "style", "latency_model", "queue_model")
#: Points per equity curve in the HTML page (the data in MLflow is not thinned).
MAX_POINTS = 4_000
#: What an absent metric prints as.
ABSENT = "–"
_DECIMALS = {"sharpe": 3, "trades": 0, "shortfall_bps": 2, "shortfall_bps_max": 2, "orders": 0}
_SEARCH = 10  # newest finished pipelines searched for a complete one
_TIER_ORDER = {("tier1", "vectorbt"): 0, ("tier2", "nautilus"): 1, ("tier2", "freqtrade"): 2}


@dataclass(frozen=True, kw_only=True)
class CompareRow:
    """One tier run in the comparison.

    Attributes
    ----------
    label
        ``sweep`` for the tier-1 sweep, else ``#<rank> <tier>/<engine>``.
    tier, engine, rank, run_id, status
        The run's identity (``rank`` None for the sweep).
    params
        Strategy parameters (strings, as MLflow stores them; empty for the sweep).
    metrics
        Every metric of the run (NaN and inf restored).
    parity
        ``PASS``/``FAIL`` for tier-2 runs (their ``parity_passed``), else None.
    tags
        The run's tags.
    run_params
        The run's MLflow params as logged (the sweep's ``method``, ``objective``, ...).
    """

    label: str
    tier: str
    engine: str
    rank: int | None
    run_id: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    parity: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    run_params: dict[str, str] = field(default_factory=dict)

    @property
    def is_sweep(self) -> bool:
        """Return whether this is the tier-1 sweep run (no rank)."""
        return self.rank is None


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """A pipeline run and its tier runs, ready to print or render."""

    pipeline: PipelineRecord
    rows: tuple[CompareRow, ...]

    @property
    def strategy(self) -> str:
        """Return the strategy name."""
        return self.pipeline.strategy

    def to_json(self) -> dict[str, Any]:
        """Return the comparison as JSON-friendly data (NaN/inf as strings)."""
        return {
            "strategy": self.strategy,
            "pipeline_run_id": self.pipeline.run_id,
            "columns": list(COLUMNS),
            "rows": [
                {
                    "label": r.label,
                    "tier": r.tier,
                    "engine": r.engine,
                    "rank": r.rank,
                    "run_id": r.run_id,
                    "status": r.status,
                    "params": r.params,
                    "parity": r.parity,
                    "metrics": {k: _json_number(r.metrics.get(k)) for k in COLUMNS},
                }
                for r in self.rows
            ],
        }


def _json_number(value: float | None) -> float | str | None:
    if value is not None and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    return value


def _label(t: TierRecord) -> str:
    return "sweep" if t.rank is None else f"#{t.rank} {t.tier}/{t.engine}"


def _sort_key(t: TierRecord) -> tuple[int, int, str]:
    if t.rank is None:
        return (-1, -1, t.engine)
    return (t.rank, _TIER_ORDER.get((t.tier, t.engine), 3 if t.tier == "tier3" else 4), t.engine)


def build_comparison(tracker: Tracker, strategy: str, *, run_id: str | None = None) -> Comparison:
    """Return the comparison of one pipeline run's tier runs.

    Parameters
    ----------
    tracker
        Where the runs are read from.
    strategy
        Strategy name.
    run_id
        The pipeline (parent) run; default: the newest FINISHED complete pipeline of
        ``strategy`` (a tier-1 sweep and tier-2 runs, what `tierline run` logs and
        `tierline promote` evaluates) among the last ten, else the newest FINISHED one.

    Returns
    -------
    Comparison
        The pipeline and one row per tier run (the sweep first, then by rank and tier).

    Raises
    ------
    ConfigError
        If there is no such pipeline, ``run_id`` belongs to another strategy, or it has no tier
        runs.
    """
    if run_id is not None:
        record = tracker.pipeline_by_id(run_id)
        if record.strategy != strategy:
            raise ConfigError(
                f"pipeline run {run_id} is of strategy {record.strategy!r}, not {strategy!r}"
            )
    else:
        from tierline.promotion.gate import is_complete

        # What `tierline promote` evaluates: the newest complete pipeline (`tierline sweep` and
        # `tierline hft` log partial ones of their own); else the newest finished one.
        finished = tracker.pipelines(strategy, limit=_SEARCH, status="FINISHED")
        if not finished:
            raise ConfigError(
                f"no finished pipeline run of {strategy!r} in {tracker.uri}: run "
                f"`tierline run {strategy} ...` (make demo) first"
            )
        record = next((r for r in finished if is_complete(r)), finished[0])
    tiers = sorted(
        (t for t in record.tiers if t.tier in ("tier1", "tier2", "tier3")), key=_sort_key
    )
    if not tiers:
        raise ConfigError(f"pipeline run {record.run_id} of {strategy!r} has no tier runs")
    rows = []
    for t in tiers:
        parity = None
        if t.tier == "tier2" and "parity_passed" in t.metrics:
            parity = "PASS" if t.metrics["parity_passed"] == 1.0 else "FAIL"
        rows.append(
            CompareRow(
                label=_label(t),
                tier=t.tier,
                engine=t.engine,
                rank=t.rank,
                run_id=t.run_id,
                status=t.status,
                params={} if t.rank is None else dict(t.params),
                metrics=dict(t.metrics),
                parity=parity,
                tags=dict(t.tags),
                run_params=dict(t.params),
            )
        )
    return Comparison(pipeline=record, rows=tuple(rows))


def format_value(value: float | None, key: str) -> str:
    """Return a metric as the comparison prints it (``–`` when absent).

    ``trades`` and ``orders`` as integers, ``sharpe`` with 3 decimals, shortfalls (bps) with
    2, everything else with 4.
    """
    if value is None:
        return ABSENT
    special = _json_number(value)
    return special if isinstance(special, str) else f"{value:.{_DECIMALS.get(key, 4)}f}"


def _table_cells(comp: Comparison) -> tuple[list[str], list[list[str]]]:
    head = ["run", "params", *COLUMNS, "parity"]
    body = []
    for r in comp.rows:
        label = r.label + ("" if r.status == "FINISHED" else f" ({r.status})")
        params = ",".join(f"{k}={v}" for k, v in r.params.items()) or "(oos)"
        cells = [format_value(r.metrics.get(k), k) for k in COLUMNS]
        body.append([label, params, *cells, r.parity or ABSENT])
    return head, body


def format_comparison(comp: Comparison) -> str:
    """Return the comparison as text: a header and one row per tier run."""
    p = comp.pipeline
    ds = p.dataset
    when = p.start_time.strftime("%Y-%m-%d %H:%M:%S UTC") if p.start_time else "?"
    head, body = _table_cells(comp)
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
    lines = [
        f"{comp.strategy}  {ds.exchange} {ds.symbol} {ds.timeframe}  pipeline run {p.run_id}  "
        f"{when}" + ("  SYNTHETIC DATA" if ds.synthetic else "")
    ]

    def fmt(cells: Sequence[str]) -> str:
        parts = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    lines.append(fmt(head))
    lines.extend(fmt(row) for row in body)
    extra = []
    for key in ("causality_passed", "parity_passed"):
        value = p.metrics.get(key)
        if value is not None:
            extra.append(f"{key.split('_')[0]} {'PASS' if value == 1.0 else 'FAIL'}")
    if extra:
        lines.append("pipeline: " + ", ".join(extra))
    return "\n".join(lines)


# ---------------------------------------------------------------------- the HTML report
def default_report_path(strategy: str) -> Path:
    """Return ``reports/compare-<strategy>.html``."""
    return Path("reports") / f"compare-{strategy}.html"


def _thin(ts: list[Any], values: list[float], limit: int) -> tuple[list[Any], list[float]]:
    """Keep at most ~``limit`` points: per bucket the first, lowest and highest, and the last."""
    n = len(values)
    if n <= limit:
        return ts, values
    bucket = max(1, math.ceil(3 * n / limit))
    keep: set[int] = {0, n - 1}
    for start in range(0, n, bucket):
        chunk = values[start : start + bucket]
        keep.add(start)
        keep.add(start + min(range(len(chunk)), key=chunk.__getitem__))
        keep.add(start + max(range(len(chunk)), key=chunk.__getitem__))
    idx = sorted(keep)
    return [ts[i] for i in idx], [values[i] for i in idx]


def _load(tracker: Tracker, run_id: str, artifact: str) -> pl.DataFrame | None:
    try:
        return tracker.load_frame(run_id, artifact)
    except ConfigError:
        return None


def _equity_figure(comp: Comparison, tracker: Tracker) -> tuple[Any, list[str]]:
    import plotly.graph_objects as go

    from tierline.tracking import EQUITY_ARTIFACT

    fig = go.Figure()
    names = []
    for row in comp.rows:
        if row.is_sweep:
            continue
        eq = _load(tracker, row.run_id, EQUITY_ARTIFACT)
        if eq is None or eq.is_empty() or "equity" not in eq.columns:
            continue
        ts, values = _thin(eq["ts"].to_list(), eq["equity"].cast(float).to_list(), MAX_POINTS)
        fig.add_trace(go.Scattergl(x=ts, y=values, mode="lines", name=row.label))
        names.append(row.label)
    fig.update_layout(
        title=f"{comp.strategy}: equity of every tier run",
        xaxis_title="time (UTC)",
        yaxis_title="equity (quote currency)",
        legend={"orientation": "h"},
        height=520,
    )
    return fig, names


def _heatmap_figure(comp: Comparison, tracker: Tracker) -> Any | None:
    from tierline.sweep.report import objective_figures

    sweep = next((r for r in comp.rows if r.is_sweep), None)
    if sweep is None:
        return None
    table = _load(tracker, sweep.run_id, "tables/sweep.parquet")
    if table is None:
        return None
    import polars as pl

    if "status" in table.columns:
        table = table.filter(pl.col("status") == "ok")
    param_names: list[str] = []
    for row in comp.rows:
        for name in row.params:
            if name not in param_names:
                param_names.append(name)
    names = [c for c in table.columns if c in param_names and table.schema[c].is_numeric()]
    objective = sweep.run_params.get("objective", "sharpe")
    method = sweep.run_params.get("method", "grid")
    figs = objective_figures(
        names,
        table,
        objective,
        method=method,
        title=f"tier 1 sweep: {objective} ({method}, {table.height} parameter sets)",
    )
    return figs.get("heatmap.html")


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    out = [f'<table class="{css}"><thead><tr>']
    out += [f"<th>{html.escape(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _cell(value: Any, key: str = "") -> str:
    if isinstance(value, bool):
        return "PASS" if value else "FAIL"
    if isinstance(value, float):
        return format_value(value, key)
    return ABSENT if value is None else str(value)


def _parity_section(comp: Comparison, tracker: Tracker) -> str:
    table = _load(tracker, comp.pipeline.run_id, "tables/parity.parquet")
    if table is None or table.is_empty():
        return "<p>No parity table was logged for this pipeline.</p>"
    head = table.columns
    rows = [[_cell(v, k) for k, v in zip(head, row, strict=True)] for row in table.iter_rows()]
    return _html_table(head, rows, "parity")


def _tier3_section(comp: Comparison) -> str | None:
    runs = [r for r in comp.rows if r.tier == "tier3"]
    if not runs:
        return None
    head = ["run", *TIER3_COLUMNS, *TIER3_TAGS]
    rows = [
        [r.label]
        + [format_value(r.metrics.get(k), k) for k in TIER3_COLUMNS]
        + [r.tags.get(k, ABSENT) for k in TIER3_TAGS]
        for r in runs
    ]
    return _html_table(head, rows, "tier3")


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f0f0f0; }
.meta { color: #555; font-size: 0.9em; }
"""


def write_report(comp: Comparison, tracker: Tracker, path: Path) -> Path:
    """Write the HTML comparison report atomically; return ``path``.

    Parameters
    ----------
    comp
        What `build_comparison` returned.
    tracker
        Where the runs' artifacts are read from.
    path
        The HTML file (its folder is created).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    from tierline.data.atomic import write_text_atomic

    p = comp.pipeline
    ds = p.dataset
    equity, traced = _equity_figure(comp, tracker)
    heatmap = _heatmap_figure(comp, tracker)
    head, body = _table_cells(comp)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>tierline compare: {html.escape(comp.strategy)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(comp.strategy)}: the tiers side by side</h1>",
        "<p class='meta'>"
        + html.escape(
            f"{ds.exchange} {ds.symbol} {ds.timeframe}, {ds.start or '?'} to {ds.end or '?'}"
            f" ({ds.rows or '?'} bars{', SYNTHETIC' if ds.synthetic else ''}); pipeline run "
            f"{p.run_id}; data {ds.fingerprint[:12]}; code {p.code_version}"
        )
        + "</p>",
        "<h2>Metrics</h2>",
        "<p class='meta'>Same names in every tier; the sweep row is the walk-forward "
        "out-of-sample result; – = not measured by that tier.</p>",
        _html_table(head, body, "metrics"),
        "<h2>Equity</h2>",
        equity.to_html(full_html=False, include_plotlyjs=True, div_id="tierline-equity"),
    ]
    if not traced:
        parts.append("<p>No tier run logged an equity curve.</p>")
    parts.append("<h2>Tier 1: parameter sweep</h2>")
    if heatmap is not None:
        parts.append(
            heatmap.to_html(full_html=False, include_plotlyjs=False, div_id="tierline-sweep")
        )
    else:
        parts.append("<p>No sweep table with numeric parameters was logged.</p>")
    parts.append("<h2>Tier 2: parity with the reference engine</h2>")
    pipeline_checks = [
        f"{k}: {'PASS' if p.metrics[k] == 1.0 else 'FAIL'}"
        for k in ("causality_passed", "parity_passed")
        if k in p.metrics
    ]
    if pipeline_checks:
        parts.append(f"<p>{html.escape('; '.join(pipeline_checks))}</p>")
    parts.append(_parity_section(comp, tracker))
    tier3 = _tier3_section(comp)
    parts.append("<h2>Tier 3: execution (hftbacktest)</h2>")
    parts.append(tier3 if tier3 is not None else "<p>No tier-3 run in this pipeline.</p>")
    payload = json.dumps({**comp.to_json(), "equity_traces": traced}, allow_nan=False)
    parts.append(
        '<script type="application/json" id="tierline-comparison">'
        + payload.replace("</", "<\\/")
        + "</script>"
    )
    parts.append("</body></html>")
    write_text_atomic(Path(path), "\n".join(parts) + "\n")
    return Path(path)


def compare(
    strategy: str,
    *,
    run_id: str | None = None,
    out: Path | None = None,
    tracking_uri: str | None = None,
    log_artifact: bool = True,
) -> tuple[Comparison, Path]:
    """Build the comparison, write the HTML report and log it to the pipeline run.

    Parameters
    ----------
    strategy
        Strategy name.
    run_id
        Pipeline run (default: the latest FINISHED one of ``strategy``).
    out
        Report path (default ``reports/compare-<strategy>.html``).
    tracking_uri
        MLflow tracking URI (see `tierline.tracking.resolve_tracking_uri`).
    log_artifact
        Also log the report as ``reports/compare-<strategy>.html`` of the pipeline run.

    Returns
    -------
    tuple
        The `Comparison` and the report's path.
    """
    from tierline.tracking import PipelineRun, Tracker

    tracker = Tracker(tracking_uri)
    comp = build_comparison(tracker, strategy, run_id=run_id)
    path = write_report(comp, tracker, out or default_report_path(strategy))
    if log_artifact:
        rec = comp.pipeline
        handle = PipelineRun(
            tracker,
            rec.run_id,
            experiment_id=rec.experiment_id,
            strategy=rec.strategy,
            dataset=rec.dataset,
        )
        artifact = Path(path)
        named = artifact.name == f"compare-{strategy}.html"
        if named:
            handle.log_artifact(artifact, "reports")
        else:
            import shutil
            import tempfile

            with tempfile.TemporaryDirectory(prefix="tierline-report-") as tmp:
                copy = Path(tmp) / f"compare-{strategy}.html"
                shutil.copyfile(artifact, copy)
                handle.log_artifact(copy, "reports")
    return comp, path
