"""Fine-tuned checkpoints, cached by base model, exact training rows, recipe and seed (`CheckpointKey`); a
directory that is missing or fails its checksum is treated as absent and rebuilt.

A checkpoint directory, once in place, is never rewritten or removed (`save_checkpoint`): a ``serve`` deployment and
a CLI flow that fine-tune the same key each keep a complete directory, and the catalog row points at one of them.
"""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from store.artifacts import TMP_MARKER, directory_checksum, rename_into_place
from store.runs import config_hash
from store.workspace import Workspace

if TYPE_CHECKING:
    from transfer.finetune import FineTuned


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


def stored_checkpoints(ws: Workspace) -> set[str]:
    """The cache keys of every checkpoint the catalog records (one read; files not checked: for plans)."""
    return set(ws.read("checkpoint_keys").cache_key)


def checkpoint_path(ws: Workspace, key: CheckpointKey) -> Path:
    """Where the checkpoint for ``key`` usually lives (`save_checkpoint` writes it there unless a directory is)."""
    return ws.path(f"checkpoints/{key.cache_key}")


def save_checkpoint(ws: Workspace, key: CheckpointKey, tuned: FineTuned, *, run_id: str | None = None) -> Path:
    """Write ``tuned`` as the checkpoint of ``key`` and record it; returns its directory. The directory is written
    complete under a temporary name and renamed to `checkpoint_path`, or, when a directory is already there (a
    concurrent writer's copy of the same key, or one whose row was dropped as corrupt), beside it under a fresh name
    (`store.artifacts.rename_into_place`): a directory in place is never replaced while someone may read it."""
    from transfer.finetune import save_fine_tuned

    home = checkpoint_path(ws, key)
    staging = save_fine_tuned(tuned, home.with_name(f"{home.name}{TMP_MARKER}{uuid.uuid4().hex[:8]}"))
    directory = rename_into_place(staging, home)
    put_checkpoint(
        ws, key, n_examples=tuned.n_examples, steps=tuned.steps, seconds=tuned.seconds, run_id=run_id, path=directory
    )
    return directory


def put_checkpoint(
    ws: Workspace,
    key: CheckpointKey,
    *,
    n_examples: int,
    steps: int,
    seconds: float,
    run_id: str | None = None,
    path: Path | None = None,
) -> None:
    """Record the checkpoint written at ``path`` (default `checkpoint_path`), with its checksum."""
    path = checkpoint_path(ws, key) if path is None else path
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
