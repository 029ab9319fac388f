"""``tierline data ...``: import, ingest, sample, ls, validate, resample."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``data`` and its subcommands to the parser."""
    p = sub.add_parser(
        "data",
        help="the Parquet data layer: import, ingest, sample, ls, validate, resample",
        description="Manage the Parquet catalog every tier reads (see README, 'Data').",
    )
    p.set_defaults(help_parser=p)
    s = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    imp = s.add_parser(
        "import",
        help="import a vendor or exchange file into the catalog",
        description=(
            "Import OHLCV, trades or L2 book files. Formats (detected from name and contents, "
            "or named with --format): freqtrade-feather, freqtrade-json, freqtrade-parquet, "
            "freqtrade-trades, csv, lean, binance-raw, tardis-book, tardis-trades."
        ),
    )
    imp.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="file(s) to import")
    imp.add_argument("--exchange", required=True, help="exchange name, e.g. binance")
    imp.add_argument("--symbol", required=True, help="BASE/QUOTE, e.g. BTC/USDT")
    imp.add_argument("--timeframe", help="bar length when the file does not say it, e.g. 5m")
    imp.add_argument("--format", dest="fmt", help="format name (default: detect)")
    imp.add_argument(
        "--ts-is-close",
        action="store_true",
        help="CSV OHLCV: the timestamp marks the bar close (it is shifted back one bar)",
    )
    imp.set_defaults(func=_cmd_import)

    ing = s.add_parser(
        "ingest",
        help="download OHLCV from an exchange with ccxt (resumable, idempotent)",
        description=(
            "Download OHLCV bars with ccxt, paginated and rate-limited, resuming after the last "
            "stored bar. A second run over the same span adds nothing."
        ),
    )
    ing.add_argument("--exchange", required=True, help="ccxt exchange id, e.g. binance")
    ing.add_argument("--symbol", required=True, help="BASE/QUOTE, e.g. BTC/USDT")
    ing.add_argument("--timeframe", required=True, help="e.g. 1m, 5m, 1h")
    ing.add_argument("--since", required=True, help="first bar (ISO date/datetime, UTC)")
    ing.add_argument("--until", help="stop before this time (default: now)")
    ing.add_argument("--no-progress", action="store_true", help="no progress bar")
    ing.add_argument(
        "--api-url",
        default=None,
        help=(
            "send the exchange's API requests to this base URL instead (a mirror, a proxy or a "
            "local replay server, e.g. http://127.0.0.1:8000); default $TIERLINE_CCXT_API_URL"
        ),
    )
    ing.set_defaults(func=_cmd_ingest)

    smp = s.add_parser(
        "sample",
        help="write the embedded synthetic data set used by `make demo`",
        description=(
            "Write a deterministic synthetic market: OHLCV at 1m and 5m plus L2 depth and "
            "trades consistent with the bars for a short window. Labelled synthetic in the "
            "Parquet metadata and in `tierline data ls`."
        ),
    )
    smp.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    smp.add_argument("--days", type=int, default=30, help="days of 1m bars (default 30)")
    smp.set_defaults(func=_cmd_sample)

    ls = s.add_parser("ls", help="list what the catalog holds")
    ls.set_defaults(func=_cmd_ls)

    val = s.add_parser(
        "validate",
        help="check every file: schema, order, duplicates, gaps, NaN, OHLC consistency",
    )
    val.set_defaults(func=_cmd_validate)

    rs = s.add_parser(
        "resample",
        help="build a higher timeframe from a lower one, or bars from trades",
        description=(
            "Build bars of --to from the stored --from bars (or from trades with "
            "--from trades). Bars are stamped at their open; an incomplete last bucket is "
            "dropped."
        ),
    )
    rs.add_argument("--exchange", required=True)
    rs.add_argument("--symbol", required=True)
    rs.add_argument(
        "--from",
        dest="source",
        default=None,
        help="source timeframe or 'trades' (default: the finest stored timeframe)",
    )
    rs.add_argument("--to", required=True, help="target timeframe, e.g. 1h")
    rs.set_defaults(func=_cmd_resample)


def _catalog() -> Any:
    from tierline.data.catalog import Catalog

    return Catalog()


