"""Artefact files: atomic writes (temp file + fsync + rename) and content checksums.

A crash mid-write leaves at most a stray ``*.tmp-*`` file, never a partial file under the final name; catalog rows
carry the checksum of the file they point to, so a corrupted or truncated file is detected before it is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TMP_MARKER = ".tmp-"


def file_checksum(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def replace_atomically(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; when the block succeeds, fsync it and rename it over ``target``.
    On error the temporary file is removed and ``target`` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}{TMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def rename_into_place(staging: Path, final: Path) -> Path:
    """Rename the complete directory ``staging`` to ``final``; if ``final`` is already there (another writer's copy,
    or one whose catalog row was dropped as corrupt), to a fresh name beside it instead. A directory in place is never
    rewritten or removed, so a reader never sees it half-written; unreferenced copies are left to `store.gc`.
    Returns where ``staging`` landed."""
    try:
        os.rename(staging, final)  # fails when a non-empty ``final`` exists
    except OSError:
        if not final.exists():
            raise
        final = final.with_name(f"{final.name}-{uuid.uuid4().hex[:8]}")
        os.rename(staging, final)
    return final


def write_parquet(table: pa.Table, target: str | os.PathLike[str]) -> str:
    """Write ``table`` to ``target`` atomically (zstd) and return the file's checksum."""
    with replace_atomically(target) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return file_checksum(target)


def read_verified(path: str | os.PathLike[str], checksum: str) -> pa.Table | None:
    """The Parquet table at ``path`` if it exists and matches ``checksum``; else None. A file that fails its
    checksum is renamed to ``*.corrupt`` so that no reader (the SQL views included) picks it up again."""
    path = Path(path)
    if not path.exists():
        return None
    if file_checksum(path) != checksum:
        os.replace(path, path.with_name(path.name + ".corrupt"))
        return None
    return pq.read_table(path)


def directory_checksum(path: str | os.PathLike[str]) -> str:
    """SHA-256 over a directory's files (names and bytes, in name order), hex."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file_checksum(file).encode())
    return digest.hexdigest()
