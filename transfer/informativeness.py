"""Does a measured-transfer target carry ranking signal? Tests that say whether a target's measured gains can tell
ranking methods apart, from its per-seed runs alone.

A target is *informative* when both hold:

1. **its baseline learns**: fine-tuned on the target alone, the model's skill score — the share of the way from
   the chance level c to a perfect score it covers, (score − c) / (1 − c) — is at least `MIN_SKILL` (0.1), and its
   margin over chance is significant over the seeds (one-sided one-sample t-test, p < `ALPHA`). The chance level is
   the majority class's share of the evaluated rows for classification (accuracy), 0 for regression (its primary
   metric is a correlation, and predicting the mean scores 0; the skill score is then the correlation itself), so
   one threshold serves both. A target whose baseline sits at (or below) the majority class cannot show what a
   source adds: the models mostly predict one class, and a "gain" is a shift in that share. 0.1 is the usual floor
   of a slight agreement beyond chance (Cohen's κ, which the skill score equals for accuracy against the majority
   rate): 2 points above a 68% majority (mrpc) is not learning.
2. **the source matters beyond seed noise**: a randomised-block one-way ANOVA of the per-seed gains, sources as the
   treatment and seeds as blocks (every source's run of seed r is compared with the same baseline run r, so the
   seed is a shared effect), rejects "every source has the same mean gain" at p < `ALPHA`.

Beside them: the split-half reliability of the multi-seed mean ranking (the Spearman correlation of the sources'
mean gains over two disjoint halves of the seeds, averaged over every split, then Spearman–Brown corrected to the
full number of seeds: ρ_full = kρ / (1 + (k − 1)ρ), k = R / (R/2) = 2) — the ceiling any ranking method can reach
against that mean — and the number of sources whose gain is significantly positive / negative (paired t-test of
source vs baseline runs over the seeds, two-sided p < `ALPHA`, uncorrected).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from transfer.errors import InputError

ALPHA = 0.05
MIN_SKILL = 0.1


def chance_level(labels: np.ndarray, regression: bool) -> float:
    """What a model that learnt nothing scores on ``labels`` [n]: the majority class's share (classification
    accuracy), 0 for regression (the mean of Pearson and Spearman of a constant prediction)."""
    labels = np.asarray(labels)
    if regression:
        return 0.0
    if labels.size == 0:
        raise InputError("The 'labels' parameter of chance_level must hold at least one label. Got none.")
    return float(np.unique(labels, return_counts=True)[1].max() / labels.size)


def block_anova(gains: np.ndarray) -> tuple[float, float]:
    """Randomised-block one-way ANOVA of ``gains`` [S sources, R seeds] (no missing values): F and p of the source
    effect, with the seed as block.

        SS_source = R Σ_s (ḡ_s − ḡ)²,  SS_seed = S Σ_r (ḡ_r − ḡ)²,  SS_error = Σ (g − ḡ)² − SS_source − SS_seed
        F = [SS_source / (S − 1)] / [SS_error / ((S − 1)(R − 1))]"""
    gains = np.asarray(gains, np.float64)
    if gains.ndim != 2 or min(gains.shape) < 2 or np.isnan(gains).any():
        raise InputError(
            "The 'gains' parameter of block_anova must be a complete [sources, seeds] array with at least 2 of each. "
            f"Got shape {gains.shape} with {int(np.isnan(gains).sum())} missing values."
        )
    n_sources, n_seeds = gains.shape
    grand = gains.mean()
    ss_source = n_seeds * ((gains.mean(axis=1) - grand) ** 2).sum()
    ss_seed = n_sources * ((gains.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((gains - grand) ** 2).sum() - ss_source - ss_seed
    df_source, df_error = n_sources - 1, (n_sources - 1) * (n_seeds - 1)
    if ss_error <= 0:
        return (float("inf"), 0.0) if ss_source > 0 else (float("nan"), float("nan"))
    f = (ss_source / df_source) / (ss_error / df_error)
    return float(f), float(stats.f.sf(f, df_source, df_error))


def split_half_reliability(gains: np.ndarray) -> tuple[float, float]:
    """(mean split-half Spearman ρ, its Spearman–Brown correction to every seed) of the mean-gain ranking of
    ``gains`` [S sources, R ≥ 2 seeds]: every split of the seeds into ⌊R/2⌋ and the rest, once each."""
    gains = np.asarray(gains, np.float64)
    n_seeds = gains.shape[1]
    if n_seeds < 2:
        raise InputError(f"The 'gains' parameter of split_half_reliability needs at least 2 seeds. Got {n_seeds}.")
    rhos = []
    for half in combinations(range(n_seeds), n_seeds // 2):
        rest = [r for r in range(n_seeds) if r not in half]
        if n_seeds % 2 == 0 and half > tuple(rest):
            continue  # an even split appears twice
        rho = stats.spearmanr(gains[:, list(half)].mean(axis=1), gains[:, rest].mean(axis=1)).statistic
        rhos.append(0.0 if np.isnan(rho) else float(rho))
    rho = float(np.mean(rhos))
    return rho, 2 * rho / (1 + rho) if rho > -1 else -1.0


@dataclass(frozen=True)
class TargetSignal:
    """The tests of the module docstring for one target (gains and levels in points: 100 × the primary metric)."""

    baseline: float  # mean over seeds
    baseline_std: float
    chance: float  # mean over seeds of the chance level of the evaluated rows
    skill: float  # (baseline − chance) / (100 − chance), means over seeds
    baseline_p: float  # one-sided: baseline > chance
    learns: bool
    anova_f: float
    anova_p: float
    sources_differ: bool
    split_half_spearman: float
    reliability: float  # Spearman–Brown corrected
    n_sources: int
    n_seeds: int
    significantly_positive: int
    significantly_negative: int
    best_gain: float  # the largest mean gain
    informative: bool


def target_signal(
    baseline: np.ndarray, chance: np.ndarray, source_values: np.ndarray, regression: bool
) -> TargetSignal:
    """The tests for one target from ``baseline`` [R] (primary metric per seed), ``chance`` [R] (`chance_level` of
    each seed's evaluated rows) and ``source_values`` [S, R] (each source's primary metric per seed), fractions."""
    baseline, chance = np.asarray(baseline, np.float64), np.asarray(chance, np.float64)
    values = np.asarray(source_values, np.float64)
    if values.ndim != 2 or values.shape[1] != baseline.size or chance.size != baseline.size:
        raise InputError(
            "The 'source_values' parameter of target_signal must be [sources, seeds] with the seeds of 'baseline' and "
            f"'chance'. Got {values.shape}, {baseline.shape} and {chance.shape}."
        )
    gains = values - baseline[None, :]
    above = baseline - chance
    skill = float(above.mean() / (1 - chance.mean()))
    baseline_p = (
        float(stats.ttest_1samp(above, 0.0, alternative="greater").pvalue)
        if np.ptp(above) > 0
        else (0.0 if above.mean() > 0 else 1.0)
    )
    learns = bool(skill >= MIN_SKILL and baseline_p < ALPHA)
    f, p = block_anova(gains)
    rho, reliability = split_half_reliability(gains)
    positive = negative = 0
    for row in gains:
        if np.ptp(row) > 0 and stats.ttest_1samp(row, 0.0).pvalue < ALPHA:
            positive += int(row.mean() > 0)
            negative += int(row.mean() < 0)
    differ = bool(p < ALPHA)
    return TargetSignal(
        baseline=100 * float(baseline.mean()),
        baseline_std=100 * float(baseline.std(ddof=1)),
        chance=100 * float(chance.mean()),
        skill=skill,
        baseline_p=baseline_p,
        learns=learns,
        anova_f=f,
        anova_p=p,
        sources_differ=differ,
        split_half_spearman=rho,
        reliability=reliability,
        n_sources=int(values.shape[0]),
        n_seeds=int(baseline.size),
        significantly_positive=positive,
        significantly_negative=negative,
        best_gain=100 * float(gains.mean(axis=1).max()),
        informative=learns and differ,
    )
