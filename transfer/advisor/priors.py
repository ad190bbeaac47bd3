"""The priors of ``recommend``'s measuring step (`transfer.advisor.best_arm.GainPosterior`), from the advisor's
answer and the measured runs it learned from. All in points (100 × the primary metric).

- A source's prior gain is the advisor's expected gain; its standard deviation the half-width of its CV+ interval at
  level 1 − α over the Gaussian's, (upper − lower) / (2 z_{1−α/2}); where the interval is unbounded (too few
  training targets back the level) or there is no learned gain, the spread of the measured targets' mean gains.
- The per-pull seed noise σ₀ of a target: the root mean over its arms of the variance over seeds of their scores;
  pooled over the measured targets of the target's kind (classification or regression) as the root mean square
  (over every target when none shares its kind).
- ρ, the share of the prior's error that a target's sources have in common: `SourceAdvisor.shared_error`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from transfer.errors import InputError


def prior_sd(lower: pd.Series, upper: pd.Series, level: float, fallback: float) -> pd.Series:
    """Per source: the prior's standard deviation from its interval [lower, upper] at ``level``, or ``fallback``
    where the interval is unbounded or missing."""
    if not 0 < level < 1:
        raise InputError(f"The 'level' parameter of prior_sd must be in (0, 1). Got {level!r} instead.")
    if not (np.isfinite(fallback) and fallback > 0):
        raise InputError(f"The 'fallback' parameter of prior_sd must be finite and > 0. Got {fallback!r} instead.")
    width = (upper - lower) / (2 * stats.norm.ppf(0.5 + level / 2))
    return width.where(np.isfinite(width) & (width > 0), fallback).astype(float)


def target_noise(runs: pd.DataFrame) -> pd.Series:
    """Per target: its seed noise in points, from measured ``runs`` (columns target, source, seed, value; value a
    fraction), over the arms measured on at least two seeds."""
    points = runs.assign(value=100 * runs.value)
    variance = points.groupby(["target", "source"]).value.var(ddof=1).dropna()
    return (variance.groupby("target").mean() ** 0.5).rename("noise")


def pooled_noise(noise: pd.Series, kinds: pd.Series, kind: str) -> float:
    """σ₀ for a target of ``kind``: the root mean square of ``noise`` (`target_noise`) over the targets whose
    ``kinds`` entry is ``kind``, or over all of them when none is."""
    if not len(noise):
        raise InputError("The 'noise' parameter of pooled_noise must hold at least one measured target. Got none.")
    alike = noise[kinds.reindex(noise.index) == kind]
    return float(np.sqrt(((alike if len(alike) else noise) ** 2).mean()))
