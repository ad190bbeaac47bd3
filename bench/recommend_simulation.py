"""``python -m bench recommend_simulation``: ``recommend``'s measuring step replayed on the committed transfer atlas
(`transfer.advisor.simulation`), with no new fine-tune: the atlas's seeds are the pulls.

Per atlas target (every target of the shipped atlas's recipe with a complete grid): the advisor's priors are learned
leave-one-target-out (`transfer.advisor.advise_target` on the other targets' mean gains; a prior's scale is its 80%
CV+ interval's half-width / 1.2816, or the spread of the other targets' gains where the interval is unbounded), the
seed noise is pooled over the other targets of the same kind (classification or regression: the root mean variance
over seeds of their arms), the prior's shared error ρ is estimated on the other targets (`shared_error`), and the
zero-run ranking is direct LogME. Every policy is replayed on the 10 choices of 2 truth seeds, at budgets of 0, 1,
2, 4, 6, 8 and 16 target fine-tunes and "all" (every held-in seed of every arm). The same is done on a simulated
no-help version of each target: every source's runs shifted down so that its best source's mean gain is
`NO_HELP_MARGIN` points below the baseline. Written: ``reports/results/recommend_simulation.csv`` (the curve per
group: informative targets or all, real or no-help), ``.svg`` (regret against fine-tunes on the informative targets)
and ``.json`` (the goals of issue #30, met or not, with the numbers). ``--quick``: two targets, budgets 0, 2 and 6,
nothing written. About 4 minutes on 2 cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench import atlas_targets

RESULTS = Path(__file__).resolve().parents[1] / "reports" / "results"
BUDGETS = (0, 1, 2, 4, 6, 8, 16)
QUICK_BUDGETS = (0, 2, 6)
NO_HELP_MARGIN = 3.0  # points: the simulated no-help target's best source, below its baseline
Z_80 = 1.2816  # the 80% interval's half-width in standard deviations
GOAL_RUNS = 6


def pooled_noise(runs: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    """Per target: the root mean variance over seeds of its arms (source or baseline), in points, with its kind."""
    points = runs.assign(value=100 * runs.value)
    spread = points.groupby(["target", "source"]).value.var(ddof=1).groupby("target").mean() ** 0.5
    return spread.rename("noise").to_frame().join(tasks[["kind"]], how="left")


def loto_advice(runs: pd.DataFrame, scores: pd.DataFrame, tasks: pd.DataFrame, targets: list[str]) -> dict:
    """{target: its `transfer.advisor.Advice`, learned from the other targets only}."""
    from transfer.advisor import DEFAULT_INPUTS, advise_target, describe_tasks, mean_gains

    gains, described = mean_gains(runs), describe_tasks(tasks)
    inputs = scores[scores.method.isin(DEFAULT_INPUTS)]
    return {target: advise_target(inputs, gains, described, target) for target in targets}


def shared_error(advice: dict, runs: pd.DataFrame, target: str) -> float:
    """ρ for ``target`` from the *other* targets: the share of the advisor's error variance (expected − measured mean
    gain) that is common to a target's sources, var over targets of their mean error / var of all errors, in
    [0, 0.9]."""
    from transfer.advisor import mean_gains

    gains = mean_gains(runs).set_index(["target", "source"]).gain
    errors = pd.concat(
        [
            (a.gains.expected_gain - gains[t].reindex(a.gains.index))
            .dropna()
            .rename("error")
            .to_frame()
            .assign(target=t)
            for t, a in advice.items()
            if t != target
        ]
    )
    share = errors.groupby("target").error.mean().var(ddof=1) / errors.error.var(ddof=1)
    return float(np.clip(share, 0.0, 0.9))


def priors_for(target: str, advice: dict, runs: pd.DataFrame, scores: pd.DataFrame, noise: pd.DataFrame):
    """`transfer.advisor.simulation.Priors` of ``target`` from everything but ``target``'s own runs."""
    from transfer.advisor import mean_gains
    from transfer.advisor.simulation import Priors

    gains = mean_gains(runs)
    table = advice[target].gains
    width = (table.upper - table.lower) / (2 * Z_80)
    others = gains[gains.target != target]
    sd = width.where(np.isfinite(width), float(others.gain.std(ddof=1)))
    alike = noise.drop(index=target)
    same = alike[alike.kind == noise.loc[target, "kind"]]
    logme = scores[(scores.target == target) & (scores.method == "direct-logme")].set_index("source")
    sign = 1.0 if logme.higher_is_better.iloc[0] else -1.0
    return Priors(
        gain=table.expected_gain,
        sd=sd,
        zero_run_score=sign * logme.score,
        noise_sd=float(np.sqrt(((same if len(same) else alike).noise ** 2).mean())),
        correlation=shared_error(advice, runs, target),
    )


