"""MLflow tracking for every tier: one parent run per pipeline, one child run per tier.

This is the only module that imports mlflow (always inside functions, so importing tierline
stays fast). Usage::

    tracker = Tracker()  # --tracking-uri / $TIERLINE_TRACKING_URI / $MLFLOW_TRACKING_URI
    dataset = DatasetRef.from_bars(bars, exchange="binance", symbol="BTC/USDT", timeframe="5m")
    with tracker.pipeline(strategy="sma_cross", dataset=dataset, config=cfg) as parent:
        with parent.tier(tier="tier1", engine="vectorbt") as run:
            run.log_table("sweep", results)  # thousands of parameter sets: ONE artifact
        for rank, params in enumerate(candidates):
            with parent.tier(tier="tier2", engine="nautilus", params=params, rank=rank) as run:
                run.log_metrics(compute_metrics(...))
                run.log_trades(result.trades)
    record = tracker.latest_pipeline("sma_cross")  # for the promotion gate and reports

Layout of the store
-------------------
- Tracking URI: the ``uri`` argument, else ``$TIERLINE_TRACKING_URI``, else
  ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the current directory (a relative
  SQLite path is made absolute when the `Tracker` is created).
- One experiment per strategy, named ``tierline/<strategy>``: the MLflow UI groups a strategy's
  pipelines together and ``latest_pipeline`` is one query on one experiment. Its artifact
  location is set explicitly when tierline creates it: ``<artifact root>/<strategy>``, the
  artifact root being ``mlruns/`` beside the SQLite file (``./mlruns`` by default) or
  ``./mlruns`` for other database URIs; for ``http(s)://`` servers the server decides.
- A pipeline run (tag ``tierline.kind=pipeline``) carries the tags ``strategy, exchange,
  symbol, timeframe, data_fingerprint, code_version, git_commit, git_dirty, tierline_version,
  argv, config_hash``, the configuration as ``config.json`` and as ``config.*`` params.
- A tier run (tag ``tierline.kind=tier``, ``mlflow.parentRunId`` = the pipeline's run id) carries
  ``tier`` (tier1/tier2/tier3), ``engine``, ``rank`` (candidate rank, when given), the dataset
  tags, the strategy parameters as MLflow params, metrics under the common names of
  `COMMON_METRICS` and Parquet artifacts (``trades.parquet``, ``equity.parquet``,
  ``tables/<name>.parquet``).

Non-finite metrics
------------------
MLflow stores NaN and infinity differently per backend (the REST API cannot carry them all),
so tierline never sends them: a NaN (or None) metric is NOT logged and the run gets the tag
``tierline.nonfinite.<name>=nan``; +/-inf is logged as +/-`INF_SENTINEL` (the largest float,
what MLflow's own SQL store writes) with the tag ``tierline.nonfinite.<name>=inf`` (or
``-inf``). `TierRecord.metrics` restores NaN and +/-inf from those tags.

Secrets
-------
Environment variables are never logged. Config entries, params and tags whose key looks like
a secret (see `is_secret_key`) are logged as ``***``; the same holds for ``--api-key X`` /
``token=X`` items of argv and for passwords inside URLs (``scheme://user:***@host``). The
config hash is computed after redaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierline.core.metric_names import METRIC_NAMES
from tierline.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from tierline.core.result import BacktestResult

__all__ = [
    "COMMON_METRICS",
    "CONFIG_ARTIFACT",
    "DEFAULT_TRACKING_URI",
    "ENGINES",
    "EQUITY_ARTIFACT",
    "INF_SENTINEL",
    "MAX_TIER_RUNS",
    "MODEL_ARTIFACT",
    "TIERS",
    "TRACKING_URI_ENV",
    "TRADES_ARTIFACT",
    "DatasetRef",
    "ModelVersionRecord",
    "PipelineRecord",
    "PipelineRun",
    "TierRecord",
    "TierRun",
    "Tracker",
    "code_version",
    "dataset_fingerprint",
    "experiment_name",
    "is_secret_key",
    "mlflow_ui_command",
    "offline_env",
    "redact",
    "redact_argv",
    "resolve_tracking_uri",
    "sqlite_path",
]

logger = logging.getLogger(__name__)

#: Environment variable selecting the tracking URI (the ``--tracking-uri`` option wins).
TRACKING_URI_ENV = "TIERLINE_TRACKING_URI"
#: Tracking URI when neither the option nor an environment variable names one.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
#: Tiers and engines a tier run may name.
TIERS: tuple[str, ...] = ("tier1", "tier2", "tier3")
ENGINES: tuple[str, ...] = ("vectorbt", "reference", "nautilus", "freqtrade", "hftbacktest")
#: The metric names every tier logs (`tierline.core.metrics.compute_metrics`'s keys).
COMMON_METRICS: tuple[str, ...] = METRIC_NAMES
#: What +/-inf metrics are logged as (see the module docstring).
INF_SENTINEL = sys.float_info.max
#: Artifact paths of the trades table and the equity curve of a tier run.
TRADES_ARTIFACT = "trades.parquet"
EQUITY_ARTIFACT = "equity.parquet"
CONFIG_ARTIFACT = "config.json"
#: Artifact folder of a registered pyfunc model inside its promotion run.
MODEL_ARTIFACT = "model"
#: A guard against one run per sweep combination: log sweeps with `TierRun.log_table`.
MAX_TIER_RUNS = 500

_KIND = "tierline.kind"
_NONFINITE = "tierline.nonfinite."
_PARENT = "mlflow.parentRunId"
_REDACTED = "***"
_MAX_TAG = 5000  # MLflow allows 8000 characters; keep a margin
#: Model version tags may hold 100,000 characters (the verdict's checks as JSON must not be
#: clipped into invalid JSON).
_MAX_VERSION_TAG = 50_000
_MAX_PARAM = 6000
_BATCH = 100  # MLflow's limit of params/tags per batch request

# ----------------------------------------------------------------------------- secrets

_SECRET_KEY = re.compile(
    r"key|secret|passw|pwd|token|credential|authoriz|cookie|private", re.IGNORECASE
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+):[^@/\s]+@")
_BAD_KEY_CHARS = re.compile(r"[^\w\-. /]")
_KV_ITEM = re.compile(r"(?P<k>[A-Za-z0-9_.\-]+)=(?P<v>[^,;&\s]*)")


def is_secret_key(key: str) -> bool:
    """Return whether a config/param/tag key looks like it holds a secret.

    Keys containing ``key``, ``secret``, ``passw``, ``pwd``, ``token``, ``credential``,
    ``authoriz``, ``cookie`` or ``private`` (any case) count as secret: over-redacting a
    harmless value is the cheaper mistake.
    """
    return bool(_SECRET_KEY.search(key))


def _redact_str(text: str) -> str:
    text = _URL_PASSWORD.sub(r"\1:" + _REDACTED + "@", text)

    def kv(m: re.Match[str]) -> str:
        return f"{m['k']}={_REDACTED}" if is_secret_key(m["k"]) else m[0]

    return _KV_ITEM.sub(kv, text)


def redact(value: Any) -> Any:
    """Return ``value`` made JSON-friendly with secrets replaced by ``***``.

    Mappings are walked recursively (a secret-looking key hides its whole value), dataclasses
    become dicts, sequences lists, non-finite floats the strings ``nan``/``inf``/``-inf`` and
    anything else unknown its ``str``. Strings lose URL passwords and ``key=value`` items whose
    key looks secret.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _REDACTED if is_secret_key(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [redact(v) for v in items]
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _redact_str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # NumPy scalar
        with contextlib.suppress(Exception):
            return redact(value.item())
    return _redact_str(str(value))


def redact_argv(argv: Sequence[str]) -> list[str]:
    """Return a command line with secret option values replaced by ``***``.

    Handles ``--api-key VALUE``, ``--api-key=VALUE``, ``token=VALUE`` items (also inside
    comma-separated lists) and passwords in URLs.
    """
    out: list[str] = []
    hide_next = False
    for item in argv:
        if hide_next:
            out.append(_REDACTED)
            hide_next = False
            continue
        if item.startswith("-") and "=" not in item and is_secret_key(item.lstrip("-")):
            out.append(item)
            hide_next = True
            continue
        if item.startswith("-") and "=" in item:
            name, _ = item.split("=", 1)
            if is_secret_key(name.lstrip("-")):
                out.append(f"{name}={_REDACTED}")
                continue
        out.append(_redact_str(item))
    return out


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _flatten(value: Any, prefix: str) -> dict[str, str]:
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for k, v in value.items():
            k = _BAD_KEY_CHARS.sub("_", str(k))  # MLflow keys: word chars, - . space /
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
        return out
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return {prefix: text}


# ----------------------------------------------------------------------------- versions


def _git(args: Sequence[str], cwd: Path) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        proc = subprocess.run(  # noqa: S603 - fixed git arguments, no shell
            [git, *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def code_version() -> dict[str, str]:
    """Return the version of the running tierline code as tags.

    Returns
    -------
    dict
        ``code_version`` (``<commit>`` or ``<commit>+dirty`` when the package is a tracked
        file of a git checkout, else ``tierline==<version>``), ``git_commit`` and ``git_dirty``
        (``true``/``false``; both empty outside a checkout) and ``tierline_version``.
    """
    from tierline import __version__

    pkg = Path(__file__).resolve().parent
    tags = {
        "code_version": f"tierline=={__version__}",
        "git_commit": "",
        "git_dirty": "",
        "tierline_version": __version__,
    }
    # The package must be a tracked file of the checkout (a venv inside a work tree is not).
    if _git(["ls-files", "--error-unmatch", "__init__.py"], pkg) is None:
        return tags
    commit = _git(["rev-parse", "HEAD"], pkg)
    if not commit:
        return tags
    status = _git(["status", "--porcelain", "--untracked-files=no"], pkg)
    dirty = bool(status)
    tags.update(
        code_version=f"{commit}+dirty" if dirty else commit,
        git_commit=commit,
        git_dirty="true" if dirty else "false",
    )
    return tags


# ----------------------------------------------------------------------------- datasets


def _column_bytes(s: pl.Series) -> tuple[str, bytes]:
    import numpy as np
    import polars as pl

    dtype = s.dtype
    chunks: list[bytes] = []
    if s.null_count():
        chunks.append(s.is_null().to_numpy().astype(np.uint8).tobytes())
    if isinstance(dtype, pl.Datetime):
        family = "datetime-utc" if dtype.time_zone else "datetime-naive"
        if dtype.time_zone:
            s = s.dt.convert_time_zone("UTC")
        s = s.dt.cast_time_unit("ns").to_physical().fill_null(0)
        chunks.append(s.to_numpy().astype("<i8").tobytes())
    elif dtype.is_float():
        arr = s.cast(pl.Float64).fill_null(0.0).to_numpy().astype("<f8", copy=True)
        arr[np.isnan(arr)] = np.nan  # one NaN bit pattern
        arr += 0.0  # -0.0 -> 0.0
        family = "float"
        chunks.append(arr.tobytes())
    elif dtype.is_integer() or dtype == pl.Boolean:
        family = "bool" if dtype == pl.Boolean else "int"
        chunks.append(s.cast(pl.Int64).fill_null(0).to_numpy().astype("<i8").tobytes())
    elif dtype.is_temporal():
        family = f"temporal-{dtype}"
        chunks.append(s.to_physical().cast(pl.Int64).fill_null(0).to_numpy().tobytes())
    else:
        family = "str"
        values = s.cast(pl.String).fill_null("").to_list()
        chunks.append(b"".join(len(v.encode()).to_bytes(8, "little") + v.encode() for v in values))
    return family, b"".join(chunks)


def dataset_fingerprint(bars: pl.DataFrame) -> str:
    """Return a stable SHA-256 hex digest of a frame's values and timestamps.

    The digest covers the row count, each column's name and type family and its values
    (columns in name order; timestamps as UTC nanoseconds, so the same instants in ms or ns
    hash alike; floats as little-endian float64 with one NaN and no negative zero). It does not
    depend on the process, the chunk layout or the Parquet encoding, and any changed value
    changes it.

    Parameters
    ----------
    bars
        Usually OHLCV bars (``ts, open, high, low, close, volume``); any frame works.
    """
    h = hashlib.sha256()
    h.update(f"tierline-fingerprint-v1\nrows={bars.height}\n".encode())
    for name in sorted(bars.columns):
        family, data = _column_bytes(bars.get_column(name))
        h.update(f"{name}:{family}:{len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True, kw_only=True)
class DatasetRef:
    """What a pipeline ran on: market, bar length, span and data fingerprint.

    Parameters
    ----------
    exchange, symbol, timeframe
        Catalog partition, e.g. ``binance``, ``BTC/USDT``, ``5m``.
    fingerprint
        `dataset_fingerprint` of the bars.
    start, end
        First and last bar open time (ISO 8601, UTC), if known.
    rows
        Number of bars, if known.
    synthetic
        Whether the data is synthetic (tagged so the gate can refuse it).
    """

    exchange: str
    symbol: str
    timeframe: str
    fingerprint: str
    start: str | None = None
    end: str | None = None
    rows: int | None = None
    synthetic: bool = False

    @classmethod
    def from_bars(
        cls,
        bars: pl.DataFrame,
        *,
        exchange: str,
        symbol: str,
        timeframe: str,
        synthetic: bool = False,
    ) -> DatasetRef:
        """Describe catalog bars (column ``ts``), computing their fingerprint."""
        start = end = None
        if "ts" in bars.columns and bars.height:
            first, last = bars.get_column("ts").min(), bars.get_column("ts").max()
            start = first.isoformat() if isinstance(first, datetime) else str(first)
            end = last.isoformat() if isinstance(last, datetime) else str(last)
        return cls(
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            fingerprint=dataset_fingerprint(bars),
            start=start,
            end=end,
            rows=bars.height,
            synthetic=synthetic,
        )

    def tags(self) -> dict[str, str]:
        """Return the dataset as run tags."""
        tags = {
            "exchange": self.exchange,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "data_fingerprint": self.fingerprint,
            "data_synthetic": "true" if self.synthetic else "false",
        }
        if self.start is not None:
            tags["data_start"] = self.start
        if self.end is not None:
            tags["data_end"] = self.end
        if self.rows is not None:
            tags["data_rows"] = str(self.rows)
        return tags


# ----------------------------------------------------------------------------- records


def _restore_metrics(metrics: Mapping[str, float], tags: Mapping[str, str]) -> dict[str, float]:
    out = dict(metrics)
    for key, value in tags.items():
        if key.startswith(_NONFINITE):
            out[key[len(_NONFINITE) :]] = float(value)
    return out


def _ms(ts: int | None) -> datetime | None:
    return datetime.fromtimestamp(ts / 1000, tz=UTC) if ts else None


@dataclass(frozen=True, kw_only=True)
class TierRecord:
    """One tier run as stored: identity, status, params, metrics and tags.

    ``metrics`` holds NaN and +/-inf again (see the module docstring); ``params`` are
    strings, as MLflow stores them.
    """

    run_id: str
    tier: str
    engine: str
    rank: int | None
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifact_uri: str
    start_time: datetime | None
    end_time: datetime | None

    @property
    def label(self) -> str:
        """Return ``tier/engine`` plus ``#rank`` when ranked."""
        base = f"{self.tier}/{self.engine}"
        return base if self.rank is None else f"{base}#{self.rank}"


@dataclass(frozen=True, kw_only=True)
class PipelineRecord:
    """One pipeline (parent) run and its tier runs, oldest tier run first."""

    run_id: str
    experiment_id: str
    strategy: str
    status: str
    dataset: DatasetRef
    code_version: str
    config_hash: str
    tags: dict[str, str]
    start_time: datetime | None
    end_time: datetime | None
    tiers: tuple[TierRecord, ...] = field(default=())
    #: The pipeline run's own params (``config.*``, strings as MLflow stores them).
    params: dict[str, str] = field(default_factory=dict)
    #: The pipeline run's own metrics (e.g. ``causality_passed``, ``parity_passed``).
    metrics: dict[str, float] = field(default_factory=dict)

    def find(
        self, tier: str, engine: str | None = None, rank: int | None = None
    ) -> list[TierRecord]:
        """Return the tier runs of ``tier`` (and ``engine``/``rank`` when given)."""
        return [
            t
            for t in self.tiers
            if t.tier == tier
            and (engine is None or t.engine == engine)
            and (rank is None or t.rank == rank)
        ]


# ----------------------------------------------------------------------------- run handles


def _mlflow_env() -> None:
    # Set before mlflow is imported: no telemetry thread, no call home.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"
    # No "Downloading artifacts" progress bar on stderr per artifact read (`load_frame`).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(key: str, value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        raise ConfigError(f"metric {key!r}: {value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"metric {key!r}: {value!r} is not a number") from None


class _RunHandle:
    """Logging into one open MLflow run."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self._tracker = tracker
        self.run_id = run_id
        self._closed = False
        self._nonfinite: set[str] = set()

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError(f"run {self.run_id} has ended; log inside its `with` block")

    def log_metrics(self, metrics: Mapping[str, Any], *, step: int = 0) -> None:
        """Log metrics (numbers; NaN/None/inf handled as the module docstring says).

        Raises
        ------
        ConfigError
            If a value is not a number.
        """
        from mlflow.entities import Metric, RunTag

        self._check_open()
        now = int(datetime.now(tz=UTC).timestamp() * 1000)
        batch: list[Metric] = []
        tags: list[RunTag] = []
        stale: list[str] = []
        for key, raw in metrics.items():
            value = _number(key, raw)
            if math.isnan(value):
                tags.append(RunTag(_NONFINITE + key, "nan"))
                self._nonfinite.add(key)
                continue
            if math.isinf(value):
                tags.append(RunTag(_NONFINITE + key, "inf" if value > 0 else "-inf"))
                self._nonfinite.add(key)
                value = math.copysign(INF_SENTINEL, value)
            elif key in self._nonfinite:  # a finite value replaces an earlier NaN/inf
                stale.append(key)
                self._nonfinite.discard(key)
            batch.append(Metric(key, value, now, step))
        client = self._tracker.client
        for key in stale:
            client.delete_tag(self.run_id, _NONFINITE + key)
        for i in range(0, len(batch), 1000):
            client.log_batch(self.run_id, metrics=batch[i : i + 1000])
        for i in range(0, len(tags), _BATCH):
            client.log_batch(self.run_id, tags=tags[i : i + _BATCH])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values as strings; secret-looking keys as ``***``)."""
        from mlflow.entities import Param

        self._check_open()
        items = [
            Param(str(k), _clip(_REDACTED if is_secret_key(str(k)) else _text(v), _MAX_PARAM))
            for k, v in params.items()
        ]
        for i in range(0, len(items), _BATCH):
            self._tracker.client.log_batch(self.run_id, params=items[i : i + _BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (values as strings; secret-looking keys as ``***``)."""
        from mlflow.entities import RunTag

        self._check_open()
        items = [
            RunTag(str(k), _clip(_REDACTED if is_secret_key(str(k)) else _text(v), _MAX_TAG))
            for k, v in tags.items()
        ]
        for i in range(0, len(items), _BATCH):
            self._tracker.client.log_batch(self.run_id, tags=items[i : i + _BATCH])

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        """Copy a local file or directory into the run's artifacts.

        Raises
        ------
        ConfigError
            If ``path`` does not exist.
        """
        self._check_open()
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"artifact {path} does not exist")
        if path.is_dir():
            self._tracker.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self._tracker.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_frame(self, frame: pl.DataFrame, artifact: str) -> None:
        """Log a polars frame as the Parquet artifact ``artifact`` (e.g. ``tables/x.parquet``)."""
        self._check_open()
        if not artifact.endswith(".parquet"):
            raise ConfigError(f"artifact {artifact!r}: frames are stored as .parquet files")
        parent, _, name = artifact.rpartition("/")
        with tempfile.TemporaryDirectory(prefix="tierline-artifact-") as tmp:
            local = Path(tmp) / name
            frame.write_parquet(local)
            self._tracker.client.log_artifact(self.run_id, str(local), parent or None)

    def log_table(self, name: str, frame: pl.DataFrame) -> None:
        """Log a table (e.g. a sweep's results: one row per parameter set) as
        ``tables/<name>.parquet``; a sweep is one artifact, never one run per combination."""
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise ConfigError(f"table name {name!r}: use letters, digits, '_', '-' or '.'")
        self.log_frame(frame, f"tables/{name}.parquet")


def _text(value: Any) -> str:
    value = redact(value)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


class TierRun(_RunHandle):
    """An open tier (child) run; see `PipelineRun.tier`."""

    def __init__(self, tracker: Tracker, run_id: str, *, tier: str, engine: str) -> None:
        super().__init__(tracker, run_id)
        self.tier = tier
        self.engine = engine

    def log_trades(self, trades: pl.DataFrame) -> None:
        """Log the trades table as ``trades.parquet``."""
        self.log_frame(trades, TRADES_ARTIFACT)

    def log_equity(self, equity: pl.DataFrame) -> None:
        """Log the equity curve as ``equity.parquet``."""
        self.log_frame(equity, EQUITY_ARTIFACT)

    def log_result(self, result: BacktestResult) -> None:
        """Log a `BacktestResult`: trades, equity and its notes (tag ``notes``)."""
        self.log_trades(result.trades)
        self.log_equity(result.equity)
        if result.notes:
            self.set_tags({"notes": "\n".join(result.notes)})


class PipelineRun(_RunHandle):
    """An open pipeline (parent) run; open tier runs with `tier`."""

    def __init__(
        self,
        tracker: Tracker,
        run_id: str,
        *,
        experiment_id: str,
        strategy: str,
        dataset: DatasetRef,
    ) -> None:
        super().__init__(tracker, run_id)
        self.experiment_id = experiment_id
        self.strategy = strategy
        self.dataset = dataset
        self.tier_runs: list[str] = []

    @contextlib.contextmanager
    def tier(
        self,
        *,
        tier: str,
        engine: str,
        params: Mapping[str, Any] | None = None,
        rank: int | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> Iterator[TierRun]:
        """Open a child run for one tier/engine (and candidate ``rank``).

        The run ends FINISHED, or FAILED (KILLED on Ctrl-C) when an exception escapes the
        block; the exception is re-raised.

        Parameters
        ----------
        tier
            One of `TIERS`.
        engine
            One of `ENGINES`.
        params
            Strategy parameters, logged as MLflow params.
        rank
            Candidate rank (0 = best), when the run belongs to a ranked candidate.
        tags
            Extra tags.

        Raises
        ------
        ConfigError
            If ``tier`` or ``engine`` is unknown, the pipeline has ended, or it already holds
            `MAX_TIER_RUNS` tier runs (log a sweep with `TierRun.log_table` instead).
        """
        self._check_open()
        if tier not in TIERS:
            raise ConfigError(f"tier {tier!r} is not one of {', '.join(TIERS)}")
        if engine not in ENGINES:
            raise ConfigError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
        if len(self.tier_runs) >= MAX_TIER_RUNS:
            raise ConfigError(
                f"pipeline {self.run_id} already has {MAX_TIER_RUNS} tier runs: log a sweep's "
                "results as one table (TierRun.log_table), and only candidates as runs"
            )
        name = f"{tier}-{engine}" + ("" if rank is None else f"-r{rank}")
        all_tags: dict[str, Any] = {
            _KIND: "tier",
            _PARENT: self.run_id,
            "strategy": self.strategy,
            "tier": tier,
            "engine": engine,
            **self.dataset.tags(),
        }
        if rank is not None:
            all_tags["rank"] = str(int(rank))
        all_tags.update(tags or {})
        client = self._tracker.client
        run = client.create_run(
            self.experiment_id, run_name=name, tags={_KIND: "tier", _PARENT: self.run_id}
        )
        self.tier_runs.append(run.info.run_id)
        handle = TierRun(self._tracker, run.info.run_id, tier=tier, engine=engine)
        with self._tracker._ending(handle):
            handle.set_tags(all_tags)
            if params:
                handle.log_params(params)
            yield handle


class Tracker:
    """Where runs are stored, and the way in and out of MLflow.

    Creating a Tracker opens nothing; the MLflow client is made on first use.

    Parameters
    ----------
    uri
        Tracking URI (see `resolve_tracking_uri`).
    artifact_root
        Folder of new experiments' artifacts (default: ``mlruns`` beside a SQLite store, else
        ``./mlruns``; for ``http(s)://`` servers, the server's choice).
    """

    def __init__(self, uri: str | None = None, *, artifact_root: Path | str | None = None) -> None:
        self.uri = resolve_tracking_uri(uri)
        if artifact_root is not None:
            self.artifact_root: Path | None = Path(artifact_root).resolve()
        elif self.uri.startswith(("http://", "https://", "databricks")):
            self.artifact_root = None
        elif (db := sqlite_path(self.uri)) is not None:
            self.artifact_root = db.parent / "mlruns"
        else:
            self.artifact_root = Path("mlruns").resolve()
        self._client: MlflowClient | None = None

    def __repr__(self) -> str:
        return f"Tracker({self.uri!r})"

    @property
    def client(self) -> MlflowClient:
        """Return the MLflow client (created, and the store migrated, on first use)."""
        if self._client is None:
            _mlflow_env()
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    # ------------------------------------------------------------------ writing
    def experiment_id(self, strategy: str, *, create: bool = True) -> str | None:
        """Return the id of the experiment ``tierline/<strategy>``, creating it if asked.

        Raises
        ------
        ConfigError
            If the experiment was deleted (restore it or purge it with ``mlflow gc``).
        """
        from mlflow.exceptions import MlflowException

        name = experiment_name(strategy)
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise ConfigError(
                    f"MLflow experiment {name!r} is deleted; restore it "
                    f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or purge "
                    f"it (mlflow gc --backend-store-uri {self.uri})"
                )
            return str(exp.experiment_id)
        if not create:
            return None
        location = None
        if self.artifact_root is not None:
            location = (self.artifact_root / _safe_name(strategy)).as_uri()
        try:
            return str(
                self.client.create_experiment(
                    name, artifact_location=location, tags={_KIND: "strategy"}
                )
            )
        except MlflowException:  # created meanwhile by another process
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)

    @contextlib.contextmanager
    def pipeline(
        self,
        *,
        strategy: str,
        dataset: DatasetRef,
        config: Any = None,
        argv: Sequence[str] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> Iterator[PipelineRun]:
        """Open the parent run of one pipeline (one strategy on one data set).

        Logs the dataset, code version, tierline version, argv (default ``sys.argv``, secrets
        redacted), the config (secrets redacted) as ``config.json`` and ``config.*`` params,
        and its hash. Ends FINISHED, or FAILED (KILLED on Ctrl-C) when an exception escapes;
        the exception is re-raised.

        Parameters
        ----------
        strategy
            Strategy name (the experiment is ``tierline/<strategy>``).
        dataset
            The data the pipeline runs on.
        config
            Run configuration: a mapping or a dataclass (e.g. `ExecutionConfig`).
        argv
            The command line to record (default ``sys.argv``).
        tags
            Extra tags.
        """
        if not strategy or not isinstance(strategy, str):
            raise ConfigError(f"strategy name {strategy!r} must be a non-empty string")
        exp_id = self.experiment_id(strategy)
        assert exp_id is not None
        safe_config = redact(config) if config is not None else {}
        config_json = _canonical_json(safe_config)
        argv_list = redact_argv(list(sys.argv if argv is None else argv))
        all_tags: dict[str, Any] = {
            _KIND: "pipeline",
            "strategy": strategy,
            **dataset.tags(),
            **code_version(),
            "argv": " ".join(argv_list),
            "config_hash": hashlib.sha256(config_json.encode()).hexdigest()[:16],
        }
        if all_tags.get("git_commit"):
            all_tags["mlflow.source.git.commit"] = all_tags["git_commit"]
        all_tags.update(tags or {})
        run_name = f"{strategy} {dataset.symbol} {dataset.timeframe}"
        run = self.client.create_run(exp_id, run_name=run_name, tags={_KIND: "pipeline"})
        handle = PipelineRun(
            self, run.info.run_id, experiment_id=exp_id, strategy=strategy, dataset=dataset
        )
        with self._ending(handle):
            handle.set_tags(all_tags)
            if isinstance(safe_config, dict) and safe_config:
                handle.log_params(_flatten(safe_config, "config"))
            with tempfile.TemporaryDirectory(prefix="tierline-config-") as tmp:
                local = Path(tmp) / CONFIG_ARTIFACT
                local.write_text(json.dumps(safe_config, indent=2, sort_keys=True) + "\n")
                handle.log_artifact(local)
            yield handle

    @contextlib.contextmanager
    def _ending(self, handle: _RunHandle) -> Iterator[None]:
        status = "FINISHED"
        try:
            yield
        except BaseException as e:
            status = "KILLED" if isinstance(e, KeyboardInterrupt | SystemExit) else "FAILED"
            try:
                handle.set_tags({"error": f"{type(e).__name__}: {e}"})
                self.client.set_terminated(handle.run_id, status)
            except Exception:  # never hide the original exception
                logger.exception("could not mark MLflow run %s %s", handle.run_id, status)
            handle._closed = True
            raise
        handle._closed = True
        self.client.set_terminated(handle.run_id, status)

    # ------------------------------------------------------------------ reading
    def _experiment_ids(self, strategy: str | None) -> list[str]:
        if strategy is not None:
            exp_id = self.experiment_id(strategy, create=False)
            return [] if exp_id is None else [exp_id]
        from mlflow.entities import ViewType

        exps = self.client.search_experiments(
            view_type=ViewType.ACTIVE_ONLY, filter_string="name LIKE 'tierline/%'"
        )
        return [str(e.experiment_id) for e in exps]

    def pipelines(
        self,
        strategy: str | None = None,
        *,
        limit: int = 10,
        status: str | None = None,
        exchange: str | None = None,
        symbol: str | None = None,
        timeframe: str | None = None,
    ) -> list[PipelineRecord]:
        """Return pipeline runs, newest first, each with its tier runs.

        Parameters
        ----------
        strategy
            Only this strategy's (default: every ``tierline/*`` experiment).
        limit
            At most this many pipelines.
        status
            Only runs in this state (``FINISHED``, ``FAILED``, ``RUNNING``, ``KILLED``).
        exchange, symbol, timeframe
            Only runs on this data.
        """
        exp_ids = self._experiment_ids(strategy)
        if not exp_ids:
            return []
        filters = [f"tags.`{_KIND}` = 'pipeline'"]
        if status is not None:
            filters.append(f"attributes.status = '{_quote(status)}'")
        for key, value in (("exchange", exchange), ("symbol", symbol), ("timeframe", timeframe)):
            if value is not None:
                filters.append(f"tags.{key} = '{_quote(value)}'")
        runs = self.client.search_runs(
            exp_ids,
            filter_string=" and ".join(filters),
            max_results=limit,
            order_by=["attributes.start_time DESC"],
        )
        return [self._record(run) for run in runs]

    def latest_pipeline(
        self,
        strategy: str,
        *,
        exchange: str | None = None,
        symbol: str | None = None,
        timeframe: str | None = None,
    ) -> PipelineRecord | None:
        """Return the newest FINISHED pipeline of ``strategy`` (optionally on given data),
        with its tier runs; None when there is none."""
        found = self.pipelines(
            strategy,
            limit=1,
            status="FINISHED",
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
        )
        return found[0] if found else None

    def _record(self, run: Run) -> PipelineRecord:
        tags = dict(run.data.tags)
        children = self.client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.`{_PARENT}` = '{run.info.run_id}'",
            max_results=MAX_TIER_RUNS * 2,
            order_by=["attributes.start_time ASC"],
        )
        rows = tags.get("data_rows")
        dataset = DatasetRef(
            exchange=tags.get("exchange", ""),
            symbol=tags.get("symbol", ""),
            timeframe=tags.get("timeframe", ""),
            fingerprint=tags.get("data_fingerprint", ""),
            start=tags.get("data_start"),
            end=tags.get("data_end"),
            rows=int(rows) if rows else None,
            synthetic=tags.get("data_synthetic") == "true",
        )
        return PipelineRecord(
            run_id=run.info.run_id,
            experiment_id=str(run.info.experiment_id),
            strategy=tags.get("strategy", ""),
            status=run.info.status,
            dataset=dataset,
            code_version=tags.get("code_version", ""),
            config_hash=tags.get("config_hash", ""),
            tags=tags,
            start_time=_ms(run.info.start_time),
            end_time=_ms(run.info.end_time),
            tiers=tuple(_tier_record(c) for c in children),
            params=dict(run.data.params),
            metrics=_restore_metrics(run.data.metrics, tags),
        )

    def load_frame(self, run_id: str, artifact: str) -> pl.DataFrame:
        """Read a Parquet artifact of a run (e.g. `TRADES_ARTIFACT`, ``tables/sweep.parquet``).

        Raises
        ------
        ConfigError
            If the run has no such artifact.
        """
        import polars as pl
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory(prefix="tierline-artifact-") as tmp:
            try:
                local = self.client.download_artifacts(run_id, artifact, tmp)
            except (MlflowException, OSError) as e:
                raise ConfigError(f"run {run_id} has no artifact {artifact!r}: {e}") from e
            return pl.read_parquet(local)

    def pipeline_by_id(self, run_id: str) -> PipelineRecord:
        """Return the pipeline run ``run_id`` with its tier runs.

        Raises
        ------
        ConfigError
            If there is no such run, or it is not a tierline pipeline run.
        """
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException as e:
            raise ConfigError(f"no MLflow run {run_id!r} in {self.uri}") from e
        if run.data.tags.get(_KIND) != "pipeline":
            raise ConfigError(
                f"MLflow run {run_id} is not a tierline pipeline run "
                f"(tag {_KIND}={run.data.tags.get(_KIND)!r}); pass the parent run's id"
            )
        return self._record(run)

    def attach_pipeline(self, record: PipelineRecord) -> PipelineRun:
        """Return a handle on an existing pipeline run, to add tier runs to it later.

        The pipeline run keeps its status (it is not ended again); tier runs opened with
        `PipelineRun.tier` end as usual. Used to run a missing tier of a finished pipeline.
        """
        return PipelineRun(
            self,
            record.run_id,
            experiment_id=record.experiment_id,
            strategy=record.strategy,
            dataset=record.dataset,
        )

    # ------------------------------------------------------------------ model registry
    def register_pyfunc(
        self,
        model_name: str,
        *,
        strategy: str,
        loader_module: str,
        data_path: Path,
        pip_requirements: Sequence[str],
        run_tags: Mapping[str, Any] | None = None,
        version_tags: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> ModelVersionRecord:
        """Log a pyfunc model in a new run and register it as a new version of ``model_name``.

        The model is MLflow's ``loader_module`` flavour: ``loader_module._load_pyfunc(path)``
        rebuilds it from the copied ``data_path`` folder, so nothing is pickled. The run (tag
        ``tierline.kind=promotion``) lives in the strategy's experiment; the registered model is
        created on first use. No alias is touched: a version without an alias is inert.

        Parameters
        ----------
        model_name
            Registered model name, e.g. ``tierline-sma_cross``.
        strategy
            Strategy name (selects the experiment).
        loader_module
            Importable module defining ``_load_pyfunc(data_path)``.
        data_path
            Folder copied into the model as its data.
        pip_requirements
            The model's requirements (given, so MLflow does not infer them by loading it).
        run_tags, version_tags
            Tags of the run and of the model version (secret-looking keys as ``***``).
        description
            Description of the model version.
        """
        _mlflow_env()
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException

        exp_id = self.experiment_id(strategy)
        assert exp_id is not None
        run = self.client.create_run(
            exp_id, run_name=f"promote {model_name}", tags={_KIND: "promotion"}
        )
        handle = _RunHandle(self, run.info.run_id)
        with self._ending(handle):
            handle.set_tags(dict(run_tags or {}))
            # Quiet: "Failed to resolve installed pip version" (a uv venv has no pip) and the
            # notices of copying uv.lock into the model (kept: it pins the environment).
            quiet = [
                logging.getLogger(n) for n in ("mlflow.utils.environment", "mlflow.utils.uv_utils")
            ]
            levels = [q.level for q in quiet]
            for q in quiet:
                q.setLevel(logging.ERROR)
            with tempfile.TemporaryDirectory(prefix="tierline-model-") as tmp:
                local = Path(tmp) / MODEL_ARTIFACT
                try:
                    mlflow.pyfunc.save_model(
                        str(local),
                        loader_module=loader_module,
                        data_path=str(data_path),
                        pip_requirements=list(pip_requirements),
                    )
                finally:
                    for q, lv in zip(quiet, levels, strict=True):
                        q.setLevel(lv)
                self.client.log_artifacts(run.info.run_id, str(local), MODEL_ARTIFACT)
        try:
            self.client.create_registered_model(
                model_name, tags={_KIND: "strategy", "strategy": strategy}
            )
        except MlflowException as e:
            if "already exists" not in str(e).lower() and "RESOURCE_ALREADY_EXISTS" not in str(
                getattr(e, "error_code", "")
            ):
                raise
        tags = {
            str(k): _clip(_REDACTED if is_secret_key(str(k)) else _text(v), _MAX_VERSION_TAG)
            for k, v in (version_tags or {}).items()
        }
        mv = self.client.create_model_version(
            model_name,
            f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}",
            run_id=run.info.run_id,
            tags=tags,
            description=description,
        )
        return self.model_version(model_name, str(mv.version))

    def model_version(self, model_name: str, version: str | int) -> ModelVersionRecord:
        """Return one version of a registered model (tags and aliases included).

        Raises
        ------
        ConfigError
            If the model or the version does not exist.
        """
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(model_name, str(version))
        except MlflowException as e:
            raise ConfigError(f"no version {version} of model {model_name!r} in {self.uri}") from e
        return _model_version_record(mv)

    def model_versions(self, model_name: str) -> list[ModelVersionRecord]:
        """Return every version of a registered model, newest first (none if it is unknown)."""
        found = self.client.search_model_versions(f"name = '{_quote(model_name)}'")
        records = [_model_version_record(mv) for mv in found]
        return sorted(records, key=lambda r: int(r.version), reverse=True)

    def get_alias_version(self, model_name: str, alias: str) -> str | None:
        """Return the version ``alias`` points at, or None (no such alias or model)."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(model_name, alias).version)
        except MlflowException:
            return None

    def set_alias(self, model_name: str, alias: str, version: str | int) -> None:
        """Point ``alias`` of ``model_name`` at ``version`` (moving it if set elsewhere)."""
        self.client.set_registered_model_alias(model_name, alias, str(version))

    def delete_alias(self, model_name: str, alias: str) -> None:
        """Remove ``alias`` from ``model_name``; nothing happens when it is not set."""
        if self.get_alias_version(model_name, alias) is not None:
            self.client.delete_registered_model_alias(model_name, alias)

    def set_model_version_tags(
        self, model_name: str, version: str | int, tags: Mapping[str, Any]
    ) -> None:
        """Set tags on a model version (secret-looking keys as ``***``)."""
        for k, v in tags.items():
            value = _clip(_REDACTED if is_secret_key(str(k)) else _text(v), _MAX_VERSION_TAG)
            self.client.set_model_version_tag(model_name, str(version), str(k), value)

    def load_pyfunc(self, model_uri: str) -> Any:
        """Load a pyfunc model, e.g. ``models:/tierline-sma_cross@champion``, from this store."""
        _mlflow_env()
        import mlflow.pyfunc

        with _process_uris(self.uri):
            return mlflow.pyfunc.load_model(model_uri)


@contextlib.contextmanager
def _process_uris(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking and registry URIs at ``uri`` for the block only.

    ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI`` (for subprocesses), which
    `resolve_tracking_uri` reads: left set, it would silently send every later default-URI
    `Tracker` of the process to this store. Both the module globals and the variables are
    restored on exit.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {n: os.environ.get(n) for n in names}
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
        for n, v in saved_env.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


@dataclass(frozen=True, kw_only=True)
class ModelVersionRecord:
    """One version of a registered model: where it came from, its tags and aliases."""

    name: str
    version: str
    run_id: str
    source: str
    tags: dict[str, str]
    aliases: tuple[str, ...]
    created: datetime | None


def _model_version_record(mv: Any) -> ModelVersionRecord:
    return ModelVersionRecord(
        name=str(mv.name),
        version=str(mv.version),
        run_id=str(mv.run_id or ""),
        source=str(mv.source or ""),
        tags=dict(mv.tags or {}),
        aliases=tuple(str(a) for a in (getattr(mv, "aliases", None) or ())),
        created=_ms(mv.creation_timestamp),
    )


def _tier_record(run: Run) -> TierRecord:
    tags = dict(run.data.tags)
    rank = tags.get("rank")
    return TierRecord(
        run_id=run.info.run_id,
        tier=tags.get("tier", ""),
        engine=tags.get("engine", ""),
        rank=int(rank) if rank not in (None, "") else None,
        status=run.info.status,
        params=dict(run.data.params),
        metrics=_restore_metrics(run.data.metrics, tags),
        tags=tags,
        artifact_uri=run.info.artifact_uri,
        start_time=_ms(run.info.start_time),
        end_time=_ms(run.info.end_time),
    )


# ----------------------------------------------------------------------------- URIs


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _safe_name(strategy: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", strategy)


def experiment_name(strategy: str) -> str:
    """Return the MLflow experiment of a strategy: ``tierline/<strategy>``."""
    return f"tierline/{strategy}"


def sqlite_path(uri: str) -> Path | None:
    """Return the database file of a ``sqlite:///`` URI (absolute), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///") :].split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest).resolve()


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Return the tracking URI to use.

    ``uri`` when given, else ``$TIERLINE_TRACKING_URI``, else ``$MLFLOW_TRACKING_URI``, else
    `DEFAULT_TRACKING_URI`; a relative SQLite path (or a bare file path ending ``.db``) is made
    absolute against the current directory.
    """
    chosen = (
        uri
        or os.environ.get(TRACKING_URI_ENV)
        or os.environ.get("MLFLOW_TRACKING_URI")
        or DEFAULT_TRACKING_URI
    )
    if "://" not in chosen and chosen.endswith(".db"):
        chosen = f"sqlite:///{chosen}"
    path = sqlite_path(chosen)
    if path is not None:
        query = chosen.split("?", 1)[1] if "?" in chosen else ""
        chosen = f"sqlite:///{path}" + (f"?{query}" if query else "")
    return chosen


def mlflow_ui_command(uri: str, port: int, artifact_root: Path | None) -> list[str]:
    """Return the ``mlflow ui`` command line for a store (local host, one worker)."""
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlflow"]
    cmd += [
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    if artifact_root is not None:
        cmd += ["--default-artifact-root", artifact_root.as_uri()]
    return cmd


def offline_env() -> dict[str, str]:
    """Return this process's environment with MLflow's telemetry switched off."""
    _mlflow_env()
    return dict(os.environ)
