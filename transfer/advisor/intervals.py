"""Prediction intervals whose exchangeable unit is the target: CV+ over targets.

A new target's pairs share that target's quirks, so the unit a guarantee can speak of is the target, not the pair.
CV+ (Barber, Candès, Ramdas & Tibshirani 2021, "Predictive inference with the jackknife+") with one fold per
training target k = 1..K: μ_{-k} is the whole fitting procedure (features, learner choice, fit) run without k, and
R_{k,i} = |y_{k,i} − μ_{-k}(x_{k,i})| are its absolute residuals on k's own pairs. For a new pair x,

    upper(x) = the smallest v with  Σ_k Σ_i w_{k,i}·1[μ_{-k}(x) + R_{k,i} ≤ v] ≥ (1 − α)(K + 1)
    lower(x) = the largest v with   Σ_k Σ_i w_{k,i}·1[μ_{-k}(x) − R_{k,i} ≥ v] ≥ (1 − α)(K + 1)

with w_{k,i} = 1/n_k, so every training target weighs one unit whatever its number of sources, and the new
target's unit sits at ±∞ (pooling each group's residual distribution with equal weight, as Dunn, Wasserman &
Ramdas 2022 do for two-layer hierarchical data). With one pair per target this is exactly CV+ (the
⌈(1−α)(K+1)⌉-th smallest of μ_{-k}(x) + R_k), whose coverage of a new exchangeable target is at least 1 − 2α in
the worst case and about 1 − α in practice. When K is too small for the level, (1 − α)(K + 1) > K and the bound
is infinite, not the largest residual.
"""

from __future__ import annotations

import numpy as np

from transfer.errors import InputError


def cv_plus_interval(
    centres: list[np.ndarray], residuals: list[np.ndarray], alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """CV+ bounds over groups (module docstring). ``centres[k]`` [m]: fold k's predictions μ_{-k}(x) for the m new
    pairs; ``residuals[k]`` [n_k]: fold k's absolute residuals on its own held-out group. Returns (lower, upper),
    each [m], ±inf where K groups are too few for level 1 − ``alpha``."""
    if not 0 < alpha < 1:
        raise InputError(f"The 'alpha' parameter of cv_plus_interval must be in (0, 1). Got {alpha!r} instead.")
    if len(centres) != len(residuals) or not centres or any(len(r) == 0 for r in residuals):
        raise InputError(
            "cv_plus_interval needs one non-empty residual array per fold and one centre array per fold. Got "
            f"{len(centres)} centre arrays and residual arrays of sizes {[len(r) for r in residuals]}."
        )
    need = (1 - alpha) * (len(centres) + 1) - 1e-9  # the tolerance absorbs (1 - 0.2) * 5 = 4.000...01
    weights = np.concatenate([np.full(len(r), 1.0 / len(r)) for r in residuals])  # [N]
    magnitudes = np.concatenate([np.abs(np.asarray(r, np.float64)) for r in residuals])  # [N]
    spread = np.concatenate(
        [
            np.repeat(np.asarray(c, np.float64)[:, None], len(r), axis=1)
            for c, r in zip(centres, residuals, strict=True)
        ],
        axis=1,
    )  # [m, N]: μ_{-k}(x_j) repeated over fold k's residuals
    return -smallest_reaching(magnitudes - spread, weights, need), smallest_reaching(spread + magnitudes, weights, need)


def smallest_reaching(values: np.ndarray, weights: np.ndarray, need: float) -> np.ndarray:
    """Per row of ``values`` [m, N]: the smallest value v with Σ weights[values ≤ v] ≥ ``need`` (``weights`` [N]);
    +inf where the total weight falls short."""
    order = np.argsort(values, axis=1, kind="stable")
    cumulative = np.cumsum(weights[order], axis=1)  # [m, N]
    reached = cumulative >= need
    chosen = np.take_along_axis(values, order, axis=1)[np.arange(len(values)), reached.argmax(axis=1)]
    return np.where(reached.any(axis=1), chosen, np.inf)
