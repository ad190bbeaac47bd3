"""Orchestration of the gradient-based selection methods for ``select_training_subset``: label spaces, the
warm-up checkpoint, cached gradient features and the ICONS consensus.

Label space: the pool's label names are the model's classes; each target's labels are mapped onto them with
``label_map`` ({target label: pool label}; unmapped names must already match), and a label that matches no pool
label is an error naming it. ICONS (Wu et al. 2024/2025): warm up the base encoder on a seeded ``warmup_fraction``
of the whole pool split (cached checkpoint; the leakage guard applies to what is selected, so the warm-up and the
pool's features are the same for every target), compute projected loss-gradient features of the pool and of each
target's examples with that checkpoint (cached as fp16 shards, so a new target reuses the pool's), score every
candidate by its specialist influence per target, then take the budget by consensus votes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger

from flows.checkpoints import SourceData, ensure_checkpoint
from flows.progress import progress
from selection.budget import resolve_budget
from selection.gradients import gradient_features
from selection.icons import icons_select, specialist_influence
from selection.stratify import stratified_take
from selection.vog import keep_hardest, prune_easiest, vog_scores, weighted_sample
from store.catalog import CheckpointKey, canonical_json, config_hash
from store.features import features_key, find_features, put_features
from store.tasks import Task
from store.workspace import Workspace
from transfer.encoder import model_fingerprint, resolve_model_path
from transfer.finetune import SMALL_BUDGET, Recipe, load_fine_tuned, sample_indices

WARMUP_RECIPE = Recipe(lr=5e-5, batch_size=16, epochs=3, max_examples=1_000_000, max_length=64, warmup_ratio=0.06)
ICONS_DEFAULTS = {
    "warmup_fraction": 0.05,
    "dim": 8192,
    "projection": "kronecker",
    "top_fraction": 0.2,
    "stratify": False,  # keep the pool's class proportions (selection.stratify); not in the paper
}
VOG_DEFAULTS: dict[str, Any] = {
    "strategy": "prune_easiest",
    "n_checkpoints": 10,
    "normalize": "class",
    "drop_hardest": 0.05,
    "temperature": 1.0,
}
VOG_STRATEGIES = ("prune_easiest", "keep_hardest", "weighted_sample")
SHARD_ROWS = 512


def method_settings(method: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` over the method's defaults; unknown names and a VoG strategy outside the list are errors."""
    defaults = ICONS_DEFAULTS if method == "icons" else VOG_DEFAULTS
    settings = {**defaults, **(options or {})}
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise ValueError(
            f"The 'method_params' parameter has unknown {method} parameters {unknown}; known: {sorted(defaults)}."
        )
    if method == "icons" and not isinstance(settings["stratify"], bool):
        raise ValueError(f"The 'stratify' ICONS parameter must be true or false. Got {settings['stratify']!r}.")
    if method == "vog" and settings["strategy"] not in VOG_STRATEGIES:
        raise ValueError(
            f"The 'strategy' VoG parameter must be one of {list(VOG_STRATEGIES)}. Got {settings['strategy']!r}."
        )
    return settings


@dataclass(frozen=True)
class LabelledRows:
    """Rows of one task split with labels as pool class indices (float64; the value for regression)."""

    task: str
    split: str
    example_ids: list[str]
    texts: list[str]
    pairs: list[str] | None
    labels: np.ndarray


def labelled_rows(
    pool: Task, source: Task, split: str, label_map: Mapping[str, str] | None, *, max_rows: int | None, seed: int
) -> LabelledRows:
    """``source``'s ``split`` (a seeded sample of at most ``max_rows``) with labels in the pool's label space."""
    rows = source.split(split)
    if max_rows is not None:
        rows = rows.take(sample_indices(rows.num_rows, max_rows, seed))
    labels = rows.column("label").to_numpy()
    if pool.kind != source.kind:
        raise ValueError(f"Pool {pool.name!r} is a {pool.kind} task but {source.name!r} is a {source.kind} task.")
    if pool.kind == "classification" and source is not pool:
        mapping = {name: (label_map or {}).get(name, name) for name in source.label_names}
        unknown = sorted({v for v in mapping.values() if v not in pool.label_names})
        if unknown:
            raise ValueError(
                f"The labels {unknown} of target {source.name!r} match no label of pool {pool.name!r} "
                f"{list(pool.label_names)}; pass label_map={{target label: pool label}} for every label."
            )
        index = np.array([pool.label_names.index(mapping[name]) for name in source.label_names], dtype=np.float64)
        labels = index[labels.astype(int)]
    return LabelledRows(
        task=source.name,
        split=split,
        example_ids=rows.column("example_id").to_pylist(),
        texts=rows.column("text").to_pylist(),
        pairs=rows.column("text_pair").to_pylist() if source.input == "pair" else None,
        labels=labels,
    )


