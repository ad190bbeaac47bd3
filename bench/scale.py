"""``python -m bench scale``: a pool of 1,000,000 examples through the store, FAISS, divergence and quantised GIO.

Every step runs in a fresh Python process (so its peak RSS, ``ru_maxrss`` of that process, is its own; GB = 10⁹
bytes) on a temporary workspace under /tmp, deleted at the end. The pool never exists as one array except where the
step needs it (quantised GIO clusters the whole pool; the FAISS indexes hold every vector by construction).

Inputs: real texts of the shared tasks embedded with all-MiniLM-L6-v2 (d = 384, unit norm), cached by ``bench.gio``
(``inputs``: a pool of 10,000 distinct training texts of SST-2, TweetEval emotion, AG News, TREC, Banking77 and a
target of 3,000 MR texts not in the pool) and by ``bench.divergence`` (``embedded``: 500 texts of each of 31 real
tasks). The 1,000,000 pool vectors are those 10,000 real embeddings, each repeated 100 times with N(0, 0.01²) noise
per coordinate and re-normalised (``bench.gio.scale_pool``, one shard at a time, seeded by the shard number).

Steps:

- ``embed_speed``: the real encoder (``TextEncoder``, exact fp32, batch 64, max_length 128) on 1,000 real texts
  (``real_texts``), split by stride into 4 chunks, each encoded with one torch thread (texts/s per core) and with
  the default threads in turn (so both see the same load); the time to embed the whole pool on this machine is
  PROJECTED from the faster rate (embedding 1,000,000 texts would take about an hour here even on idle cores).
- ``catalog_shards``: 20 shards of 50,000 rows written through ``store.catalog.put_embeddings``, one catalog row
  each: task ``pool``, split ``shard-00000`` … ``shard-00019`` (zero-padded, so name order is row order; example ids
  ``pool-0000000`` … are global row numbers), the encoder's real cache parameters (model fingerprint, pooling,
  length, normalisation, precision: the vectors live in its space, next to real targets) and a content hash of how
  the shard was made. One shard in memory at a time. ``catalog_commit_seconds``: one empty catalog transaction
  (lock, commit, table snapshots), the part of a write that concurrent writers serialise on.
- ``faiss_flat``: ``faiss.IndexFlatIP`` (exact inner product = cosine) filled shard by shard from
  ``find_embeddings`` (checksum-verified reads), then k = 10 neighbours of 1,000 real MR target embeddings.
- ``faiss_ivf``: ``faiss.IndexIVFFlat`` (inner product, 1,024 lists) trained on a seeded sample of 51,200 rows
  (50 per list) picked across all shards in a first streaming pass, filled shard by shard in a second, searched with
  nprobe = 32; ``recall_at_10`` against the flat index's neighbours.
- ``divergence``: the pool against 100 targets, each a seeded random 400 of the 500 embedded training texts of one
  of 31 real tasks (sst2 and ``bench.divergence``'s 30 sources, in turn; targets 31+ reuse a task with another
  subset). One streaming pass over the shards keeps a float64 running sum (the pool mean, exact) and a seeded random
  2,000-row sample of the pool. Per target: ``target_context``, then centroid-cosine (the exact pool mean against
  the target, ``centroid_cosine``), MMD (``score_pair("mmd")``, RBF at the target's median bandwidth) and k-NN KL
  (``score_pair("knn-kl")``, KL(target ‖ pool), k = 5), both on the 2,000-row pool sample (the measures' default
  ``max_examples``).
- ``gio_quantized``: the pool read back from the shards into one float32 array [1,000,000, 384] (the step needs
  it), then ``selection.gio.gio_quantized`` with ``bench gio``'s scale parameters: the 3,000 MR target embeddings,
  K = 1,500 pool clusters, 20 k-means iterations, budget 5%, one torch thread; phase times from the result.
- ``dask_overhead``: a ``distributed.LocalCluster(n_workers=2, threads_per_worker=1)``; its start-up, 100
  trivial tasks mapped at once, and 20 sequential submit-and-wait round trips.

``projected_dask``: a worker is a machine like this one (2 cores, the measured costs as they are). For W workers,
each parallel phase costs ceil(tasks / W) × (measured cost per task + the measured round-trip per task, which also
covers the scheduler's per-task overhead), plus the serial parts: embedding = one task per shard (50,000 texts at
the measured faster rate + its Parquet write) + one catalog commit per shard (serialised by the workspace
lock); IVF = streaming sample and fill per shard, training and search serial; flat = per-shard sub-index fill and
search (exact, merged top-k); divergence = per-shard pass, then one task per target; quantised GIO stays serial
(k-means over the whole pool). Not included: moving IVF sub-indexes to merge them, the cluster's start-up.

``--quick``: 20,000 rows in 4 shards of 5,000, 5 targets (150 of 200 texts of 5 tasks), 100 texts for the encoder,
IVF with 64 lists and 100 queries, GIO with K = 100 and a 200-text target; no JSON file is written.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import emit, real_texts
from bench.gio import NOISE, ROOT, inputs, scale_pool

POOL_TASK = "pool"
WORKERS = (8, 32)
K_NEIGHBOURS = 10
CHUNKS = 4  # the encoder's texts, split by stride into chunks timed in turn at each thread count


# ------------------------------------------------------------------------------------------------ helpers


def peak_rss_gb() -> float:
    """This process's peak resident set size so far, in GB (10⁹ bytes); Linux reports ``ru_maxrss`` in KiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def layout(spec: dict[str, Any]) -> list[tuple[int, int]]:
    """(start, stop) row ranges of the shards, in order."""
    n, size = spec["n_rows"], spec["shard_rows"]
    return [(start, min(n, start + size)) for start in range(0, n, size)]


