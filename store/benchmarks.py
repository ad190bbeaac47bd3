"""The committed benchmark results shipped with the package (``reports/results/``): the reference a user compares
their own workspace's numbers against. Read-only; each reader returns None when its file is not shipped.

- `atlas_summary`: per atlas target, the measured gain of its best source and the spread over sources (from
  ``transfer_atlas.parquet``, `store.advice.shipped_atlas`'s recipe);
- `committed_ranking_quality`: the method table of ``python -m bench ranking_quality`` and what it covers;
- `committed_selection_quality`: the summary of ``python -m bench selection_quality``;
- `committed_selection_generalisation`: ``python -m bench selection_generalisation`` on its held-out pools, complete
  or partial.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from store.advice import ATLAS_RUNS, SHIPPED_ATLAS
from transfer.advisor import mean_gains
from transfer.arms import summarise_pools

# ``python -m bench selection_generalisation``'s files: runs (appended per call), its grid, the summary (.csv, .json)
GENERALISATION_RUNS = "selection_generalisation_runs.csv"
GENERALISATION_GRID = "selection_generalisation_runs.json"
GENERALISATION_SUMMARY = "selection_generalisation"


def atlas_summary(folder: Path = SHIPPED_ATLAS) -> pd.DataFrame | None:
    """Per target of the atlas's main recipe (the most common): runs, sources measured, the best source and its
    mean gain, the mean gain over sources and the share of sources that help (points), and, where
    ``atlas_targets.csv`` (`bench.atlas_targets`) is shipped, its informativeness tests: stage (grid, pilot or
    partial), learns, passes (a pilot: learns on every seed), skill, anova_p, reliability, informative."""
    path = folder / ATLAS_RUNS
    if not path.exists():
        return None
    runs = pd.read_parquet(path)
    recipe = runs.recipe.mode().iloc[0]
    runs = runs[runs.recipe == recipe]
    gains = mean_gains(runs[["target", "source", "seed", "value"]])
    rows = []
    for target, frame in gains.groupby("target"):
        best = frame.loc[frame.gain.idxmax()]
        rows.append(
            {
                "target": target,
                "runs": int((runs.target == target).sum()),
                "sources": len(frame),
                "best_source": best.source,
                "best_gain": float(best.gain),
                "mean_gain": float(frame.gain.mean()),
                "helps": float((frame.gain > 0).mean()),
            }
        )
    summary = pd.DataFrame(rows)
    tests = folder / "atlas_targets.csv"
    if tests.exists():
        signal = pd.read_csv(tests)
        columns = ["target", "stage", "learns", "passes", "skill", "anova_p", "reliability", "informative"]
        signal = signal[signal.recipe == recipe][columns]
        summary = summary.merge(signal, on="target", how="left")
    return summary


def committed_ranking_quality(folder: Path = SHIPPED_ATLAS) -> tuple[pd.DataFrame, dict] | None:
    """(the per-method table over every target, sorted by mean NDCG@5; {targets, complete, best_single_method,
    atlas_recipe, informative_targets, table_informative: the same table over the informative targets})."""
    path = folder / "ranking_quality.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    table = pd.DataFrame(result.get("table", []))
    if "ndcg@5_mean" in table:
        table = table.sort_values("ndcg@5_mean", ascending=False)
    meta = {
        k: result.get(k) for k in ("targets", "complete", "best_single_method", "atlas_recipe", "informative_targets")
    }
    informative = pd.DataFrame(result.get("table_informative", []))
    if "ndcg@5_mean" in informative:
        informative = informative.sort_values("ndcg@5_mean", ascending=False).reset_index(drop=True)
    meta["table_informative"] = informative
    return table.reset_index(drop=True), meta


def committed_selection_quality(folder: Path = SHIPPED_ATLAS) -> pd.DataFrame | None:
    """Per (arm, budget): share of the full-pool score (mean, std over seeds) and the paired difference to random."""
    path = folder / "selection_quality.csv"
    return pd.read_csv(path) if path.exists() else None


def committed_selection_generalisation(folder: Path = SHIPPED_ATLAS) -> tuple[pd.DataFrame, dict] | None:
    """The held-out pools of ``python -m bench selection_generalisation``: (per pool, "all held-out", arm and budget:
    share of the full-pool score and the paired difference to random in points with its 95% interval and
    beats_random, `transfer.arms.summarise_pools`; {complete, seeds: {pool: seeds in}, planned_seeds}). From the
    summary once the grid is complete, else summarised from the runs measured so far; None when neither is shipped."""
    summary = folder / f"{GENERALISATION_SUMMARY}.json"
    if summary.exists():
        result = json.loads(summary.read_text())
        table = pd.DataFrame(result["summary"])
        meta = {"complete": True, "seeds": result["seeds_in"], "planned_seeds": len(result["grid"]["seeds"])}
        return table[table.held_out].reset_index(drop=True), meta
    if not (folder / GENERALISATION_RUNS).exists():
        return None
    runs = pd.read_csv(folder / GENERALISATION_RUNS)
    grid = json.loads((folder / GENERALISATION_GRID).read_text())
    seeds = {str(pool): sorted(int(s) for s in set(frame.seed)) for pool, frame in runs.groupby("pool")}
    return summarise_pools(runs), {"complete": False, "seeds": seeds, "planned_seeds": len(grid["seeds"])}


def committed_recommend_simulation(folder: Path = SHIPPED_ATLAS) -> pd.DataFrame | None:
    """``recommend``'s procedure and its alternatives replayed on the atlas's seeds (`bench.recommend_simulation`):
    per (group, scenario, policy, budget) the mean runs, regret@1 and points lost; None when not shipped."""
    path = folder / "recommend_simulation.csv"
    return pd.read_csv(path) if path.exists() else None
