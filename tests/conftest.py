"""Shared fixtures: the real data in ../shared/data and throwaway catalogs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Real exchange data (see its README); CI has it at the same relative path.
SHARED_DATA = Path(os.environ.get("TIERLINE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real-data fixtures; fails (not skips) when they are missing."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.fail(
            f"real test data not found at {SHARED_DATA}; clone the project beside ../shared "
            "or set TIERLINE_SHARED_DATA"
        )
    return SHARED_DATA


@pytest.fixture
def catalog(tmp_path: Path):  # type: ignore[no-untyped-def]
    """An empty catalog in a temporary directory."""
    from tierline.data.catalog import Catalog

    return Catalog(tmp_path / "parquet")