def shard_key(spec: dict[str, Any], index: int) -> Any:
    """The catalog key of shard ``index``: the encoder's real cache parameters, task ``pool``, split
    ``shard-NNNNN`` and a content hash of how the shard's vectors were made."""
    from store.embeddings import EmbeddingKey
    from store.runs import config_hash

    start, stop = layout(spec)[index]
    made = {"bench": "scale", "base": Path(spec["base"]).name, "noise": NOISE, "seed": index, "rows": [start, stop]}
    model = spec["model"]
    return EmbeddingKey(
        model=model["name"],
        task=POOL_TASK,
        split=f"shard-{index:05d}",
        content_hash=config_hash(made),
        **model["params"],
    )


def read_shards(spec: dict[str, Any], log: dict[str, float]) -> Any:
    """Yield (start, stop, float32 [rows, d]) shard by shard through ``find_embeddings``; read time into ``log``."""
    from store.embeddings import find_embeddings
    from store.workspace import Workspace

    ws = Workspace(spec["root"])
    for index, (start, stop) in enumerate(layout(spec)):
        tick = time.perf_counter()
        found = find_embeddings(ws, shard_key(spec, index))
        if found is None:
            raise RuntimeError(f"Shard {index} is missing from the catalog in {spec['root']}.")
        ids, vectors = found
        if len(ids) != stop - start or ids[0] != f"pool-{start:07d}":
            raise RuntimeError(f"Shard {index} holds rows {ids[0]}… ({len(ids)}), expected pool-{start:07d}….")
        log["read_seconds"] = log.get("read_seconds", 0.0) + time.perf_counter() - tick
        yield start, stop, vectors
        del found, ids, vectors


def pick_rows(n_rows: int, n_pick: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n_rows, min(n_pick, n_rows), replace=False))


def streamed_sample(spec: dict[str, Any], pick: np.ndarray, d: int, log: dict[str, float]) -> np.ndarray:
    """The pool rows ``pick`` (sorted global indices), gathered in one streaming pass over the shards."""
    sample = np.empty((len(pick), d), dtype=np.float32)
    filled = 0
    for start, stop, vectors in read_shards(spec, log):
        local = pick[(pick >= start) & (pick < stop)] - start
        sample[filled : filled + len(local)] = vectors[local]
        filled += len(local)
    return sample


def target_embeddings(spec: dict[str, Any], n: int) -> np.ndarray:
    with np.load(spec["base"]) as data:
        return np.ascontiguousarray(data["target"][:n], dtype=np.float32)


