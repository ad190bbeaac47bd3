"""Selection quality: what a training subset costs on the targets, as a share of training on the whole pool.

The question users ask of a selection method (Everaert & Potts 2023, §5; Wu et al. 2024, Table 1, who report ICONS
at 98.6% of full-data performance with 20% of LLaVA-665K; Agarwal et al. 2022 / Anand et al., who prune about 45%
of SNLI by VoG for -0.5 points): fine-tune on the subset an arm (a method with its parameters) chose at a budget,
evaluate on each target's held-out rows, and compare with the same recipe on the whole pool.

With m(a, b, s, t) the primary metric of arm a at budget b, seed s, on target t, and "full" the whole pool:

    share(a, b, s) = mean_t  m(a, b, s, t) / mean_s' m(full, s', t)

summarised over seeds by its mean and standard deviation. Against random selection at the same budget, the paired
difference per seed, d(s) = mean_t [m(a, b, s, t) - m(random, b, s, t)], is summarised by its mean, standard
deviation, the share of seeds with d > 0 and a paired t-test (`transfer.groundtruth.summarise_gains`). The same
summaries are given per target (``target`` = the target's name) beside the average over targets (``target`` =
``"all"``).

Plain numpy/pandas arithmetic on a table of runs, kept in transfer/ so that the selection side (`selection.quality`
re-exports it) and the read side (`store.results`, which may not import selection/) share one implementation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from transfer.errors import InputError
from transfer.groundtruth import summarise_gains

FULL = "full"
RANDOM = "random"
ALL_TARGETS = "all"
COLUMNS = (
    "target",
    "arm",
    "budget",
    "n_train",
    "n_seeds",
    "score_mean",
    "score_std",
    "share_mean",
    "share_std",
    "vs_random_mean",
    "vs_random_std",
    "vs_random_positive_share",
    "vs_random_p_value",
)


def summarise_selection(results: pd.DataFrame) -> pd.DataFrame:
    """Shares of the full-pool score and paired comparisons against random, from per-run primary metrics.

    ``results``: one row per (arm, budget, seed, target) with columns arm, budget, seed, target, n_train and value
    (the primary metric). It must hold the ``"full"`` arm (the whole pool) for every target. Returns one row per
    (target, arm, budget) — ``target`` ``"all"`` averages the targets per seed first — with the columns of
    ``COLUMNS``: ``score_*`` in metric units, ``share_*`` as fractions of the full-pool score, ``vs_random_*`` in
    metric units over the seeds both arms share (NaN for random itself and where random was not run)."""
    missing = {"arm", "budget", "seed", "target", "n_train", "value"} - set(results.columns)
    if missing:
        raise InputError(f"The 'results' parameter of summarise_selection lacks the columns {sorted(missing)}.")
    full = results[results.arm == FULL].groupby("target").value.mean()
    absent = sorted(set(results.target) - set(full.index))
    if absent:
        raise InputError(f"No full-pool ('{FULL}') runs for targets {absent}: a share needs the full-pool score.")
    frame = results.assign(share=results.value / results.target.map(full))
    averaged = frame.groupby(["arm", "budget", "seed"], as_index=False)[["value", "share", "n_train"]].mean()
    frame = pd.concat([frame, averaged.assign(target=ALL_TARGETS)], ignore_index=True)
    rows = []
    for (target, arm, budget), group in frame.groupby(["target", "arm", "budget"], sort=True):
        by_seed = group.set_index("seed")
        row = {
            "target": target,
            "arm": arm,
            "budget": float(budget),
            "n_train": float(group.n_train.mean()),
            "n_seeds": len(group),
            "score_mean": float(group.value.mean()),
            "score_std": _std(group.value),
            "share_mean": float(group.share.mean()),
            "share_std": _std(group.share),
            "vs_random_mean": np.nan,
            "vs_random_std": np.nan,
            "vs_random_positive_share": np.nan,
            "vs_random_p_value": np.nan,
        }
        baseline = frame[(frame.target == target) & (frame.arm == RANDOM) & (frame.budget == budget)]
        seeds = sorted(set(by_seed.index) & set(baseline.seed))
        if arm != RANDOM and seeds:
            gain = summarise_gains(
                by_seed.value.loc[seeds].to_numpy(), baseline.set_index("seed").value.loc[seeds].to_numpy()
            )
            row.update(
                vs_random_mean=gain.mean_gain,
                vs_random_std=gain.std_gain,
                vs_random_positive_share=gain.positive_share,
                vs_random_p_value=gain.p_value,
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _std(values: pd.Series) -> float:
    """Sample standard deviation (ddof 1); 0 for a single seed."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0
