"""Catalog operations: stored tasks, the embedding cache and run records.

Every artefact is written to its final name atomically first, then its catalog row (with the file's checksum) is
committed in one short transaction. A row whose file is missing or fails its checksum is treated as absent (with a
warning) and recomputed, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from store.artifacts import directory_checksum, read_verified, write_parquet
from store.errors import CorruptArtifactError, UnknownTaskError
from store.tasks import Task
from store.workspace import Workspace, query

VERSIONED_PACKAGES = ("transferscope", "torch", "transformers", "numpy", "duckdb", "pyarrow", "prefect")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(params: dict[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of a parameter dict's canonical JSON: equal configs, equal hashes."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()[:16]


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


# -------------------------------------------------------------------------------------------------- tasks


def put_task(ws: Workspace, task: Task) -> bool:
    """Store a validated task (its table as Parquet, its row in ``tasks``). Returns True if it was new or changed,
    False if the same content was already stored."""
    content_hash = task.content_hash
    relative = f"tasks/{task.name}/{content_hash}.parquet"
    current = ws.read("get_task", {"name": task.name})
    if len(current) and current.at[0, "content_hash"] == content_hash and ws.path(relative).exists():
        return False
    metadata_bytes = {b"transferscope.task": json.dumps(task.metadata()).encode()}
    table = task.table.append_column("task", pa.array([task.name] * task.table.num_rows, pa.string()))
    table = table.append_column("content_hash", pa.array([content_hash] * table.num_rows, pa.string()))
    checksum = write_parquet(table.replace_schema_metadata(metadata_bytes), ws.path(relative))
    counts = task.counts()
    ws.execute(
        "upsert_task",
        {
            "name": task.name,
            "kind": task.kind,
            "input": task.input,
            "label_names": list(task.label_names),
            "content_hash": content_hash,
            "source_uri": task.source_uri,
            "license": task.license,
            "n_train": counts.get("train", 0),
            "n_validation": counts.get("validation", 0),
            "n_test": counts.get("test", 0),
            "warnings": list(task.warnings),
            "derived_splits_json": canonical_json(dict(task.derived_splits)),
            "path": relative,
            "checksum": checksum,
        },
    )
    return True


def get_task(ws: Workspace, name: str) -> Task:
    """The stored task ``name``; a clear error if it is unknown or its file fails its checksum."""
    rows = ws.read("get_task", {"name": name})
    if not len(rows):
        known = ws.read("list_tasks")["name"].tolist()
        raise UnknownTaskError(
            f"No task {name!r} in workspace '{ws.root}'. Known tasks: {known}. Add it with "
            f"`transferscope tasks add {name} PATH`."
        )
    return _task_from_row(ws, rows.iloc[0])


def get_tasks(ws: Workspace) -> dict[str, Task]:
    """Every stored task by name, from one catalog read (each file checksum-verified, as `get_task`)."""
    return {row["name"]: _task_from_row(ws, row) for _, row in ws.read("all_tasks").iterrows()}


def _task_from_row(ws: Workspace, row: pd.Series) -> Task:
    name = row["name"]
    table = read_verified(ws.path(row["path"]), row["checksum"])
    if table is None:
        raise CorruptArtifactError(
            f"Task {name!r}: stored file '{ws.path(row['path'])}' is missing or fails its checksum; "
            f"re-add the task with `transferscope tasks add {name} {row['source_uri']}`."
        )
    return Task(
        name=name,
        kind=row["kind"],
        input=row["input"],
        table=table.select(["example_id", "split", "text", "text_pair", "label"]).replace_schema_metadata(None),
        label_names=tuple(row["label_names"]),
        source_uri=row["source_uri"],
        license=row["license"],
        warnings=tuple(row["warnings"]),
        derived_splits=json.loads(row["derived_splits_json"]),
    )


def list_tasks(ws: Workspace) -> pd.DataFrame:
    return ws.read("list_tasks")


# ---------------------------------------------------------------------------------------------- embeddings


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


# -------------------------------------------------------------------------------------------------- runs


def start_run(ws: Workspace, flow: str, params: dict[str, Any], *, device: str | None = None) -> tuple[str, str]:
    """Record a run as started; returns (run_id, config_hash)."""
    run_id = uuid.uuid4().hex
    digest = config_hash(params)
    ws.execute(
        "start_run",
        {
            "run_id": run_id,
            "flow": flow,
            "params_json": canonical_json(params),
            "config_hash": digest,
            "versions_json": canonical_json(library_versions()),
            "device": device,
        },
    )
    return run_id, digest


def finish_run(
    ws: Workspace,
    run_id: str,
    *,
    status: str,
    timings: dict[str, float] | None = None,
    error: str | None = None,
) -> None:
    ws.execute(
        "finish_run",
        {"run_id": run_id, "status": status, "timings_json": canonical_json(timings or {}), "error": error},
    )


@dataclass
class RunRecord:
    """A started run (`recorded_run`): its id and config hash, and what to record when it ends: ``status``
    ("completed", or "partial" when some of it failed), ``timings`` (seconds; ``total_s`` is added) and ``error``."""

    run_id: str
    config: str
    status: str = "completed"
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@contextmanager
def recorded_run(ws: Workspace, flow: str, params: dict[str, Any], *, device: str | None = None) -> Iterator[RunRecord]:
    """Record a run around a block: started now; if the block raises, finished as failed with the error (and the
    error re-raised); else finished with the record's status, timings (plus the block's ``total_s``) and error."""
    run_id, config = start_run(ws, flow, params, device=device)
    record = RunRecord(run_id, config)
    started = time.perf_counter()
    try:
        yield record
    except BaseException as err:
        finish_run(ws, run_id, status="failed", error=f"{type(err).__name__}: {err}")
        raise
    timings = {"total_s": time.perf_counter() - started, **record.timings}
    finish_run(ws, run_id, status=record.status, timings=timings, error=record.error)


# ------------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class CheckpointKey:
    """What decides a fine-tuned checkpoint: base model content, the exact training data (after sampling inputs
    and the leakage guard), the recipe and the seed."""

    base_model: str
    base_fp: str
    task: str
    content_hash: str
    recipe_json: str
    seed: int

    @property
    def cache_key(self) -> str:
        return config_hash({k: v for k, v in self.__dict__.items() if k != "base_model"})


def find_checkpoint(ws: Workspace, key: CheckpointKey) -> Path | None:
    """Directory of the cached checkpoint for ``key``, or None; one that fails its checksum is dropped (warned)."""
    rows = ws.read("find_checkpoint", {"cache_key": key.cache_key})
    if not len(rows):
        return None
    path = ws.path(rows.at[0, "path"])
    if path.is_dir() and directory_checksum(path) == rows.at[0, "checksum"]:
        return path
    warnings.warn(
        f"Checkpoint '{path}' ({key.task}) is missing or fails its checksum; fine-tuning again.", stacklevel=2
    )
    ws.execute("delete_checkpoint", {"cache_key": key.cache_key})
    return None


def checkpoint_path(ws: Workspace, key: CheckpointKey) -> Path:
    """Where the checkpoint for ``key`` is written (write it there, then call `put_checkpoint`)."""
    return ws.path(f"checkpoints/{key.cache_key}")


def put_checkpoint(
    ws: Workspace, key: CheckpointKey, *, n_examples: int, steps: int, seconds: float, run_id: str | None = None
) -> None:
    """Record the checkpoint written at `checkpoint_path` (with its checksum)."""
    path = checkpoint_path(ws, key)
    ws.execute(
        "insert_checkpoint",
        {
            **key.__dict__,
            "cache_key": key.cache_key,
            "path": str(path.relative_to(ws.root)),
            "checksum": directory_checksum(path),
            "n_examples": n_examples,
            "steps": steps,
            "seconds": seconds,
            "run_id": run_id,
        },
    )


# -------------------------------------------------------------------------------------------- pair scores


def put_ranking(
    ws: Workspace,
    run_id: str,
    config: str,
    target: str,
    method: str,
    scores: dict[str, float],
    *,
    higher_is_better: bool,
) -> pd.DataFrame:
    """Rank one method's scores for one target (rank 1 = best in the method's direction; NaN scores unranked,
    last) and store them as one batch in one transaction. Returns the ranking."""
    frame = pd.DataFrame({"source": list(scores), "score": np.asarray(list(scores.values()), dtype=np.float64)})
    frame["rank"] = frame["score"].rank(ascending=not higher_is_better, method="min").astype("Int64")
    frame = frame.sort_values(["rank", "source"], na_position="last").reset_index(drop=True)
    with ws.transaction() as con:
        for row in frame.itertuples():
            con.execute(
                query("insert_pair_score"),
                {
                    "run_id": run_id,
                    "config_hash": config,
                    "target": target,
                    "source": row.source,
                    "method": method,
                    "score": None if pd.isna(row.score) else float(row.score),
                    "rank": None if pd.isna(row.rank) else int(row.rank),
                    "higher_is_better": higher_is_better,
                },
            )
    return frame.assign(method=method, run_id=run_id)


# -------------------------------------------------------------------------------------- measured transfer


def put_transfer_result(
    ws: Workspace, config: str, target: str, source: str, seed: int, metrics: dict[str, float], run_id: str
) -> None:
    """Store one fine-tuning run's metrics (``source`` '' = the no-transfer baseline) in one transaction."""
    with ws.transaction() as con:
        for metric, value in metrics.items():
            con.execute(
                query("insert_transfer_result"),
                {
                    "config_hash": config,
                    "target": target,
                    "source": source,
                    "seed": seed,
                    "metric": metric,
                    "value": float(value),
                    "run_id": run_id,
                },
            )


