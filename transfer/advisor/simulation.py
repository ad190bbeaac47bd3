"""Replaying ``recommend`` on measured seeds: the proof that sequential measurement picks the right source.

For one target, measured runs hold every arm (the no-transfer baseline ``''`` and each source) on the same seeds.
Two seeds per arm are held out as the truth (their mean score); the procedure pulls, without replacement, from the
other seeds: one pull = one seed's score of that arm, i.e. a target fine-tune with a new seed from the source's
checkpoint of that seed (like the atlas, it resamples both). Every policy is scored the same way against the truth:

    regret@1 = 100 · (max_a truth_a − truth_chosen) / max_a truth_a     (% of the best performance)
    points_lost = max_a truth_a − truth_chosen                            (points of the target's metric)

Policies (`POLICIES`): ``recommend`` (`transfer.advisor.best_arm.identify_best` under the advisor's priors over the
baseline and its shortlist, `Priors.shortlist`, stopping at ``confidence`` or the budget), ``direct-logme`` (top-1
of a zero-run score), ``advisor+verify`` (the advisor's top ``budget − 1`` sources and the baseline, one pull each,
the best observed wins; under 2 runs the advisor's own call), ``uniform`` (round-robin over the baseline and the
advisor's top `SHORTLIST` sources, the best observed mean wins; the advisor's call until a source is measured) and
``one-seed-oracle`` (every arm once).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from transfer.advisor.best_arm import GainPosterior, identify_best
from transfer.errors import InputError

SHORTLIST = 5
TRUTH_SEEDS = 2
EVERY_ARM_ONCE = -2  # the one-seed oracle's budget label (its runs: one per arm)
POLICIES = ("recommend", "direct-logme", "advisor+verify", "uniform", "one-seed-oracle")


@dataclass(frozen=True)
class Priors:
    """Per source (index): the prior gain over the baseline and its standard deviation (points), the zero-run
    ranking score to compare against (higher = better); the pooled per-pull seed noise (points) and the share of
    the prior's error the sources of one target have in common (`transfer.advisor.best_arm.GainPosterior`);
    ``shortlist``: the sources ``recommend`` measures (its screen's top M, `flows.recommend`; None: every source)."""

    gain: pd.Series
    sd: pd.Series
    zero_run_score: pd.Series
    noise_sd: float
    correlation: float = 0.0
    shortlist: tuple[str, ...] | None = None


def regret(truth: pd.Series, chosen: str) -> tuple[float, float]:
    """(regret@1 in % of the best truth, points lost) of choosing arm ``chosen``."""
    best = float(truth.max())
    lost = best - float(truth[chosen])
    return 100 * lost / best if best > 0 else float("nan"), lost


def answer_row(
    truth: pd.Series, split: tuple, policy: str, budget: int, runs: int, chosen: str, p_best: float = float("nan")
) -> dict:
    """One policy's answer on one truth split, scored (the columns of `replay_target`)."""
    lost_share, lost = regret(truth, chosen)
    return {
        "split": ",".join(str(s) for s in split),
        "policy": policy,
        "budget": budget,
        "runs": runs,
        "chosen": chosen,
        "p_best": p_best,
        "regret": lost_share,
        "points_lost": lost,
        "nothing_helps": truth.idxmax() == "",
        "dont_transfer": chosen == "",
        "correct": chosen == truth.idxmax(),
    }


def pull_held_in(left: dict[str, list[float]], arms: list[str], arm: int) -> float:
    """One more held-in seed's score of ``arms[arm]`` (removed from ``left``: pulls are without replacement)."""
    return left[arms[arm]].pop()


def still_held_in(left: dict[str, list[float]], arms: list[str]) -> np.ndarray:
    """[K+1] whether each arm has a held-in seed left to pull."""
    return np.array([len(left[a]) > 0 for a in arms])


def best_observed(observed: dict[str, list[float]]) -> str:
    """The arm with the highest mean observed score (ties to the first pulled)."""
    return max(observed, key=lambda arm: np.mean(observed[arm]))


def replay_target(
    values: pd.DataFrame,
    priors: Priors,
    budgets: Sequence[int],
    *,
    confidence: float = 0.9,
    seed: int = 0,
) -> pd.DataFrame:
    """Every policy at every budget on every choice of truth seeds of one target.

    ``values``: [arm × seed] scores in points, the baseline's row ``''`` and one row per source of ``priors``, no
    missing seeds (at least ``TRUTH_SEEDS + 1``). Returns long rows: split (the truth seeds), policy, budget (the
    most fine-tunes it may spend), runs (what it spent), chosen, p_best (recommend only), regret, points_lost,
    nothing_helps (the truth's best arm is the baseline), dont_transfer (the baseline was chosen), correct (the
    truth's best was chosen)."""
    if "" not in values.index or values.isna().any().any() or values.shape[1] <= TRUTH_SEEDS:
        raise InputError(
            "The 'values' parameter of replay_target must hold the baseline row '' and more than "
            f"{TRUTH_SEEDS} seeds for every arm, none missing. Got {values.shape[1]} seeds."
        )
    sources = [s for s in values.index if s != ""]
    arms = ["", *sources]
    order = priors.gain.reindex(sources).sort_values(ascending=False).index.tolist()
    measured = ["", *(sources if priors.shortlist is None else [s for s in sources if s in priors.shortlist])]
    rows = []
    for split in itertools.combinations(values.columns, TRUTH_SEEDS):
        truth = values[list(split)].mean(axis=1)
        pool = values.drop(columns=list(split))
        rng = np.random.default_rng([seed, *map(int, split)])
        shuffled = {arm: list(rng.permutation(pool.loc[arm].to_numpy())) for arm in arms}

        advisor_call = order[0] if priors.gain[order[0]] > 0 else ""
        rows.append(
            answer_row(truth, split, "direct-logme", 0, 0, str(priors.zero_run_score.reindex(sources).idxmax()))
        )
        once = best_observed({a: shuffled[a][:1] for a in arms})
        rows.append(answer_row(truth, split, "one-seed-oracle", EVERY_ARM_ONCE, len(arms), once))
        for budget in budgets:
            # recommend: the posterior under the advisor's priors over its shortlist, pulling from held-in seeds
            left = {arm: list(shuffled[arm]) for arm in measured}
            posterior = GainPosterior(
                priors.gain.reindex(measured[1:]).to_numpy(),
                priors.sd.reindex(measured[1:]).to_numpy(),
                priors.noise_sd,
                priors.correlation,
            )
            answer = identify_best(
                posterior,
                partial(pull_held_in, left, measured),
                budget,
                confidence=confidence,
                rng=rng,
                available=partial(still_held_in, left, measured),
            )
            rows.append(
                answer_row(truth, split, "recommend", budget, len(answer.pulls), measured[answer.best], answer.p_best)
            )
            # advisor + verify@(budget - 1): one pull each of the baseline and the advisor's top sources
            if budget < 2:
                rows.append(answer_row(truth, split, "advisor+verify", budget, 0, advisor_call))
            else:
                picked = ["", *order[: budget - 1]]
                rows.append(
                    answer_row(
                        truth,
                        split,
                        "advisor+verify",
                        budget,
                        len(picked),
                        best_observed({a: shuffled[a][:1] for a in picked}),
                    )
                )
            # uniform: round-robin over the baseline and the shortlist
            shortlist = ["", *order[:SHORTLIST]]
            observed: dict[str, list[float]] = {}
            spent = 0
            for turn in range(budget):
                arm = shortlist[turn % len(shortlist)]
                pulls = observed.setdefault(arm, [])
                if len(pulls) < len(shuffled[arm]):
                    pulls.append(shuffled[arm][len(pulls)])
                    spent += 1
            rows.append(
                answer_row(
                    truth,
                    split,
                    "uniform",
                    budget,
                    spent,
                    best_observed(observed) if set(observed) - {""} else advisor_call,
                )
            )
    return pd.DataFrame(rows)


def curve(replays: pd.DataFrame) -> pd.DataFrame:
    """Per (policy, budget): mean runs, regret and points lost with their standard errors over (target, split)
    rows, the share of correct answers, the share of correct "don't transfer" calls where nothing helps, and for
    ``recommend`` the share correct among answers given with P(best) ≥ 0.9 (its calibration) and how many."""
    rows = []
    for (policy, budget), frame in replays.groupby(["policy", "budget"]):
        sure = frame[frame.p_best >= 0.9]
        no_help = frame[frame.nothing_helps]
        n = len(frame)
        rows.append(
            {
                "policy": policy,
                "budget": int(budget),
                "runs": float(frame.runs.mean()),
                "regret": float(frame.regret.mean()),
                "regret_se": float(frame.regret.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
                "points_lost": float(frame.points_lost.mean()),
                "points_lost_se": float(frame.points_lost.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
                "correct": float(frame.correct.mean()),
                "dont_transfer_correct": float(no_help.dont_transfer.mean()) if len(no_help) else float("nan"),
                "no_help_cases": len(no_help),
                "sure_correct": float(sure.correct.mean()) if len(sure) else float("nan"),
                "sure_answers": len(sure),
                "cases": n,
            }
        )
    return pd.DataFrame(rows).sort_values(["policy", "budget"]).reset_index(drop=True)
