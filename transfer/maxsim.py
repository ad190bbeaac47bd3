"""Token-level MaxSim task similarity (Lin, Zhang, Mosbach & Klakow, "Exploring the Effectiveness and Consistency
of Task Selection in Intermediate-Task Transfer Learning", ACL SRW 2024; the best NDCG of the methods they compare).

Every text becomes its tokens' last hidden states of the base encoder (real tokens only, L2-normalised). For a
target T of texts t and a source S, given as the pooled tokens of a sample of its texts::

    MaxSim(T, S) = 1/|T| Σ_{t ∈ T} 1/|t| Σ_{i ∈ t} max_{s ∈ S} ⟨t_i, s⟩

Each target token is matched to its most similar source token (a cosine, as both are unit vectors); higher means
more similar, hence a better source. The maximum is an exact nearest-neighbour search (`transfer.neighbors`).

A maximum over more source tokens can only be larger, so sources must be compared at the same number of tokens:
a source sampled by texts has as many tokens as its texts are long (measured: 461 tweets give 13,530 tokens, 500
phone reviews 6,733, and the tweets outscored the reviews for a movie-review target until both were cut to the same
count). `equal_token_sample` draws the same number of tokens from every source.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import get_args

import numpy as np
import torch

from transfer.checks import check_choice
from transfer.embeddings import TextEncoder
from transfer.encoder import resolve_device
from transfer.errors import InputError
from transfer.neighbors import Backend, nearest_neighbors

BACKENDS = get_args(Backend)


def token_embeddings(
    model: TextEncoder | str | os.PathLike[str],
    texts: Sequence[str],
    text_pairs: Sequence[str] | None = None,
    *,
    max_length: int = 128,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """The real tokens of every text (or text pair): (vectors float32 [n_tokens, d], text index int64 [n_tokens]).

    ``model`` is an encoder name or directory, loaded with ``max_length`` (tokens per input; pairs are encoded
    together and the longer text is truncated first) on ``device``, or a loaded `TextEncoder`, whose ``max_length``
    and ``device`` must then be these. Vectors are the last hidden states, L2-normalised, without [CLS], [SEP] or
    padding; rows are grouped by text in input order and ``text index[j]`` is the position in ``texts`` of row j
    (a text with no real token, e.g. "", has no rows). Texts run in batches of ``batch_size``, longest first, so
    each batch pads to nearly its own length; the model runs in fp32 whatever the encoder's precision.
    """
    if isinstance(texts, str):
        raise InputError("The 'texts' parameter of token_embeddings must be a sequence of strings, not one string.")
    if text_pairs is not None and len(text_pairs) != len(texts):
        raise InputError(
            f"The 'text_pairs' parameter of token_embeddings must have one entry per text ({len(texts)}). "
            f"Got {len(text_pairs)} instead."
        )
    encoder = model if isinstance(model, TextEncoder) else TextEncoder(model, max_length=max_length, device=device)
    limit = min(max_length, encoder.tokenizer.model_max_length or max_length)
    if encoder.max_length != limit or encoder.device != resolve_device(device):
        raise InputError(
            f"The 'max_length' and 'device' parameters of token_embeddings must match the TextEncoder's "
            f"({encoder.max_length}, {encoder.device}). Got ({max_length}, {device}) instead."
        )
    encoded = encoder.tokenizer(
        list(texts),
        None if text_pairs is None else list(text_pairs),
        truncation=True,
        max_length=encoder.max_length,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=True,
        return_special_tokens_mask=True,
    )
    ids, special = encoded["input_ids"], encoded["special_tokens_mask"]
    types = encoded.get("token_type_ids") or [[0] * len(i) for i in ids]
    per_text = [np.empty((0, encoder.dim), dtype=np.float32)] * len(texts)
    order = np.argsort([-len(i) for i in ids], kind="stable")
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = encoder._pad([ids[i] for i in index], [types[i] for i in index])
        inputs = {k: torch.from_numpy(v).to(encoder.device) for k, v in batch.items()}
        with torch.inference_mode():
            hidden = torch.nn.functional.normalize(encoder.model(**inputs).last_hidden_state.float(), dim=-1)
        hidden_np = hidden.cpu().numpy()
        for row, i in enumerate(index):
            real = np.flatnonzero(np.asarray(special[i]) == 0)  # within the unpadded length: no padding either
            per_text[i] = hidden_np[row, real]
    vectors = np.concatenate(per_text) if per_text else np.empty((0, encoder.dim), dtype=np.float32)
    text_index = np.repeat(np.arange(len(texts), dtype=np.int64), [len(v) for v in per_text])
    return vectors, text_index


def equal_token_sample(tokens: np.ndarray, n_tokens: int, seed: int) -> np.ndarray:
    """A seeded sample of ``n_tokens`` rows of ``tokens`` [m, d] (all rows, in order, when m <= n_tokens)."""
    if not isinstance(n_tokens, int) or n_tokens < 1:
        raise InputError(
            f"The 'n_tokens' parameter of equal_token_sample must be a positive int. Got {n_tokens!r} instead."
        )
    if len(tokens) <= n_tokens:
        return tokens
    return tokens[np.sort(np.random.default_rng([seed, 2]).choice(len(tokens), n_tokens, replace=False))]


def maxsim_score(
    target_tokens: np.ndarray,
    target_text_index: np.ndarray,
    source_tokens: np.ndarray,
    *,
    backend: Backend = "auto",
) -> float:
    """MaxSim of a target to a source (Lin et al., ACL SRW 2024), higher = more similar:

        MaxSim(T, S) = 1/|T| Σ_{t ∈ T} 1/|t| Σ_{i ∈ t} max_{s ∈ S} ⟨t_i, s⟩

    ``target_tokens`` [m, d] and ``source_tokens`` [n, d] are L2-normalised token vectors (`token_embeddings`), so
    each inner product is a cosine and the score lies in [-1, 1]; ``target_text_index`` [m] (ints) names each target
    token's text, and the outer mean runs over the texts that have tokens. ``backend``: ``"faiss"`` (IndexFlatIP),
    ``"torch"`` (exact matrix products) or ``"auto"`` (FAISS when importable); both are exact.
    """
    target_tokens, source_tokens = np.asarray(target_tokens), np.asarray(source_tokens)
    target_text_index = np.asarray(target_text_index)
    for name, tokens in (("target_tokens", target_tokens), ("source_tokens", source_tokens)):
        if tokens.ndim != 2 or len(tokens) == 0:
            raise InputError(
                f"The {name!r} parameter of maxsim_score must be a non-empty 2-D array [n_tokens, d]. "
                f"Got shape {tokens.shape} instead."
            )
    if target_tokens.shape[1] != source_tokens.shape[1]:
        raise InputError(
            f"The 'target_tokens' and 'source_tokens' parameters of maxsim_score must have the same dimension. "
            f"Got {target_tokens.shape[1]} and {source_tokens.shape[1]} instead."
        )
    if target_text_index.shape != (len(target_tokens),) or not np.issubdtype(target_text_index.dtype, np.integer):
        raise InputError(
            f"The 'target_text_index' parameter of maxsim_score must be an int array with one entry per target "
            f"token, shape ({len(target_tokens)},). Got {target_text_index.dtype} shape {target_text_index.shape} "
            "instead."
        )
    check_choice("maxsim_score", "backend", backend, BACKENDS)
    best, _ = nearest_neighbors(target_tokens, source_tokens, 1, metric="ip", backend=backend)
    _, text = np.unique(target_text_index, return_inverse=True)
    per_text = np.bincount(text, weights=best[:, 0].astype(np.float64)) / np.bincount(text)
    return float(per_text.mean())
