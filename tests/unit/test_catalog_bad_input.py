"""Bad input gets a clear error naming the file, and leaves nothing half-written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from tierline.cli import main
from tierline.data.catalog import Catalog
from tierline.errors import DataError


def _bars(n: int = 10, start: datetime = datetime(2024, 1, 1, tzinfo=UTC)) -> pl.DataFrame:
    ts = [start + timedelta(minutes=5 * i) for i in range(n)]
    close = [100.0 + i for i in range(n)]
    return pl.DataFrame(
        {
            "ts": ts,
            "open": close,
            "high": [c + 1 for c in close],
            "low": [c - 1 for c in close],
            "close": close,
            "volume": [1.0] * n,
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("ns"))


def _parquet_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet")) if root.exists() else []


def _write(catalog: Catalog, df: pl.DataFrame) -> None:
    catalog.write_ohlcv(df, exchange="binance", symbol="BTC/USDT", timeframe="5m", source="test")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.reverse(), "not sorted"),
        (lambda df: pl.concat([df, df.tail(1)]), "duplicated timestamp"),
        (
            lambda df: df.with_columns(
                pl.when(pl.int_range(pl.len()) == 3)
                .then(float("nan"))
                .otherwise(pl.col("close"))
                .alias("close")
            ),
            "NaN",
        ),
        (
            lambda df: df.with_columns(
                pl.when(pl.int_range(pl.len()) == 4)
                .then(50.0)
                .otherwise(pl.col("high"))
                .alias("high")
            ),
            "high < low",
        ),
        (lambda df: df.with_columns(pl.lit(-1.0).alias("volume")), "negative volume"),
        (lambda df: df.drop("volume"), "missing column"),
    ],
)
def test_write_rejects_bad_bars_and_writes_nothing(
    catalog: Catalog,
    mutate,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(DataError, match=message):
        _write(catalog, mutate(_bars()))
    assert _parquet_files(catalog.root) == []


def test_error_names_the_first_offending_row(catalog: Catalog) -> None:
    df = _bars().with_columns(
        pl.when(pl.int_range(pl.len()) == 6).then(50.0).otherwise(pl.col("high")).alias("high")
    )
    with pytest.raises(DataError) as e:
        _write(catalog, df)
    assert "row 6" in str(e.value) and "'high'" in str(e.value)


def test_bad_merge_with_stored_data_leaves_the_stored_file_untouched(catalog: Catalog) -> None:
    _write(catalog, _bars(10))
    (f,) = _parquet_files(catalog.root)
    before = f.read_bytes()
    bad = _bars(5, start=datetime(2024, 1, 1, 0, 2, tzinfo=UTC))  # not on the 5m grid
    with pytest.raises(DataError, match="not aligned"):
        _write(catalog, bad)
    assert f.read_bytes() == before
    assert [p.name for p in f.parent.iterdir()] == [f.name]  # no temp file left


def test_interrupted_multi_file_write_changes_nothing(catalog: Catalog, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _write(catalog, _bars(3, start=datetime(2023, 12, 31, 23, 45, tzinfo=UTC)))
    files = _parquet_files(catalog.root)
    snapshot = {p: p.read_bytes() for p in files}
    import pyarrow.parquet as pq

    calls = {"n": 0}
    real = pq.write_table

    def flaky(*a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(pq, "write_table", flaky)
    # spans 2023 and 2024: two files; the second write is interrupted
    with pytest.raises(KeyboardInterrupt):
        _write(catalog, _bars(20, start=datetime(2023, 12, 31, 23, 0, tzinfo=UTC)))
    assert {p: p.read_bytes() for p in _parquet_files(catalog.root)} == snapshot
    assert not [p for p in catalog.root.rglob("*") if p.name.startswith(".tmp-")]


def test_truncated_parquet_file_is_named_on_read_and_by_validate(
    catalog: Catalog,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    _write(catalog, _bars(10))
    (f,) = _parquet_files(catalog.root)
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(DataError, match=str(f.name)):
        catalog.read_ohlcv("binance", "BTC/USDT", "5m")
    assert main(["--data-dir", str(catalog.root), "data", "validate"]) == 1
    assert f.name in capsys.readouterr().out


def test_validate_reports_gaps_as_warnings_not_errors(catalog: Catalog, capsys) -> None:  # type: ignore[no-untyped-def]
    df = _bars(10)
    _write(catalog, pl.concat([df.head(4), df.tail(3)]))
    assert main(["--data-dir", str(catalog.root), "data", "validate"]) == 0
    out = capsys.readouterr().out
    assert "warning" in out and "3 missing bar(s)" in out and "0 error(s)" in out


def test_csv_with_a_garbage_line_names_file_and_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "bars.csv"
    csv.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2024-01-01 00:00:00,1,2,0.5,1.5,10\n"
        "2024-01-01 00:01:00,1.5,2,1,1.2,11\n"
        "<html>rate limited</html>\n"
        "2024-01-01 00:03:00,1.2,1.3,1.1,1.25,9\n"
    )
    root = tmp_path / "parquet"
    rc = main(
        [
            "--data-dir",
            str(root),
            "data",
            "import",
            str(csv),
            "--exchange",
            "x",
            "--symbol",
            "BTC/USDT",
            "--timeframe",
            "1m",
        ]
    )
    assert rc == 3
    err = capsys.readouterr().err
    assert "bars.csv, line 4" in err
    assert _parquet_files(root) == []


def test_reads_filter_by_time_without_loading_other_row_groups(catalog: Catalog) -> None:
    n = 50_000
    _write(catalog, _bars(n))
    lf = catalog.scan(
        "ohlcv",
        exchange="binance",
        symbol="BTC/USDT",
        timeframe="5m",
        start="2024-02-01",
        end="2024-02-02",
    )
    plan = lf.explain()
    assert "SELECTION" in plan.upper() or "FILTER" in plan.upper()
    df = lf.collect()
    assert len(df) == 288
    assert df["ts"][0] == datetime(2024, 2, 1, tzinfo=UTC)


def test_unknown_partition_error_says_what_to_do(catalog: Catalog) -> None:
    with pytest.raises(DataError, match="tierline data ls"):
        catalog.read_ohlcv("binance", "DOGE/USDT", "5m")
