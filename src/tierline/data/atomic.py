"""Atomic writes: every file appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["TMP_PREFIX", "atomic_path", "commit_files", "write_text_atomic"]

#: Files being written carry this prefix; readers ignore them and writers clean them up.
TMP_PREFIX = ".tmp-"


def _tmp_for(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path``
    is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    try:
        yield tmp
        _fsync(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def commit_files(writers: dict[Path, Callable[[Path], None]]) -> None:
    """Write several files so that none is replaced unless all were written.

    Each writer is called with a temporary path beside its target. Only when every writer has
    succeeded are the temporaries renamed onto their targets; any failure (or an interrupt)
    before that point removes the temporaries and leaves every target as it was.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for target, write in writers.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = _tmp_for(target)
            staged.append((tmp, target))
            write(tmp)
            _fsync(tmp)
        for tmp, target in staged:
            tmp.replace(target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
