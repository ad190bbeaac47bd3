"""The stored tasks: put, get (checksum-verified) and list.

A task's table is written to its final name atomically first, then its catalog row (with the file's checksum)
is committed in one short transaction; a file that is missing or fails its checksum is an error naming the fix.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa

from store.artifacts import read_verified, write_parquet
from store.errors import CorruptArtifactError, InputError, UnknownTaskError
from store.runs import canonical_json, config_hash
from store.tasks import Task
from store.workspace import Workspace


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


def catalog_digest(ws: Workspace) -> str:
    """A hash of the stored tasks' names and contents (one catalog read): what a plan was made against."""
    listing = list_tasks(ws)
    return config_hash({"tasks": sorted(zip(listing["name"], listing["content_hash"], strict=True))})


def check_plan_current(ws: Workspace, planned: str, owner: str) -> None:
    """Raise when the stored tasks changed since a plan was made against ``planned`` (`catalog_digest`): its
    leakage guard, samples, ids and cache keys would describe data that is no longer there."""
    if catalog_digest(ws) != planned:
        raise InputError(
            f"The tasks in workspace '{ws.root}' changed since this {owner} plan was made (a task was added, "
            "changed or removed); plan the request again."
        )
