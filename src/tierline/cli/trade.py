"""``tierline trade STRATEGY``: run the promoted champion in ``freqtrade trade``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["register", "run_trade_command"]


class _PassThroughParser(argparse.ArgumentParser):
    """A parser that keeps everything after the first ``--`` as ``freqtrade_args``.

    Plain argparse cannot: a ``*`` positional after ``strategy`` matches nothing as soon as
    an option follows the strategy, and the words after ``--`` are then rejected.
    """

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        words = list(sys.argv[1:] if args is None else args)
        extra: list[str] = []
        if "--" in words:
            cut = words.index("--")
            words, extra = words[:cut], words[cut + 1 :]
        ns, rest = super().parse_known_args(words, namespace)
        ns.freqtrade_args = extra
        return ns, rest


def register(sub: Any) -> None:
    """Add ``trade`` to the parser."""
    default_class = sub._parser_class  # the trade parser alone passes `-- ...` through
    sub._parser_class = _PassThroughParser
    try:
        p = _add_parser(sub)
    finally:
        sub._parser_class = default_class
    p.set_defaults(func=_cmd_trade)


def _add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "trade",
        help="run the promoted champion with freqtrade trade (dry run unless --live)",
        description=(
            "Run `freqtrade trade --config freqtrade/user_data/config.<strategy>.json "
            "--strategy TierlineShim --userdir freqtrade/user_data --dry-run`: the shim reads "
            "the champion's parameters from registry/<strategy>.json. The config is written by "
            "`tierline promote` (and rewritten here from the registry record and the policy "
            "when missing). Dry run unless --live; live trading reads the exchange keys from "
            "$TIERLINE_EXCHANGE_KEY and $TIERLINE_EXCHANGE_SECRET (put in a private temporary "
            "config, mode 0600, deleted afterwards) or from the git-ignored "
            "freqtrade/user_data/config.private.json, and refuses to start without them. Keys "
            "are never printed. Arguments after `--` go to freqtrade as they are."
        ),
    )
    p.add_argument("strategy", help="strategy name (its champion must be in registry/)")
    p.add_argument(
        "--live",
        action="store_true",
        help="trade with real money (default: dry run); needs exchange keys",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="freqtrade config to run instead of freqtrade/user_data/config.<strategy>.json",
    )
    p.add_argument(
        "--dry-run-wallet",
        type=float,
        default=None,
        help="starting balance of the dry run (default: the config's, from the policy)",
    )
    p.add_argument(
        "--registry", type=Path, default=None, help="registry folder (default registry/)"
    )
    p.add_argument(
        "--policy",
        type=Path,
        default=None,
        help="promotion policy for a rewritten config (default promotion/policy.toml)",
    )
    p.add_argument(
        "--replay",
        action="store_true",
        help=(
            "dry run offline against a local replay of the catalog (the champion's exchange, "
            "pair and timeframe; see `tierline replay serve`); `tierline shadow STRATEGY --run "
            "latest` then compares it with the backtest"
        ),
    )
    p.add_argument(
        "--replay-from",
        default=None,
        help="with --replay: catalog time of the first replayed candle (default: 1000 in)",
    )
    p.add_argument(
        "--print-command",
        action="store_true",
        help="print the freqtrade command line (keys redacted) and exit without running it",
    )
    p.usage = "%(prog)s STRATEGY [options] [-- FREQTRADE_ARGS ...]"
    return p  # type: ignore[no-any-return]


def run_trade_command(cmd: Any) -> int:
    """Run a `tierline.promotion.handoff.TradeCommand`; return freqtrade's exit code.

    Ctrl-C reaches freqtrade too (same process group); SIGTERM and SIGHUP sent to this
    process alone (a service manager, a closed terminal) are passed on to freqtrade. Either
    way this waits for freqtrade to stop, so the temporary key file is deleted in every case
    short of SIGKILL.
    """
    import subprocess

    from tierline.errors import ConfigError

    try:
        with _forwarding_signals() as started:
            try:
                proc = subprocess.Popen(cmd.argv, env=cmd.env)  # noqa: S603 - argv built by trade_command
            except OSError as e:
                raise ConfigError(f"cannot start freqtrade ({cmd.argv[0]}): {e}") from e
            started(proc)
            while True:
                try:
                    return int(proc.wait())
                except KeyboardInterrupt:  # freqtrade got it too and is shutting down
                    continue
    finally:
        cmd.remove_temporaries()


@contextlib.contextmanager
def _forwarding_signals() -> Iterator[Callable[[Any], None]]:
    """Pass SIGTERM and SIGHUP on to a child process instead of dying (main thread only).

    Yields the function to call with the child once it is started; a signal that arrives
    before is passed on then.
    """
    import signal

    from tierline.signals import signal_handlers

    child: list[Any] = []
    pending: list[int] = []

    def forward(signum: int, _frame: Any = None) -> None:
        if not child:
            pending.append(signum)
        elif child[0].poll() is None:
            child[0].send_signal(signum)

    def started(proc: Any) -> None:
        child.append(proc)
        for signum in pending:
            forward(signum)

    with signal_handlers(forward, (signal.SIGTERM, signal.SIGHUP)):
        yield started


def _cmd_trade(args: argparse.Namespace) -> int:
    from tierline.promotion.handoff import prepare_trade

    if args.replay:
        return _cmd_trade_replay(args)

    cmd = prepare_trade(
        args.strategy,
        live=args.live,
        config=args.config,
        registry_root=args.registry,
        policy_path=args.policy,
        dry_run_wallet=args.dry_run_wallet,
        extra_args=args.freqtrade_args,
    )
    if args.print_command:
        cmd.remove_temporaries()
        print(cmd.printable())
        return 0
    mode = "LIVE, real money" if cmd.live else "dry run"
    print(f"{args.strategy}: freqtrade trade ({mode}); Ctrl-C stops it", file=sys.stderr)
    print(cmd.printable(), file=sys.stderr, flush=True)
    return run_trade_command(cmd)


def _cmd_trade_replay(args: argparse.Namespace) -> int:
    """``--replay``: the champion's config against a local replay (tierline.live.dryrun)."""
    from tierline.errors import ConfigError
    from tierline.live.dryrun import trade_replay
    from tierline.promotion.handoff import prepare_trade
    from tierline.promotion.registry import read_record, registry_root

    if args.live:
        raise ConfigError("--replay is a dry run against a local replay: not with --live")
    cmd = prepare_trade(
        args.strategy, config=args.config, registry_root=args.registry, policy_path=args.policy
    )
    cmd.remove_temporaries()
    configs = [Path(cmd.argv[i + 1]) for i, a in enumerate(cmd.argv) if a == "--config"]
    record = read_record(args.strategy, registry_root(args.registry))
    assert record is not None  # prepare_trade refuses a strategy without a champion
    extra = list(args.freqtrade_args)
    if args.dry_run_wallet is not None:
        extra += ["--dry-run-wallet", repr(float(args.dry_run_wallet))]
    result = trade_replay(record, configs, start=args.replay_from, extra_args=extra)
    trades = result.trades()
    print(
        f"replay stopped ({result.stopped_by}) at {result.status['cursor']} (catalog time): "
        f"{len(trades)} dry-run trade(s) in {result.db_path}; "
        f"`tierline shadow {args.strategy} --run {result.db_path.parent}` compares them with "
        "the backtest",
        file=sys.stderr,
    )
    if result.error:
        print(f"error: freqtrade cannot trade the replay: {result.error}", file=sys.stderr)
        return 1
    return 0
