"""``python -m bench esm_logme``: one target over 200 sources, TransferScope's Gram-statistics ESM-LogME vs the
per-source path of hf-dataset-selector (transform the target's embeddings with each ESM, then its LogME).

Target: real tweeteval_emoji texts (10 classes) embedded with all-MiniLM-L6-v2, n = 1,000 and n = 10,000 (the
cache of ``bench logme``). Sources: 200 seeded synthetic affine maps near the identity (W = I + 0.3·N(0,1)/√d,
b = 0.01·N(0,1)), rebuilt from their seeds on both sides (numpy's PCG64 streams are stable across versions) rather
than shipped. Ours: `esm_logme_scores` (target Gram statistics once, then per source Ã G Ãᵀ and one d × d
eigendecomposition). Peer: in .venv-peers, F = X Wᵀ + b (float32, as the package's ESM forward) then
``hfselect.logme.LogME(regression=False).fit(F, y, add_intercept=False)``, timed after one warm-up source. Targets:
same scores (n > d: our exact mode equals the reference value), ratio >= 5 at n = 1,000 and >= 20 at n = 10,000.
``--quick``: 20 sources, n = 1,000 only.
"""

from __future__ import annotations

import time

import numpy as np

from bench.common import emit, run_peer
from bench.logme import inputs

SCALE, BIAS = 0.3, 0.01

PEER_SCRIPT = """
import json, sys, time
import numpy as np
spec = json.load(sys.stdin)
from hfselect.logme import LogME
data = np.load(spec["inputs"])
x, y = data["features"][: spec["n"]].astype(np.float32), data["labels"][: spec["n"]]
d = x.shape[1]
def esm(seed):
    rng = np.random.default_rng(seed)
    weight = np.eye(d) + spec["scale"] * rng.normal(size=(d, d)) / np.sqrt(d)
    return weight.astype(np.float32), (rng.normal(size=d) * spec["bias"]).astype(np.float32)
def score(seed):
    weight, bias = esm(seed)
    return float(LogME(regression=False).fit(x @ weight.T + bias, y, add_intercept=False))
score(spec["sources"][0])
start = time.perf_counter()
scores = [score(s) for s in spec["sources"]]
print(json.dumps({"scores": scores, "seconds": time.perf_counter() - start}))
"""


def synthetic_esms(d: int, seeds: list[int]):
    from transfer.esm import EmbeddingSpaceMap

    maps = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        weight = np.eye(d) + SCALE * rng.normal(size=(d, d)) / np.sqrt(d)
        bias = rng.normal(size=d) * BIAS
        maps[f"source{seed}"] = EmbeddingSpaceMap._from_arrays(weight.astype(np.float32), bias.astype(np.float32), {})
    return maps


def measure(n: int, n_sources: int) -> dict:
    from transfer.esm_logme import esm_logme_scores

    path = inputs(max(n, 1000))
    with np.load(path) as data:
        x, y = data["features"][:n], data["labels"][:n]
    seeds = list(range(n_sources))
    esms = synthetic_esms(x.shape[1], seeds)
    esm_logme_scores(x, y, dict(list(esms.items())[:1]))  # warm-up
    start = time.perf_counter()
    ours = esm_logme_scores(x, y, esms)
    seconds = time.perf_counter() - start
    peer = run_peer(
        PEER_SCRIPT, {"inputs": str(path), "n": n, "sources": seeds, "scale": SCALE, "bias": BIAS}, timeout=3600
    )
    ours_scores = np.array(list(ours.values()))
    rel = np.abs(ours_scores / np.array(peer["scores"]) - 1)
    same_order = bool((np.argsort(-ours_scores) == np.argsort(-np.array(peer["scores"]))).all())
    return {
        "n": n,
        "sources": n_sources,
        "ours": seconds,
        "peer_value": peer["seconds"],
        "ratio": peer["seconds"] / seconds,
        "ms_per_source": 1000 * seconds / n_sources,
        "peer_ms_per_source": 1000 * peer["seconds"] / n_sources,
        "max_rel_diff": float(rel.max()),
        "same_ranking": same_order,
    }


def run(quick: bool = False) -> None:
    grid = [(1000, 20)] if quick else [(1000, 200), (10_000, 200)]
    results = [measure(n, sources) for n, sources in grid]
    first = results[0]
    emit(
        {
            "bench": "esm_logme",
            "ours": first["ours"],
            "peer": "hf-dataset-selector per-source ESM-LogME",
            "peer_value": first["peer_value"],
            "ratio": first["ratio"],
            "by_n": results,
            "quick": quick,
            "targets": {"ratio_n1000": ">= 5", "ratio_n10000": ">= 20", "max_rel_diff": "<= 1e-6"},
        }
    )