def warmup_checkpoint(
    ws: Workspace, pool: Task, rows: LabelledRows, fraction: float, *, model: str, seed: int, device: str, run_id: str
) -> tuple[Any, CheckpointKey]:
    """The base encoder fine-tuned on a seeded ``fraction`` of the pool rows (cached): (FineTuned, its key)."""
    if not (isinstance(fraction, float) and 0 < fraction <= 1):
        raise ValueError(f"The 'warmup_fraction' method parameter must be a float in (0, 1]. Got {fraction!r}.")
    count = max(WARMUP_RECIPE.batch_size, math.ceil(fraction * len(rows.texts)))
    chosen = sample_indices(len(rows.texts), count, seed)
    data = SourceData(
        task=pool,
        texts=[rows.texts[i] for i in chosen],
        pairs=[rows.pairs[i] for i in chosen] if rows.pairs is not None else None,
        labels=rows.labels[chosen],
        data_hash=config_hash({"example_ids": [rows.example_ids[i] for i in chosen]}),
        n_dropped=0,
    )
    directory = ensure_checkpoint(
        ws,
        data,
        WARMUP_RECIPE,
        model=model,
        base_fp=model_fingerprint(resolve_model_path(model)),
        seed=seed,
        device=device,
        run_id=run_id,
    )
    key = CheckpointKey(
        base_model=model,
        base_fp=model_fingerprint(resolve_model_path(model)),
        task=pool.name,
        content_hash=data.data_hash,
        recipe_json=canonical_json(WARMUP_RECIPE.as_dict()),
        seed=seed,
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
    params = {"dim": settings["dim"], "projection": settings["projection"], "seed": seed}
    pool_features = ensure_features(ws, tuned, checkpoint, pool_rows, params, run_id)[allowed]
    influences = {
        rows.task: specialist_influence(pool_features, ensure_features(ws, tuned, checkpoint, rows, params, run_id))
        for rows in targets
    }
    ids = [eid for eid, keep in zip(pool_rows.example_ids, allowed, strict=True) if keep]
    if settings["stratify"]:
        result = icons_select(influences, 1.0, top_fraction=settings["top_fraction"])
        order = stratified_take(result.order, pool_rows.labels[allowed], resolve_budget("icons", budget, len(ids)))
    else:
        result = icons_select(influences, budget, top_fraction=settings["top_fraction"])
        order = result.order
    return [ids[i] for i in order], pd.DataFrame({"example_id": ids, "score": result.consensus})


def target_rows(
    pool: Task, targets: list[Task], split: str, label_map: Mapping[str, str] | None, *, max_rows: int, seed: int
) -> list[LabelledRows]:
    """Each target's rows (a seeded sample of at most ``max_rows`` per target) in the pool's label space."""
    return [labelled_rows(pool, goal, split, label_map, max_rows=max_rows, seed=seed) for goal in targets]


def vog_order(
    ws: Workspace,
    pool: Task,
    pool_rows: LabelledRows,
    allowed: np.ndarray,
    budget: int | float,
    options: dict[str, Any],
    *,
    model: str,
    seed: int,
    device: str,
) -> tuple[list[str], pd.DataFrame, str]:
    """VoG selection among the ``allowed`` rows of the whole pool split: (example ids in order, the normalised VoG
    of the allowed rows, the scores' config hash). VoG depends only on the pool (fine-tune on it, K checkpoints),
    so its scores are stored under a config without the strategy or budget and reused for every other subset."""
    settings = method_settings("vog", options)
    score_config = config_hash(
        {
            "method": "vog",
            "pool": pool.name,
            "content": config_hash({"ids": pool_rows.example_ids}),
            "model": model,
            "n_checkpoints": settings["n_checkpoints"],
            "normalize": settings["normalize"],
            "seed": seed,
        }
    )
    ids = np.array(pool_rows.example_ids)
    stored = ws.read("example_scores", {"config_hash": score_config, "pool": pool.name})
    if len(stored) == len(ids):
        scores = stored.set_index("example_id").score.reindex(ids).to_numpy()
    else:
        with progress(f"VoG fine-tune on {pool.name}", SMALL_BUDGET.examples(len(ids)), "example") as advance:
            result = vog_scores(
                pool_rows.texts,
                pool_rows.labels,
                n_classes=len(pool.label_names) if pool.kind == "classification" else None,
                text_pairs=pool_rows.pairs,
                model=model,
                n_checkpoints=settings["n_checkpoints"],
                normalize=settings["normalize"],
                seed=seed,
                device=device,
                progress=advance,
            )
        scores = result.scores
        get_run_logger().info(
            "VoG of %d pool examples: fine-tune %.0f s, gradients %.0f s",
            len(ids),
            result.seconds["fine_tune"],
            result.seconds["gradients"],
        )
    kept = scores[allowed]
    if settings["strategy"] == "keep_hardest":
        order = keep_hardest(kept, budget)
    elif settings["strategy"] == "prune_easiest":
        order = prune_easiest(kept, budget, drop_hardest=settings["drop_hardest"])
    else:
        order = weighted_sample(kept, budget, seed=seed, temperature=settings["temperature"])
    kept_ids = ids[allowed]
    return kept_ids[order].tolist(), pd.DataFrame({"example_id": ids, "score": scores}), score_config
