"""The Parquet catalog: hive-partitioned OHLCV, trades and L2 book, written atomically.

Layout under the data root (``data/parquet`` by default)::

    ohlcv/exchange=<ex>/symbol=<BASE_QUOTE>/timeframe=<tf>/<year>.parquet
    trades/exchange=<ex>/symbol=<BASE_QUOTE>/date=<YYYY-MM-DD>/part.parquet
    book/exchange=<ex>/symbol=<BASE_QUOTE>/date=<YYYY-MM-DD>/part.parquet

Writes merge with what is stored (re-importing the same data adds nothing), validate the
result, and replace files only when every file of the write has been staged. Reads are lazy
polars scans that push the time filter down to Parquet row-group statistics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from tierline.data.atomic import TMP_PREFIX, commit_files
from tierline.data.market import normalize_symbol, symbol_dirname, timeframe_ns
from tierline.data.schema import BOOK, DATASETS, OHLCV, TRADES, Dataset
from tierline.data.validate import Problem, find_gaps, raise_for_problems, validate_frame
from tierline.errors import ConfigError, DataError

__all__ = [
    "DATA_DIR_ENV",
    "Catalog",
    "CatalogEntry",
    "WriteReport",
    "default_data_dir",
    "to_utc_ns",
]

#: Environment variable that selects the data root (the ``--data-dir`` option wins over it).
DATA_DIR_ENV = "TIERLINE_DATA_DIR"
_ROW_GROUP = 8192
_META_PREFIX = "tierline."


def default_data_dir() -> Path:
    """Return the data root: ``$TIERLINE_DATA_DIR`` or ``./data/parquet``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path("data") / "parquet"


def to_utc_ns(value: str | datetime | int | None) -> datetime | None:
    """Parse a time bound (ISO date/datetime string, datetime or epoch ns) to an aware UTC datetime.

    Naive values are taken as UTC.

    Raises
    ------
    ConfigError
        If a string is not an ISO date or datetime.
    """
    if value is None:
        return None
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1e9, tz=UTC)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as e:
            raise ConfigError(
                f"time {value!r} is not an ISO date or datetime (e.g. 2024-01-31 or "
                "2024-01-31T12:00)"
            ) from e
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class WriteReport:
    """What a write did: rows in the input, rows that were new, rows stored after, files."""

    rows_in: int
    rows_added: int
    rows_total: int
    files: tuple[Path, ...]


@dataclass(frozen=True, kw_only=True)
class CatalogEntry:
    """One partition of the catalog, as `tierline data ls` shows it."""

    dataset: str
    exchange: str
    symbol: str
    timeframe: str | None
    first: datetime | None
    last: datetime | None
    rows: int
    gaps: int | None
    files: int
    synthetic: bool
    path: Path
    #: Why the partition could not be summarised (a corrupt file), or None.
    error: str | None = None


