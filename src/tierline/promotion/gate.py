"""The promotion gate: evaluate a pipeline's evidence for one candidate against the policy.

`evaluate` is pure: a pipeline as read from MLflow (`tierline.tracking.PipelineRecord`), a
candidate rank and a `Policy` in, one `Check` per rule out. What each rule reads:

============  ==========================================================================
tier          checks (the pipeline run, the sweep run, or the candidate's runs of rank r)
============  ==========================================================================
data          synthetic data only when ``[data] allow_synthetic`` (pipeline tag)
check         causality: parent metric ``causality_passed`` (the pipeline checks candidate
              1) or ``causality_passed_r<r>`` (logged by ``promote --run-missing``); always
              enforced, a missing check fails
tier1         sweep run (``tier1/vectorbt`` without rank): walk-forward out-of-sample
              ``sharpe`` and ``trades``, ``dsr``, ``pbo``; the candidate's own
              ``tier1/vectorbt`` run must exist
tier2         ``tier2/nautilus`` and ``tier2/freqtrade`` of rank r: FINISHED,
              ``parity_passed`` (when required), ``sharpe``, ``max_drawdown``
tier3         ``tier3/hftbacktest`` of rank r (required or not: when it exists it is
              checked): tag ``l2`` (synthetic only when allowed), ``shortfall_bps``,
              ``fill_ratio``, ``total_return`` (net of execution, must be ABOVE the minimum)
============  ==========================================================================

A missing run or metric is a failed check that says so (NaN fails too). `find_evidence`
finds the pipeline (the newest FINISHED one, or ``--run-id``) and, with ``run_missing``, runs
what is missing first. `tierline.promotion.champion` commits a passing verdict.
"""

from __future__ import annotations

import json
import logging
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tierline.errors import ConfigError, DataError, PromotionRejected

if TYPE_CHECKING:
    import polars as pl

    from tierline.promotion.policy import Policy
    from tierline.strategy.contract import Strategy
    from tierline.tracking import PipelineRecord, TierRecord, Tracker

__all__ = [
    "TIER2_ENGINES",
    "TIER3_ENGINE",
    "Check",
    "GateRejected",
    "PromotionRequest",
    "Verdict",
    "candidates",
    "checks_json",
    "evaluate",
    "evaluate_request",
    "execution_config",
    "find_evidence",
    "is_complete",
    "pipeline_bars",
    "select_candidate",
]

logger = logging.getLogger(__name__)

#: Engines whose tier-2 runs the gate requires (as `tierline.pipeline.TIER2_ENGINES`).
TIER2_ENGINES: tuple[str, ...] = ("nautilus", "freqtrade")
#: Engine of tier-3 runs.
TIER3_ENGINE = "hftbacktest"
_FINISHED = "FINISHED"
_SEARCH = 10  # newest FINISHED pipelines searched for a complete one
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "==": operator.eq,
}


# ----------------------------------------------------------------------------- checks


@dataclass(frozen=True, kw_only=True)
class Check:
    """One rule of the policy applied to one measured value.

    Attributes
    ----------
    name, tier
        What is checked and where the value comes from (``data``, ``check``, ``tier1``...).
    op, threshold
        The rule: ``value <op> threshold`` (``>=``, ``<=``, ``>``, ``==``), or ``present`` /
        ``allowed`` for non-numeric rules.
    value
        The measured value, or a word (``missing``, ``FAILED``, ``synthetic``...).
    passed
        Whether the rule holds. A skipped rule (not required and absent) counts as passed.
    note
        Why it failed or was skipped, and what to do.
    skipped
        True when the rule did not apply.
    """

    name: str
    tier: str
    op: str
    threshold: float | bool | str | None
    value: float | str | None
    passed: bool
    note: str = ""
    skipped: bool = False

    @property
    def result(self) -> str:
        """Return ``PASS``, ``FAIL`` or ``SKIP``."""
        return "SKIP" if self.skipped else "PASS" if self.passed else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        """Return the check as JSON-ready data (for registry records and version tags)."""
        value = self.value
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        return {
            "name": self.name,
            "tier": self.tier,
            "op": self.op,
            "threshold": self.threshold,
            "value": value,
            "passed": self.passed,
            "skipped": self.skipped,
            "note": self.note,
        }


