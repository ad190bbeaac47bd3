"""LEEP, the Log Expected Empirical Prediction (Nguyen, Hassner, Seeger & Archambeau, ICML 2020, "LEEP: A New
Measure to Evaluate Transferability of Learned Representations"): how well the source classifier's predictions on
the target inputs, passed through the empirical conditional of target labels given source labels, predict the
target labels. Higher (closer to 0) is better.

With θ(x_i) [Z] the source model's class distribution on target input x_i and y_i ∈ {1..C} its target label:

    P̂(y, z) = 1/n Σ_i θ(x_i)_z · 1[y_i = y],     P̂(y | z) = P̂(y, z) / Σ_y' P̂(y', z),
    LEEP = 1/n Σ_i log Σ_z P̂(y_i | z) · θ(x_i)_z.

LEEP needs categorical labels on both sides; our choices where a side is a regression task (the paper has none):
a regression target's values, and a regression source's single output on the target inputs, are cut into
``n_bins`` equal-frequency bins (`quantile_bins`); a regression source's θ is then one-hot on its output's bin
(the hard-assignment special case of LEEP).
"""

from __future__ import annotations

import numpy as np

from transfer.errors import InputError

DEFAULT_BINS = 5


def quantile_bins(values: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Bin index [n] of each value [n] among ``n_bins`` equal-frequency bins, numbered 0.. without gaps (ties share
    a bin; fewer bins when there are fewer distinct values)."""
    values = np.asarray(values, np.float64).reshape(-1)
    if not isinstance(n_bins, int) or n_bins < 2:
        raise InputError(f"The 'n_bins' parameter of quantile_bins must be an int >= 2. Got {n_bins!r} instead.")
    edges = np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.unique(np.searchsorted(edges, values, side="right"), return_inverse=True)[1].reshape(-1)


def leep(source_probs: np.ndarray, target_labels: np.ndarray) -> float:
    """LEEP of source predictions ``source_probs`` [n, Z] (rows are distributions over the Z source classes) for
    target class indices ``target_labels`` [n] (the formula in the module docstring)."""
    theta = np.asarray(source_probs, np.float64)
    labels = np.asarray(target_labels)
    if theta.ndim != 2 or theta.shape[0] == 0 or not np.allclose(theta.sum(1), 1.0, atol=1e-4) or (theta < 0).any():
        raise InputError(
            "The 'source_probs' parameter of leep must be an [n, Z] array of probability rows (n >= 1). "
            f"Got shape {theta.shape} instead."
        )
    if labels.shape != (theta.shape[0],) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise InputError(
            f"The 'target_labels' parameter of leep must be {theta.shape[0]} non-negative class indices. "
            f"Got shape {labels.shape} and dtype {labels.dtype} instead."
        )
    one_hot = np.eye(labels.max() + 1)[labels]  # [n, C]
    joint = one_hot.T @ theta / len(labels)  # P̂(y, z) [C, Z]
    marginal = joint.sum(0, keepdims=True)  # P̂(z) [1, Z]
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)  # P̂(y | z)
    expected = (theta @ conditional.T)[np.arange(len(labels)), labels]  # Σ_z P̂(y_i | z) θ(x_i)_z [n]
    return float(np.mean(np.log(expected)))


def source_distribution(outputs: np.ndarray, *, regression: bool, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """θ [n, Z] from a source model's outputs on the target inputs: the softmax of logits [n, Z], or, for a
    regression source's outputs [n, 1], one-hot on the equal-frequency bin of each output."""
    outputs = np.asarray(outputs, np.float64)
    if regression:
        bins = quantile_bins(outputs[:, 0], n_bins)
        return np.eye(bins.max() + 1)[bins]
    shifted = np.exp(outputs - outputs.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)
