"""Divergence-based task-pair scores: zero on identical samples, Gaussian closed forms, permutation invariance,
symmetry, orientation on real tasks (mr and sst2 are near-copies, trec is unrelated) and parameter errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import sqrtm

from transfer.divergence import (
    MEASURES,
    centroid_cosine,
    frechet_distance,
    js_divergence,
    knn_kl,
    median_bandwidth,
    mmd2,
    otdd,
    proxy_a_distance,
    score_pair,
    sinkhorn_distance,
    sliced_wasserstein,
    subsample,
    target_context,
)

UNLABELLED = [name for name, m in MEASURES.items() if not m.needs_labels]


def blobs(seed: int, n: int = 60, d: int = 5, shift: float = 0.0, classes: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    return rng.normal(size=(n, d)) + shift + 0.5 * y[:, None], y


@pytest.fixture(scope="module")
def real(encoder, shared_tasks):
    """300 seeded training texts of mr, sst2 and trec, embedded once: {task: (x [300, 384], labels [300])}."""
    from store.task_files import load_task_dir

    out = {}
    for task in ("mr", "sst2", "trec"):
        table = load_task_dir(shared_tasks / task).split("train")
        pick = np.sort(np.random.default_rng(0).choice(table.num_rows, 300, replace=False))
        texts = table.column("text").to_pylist()
        out[task] = (encoder.encode([texts[i] for i in pick]), table.column("label").to_numpy()[pick])
    return out


# --------------------------------------------------------------------------------------------- identical samples


def test_identical_samples_score_zero_or_within_bias():
    x, y = blobs(0, n=200)
    context = target_context(x, y)
    scores = {name: score_pair(name, x, context, source_y=y) for name in MEASURES}
    assert scores["centroid-cosine"] == pytest.approx(1.0)
    for name in ("frechet", "sliced-wasserstein", "sinkhorn", "otdd", "js", "pad"):
        assert abs(scores[name]) < 1e-9, name  # exact zero: same array twice
    n = len(np.unique(x, axis=0))
    assert scores["knn-kl"] == pytest.approx(np.log(n / (n - 1)))  # the estimator's log(m / (n − 1)) term
    assert -2 / n < scores["mmd"] < 0  # unbiased MMD² of a sample with itself: −O(1/n)


def test_independent_samples_of_one_distribution_are_near_zero():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(800, 4)), rng.normal(size=(800, 4))
    assert abs(knn_kl(a, b)) < 0.1 and abs(knn_kl(b, a)) < 0.1
    assert -0.1 < js_divergence(a, b, k=10) < 0.02  # bias ≈ −1/(2k)
    assert abs(mmd2(a, b, bandwidth=median_bandwidth(b))) < 5e-3
    assert abs(proxy_a_distance(a, b)) < 0.25
    assert frechet_distance(a, b) < 0.05


def test_duplicate_rows_do_not_break_knn_estimators():
    x, _ = blobs(2, n=50)
    doubled = np.vstack([x, x])  # every text twice: zero within-sample distances
    assert np.isfinite(knn_kl(doubled, x)) and knn_kl(doubled, x) == pytest.approx(knn_kl(x, x))
    assert js_divergence(doubled, x) == pytest.approx(0.0)


# ------------------------------------------------------------------------------------------------ closed forms


def gaussian_samples(n: int, seed: int):
    rng = np.random.default_rng(seed)
    mu0, cov0 = np.zeros(3), np.diag([1.0, 0.5, 2.0])
    mu1, cov1 = np.array([0.5, -0.3, 0.0]), np.array([[1.5, 0.3, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 2.5]])
    return (mu0, cov0, rng.multivariate_normal(mu0, cov0, n)), (mu1, cov1, rng.multivariate_normal(mu1, cov1, n))


def test_knn_kl_approaches_gaussian_closed_form():
    """KL(P ‖ Q) with Q the wider Gaussian (exact 0.319 nats): within 0.05 at n = m = 6,000. The reverse direction
    (exact 0.460) puts P's heavier tails where Q is sparse and converges slowly: its error shrinks from n = 300 to
    n = 6,000 and is below 0.2 there."""
    (mu0, cov0, a), (mu1, cov1, b) = gaussian_samples(6000, 0)

    def exact(mu_p, cov_p, mu_q, cov_q):
        inv, delta = np.linalg.inv(cov_q), mu_q - mu_p
        logdet = np.linalg.slogdet(cov_q)[1] - np.linalg.slogdet(cov_p)[1]
        return 0.5 * (np.trace(inv @ cov_p) + delta @ inv @ delta - len(mu_p) + logdet)

    assert knn_kl(a, b) == pytest.approx(exact(mu0, cov0, mu1, cov1), abs=0.05)
    reverse = exact(mu1, cov1, mu0, cov0)
    small_error, large_error = abs(knn_kl(b[:300], a[:300]) - reverse), abs(knn_kl(b, a) - reverse)
    assert large_error < min(small_error, 0.2)


def test_frechet_approaches_gaussian_w2():
    """Within 0.03 (6%) of the exact W2² = 0.53 at n = 6,000 and 0.015 at n = 30,000 (Ledoit-Wolf shrinkage
    vanishes as n grows; the rest is sampling error)."""
    (mu0, cov0, a), (mu1, cov1, b) = gaussian_samples(30_000, 1)
    root = sqrtm(cov1)
    exact = ((mu0 - mu1) ** 2).sum() + np.trace(cov0 + cov1 - 2 * np.real(sqrtm(root @ cov0 @ root)))
    assert frechet_distance(a[:6000], b[:6000]) == pytest.approx(exact, abs=0.03)
    assert frechet_distance(a, b) == pytest.approx(exact, abs=0.015)


def test_mmd_approaches_gaussian_closed_form():
    """Within 0.004 (about 6% of the value) at n = m = 3,000, bandwidth 1.5.

    For X ~ N(μ_a, Σ_a), Y ~ N(μ_b, Σ_b) independent: E exp(−‖X − Y‖²/(2σ²)) =
    det(I + (Σ_a + Σ_b)/σ²)^(−½) exp(−½ Δᵀ(Σ_a + Σ_b + σ²I)⁻¹Δ)."""
    (mu0, cov0, a), (mu1, cov1, b) = gaussian_samples(3000, 2)
    sigma = 1.5

    def expected_kernel(mu_a, cov_a, mu_b, cov_b):
        total, delta = cov_a + cov_b, mu_a - mu_b
        scale = np.linalg.det(np.eye(3) + total / sigma**2) ** -0.5
        return scale * np.exp(-0.5 * delta @ np.linalg.solve(total + sigma**2 * np.eye(3), delta))

    exact = (
        expected_kernel(mu0, cov0, mu0, cov0)
        + expected_kernel(mu1, cov1, mu1, cov1)
        - 2 * expected_kernel(mu0, cov0, mu1, cov1)
    )
    assert mmd2(a, b, bandwidth=sigma) == pytest.approx(exact, abs=0.004)


# ------------------------------------------------------------------------------------ invariance and symmetry


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 10_000))
def test_every_measure_is_invariant_to_permuting_examples(seed):
    target, target_y = blobs(seed, n=40)
    source, source_y = blobs(seed + 1, n=50, shift=0.3)
    perm_t, perm_s = np.random.default_rng(seed).permutation(40), np.random.default_rng(seed + 7).permutation(50)
    context, permuted_context = target_context(target, target_y), target_context(target[perm_t], target_y[perm_t])
    for name in MEASURES:
        expected = score_pair(name, source, context, source_y=source_y)
        got = score_pair(name, source[perm_s], permuted_context, source_y=source_y[perm_s])
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), name


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 1.0))
def test_symmetric_measures_are_symmetric(seed, shift):
    (a, ya), (b, yb) = blobs(seed, n=40), blobs(seed + 1, n=55, shift=shift)
    assert js_divergence(a, b) == pytest.approx(js_divergence(b, a), abs=1e-12)
    assert mmd2(a, b, bandwidth=1.3) == pytest.approx(mmd2(b, a, bandwidth=1.3), rel=1e-9, abs=1e-12)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-7, abs=1e-9)
    assert sliced_wasserstein(a, b, seed=3) == pytest.approx(sliced_wasserstein(b, a, seed=3), rel=1e-9)
    assert sinkhorn_distance(a, b) == pytest.approx(sinkhorn_distance(b, a), rel=1e-3, abs=1e-4)
    forward = otdd(a, b, source_y=ya, target_y=yb)
    assert forward == pytest.approx(otdd(b, a, source_y=yb, target_y=ya), rel=1e-9, abs=1e-12)
    assert centroid_cosine(a, b) == pytest.approx(centroid_cosine(b, a))


def test_registry_flags_match_behaviour():
    assert [name for name, m in MEASURES.items() if m.higher_is_better] == ["centroid-cosine"]
    assert [name for name, m in MEASURES.items() if m.needs_labels] == ["otdd"]
    assert set(MEASURES) == {
        "centroid-cosine",
        "knn-kl",
        "knn-kl-reverse",
        "js",
        "mmd",
        "frechet",
        "sliced-wasserstein",
        "sinkhorn",
        "pad",
        "otdd",
    }


def test_subsample_is_deterministic_and_order_free():
    x, y = blobs(5, n=100)
    a, ya = subsample(x, y, max_examples=30, seed=4)
    perm = np.random.default_rng(0).permutation(100)
    b, yb = subsample(x[perm], y[perm], max_examples=30, seed=4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, yb)
    assert len(subsample(x, max_examples=500)[0]) == 100


# -------------------------------------------------------------------------------------------------- real tasks


def test_orientation_on_real_tasks(real):
    """Every measure says mr (movie reviews, a near-copy of sst2) is closer to sst2 than trec (questions) is."""
    target_x, target_y = real["sst2"]
    context = target_context(target_x, target_y)
    for name, measure in MEASURES.items():
        near = score_pair(name, real["mr"][0], context, source_y=real["mr"][1])
        far = score_pair(name, real["trec"][0], context, source_y=real["trec"][1])
        assert (near > far) if measure.higher_is_better else (near < far), (name, near, far)


# ------------------------------------------------------------------------------------------------------ errors


def test_too_few_examples_for_k():
    x, _ = blobs(0, n=5)
    with pytest.raises(ValueError, match="The 'k' parameter of knn_kl must be below the number of distinct rows"):
        knn_kl(x, x, k=5)
    with pytest.raises(ValueError, match="The 'k' parameter of js_divergence"):
        js_divergence(x, x, k=10)
    with pytest.raises(ValueError, match="The 'k' parameter of knn_kl must be a positive int. Got -1 instead."):
        knn_kl(x, x, k=-1)


def test_regression_task_to_otdd_is_an_error():
    x, y = blobs(0)
    with pytest.raises(ValueError, match="'target_y' parameter of otdd must hold class labels.*regression"):
        otdd(x, x, source_y=y, target_y=np.linspace(0, 1, len(x)))
    with pytest.raises(ValueError, match="'source_y' parameter of otdd is required"):
        otdd(x, x, source_y=None, target_y=y)
    with pytest.raises(ValueError, match="needs class labels"):
        score_pair("otdd", x, target_context(x))


def test_mismatched_dimensions_name_the_parameter():
    a, b = np.ones((10, 4)), np.ones((10, 5))
    with pytest.raises(ValueError, match="The 'target_x' parameter of mmd2 must have as many columns as 'source_x'"):
        mmd2(a, b, bandwidth=1.0)
    with pytest.raises(ValueError, match="The 'q_x' parameter of knn_kl"):
        knn_kl(a, b)
    with pytest.raises(ValueError, match="The 'target_x' parameter of frechet_distance"):
        score_pair("frechet", a, target_context(np.random.default_rng(0).normal(size=(10, 5))))
    with pytest.raises(ValueError, match="The 'bandwidth' parameter of mmd2 must be a positive float"):
        mmd2(a, a, bandwidth=0.0)
    with pytest.raises(ValueError, match="The 'name' parameter of score_pair"):
        score_pair("kl", a, a)


def test_missing_pot_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "ot", None)
    x, _ = blobs(0)
    with pytest.raises(ImportError, match="pip install pot"):
        sliced_wasserstein(x, x)