class Catalog:
    """The Parquet catalog rooted at one directory.

    Parameters
    ----------
    root
        The data root (``data/parquet`` by default, see `default_data_dir`).
    """

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_data_dir()

    def __repr__(self) -> str:
        return f"Catalog({str(self.root)!r})"

    # ------------------------------------------------------------------ paths
    def partition_dir(
        self, dataset: str, exchange: str, symbol: str, timeframe: str | None = None
    ) -> Path:
        """Return the directory of one partition (which may not exist yet)."""
        ds = _dataset(dataset)
        base = (
            self.root
            / ds.name
            / f"exchange={_exchange(exchange)}"
            / (f"symbol={symbol_dirname(symbol)}")
        )
        if ds.partitioning == "timeframe":
            if timeframe is None:
                raise ConfigError("a timeframe is required for OHLCV data (e.g. --timeframe 5m)")
            timeframe_ns(timeframe)
            return base / f"timeframe={timeframe}"
        return base

    def files(
        self, dataset: str, exchange: str, symbol: str, timeframe: str | None = None
    ) -> list[Path]:
        """Return the Parquet files of a partition, sorted by time."""
        d = self.partition_dir(dataset, exchange, symbol, timeframe)
        if not d.exists():
            return []
        pattern = (
            "*.parquet" if _dataset(dataset).partitioning == "timeframe" else "date=*/*.parquet"
        )
        return sorted(p for p in d.glob(pattern) if not p.name.startswith(TMP_PREFIX))

    # ------------------------------------------------------------------ writes
    def write_ohlcv(
        self,
        df: pl.DataFrame,
        *,
        exchange: str,
        symbol: str,
        timeframe: str,
        source: str,
        synthetic: bool = False,
    ) -> WriteReport:
        """Merge OHLCV bars into the catalog.

        Parameters
        ----------
        df
            Bars with the `OHLCV` schema, ``ts`` = bar open, sorted and unique.
        exchange, symbol, timeframe
            The partition.
        source
            Where the bars came from (stored in the Parquet metadata).
        synthetic
            Mark the data as synthetic in its metadata.

        Returns
        -------
        WriteReport
            Rows in, rows added, rows stored, files written.

        Raises
        ------
        DataError
            If the bars (or the merge with the stored bars) break the OHLCV contract.
        """
        tf_ns = timeframe_ns(timeframe)
        return self._write(
            OHLCV,
            df,
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            tf_ns=tf_ns,
            meta={"source": source, "synthetic": str(synthetic).lower()},
        )

    def write_trades(
        self, df: pl.DataFrame, *, exchange: str, symbol: str, source: str, synthetic: bool = False
    ) -> WriteReport:
        """Merge trades (`TRADES` schema) into the catalog; see `write_ohlcv`."""
        return self._write(
            TRADES,
            df,
            exchange=exchange,
            symbol=symbol,
            meta={"source": source, "synthetic": str(synthetic).lower()},
        )

    def write_book(
        self, df: pl.DataFrame, *, exchange: str, symbol: str, source: str, synthetic: bool = False
    ) -> WriteReport:
        """Merge L2 book events (`BOOK` schema) into the catalog; see `write_ohlcv`.

        Rows must be in the order they apply (by ``ts_local``; ties keep their order).
        """
        return self._write(
            BOOK,
            df,
            exchange=exchange,
            symbol=symbol,
            meta={"source": source, "synthetic": str(synthetic).lower()},
        )

    def _write(
        self,
        ds: Dataset,
        df: pl.DataFrame,
        *,
        exchange: str,
        symbol: str,
        meta: dict[str, str],
        timeframe: str | None = None,
        tf_ns: int | None = None,
    ) -> WriteReport:
        symbol = normalize_symbol(symbol)
        where = f"input for {ds.name} {exchange} {symbol}" + (f" {timeframe}" if timeframe else "")
        df = _conform(df, ds, where)
        raise_for_problems(validate_frame(df, ds, where=where, timeframe_ns=tf_ns))
        if df.is_empty():
            return WriteReport(
                rows_in=0,
                rows_added=0,
                rows_total=self._count(ds, exchange, symbol, timeframe),
                files=(),
            )
        part = self.partition_dir(ds.name, exchange, symbol, timeframe)
        tcol = ds.time_column
        if ds.partitioning == "timeframe":
            keyed = df.with_columns(pl.col(tcol).dt.year().cast(pl.String).alias("__key"))
        else:
            keyed = df.with_columns(pl.col(tcol).dt.strftime("%Y-%m-%d").alias("__key"))
        metadata = {
            f"{_META_PREFIX}{k}": v
            for k, v in {
                **meta,
                "dataset": ds.name,
                "exchange": _exchange(exchange),
                "symbol": symbol,
                "timeframe": timeframe or "",
            }.items()
        }
        writers = {}
        added = 0
        for (key,), group in keyed.group_by("__key", maintain_order=True):
            new = group.drop("__key")
            target = (
                part / f"{key}.parquet"
                if ds.partitioning == "timeframe"
                else part / f"date={key}" / "part.parquet"
            )
            old = _read_file(target, ds) if target.exists() else None
            merged, n_new = _merge(old, new, ds)
            raise_for_problems(validate_frame(merged, ds, where=str(target), timeframe_ns=tf_ns))
            if n_new == 0 and old is not None and old.equals(merged):
                continue
            added += n_new
            writers[target] = _parquet_writer(merged, metadata)
        commit_files(writers)
        return WriteReport(
            rows_in=len(df),
            rows_added=added,
            rows_total=self._count(ds, exchange, symbol, timeframe),
            files=tuple(writers),
        )

    # ------------------------------------------------------------------ reads
    def scan(
        self,
        dataset: str,
        *,
        exchange: str,
        symbol: str,
        timeframe: str | None = None,
        start: str | datetime | None = None,
        end: str | datetime | None = None,
    ) -> pl.LazyFrame:
        """Return a lazy scan of a partition, filtered to ``start <= t < end``.

        The filter is pushed down to Parquet row-group statistics, so a short span of a long
        partition is read without loading the partition.

        Raises
        ------
        DataError
            If the partition holds no data.
        """
        ds = _dataset(dataset)
        files = self.files(ds.name, exchange, symbol, timeframe)
        if not files:
            what = f"{ds.name} {_exchange(exchange)} {normalize_symbol(symbol)}" + (
                f" {timeframe}" if timeframe else ""
            )
            raise DataError(
                f"no {what} data in the catalog at {self.root} "
                f"(looked in {self.partition_dir(ds.name, exchange, symbol, timeframe)}); "
                "import or ingest it first (tierline data import/ingest/sample), "
                "`tierline data ls` shows what is there"
            )
        lf = pl.scan_parquet(files, hive_partitioning=False)
        t = pl.col(ds.time_column)
        lo, hi = to_utc_ns(start), to_utc_ns(end)
        if lo is not None:
            lf = lf.filter(t >= lo)
        if hi is not None:
            lf = lf.filter(t < hi)
        return lf

    def read(
        self,
        dataset: str,
        *,
        exchange: str,
        symbol: str,
        timeframe: str | None = None,
        start: str | datetime | None = None,
        end: str | datetime | None = None,
    ) -> pl.DataFrame:
        """Read and validate a partition (or a time span of it).

        Raises
        ------
        DataError
            If there is no data, a file cannot be read, or the data breaks its contract; the
            message names the file, column and first offending row.
        """
        ds = _dataset(dataset)
        lf = self.scan(
            ds.name, exchange=exchange, symbol=symbol, timeframe=timeframe, start=start, end=end
        )
        try:
            df = lf.collect()
        except Exception as e:  # polars raises several types for corrupt files
            self._raise_per_file(ds, exchange, symbol, timeframe, e)
            raise
        tf_ns = timeframe_ns(timeframe) if timeframe else None
        problems = validate_frame(
            df,
            ds,
            where=str(self.partition_dir(ds.name, exchange, symbol, timeframe)),
            timeframe_ns=tf_ns,
        )
        if any(p.severity == "error" for p in problems):
            self._raise_per_file(ds, exchange, symbol, timeframe, None)
            raise_for_problems(problems)
        if df.is_empty():
            raise DataError(
                f"no {ds.name} rows for {normalize_symbol(symbol)}"
                + (f" {timeframe}" if timeframe else "")
                + f" between {start or 'the start'} and {end or 'the end'} "
                f"in {self.partition_dir(ds.name, exchange, symbol, timeframe)}"
            )
        return df

    def read_ohlcv(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start: str | datetime | None = None,
        end: str | datetime | None = None,
    ) -> pl.DataFrame:
        """Read validated OHLCV bars (``ts`` = bar open, UTC ns) for ``start <= ts < end``."""
        return self.read(
            "ohlcv", exchange=exchange, symbol=symbol, timeframe=timeframe, start=start, end=end
        )

    def last_ts(
        self, dataset: str, exchange: str, symbol: str, timeframe: str | None = None
    ) -> datetime | None:
        """Return the last stored timestamp of a partition, or None when it is empty."""
        files = self.files(dataset, exchange, symbol, timeframe)
        if not files:
            return None
        col = _dataset(dataset).time_column
        value = pl.scan_parquet(files[-1]).select(pl.col(col).max()).collect().item()
        return value  # type: ignore[no-any-return]

    def _raise_per_file(
        self,
        ds: Dataset,
        exchange: str,
        symbol: str,
        timeframe: str | None,
        cause: Exception | None,
    ) -> None:
        tf_ns = timeframe_ns(timeframe) if timeframe else None
        for f in self.files(ds.name, exchange, symbol, timeframe):
            df = _read_file(f, ds)
            raise_for_problems(validate_frame(df, ds, where=str(f), timeframe_ns=tf_ns))
        if cause is not None:
            raise DataError(f"cannot read {ds.name} data under {self.root}: {cause}") from cause

    def _count(self, ds: Dataset, exchange: str, symbol: str, timeframe: str | None) -> int:
        files = self.files(ds.name, exchange, symbol, timeframe)
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)

    # ------------------------------------------------------------------ listing
    def entries(self) -> list[CatalogEntry]:
        """Return every partition of the catalog with its span, rows and gaps."""
        out: list[CatalogEntry] = []
        for ds in DATASETS.values():
            base = self.root / ds.name
            if not base.exists():
                continue
            for exdir in sorted(base.glob("exchange=*")):
                for symdir in sorted(exdir.glob("symbol=*")):
                    exchange = exdir.name.split("=", 1)[1]
                    parts = (
                        sorted(symdir.glob("timeframe=*"))
                        if ds.partitioning == "timeframe"
                        else [symdir]
                    )
                    for pdir in parts:
                        tf = pdir.name.split("=", 1)[1] if ds.partitioning == "timeframe" else None
                        out.append(self._entry(ds, exchange, symdir, tf, pdir))
        return out

    def _entry(
        self, ds: Dataset, exchange: str, symdir: Path, tf: str | None, pdir: Path
    ) -> CatalogEntry:
        pattern = "*.parquet" if ds.partitioning == "timeframe" else "date=*/*.parquet"
        files = sorted(p for p in pdir.glob(pattern) if not p.name.startswith(TMP_PREFIX))
        symbol = symdir.name.split("=", 1)[1]
        synthetic = False
        first = last = None
        rows = 0
        gaps: int | None = None
        error: str | None = None
        if files:
            try:
                md = pq.ParquetFile(files[0]).schema_arrow.metadata or {}
                symbol = md.get(b"tierline.symbol", symbol.encode()).decode()
                synthetic = md.get(b"tierline.synthetic", b"false") == b"true"
                t = (
                    pl.scan_parquet(files)
                    .select(
                        pl.col(ds.time_column).min().alias("first"),
                        pl.col(ds.time_column).max().alias("last"),
                        pl.len().alias("rows"),
                    )
                    .collect()
                )
                first, last, rows = t["first"][0], t["last"][0], int(t["rows"][0])
                if tf is not None:
                    ts = pl.scan_parquet(files).select("ts").collect()
                    gaps = len(find_gaps(ts, timeframe_ns(tf)))
            except Exception as e:  # a corrupt file: `data validate` names it
                error = f"unreadable ({type(e).__name__}); run `tierline data validate`"
        return CatalogEntry(
            dataset=ds.name,
            exchange=exchange,
            symbol=symbol,
            timeframe=tf,
            first=first,
            last=last,
            rows=rows,
            gaps=gaps,
            files=len(files),
            synthetic=synthetic,
            path=pdir,
            error=error,
        )

    def validate_all(self) -> list[Problem]:
        """Validate every file of the catalog; return all problems (errors and warnings)."""
        problems: list[Problem] = []
        for entry in self.entries():
            ds = DATASETS[entry.dataset]
            tf_ns = timeframe_ns(entry.timeframe) if entry.timeframe else None
            frames = []
            for f in self.files(ds.name, entry.exchange, entry.symbol, entry.timeframe):
                try:
                    df = _read_file(f, ds)
                except DataError as e:
                    problems.append(
                        Problem(
                            severity="error", where=str(f), column=None, row=None, message=str(e)
                        )
                    )
                    continue
                file_problems = validate_frame(df, ds, where=str(f), timeframe_ns=tf_ns)
                problems.extend(p for p in file_problems if p.severity == "error")
                frames.append(df)
            if frames and not any(p.severity == "error" for p in problems):
                whole = pl.concat(frames)
                problems.extend(
                    validate_frame(whole, ds, where=str(entry.path), timeframe_ns=tf_ns)
                )
        return problems


