"""The one command line: ``tierline <command> ...``.

Each command lives in its own module of this package, exposing ``register(subparsers)``;
engines and heavy libraries are imported inside the command functions only, so ``--help``
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

#: Command modules of this package, in the order `tierline --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "data",
    "strategy",
    "sweep",
    "parity",
    "hft",
    "pipeline",
    "tracking",
    "notebook",
    "promote",
    "registry",
    "trade",
    "replay",
    "shadow",
    "compare",
)

logger = logging.getLogger("tierline")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="tierline",
        description=(
            "Research-to-production workbench for systematic crypto trading: one strategy, "
            "tiers of ever more realistic simulation, a promotion gate."
        ),
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="data root of the Parquet catalog (default: $TIERLINE_DATA_DIR or ./data/parquet)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"tierline.cli.{name}")
        module.register(sub)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if args.data_dir:
        os.environ["TIERLINE_DATA_DIR"] = args.data_dir
    func = getattr(args, "func", None)
    if func is None:
        # `tierline` or `tierline data` alone: show the matching help.
        (getattr(args, "help_parser", None) or parser).print_help()
        return 0
    from tierline.errors import TierlineError

    try:
        return int(func(args) or 0)
    except TierlineError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing was left half-written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
