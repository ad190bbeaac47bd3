"""The embedding cache: vectors keyed by everything that changes them (`EmbeddingKey`), each written as Parquet
before its catalog row; a row whose file is missing or fails its checksum is treated as absent (with a warning)
and recomputed, never silently used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from store.artifacts import read_verified, write_parquet
from store.runs import config_hash
from store.workspace import Workspace


@dataclass(frozen=True)
class EmbeddingKey:
    """Everything that changes an embedding matrix (DECISIONS: model, pooling, length, normalisation, precision,
    task content, split)."""

    model: str
    model_fp: str
    pooling: str
    max_length: int
    normalize: bool
    precision: str
    task: str
    split: str
    content_hash: str

    @property
    def cache_key(self) -> str:
        fields = {k: v for k, v in self.__dict__.items() if k != "model"}  # the name is a label, not content
        return config_hash(fields)


def find_embeddings(ws: Workspace, key: EmbeddingKey) -> tuple[list[str], np.ndarray] | None:
    """Cached (example_ids, float32 [n, d]) for ``key``, or None. A corrupted file is dropped with a warning."""
    rows = ws.read("find_embedding", {"cache_key": key.cache_key})
    if not len(rows):
        return None
    path = ws.path(rows.at[0, "path"])
    table = read_verified(path, rows.at[0, "checksum"])
    if table is None:
        warnings.warn(
            f"Cached embeddings '{path}' ({key.task}/{key.split}) are missing or fail their checksum; recomputing.",
            stacklevel=2,
        )
        ws.execute("delete_embedding", {"cache_key": key.cache_key})
        return None
    vectors = table.column("embedding").combine_chunks()
    dim = vectors.type.list_size
    matrix = vectors.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    return table.column("example_id").to_pylist(), matrix.astype(np.float32, copy=False)


def put_embeddings(
    ws: Workspace,
    key: EmbeddingKey,
    example_ids: list[str],
    vectors: np.ndarray,
    *,
    run_id: str | None = None,
    seconds: float | None = None,
) -> str:
    """Store embeddings (Parquet, atomically) and their catalog row; returns the workspace-relative path."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(example_ids):
        raise ValueError(
            f"The 'vectors' parameter must be [n, d] with n = len(example_ids) = {len(example_ids)}. "
            f"Got shape {vectors.shape}."
        )
    n, dim = vectors.shape
    relative = f"embeddings/{key.cache_key}.parquet"
    flat = pa.array(vectors.reshape(-1), pa.float32())
    table = pa.table(
        {
            "cache_key": pa.array([key.cache_key] * n, pa.string()),
            "task": pa.array([key.task] * n, pa.string()),
            "split": pa.array([key.split] * n, pa.string()),
            "model": pa.array([key.model] * n, pa.string()),
            "example_id": pa.array(example_ids, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    )
    checksum = write_parquet(table, ws.path(relative))
    ws.execute(
        "insert_embedding",
        {
            **key.__dict__,
            "cache_key": key.cache_key,
            "path": relative,
            "n": n,
            "dim": dim,
            "checksum": checksum,
            "run_id": run_id,
            "seconds": seconds,
        },
    )
    return relative
