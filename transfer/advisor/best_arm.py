"""Sequential measurement as best-arm identification: which source (or none) to fine-tune on first, measured a
few fine-tunes at a time until the answer is sure enough.

Arms: 0 is the no-transfer baseline, 1..K the sources. A *pull* of arm a is one target fine-tune at a new seed (from
the source's checkpoint of that seed: like the atlas, a pull resamples the source fine-tune's seed and the target
fine-tune's); it returns the target's score y in points. Gains are measured against the baseline's own pulls::

    y_0 = L + ε,   y_a = L + δ_a + ε,   ε ~ N(0, σ²)
    δ ~ N(g, P₀),   P₀ = S ((1 − ρ) I + ρ 11ᵀ) S,   S = diag(s)

with g, s the advisor's expected gains and their scales, and ρ the correlation of the advisor's errors within one
target (it errs for all of a target's sources together: measuring a few sources that disappoint lowers the
others). The level L is known only from the baseline's pulls (flat prior), so source pulls never move the reference.
The measured gains z_a = ȳ_a − ȳ_0 of the pulled sources M are z = δ_M + e with e ~ N(0, R),
R = diag(σ²/n_a) + (σ²/n_0) 11ᵀ (they share the baseline's error), and the posterior is the Gaussian update::

    K = P₀ Hᵀ (H P₀ Hᵀ + R)⁻¹,   E δ = g + K (z − H g),   Cov δ = P₀ − K H P₀

(before the baseline's first pull: the prior alone). Which arm is best depends on δ alone (δ_0 = 0). The
seed noise σ² starts from the pooled atlas value σ₀² (worth `NOISE_PRIOR_DOF` observations) and is updated by the
target's own repeated pulls (scaled inverse-χ² update with the within-arm sum of squares):
σ² = (ν₀ σ₀² + Σ_a Σ_i (y_ai − ȳ_a)²) / (ν₀ + Σ_a (n_a − 1)).

Pulls are chosen by top-two Thompson sampling (Russo 2016, "Simple Bayesian algorithms for best arm
identification"): draw δ from the posterior, its best arm is the leader; with probability β pull the leader, else
draw again until another arm is best and pull that challenger. `identify_best` pulls the baseline first (every gain
is relative to it), then stops when the posterior probability that its answer (`answer`: the arm of highest
expected gain) is the best reaches the confidence, or when the budget of pulls is spent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from transfer.errors import InputError

NOISE_PRIOR_DOF = 2.0  # the pooled seed noise counts as this many observations: targets differ tenfold (atlas)
P_BEST_DRAWS = 4000


class GainPosterior:
    """The posterior over the arms' gains over the baseline after the pulls so far (see the module docstring).

    ``prior_gain``, ``prior_sd``: [K] the sources' prior gains and their standard deviations (points);
    ``noise_sd``: σ₀, the pooled per-pull seed noise (points); ``correlation``: ρ in [0, 1), how much of the
    prior's error the sources of one target share."""

    def __init__(self, prior_gain: np.ndarray, prior_sd: np.ndarray, noise_sd: float, correlation: float = 0.0) -> None:
        prior_gain, prior_sd = np.asarray(prior_gain, float), np.asarray(prior_sd, float)
        if prior_gain.ndim != 1 or prior_gain.shape != prior_sd.shape or not len(prior_gain):
            raise InputError(
                "The 'prior_gain' and 'prior_sd' parameters of GainPosterior must be 1-d arrays of one length >= 1. "
                f"Got shapes {prior_gain.shape} and {prior_sd.shape} instead."
            )
        if not (np.isfinite(prior_sd).all() and (prior_sd > 0).all()):
            raise InputError(f"The 'prior_sd' parameter of GainPosterior must be finite and > 0. Got {prior_sd}.")
        if not (np.isfinite(noise_sd) and noise_sd > 0):
            raise InputError(f"The 'noise_sd' parameter of GainPosterior must be finite and > 0. Got {noise_sd!r}.")
        if not 0 <= correlation < 1:
            raise InputError(f"The 'correlation' parameter of GainPosterior must be in [0, 1). Got {correlation!r}.")
        self.prior_gain = prior_gain
        shared = (1 - correlation) * np.eye(len(prior_sd)) + correlation
        self.prior_cov = np.outer(prior_sd, prior_sd) * shared  # [K, K]
        self.noise_sd0 = float(noise_sd)
        self.arms: list[int] = []
        self.values: list[float] = []

    @property
    def n_arms(self) -> int:
        return len(self.prior_gain) + 1

    def observe(self, arm: int, value: float) -> None:
        """Add one pull's score (points) of ``arm`` (0 = baseline)."""
        if not 0 <= arm < self.n_arms:
            raise InputError(f"The 'arm' parameter of observe must be in [0, {self.n_arms}). Got {arm!r} instead.")
        self.arms.append(int(arm))
        self.values.append(float(value))

    def pulls(self) -> np.ndarray:
        """[K+1] pulls per arm so far."""
        return np.bincount(np.asarray(self.arms, dtype=int), minlength=self.n_arms)

    def noise_sd(self) -> float:
        """σ: the pooled σ₀ updated by the within-arm spread of the target's own repeated pulls."""
        arms, values = np.asarray(self.arms, dtype=int), np.asarray(self.values)
        squares, dof = 0.0, 0.0
        for arm in np.unique(arms):
            mine = values[arms == arm]
            squares += float(((mine - mine.mean()) ** 2).sum())
            dof += len(mine) - 1
        return float(np.sqrt((NOISE_PRIOR_DOF * self.noise_sd0**2 + squares) / (NOISE_PRIOR_DOF + dof)))

    def gains(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean [K+1], covariance [K+1, K+1]) of the arms' gains over the baseline (row 0 is the baseline's, 0)."""
        arms, values = np.asarray(self.arms, dtype=int), np.asarray(self.values)
        counts = self.pulls()
        mean = np.zeros(self.n_arms)
        covariance = np.zeros((self.n_arms, self.n_arms))
        mean[1:], covariance[1:, 1:] = self.prior_gain, self.prior_cov
        measured = np.flatnonzero(counts[1:] > 0)  # sources pulled, as indices into δ
        if not counts[0] or not len(measured):
            return mean, covariance
        noise = self.noise_sd() ** 2
        sums = np.bincount(arms, weights=values, minlength=self.n_arms)
        reference = sums[0] / counts[0]
        observed = sums[measured + 1] / counts[measured + 1] - reference  # z [M]
        errors = np.diag(noise / counts[measured + 1]) + noise / counts[0]  # R [M, M]
        across = self.prior_cov[:, measured]  # P₀ Hᵀ [K, M]
        gain = np.linalg.solve(across[measured] + errors, across.T).T  # K = P₀ Hᵀ (H P₀ Hᵀ + R)⁻¹ [K, M]
        mean[1:] = self.prior_gain + gain @ (observed - self.prior_gain[measured])
        covariance[1:, 1:] = self.prior_cov - gain @ across.T
        return mean, covariance

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """[n, K+1] draws of the arms' gains."""
        mean, covariance = self.gains()
        draws = np.zeros((n, self.n_arms))
        draws[:, 1:] = rng.multivariate_normal(mean[1:], covariance[1:, 1:], size=n, method="cholesky")
        return draws

    def p_best(self, rng: np.random.Generator, draws: int = P_BEST_DRAWS) -> np.ndarray:
        """[K+1] the posterior probability that each arm is the best (Monte Carlo over ``draws``)."""
        return np.bincount(self.sample(rng, draws).argmax(axis=1), minlength=self.n_arms) / draws


