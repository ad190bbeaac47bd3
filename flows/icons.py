"""ICONS for ``select_training_subset`` (Wu et al. 2024/2025): warm up the base encoder on a seeded
``warmup_fraction`` of the whole pool split (cached checkpoint; the leakage guard applies to what is selected, so the
warm-up and the pool's features are the same for every target), compute projected loss-gradient features of the pool
and of each target's examples with that checkpoint (cached as fp16 shards, so a new target reuses the pool's), score
every candidate by its specialist influence per target, then take the budget by consensus votes
(`selection.icons`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger

from flows.checkpoints import SourceData, checkpoint_key, ensure_checkpoint
from flows.gradient_rows import LabelledRows, method_settings
from flows.progress import progress
from selection.gradients import FEATURES_VERSION, gradient_features
from selection.icons import WARMUP_RECIPE, icons_select, specialist_influence, warmup_indices
from store.checkpoints import CheckpointKey
from store.features import features_key, find_features, put_features
from store.runs import config_hash
from store.tasks import Task
from store.workspace import Workspace
from transfer.encoder import model_fingerprint, resolve_model_path
from transfer.finetune import load_fine_tuned

SHARD_ROWS = 512


def warmup_checkpoint(
    ws: Workspace, pool: Task, rows: LabelledRows, fraction: float, *, model: str, seed: int, device: str, run_id: str
) -> tuple[Any, CheckpointKey]:
    """The base encoder fine-tuned on a seeded ``fraction`` of the pool rows (cached): (FineTuned, its key)."""
    chosen = warmup_indices(len(rows.texts), fraction, seed)
    data = SourceData(
        task=pool,
        texts=[rows.texts[i] for i in chosen],
        pairs=[rows.pairs[i] for i in chosen] if rows.pairs is not None else None,
        labels=rows.labels[chosen],
        data_hash=config_hash({"example_ids": [rows.example_ids[i] for i in chosen]}),
        n_dropped=0,
    )
    base_fp = model_fingerprint(resolve_model_path(model))
    key = checkpoint_key(data, WARMUP_RECIPE, model=model, base_fp=base_fp, seed=seed)
    directory = ensure_checkpoint(
        ws, data, WARMUP_RECIPE, model=model, base_fp=base_fp, seed=seed, device=device, run_id=run_id
    )
    return load_fine_tuned(directory, device=device), key


def ensure_features(
    ws: Workspace, tuned: Any, checkpoint: CheckpointKey, rows: LabelledRows, params: dict[str, Any], run_id: str
) -> np.ndarray:
    """Projected loss-gradient features of ``rows`` (float16 [n, k]) from the cache, or computed shard by shard
    (``SHARD_ROWS`` rows each) and stored."""
    content = config_hash({"ids": rows.example_ids, "labels": rows.labels.tolist()})
    key = features_key(rows.task, rows.split, checkpoint.cache_key, {**params, "content": content})
    cached = find_features(ws, key)
    if cached is not None:
        return cached[1]
    start = time.perf_counter()

    def shards() -> Iterator[np.ndarray]:
        with progress(f"gradient features {rows.task}/{rows.split}", len(rows.texts), "example") as advance:
            for first in range(0, len(rows.texts), SHARD_ROWS):
                end = first + SHARD_ROWS
                shard = gradient_features(
                    tuned.model,
                    tuned.tokenizer,
                    rows.texts[first:end],
                    rows.labels[first:end],
                    text_pairs=rows.pairs[first:end] if rows.pairs is not None else None,
                    dim=params["dim"],
                    projection=params["projection"],
                    seed=params["seed"],
                    max_length=tuned.recipe.max_length,
                )
                advance(len(shard))
                yield shard

    features = put_features(
        ws,
        key,
        task=rows.task,
        split=rows.split,
        checkpoint_key=checkpoint.cache_key,
        params={**params, "content": content},
        example_ids=rows.example_ids,
        shards=shards(),
        run_id=run_id,
    )
    get_run_logger().info(
        "%s/%s: %d gradient features in %.1f s", rows.task, rows.split, len(features), time.perf_counter() - start
    )
    return features


def icons_order(
    ws: Workspace,
    pool: Task,
    pool_rows: LabelledRows,
    allowed: np.ndarray,
    targets: list[LabelledRows],
    budget: int | float,
    options: dict[str, Any],
    *,
    model: str,
    seed: int,
    device: str,
    run_id: str,
) -> tuple[list[str], pd.DataFrame]:
    """ICONS selection among the ``allowed`` rows (bool [N], the leakage guard's survivors) of the whole pool split
    ``pool_rows``: (example ids in order, per-example consensus scores of the allowed rows). The warm-up sample
    and the pool's features cover the whole split, so they do not depend on the targets and are computed once."""
    settings = method_settings("icons", options)
    tuned, checkpoint = warmup_checkpoint(
        ws, pool, pool_rows, settings["warmup_fraction"], model=model, seed=seed, device=device, run_id=run_id
    )
    params = {"dim": settings["dim"], "projection": settings["projection"], "seed": seed, "version": FEATURES_VERSION}
    pool_features = ensure_features(ws, tuned, checkpoint, pool_rows, params, run_id)[allowed]
    influences = {
        rows.task: specialist_influence(pool_features, ensure_features(ws, tuned, checkpoint, rows, params, run_id))
        for rows in targets
    }
    ids = [eid for eid, keep in zip(pool_rows.example_ids, allowed, strict=True) if keep]
    strata = pool_rows.labels[allowed] if settings["stratify"] else None
    result = icons_select(influences, budget, top_fraction=settings["top_fraction"], stratify_by=strata)
    return [ids[i] for i in result.order], pd.DataFrame({"example_id": ids, "score": result.consensus})
