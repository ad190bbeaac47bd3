"""Token-embedding cache for MaxSim (`transfer.maxsim`): the token vectors of a seeded sample of one task split.

Layout: ``tokens/<cache_key>.npz`` with ``vectors`` (float32 [n_tokens, d]) and ``text_index`` (int64 [n_tokens]).
The key is a hash of everything that decides the numbers, so a file is never stale, only unused; it is written to
a temporary file beside its final name and renamed into place (`store.artifacts.replace_atomically`). There is no
catalog row: the file name is the lookup.
"""

from __future__ import annotations

import numpy as np

from store.artifacts import replace_atomically
from store.runs import config_hash
from store.workspace import Workspace


def tokens_key(model_fp: str, content_hash: str, split: str, max_texts: int, seed: int, max_length: int) -> str:
    """The cache key: encoder fingerprint, the split's content hash (`Task.split_hash`), the split, the sample
    (``max_texts`` rows drawn with ``seed`` by `transfer.finetune.sample_indices`) and the tokens per text."""
    return config_hash(
        {
            "model_fp": model_fp,
            "content_hash": content_hash,
            "split": split,
            "max_texts": max_texts,
            "seed": seed,
            "max_length": max_length,
        }
    )


def load_tokens(ws: Workspace, cache_key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(vectors float32 [n_tokens, d], text index int64 [n_tokens]) of a cached sample, or None."""
    path = ws.path(f"tokens/{cache_key}.npz")
    if not path.exists():
        return None
    with np.load(path) as stored:
        return stored["vectors"], stored["text_index"]


def save_tokens(ws: Workspace, cache_key: str, vectors: np.ndarray, text_index: np.ndarray) -> None:
    """Store a sample's token vectors [n_tokens, d] and text index [n_tokens] atomically under ``cache_key``."""
    with replace_atomically(ws.path(f"tokens/{cache_key}.npz")) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, vectors=np.asarray(vectors, np.float32), text_index=np.asarray(text_index, np.int64))
