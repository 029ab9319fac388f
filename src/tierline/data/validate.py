"""Validation of catalog frames: schema, order, duplicates, NaN, OHLC consistency, gaps.

Every problem names the file, the column and the first offending row, so a user can open the
file and look.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

from tierline.data.schema import Dataset
from tierline.errors import DataError

__all__ = ["Problem", "find_gaps", "raise_for_problems", "validate_frame"]


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One finding of a validation: an error blocks use of the data, a warning does not."""

    severity: Literal["error", "warning"]
    where: str
    column: str | None
    row: int | None
    message: str

    def __str__(self) -> str:
        loc = self.where
        if self.column is not None:
            loc += f", column {self.column!r}"
        if self.row is not None:
            loc += f", row {self.row}"
        return f"{self.severity}: {loc}: {self.message}"


def _first_row(mask: pl.Series) -> int | None:
    idx = mask.arg_true()
    return int(idx[0]) if len(idx) else None


def _fmt_ts(df: pl.DataFrame, col: str, row: int) -> str:
    return str(df[col][row])


def validate_frame(
    df: pl.DataFrame,
    dataset: Dataset,
    *,
    where: str,
    timeframe_ns: int | None = None,
) -> list[Problem]:
    """Return the problems of a frame against a dataset contract.

    Parameters
    ----------
    df
        The frame to check.
    dataset
        The contract (``OHLCV``, ``TRADES`` or ``BOOK``).
    where
        What to name in messages (a file path, usually).
    timeframe_ns
        Bar length for OHLCV; when given, gaps are reported as warnings and timestamps not
        aligned to the timeframe as errors.

    Returns
    -------
    list of Problem
        Empty when the frame is valid.
    """
    problems: list[Problem] = []

    def err(column: str | None, row: int | None, message: str) -> None:
        problems.append(
            Problem(severity="error", where=where, column=column, row=row, message=message)
        )

    missing = [c for c in dataset.schema if c not in df.columns]
    if missing:
        err(
            missing[0],
            None,
            f"missing column(s) {missing}; expected columns {list(dataset.schema)}, "
            f"found {df.columns}",
        )
        return problems
    for col, dtype in dataset.schema.items():
        if df.schema[col] != dtype:
            err(col, None, f"has type {df.schema[col]}, expected {dtype}")
    if problems:
        return problems

    tcol = dataset.time_column
    ts = df[tcol]
    if ts.null_count():
        err(tcol, _first_row(ts.is_null()), "missing timestamp")
        return problems
    if len(df) > 1:
        diff = ts.diff().dt.total_nanoseconds().slice(1)
        back = diff < 0
        if back.any():
            r = _first_row(back)
            assert r is not None
            err(
                tcol,
                r + 1,
                f"timestamps are not sorted: {_fmt_ts(df, tcol, r + 1)} comes after "
                f"{_fmt_ts(df, tcol, r)}",
            )
        if dataset.unique_time:
            dup = diff == 0
            if dup.any():
                r = _first_row(dup)
                assert r is not None
                err(tcol, r + 1, f"duplicated timestamp {_fmt_ts(df, tcol, r + 1)}")

    float_cols = [c for c, t in dataset.schema.items() if t == pl.Float64()]
    for col in float_cols:
        s = df[col]
        bad = s.is_null() | s.is_nan() | s.is_infinite()
        if bad.any():
            r = _first_row(bad)
            assert r is not None
            err(col, r, f"value is {s[r]!r} (NaN, null or infinite)")

    if dataset.name == "ohlcv" and not problems:
        checks = [
            ("high", df["high"] < df["low"], "high < low"),
            (
                "open",
                (df["open"] > df["high"]) | (df["open"] < df["low"]),
                "open outside [low, high]",
            ),
            (
                "close",
                (df["close"] > df["high"]) | (df["close"] < df["low"]),
                "close outside [low, high]",
            ),
            ("volume", df["volume"] < 0, "negative volume"),
            ("open", df["open"] <= 0, "non-positive price"),
        ]
        for col, mask, what in checks:
            if mask.any():
                r = _first_row(mask)
                assert r is not None
                row = df.row(r, named=True)
                err(
                    col,
                    r,
                    f"{what} at {row['ts']}: open={row['open']} high={row['high']} "
                    f"low={row['low']} close={row['close']} volume={row['volume']}",
                )
        if timeframe_ns is not None and len(df):
            ns = ts.dt.epoch("ns")
            off = (ns % timeframe_ns) != 0
            if off.any():
                r = _first_row(off)
                assert r is not None
                err(tcol, r, f"timestamp {ts[r]} is not aligned to the timeframe")
    if dataset.name in ("trades", "book") and not problems:
        side_ok = {"trades": ("buy", "sell"), "book": ("bid", "ask")}[dataset.name]
        bad = ~df["side"].is_in(list(side_ok))
        if bad.any():
            r = _first_row(bad)
            assert r is not None
            err("side", r, f"side {df['side'][r]!r} is not one of {side_ok}")
        bad = df["price"] <= 0
        if bad.any():
            err("price", _first_row(bad), "non-positive price")
        bad = df["qty"] < 0
        if bad.any():
            err("qty", _first_row(bad), "negative quantity")
    if timeframe_ns is not None and dataset.name == "ohlcv" and not problems:
        for gap in find_gaps(df, timeframe_ns)[:1]:
            problems.append(
                Problem(
                    severity="warning",
                    where=where,
                    column=tcol,
                    row=gap[0],
                    message=f"{len(find_gaps(df, timeframe_ns))} gap(s); first: "
                    f"{gap[2]} missing bar(s) after {gap[1]}",
                )
            )
    return problems


def find_gaps(df: pl.DataFrame, timeframe_ns: int) -> list[tuple[int, object, int]]:
    """Return the gaps of an OHLCV frame as ``(row, ts_before_gap, missing_bars)`` tuples."""
    if len(df) < 2:
        return []
    diff = df["ts"].diff().dt.total_nanoseconds()
    rows = (diff > timeframe_ns).arg_true()
    return [(int(r) - 1, df["ts"][int(r) - 1], int(diff[int(r)]) // timeframe_ns - 1) for r in rows]


def raise_for_problems(problems: list[Problem]) -> None:
    """Raise a `DataError` listing the errors among ``problems``, if any."""
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        lines = [str(p) for p in errors[:10]]
        if len(errors) > 10:
            lines.append(f"... and {len(errors) - 10} more")
        raise DataError("\n".join(lines))