def _compare(
    name: str, tier: str, op: str, threshold: float, value: float | None, note: str = ""
) -> Check:
    if value is None:
        return Check(
            name=name,
            tier=tier,
            op=op,
            threshold=threshold,
            value="missing",
            passed=False,
            note=note or "not logged",
        )
    v = float(value)
    passed = not math.isnan(v) and _OPS[op](v, threshold)
    return Check(name=name, tier=tier, op=op, threshold=threshold, value=v, passed=passed)


def _missing(name: str, tier: str, note: str, value: str = "missing") -> Check:
    return Check(
        name=name,
        tier=tier,
        op="present",
        threshold=_FINISHED,
        value=value,
        passed=False,
        note=note,
    )


def _latest(runs: list[TierRecord]) -> TierRecord | None:
    return runs[-1] if runs else None


def _data_checks(record: PipelineRecord, policy: Policy) -> list[Check]:
    synthetic = record.dataset.synthetic
    allowed = policy.data.allow_synthetic
    return [
        Check(
            name="synthetic data",
            tier="data",
            op="allowed",
            threshold="real or synthetic" if allowed else "real",
            value="synthetic" if synthetic else "real",
            passed=allowed or not synthetic,
            note="[data] allow_synthetic = false" if synthetic and not allowed else "",
        )
    ]


def _causality_check(record: PipelineRecord, rank: int) -> Check:
    value = record.metrics.get(f"causality_passed_r{rank}")
    if value is None and rank == 1:
        value = record.metrics.get("causality_passed")
    if value is None:
        return _compare(
            "causality (lookahead, window)",
            "check",
            "==",
            1.0,
            None,
            note=f"candidate {rank} was not checked (the pipeline checks candidate 1): "
            "--run-missing checks it",
        )
    check = _compare("causality (lookahead, window)", "check", "==", 1.0, value)
    if not check.passed:
        reason = record.tags.get("causality", "") if rank == 1 else ""
        check = replace(check, note=reason or "always enforced")
    return check


def _tier1_checks(record: PipelineRecord, policy: Policy, rank: int) -> list[Check]:
    p = policy.tier1
    rules = [
        ("out-of-sample sharpe", ">=", p.min_oos_sharpe, "sharpe"),
        ("deflated sharpe ratio", ">=", p.min_dsr, "dsr"),
        ("probability of overfitting", "<=", p.max_pbo, "pbo"),
        ("out-of-sample trades", ">=", float(p.min_trades), "trades"),
    ]
    sweep = _latest([t for t in record.find("tier1", "vectorbt") if t.rank is None])
    out: list[Check] = []
    if sweep is None or sweep.status != _FINISHED:
        value = "missing" if sweep is None else sweep.status
        note = "no tier-1 sweep run in this pipeline (run `tierline run` or --run-missing)"
        out += [_missing(name, "tier1", note, value) for name, *_ in rules]
    else:
        out += [
            _compare(name, "tier1", op, thr, sweep.metrics.get(key)) for name, op, thr, key in rules
        ]
    cand = _latest(record.find("tier1", "vectorbt", rank))
    if cand is None or cand.status != _FINISHED:
        out.append(
            _missing(
                "candidate backtest (vectorbt)",
                "tier1",
                f"no FINISHED tier1/vectorbt run of candidate {rank}",
                "missing" if cand is None else cand.status,
            )
        )
    return out


def _tier2_checks(record: PipelineRecord, policy: Policy, rank: int) -> list[Check]:
    p = policy.tier2
    out: list[Check] = []
    for engine in TIER2_ENGINES:
        run = _latest(record.find("tier2", engine, rank))
        if run is None or run.status != _FINISHED:
            value = "missing" if run is None else run.status
            note = (
                f"no tier2/{engine} run of candidate {rank}"
                if run is None
                else run.tags.get("error", f"the {engine} run {run.status}")[:200]
            )
            out.append(_missing(f"{engine} backtest", "tier2", note, value))
            continue
        if p.require_parity:
            out.append(
                _compare(
                    f"{engine} parity with reference",
                    "tier2",
                    "==",
                    1.0,
                    run.metrics.get("parity_passed"),
                )
            )
        out.append(
            _compare(f"{engine} sharpe", "tier2", ">=", p.min_sharpe, run.metrics.get("sharpe"))
        )
        out.append(
            _compare(
                f"{engine} max drawdown",
                "tier2",
                "<=",
                p.max_drawdown,
                run.metrics.get("max_drawdown"),
            )
        )
    return out


def _no_tier3_evidence(required: bool, value: str, note: str) -> list[Check]:
    """Return the check of a tier-3 run that is no evidence: failed if required, else skipped."""
    check = _missing("hftbacktest execution run", "tier3", note, value)
    if required:
        return [check]
    return [replace(check, passed=True, skipped=True)]


