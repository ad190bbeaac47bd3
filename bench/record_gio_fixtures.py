"""Record the GIO fixtures in tests/fixtures/gio/: small seeded inputs and grad-info-opt's trajectories on them.

``python -m bench.record_gio_fixtures`` (from the repository root, with the main venv). Inputs: seeded Gaussian
clusters (pool 200 points from 4 clusters, target 50 points from 2 of them, plus 3 target rows copied from the
pool and one target row duplicated, so zero distances hit the clipping), in d = 8 and d = 16, and a start set of
20 unit-normalised uniform points per dimension (``selection.gio.uniform_start``) that both implementations get
(the reference's ``fit(D=...)``). The peer, ``GIO.GIOKL.fit`` from grad-info-opt, runs in .venv-peers as a
subprocess with JAX's float64 enabled (JAX computes in float32 by default; float64 makes a 1e-5 comparison
meaningful) and without Spark (the object is made with ``__new__``: only the k-means mode needs Spark). Its picks
are mapped back to pool row indices (the pool rows are distinct); the KL trajectory, start KL and scale factor go
to ``expected.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import run_peer
from selection.gio import uniform_start

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "gio"

# name -> (dim, reference fit keyword arguments)
CASES: dict[str, tuple[int, dict[str, Any]]] = {
    "increase_mean_d8": (8, {"stop_criterion": "increase", "v_init": "mean"}),
    "increase_prev_opt_d16": (16, {"stop_criterion": "increase", "v_init": "prev_opt"}),
    "resets_d8": (8, {"stop_criterion": "increase", "v_init": "mean", "resets_allowed": True, "max_resets": 2}),
    "data_size_d16": (16, {"stop_criterion": "data_size", "max_data_size": 0.1, "v_init": "mean"}),
    "max_iter_d8": (8, {"stop_criterion": "data_size", "max_data_size": 1.0, "max_iter": 12, "v_init": "prev_opt"}),
    "min_difference_d8": (8, {"stop_criterion": "min_difference", "min_difference": 0.02, "v_init": "mean"}),
}

PEER_SCRIPT = """
import json, sys, importlib.metadata
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from GIO.GIOKL import GIOKL
spec = json.load(sys.stdin)
data = np.load(spec["inputs"])
out = {"peer": "grad-info-opt " + importlib.metadata.version("grad-info-opt"), "jax": jax.__version__, "cases": {}}
for name, (dim, kwargs) in spec["cases"].items():
    pool, target, start = data[f"pool_d{dim}"], data[f"target_d{dim}"], data[f"start_d{dim}"]
    gio = GIOKL.__new__(GIOKL)  # skip __init__'s SparkSession: only quantize/explode need Spark
    gio.uniform_low, gio.uniform_high, gio.uniform_start_size, gio.dim, gio.random_init = -1, 1, 20, dim, False
    W, kls, (v, scale, just_reset, num_resets, increases, adder, _) = gio.fit(
        jnp.asarray(pool), jnp.asarray(target), D=jnp.asarray(start), k=5, lr=0.01, **kwargs)
    picks = np.asarray(W)[len(start):]
    index = []
    for row in picks:
        hits = np.flatnonzero((pool == row).all(axis=1))
        assert len(hits) == 1, name
        index.append(int(hits[0]))
    start_kl = float(gio.calculate_statistical_distance(jnp.asarray(target), jnp.asarray(start), 5))
    out["cases"][name] = {"dim": dim, "kwargs": kwargs, "selected": index, "kl_trajectory": [float(x) for x in kls],
                          "start_kl": start_kl, "scale_factor": float(scale), "num_resets": int(num_resets)}
print(json.dumps(out))
"""


def make_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20230619)
    arrays: dict[str, np.ndarray] = {}
    for dim in (8, 16):
        centres = rng.normal(0.0, 1.0, size=(4, dim))
        pool = np.concatenate([centres[c] + 0.35 * rng.normal(size=(50, dim)) for c in range(4)])
        pool = pool[rng.permutation(len(pool))]
        target = np.concatenate([centres[c] + 0.35 * rng.normal(size=(24, dim)) for c in (0, 2)])
        target = np.concatenate([target, pool[[3, 50, 120]], target[:1]])  # shared with the pool; a duplicate
        target = target[rng.permutation(len(target))]
        arrays[f"pool_d{dim}"] = pool
        arrays[f"target_d{dim}"] = target
        arrays[f"start_d{dim}"] = uniform_start(dim, 20, normalize=True, seed=dim)
    return arrays


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    inputs = FIXTURES / "inputs.npz"
    np.savez_compressed(inputs, **make_inputs())  # type: ignore[arg-type]
    result = run_peer(PEER_SCRIPT, {"inputs": str(inputs), "cases": CASES}, timeout=1800)
    (FIXTURES / "expected.json").write_text(json.dumps(result, indent=1) + "\n")
    for name, case in result["cases"].items():
        print(name, len(case["selected"]), "picks, final KL", case["kl_trajectory"][-1:] or None)


if __name__ == "__main__":
    main()