def done_transfer_runs(ws: Workspace, config: str, target: str) -> set[tuple[str, int]]:
    """(source, seed) pairs already measured under this measurement config."""
    rows = ws.read("done_transfer_runs", {"config_hash": config, "target": target})
    return {(r.source, int(r.seed)) for r in rows.itertuples()}


def put_transfer_gains(ws: Workspace, config: str, target: str, gains: pd.DataFrame, run_id: str) -> None:
    """Store per-pair gain summaries (columns as `transfer.groundtruth.GainSummary` plus source, baseline_mean and
    source_mean) in one transaction, replacing earlier summaries of the same config and pair."""
    with ws.transaction() as con:
        for row in gains.itertuples(index=False):
            values = row._asdict()
            con.execute(
                query("upsert_transfer_gain"),
                {
                    **values,
                    "config_hash": config,
                    "target": target,
                    "run_id": run_id,
                    "p_value": None if np.isnan(values["p_value"]) else values["p_value"],
                },
            )


def put_ranking_quality(ws: Workspace, run_id: str, target: str, measured_config: str, rows: list[dict]) -> None:
    """Store one evaluation of a target's rankings (rows: method, ranking_run_id, n_sources, metric, value) in one
    transaction."""
    with ws.transaction() as con:
        for row in rows:
            value = row["value"]
            con.execute(
                query("insert_ranking_quality"),
                {
                    **row,
                    "run_id": run_id,
                    "target": target,
                    "measured_config": measured_config,
                    "value": None if value != value else float(value),
                },
            )
