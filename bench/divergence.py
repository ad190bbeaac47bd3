"""``python -m bench divergence``: cost of the divergence-based task-pair scores, one real target against 30 real
sources.

Target: sst2. Sources: mr, then the first 29 other single-text tasks with a train split (sorted by name;
emobank_valence is a regression task, so OTDD skips it). Each task: a seeded sample of 500 training texts embedded with
all-MiniLM-L6-v2 (d = 384), cached in /tmp/transferscope-bench/. One ``target_context`` per target, then every
measure of ``transfer.divergence.MEASURES`` scores every source through ``score_pair`` at its default options.
Reports seconds per measure (all sources) and milliseconds per pair, and, as a sanity check of orientation, the
rank of mr (a near-copy of sst2) among the sources (1 = closest). Target: the cheap measures (centroid, MMD,
Fréchet, k-NN KL both ways, JS, sliced W) take <= 10 s together for the 30 sources.
``--quick``: 8 sources, 200 texts per task.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bench.common import SHARED_TASKS, emit

CACHE = Path("/tmp/transferscope-bench")
TARGET = "sst2"
CHEAP = ("centroid-cosine", "knn-kl", "knn-kl-reverse", "js", "mmd", "frechet", "sliced-wasserstein")


def source_names(count: int) -> list[str]:
    manifest = json.loads((SHARED_TASKS / "manifest.json").read_text())
    single = [t["task"] for t in manifest if t["input"] == "single" and t["counts"].get("train")]
    return ["mr", *sorted(name for name in single if name not in (TARGET, "mr"))][:count]


def embedded(tasks: list[str], n: int) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """{task: (embeddings [≤ n, 384], class labels or None for regression)}, cached per (task, n)."""
    from store.task_files import load_task_dir

    CACHE.mkdir(parents=True, exist_ok=True)
    encoder = None
    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for name in tasks:
        path = CACHE / f"divergence_{name}_{n}.npz"
        if not path.exists():
            from transfer.embeddings import TextEncoder

            encoder = encoder or TextEncoder(device="cpu")
            task = load_task_dir(SHARED_TASKS / name)
            table = task.split("train")
            pick = np.sort(np.random.default_rng(0).choice(table.num_rows, min(n, table.num_rows), replace=False))
            texts = table.column("text").to_pylist()
            x = encoder.encode([texts[i] for i in pick])
            labels = table.column("label").to_numpy()[pick] if task.kind == "classification" else np.array([])
            np.savez(path, x=x, y=labels)
        with np.load(path) as data:
            out[name] = (data["x"], data["y"] if len(data["y"]) else None)
    return out


def run(quick: bool = False) -> None:
    from transfer.divergence import MEASURES, score_pair, target_context

    n, n_sources = (200, 8) if quick else (500, 30)
    names = source_names(n_sources)
    data = embedded([TARGET, *names], n)
    start = time.perf_counter()
    context = target_context(*data[TARGET])
    context_seconds = time.perf_counter() - start
    score_pair("mmd", data[names[0]][0], context)  # warm-up: imports, FAISS, BLAS
    seconds, per_pair_ms, rank_of_mr = {}, {}, {}
    for name, measure in MEASURES.items():
        scored = {s: data[s] for s in names if not measure.needs_labels or data[s][1] is not None}
        start = time.perf_counter()
        scores = {s: score_pair(name, x, context, source_y=y) for s, (x, y) in scored.items()}
        seconds[name] = time.perf_counter() - start
        per_pair_ms[name] = 1000 * seconds[name] / len(scored)
        order = sorted(scores, key=scores.__getitem__, reverse=measure.higher_is_better)
        rank_of_mr[name] = order.index("mr") + 1 if "mr" in order else None
    cheap_total = sum(seconds[name] for name in CHEAP)
    emit(
        {
            "bench": "divergence",
            "ours": cheap_total,
            "target": TARGET,
            "sources": len(names),
            "texts_per_task": n,
            "context_seconds": context_seconds,
            "cheap_total_seconds": cheap_total,
            "seconds": seconds,
            "per_pair_ms": per_pair_ms,
            "rank_of_mr": rank_of_mr,
            "quick": quick,
            "targets": {"cheap_total_seconds": "<= 10"},
        }
    )