def target_values(runs: pd.DataFrame, target: str) -> pd.DataFrame:
    """[arm × seed] of ``target`` in points, the seeds every arm has."""
    wide = runs[runs.target == target].pivot_table(index="source", columns="seed", values="value")
    return 100 * wide.dropna(axis=1)


def no_help(values: pd.DataFrame) -> pd.DataFrame:
    """``values`` with every source shifted so that the best source's mean gain is −`NO_HELP_MARGIN` points."""
    gains = values.drop(index="").mean(axis=1) - values.loc[""].mean()
    shifted = values.copy()
    shifted.loc[shifted.index != ""] -= float(gains.max()) + NO_HELP_MARGIN
    return shifted


def goals(curves: pd.DataFrame) -> dict:
    """Issue #30's goals on the informative targets (and all), each with its numbers."""
    out = {}
    for group in ("informative", "all"):
        real = curves[(curves.group == group) & (curves.scenario == "real")].set_index(["policy", "budget"])
        if not len(real):
            continue
        oracle = real.xs("one-seed-oracle", level="policy").iloc[0]
        recommend = real.xs("recommend", level="policy")
        best = recommend.loc[GOAL_RUNS] if GOAL_RUNS in recommend.index else None  # at most 6 fine-tunes
        sure = real.xs("recommend", level="policy")
        answers = int(sure.sure_answers.sum())
        calibrated = float((sure.sure_correct * sure.sure_answers).sum() / answers) if answers else float("nan")
        out[group] = {
            "one_seed_oracle_regret": round(float(oracle.regret), 2),
            "one_seed_oracle_runs": round(float(oracle.runs), 1),
            "recommend_regret_at_6_runs": None if best is None else round(float(best.regret), 2),
            "recommend_runs": None if best is None else round(float(best.runs), 1),
            "regret_goal_met": bool(best is not None and best.regret <= oracle.regret),
            "p_best_0_9_correct_share": round(calibrated, 3),
            "p_best_0_9_answers": answers,
            "calibration_goal_met": bool(answers and calibrated >= 0.85),
        }
    simulated = curves[(curves.group == "all") & (curves.scenario == "no-help") & (curves.policy == "recommend")]
    at_16 = simulated[simulated.budget == 16].dont_transfer_correct  # the share right on every no-help target
    out["no_help"] = {str(int(r.budget)): round(float(r.dont_transfer_correct), 3) for r in simulated.itertuples()}
    out["no_help"]["goal_met_at_16"] = bool((at_16 == 1.0).all()) if len(at_16) else None
    return out


def run(quick: bool = False) -> None:
    from reports.html import recommend_curves
    from store.advice import shipped_atlas
    from transfer.advisor.simulation import curve, replay_target

    started = time.perf_counter()
    atlas = shipped_atlas()
    if atlas is None:
        raise SystemExit("recommend_simulation needs the shipped atlas (reports/results/)")
    runs, scores, tasks = atlas.runs, atlas.scores, atlas.tasks
    targets = sorted(runs.target.unique())[: 2 if quick else None]
    informative = set(atlas_targets.informative_targets())
    noise = pooled_noise(runs, tasks)
    advice = loto_advice(runs, scores, tasks, sorted(runs.target.unique()))
    replays = []
    for target in targets:
        priors = priors_for(target, advice, runs, scores, noise)
        values = target_values(runs, target)
        everything = 3 * len(values)  # every held-in seed of every arm (5 seeds, 2 held out)
        budgets = QUICK_BUDGETS if quick else (*BUDGETS, everything)
        for scenario, matrix in (("real", values), ("no-help", no_help(values))):
            frame = replay_target(matrix, priors, budgets)
            replays.append(frame.assign(target=target, scenario=scenario, budget=frame.budget.replace(everything, -1)))
    replays = pd.concat(replays, ignore_index=True)
    curves = pd.concat(
        [
            curve(frame).assign(group=group, scenario=scenario)
            for scenario, by_scenario in replays.groupby("scenario")
            for group, frame in (
                ("all", by_scenario),
                ("informative", by_scenario[by_scenario.target.isin(informative)]),
            )
            if len(frame)
        ],
        ignore_index=True,
    )
    result = {
        "bench": "recommend_simulation",
        "quick": quick,
        "targets": targets,
        "informative_targets": sorted(informative & set(targets)),
        "goals": goals(curves),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not quick:
        curves.round(4).to_csv(RESULTS / ".recommend_simulation.csv.tmp", index=False)
        (RESULTS / ".recommend_simulation.csv.tmp").replace(RESULTS / "recommend_simulation.csv")
        (RESULTS / "recommend_simulation.svg").write_text(recommend_curves(curves) + "\n")
        (RESULTS / "recommend_simulation.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
