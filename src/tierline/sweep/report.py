"""Sweep outputs: the result object, the Parquet tables, the plotly plots, the summary.

Files in the output directory (each written atomically):

- ``results.parquet``: one row per parameter set: ``id``, one column per parameter, the
  common metrics on the full sample (`tierline.core.metrics.METRIC_NAMES`), ``status``
  (``ok``/``error``) and ``error``;
- ``top.parquet``: the top-k candidates: ``rank``, ``params``, the parameters, ``is_*`` and
  ``oos_*`` metrics;
- ``folds.parquet``: walk-forward folds (spans, chosen parameters, IS and OOS metrics);
- ``oos_equity.parquet``, ``oos_trades.parquet``: the concatenated out-of-sample run;
- ``heatmap.html`` (and ``surface.html`` for a two-parameter grid): the objective over the
  parameters, with ``plotly.min.js`` beside them (works offline); PNG copies only when the
  ``kaleido`` package is installed;
- ``summary.json``: everything else (DSR, PBO, concatenated OOS metrics, settings).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from tierline.core.metrics import METRIC_NAMES

if TYPE_CHECKING:
    from tierline.core.conventions import ExecutionConfig
    from tierline.strategy.contract import Strategy
    from tierline.sweep.walkforward import WalkForwardResult

__all__ = ["Candidate", "SweepResult", "objective_figures", "plot_objective", "write_outputs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A top-k parameter set handed to tier 2.

    Attributes
    ----------
    rank
        1 = best by the objective in-sample.
    params
        The parameters.
    is_metrics, oos_metrics
        Common metrics in-sample and out-of-sample (see `SweepResult.top`).
    """

    rank: int
    params: dict[str, Any]
    is_metrics: dict[str, float]
    oos_metrics: dict[str, float]

    def as_row(self) -> dict[str, Any]:
        """Return a flat record for the top-k table."""
        from tierline.strategy.contract import format_params

        row: dict[str, Any] = {"rank": self.rank, "params": format_params(self.params)}
        row.update(self.params)
        row.update({f"is_{k}": self.is_metrics.get(k, math.nan) for k in METRIC_NAMES})
        row.update({f"oos_{k}": self.oos_metrics.get(k, math.nan) for k in METRIC_NAMES})
        return row


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    """Everything a tier-1 sweep produced (what tracking logs and tier 2 reads).

    Attributes
    ----------
    strategy, method, objective
        Strategy name, ``grid`` or ``optuna``, and the metric parameters were chosen by.
    table
        One row per parameter set (see ``results.parquet`` in the module docstring).
    top
        Top-k candidates. With walk-forward folds they are ranked by the objective on the
        last fold's in-sample span, and ``oos_metrics`` are on that fold's out-of-sample block
        (so candidate 1 is the last fold's choice); without folds they are ranked on the full
        sample and ``oos_metrics`` is empty.
    dsr
        Deflated Sharpe ratio (a probability) of the full-sample best parameter set, with
        ``N`` = parameter sets that ran on the full sample; ``dsr_detail`` has its inputs.
    pbo
        Probability of backtest overfitting (CSCV over the daily returns of every parameter
        set that ran on the full sample); ``pbo_detail`` has ``n_splits``, ``n_trials``,
        ``n_obs``.
    walkforward
        Per-fold choices and the concatenated out-of-sample metrics (None without folds).
    failures
        ``(params, message)`` of every parameter set that failed (isolated, not fatal).
    table_path, top_path, plot_path, summary_path, out_dir
        Where the outputs went (None when not written).
    """

    strategy: str
    method: str
    objective: str
    table: pl.DataFrame = field(repr=False)
    top: tuple[Candidate, ...]
    dsr: float
    dsr_detail: dict[str, float]
    pbo: float
    pbo_detail: dict[str, float]
    walkforward: WalkForwardResult | None
    failures: tuple[tuple[dict[str, Any], str], ...]
    config: ExecutionConfig
    data: dict[str, Any]
    elapsed_s: float
    study_name: str | None = None
    storage: str | None = None
    table_path: Path | None = None
    top_path: Path | None = None
    plot_path: Path | None = None
    summary_path: Path | None = None
    out_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def oos_folds(self) -> list[dict[str, float]]:
        """Return the out-of-sample metrics of each walk-forward fold."""
        return [dict(f.oos_metrics) for f in self.walkforward.folds] if self.walkforward else []

    @property
    def oos_metrics(self) -> dict[str, float]:
        """Return the concatenated out-of-sample metrics (empty without walk-forward)."""
        return dict(self.walkforward.oos_metrics) if self.walkforward else {}

    def top_table(self) -> pl.DataFrame:
        """Return the top-k candidates as a table."""
        return pl.DataFrame([c.as_row() for c in self.top]) if self.top else pl.DataFrame()

    def summary(self) -> dict[str, Any]:
        """Return a JSON-serialisable summary (no tables)."""
        wf = self.walkforward
        return {
            "strategy": self.strategy,
            "method": self.method,
            "objective": self.objective,
            "parameter_sets": self.table.height,
            "failed": len(self.failures),
            "failures": [{"params": p, "error": msg} for p, msg in self.failures[:100]],
            "dsr": self.dsr,
            "dsr_detail": self.dsr_detail,
            "pbo": self.pbo,
            "pbo_detail": self.pbo_detail,
            "top": [
                {"rank": c.rank, "params": c.params, "is": c.is_metrics, "oos": c.oos_metrics}
                for c in self.top
            ],
            "walkforward": None
            if wf is None
            else {
                "mode": wf.mode,
                "folds": wf.n_folds,
                "train_blocks": wf.train_blocks,
                "oos_metrics": wf.oos_metrics,
                "per_fold": [
                    {
                        "fold": f.fold,
                        "is_start": f.is_start.isoformat(),
                        "is_end": f.is_end.isoformat(),
                        "oos_start": f.oos_start.isoformat(),
                        "oos_end": f.oos_end.isoformat(),
                        "params": f.params,
                        "is": f.is_metrics,
                        "oos": f.oos_metrics,
                    }
                    for f in wf.folds
                ],
            },
            "config": {
                "fee": self.config.fee,
                "initial_cash": self.config.initial_cash,
                "stake": self.config.stake,
            },
            "data": self.data,
            "study_name": self.study_name,
            "storage": self.storage,
            "elapsed_s": self.elapsed_s,
            "extra": self.extra,
            "paths": {
                "table": _s(self.table_path),
                "top": _s(self.top_path),
                "plot": _s(self.plot_path),
                "summary": _s(self.summary_path),
            },
        }


