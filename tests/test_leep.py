"""LEEP (Nguyen et al. 2020): a hand-worked value, the uninformative-source identity, invariances, the regression
binning we chose, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from transfer.leep import leep, quantile_bins, source_distribution


def test_leep_by_hand():
    """θ rows (½,½), (1,0), (0,1), (½,½) with labels 0,0,1,1: P̂(y,z)·4 = [[1.5, .5], [.5, 1.5]], P̂(z) = (½, ½),
    P̂(y|z) = [[.75, .25], [.25, .75]]; Σ_z P̂(y_i|z)θ_iz = .5, .75, .75, .5; LEEP = (log .5 + log .75) / 2."""
    theta = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert leep(theta, np.array([0, 0, 1, 1])) == pytest.approx((math.log(0.5) + math.log(0.75)) / 2)
    assert leep(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), np.array([0, 0, 1, 1])) == 0.0


probabilities = arrays(np.float64, st.tuples(st.integers(2, 30), st.integers(2, 5)), elements=st.floats(0.01, 1.0))


@given(raw=probabilities, seed=st.integers(0, 100))
@settings(max_examples=50, deadline=None)
def test_leep_properties(raw, seed):
    rng = np.random.default_rng(seed)
    theta = raw / raw.sum(1, keepdims=True)
    labels = rng.integers(0, 3, size=len(theta))
    value = leep(theta, labels)
    assert value <= 1e-12
    # relabelling the source classes or the target classes changes nothing
    assert leep(theta[:, rng.permutation(theta.shape[1])], labels) == pytest.approx(value)
    assert leep(theta, rng.permutation(3)[labels]) == pytest.approx(value)
    # an uninformative source scores the negative entropy of the target labels, and no source scores lower
    uniform = leep(np.full_like(theta, 1 / theta.shape[1]), labels)
    prior = np.bincount(labels) / len(labels)
    assert uniform == pytest.approx(float(np.mean(np.log(prior[labels]))))
    assert value >= uniform - 1e-9


def test_quantile_bins_and_regression_sources():
    assert quantile_bins(np.array([1.0, 2, 3, 4, 5, 6]), 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert quantile_bins(np.array([1.0, 1, 1, 2]), 4).tolist() == [0, 0, 0, 1]  # ties share a bin, no gaps
    theta = source_distribution(np.array([[0.1], [0.9], [0.5], [0.3]]), regression=True, n_bins=2)
    assert theta.tolist() == [[1, 0], [0, 1], [0, 1], [1, 0]]  # one-hot on the output's bin
    logits = source_distribution(np.array([[0.0, math.log(3)]]), regression=False)
    assert logits == pytest.approx(np.array([[0.25, 0.75]]))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="'source_probs' parameter of leep must be an \\[n, Z\\] array"):
        leep(np.array([[0.5, 0.6]]), np.array([0]))
    with pytest.raises(ValueError, match="'target_labels' parameter of leep must be 1 non-negative class indices"):
        leep(np.array([[0.5, 0.5]]), np.array([0.5]))
    with pytest.raises(ValueError, match="'n_bins' parameter of quantile_bins must be an int >= 2. Got 1"):
        quantile_bins(np.array([1.0, 2.0]), 1)
