"""k-NN search: FAISS and torch backends agree with a brute-force float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer.neighbors import nearest_neighbors


def brute_force(queries, base, k, metric):
    q, b = queries.astype(np.float64), base.astype(np.float64)
    if metric == "l2":
        scores = ((q[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        order = np.argsort(scores, axis=1, kind="stable")[:, :k]
    else:
        scores = q @ b.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), order


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_backends_match_brute_force(backend, metric):
    rng = np.random.default_rng(0)
    base, queries = rng.normal(size=(300, 16)), rng.normal(size=(40, 16))
    scores, indices = nearest_neighbors(queries, base, 5, metric=metric, backend=backend, block_size=7)
    expected_scores, expected_indices = brute_force(queries, base, 5, metric)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-4)
    assert indices.dtype == np.int64 and scores.dtype == np.float32


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 30), st.integers(1, 6), st.integers(0, 10_000))
def test_backends_agree(n, k, seed):
    k = min(k, n)
    rng = np.random.default_rng(seed)
    base, queries = rng.normal(size=(n, 8)), rng.normal(size=(5, 8))
    faiss_scores, _ = nearest_neighbors(queries, base, k, backend="faiss")
    torch_scores, _ = nearest_neighbors(queries, base, k, backend="torch")
    np.testing.assert_allclose(faiss_scores, torch_scores, rtol=1e-4, atol=1e-4)


def test_bad_parameters_name_themselves():
    base = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"'k' parameter of nearest_neighbors must be an int in \[1, 4\]"):
        nearest_neighbors(base, base, 5)
    with pytest.raises(ValueError, match="same dimension"):
        nearest_neighbors(np.zeros((2, 2)), base, 1)
    with pytest.raises(ValueError, match="'metric' parameter"):
        nearest_neighbors(base, base, 1, metric="cosine")