def _tier3_checks(record: PipelineRecord, policy: Policy, rank: int) -> list[Check]:
    p = policy.tier3
    run = _latest(record.find("tier3", TIER3_ENGINE, rank))
    if run is None or run.status != _FINISHED:
        value = "missing" if run is None else run.status
        if not p.required:
            note = "[tier3] required = false"
        elif run is None:
            note = f"no tier3/{TIER3_ENGINE} run of candidate {rank}: --run-missing runs it"
        else:
            note = run.tags.get("error", f"the tier-3 run {run.status}")[:200]
        return _no_tier3_evidence(p.required, value, note)
    if run.metrics.get("orders") == 0.0:  # nothing replayed: no execution evidence
        note = (
            "the tier-3 run replayed no orders (no decision inside the L2 book's span?): "
            "no execution evidence"
        )
        return _no_tier3_evidence(p.required, "0 orders", note)
    l2 = run.tags.get("l2", "")
    synthetic_ok = p.allow_synthetic_l2 or l2 == "real"
    return [
        Check(
            name="L2 book",
            tier="tier3",
            op="allowed",
            threshold="real or synthetic" if p.allow_synthetic_l2 else "real",
            value=l2 or "missing",
            passed=synthetic_ok,
            note="" if synthetic_ok else "[tier3] allow_synthetic_l2 = false",
        ),
        _compare(
            "shortfall (bps)", "tier3", "<=", p.max_shortfall_bps, run.metrics.get("shortfall_bps")
        ),
        _compare("fill ratio", "tier3", ">=", p.min_fill_ratio, run.metrics.get("fill_ratio")),
        _compare("net return", "tier3", ">", p.min_net_return, run.metrics.get("total_return")),
    ]


def evaluate(record: PipelineRecord, policy: Policy, rank: int | None) -> tuple[Check, ...]:
    """Apply every rule of ``policy`` to candidate ``rank`` of a pipeline.

    Parameters
    ----------
    record
        The pipeline with its tier runs.
    policy
        The promotion policy.
    rank
        The candidate's rank (1 = best); None when the pipeline has no candidate (then one
        failed check says so).

    Returns
    -------
    tuple of Check
        In table order: data, causality, tier 1, tier 2, tier 3.
    """
    if rank is None:
        return (
            _missing(
                "candidates",
                "pipeline",
                f"pipeline {record.run_id} holds no ranked candidate run (a FAILED or "
                "interrupted pipeline?): run `tierline run` again",
            ),
        )
    return (
        *_data_checks(record, policy),
        _causality_check(record, rank),
        *_tier1_checks(record, policy, rank),
        *_tier2_checks(record, policy, rank),
        *_tier3_checks(record, policy, rank),
    )


# ----------------------------------------------------------------------------- candidates


def candidates(record: PipelineRecord) -> dict[int, dict[str, str]]:
    """Return the parameters of each ranked candidate of a pipeline (MLflow strings)."""
    out: dict[int, dict[str, str]] = {}
    for t in record.tiers:
        if t.rank is not None and t.params and t.rank not in out:
            out[t.rank] = dict(t.params)
    return dict(sorted(out.items()))


def select_candidate(
    record: PipelineRecord, strategy: Strategy, params: Mapping[str, Any] | None
) -> tuple[int | None, dict[str, Any]]:
    """Return the rank and typed parameters of the candidate to promote.

    Parameters
    ----------
    record
        The pipeline.
    strategy
        The strategy (types and validates the parameters).
    params
        The candidate's parameters (``--params``); None = the best-ranked candidate.

    Raises
    ------
    ConfigError
        If ``params`` are not among the pipeline's candidates (the message lists them).
    """
    from tierline.strategy import format_params

    found = {rank: strategy.validate_params(p) for rank, p in candidates(record).items()}
    if params is None:
        if not found:
            return None, {}
        rank = min(found)
        return rank, found[rank]
    wanted = strategy.validate_params(params)
    for rank, p in found.items():
        if p == wanted:
            return rank, p
    listed = "; ".join(f"{r}: {format_params(p)}" for r, p in found.items()) or "none"
    raise ConfigError(
        f"{format_params(wanted)} is not a candidate of pipeline {record.run_id} "
        f"(candidates {listed}); run `tierline run {strategy.name} --top N` so it reaches tier 2"
    )


