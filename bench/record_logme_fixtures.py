"""Record the LogME fixtures in tests/fixtures/logme/: real embeddings and hf-dataset-selector's values on them.

``python bench/record_logme_fixtures.py`` (from the repository root, with the main venv). It embeds real training
texts with the project's encoder (all-MiniLM-L6-v2, d = 384): 600 from tweeteval_emotion (4 classes) and 600 from
emobank_valence (targets: valence and the word count, two regression columns). The embeddings are stored rounded to
float16 so that both matrices fit in < 1 MB; every implementation reads these stored values. Cases: the first 600
rows (n > d, full rank) and the first 300 rows (d > n, rank-deficient) of each, and the 600 classification rows
with an all-zero feature column appended (the reference drops that direction). The peer, hf-dataset-selector's
``LogME(regression=...).fit(F, y, add_intercept=False)`` as its ESM-LogME calls it, runs in .venv-peers as a
subprocess and its evidences, alphas and betas go to ``expected.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import run_peer

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "logme"
TASKS = ROOT.parent / "shared" / "data" / "tasks"
N_FULL, N_DEFICIENT = 600, 300

# name -> (task, rows, appended zero columns)
CASES: dict[str, tuple[str, int, int]] = {
    "classification_full_rank": ("emotion", N_FULL, 0),
    "classification_rank_deficient": ("emotion", N_DEFICIENT, 0),
    "classification_zero_column": ("emotion", N_FULL, 1),
    "regression_full_rank": ("emobank", N_FULL, 0),
    "regression_rank_deficient": ("emobank", N_DEFICIENT, 0),
}

PEER_SCRIPT = """
import json, sys, importlib.metadata
import numpy as np
from hfselect.logme import LogME
spec = json.load(sys.stdin)
data = np.load(spec["inputs"])
out = {"peer": "hf-dataset-selector " + importlib.metadata.version("hf-dataset-selector"), "cases": {}}
for name, (task, rows, zeros) in spec["cases"].items():
    f = data["features_" + task][:rows].astype(np.float64)
    f = np.hstack([f, np.zeros((rows, zeros))])
    regression = task == "emobank"
    y = data["targets_" + task][:rows]
    model = LogME(regression=regression)
    value = model.fit(f, y, add_intercept=False)
    out["cases"][name] = {"task": task, "rows": rows, "zero_columns": zeros, "regression": regression,
                          "evidence": float(value), "alphas": [float(a) for a in model.alphas],
                          "betas": [float(b) for b in model.betas]}
print(json.dumps(out))
"""


def embed_inputs() -> dict[str, np.ndarray]:
    from store.task_files import load_task_dir
    from transfer.embeddings import TextEncoder

    encoder = TextEncoder(device="cpu")
    emotion = load_task_dir(TASKS / "tweeteval_emotion").split("train").slice(0, N_FULL)
    emobank = load_task_dir(TASKS / "emobank_valence").split("train").slice(0, N_FULL)
    emobank_texts = emobank.column("text").to_pylist()
    words = np.array([len(t.split()) for t in emobank_texts], dtype=np.float64)
    return {
        "features_emotion": encoder.encode(emotion.column("text").to_pylist()).astype(np.float16),
        "targets_emotion": emotion.column("label").to_numpy().astype(np.int64),
        "features_emobank": encoder.encode(emobank_texts).astype(np.float16),
        "targets_emobank": np.stack([emobank.column("label").to_numpy(), words], axis=1).astype(np.float64),
    }


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    inputs = FIXTURES / "inputs.npz"
    arrays: dict[str, Any] = embed_inputs()
    np.savez_compressed(inputs, **arrays)
    expected = run_peer(PEER_SCRIPT, {"inputs": str(inputs), "cases": CASES})
    expected["note"] = "recorded by bench/record_logme_fixtures.py from inputs.npz"
    (FIXTURES / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    size = sum(p.stat().st_size for p in FIXTURES.iterdir())
    print(f"wrote {FIXTURES} ({size / 1e3:.0f} kB)", file=sys.stderr)


if __name__ == "__main__":
    main()
