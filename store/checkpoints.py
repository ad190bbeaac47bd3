"""Fine-tuned checkpoints, cached by base model, exact training rows, recipe and seed (`CheckpointKey`); a
directory that is missing or fails its checksum is treated as absent and rebuilt.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from store.artifacts import directory_checksum
from store.runs import config_hash
from store.workspace import Workspace


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
