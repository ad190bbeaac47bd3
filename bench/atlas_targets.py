"""``python -m bench atlas_targets``: which transfer-atlas targets carry ranking signal
(`transfer.informativeness`), written to ``reports/results/atlas_targets.csv`` (one row per target and recipe).

For each target of the atlas (every recipe that measured it) with a complete grid: the chance level of the rows each
seed evaluated (the flow's own held-out rows, `flows.measure.target_splits`, so the majority share is that of what
was scored), the baseline against it, the randomised-block ANOVA of the per-seed gains, the split-half reliability
of the mean-gain ranking, and the counts of significantly positive and negative sources. A target measured on
exactly the pilot's sources is a pilot (``stage`` ``pilot``, `bench.transfer_atlas` stage ``pilot``; fewer than
`MIN_GRID_SOURCES` others: ``partial``): it passes when its baseline learns on every seed (``passes``: the skill score
of each seed's baseline at least `transfer.informativeness.MIN_SKILL`; two seeds are too few for the t-test of
``learns``: tweeteval_emotion's skill 0.40 has p 0.052), since on the first atlas every target's sources differed
significantly (block-ANOVA p < 0.05 on all 12) and learning was the one condition that failed; only full grids count
as informative. Seconds on 2 cores (it trains nothing). ``--quick``: the first two targets, nothing
written.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bench import transfer_atlas
from bench.common import SHARED_TASKS, emit

RESULTS = Path(__file__).resolve().parents[1] / "reports" / "results"
MIN_GRID_SOURCES = 10  # fewer measured sources: a pilot screen, not a grid


def stage(target: str, sources: set[str]) -> str:
    """``grid`` (at least `MIN_GRID_SOURCES` sources), ``pilot`` (exactly the pilot's sources) or ``partial``."""
    if len(sources) >= MIN_GRID_SOURCES:
        return "grid"
    return "pilot" if sources == set(transfer_atlas.pilot_sources(target)) else "partial"


def target_rows(atlas: pd.DataFrame) -> pd.DataFrame:
    """One row per (recipe, target) with a complete source × seed grid: `transfer.informativeness.target_signal`
    and its inputs' provenance."""
    from flows.measure import target_splits
    from store.task_files import load_task_dir
    from transfer.finetune import Recipe
    from transfer.informativeness import MIN_SKILL, chance_level, target_signal

    rows = []
    for (recipe_name, target), runs in atlas.groupby(["recipe", "target"]):
        values = runs.pivot_table(index="source", columns="seed", values="value")
        values = values.dropna(axis=1)  # seeds every source and the baseline have
        if "" not in values.index or values.shape[1] < 2 or len(values) < 3:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            goal = load_task_dir(SHARED_TASKS / str(target))
        recipe = Recipe(**json.loads(runs.target_recipe.iloc[0]))
        max_test = int(runs.max_test.iloc[0])
        chance = [
            chance_level(target_splits(goal, recipe, max_test, int(seed))[1].labels, goal.kind == "regression")
            for seed in values.columns
        ]
        baseline = values.loc[""].to_numpy()
        signal = target_signal(
            baseline, np.asarray(chance), values.drop(index="").to_numpy(), goal.kind == "regression"
        )
        min_seed_skill = float(np.min((baseline - np.asarray(chance)) / (1 - np.asarray(chance))))
        target_stage = stage(str(target), set(values.index) - {""})
        rows.append(
            {
                "target": target,
                "recipe": recipe_name,
                "kind": goal.kind,
                "input": goal.input,
                "target_examples": recipe.max_examples,
                "stage": target_stage,
                **dataclasses.asdict(signal),
                "min_seed_skill": min_seed_skill,
                "passes": min_seed_skill >= MIN_SKILL if target_stage == "pilot" else signal.learns,
                "seeds": ",".join(str(int(s)) for s in values.columns),
            }
        )
    return pd.DataFrame(rows)


def informative_targets(path: Path | None = None, recipe: str = transfer_atlas.ATLAS_RECIPE) -> list[str]:
    """The informative targets of the committed ``atlas_targets.csv`` under ``recipe``."""
    table = pd.read_csv(path or RESULTS / "atlas_targets.csv")
    return sorted(table[(table.recipe == recipe) & (table.stage == "grid") & table.informative].target)


def run(quick: bool = False) -> None:
    atlas = transfer_atlas.read_atlas()
    if quick:
        atlas = atlas[atlas.target.isin(sorted(atlas.target.unique())[:2])]
    table = target_rows(atlas)
    if not quick:
        temporary = RESULTS / ".atlas_targets.csv.tmp"
        table.round(6).to_csv(temporary, index=False)
        temporary.replace(RESULTS / "atlas_targets.csv")
    emit(
        {
            "bench": "atlas_targets",
            "quick": quick,
            "targets": len(table),
            "informative": sorted(table[(table.stage == "grid") & table.informative].target),
            "pilots_passed": sorted(
                f"{t} ({r})" for t, r in table[(table.stage == "pilot") & table.passes][["target", "recipe"]].to_numpy()
            ),
            "pilots_failed": sorted(
                f"{t} ({r})"
                for t, r in table[(table.stage == "pilot") & ~table.passes][["target", "recipe"]].to_numpy()
            ),
            "learns": int(table.learns.sum()),
            "sources_differ": int(table.sources_differ.sum()),
        }
    )