def _cmd_import(args: argparse.Namespace) -> int:
    from tierline.data.importers import ImportOptions, load
    from tierline.data.market import normalize_symbol

    cat = _catalog()
    symbol = normalize_symbol(args.symbol)
    opts = ImportOptions(timeframe=args.timeframe, ts_is_close=args.ts_is_close, symbol=symbol)
    for path, fmt, got in _load_paths(args.paths, args.fmt, opts, load):
        source = f"{fmt}:{path.name}"
        if got.ohlcv is not None:
            tf = args.timeframe or got.timeframe
            if tf is None:
                from tierline.errors import ConfigError

                raise ConfigError(f"{path}: cannot tell the timeframe; pass --timeframe")
            r = cat.write_ohlcv(
                got.ohlcv, exchange=args.exchange, symbol=symbol, timeframe=tf, source=source
            )
            _report(path, f"ohlcv {tf}", r)
        if got.trades is not None:
            r = cat.write_trades(got.trades, exchange=args.exchange, symbol=symbol, source=source)
            _report(path, "trades", r)
        if got.book is not None:
            r = cat.write_book(got.book, exchange=args.exchange, symbol=symbol, source=source)
            _report(path, "book", r)
        for note in got.notes:
            print(f"  note: {note}")
    print(f"catalog: {cat.root}")
    return 0


def _load_paths(paths: list[Path], fmt: str | None, opts: Any, load: Any) -> Any:
    """Yield ``(path, format, Imported)``; binance-raw files load together as one session.

    The raw files of one collector session form one stream (only the first holds the book
    snapshot), so they are loaded in one call, sorted by name; ``path`` is then the first.
    """
    from tierline.data.importers import detect_format
    from tierline.data.importers.binance_raw import load as load_binance_raw

    raw = sorted(
        (p for p in paths if (fmt or detect_format(p)) == "binance-raw"), key=lambda p: p.name
    )
    if len(raw) > 1:
        yield raw[0], "binance-raw", load_binance_raw(raw, opts)
    for path in paths:
        if len(raw) > 1 and path in raw:
            continue
        yield (path, *load(path, fmt, opts))


def _report(path: Path, what: str, r: Any) -> None:
    print(f"{path.name}: {what}: {r.rows_in} rows read, {r.rows_added} new, {r.rows_total} stored")


def _cmd_ingest(args: argparse.Namespace) -> int:
    from tierline.data.ingest import ingest_ohlcv

    cat = _catalog()
    r = ingest_ohlcv(
        cat,
        exchange=args.exchange,
        symbol=args.symbol,
        timeframe=args.timeframe,
        since=args.since,
        until=args.until,
        progress=not args.no_progress and sys.stderr.isatty(),
        api_url=args.api_url,
    )
    print(r.summary())
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from tierline.data.sample import write_sample

    cat = _catalog()
    summary = write_sample(cat, seed=args.seed, days=args.days)
    print(summary)
    print(f"catalog: {cat.root}")
    return 0


def _fmt_time(t: Any) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


def _cmd_ls(args: argparse.Namespace) -> int:
    cat = _catalog()
    entries = cat.entries()
    if not entries:
        print(f"the catalog at {cat.root} is empty; try `tierline data sample` or `data import`")
        return 0
    header = (
        "dataset",
        "exchange",
        "symbol",
        "tf",
        "first (UTC)",
        "last (UTC)",
        "rows",
        "gaps",
        "",
    )
    rows = [
        (
            e.dataset,
            e.exchange,
            e.symbol,
            e.timeframe or "-",
            _fmt_time(e.first),
            _fmt_time(e.last),
            f"{e.rows:,}",
            "-" if e.gaps is None else str(e.gaps),
            e.error or ("synthetic" if e.synthetic else ""),
        )
        for e in entries
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    cat = _catalog()
    problems = cat.validate_all()
    n_entries = len(cat.entries())
    errors = [p for p in problems if p.severity == "error"]
    for p in problems:
        print(p)
    print(
        f"validated {n_entries} partition(s) under {cat.root}: {len(errors)} error(s), "
        f"{len(problems) - len(errors)} warning(s)"
    )
    return 1 if errors else 0


def _cmd_resample(args: argparse.Namespace) -> int:
    from tierline.data.resample import resample_in_catalog

    cat = _catalog()
    r = resample_in_catalog(
        cat, exchange=args.exchange, symbol=args.symbol, source=args.source, target=args.to
    )
    print(r)
    return 0
