"""VoG for ``select_training_subset`` (Agarwal et al. 2022): fine-tune on the pool, the variance of input gradients
across its checkpoints per example (`selection.vog`), stored once per pool under everything that produced them
(`vog_score_config`), then a strategy takes the budget.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger

from flows.gradient_rows import LabelledRows, method_settings
from flows.progress import progress
from selection.vog import keep_hardest, prune_easiest, vog_scores, weighted_sample
from store.runs import config_hash
from store.tasks import Task
from store.workspace import Workspace
from transfer.encoder import model_fingerprint, resolve_model_path
from transfer.finetune import SMALL_BUDGET


def vog_score_config(pool: Task, pool_rows: LabelledRows, settings: dict[str, Any], *, model: str, seed: int) -> str:
    """The config hash VoG scores of ``pool_rows`` are stored under: the base model's fingerprint (not its name),
    the pool rows (ids and labels), the fine-tuning recipe (`SMALL_BUDGET`), its seed (the one run its checkpoints
    are taken from) and the scoring parameters (``settings`` n_checkpoints, normalize); not the strategy or budget,
    which only read the scores."""
    return config_hash(
        {
            "method": "vog",
            "pool": pool.name,
            "content": config_hash({"ids": pool_rows.example_ids, "labels": pool_rows.labels.tolist()}),
            "base_fp": model_fingerprint(resolve_model_path(model)),
            "recipe": SMALL_BUDGET.as_dict(),
            "n_checkpoints": settings["n_checkpoints"],
            "normalize": settings["normalize"],
            "seed": seed,
        }
    )


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
    so its scores are stored under `vog_score_config`, without the strategy or budget, and reused for every other
    subset."""
    settings = method_settings("vog", options)
    score_config = vog_score_config(pool, pool_rows, settings, model=model, seed=seed)
    ids = np.array(pool_rows.example_ids)
    stored = ws.read("example_scores", {"config_hash": score_config, "pool": pool.name})
    if len(stored) == len(ids):
        scores = stored.set_index("example_id").score.reindex(ids).to_numpy()
    else:
        with progress(f"VoG fine-tune on {pool.name}", SMALL_BUDGET.examples(len(ids)), "example") as advance:
            result = vog_scores(
                pool_rows.texts,
                pool_rows.labels,
                n_classes=pool.n_classes,
                text_pairs=pool_rows.pairs,
                model=model,
                recipe=SMALL_BUDGET,
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
