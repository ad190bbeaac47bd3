"""``python -m bench logme``: TransferScope's LogME vs hf-dataset-selector's LogME on the same real embeddings.

Inputs: the first 10,000 training texts of tweeteval_emoji whose label is one of its 10 most frequent classes
(0-9), embedded with all-MiniLM-L6-v2 (d = 384, float32; 2,000 texts with ``--quick``), cached in
/tmp/transferscope-bench/. Ours: ``logme_score(F, y)`` (one Gram matrix and one eigendecomposition shared by the 10
classes, fixed point vectorised over classes), warm median via ``interleaved_medians``, measured before and after
the peer runs. The peer, ``hfselect.logme.LogME().fit(F, y, add_intercept=False)``, runs in .venv-peers as a
subprocess on the same saved file, timed inside it: the first call (numba compiles its SVD helper) and the median
of warm repeats. n > d, so our two modes give the same value; ``max_rel_diff`` covers the score and every class's
α and β. Target: ratio (warm) >= 4.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from bench.common import SHARED_TASKS, emit, interleaved_medians, run_peer

CACHE = Path("/tmp/transferscope-bench")
N_CLASSES = 10

PEER_SCRIPT = """
import json, statistics, sys, time
spec = json.load(sys.stdin)
start = time.perf_counter()
from hfselect.logme import LogME
import_seconds = time.perf_counter() - start
import numpy as np
data = np.load(spec["inputs"])
f, y = data["features"], data["labels"]
def fit():
    model = LogME(regression=False)
    value = model.fit(f, y, add_intercept=False)
    return float(value), model
start = time.perf_counter()
value, model = fit()
first = time.perf_counter() - start
times = []
for _ in range(spec["repeats"]):
    start = time.perf_counter()
    fit()
    times.append(time.perf_counter() - start)
print(json.dumps({"value": value, "alphas": [float(a) for a in model.alphas], "betas": [float(b) for b in model.betas],
                  "first": first, "warm": statistics.median(times), "import": import_seconds}))
"""


def inputs(n: int) -> Path:
    """Embedded texts and labels, cached as /tmp/transferscope-bench/logme_<n>.npz."""
    path = CACHE / f"logme_{n}.npz"
    if not path.exists():
        from store.task_files import load_task_dir
        from transfer.embeddings import TextEncoder

        table = load_task_dir(SHARED_TASKS / "tweeteval_emoji").split("train")
        labels = table.column("label").to_numpy().astype(np.int64)
        rows = np.flatnonzero(labels < N_CLASSES)[:n]
        texts = table.column("text").to_pylist()
        features = TextEncoder(device="cpu").encode([texts[i] for i in rows])
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, features=features, labels=labels[rows])
    return path


def run(quick: bool = False) -> None:
    from transfer.logme import LogME, logme_score

    n, repeats, peer_repeats = (2000, 5, 3) if quick else (10_000, 7, 5)
    path = inputs(n)
    with np.load(path) as data:
        features, labels = data["features"], data["labels"]

    start = time.perf_counter()
    logme_score(features, labels)
    first = time.perf_counter() - start
    before = interleaved_medians({"ours": lambda: logme_score(features, labels)}, repeats)["ours"]
    peer = run_peer(PEER_SCRIPT, {"inputs": str(path), "repeats": peer_repeats})
    after = interleaved_medians({"ours": lambda: logme_score(features, labels)}, repeats)["ours"]
    ours = statistics.mean([before, after])

    model = LogME(mode="reference").fit(features, labels)
    exact = logme_score(features, labels)
    diffs = np.abs(
        np.r_[model.evidence_, model.alphas_, model.betas_] / np.r_[peer["value"], peer["alphas"], peer["betas"]] - 1
    )
    emit(
        {
            "bench": "logme",
            "ours": ours,
            "peer": "hf-dataset-selector LogME",
            "peer_value": peer["warm"],
            "ratio": peer["warm"] / ours,
            "first_call_ratio": peer["first"] / first,
            "max_rel_diff": float(diffs.max()),
            "ours_first_call": first,
            "ours_warm_before_after_peer": [before, after],
            "peer_first_call": peer["first"],
            "peer_import_seconds": peer["import"],
            "score": model.evidence_,
            "score_exact_mode": exact,
            "peer_score": peer["value"],
            "n": int(features.shape[0]),
            "d": int(features.shape[1]),
            "classes": int(model.classes_.size),
            "iterations": model.n_iter_.tolist(),
            "repeats": {"ours": repeats, "peer": peer_repeats},
            "quick": quick,
            "targets": {"ratio": ">= 4", "max_rel_diff": "<= 1e-6"},
        }
    )