def _s(p: Path | None) -> str | None:
    return None if p is None else str(p)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _json_safe(obj.item())
    return obj


def _write_parquet(df: pl.DataFrame, path: Path) -> None:
    from tierline.data.atomic import atomic_path

    with atomic_path(path) as tmp:
        df.write_parquet(tmp)


def _numeric_params(strategy: Strategy, table: pl.DataFrame) -> list[str]:
    out = []
    for p in strategy.params:
        if p.name in table.columns and table.schema[p.name].is_numeric():
            out.append(p.name)
    return out


def objective_figures(
    names: Sequence[str],
    table: pl.DataFrame,
    objective: str,
    *,
    method: str,
    title: str,
) -> dict[str, Any]:
    """Return plotly figures of the objective over the parameters ``names`` (see
    `plot_objective`): ``{"heatmap.html": fig, "surface.html": fig}`` for a grid of two or more
    parameters, ``{"heatmap.html": fig}`` otherwise, ``{}`` when there is nothing to plot.

    Parameters
    ----------
    names
        Numeric parameter columns of ``table``, in the strategy's order.
    table
        Sweep results (rows with status ``ok``).
    objective
        The metric column to plot (minimised metrics keep the lowest value per cell).
    method
        ``grid`` (heatmap and surface) or ``optuna`` (scatter).
    title
        Figure title.
    """
    import plotly.graph_objects as go

    from tierline.sweep.walkforward import MINIMISED

    ok = table
    names = list(names)
    if ok.is_empty() or not names or objective not in ok.columns:
        return {}
    better_max = objective not in MINIMISED
    figs: dict[str, Any] = {}
    if len(names) == 1:
        d = ok.sort(names[0])
        figs["heatmap.html"] = go.Figure(
            go.Scatter(x=d[names[0]].to_list(), y=d[objective].to_list(), mode="lines+markers"),
            layout={"title": title, "xaxis_title": names[0], "yaxis_title": objective},
        )
    else:
        x, y = names[0], names[1]
        agg = pl.col(objective).max() if better_max else pl.col(objective).min()
        g = ok.group_by(x, y).agg(agg.alias(objective)).sort(x, y)
        if len(names) > 2:
            title += f"; best over {', '.join(names[2:])}"
        if method == "grid":
            xs = sorted(g[x].unique().to_list())
            ys = sorted(g[y].unique().to_list())
            xi = {v: i for i, v in enumerate(xs)}
            yi = {v: i for i, v in enumerate(ys)}
            z: list[list[float | None]] = [[None] * len(xs) for _ in ys]
            for a, b, v in g.select(x, y, objective).iter_rows():
                z[yi[b]][xi[a]] = None if v is None or not math.isfinite(v) else v
            figs["heatmap.html"] = go.Figure(
                go.Heatmap(x=xs, y=ys, z=z, colorscale="RdYlGn", colorbar={"title": objective}),
                layout={"title": title, "xaxis_title": x, "yaxis_title": y},
            )
            figs["surface.html"] = go.Figure(
                go.Surface(x=xs, y=ys, z=z, colorscale="RdYlGn"),
                layout={
                    "title": title,
                    "scene": {"xaxis_title": x, "yaxis_title": y, "zaxis_title": objective},
                },
            )
        else:
            figs["heatmap.html"] = go.Figure(
                go.Scatter(
                    x=g[x].to_list(),
                    y=g[y].to_list(),
                    mode="markers",
                    marker={
                        "color": g[objective].to_list(),
                        "colorscale": "RdYlGn",
                        "size": 10,
                        "showscale": True,
                        "colorbar": {"title": objective},
                    },
                    text=[f"{objective}={v:.4g}" for v in g[objective].to_list()],
                ),
                layout={"title": title, "xaxis_title": x, "yaxis_title": y},
            )
    return figs


