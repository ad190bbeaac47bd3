"""Source checkpoints: the exact rows a source is tuned on (leakage-guarded, then sampled) and its fine-tuned
checkpoint, cached by base model, rows, recipe and seed. Shared by ESM-LogME, LEEP and direct LogME (ranking),
measured transfer and ICONS (warm-up models)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import get_run_logger

from flows.progress import progress
from store.catalog import get_task, get_tasks, list_tasks
from store.checkpoints import CheckpointKey, find_checkpoint, save_checkpoint
from store.errors import InputError
from store.leakage import EvaluationIndex, drop_leaked
from store.runs import canonical_json, config_hash
from store.tasks import Task
from store.workspace import Workspace
from transfer.finetune import Recipe, fine_tune, sample_indices


@dataclass(frozen=True)
class SourceData:
    """The exact rows a source is tuned on: guarded against leakage, then sampled."""

    task: Task
    texts: list[str]
    pairs: list[str] | None
    labels: np.ndarray
    data_hash: str
    n_dropped: int


# Per process, the newest catalog state: its tasks, their leakage index, the source rows worked out under it.
_STATE: dict[tuple[str, tuple[tuple[str, str], ...]], CatalogState] = {}


@dataclass(frozen=True)
class CatalogState:
    tasks: dict[str, Task]
    index: EvaluationIndex
    rows: dict[tuple, SourceData]


def catalog_state(ws: Workspace) -> CatalogState:
    """The stored tasks (one catalog read) and their evaluation-text index (`store.leakage.EvaluationIndex`), built
    once per process and catalog state (the tasks' names and contents): ranking n sources reads each task once."""
    listing = list_tasks(ws)
    state = (str(ws.root), tuple(zip(listing["name"], listing["content_hash"], strict=True)))
    if state not in _STATE:
        _STATE.clear()  # the newest state only
        tasks = get_tasks(ws)
        _STATE[state] = CatalogState(tasks, EvaluationIndex.of(tasks.values()), {})
    return _STATE[state]


def sources_data(ws: Workspace, names: list[str], recipe: Recipe, seed: int) -> dict[str, SourceData]:
    """{name: the rows it is fine-tuned on}: its train split without any text another stored task evaluates on,
    then a seeded sample of ``recipe.max_examples``; worked out once per catalog state (a plan and the flow that
    runs it share them)."""
    state = catalog_state(ws)
    recipe_json = canonical_json(recipe.as_dict())
    out = {}
    for name in names:
        key = (name, recipe_json, seed)
        if key not in state.rows:
            source = state.tasks.get(name) or get_task(ws, name)  # get_task: the unknown-task error
            state.rows[key] = _source_data(source, state.index, recipe, seed)
        out[name] = state.rows[key]
    return out


def source_data(ws: Workspace, name: str, recipe: Recipe, seed: int) -> SourceData:
    """`sources_data` of one source."""
    return sources_data(ws, [name], recipe, seed)[name]


def _source_data(source: Task, index: EvaluationIndex, recipe: Recipe, seed: int) -> SourceData:
    name = source.name
    if "train" not in source.splits:
        raise InputError(f"Source task {name!r} has no train split to fine-tune on; it has {list(source.splits)}.")
    cleaned, report = drop_leaked(source, index)
    rows = cleaned.split("train")
    chosen = sample_indices(rows.num_rows, recipe.max_examples, seed)
    rows = rows.take(chosen)
    return SourceData(
        task=source,
        texts=rows.column("text").to_pylist(),
        pairs=rows.column("text_pair").to_pylist() if source.input == "pair" else None,
        labels=rows.column("label").to_numpy(),
        data_hash=config_hash({"example_ids": rows.column("example_id").to_pylist()}),
        n_dropped=report.n_dropped,
    )


def checkpoint_key(data: SourceData, recipe: Recipe, *, model: str, base_fp: str, seed: int) -> CheckpointKey:
    """The key of ``data``'s checkpoint: base model, exact training rows, recipe and seed. Everything derived from
    the checkpoint (ESMs, gradient features) is keyed by its ``cache_key``."""
    return CheckpointKey(
        base_model=model,
        base_fp=base_fp,
        task=data.task.name,
        content_hash=data.data_hash,
        recipe_json=canonical_json(recipe.as_dict()),
        seed=seed,
    )


def ensure_checkpoint(
    ws: Workspace, data: SourceData, recipe: Recipe, *, model: str, base_fp: str, seed: int, device: str, run_id: str
) -> Path:
    """The fine-tuned checkpoint of ``data`` (cached by `checkpoint_key`)."""
    key = checkpoint_key(data, recipe, model=model, base_fp=base_fp, seed=seed)
    directory = find_checkpoint(ws, key)
    if directory is not None:
        return directory
    with progress(f"fine-tune {data.task.name}", recipe.examples(len(data.texts)), "example") as advance:
        tuned = fine_tune(
            data.texts,
            data.labels,
            n_classes=data.task.n_classes,
            text_pairs=data.pairs,
            model=model,
            recipe=recipe,
            seed=seed,
            device=device,
            progress=advance,
        )
    directory = save_checkpoint(ws, key, tuned, run_id=run_id)
    get_run_logger().info("%s: fine-tuned on %d examples in %.0f s", data.task.name, tuned.n_examples, tuned.seconds)
    return directory
