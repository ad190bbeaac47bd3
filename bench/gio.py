"""``python -m bench gio``: TransferScope's GIO vs grad-info-opt's ``GIOKL.fit``, and the quantised mode at scale.

Inputs: real texts embedded with all-MiniLM-L6-v2 (d = 384, float32, unit norm), cached in /tmp/transferscope-bench/:
a pool of 10,000 distinct training texts of the shared tasks (``bench.common.real_texts``: SST-2, TweetEval emotion,
AG News, TREC, Banking77, round-robin) and a target of MR training texts that are not in the pool (the first
1,000 for the comparison, 3,000 for the scale run).

Per iteration (one descent and one pick): both sides start from the same 20 unit-normalised uniform points
(``uniform_start(384, 20, seed=0)``, the reference's ``D``) with k = 5, lr 0.01, 50 descent steps (150 on the first
pick), v from the target mean, ``stop_criterion="increase"`` and ``max_iter=3``: 5 iterations (4 kept picks and
the pick past ``max_iter``). The peer runs in .venv-peers with JAX float64 (as the fixtures; we compute in float64
too) and without Spark (``bench/record_gio_fixtures.py``), twice: the second (warm: JAX has compiled every op
shape) is ``peer_value``. Its setup (start KL and scale factor, before the first ``gradient_descend``) is timed
apart by wrapping that method and excluded, as ours (``info["setup_seconds"]``), so the ratio compares the loop:
seconds per iteration, peer / ours. Ours runs with one torch thread (each step's work, n·d = 384k, is too small to
share: with two threads it is many times slower when another process competes for the cores, as while this was
measured; ``ours_default_threads`` shows it) and is the median of repeats; ``ours_100_picks`` times
``stop="budget", budget=100``. ``same_picks``: the same pool rows in the same order over the compared iterations.
Target: ratio >= 100.

Scale: ``gio_quantized`` on 1,000,000 vectors (the pool's embeddings, each repeated 100 times with N(0, 0.01²)
noise per coordinate and re-normalised, made in float32 blocks) against the 3,000 target embeddings, K = 1,500 pool
clusters (FAISS k-means, 20 iterations), budget 5%, in a fresh process whose peak RSS (``ru_maxrss``, the pool
included) is reported with the phase times. ``--quick``: pool 1,000, target 200, ``max_iter=1``, 20 picks, scale
50,000 × 384 with K = 100; the peer is skipped, and says so, only when .venv-peers is missing.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import PEER_PYTHON, emit, real_texts, run_peer

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path("/tmp/transferscope-bench")
PARAMS: dict[str, Any] = {"k": 5, "lr": 0.01, "steps": 50, "stop": "increase", "v_init": "mean"}
NOISE = 0.01

PEER_SCRIPT = """
import importlib.metadata, json, sys, time
spec = json.load(sys.stdin)
start = time.perf_counter()
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from GIO.GIOKL import GIOKL
import_seconds = time.perf_counter() - start
data = np.load(spec["inputs"])
pool = jnp.asarray(data["pool"][: spec["n_pool"]].astype(np.float64))
target = jnp.asarray(data["target"][: spec["n_target"]].astype(np.float64))
start_set = jnp.asarray(np.asarray(spec["start"], dtype=np.float64))
gio = GIOKL.__new__(GIOKL)  # skip __init__'s SparkSession: only quantize/explode need Spark
gio.uniform_low, gio.uniform_high, gio.uniform_start_size, gio.dim, gio.random_init = -1, 1, 20, pool.shape[1], False
descend, nearest = gio.gradient_descend, gio._get_nearest
log = {}
def timed_descend(*args, **kwargs):
    log.setdefault("loop_start", time.perf_counter())
    tick = time.perf_counter()
    v = descend(*args, **kwargs).block_until_ready()
    log["descent"] = log.get("descent", 0.0) + time.perf_counter() - tick
    log["iterations"] = log.get("iterations", 0) + 1
    return v
def timed_nearest(sample, point):
    tick = time.perf_counter()
    index = nearest(sample, point).block_until_ready()
    log["nearest"] = log.get("nearest", 0.0) + time.perf_counter() - tick
    return index
gio.gradient_descend, gio._get_nearest = timed_descend, timed_nearest
runs = []
for _ in range(spec["repeats"]):
    log.clear()
    tick = time.perf_counter()
    W, kls, _ = gio.fit(pool, target, D=start_set, **spec["kwargs"])
    W = np.asarray(W)
    end = time.perf_counter()
    runs.append({"total": end - tick, "setup": log["loop_start"] - tick, "loop": end - log["loop_start"],
                 "descent": log["descent"], "nearest": log["nearest"], "iterations": log["iterations"]})
