"""ESM-LogME from the target's Gram statistics equals transforming then scoring, on real embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transfer.esm import EmbeddingSpaceMap
from transfer.esm_logme import esm_logme_direct, esm_logme_scores, target_statistics

INPUTS = Path(__file__).parent / "fixtures" / "logme" / "inputs.npz"


def random_esm(dim: int, seed: int, scale: float = 0.3) -> EmbeddingSpaceMap:
    """A seeded affine map near the identity, like a fitted ESM."""
    rng = np.random.default_rng(seed)
    weight = np.eye(dim) + scale * rng.normal(size=(dim, dim)) / np.sqrt(dim)
    return EmbeddingSpaceMap._from_arrays(
        weight.astype(np.float32), rng.normal(size=dim).astype(np.float32) * 0.01, {"fit_method": "ridge"}
    )


@pytest.fixture(scope="module")
def real():
    data = np.load(INPUTS)
    return {k: data[k] for k in data.files}


@pytest.mark.parametrize(
    ("features", "labels", "regression"),
    [("features_emotion", "targets_emotion", False), ("features_emobank", "targets_emobank", True)],
)
@pytest.mark.parametrize("rows", [600, 200])  # n > d and n < d
def test_gram_path_equals_direct_path(real, features, labels, regression, rows):
    x, y = real[features][:rows].astype(np.float64), real[labels][:rows]
    esms = {f"s{i}": random_esm(x.shape[1], i) for i in range(4)}
    fast = esm_logme_scores(x, y, esms, regression=regression)
    for source, esm in esms.items():
        direct = esm_logme_direct(x, y, esm, regression=regression)
        assert fast[source] == pytest.approx(direct, rel=1e-6), source
    assert len(set(fast.values())) == 4


def test_identity_esm_gives_plain_logme(real):
    from transfer.logme import logme_score

    x, y = real["features_emotion"].astype(np.float64), real["targets_emotion"]
    identity = EmbeddingSpaceMap._from_arrays(np.eye(384, dtype=np.float32), np.zeros(384, np.float32), {})
    assert esm_logme_scores(x, y, {"id": identity})["id"] == pytest.approx(logme_score(x, y), rel=1e-9)


def test_statistics_shapes_and_dimension_mismatch(real):
    x, y = real["features_emotion"].astype(np.float64), real["targets_emotion"]
    stats = target_statistics(x, y)
    assert stats.gram.shape == (385, 385) and stats.cross.shape == (385, 4) and stats.n == 600 and stats.dim == 384
    with pytest.raises(ValueError, match="ESM maps 8-dimensional embeddings but the target's are 384-dimensional"):
        esm_logme_scores(x, y, {"small": random_esm(8, 0)})
    with pytest.raises(ValueError, match="at least 2 distinct classes"):
        target_statistics(x, np.zeros(600, dtype=int))
