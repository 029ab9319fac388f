"""``tierline registry ls | show | rollback | sync``: the promoted champions."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tierline.cli.promote import add_places_args, places_from

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``registry`` and its subcommands to the parser."""
    reg = sub.add_parser(
        "registry",
        help="promoted champions: ls, show, rollback, sync",
        description=(
            "The champion of each promoted strategy: registry/<strategy>.json (the commit "
            "point), the MLflow model tierline-<strategy> with aliases 'champion' and "
            "'previous', and the freqtrade config derived from them."
        ),
    )
    reg.set_defaults(help_parser=reg)
    rsub = reg.add_subparsers(dest="registry_command", metavar="COMMAND")

    ls = rsub.add_parser("ls", help="list champions and whether MLflow agrees with registry/")
    add_places_args(ls, policy=False)
    ls.set_defaults(func=_cmd_ls)

    show = rsub.add_parser("show", help="print a strategy's champion record")
    show.add_argument("strategy")
    add_places_args(show, policy=False)
    show.set_defaults(func=_cmd_show)

    rb = rsub.add_parser(
        "rollback",
        help="make the previous champion the champion again (registry/, MLflow, freqtrade)",
    )
    rb.add_argument("strategy")
    add_places_args(rb)
    rb.set_defaults(func=_cmd_rollback)

    sync = rsub.add_parser(
        "sync",
        help="re-derive MLflow aliases and the freqtrade config from registry/ (after a crash)",
    )
    sync.add_argument("strategy")
    add_places_args(sync)
    sync.set_defaults(func=_cmd_sync)


def _cmd_ls(args: argparse.Namespace) -> int:
    from tierline.promotion.champion import consistency
    from tierline.promotion.registry import list_records
    from tierline.strategy import format_params

    places = places_from(args)
    records = list(list_records(places.root))
    if not records:
        print(f"no champions in {places.root} (promote one with `tierline promote STRATEGY`)")
        return 0
    rows = [("strategy", "version", "params", "data", "promoted_at", "MLflow")]
    problems: list[str] = []
    for rec in records:
        issues = consistency(rec["strategy"], places)
        problems += [f"{rec['strategy']}: {p}" for p in issues]
        data = (rec.get("data") or [{}])[0]
        market = (
            f"{data.get('exchange', '?')} {data.get('symbol', '?')} {rec.get('timeframe', '?')}"
        )
        if data.get("synthetic"):
            market += " (synthetic)"
        rows.append(
            (
                rec["strategy"],
                str((rec.get("model") or {}).get("version", "?")),
                format_params(rec.get("params") or {}),
                market,
                str(rec.get("rolled_back_at") or rec.get("promoted_at") or "?"),
                "consistent" if not issues else "OUT OF SYNC",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for p in problems:
        print(f"  ! {p}")
    if problems:
        print("  repair with `tierline registry sync STRATEGY`")
        return 1
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from tierline.errors import ConfigError
    from tierline.promotion.champion import consistency
    from tierline.promotion.registry import read_record, record_path

    places = places_from(args)
    record = read_record(args.strategy, places.root)
    if record is None:
        raise ConfigError(
            f"{args.strategy} has no champion: {record_path(args.strategy, places.root)} "
            "does not exist"
        )
    print(json.dumps(record, indent=2))
    issues = consistency(args.strategy, places)
    for p in issues:
        print(f"! {p} (repair with `tierline registry sync {args.strategy}`)")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from tierline.promotion.champion import rollback
    from tierline.promotion.policy import load_policy
    from tierline.strategy import format_params

    record = rollback(args.strategy, load_policy(args.policy), places_from(args))
    print(
        f"rolled back {args.strategy}: {record['model']['name']}@champion = version "
        f"{record['model']['version']} ({format_params(record['params'])})"
    )
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    from tierline.promotion.champion import consistency, reconcile
    from tierline.promotion.policy import load_policy
    from tierline.promotion.registry import strategy_lock

    places = places_from(args)
    policy = load_policy(args.policy)
    with strategy_lock(args.strategy, places.root, timeout=places.lock_timeout):
        done = reconcile(args.strategy, places, policy=policy)
        left = consistency(args.strategy, places)
    for msg in done:
        print(f"[registry] {msg}")
    if left:  # e.g. a record naming a model version this MLflow store does not hold
        for p in left:
            print(f"  ! {p}")
        print(f"{args.strategy}: still out of sync with {places.root} (see above)")
        return 1
    print(f"{args.strategy}: registry/, MLflow and the freqtrade config agree")
    return 0
