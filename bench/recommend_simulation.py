"""``python -m bench recommend_simulation``: ``recommend``'s measuring step replayed on the committed transfer atlas
(`transfer.advisor.simulation`), with no new fine-tune: the atlas's seeds are the pulls.

Per atlas target (every target of the shipped atlas's recipe with a complete grid): the advisor's priors are learned
leave-one-target-out (`transfer.advisor.advise_target` on the other targets' mean gains), turned into priors the way
``recommend`` does (`transfer.advisor.priors`: scales from the 80% CV+ intervals, seed noise pooled over the other
targets of the same kind, the shared error ρ of the advisor's own folds), ``recommend`` measures the baseline and
the shortlist of its screen (the top 5 by the advisor on the checkpoint-free methods, also leave-one-target-out),
and the zero-run ranking is direct LogME. Every policy is replayed on the 10 choices of 2 truth seeds, at budgets of
0, 1, 2, 4, 6, 8 and 16 target fine-tunes and "all" (every held-in seed of every arm). The same is done on a
simulated no-help version of each target: every source's runs shifted down so that its best source's mean gain is
`NO_HELP_MARGIN` points below the baseline. Written: ``reports/results/recommend_simulation.csv`` (the curve per
group: informative targets or all, real or no-help), ``.svg`` (regret against fine-tunes on the informative targets)
and ``.json`` (the goals of issue #30, met or not, with the numbers). ``--quick``: two targets, budgets 0, 2 and 6,
nothing written. About 4 minutes on 2 cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from bench import atlas_targets

RESULTS = Path(__file__).resolve().parents[1] / "reports" / "results"
BUDGETS = (0, 1, 2, 4, 6, 8, 16)
QUICK_BUDGETS = (0, 2, 6)
NO_HELP_MARGIN = 3.0  # points: the simulated no-help target's best source, below its baseline
GOAL_RUNS = 6


def loto_advice(
    runs: pd.DataFrame, scores: pd.DataFrame, tasks: pd.DataFrame, targets: list[str], inputs: tuple[str, ...]
) -> dict:
    """{target: its `transfer.advisor.Advice` from the methods ``inputs``, learned from the other targets only}."""
    from transfer.advisor import advise_target, describe_tasks, mean_gains

    gains, described = mean_gains(runs), describe_tasks(tasks)
    known = scores[scores.method.isin(inputs)]
    return {target: advise_target(known, gains, described, target) for target in targets}


def priors_for(target: str, advice: dict, screen: dict, runs: pd.DataFrame, scores: pd.DataFrame, tasks: pd.DataFrame):
    """`transfer.advisor.simulation.Priors` of ``target`` from everything but ``target``'s own runs
    (`transfer.advisor.priors`), with the shortlist of ``recommend``'s screen: the `SHORTLIST` sources of highest
    expected gain by the advisor on the checkpoint-free methods (``screen``)."""
    from transfer.advisor import mean_gains
    from transfer.advisor.priors import pooled_noise, prior_sd, target_noise
    from transfer.advisor.simulation import SHORTLIST, Priors

    others = runs[runs.target != target]
    table, level = advice[target].gains, advice[target].level
    logme = scores[(scores.target == target) & (scores.method == "direct-logme")].set_index("source")
    sign = 1.0 if logme.higher_is_better.iloc[0] else -1.0
    return Priors(
        gain=table.expected_gain,
        sd=prior_sd(table.lower, table.upper, level, float(mean_gains(others).gain.std(ddof=1))),
        zero_run_score=sign * logme.score,
        noise_sd=pooled_noise(target_noise(others), tasks.kind, str(tasks.kind[target])),
        correlation=advice[target].shared_error,
        shortlist=tuple(screen[target].gains.expected_gain.nlargest(SHORTLIST).index),
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
    from transfer.advisor import CHEAP_INPUTS, DEFAULT_INPUTS

    everyone = sorted(runs.target.unique())
    advice = loto_advice(runs, scores, tasks, everyone, DEFAULT_INPUTS)
    screen = loto_advice(runs, scores, tasks, everyone, CHEAP_INPUTS)
    replays = []
    for target in targets:
        priors = priors_for(target, advice, screen, runs, scores, tasks)
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
