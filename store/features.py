"""Gradient-feature cache: projected per-example gradients of a task split as fp16 ``.npy`` shards.

Layout: ``features/<cache_key>/example_ids.json`` and ``shard-00000.npy`` … (each [rows, k], float16). The directory
is written under a temporary name and renamed into place (beside a copy already there, never over it:
`store.artifacts.rename_into_place`), then its catalog row (with a checksum over the files) is committed; a directory
that is missing or fails its checksum is dropped with a warning and recomputed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from store.artifacts import TMP_MARKER, directory_checksum, rename_into_place
from store.runs import canonical_json, config_hash
from store.workspace import Workspace


def features_key(task: str, split: str, checkpoint_key: str, params: dict[str, Any]) -> str:
    """The cache key: task split (its content is in ``params``), the checkpoint, labels and projection params."""
    return config_hash({"task": task, "split": split, "checkpoint": checkpoint_key, "params": params})


def find_features(ws: Workspace, cache_key: str) -> tuple[list[str], np.ndarray] | None:
    """(example ids, float16 [n, k]) of a cached feature set, or None."""
    rows = ws.read("find_gradient_features", {"cache_key": cache_key})
    if rows.empty:
        return None
    path = ws.path(rows.at[0, "path"])
    if not path.is_dir() or directory_checksum(path) != rows.at[0, "checksum"]:
        warnings.warn(f"Gradient features '{path}' are missing or fail their checksum; recomputing.", stacklevel=2)
        ws.execute("delete_gradient_features", {"cache_key": cache_key})
        return None
    ids = json.loads((path / "example_ids.json").read_text())
    shards = [np.load(p) for p in sorted(path.glob("shard-*.npy"))]
    return ids, np.concatenate(shards) if shards else np.empty((0, int(rows.at[0, "dim"])), np.float16)


def put_features(
    ws: Workspace,
    cache_key: str,
    *,
    task: str,
    split: str,
    checkpoint_key: str,
    params: dict[str, Any],
    example_ids: Sequence[str],
    shards: Iterable[np.ndarray],
    run_id: str | None = None,
) -> np.ndarray:
    """Write ``shards`` (computed lazily, one at a time: memory stays one shard) as float16, then the catalog row,
    which records the seconds spent producing and writing them. Returns the features, float16 [n, k]."""
    start = time.perf_counter()
    final = ws.path(f"features/{cache_key}")
    staging = final.with_name(f"{cache_key}{TMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        parts = []
        for index, shard in enumerate(shards):
            part = np.asarray(shard, dtype=np.float16)
            np.save(staging / f"shard-{index:05d}.npy", part)
            parts.append(part)
        features = np.concatenate(parts)
        if len(features) != len(example_ids):
            raise ValueError(f"Got {len(features)} feature rows for {len(example_ids)} example ids.")
        (staging / "example_ids.json").write_text(json.dumps(list(example_ids)))
        final = rename_into_place(staging, final)  # never over a copy in place: a reader may be using it
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ws.execute(
        "insert_gradient_features",
        {
            "cache_key": cache_key,
            "task": task,
            "split": split,
            "checkpoint_key": checkpoint_key,
            "params_json": canonical_json(params),
            "path": str(final.relative_to(ws.root)),
            "n": len(features),
            "dim": features.shape[1],
            "checksum": directory_checksum(final),
            "run_id": run_id,
            "seconds": time.perf_counter() - start,
        },
    )
    return features
