"""``tierline compare STRATEGY``: the tiers of a pipeline run side by side, plus an HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``compare`` to the parser."""
    p = sub.add_parser(
        "compare",
        help="print a pipeline's tiers side by side and write an HTML comparison report",
        description=(
            "Compare the tier runs of the latest complete pipeline run of STRATEGY (or "
            "--run-id): tier-1 sweep and vectorbt, tier-2 nautilus and freqtrade, tier-3 "
            "hftbacktest, under the same metric names (total_return, sharpe, max_drawdown, "
            "trades, shortfall_bps, fill_ratio; – where a tier does not measure one). Writes an "
            "HTML report (equity curves of every tier overlaid, the sweep heatmap, the parity "
            "and shortfall summaries) and logs it to the pipeline run in MLflow as "
            "reports/compare-STRATEGY.html, so `make ui` shows it too."
        ),
    )
    p.add_argument("strategy", help="strategy name")
    p.add_argument("--run-id", default=None, help="pipeline (parent) run id (default: latest)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="HTML report path (default reports/compare-STRATEGY.html)",
    )
    p.add_argument("--no-log", action="store_true", help="do not log the report to the MLflow run")
    p.add_argument(
        "--tracking-uri",
        default=None,
        help=(
            "MLflow tracking URI (default: $TIERLINE_TRACKING_URI, $MLFLOW_TRACKING_URI or "
            "sqlite:///mlflow.db in the current directory)"
        ),
    )
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from tierline.promotion.compare import compare, format_comparison

    comp, path = compare(
        args.strategy,
        run_id=args.run_id,
        out=args.out,
        tracking_uri=args.tracking_uri,
        log_artifact=not args.no_log,
    )
    print(format_comparison(comp))
    where = ""
    if not args.no_log:
        artifact = f"reports/compare-{comp.strategy}.html"
        where = f" (logged to MLflow run {comp.pipeline.run_id} as {artifact})"
    print(f"report: {path}{where}")
    return 0
