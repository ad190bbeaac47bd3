"""Ranking methods that read each source's fine-tuned checkpoint (the one ESM-LogME and measured transfer use, from
the same cache): one pass of the target's training sample through each source model gives

- ``direct-logme``: LogME (`transfer.logme.logme_score`, exact mode) of the target's features from the source's
  *fine-tuned* encoder, the expensive reference that ESMs approximate (Schulte et al. 2024 report it as the upper
  reference); higher is better;
- ``leep``: LEEP (`transfer.leep`, Nguyen et al. 2020) of the source classifier's predictions on the target inputs;
  higher is better. Regression targets and sources are binned (see `transfer.leep`).

Cost per source: the checkpoint (cached; otherwise one source fine-tune) and one forward pass over at most
``max_target_examples`` target texts.
"""

from __future__ import annotations

import json

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.checkpoints import ensure_checkpoint, source_data
from flows.embed import EncoderSettings
from store.catalog import get_task
from store.worker import Deferred, WorkerWorkspace
from transfer.finetune import Recipe, load_fine_tuned, pooled_and_outputs, sample_indices
from transfer.leep import leep, quantile_bins, source_distribution
from transfer.logme import logme_score

CHECKPOINT_METHODS = ("direct-logme", "leep")


@task(cache_policy=NO_CACHE, task_run_name="checkpoint-scores-{target}")
def checkpoint_scores(
    workspace: str,
    target: str,
    sources: list[str],
    methods: list[str],
    *,
    model: str,
    recipe_json: str,
    seed: int,
    device: str,
    max_target_examples: int,
    run_id: str,
) -> Deferred[dict[str, dict[str, float]]]:
    """{method: {source: score}} for ``methods`` ⊆ `CHECKPOINT_METHODS`; checkpoints it has to fine-tune are
    committed by the flow (`flows.runners.commit`)."""
    ws = WorkerWorkspace(workspace)
    recipe = Recipe(**json.loads(recipe_json))
    goal = get_task(ws, target)
    regression = goal.kind == "regression"
    rows = goal.split("train")
    rows = rows.take(sample_indices(rows.num_rows, max_target_examples, seed))
    texts = rows.column("text").to_pylist()
    pairs = rows.column("text_pair").to_pylist() if goal.input == "pair" else None
    labels = rows.column("label").to_numpy()
    leep_labels = quantile_bins(labels) if regression else labels.astype(np.int64)
    base = EncoderSettings.of_recipe(recipe, model, device).load()
    scores: dict[str, dict[str, float]] = {m: {} for m in methods}
    for name in sources:
        data = source_data(ws, name, recipe, seed)
        directory = ensure_checkpoint(
            ws, data, recipe, model=model, base_fp=base.fingerprint, seed=seed, device=device, run_id=run_id
        )
        tuned = load_fine_tuned(directory, device=device)
        pooled, outputs = pooled_and_outputs(tuned.model, tuned.tokenizer, texts, pairs, max_length=recipe.max_length)
        if "direct-logme" in methods:
            scores["direct-logme"][name] = logme_score(pooled.astype(np.float64), labels, regression=regression)
        if "leep" in methods:
            theta = source_distribution(outputs, regression=tuned.kind == "regression")
            scores["leep"][name] = leep(theta, leep_labels)
        get_run_logger().info("%s: %s", name, {m: round(v[name], 4) for m, v in scores.items()})
    return ws.deferred(scores)