# -------------------------------------------------------------------------------------------------- steps


def step_embed_speed(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from transfer.embeddings import TextEncoder

    texts = real_texts(spec["n_texts"])
    tick = time.perf_counter()
    encoder = TextEncoder(device="cpu")
    load_seconds = time.perf_counter() - tick
    encoder.encode(texts[:64])  # warm-up
    default_threads = torch.get_num_threads()
    settings = sorted({1, default_threads})
    seconds = dict.fromkeys(settings, 0.0)
    for chunk in range(CHUNKS):  # interleaved, so both settings see the same load; same texts for each
        for threads in settings:
            torch.set_num_threads(threads)
            tick = time.perf_counter()
            encoder.encode(texts[chunk::CHUNKS])
            seconds[threads] += time.perf_counter() - tick
    torch.set_num_threads(default_threads)
    rates = {threads: len(texts) / value for threads, value in seconds.items()}
    best = max(rates, key=rates.__getitem__)
    return {
        "seconds": seconds[best],
        "n_texts": len(texts),
        "texts_per_s": rates[best],
        "best_torch_threads": best,
        "texts_per_s_per_core": rates[1],
        "texts_per_s_by_threads": {str(threads): rate for threads, rate in rates.items()},
        "model_load_seconds": load_seconds,
        "projected_pool_seconds": spec["n_rows"] / rates[best],
        "projected_basis": f"PROJECTED, not run: {spec['n_rows']} texts / {rates[best]:.1f} texts/s (the faster of "
        f"{' and '.join(map(str, settings))} torch threads, measured interleaved in {CHUNKS} chunks)",
        "model": {"name": encoder.model_name, "params": encoder.cache_params()},
        "config": {"precision": "exact", "batch_size": encoder.batch_size, "max_length": encoder.max_length},
    }


def step_catalog_shards(spec: dict[str, Any]) -> dict[str, Any]:
    from store.embeddings import put_embeddings
    from store.workspace import Workspace

    ws = Workspace(spec["root"])
    with np.load(spec["base"]) as data:
        base = data["pool"]
    make_seconds = write_seconds = 0.0
    paths = []
    for index, (start, stop) in enumerate(layout(spec)):
        tick = time.perf_counter()
        vectors = scale_pool(base, stop - start, seed=index)
        ids = [f"pool-{row:07d}" for row in range(start, stop)]
        tock = time.perf_counter()
        make_seconds += tock - tick
        paths.append(put_embeddings(ws, shard_key(spec, index), ids, vectors, seconds=None))
        write_seconds += time.perf_counter() - tock
        del vectors, ids
    commits = []
    for _ in range(3):
        tick = time.perf_counter()
        with ws.transaction():
            pass
        commits.append(time.perf_counter() - tick)
    rows = ws.read("find_embedding_rows")
    shard_bytes = sum(ws.path(p).stat().st_size for p in paths)
    return {
        "seconds": write_seconds,
        "rows_per_s": spec["n_rows"] / write_seconds,
        "n_shards": len(paths),
        "catalog_rows": int((rows["task"] == POOL_TASK).sum()),
        "shard_bytes": shard_bytes,
        "bytes_per_row": shard_bytes / spec["n_rows"],
        "workspace_bytes": sum(f.stat().st_size for f in Path(spec["root"]).rglob("*") if f.is_file()),
        "catalog_commit_seconds": statistics.median(commits),
        "make_vectors_seconds": make_seconds,
        "d": int(base.shape[1]),
        "note": "seconds = put_embeddings over all shards (Parquet zstd + checksum + catalog row); making the "
        "perturbed vectors (standing in for the encoder) is make_vectors_seconds",
    }


def step_faiss_flat(spec: dict[str, Any]) -> dict[str, Any]:
    import faiss

    log: dict[str, float] = {}
    index = faiss.IndexFlatIP(spec["d"])
    add_seconds = 0.0
    for _, _, vectors in read_shards(spec, log):
        tick = time.perf_counter()
        index.add(vectors)
        add_seconds += time.perf_counter() - tick
    queries = target_embeddings(spec, spec["n_queries"])
    tick = time.perf_counter()
    _, neighbours = index.search(queries, K_NEIGHBOURS)
    search_seconds = time.perf_counter() - tick
    np.save(Path(spec["scratch"]) / "flat_neighbours.npy", neighbours)
    return {
        "seconds": log["read_seconds"] + add_seconds + search_seconds,
        "index": "IndexFlatIP (exact)",
        "n_indexed": int(index.ntotal),
        "read_seconds": log["read_seconds"],
        "add_seconds": add_seconds,
        "build_seconds": log["read_seconds"] + add_seconds,
        "search_seconds": search_seconds,
        "n_queries": len(queries),
        "k": K_NEIGHBOURS,
        "queries_per_s": len(queries) / search_seconds,
        "faiss_threads": faiss.omp_get_max_threads(),
    }


def step_faiss_ivf(spec: dict[str, Any]) -> dict[str, Any]:
    import faiss

    d, nlist = spec["d"], spec["nlist"]
    sample_log: dict[str, float] = {}
    tick = time.perf_counter()
    sample = streamed_sample(spec, pick_rows(spec["n_rows"], 50 * nlist, seed=0), d, sample_log)
    sample_seconds = time.perf_counter() - tick
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    tick = time.perf_counter()
    index.train(sample)
    train_seconds = time.perf_counter() - tick
    n_train = len(sample)
    del sample
    log: dict[str, float] = {}
    add_seconds = 0.0
    for _, _, vectors in read_shards(spec, log):
        tick = time.perf_counter()
        index.add(vectors)
        add_seconds += time.perf_counter() - tick
    index.nprobe = spec["nprobe"]
    queries = target_embeddings(spec, spec["n_queries"])
    tick = time.perf_counter()
    _, neighbours = index.search(queries, K_NEIGHBOURS)
    search_seconds = time.perf_counter() - tick
    exact = np.load(Path(spec["scratch"]) / "flat_neighbours.npy")
    recall = np.mean([len(set(a) & set(b)) / K_NEIGHBOURS for a, b in zip(neighbours, exact, strict=True)])
    return {
        "seconds": sample_seconds + train_seconds + log["read_seconds"] + add_seconds + search_seconds,
        "index": f"IndexIVFFlat inner product, nlist {nlist}, trained on a streamed sample of {n_train} rows",
        "n_indexed": int(index.ntotal),
        "sample_seconds": sample_seconds,
        "train_seconds": train_seconds,
        "read_seconds": log["read_seconds"],
        "add_seconds": add_seconds,
        "build_seconds": sample_seconds + train_seconds + log["read_seconds"] + add_seconds,
        "search_seconds": search_seconds,
        "n_queries": len(queries),
        "k": K_NEIGHBOURS,
        "nprobe": spec["nprobe"],
        "queries_per_s": len(queries) / search_seconds,
        "recall_at_10": float(recall),
        "faiss_threads": faiss.omp_get_max_threads(),
    }


def step_divergence(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.divergence import embedded
    from transfer.divergence import MEASURES, centroid_cosine, score_pair, target_context

    tasks = embedded(spec["target_tasks"], spec["task_rows"])
    names = list(spec["target_tasks"])
    d, n = spec["d"], spec["n_rows"]
    pick = pick_rows(n, spec["pool_sample"], seed=0)
    log: dict[str, float] = {}
    total = np.zeros(d, dtype=np.float64)
    sample = np.empty((len(pick), d), dtype=np.float32)
    filled = 0
    tick = time.perf_counter()
    for start, stop, vectors in read_shards(spec, log):
        total += vectors.sum(axis=0, dtype=np.float64)
        local = pick[(pick >= start) & (pick < stop)] - start
        sample[filled : filled + len(local)] = vectors[local]
        filled += len(local)
    stream_seconds = time.perf_counter() - tick
    mean = (total / n)[None, :]
    measure_seconds = {"context": 0.0, "centroid-cosine": 0.0, "mmd": 0.0, "knn-kl": 0.0}
    per_target: list[float] = []
    scores: dict[str, list[float]] = {name: [] for name in ("centroid-cosine", "mmd", "knn-kl")}
    for t in range(spec["n_targets"]):
        x = tasks[names[t % len(names)]][0]
        rows = np.random.default_rng(t + 1).choice(len(x), min(spec["target_rows"], len(x)), replace=False)
        target = x[rows]
        start_target = tick = time.perf_counter()
        context = target_context(target)
        measure_seconds["context"] += time.perf_counter() - tick
        for name in scores:
            tick = time.perf_counter()
            if name == "centroid-cosine":
                scores[name].append(centroid_cosine(mean, target))
            else:
                scores[name].append(score_pair(name, sample, context))
            measure_seconds[name] += time.perf_counter() - tick
        per_target.append(time.perf_counter() - start_target)
    closest = {
        name: names[(int(np.argmax(v)) if MEASURES[name].higher_is_better else int(np.argmin(v))) % len(names)]
        for name, v in scores.items()
    }
    return {
        "seconds": stream_seconds + sum(per_target),
        "stream_seconds": stream_seconds,
        "read_seconds": log["read_seconds"],
        "n_targets": len(per_target),
        "targets_seconds": sum(per_target),
        "per_target_seconds": {
            "mean": statistics.mean(per_target),
            "median": statistics.median(per_target),
            "max": max(per_target),
            "first": per_target[0],
        },
        "per_measure_seconds": measure_seconds,
        "measures": {
            "centroid-cosine": "exact pool mean (float64 running sum over the shards) vs the whole target",
            "mmd": f"score_pair on a seeded random {len(pick)}-row pool sample, RBF bandwidth from the target",
            "knn-kl": f"score_pair on the same {len(pick)}-row pool sample, KL(target ‖ pool), k = 5",
        },
        "targets": f"{spec['n_targets']} seeded random subsets of {spec['target_rows']} of the {spec['task_rows']} "
        f"embedded training texts of {len(names)} real tasks, in turn ({', '.join(names[:3])}, …)",
        "score_range": {name: [float(min(v)), float(max(v))] for name, v in scores.items()},
        "closest_target_task": closest,
    }


def step_gio_quantized(spec: dict[str, Any]) -> dict[str, Any]:
    import faiss
    import torch

    from selection.gio import gio_kl, gio_quantized

    torch.set_num_threads(1)
    log: dict[str, float] = {}
    pool = np.empty((spec["n_rows"], spec["d"]), dtype=np.float32)
    for start, stop, vectors in read_shards(spec, log):
        pool[start:stop] = vectors
    target = target_embeddings(spec, spec["n_target"])
    rss_before = peak_rss_gb()
    tick = time.perf_counter()
    result = gio_quantized(target, pool, n_pool_clusters=spec["n_clusters"], budget=spec["budget"], seed=0)
    seconds = time.perf_counter() - tick
    rss_after = peak_rss_gb()
    rng = np.random.default_rng(0)
    sample = min(5000, len(result.selected))
    return {
        "seconds": seconds,
        "read_seconds": log["read_seconds"],
        "phase_seconds": {key: value for key, value in result.info.items() if key.endswith("_seconds")},
        "n_pool": len(pool),
        "n_target": len(target),
        "n_pool_clusters": spec["n_clusters"],
        "budget": spec["budget"],
        "selected": int(len(result.selected)),
        "clusters_chosen": int(len(result.cluster_order)),
        "empty_clusters": int(result.info["n_empty_clusters"]),
        "peak_rss_gb_after_loading_pool": rss_before,
        "peak_rss_gb_after_gio": rss_after,
        "kl_sample": sample,
        "kl_selected_sample": gio_kl(target, pool[rng.choice(result.selected, sample, replace=False)]),
        "kl_random_sample": gio_kl(target, pool[rng.choice(len(pool), sample, replace=False)]),
        "threads": {"torch": 1, "faiss_omp": faiss.omp_get_max_threads()},
    }


def step_dask_overhead(spec: dict[str, Any]) -> dict[str, Any]:
    import logging

    import distributed
    from distributed import Client, LocalCluster

    tick = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    client = Client(cluster)
    startup = time.perf_counter() - tick
    try:
        client.submit(abs, -1, pure=False).result()  # warm-up
        n_tasks = spec["n_tasks"]
        tick = time.perf_counter()
        client.gather(client.map(abs, range(-n_tasks, 0), pure=False))
        batch = time.perf_counter() - tick
        trips = []
        for i in range(20):
            tick = time.perf_counter()
            client.submit(abs, -i, pure=False).result()
            trips.append(time.perf_counter() - tick)
    finally:
        client.close()
        cluster.close()
    return {
        "seconds": batch,
        "cluster_start_seconds": startup,
        "n_tasks": n_tasks,
        "batch_seconds_per_task": batch / n_tasks,
        "round_trip_seconds": statistics.median(trips),
        "distributed": distributed.__version__,
        "note": "peak_rss_gb is the client process (the scheduler runs in it; the workers are separate processes)",
    }


STEPS = {
    "embed_speed": step_embed_speed,
    "catalog_shards": step_catalog_shards,
    "faiss_flat": step_faiss_flat,
    "faiss_ivf": step_faiss_ivf,
    "divergence": step_divergence,
    "gio_quantized": step_gio_quantized,
    "dask_overhead": step_dask_overhead,
}


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one step in this (fresh) process; its result with this process's peak RSS."""
    result = STEPS[spec["step"]](spec)
    return result | {"peak_rss_gb": peak_rss_gb()}


def in_fresh_process(spec: dict[str, Any]) -> dict[str, Any]:
    code = "import json, sys; from bench.scale import child; print(json.dumps(child(json.load(sys.stdin))))"
    tick = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(spec), capture_output=True, text=True, cwd=ROOT, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scale step {spec['step']} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - tick
    print(
        f"[bench scale] {spec['step']}: {result['seconds']:.1f} s, peak RSS {result['peak_rss_gb']:.2f} GB",
        file=sys.stderr,
        flush=True,
    )
    return result


# ---------------------------------------------------------------------------------------------- projection


def project(steps: dict[str, Any], n_shards: int, shard_rows: int) -> dict[str, Any]:
    """Dask time for W workers (each a machine like this one) from the measured per-shard and per-target costs."""
    overhead = steps["dask_overhead"]["round_trip_seconds"]
    embed, store = steps["embed_speed"], steps["catalog_shards"]
    flat, ivf, div, gio = steps["faiss_flat"], steps["faiss_ivf"], steps["divergence"], steps["gio_quantized"]
    commit = store["catalog_commit_seconds"]
    per_task = {
        "embed_and_store": shard_rows / embed["texts_per_s"] + max(store["seconds"] / n_shards - commit, 0.0),
        "faiss_ivf": (ivf["sample_seconds"] + ivf["read_seconds"] + ivf["add_seconds"]) / n_shards,
        "faiss_flat": flat["seconds"] / n_shards,
        "divergence_shard": div["stream_seconds"] / n_shards,
        "divergence_target": div["per_target_seconds"]["mean"],
    }
    serial = {
        "embed_and_store": n_shards * commit,
        "faiss_ivf": ivf["train_seconds"] + ivf["search_seconds"],
        "faiss_flat": 0.0,
        "divergence": 0.0,
        "gio_quantized": gio["read_seconds"] + gio["seconds"],
    }
    this_machine = {
        "embed_and_store": embed["projected_pool_seconds"] + store["seconds"],
        "faiss_ivf": ivf["seconds"],
        "faiss_flat": flat["seconds"],
        "divergence": div["seconds"],
        "gio_quantized": gio["read_seconds"] + gio["seconds"],
    }

    def chain(tasks: int, cost: float, workers: int) -> float:
        return math.ceil(tasks / workers) * (cost + overhead)

    workers_out: dict[str, Any] = {}
    for w in WORKERS:
        seconds = {
            "embed_and_store": chain(n_shards, per_task["embed_and_store"], w) + serial["embed_and_store"],
            "faiss_ivf": chain(n_shards, per_task["faiss_ivf"], w) + serial["faiss_ivf"],
            "faiss_flat": chain(n_shards, per_task["faiss_flat"], w),
            "divergence": chain(n_shards, per_task["divergence_shard"], w)
            + chain(div["n_targets"], per_task["divergence_target"], w),
            "gio_quantized": serial["gio_quantized"],
        }
        workers_out[str(w)] = {"seconds": seconds, "total_seconds": sum(seconds.values()), "rounds": -(-n_shards // w)}
    return {
        "worker": "a machine like this one (2 cores; costs as measured here, under the same load)",
        "formula": "ceil(tasks / W) × (cost per task + round trip per task) + serial parts",
        "overhead_per_task_seconds": overhead,
        "overhead_source": "measured: median submit-and-wait round trip on a distributed.LocalCluster(n_workers=2)",
        "n_shards": n_shards,
        "cost_per_task_seconds": per_task,
        "serial_seconds": serial,
        "this_machine_seconds": this_machine,
        "this_machine_total_seconds": sum(this_machine.values()),
        "workers": workers_out,
        "not_included": "Dask cluster start-up, moving IVF sub-indexes to merge them (≈ 1.5 GB), result transfer; "
        "quantised GIO is not split (FAISS k-means over the whole pool) and stays serial",
        "embedding_is_projected": True,
    }


# ------------------------------------------------------------------------------------------------------- run


def run(quick: bool = False) -> None:
    from bench.divergence import TARGET, source_names

    if quick:
        sizes = {"n_rows": 20_000, "shard_rows": 5_000, "n_texts": 100, "nlist": 64, "nprobe": 8, "n_queries": 100}
        div = {"n_targets": 5, "target_tasks": [TARGET, *source_names(4)], "task_rows": 200, "target_rows": 150}
        gio = {"n_clusters": 100, "n_target": 200}
        base = inputs(1000, 200)
    else:
        sizes = {"n_rows": 1_000_000, "shard_rows": 50_000, "n_texts": 1000, "nlist": 1024, "nprobe": 32}
        sizes["n_queries"] = 1000
        div = {"n_targets": 100, "target_tasks": [TARGET, *source_names(30)], "task_rows": 500, "target_rows": 400}
        gio = {"n_clusters": 1500, "n_target": 3000}
        base = inputs(10_000, 3000)
    load_start = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="transferscope-scale-", dir="/tmp"))
    spec: dict[str, Any] = sizes | {"root": str(scratch / "workspace"), "scratch": str(scratch), "base": str(base)}
    steps: dict[str, Any] = {}
    try:
        steps["embed_speed"] = in_fresh_process(spec | {"step": "embed_speed"})
        spec["model"] = steps["embed_speed"].pop("model")
        steps["catalog_shards"] = in_fresh_process(spec | {"step": "catalog_shards"})
        spec["d"] = steps["catalog_shards"]["d"]
        steps["faiss_flat"] = in_fresh_process(spec | {"step": "faiss_flat"})
        steps["faiss_ivf"] = in_fresh_process(spec | {"step": "faiss_ivf"})
        steps["divergence"] = in_fresh_process(spec | div | {"step": "divergence", "pool_sample": 2000})
        steps["gio_quantized"] = in_fresh_process(spec | gio | {"step": "gio_quantized", "budget": 0.05})
        steps["dask_overhead"] = in_fresh_process({"step": "dask_overhead", "n_tasks": 100})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    n_shards = steps["catalog_shards"]["n_shards"]
    max_rss = max(step["peak_rss_gb"] for step in steps.values())
    emit(
        {
            "bench": "scale",
            "quick": quick,
            "n_rows": sizes["n_rows"],
            "d": spec["d"],
            "shard_rows": sizes["shard_rows"],
            "n_shards": n_shards,
            "pool": f"{Path(base).name}: real MiniLM embeddings, each repeated with N(0, {NOISE}²) noise and "
            "re-normalised (bench.gio.scale_pool, seeded per shard)",
            "unit": "seconds of work per step (process_seconds adds the fresh process's start-up and imports); "
            "peak_rss_gb = ru_maxrss of the step's own process, GB = 1e9 bytes",
            "steps": steps,
            "max_peak_rss_gb": max_rss,
            "under_8gb": max_rss < 8.0,
            "projected_dask": project(steps, n_shards, sizes["shard_rows"]),
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
            "cpu_count": os.cpu_count(),
        }
    )
