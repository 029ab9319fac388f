"""``tierline promote``: the promotion gate (what `make promote STRATEGY=x` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_places_args", "register"]


def add_places_args(p: argparse.ArgumentParser, *, policy: bool = True) -> None:
    """Add ``--tracking-uri --registry --freqtrade-config --lock-timeout`` (and ``--policy``)."""
    g = p.add_argument_group("where the champion lives")
    if policy:
        g.add_argument(
            "--policy",
            type=Path,
            default=None,
            help="promotion policy TOML (default: $TIERLINE_POLICY or promotion/policy.toml)",
        )
    g.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite)")
    g.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="registry folder (default: $TIERLINE_REGISTRY_DIR or ./registry)",
    )
    g.add_argument(
        "--freqtrade-config",
        default=None,
        help="freqtrade config to write, '{strategy}' is filled in "
        "(default freqtrade/user_data/config.<strategy>.json)",
    )
    g.add_argument(
        "--lock-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for another promotion of the same strategy (default 600)",
    )


def register(sub: Any) -> None:
    """Add ``promote`` to the parser."""
    p = sub.add_parser(
        "promote",
        help="promotion gate: check a pipeline's evidence against the policy, crown a champion",
        description=(
            "Evaluate the newest FINISHED pipeline of STRATEGY in MLflow (or --run-id) against "
            "the promotion policy and print every check with its threshold and measured value. "
            "All pass: register the candidate as a new version of the MLflow model "
            "tierline-STRATEGY, write registry/STRATEGY.json, the freqtrade config, and move "
            "the 'champion' alias to it (the old champion keeps 'previous'). Any fails: exit 5, "
            "nothing changes."
        ),
    )
    p.add_argument("strategy", help="strategy name (see `tierline strategies`)")
    p.add_argument(
        "--params",
        default=None,
        help="the candidate to promote, e.g. fast=10,slow=50 (default: the rank-1 candidate)",
    )
    p.add_argument("--run-id", default=None, help="the pipeline (parent) run to evaluate")
    p.add_argument(
        "--run-missing",
        action="store_true",
        help="run what the evidence lacks (the pipeline, a candidate's causality check, tier 3)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="evaluate and print the checks; change nothing"
    )
    g = p.add_argument_group("which pipeline (and the data --run-missing runs one on)")
    g.add_argument("--exchange", default=None, help="only pipelines on this exchange")
    g.add_argument("--symbol", default=None, help="only pipelines on this symbol")
    g.add_argument("--timeframe", default=None, help="only pipelines on this bar length")
    g.add_argument("--start", default=None, help="--run-missing: first bar (default: all)")
    g.add_argument("--end", default=None, help="--run-missing: stop before this time")
    add_places_args(p)
    p.set_defaults(func=_cmd_promote)


def places_from(args: argparse.Namespace) -> Any:
    """Return the `tierline.promotion.champion.Places` the options name."""
    from tierline.promotion.champion import Places
    from tierline.tracking import Tracker

    return Places(
        Tracker(args.tracking_uri),
        root=args.registry,
        freqtrade_config=args.freqtrade_config,
        lock_timeout=args.lock_timeout,
    )


def _cmd_promote(args: argparse.Namespace) -> int:
    from tierline.promotion.champion import promote
    from tierline.promotion.gate import GateRejected, PromotionRequest, evaluate_request
    from tierline.promotion.policy import load_policy
    from tierline.strategy import format_params, parse_params

    policy = load_policy(args.policy)
    request = PromotionRequest(
        strategy=args.strategy,
        params=parse_params(args.params) if args.params else None,
        run_id=args.run_id,
        run_missing=args.run_missing,
        exchange=args.exchange,
        symbol=args.symbol,
        timeframe=args.timeframe,
        start=args.start,
        end=args.end,
    )
    places = places_from(args)
    if args.dry_run:
        verdict = evaluate_request(request, policy, places.tracker)
        print(verdict.table())
        if not verdict.passed:
            raise GateRejected(verdict)
        print(f"dry run: {args.strategy} would be promoted; nothing was changed")
        return 0
    record = promote(request, policy, places)
    print(
        f"promoted {record['strategy']} ({format_params(record['params'])}): "
        f"{record['model']['name']}@champion = version {record['model']['version']}"
    )
    name = record["strategy"]
    print(f"  next: `tierline registry show {name}`, `make trade STRATEGY={name}`")
    return 0