def top_two_thompson(
    posterior: GainPosterior, rng: np.random.Generator, available: np.ndarray | None = None, beta: float = 0.5
) -> int:
    """The arm to pull next by top-two Thompson sampling (Russo 2016) among ``available`` arms ([K+1] bool; default
    all): the best arm of one posterior draw (the leader) with probability ``beta``, else the best arm of a draw
    whose best is another arm (the challenger; 100 draws at once, then the leader's runner-up by posterior mean)."""
    allowed = np.ones(posterior.n_arms, bool) if available is None else np.asarray(available, bool)
    if not allowed.any():
        raise InputError("The 'available' parameter of top_two_thompson must allow at least one arm. Got none.")
    masked = np.where(allowed, 0.0, -np.inf)
    draws = posterior.sample(rng, 101) + masked
    leader = int(draws[0].argmax())
    if rng.random() < beta or allowed.sum() == 1:
        return leader
    others = draws[1:].argmax(axis=1)
    challengers = others[others != leader]
    if len(challengers):
        return int(challengers[0])
    mean = posterior.gains()[0] + masked
    mean[leader] = -np.inf
    return int(mean.argmax())


@dataclass(frozen=True)
class Identified:
    """The answer of `identify_best`: the best arm (0 = don't transfer), its posterior probability of being the
    best, every arm's gain over the baseline (mean and standard deviation, points), the pulls made (arm per pull, in
    order) and why it stopped (``confident`` or ``budget``)."""

    best: int
    p_best: float
    gain_mean: np.ndarray  # [K+1]
    gain_sd: np.ndarray  # [K+1]
    pulls: tuple[int, ...]
    stopped: str


def identify_best(
    posterior: GainPosterior,
    pull: Callable[[int], float],
    budget: int,
    *,
    confidence: float = 0.9,
    rng: np.random.Generator,
    available: Callable[[], np.ndarray] | None = None,
    beta: float = 0.5,
) -> Identified:
    """Pull arms (``pull(arm)`` -> score in points) until P(leader is best) ≥ ``confidence`` or ``budget`` pulls
    are spent; the baseline first. ``available()``: [K+1] bool, the arms that can still be pulled (a simulation's
    finite seeds; default all). With ``budget`` 0 the prior alone answers."""
    if not isinstance(budget, int | np.integer) or budget < 0:
        raise InputError(f"The 'budget' parameter of identify_best must be an int >= 0. Got {budget!r} instead.")
    if not 0 < confidence < 1:
        raise InputError(f"The 'confidence' parameter of identify_best must be in (0, 1). Got {confidence!r}.")
    pulled: list[int] = []
    stopped = "budget"
    while len(pulled) < budget:
        allowed = np.ones(posterior.n_arms, bool) if available is None else np.asarray(available(), bool)
        if pulled and answer(posterior, rng)[1] >= confidence:
            stopped = "confident"
            break
        if not allowed.any():
            break
        arm = 0 if not pulled and allowed[0] else top_two_thompson(posterior, rng, allowed, beta)
        posterior.observe(arm, pull(arm))
        pulled.append(arm)
    best, chance = answer(posterior, rng)
    if stopped == "budget" and chance >= confidence:
        stopped = "confident"
    mean, covariance = posterior.gains()
    return Identified(best, chance, mean, np.sqrt(np.diag(covariance)), tuple(pulled), stopped)


def answer(posterior: GainPosterior, rng: np.random.Generator) -> tuple[int, float]:
    """(arm, P(best)) of the arm with the highest expected gain (the Bayes choice when the loss is the gain given
    up: regret is linear in the chosen arm's value), with its posterior probability of being the best."""
    best = int(posterior.gains()[0].argmax())
    return best, float(posterior.p_best(rng)[best])
