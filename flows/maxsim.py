"""Prefect task ``maxsim_scores``: token-level MaxSim of a target to each source (`transfer.maxsim`).

The training split of every task is sampled (seeded, `transfer.finetune.sample_indices`), its real tokens are
embedded with the base encoder, and the vectors are cached as files in the workspace (`store.tokens`), so a second
ranking with the same model, data, sample and length embeds nothing. The cache has no catalog rows: the task
returns its scores with no writes, and the flow commits it like any other (`flows.runners.commit`).
"""

from __future__ import annotations

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.embed import EncoderSettings
from store.catalog import get_task
from store.tasks import Task
from store.tokens import load_tokens, save_tokens, tokens_key
from store.worker import Deferred, WorkerWorkspace
from store.workspace import Workspace
from transfer.embeddings import TextEncoder
from transfer.finetune import sample_indices
from transfer.maxsim import equal_token_sample, maxsim_score, token_embeddings


def sample_tokens(
    ws: Workspace, stored: Task, split: str, encoder: TextEncoder, *, max_texts: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token vectors float32 [n_tokens, d] and text index [n_tokens] of at most ``max_texts`` texts of ``split``
    (seeded sample; text pairs encoded together): from the workspace cache, or embedded and stored."""
    key = tokens_key(encoder.fingerprint, stored.split_hash(split), split, max_texts, seed, encoder.max_length)
    cached = load_tokens(ws, key)
    if cached is not None:
        return cached
    rows = stored.split(split)
    rows = rows.take(sample_indices(rows.num_rows, max_texts, seed))
    pairs = rows.column("text_pair").to_pylist() if stored.input == "pair" else None
    vectors, text_index = token_embeddings(
        encoder, rows.column("text").to_pylist(), pairs, max_length=encoder.max_length, device=encoder.device
    )
    save_tokens(ws, key, vectors, text_index)
    return vectors, text_index


@task(cache_policy=NO_CACHE, task_run_name="maxsim-{target}")
def maxsim_scores(
    workspace: str,
    target: str,
    sources: list[str],
    *,
    model: str,
    device: str,
    max_target_texts: int,
    max_source_texts: int,
    source_tokens: int,
    seed: int,
    run_id: str,
    max_length: int = 128,
) -> Deferred[dict[str, float]]:
    """{source: MaxSim(target, source)} (higher = better source) over the training splits: at most
    ``max_target_texts`` target texts; per source, ``source_tokens`` tokens drawn from at most ``max_source_texts``
    texts (the same count for every source: `transfer.maxsim.equal_token_sample`); ``max_length`` tokens per text.

    ``run_id`` keeps the signature of the other ranking tasks; nothing is written to the catalog (the token cache
    is files only), so the returned `Deferred` has no writes."""
    ws = WorkerWorkspace(workspace)
    encoder = EncoderSettings(model=model, max_length=max_length, device=device).load()
    target_tokens, target_index = sample_tokens(
        ws, get_task(ws, target), "train", encoder, max_texts=max_target_texts, seed=seed
    )
    scores = {}
    for name in sources:
        tokens, _ = sample_tokens(ws, get_task(ws, name), "train", encoder, max_texts=max_source_texts, seed=seed)
        sampled = equal_token_sample(tokens, source_tokens, seed)
        scores[name] = maxsim_score(target_tokens, target_index, sampled)
    return ws.deferred(scores)
