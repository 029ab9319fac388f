"""``tierline notebook ...``: run a research notebook headless, strip notebooks for commit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``notebook`` and its subcommands to the parser."""
    p = sub.add_parser(
        "notebook",
        help="run a research notebook headless with parameters; strip outputs for commit",
        description="Research notebooks (research/notebooks/): headless runs and stripping.",
    )
    p.set_defaults(help_parser=p)
    s = p.add_subparsers(dest="notebook_command", metavar="SUBCOMMAND")

    run = s.add_parser(
        "run",
        help="execute a notebook headless (nbclient), parameters injected as with papermill",
        description=(
            "Execute every cell of a notebook in a fresh kernel. Each -p NAME=VALUE overrides "
            "a default of the cell tagged 'parameters' (values are Python literals when they "
            "parse as one, else strings). The text each cell prints is shown as it runs. The "
            "source notebook is not modified; --out saves the executed copy (also when a cell "
            "fails, with the error in it)."
        ),
    )
    run.add_argument("path", type=Path, metavar="PATH", help="the .ipynb file")
    run.add_argument(
        "-p",
        "--parameter",
        dest="parameters",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter (repeatable), e.g. -p folds=2 -p symbol=ETH/USDT",
    )
    run.add_argument("--out", type=Path, default=None, help="write the executed notebook here")
    run.add_argument(
        "--cwd",
        type=Path,
        default=None,
        help="working directory of the kernel (default: the notebook's folder)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds each cell may run (default 600; 0: no limit)",
    )
    run.add_argument("--kernel", default=None, help="Jupyter kernel name (default: notebook's)")
    run.add_argument("-q", "--quiet", action="store_true", help="do not print the cells' output")
    run.set_defaults(func=_cmd_run)

    strip = s.add_parser(
        "strip",
        help="remove outputs, execution counts and injected parameters (before commit)",
        description=(
            "Rewrite notebooks without outputs, execution counts, run metadata and "
            "injected-parameters cells. With --check nothing is written and the exit code is 1 "
            "when a notebook is not stripped."
        ),
    )
    strip.add_argument("paths", nargs="+", type=Path, metavar="PATH", help=".ipynb file(s)")
    strip.add_argument("--check", action="store_true", help="only report; exit 1 if any is dirty")
    strip.set_defaults(func=_cmd_strip)


def _print_cell(index: int, cell: Any) -> None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            stream = sys.stderr if out.get("name") == "stderr" else sys.stdout
            stream.write(out.get("text", ""))
            stream.flush()


def _write(nb: Any, path: Path) -> None:
    import nbformat

    from tierline.data.atomic import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, nbformat.writes(nb) + "\n")


def _cmd_run(args: argparse.Namespace) -> int:
    from tierline.notebooks import NotebookError, execute_notebook, parse_parameter

    params = dict(parse_parameter(text) for text in args.parameters)
    try:
        nb = execute_notebook(
            args.path,
            params,
            cwd=args.cwd,
            timeout=args.timeout or None,
            kernel_name=args.kernel,
            on_cell=None if args.quiet else _print_cell,
        )
    except NotebookError as e:
        if args.out is not None and e.notebook is not None:
            _write(e.notebook, args.out)
            print(f"executed notebook (up to the failure): {args.out}", file=sys.stderr)
        if e.traceback:
            print(e.traceback, file=sys.stderr)
        raise
    if args.out is not None:
        _write(nb, args.out)
        print(f"executed notebook: {args.out}")
    return 0


def _cmd_strip(args: argparse.Namespace) -> int:
    from tierline.notebooks import read_notebook, strip_notebook

    dirty = 0
    for path in args.paths:
        nb = read_notebook(path)
        clean = strip_notebook(nb)
        if clean == nb:
            continue
        dirty += 1
        if args.check:
            print(f"not stripped: {path}")
        else:
            _write(clean, path)
            print(f"stripped: {path}")
    if args.check and dirty:
        print(f"{dirty} notebook(s) carry outputs: run `tierline notebook strip PATH`")
        return 1
    return 0