def plot_objective(
    strategy: Strategy,
    table: pl.DataFrame,
    objective: str,
    out_dir: Path,
    *,
    method: str,
) -> Path | None:
    """Write the objective over the parameters as plotly HTML; return the main plot's path.

    Two numeric parameters (or more: the first two, best over the others): a heatmap for a
    grid, a scatter coloured by the objective for Optuna, plus ``surface.html`` (3-D) for a
    grid. One numeric parameter: a line. None when there is nothing numeric to plot.
    """
    from tierline.data.atomic import atomic_path

    ok = table.filter(pl.col("status") == "ok")
    figs = objective_figures(
        _numeric_params(strategy, ok),
        ok,
        objective,
        method=method,
        title=f"{strategy.name}: {objective} ({method}, {ok.height} parameter sets)",
    )
    if not figs:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, fig in figs.items():
        path = out_dir / name
        # "directory": the page loads plotly.min.js from beside it (plotly copies it there
        # once), so the plots work offline without embedding 4 MB in each file
        with atomic_path(path) as tmp:
            fig.write_html(tmp, include_plotlyjs="directory", full_html=True)
        _maybe_png(fig, path.with_suffix(".png"))
    return out_dir / "heatmap.html"


def _maybe_png(fig: Any, path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("kaleido") is None:
        return
    from tierline.data.atomic import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.write_image(str(tmp), format="png")
    except Exception as e:  # kaleido needs a browser in recent versions
        logger.warning("PNG export failed (%s); the HTML plot is written", e)


def write_outputs(
    result: SweepResult, strategy: Strategy, out_dir: Path, *, plot: bool = True
) -> SweepResult:
    """Write the tables, plots and summary; return the result with the paths filled in."""
    from dataclasses import replace

    from tierline.data.atomic import write_text_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    table_path = out_dir / "results.parquet"
    _write_parquet(result.table, table_path)
    top_path = None
    if result.top:
        top_path = out_dir / "top.parquet"
        _write_parquet(result.top_table(), top_path)
    if result.walkforward is not None:
        wf = result.walkforward
        _write_parquet(wf.folds_table(), out_dir / "folds.parquet")
        _write_parquet(wf.oos_equity, out_dir / "oos_equity.parquet")
        _write_parquet(wf.oos_trades, out_dir / "oos_trades.parquet")
    plot_path = None
    if plot:
        try:
            plot_path = plot_objective(
                strategy, result.table, result.objective, out_dir, method=result.method
            )
        except Exception as e:  # a plot must never lose the results
            logger.warning("plotting failed: %s: %s", type(e).__name__, e)
    summary_path = out_dir / "summary.json"
    result = replace(
        result,
        table_path=table_path,
        top_path=top_path,
        plot_path=plot_path,
        summary_path=summary_path,
        out_dir=out_dir,
    )
    write_text_atomic(
        summary_path, json.dumps(_json_safe(result.summary()), indent=2, default=str) + "\n"
    )
    return result


def format_top(result: SweepResult, metrics: Sequence[str] | None = None) -> str:
    """Return the top-k candidates as a fixed-width text table (IS and OOS metrics)."""
    from tierline.strategy.contract import format_params

    cols = list(metrics or ("sharpe", "total_return", "max_drawdown", "trades"))
    head = ["#", "params"] + [f"IS {c}" for c in cols] + [f"OOS {c}" for c in cols]
    rows = []
    for c in result.top:
        rows.append(
            [str(c.rank), format_params(c.params)]
            + [_fmt(c.is_metrics.get(m)) for m in cols]
            + [_fmt(c.oos_metrics.get(m)) for m in cols]
        )
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)
    ]
    lines = [
        "  ".join(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(zip(head, widths, strict=True))
        )
    ]
    for r in rows:
        lines.append(
            "  ".join(
                v.rjust(w) if i else v.ljust(w)
                for i, (v, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if float(v).is_integer() and abs(v) >= 1:
        return f"{int(v)}"
    return f"{v:.4f}"
