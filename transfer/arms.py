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
``"all"``). `random_interval` adds the paired t-interval over seeds, mean(d) ± t(0.975, n − 1) · std(d) / √n, and
`summarise_pools` gives these per pool and over pools (a benchmark with several pools).

Plain numpy/pandas arithmetic on a table of runs, kept in transfer/ so that the selection side (`selection.quality`
re-exports it) and the read side (`store.results`, which may not import selection/) share one implementation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from transfer.errors import InputError
from transfer.groundtruth import summarise_gains

FULL = "full"
RANDOM = "random"
ALL_TARGETS = "all"
ALL_POOLS = "all held-out"
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
    "vs_random_n",
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
    metric units over the ``vs_random_n`` seeds both arms share (NaN, and 0 seeds, for random itself and where random
    was not run)."""
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
            "vs_random_n": 0,
        }
        baseline = frame[(frame.target == target) & (frame.arm == RANDOM) & (frame.budget == budget)]
        seeds = sorted(set(by_seed.index) & set(baseline.seed))
        if arm != RANDOM and seeds:
            gain = summarise_gains(
                by_seed.value.loc[seeds].to_numpy(), baseline.set_index("seed").value.loc[seeds].to_numpy()
            )
            row.update(
                vs_random_n=len(seeds),
                vs_random_mean=gain.mean_gain,
                vs_random_std=gain.std_gain,
                vs_random_positive_share=gain.positive_share,
                vs_random_p_value=gain.p_value,
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def random_interval(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` (rows of `summarise_selection` or its committed table: vs_random_mean, vs_random_std and the paired
    seeds ``vs_random_n``; a table written before that column counts ``n_seeds``, which every arm shared then) with
    the paired comparison against random in points of the primary metric (x100) added: ``vs_random_points`` and its
    95% t-interval over the paired seeds ``ci95_low``, ``ci95_high`` (NaN for one seed or no comparison), and
    ``beats_random`` (the interval's lower end above 0)."""
    n = (summary.vs_random_n if "vs_random_n" in summary else summary.n_seeds).to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = 100 * stats.t.ppf(0.975, n - 1) * summary.vs_random_std.to_numpy(np.float64) / np.sqrt(n)
    points = 100 * summary.vs_random_mean.to_numpy(np.float64)
    return summary.assign(
        vs_random_points=points, ci95_low=points - half, ci95_high=points + half, beats_random=points - half > 0
    )


def summarise_pools(results: pd.DataFrame) -> pd.DataFrame:
    """`summarise_selection` averaged over targets, per pool and over every pool (``pool`` = ``ALL_POOLS``), with
    `random_interval`. ``results``: the runs of `summarise_selection` with a ``pool`` column (one measurement per
    pool). Over pools, each (pool, target) counts as one target (its share is of that pool's full-pool score) and
    only the seeds every pool has are used. Returns one row per (pool, arm, budget): pool, then `COLUMNS` without
    target, then the columns `random_interval` adds."""
    if "pool" not in results.columns or results.empty:
        raise InputError(
            f"The 'results' parameter of summarise_pools must hold runs with a 'pool' column. Got "
            f"{len(results)} rows with columns {list(results.columns)}."
        )
    pools = dict(list(results.groupby("pool", sort=True)))
    parts = [summarise_selection(runs).assign(pool=pool) for pool, runs in pools.items()]
    common = set.intersection(*(set(runs.seed) for runs in pools.values()))
    if len(pools) > 1 and common:
        together = results[results.seed.isin(common)]
        together = together.assign(target=together.pool + "/" + together.target)
        parts.append(summarise_selection(together).assign(pool=ALL_POOLS))
    table = pd.concat(parts, ignore_index=True)
    table = table[table.target == ALL_TARGETS]
    return random_interval(table[["pool", *COLUMNS[1:]]].reset_index(drop=True))


def _std(values: pd.Series) -> float:
    """Sample standard deviation (ddof 1); 0 for a single seed."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0