pool_np = np.asarray(pool)
index = [int(np.flatnonzero((pool_np == row).all(axis=1))[0]) for row in W[len(spec["start"]):]]
print(json.dumps({"peer": "grad-info-opt " + importlib.metadata.version("grad-info-opt"), "jax": jax.__version__,
                  "selected": index, "kl_trajectory": [float(k) for k in kls], "runs": runs,
                  "import_seconds": import_seconds}))
"""


def inputs(n_pool: int, n_target: int) -> Path:
    """Embedded pool and target texts (disjoint, each without repeats), cached as gio_<n_pool>_<n_target>.npz."""
    path = CACHE / f"gio_{n_pool}_{n_target}.npz"
    if not path.exists():
        from transfer.embeddings import TextEncoder

        pool_texts = list(dict.fromkeys(real_texts(n_pool + n_pool // 5)))[:n_pool]
        seen = set(pool_texts)
        mr_texts = dict.fromkeys(real_texts(n_target + n_target // 2, tasks=("mr",)))
        target_texts = [t for t in mr_texts if t not in seen][:n_target]
        if len(pool_texts) < n_pool or len(target_texts) < n_target:
            raise SystemExit(f"Not enough distinct texts for a pool of {n_pool} and a target of {n_target}.")
        vectors = TextEncoder(device="cpu").encode(pool_texts + target_texts)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, pool=vectors[:n_pool], target=vectors[n_pool:])
    return path


def per_iteration(info: dict[str, float]) -> float:
    """Seconds per iteration of a ``gio_select`` run, setup excluded."""
    return (info["descent_seconds"] + info["nearest_seconds"]) / info["iterations"]


def ours(pool: np.ndarray, target: np.ndarray, start: np.ndarray, repeats: int, **kwargs: Any) -> dict[str, Any]:
    """Median over ``repeats`` runs (after a warm-up) of ``gio_select``'s loop time per iteration."""
    from selection.gio import gio_select

    kwargs = PARAMS | kwargs
    gio_select(target, pool, start=start, **kwargs)
    runs = [gio_select(target, pool, start=start, **kwargs) for _ in range(repeats)]
    middle = sorted(runs, key=lambda r: per_iteration(r.info))[len(runs) // 2]
    return {
        "per_iteration": per_iteration(middle.info),
        "setup_seconds": middle.info["setup_seconds"],
        "descent_per_iteration": middle.info["descent_seconds"] / middle.info["iterations"],
        "nearest_per_iteration": middle.info["nearest_seconds"] / middle.info["iterations"],
        "iterations": int(middle.info["iterations"]),
        "all_per_iteration": [per_iteration(r.info) for r in runs],
        "result": middle,
    }


def scale_pool(base: np.ndarray, n: int, seed: int = 0, block: int = 50_000) -> np.ndarray:
    """[n, d] float32: row i is base[i mod len(base)] + N(0, NOISE²) noise, re-normalised; made block by block."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for s in range(0, n, block):
        rows = out[s : s + block]
        rows[:] = base[np.arange(s, s + len(rows)) % len(base)]
        rows += NOISE * rng.standard_normal(rows.shape, dtype=np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return out


def quantized_at_scale(path: str, n_pool: int, n_target: int, n_clusters: int, budget: float) -> dict[str, Any]:
    """Run in a fresh process by ``scale``: build the pool, run ``gio_quantized``, report times and peak RSS."""
    import torch

    from selection.gio import gio_kl, gio_quantized

    torch.set_num_threads(1)
    with np.load(path) as data:
        base, target = data["pool"], data["target"][:n_target]
    tick = time.perf_counter()
    pool = scale_pool(base, n_pool)
    make_seconds = time.perf_counter() - tick
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    tick = time.perf_counter()
    result = gio_quantized(target, pool, n_pool_clusters=n_clusters, budget=budget, seed=0)
    seconds = time.perf_counter() - tick
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rng = np.random.default_rng(0)
    sample = min(5000, len(result.selected))
    return {
        "n_pool": n_pool,
        "n_target": int(len(target)),
        "d": int(pool.shape[1]),
        "n_pool_clusters": n_clusters,
        "n_target_clusters": int(len(result.target_centroids)),
        "budget": budget,
        "selected": int(len(result.selected)),
        "clusters_chosen": int(len(result.cluster_order)),
        "inner_stop_reason": result.inner.stop_reason,
        "seconds": seconds,
        "phase_seconds": {key: value for key, value in result.info.items() if key.endswith("_seconds")},
        "empty_clusters": int(result.info["n_empty_clusters"]),
        "make_pool_seconds": make_seconds,
        "peak_rss_gib_before": rss_before,
        "peak_rss_gib": rss_peak,
        "kl_sample": sample,
        "kl_selected_sample": gio_kl(target, pool[rng.choice(result.selected, sample, replace=False)]),
        "kl_random_sample": gio_kl(target, pool[rng.choice(n_pool, sample, replace=False)]),
        "threads": {"torch": 1, "faiss_omp": os.cpu_count()},
    }


def scale(**spec: Any) -> dict[str, Any]:
    """``quantized_at_scale(**spec)`` in a fresh Python process, so its peak RSS is its own."""
    code = (
        "import json, sys; from bench.gio import quantized_at_scale as q; print(json.dumps(q(**json.load(sys.stdin))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(spec), capture_output=True, text=True, cwd=ROOT, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scale run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> None:
    import torch

    from selection.gio import uniform_start

    n_pool, n_target, max_iter, long_picks, repeats = (1000, 200, 1, 20, 3) if quick else (10_000, 1000, 3, 100, 5)
    big = {"n_pool": 50_000, "n_clusters": 100} if quick else {"n_pool": 1_000_000, "n_clusters": 1500}
    scale_target = 200 if quick else 3000
    load = os.getloadavg()
    path = inputs(n_pool, max(n_target, scale_target))
    with np.load(path) as data:
        pool, target = data["pool"], data["target"][:n_target]
    start = uniform_start(pool.shape[1], 20, normalize=True, seed=0)

    default_threads = torch.get_num_threads()
    default = ours(pool, target, start, 1, max_iter=max_iter)
    torch.set_num_threads(1)
    compared = ours(pool, target, start, repeats, max_iter=max_iter)
    many = ours(pool, target, start, max(1, repeats // 2), stop="budget", budget=long_picks)
    torch.set_num_threads(default_threads)

    peer: dict[str, Any] | None = None
    if PEER_PYTHON.exists():
        kwargs = {"k": PARAMS["k"], "lr": PARAMS["lr"], "grad_desc_iter": PARAMS["steps"], "max_iter": max_iter}
        kwargs |= {"stop_criterion": PARAMS["stop"], "v_init": PARAMS["v_init"]}
        payload = {"inputs": str(path), "n_pool": n_pool, "n_target": n_target, "start": start.tolist()}
        peer = run_peer(PEER_SCRIPT, payload | {"repeats": 1 if quick else 2, "kwargs": kwargs}, timeout=3600)
    elif not quick:
        raise SystemExit(
            f"{PEER_PYTHON} is missing: the full run compares with the peer (bench/peers-requirements.txt)."
        )

    big_result = scale(path=str(path), n_target=scale_target, budget=0.05, **big)

    ours_value = compared["per_iteration"]
    result = compared.pop("result")
    many.pop("result")
    default.pop("result")
    out: dict[str, Any] = {"bench": "gio", "ours": ours_value, "peer": "grad-info-opt 0.1.2"}
    if peer is None:
        out |= {"peer_value": None, "ratio": None, "peer_skipped": f"{PEER_PYTHON} is missing (quick run)"}
    else:
        warm, first = peer["runs"][-1], peer["runs"][0]
        peer_value = warm["loop"] / warm["iterations"]
        ours_total = result.info["setup_seconds"] + ours_value * compared["iterations"]
        same = result.selected.tolist() == peer["selected"] and compared["iterations"] == warm["iterations"]
        kl_gap = np.abs(result.kl_trajectory - np.array(peer["kl_trajectory"])) if same else None
        out |= {
            "peer": peer["peer"],
            "peer_value": peer_value,
            "ratio": peer_value / ours_value,
            "ratio_with_setup": (warm["total"] / warm["iterations"]) / (ours_total / compared["iterations"]),
            "same_picks": same,
            "picks_compared": len(peer["selected"]),
            "max_kl_diff": None if kl_gap is None else float(np.max(kl_gap, initial=0.0)),
            "peer_descent_per_iteration": warm["descent"] / warm["iterations"],
            "peer_nearest_per_iteration": warm["nearest"] / warm["iterations"],
            "peer_first_run_per_iteration": first["loop"] / first["iterations"],
            "peer_runs": peer["runs"],
            "peer_import_seconds": peer["import_seconds"],
            "jax": peer["jax"],
        }
    out |= {
        "unit": "seconds per iteration (one descent and one pick), setup excluded",
        "iterations": compared["iterations"],
        "ours_detail": compared,
        "ours_default_threads": default | {"torch_threads": default_threads},
        f"ours_{long_picks}_picks": many,
        "ours_picks": result.selected.tolist(),
        "n_pool": n_pool,
        "n_target": n_target,
        "d": int(pool.shape[1]),
        "params": PARAMS | {"max_iter": max_iter, "start": "uniform_start(d, 20, seed=0)"},
        "quantized": big_result,
        "load_average_at_start": load,
        "cpu_count": os.cpu_count(),
        "quick": quick,
        "targets": {"ratio": ">= 100", "same_picks": True},
    }
    emit(out)