# ---------------------------------------------------------------------- helpers
def _dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}") from None


def _exchange(exchange: str) -> str:
    ex = exchange.strip().lower()
    if not ex or not ex.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"exchange {exchange!r} is not valid (e.g. binance, bybit, coinbase)")
    return ex


def _conform(df: pl.DataFrame, ds: Dataset, where: str) -> pl.DataFrame:
    """Select the contract's columns in order, casting lossless numeric types."""
    missing = [c for c in ds.schema if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; found {df.columns}")
    exprs = []
    for col, dtype in ds.schema.items():
        e = pl.col(col)
        have = df.schema[col]
        if have != dtype:
            if isinstance(dtype, pl.Datetime):
                if isinstance(have, pl.Datetime):
                    e = (
                        e.dt.replace_time_zone("UTC")
                        if have.time_zone is None
                        else e.dt.convert_time_zone("UTC")
                    ).dt.cast_time_unit("ns")  # type: ignore[union-attr]
                else:
                    raise DataError(f"{where}: column {col!r} has type {have}, expected {dtype}")
            else:
                try:
                    e = e.cast(dtype, strict=True)
                except Exception as err:
                    raise DataError(f"{where}: column {col!r}: {err}") from err
        exprs.append(e.alias(col))
    try:
        return df.select(exprs)
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{where}: cannot convert to the {ds.name} schema: {e}") from e


def _merge(old: pl.DataFrame | None, new: pl.DataFrame, ds: Dataset) -> tuple[pl.DataFrame, int]:
    t = ds.time_column
    if old is None:
        if not ds.unique_time:
            # identical event rows are redundant (book quantities are absolute, trades carry
            # ids); drop them on every write so first writes and merges agree
            new = new.unique(keep="first", maintain_order=True)
        return new, len(new)
    if ds.unique_time:
        n_new = len(new.join(old.select(t), on=t, how="anti"))
        merged = pl.concat([old, new]).unique(subset=[t], keep="last", maintain_order=True).sort(t)
        return merged, n_new
    n_new = len(new.join(old, on=list(ds.schema), how="anti", nulls_equal=True))
    if n_new == 0:
        return old, 0
    merged = (
        pl.concat([old, new]).unique(keep="first", maintain_order=True).sort(t, maintain_order=True)
    )
    return merged, n_new


def _read_file(path: Path, ds: Dataset) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except Exception as e:
        raise DataError(f"{path}: cannot read Parquet file ({type(e).__name__}: {e})") from e


def _parquet_writer(df: pl.DataFrame, metadata: dict[str, str]):  # type: ignore[no-untyped-def]
    def write(tmp: Path) -> None:
        table = df.to_arrow()
        schema_md = dict(table.schema.metadata or {})
        schema_md.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(schema_md)
        pq.write_table(table, tmp, row_group_size=_ROW_GROUP, compression="zstd")

    return write
