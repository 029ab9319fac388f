"""``tierline ui`` (MLflow UI on the tracking store) and ``tierline runs`` (recent pipelines)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import TYPE_CHECKING, Any

from tierline.core.metric_names import METRIC_NAMES

if TYPE_CHECKING:
    from tierline.tracking import PipelineRecord

__all__ = ["register"]

#: Metrics `tierline runs` shows, one row each, tiers side by side.
KEY_METRICS: tuple[str, ...] = METRIC_NAMES


def _add_uri(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        default=None,
        help=(
            "MLflow tracking URI (default: $TIERLINE_TRACKING_URI, $MLFLOW_TRACKING_URI or "
            "sqlite:///mlflow.db in the current directory)"
        ),
    )


def register(sub: Any) -> None:
    """Add ``ui`` and ``runs`` to the parser."""
    ui = sub.add_parser(
        "ui",
        help="open the MLflow UI on the tracking store (127.0.0.1)",
        description=(
            "Run `mlflow ui` on the tracking store, bound to 127.0.0.1 with one worker. "
            "It replaces this process: Ctrl-C stops it."
        ),
    )
    _add_uri(ui)
    ui.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    ui.set_defaults(func=_cmd_ui)

    runs = sub.add_parser(
        "runs",
        help="list recent pipeline runs with their tier runs' key metrics",
        description=(
            "List the newest pipeline runs (one MLflow parent run per strategy and data set), "
            "each with its tier runs' key metrics side by side."
        ),
    )
    _add_uri(runs)
    runs.add_argument("strategy", nargs="?", default=None, help="only this strategy")
    runs.add_argument("--limit", type=int, default=5, help="pipelines to show (default 5)")
    runs.set_defaults(func=_cmd_runs)


def _cmd_ui(args: argparse.Namespace) -> int:
    from tierline.errors import ConfigError
    from tierline.tracking import Tracker, mlflow_ui_command, offline_env

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} must be in 1..65535")
    tracker = Tracker(args.tracking_uri)
    cmd = mlflow_ui_command(tracker.uri, args.port, tracker.artifact_root)
    print(
        f"MLflow UI for {tracker.uri} at http://127.0.0.1:{args.port} (Ctrl-C stops it)",
        flush=True,
    )
    sys.stderr.flush()
    os.execve(cmd[0], cmd, offline_env())  # noqa: S606 - replaces this process on purpose
    return 0  # pragma: no cover - execve does not return


def _fmt(value: float | None, key: str) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if key == "trades":
        return f"{value:.0f}"
    return f"{value:.4g}"


def format_pipeline(rec: PipelineRecord) -> str:
    """Return one pipeline as text: a header line and a metric x tier-run table."""
    ds = rec.dataset
    start = rec.start_time.strftime("%Y-%m-%d %H:%M:%S UTC") if rec.start_time else "?"
    code = rec.code_version[:12] + ("+dirty" if rec.code_version.endswith("+dirty") else "")
    lines = [
        f"{rec.strategy}  {ds.exchange} {ds.symbol} {ds.timeframe}  {start}  {rec.status}  "
        f"run {rec.run_id}  data {ds.fingerprint[:12]}  code {code}"
        + ("  SYNTHETIC DATA" if ds.synthetic else "")
    ]
    if not rec.tiers:
        lines.append("  (no tier runs)")
        return "\n".join(lines)
    labels = [t.label + ("" if t.status == "FINISHED" else f" ({t.status})") for t in rec.tiers]
    keys = list(KEY_METRICS)
    keys += sorted({k for t in rec.tiers for k in t.metrics} - set(KEY_METRICS))
    name_w = max(len("metric"), *(len(k) for k in keys))
    widths = [max(10, len(label)) for label in labels]
    head = (
        "  "
        + "metric".ljust(name_w)
        + "".join("  " + label.rjust(w) for label, w in zip(labels, widths, strict=True))
    )
    lines.append(head)
    for key in keys:
        cells = [_fmt(t.metrics.get(key), key) for t in rec.tiers]
        if all(c == "-" for c in cells):
            continue
        lines.append(
            "  "
            + key.ljust(name_w)
            + "".join("  " + c.rjust(w) for c, w in zip(cells, widths, strict=True))
        )
    return "\n".join(lines)


def _cmd_runs(args: argparse.Namespace) -> int:
    from tierline.errors import ConfigError
    from tierline.tracking import Tracker, sqlite_path

    if args.limit < 1:
        raise ConfigError(f"--limit {args.limit} must be >= 1")
    tracker = Tracker(args.tracking_uri)
    db = sqlite_path(tracker.uri)
    if db is not None and not db.exists():
        print(f"no tracking store at {db} (no pipeline has run here yet)")
        return 0
    records = tracker.pipelines(args.strategy, limit=args.limit)
    if not records:
        which = f" of strategy {args.strategy!r}" if args.strategy else ""
        print(f"no pipeline runs{which} in {tracker.uri}")
        return 0
    print("\n\n".join(format_pipeline(r) for r in records))
    return 0