# ----------------------------------------------------------------------------- verdict


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The gate's decision on one candidate of one pipeline."""

    strategy: str
    pipeline: PipelineRecord
    rank: int | None
    params: dict[str, Any]
    checks: tuple[Check, ...]
    policy: Policy
    notes: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """Return whether every check passed (and there is at least one)."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        """Return the failed checks."""
        return [c for c in self.checks if not c.passed]

    def runs(self) -> dict[str, Any]:
        """Return the MLflow run ids of the evidence, per tier (the registry's ``runs``)."""
        rec, rank = self.pipeline, self.rank

        def run_id(tier: str, engine: str, r: int | None) -> str | None:
            found = [t for t in rec.find(tier, engine) if t.rank == r]
            return found[-1].run_id if found else None

        return {
            "parent": rec.run_id,
            "tier1": run_id("tier1", "vectorbt", rank),
            "tier1_sweep": run_id("tier1", "vectorbt", None),
            "tier2": {e: run_id("tier2", e, rank) for e in TIER2_ENGINES},
            "tier3": run_id("tier3", TIER3_ENGINE, rank),
        }

    def table(self) -> str:
        """Return the checks as a text table: check, tier, threshold, value, result."""
        from tierline.strategy import format_params

        ds = self.pipeline.dataset
        head = (
            f"promotion of {self.strategy} ({format_params(self.params) or 'no candidate'}), "
            f"candidate {self.rank} of pipeline {self.pipeline.run_id}\n"
            f"  data: {ds.exchange} {ds.symbol} {ds.timeframe} {ds.start} .. {ds.end}"
            + (" (SYNTHETIC)" if ds.synthetic else "")
            + f"; policy {self.policy.path} (sha256 {self.policy.sha256[:12]})"
        )
        rows = [("check", "tier", "threshold", "value", "result")]
        for c in self.checks:
            rows.append((c.name, c.tier, _fmt_threshold(c), _fmt_value(c.value), c.result))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = [head]
        for row in rows:
            lines.append(
                "  "
                + "  ".join(
                    cell.rjust(w) if i in (2, 3) else cell.ljust(w)
                    for i, (cell, w) in enumerate(zip(row, widths, strict=True))
                ).rstrip()
            )
        for c in self.checks:
            if c.note and (not c.passed or c.skipped):
                lines.append(f"  - {c.name}: {c.note}")
        lines.extend(f"  note: {n}" for n in self.notes)
        n_fail = len(self.failed)
        lines.append(
            f"verdict: {'PASS' if self.passed else 'FAIL'} "
            f"({len(self.checks) - n_fail}/{len(self.checks)} checks passed)"
        )
        return "\n".join(lines)


def _fmt_number(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e9:
        return f"{int(x)}"
    return f"{x:.4g}"


def _fmt_threshold(c: Check) -> str:
    t = c.threshold
    if isinstance(t, bool):
        return f"{c.op} {'yes' if t else 'no'}"
    if isinstance(t, int | float):
        return f"{c.op} {_fmt_number(float(t))}"
    return f"{c.op} {t}" if c.op != "present" else "present"


def _fmt_value(v: float | str | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, float | int):
        return _fmt_number(float(v))
    return str(v)


class GateRejected(PromotionRejected):
    """The gate rejected a candidate; ``verdict`` holds every check (exit 5)."""

    def __init__(self, verdict: Verdict) -> None:
        names = ", ".join(c.name for c in verdict.failed)
        super().__init__(
            f"{verdict.strategy} was not promoted: {len(verdict.failed)} check(s) failed "
            f"({names}); registry/, the MLflow aliases and the freqtrade config are unchanged"
        )
        self.verdict = verdict


# ----------------------------------------------------------------------------- evidence


@dataclass(frozen=True, kw_only=True)
class PromotionRequest:
    """What `tierline promote` was asked.

    Parameters
    ----------
    strategy
        Strategy name.
    params
        The candidate's parameters (None = the best-ranked candidate).
    run_id
        The pipeline run to evaluate (None = the newest FINISHED one).
    run_missing
        Run what the evidence lacks: the pipeline when there is none, the causality check of
        a candidate other than 1, tier 3 when it is missing.
    exchange, symbol, timeframe, start, end
        Only pipelines on this data; with ``run_missing`` and no pipeline, the data to run
        one on (default ``binance BTC/USDT 5m``, all bars).
    """

    strategy: str
    params: Mapping[str, Any] | None = None
    run_id: str | None = None
    run_missing: bool = False
    exchange: str | None = None
    symbol: str | None = None
    timeframe: str | None = None
    start: str | None = None
    end: str | None = None


def _say(msg: str) -> None:
    print(msg, flush=True)


def find_evidence(
    request: PromotionRequest,
    strategy: Strategy,
    tracker: Tracker,
    *,
    say: Callable[[str], None] = _say,
) -> PipelineRecord:
    """Return the pipeline to evaluate, running one first when asked and there is none.

    Parameters
    ----------
    request
        What to promote: ``run_id`` names the pipeline, else the newest complete FINISHED one
        (on ``exchange``/``symbol``/``timeframe`` when given) is taken; ``run_missing`` runs
        one when there is none.
    strategy
        The strategy.
    tracker
        The MLflow store.
    say
        Where progress lines go (default: stdout).

    Raises
    ------
    ConfigError
        If there is no FINISHED pipeline (and ``run_missing`` is off), or ``run_id`` is not a
        pipeline run of this strategy.
    """
    if request.run_id is not None:
        record = tracker.pipeline_by_id(request.run_id)
        if record.strategy != strategy.name:
            raise ConfigError(
                f"run {request.run_id} is a pipeline of {record.strategy!r}, not {strategy.name!r}"
            )
        if record.status != _FINISHED:
            raise ConfigError(
                f"pipeline run {request.run_id} is {record.status}, not FINISHED: only complete "
                "pipelines are evaluated"
            )
        return record
    # A complete pipeline is what `tierline run` logs: the tier-1 sweep and tier-2 runs
    # (`tierline sweep` and `tierline hft` log partial pipelines of their own).
    finished = tracker.pipelines(
        strategy.name,
        limit=_SEARCH,
        status=_FINISHED,
        exchange=request.exchange,
        symbol=request.symbol,
        timeframe=request.timeframe,
    )
    for found in finished:
        if is_complete(found):
            return found
    where = " ".join(x for x in (request.exchange, request.symbol, request.timeframe) if x)
    if not request.run_missing:
        partial = (
            f" (the newest {len(finished)} FINISHED ones are partial: no tier-1 sweep or no "
            "tier-2 run)"
            if finished
            else ""
        )
        raise ConfigError(
            f"no complete pipeline of {strategy.name}{' on ' + where if where else ''} in "
            f"{tracker.uri}{partial}: run `tierline run {strategy.name}` first, or promote "
            "with --run-missing"
        )
    return _run_pipeline(request, strategy, tracker, say)


def is_complete(record: PipelineRecord) -> bool:
    """Return whether a pipeline holds a tier-1 sweep run and at least one tier-2 run."""
    sweep = any(t.tier == "tier1" and t.rank is None for t in record.tiers)
    return sweep and any(t.tier == "tier2" for t in record.tiers)


def execution_config(record: PipelineRecord) -> dict[str, Any]:
    """Return the execution conventions a pipeline ran with (``fee, stake, initial_cash``)."""
    out: dict[str, Any] = {}
    for key in ("fee", "stake", "initial_cash"):
        raw = record.params.get(f"config.{key}")
        try:
            out[key] = None if raw is None else json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def _run_pipeline(
    request: PromotionRequest, strategy: Strategy, tracker: Tracker, say: Callable[[str], None]
) -> PipelineRecord:
    from tierline.core.conventions import ExecutionConfig
    from tierline.data.catalog import Catalog
    from tierline.pipeline import run_pipeline

    exchange = request.exchange or "binance"
    symbol = request.symbol or "BTC/USDT"
    timeframe = request.timeframe or "5m"
    say(
        f"[promote] no pipeline of {strategy.name} yet: running one on "
        f"{exchange} {symbol} {timeframe}"
    )
    bars = Catalog().read_ohlcv(exchange, symbol, timeframe, request.start, request.end)
    result = run_pipeline(
        strategy,
        bars,
        ExecutionConfig(),
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        tracking_uri=tracker.uri,
        progress=False,
    )
    return tracker.pipeline_by_id(result.parent_run_id)


def pipeline_bars(record: PipelineRecord) -> pl.DataFrame:
    """Read the bars a pipeline ran on from the catalog, checking their fingerprint.

    Raises
    ------
    DataError
        If the catalog no longer holds exactly those bars.
    """
    import polars as pl

    from tierline.data.catalog import Catalog
    from tierline.tracking import dataset_fingerprint

    ds = record.dataset
    bars = Catalog().read_ohlcv(ds.exchange, ds.symbol, ds.timeframe, ds.start, None)
    if ds.end is not None and bars.height:
        from datetime import datetime

        end = datetime.fromisoformat(ds.end)
        bars = bars.filter(pl.col("ts") <= end)
    if dataset_fingerprint(bars) != ds.fingerprint:
        raise DataError(
            f"the catalog's {ds.exchange} {ds.symbol} {ds.timeframe} bars from {ds.start} to "
            f"{ds.end} differ from what pipeline {record.run_id} ran on (fingerprint "
            f"{ds.fingerprint[:12]}): run the pipeline again"
        )
    return bars


def _run_causality(
    record: PipelineRecord,
    strategy: Strategy,
    rank: int,
    params: Mapping[str, Any],
    tracker: Tracker,
    say: Callable[[str], None],
) -> PipelineRecord:
    from tierline.core.causality import check_causality

    bars = pipeline_bars(record)
    report = check_causality(strategy, bars, dict(params))
    say(f"[promote] causality of candidate {rank}: {report.summary()}")
    handle = tracker.attach_pipeline(record)
    handle.log_metrics({f"causality_passed_r{rank}": float(report.passed)})
    return tracker.pipeline_by_id(record.run_id)


def _run_tier3(
    record: PipelineRecord,
    strategy: Strategy,
    rank: int,
    params: Mapping[str, Any],
    tracker: Tracker,
    say: Callable[[str], None],
) -> PipelineRecord:
    from tierline.core.conventions import ExecutionConfig
    from tierline.data.catalog import Catalog
    from tierline.engines.hft.config import load_hft_config
    from tierline.engines.hft.execution import run_tier3
    from tierline.engines.hft.report import log_tier3

    ds = record.dataset
    ex = {k: v for k, v in execution_config(record).items() if v is not None}
    say(f"[promote] running tier 3 (hftbacktest) for candidate {rank}")
    result = run_tier3(
        strategy,
        dict(params),
        catalog=Catalog(),
        exchange=ds.exchange,
        symbol=ds.symbol,
        timeframe=ds.timeframe,
        config=load_hft_config(),
        execution=ExecutionConfig(**ex),
        bars=pipeline_bars(record),
        say=say,
    )
    log_tier3(tracker.attach_pipeline(record), result, rank=rank)
    return tracker.pipeline_by_id(record.run_id)


def _missing_in(record: PipelineRecord, policy: Policy, rank: int, tier: str) -> bool:
    checks = evaluate(record, policy, rank)
    return any(c.tier == tier and not c.passed and c.value == "missing" for c in checks)


def evaluate_request(
    request: PromotionRequest,
    policy: Policy,
    tracker: Tracker,
    *,
    say: Callable[[str], None] = _say,
) -> Verdict:
    """Find the evidence for a promotion (running what is missing when asked) and evaluate it.

    Parameters
    ----------
    request
        What to promote (see `PromotionRequest`).
    policy
        The promotion policy.
    tracker
        The MLflow store (evidence is read from it, and what ``run_missing`` runs is logged
        to it).
    say
        Where progress lines go (default: stdout).

    Returns
    -------
    Verdict
        Every check of the candidate; `Verdict.passed` decides.

    Raises
    ------
    ConfigError
        If the strategy, the parameters or the pipeline cannot be found.
    """
    from tierline.strategy import get_strategy

    strategy = get_strategy(request.strategy)
    record = find_evidence(request, strategy, tracker, say=say)
    rank, params = select_candidate(record, strategy, request.params)
    notes: list[str] = []
    if request.run_missing and rank is not None:
        # Only for failed checks: a tier 3 the policy does not require is not run, and a
        # tier-3 run that exists is not run again.
        if _missing_in(record, policy, rank, "check"):
            record = _run_causality(record, strategy, rank, params, tracker, say)
        if _missing_in(record, policy, rank, "tier3"):
            record = _run_tier3(record, strategy, rank, params, tracker, say)
    if record.dataset.synthetic and policy.data.allow_synthetic:
        notes.append(
            f"the evidence is SYNTHETIC data, allowed by {policy.path}: a demonstration only"
        )
    return Verdict(
        strategy=strategy.name,
        pipeline=record,
        rank=rank,
        params=params,
        checks=evaluate(record, policy, rank),
        policy=policy,
        notes=tuple(notes),
    )


def checks_json(checks: tuple[Check, ...]) -> str:
    """Return the checks as compact JSON (a model version tag)."""
    return json.dumps([c.to_dict() for c in checks], separators=(",", ":"), sort_keys=True)
