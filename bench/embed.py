"""``python -m bench embed``: TransferScope's embedding vs sentence-transformers' ``encode``.

Same model (all-MiniLM-L6-v2), texts (5,000 real texts from the shared tasks; 500 with ``--quick``), batch size
64, max length 128, torch threads. Exact mode must agree (cosine > 0.9999 per row) at ratio >= 1.0; fast mode
(int8 ONNX Runtime on CPU) must reach ratio >= 1.5 with mean cosine >= 0.99 and 1st-percentile >= 0.98 against
exact mode. Also reports texts/s, tokens/s and the time of a second run served from the workspace cache.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import pandas as pd
import torch

from bench.common import emit, interleaved_medians, real_texts


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def cache_hit_seconds(texts: list[str], vectors: np.ndarray, encoder) -> float:
    """Store the embeddings in a fresh workspace as the flow does, then time the lookup a second run makes."""
    from store.catalog import put_task
    from store.embeddings import EmbeddingKey, find_embeddings, put_embeddings
    from store.task_files import task_from_table
    from store.workspace import Workspace

    labels = ["a", "b"] * (len(texts) // 2) + ["a"] * (len(texts) % 2)
    task = task_from_table(pd.DataFrame({"text": texts, "label": labels}), "bench")
    with tempfile.TemporaryDirectory() as root:
        ws = Workspace(root)
        put_task(ws, task)
        key = EmbeddingKey(
            model=encoder.model_name,
            task="bench",
            split="train",
            content_hash=task.split_hash("train"),
            **encoder.cache_params(),
        )
        put_embeddings(ws, key, task.table.column("example_id").to_pylist(), vectors)
        start = time.perf_counter()
        hit = find_embeddings(ws, key)
        seconds = time.perf_counter() - start
        assert hit is not None and np.array_equal(hit[1], vectors)
    return seconds


def run(quick: bool = False) -> None:
    from sentence_transformers import SentenceTransformer

    from transfer.embeddings import TextEncoder

    n, repeats, batch_size, max_length = (500, 2, 64, 128) if quick else (5000, 3, 64, 128)
    texts = real_texts(n)
    exact = TextEncoder(max_length=max_length, batch_size=batch_size, device="cpu")
    fast = TextEncoder(max_length=max_length, batch_size=batch_size, device="cpu", precision="fast")
    peer = SentenceTransformer(str(exact.model_path), device="cpu")
    peer.max_seq_length = max_length
    outputs: dict[str, np.ndarray] = {}

    def timed(name, fn):
        def call():
            outputs[name] = fn()

        return call

    medians = interleaved_medians(
        {
            "exact": timed("exact", lambda: exact.encode(texts)),
            "fast": timed("fast", lambda: fast.encode(texts)),
            "peer": timed("peer", lambda: peer.encode(texts, batch_size=batch_size, normalize_embeddings=True)),
        },
        repeats,
    )
    exact_vs_peer = cosine_rows(outputs["exact"], outputs["peer"])
    fast_vs_exact = cosine_rows(outputs["fast"], outputs["exact"])
    tokens = sum(len(ids) for ids in exact.tokenize(texts)["input_ids"])
    result = {
        "bench": "embed",
        "ours": medians["exact"],
        "peer": "sentence-transformers.encode",
        "peer_value": medians["peer"],
        "ratio": medians["peer"] / medians["exact"],
        "fast_seconds": medians["fast"],
        "fast_ratio": medians["peer"] / medians["fast"],
        "fast_backend": fast.backend,
        "exact_min_cosine_to_peer": float(exact_vs_peer.min()),
        "fast_mean_cosine_to_exact": float(fast_vs_exact.mean()),
        "fast_p1_cosine_to_exact": float(np.percentile(fast_vs_exact, 1)),
        "texts": n,
        "tokens": tokens,
        "texts_per_s": {k: n / v for k, v in medians.items()},
        "tokens_per_s": {k: tokens / v for k, v in medians.items()},
        "cache_hit_seconds": cache_hit_seconds(texts, outputs["exact"], exact),
        "batch_size": batch_size,
        "max_length": max_length,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "quick": quick,
        "targets": {"ratio": ">= 1.0", "fast_ratio": ">= 1.5", "fast_mean_cosine": ">= 0.99", "fast_p1": ">= 0.98"},
    }
    emit(result)
