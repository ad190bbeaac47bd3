"""The advisor's evaluation on measured transfer: per-seed and mean gains from measured runs, and the strict
leave-one-target-out harness that scores the advisor (and its verification) the way every ranking method is
scored."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from transfer.advisor.learner import advise_target
from transfer.advisor.verification import verified_ranking


def seed_gains(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-seed gains in points from measured ``runs`` (columns target, source, seed, value; source '' = the
    no-transfer baseline, value a fraction): gain = 100·(value − the baseline of the same target and seed). Columns
    target, source, seed, gain; runs without a baseline of their seed are dropped."""
    points = runs.assign(value=100 * runs.value.astype(float), seed=runs.seed.astype(int))
    baseline = points[points.source == ""].set_index(["target", "seed"]).value
    gains = points[points.source != ""]
    reference = baseline.reindex(pd.MultiIndex.from_arrays([gains.target, gains.seed])).to_numpy()
    return gains.assign(gain=gains.value.to_numpy() - reference).dropna(subset=["gain"])[
        ["target", "source", "seed", "gain"]
    ]


def mean_gains(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean gain in points over the seeds per (target, source) (`seed_gains`): columns target, source, gain."""
    return seed_gains(runs).groupby(["target", "source"]).gain.mean().rename("gain").reset_index()


def leave_one_target_out(
    scores: pd.DataFrame,
    runs: pd.DataFrame,
    tasks: pd.DataFrame,
    *,
    alpha: float = 0.2,
    verify: tuple[int, ...] = (2, 3),
    ks: tuple[int, ...] = (1, 3, 5),
    seed: int = 0,
    name: str = "advisor",
    learners: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """Strict leave-one-target-out evaluation of the advisor on measured transfer.

    ``runs``: per-seed measured runs (columns target, source, seed, value; source '' = no transfer) with ≥ 2 seeds
    per target; ``scores`` the methods' long scores of the same pairs. For each target t, t's runs reach neither
    the features (priors from the other targets only) nor the learner (`advise_target`); the advisor's ranking is
    scored with `transfer.metrics.ranking_quality` against t's mean per source, and ``<name>+verify@K`` re-ranks
    the top K by one seed's measured gains (`verified_ranking`) and is scored against the other seeds' mean,
    averaged over the seed, like the one-seed oracle. Also per target: ``coverage`` (share of t's mean gains
    inside the intervals: the per-target coverage whose mean over targets is the headline), ``width`` (mean
    interval width, points; inf where the training targets are too few for the level), ``dont_transfer`` (the
    call) and ``nothing_helps`` (no source's mean gain is above zero). ``learners``: the candidate regressors
    (default `candidate_learners`). Returns long rows (target, method, metric, value)."""
    from transfer.metrics import ranking_quality

    per_seed_gains = seed_gains(runs)
    mean_gain = mean_gains(runs)
    points = runs.assign(value=100 * runs.value.astype(float), seed=runs.seed.astype(int))
    baseline = points[points.source == ""].set_index(["target", "seed"]).value
    rows: list[dict] = []
    for target in sorted(mean_gain.target.unique()):
        advice = advise_target(scores, mean_gain, tasks, target, alpha=alpha, seed=seed, learners=learners)
        truth = mean_gain[mean_gain.target == target].set_index("source").gain.reindex(advice.gains.index)
        base = float(baseline[target].mean())
        measured = ((truth + base) / 100).to_dict()  # mean performance as a fraction, as every method is scored
        quality = ranking_quality(advice.gains.expected_gain.to_dict(), measured, baseline=base / 100, ks=ks)
        inside = (truth >= advice.gains.lower) & (truth <= advice.gains.upper)
        calibration = {
            "coverage": float(inside[truth.notna()].mean()),  # over the measured sources
            "width": float((advice.gains.upper - advice.gains.lower).mean()),
            "dont_transfer": float(advice.dont_transfer),
            "nothing_helps": float(truth.max() <= 0),
        }
        rows += [
            {"target": target, "method": name, "metric": m, "value": v} for m, v in {**quality, **calibration}.items()
        ]
        per_seed = per_seed_gains[per_seed_gains.target == target].pivot_table(
            index="source", columns="seed", values="gain"
        )
        for k in verify:
            draws = []
            for s in per_seed.columns:
                rest = [c for c in per_seed.columns if c != s]
                reranked = verified_ranking(advice.gains.expected_gain, per_seed[s], k)
                rest_base = float(baseline[target][rest].mean())
                truth_rest = ((per_seed[rest].mean(axis=1) + rest_base) / 100).to_dict()
                draws.append(ranking_quality(reranked.to_dict(), truth_rest, baseline=rest_base / 100, ks=ks))
            averaged = pd.DataFrame(draws).mean(skipna=True)
            rows += [
                {"target": target, "method": f"{name}+verify@{k}", "metric": m, "value": float(v)}
                for m, v in averaged.items()
            ]
    return pd.DataFrame(rows)
