"""What the source advisor learns from, and where its advice is stored.

`measured_knowledge` gathers measured transfer: the transfer atlas shipped with the package (``reports/results/``:
the per-seed runs ``transfer_atlas.parquet``, every ranking method's scores of the atlas pairs
``atlas_method_scores.parquet``, the atlas tasks' descriptors ``atlas_tasks.csv``; written by ``python -m bench
ranking_quality``) plus every target the workspace has both measured (``transferscope measure``) and ranked. A
workspace target replaces the atlas's target of the same name; ``$TRANSFERSCOPE_ATLAS`` points at another atlas
folder (``none``: the workspace alone). `put_advice` stores one advice batch in one
transaction.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from store.workspace import Workspace, query

SHIPPED_ATLAS = Path(str(resources.files("reports").joinpath("results")))
ATLAS_ENV = "TRANSFERSCOPE_ATLAS"  # another atlas folder, or "none" to learn from the workspace alone
ATLAS_RUNS, ATLAS_SCORES, ATLAS_TASKS = "transfer_atlas.parquet", "atlas_method_scores.parquet", "atlas_tasks.csv"
SCORE_COLUMNS = ["target", "source", "method", "score", "higher_is_better"]
TASK_COLUMNS = ["n_train", "kind", "input", "n_labels"]


@dataclass(frozen=True)
class Knowledge:
    """Measured transfer to learn from. ``runs``: per-seed primary metrics (target, source, seed, value; source ''
    = no transfer); ``scores``: method scores of the measured pairs (`SCORE_COLUMNS`); ``tasks``: descriptors
    indexed by task name (`TASK_COLUMNS`); ``source_recipe``/``target_recipe``: the atlas's recipes (None without
    an atlas); ``origin``: {target: "atlas" | "workspace"}; ``seconds_per_run``: the atlas's median wall seconds
    per (target, source, seed) run measured on CPU (2 cores), the cost of one verification fine-tune there (None
    without an atlas; the atlas's GPU rows took about a tenth of it on an H200)."""

    runs: pd.DataFrame
    scores: pd.DataFrame
    tasks: pd.DataFrame
    source_recipe: dict | None
    target_recipe: dict | None
    origin: dict[str, str]
    seconds_per_run: float | None

    @property
    def input_budget(self) -> str | dict:
        """The source recipe the advisor's input rankings use: the atlas's, so their scores compare with the
        atlas's (the small budget without an atlas)."""
        return self.source_recipe or "small"


def shipped_atlas(directory: Path = SHIPPED_ATLAS) -> Knowledge | None:
    """The atlas shipped in ``directory``, restricted to the runs of the recipe its method scores were computed
    under; None when any of its three files is missing."""
    paths = [directory / name for name in (ATLAS_RUNS, ATLAS_SCORES, ATLAS_TASKS)]
    if not all(p.exists() for p in paths):
        return None
    runs, scores = pd.read_parquet(paths[0]), pd.read_parquet(paths[1])
    (recipe,) = scores.recipe.unique()
    runs = runs[(runs.recipe == recipe) & runs.target.isin(scores.target.unique())]
    return Knowledge(
        runs=runs[["target", "source", "seed", "value"]].reset_index(drop=True),
        scores=scores[SCORE_COLUMNS].reset_index(drop=True),
        tasks=pd.read_csv(paths[2], index_col="name")[TASK_COLUMNS],
        source_recipe=json.loads(runs.source_recipe.iloc[0]),
        target_recipe=json.loads(runs.target_recipe.iloc[0]),
        origin=dict.fromkeys(sorted(runs.target.unique()), "atlas"),
        seconds_per_run=cpu_seconds_per_run(runs),
    )


def cpu_seconds_per_run(runs: pd.DataFrame) -> float | None:
    """The median wall seconds of the atlas's CPU runs (every run where the atlas does not say where it ran); None
    when it has none."""
    on_cpu = runs[runs.device == "cpu"] if "device" in runs else runs
    return float(on_cpu.seconds.median()) if len(on_cpu) else None


def atlas_folder(atlas: str | None = None) -> Path | None:
    """The atlas folder to learn from: ``atlas`` if given, else ``$TRANSFERSCOPE_ATLAS``, else the shipped one;
    ``"none"`` means no atlas."""
    chosen = atlas if atlas is not None else os.environ.get(ATLAS_ENV)
    if chosen is None:
        return SHIPPED_ATLAS
    return None if chosen.lower() == "none" else Path(chosen).expanduser()


def measured_knowledge(ws: Workspace, *, exclude: str | None = None, atlas: str | None = None) -> Knowledge:
    """The atlas (`atlas_folder`) plus the workspace's measured and ranked targets, without target ``exclude``
    (the one being advised, so its own measurements never reach its advice)."""
    folder = atlas_folder(atlas)
    shipped = shipped_atlas(folder) if folder is not None else None
    measured = ws.read("measured_runs")
    ranked = [
        ws.read("latest_rankings_all_methods", {"target": t}).assign(target=t)
        for t in sorted(measured.target.unique())
        if t != exclude
    ]
    local = pd.concat([r for r in ranked if len(r)] or [pd.DataFrame(columns=SCORE_COLUMNS)], ignore_index=True)
    local = local[~local.method.str.startswith(("advisor", "fused-"))][SCORE_COLUMNS]
    mine = set(local.target)
    runs = [measured[measured.target.isin(mine)]]
    scores = [local]
    tasks = [ws.read("list_tasks").set_index("name")[TASK_COLUMNS]]
    origin = dict.fromkeys(sorted(mine), "workspace")
    if shipped is not None:
        runs.insert(0, shipped.runs[~shipped.runs.target.isin(mine)])
        scores.insert(0, shipped.scores[~shipped.scores.target.isin(mine)])
        tasks.insert(0, shipped.tasks)
        origin = {**{t: "atlas" for t in shipped.origin if t not in mine}, **origin}
    keep = {t for t in origin if t != exclude}
    all_runs = pd.concat(runs, ignore_index=True)
    all_tasks = pd.concat(tasks)
    return Knowledge(
        runs=all_runs[all_runs.target.isin(keep)].reset_index(drop=True),
        scores=pd.concat(scores, ignore_index=True).query("target in @keep").reset_index(drop=True),
        tasks=all_tasks[~all_tasks.index.duplicated(keep="last")],
        source_recipe=shipped.source_recipe if shipped else None,
        target_recipe=shipped.target_recipe if shipped else None,
        origin={t: o for t, o in origin.items() if t in keep},
        seconds_per_run=shipped.seconds_per_run if shipped else None,
    )


def put_advice(
    ws: Workspace,
    run_id: str,
    config: str,
    target: str,
    method: str,
    advice: pd.DataFrame,
    *,
    basis: str,
    learner: str | None,
    dont_transfer: bool,
    training_targets: int,
) -> None:
    """Store one target's advice (``advice`` indexed by source with columns rank, expected_gain, lower, upper,
    top_features and optionally measured_gain) as one batch in one transaction."""

    def number(value: object) -> float | None:
        return None if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]

    with ws.transaction() as con:
        for source, row in advice.iterrows():
            con.execute(
                query("insert_advice"),
                {
                    "run_id": run_id,
                    "config_hash": config,
                    "target": target,
                    "source": source,
                    "method": method,
                    "rank": int(row["rank"]),
                    "expected_gain": number(row.get("expected_gain")),
                    "lower": number(row.get("lower")),
                    "upper": number(row.get("upper")),
                    "measured_gain": number(row.get("measured_gain")),
                    "top_features": json.dumps(row.get("top_features") or {}),
                    "basis": basis,
                    "learner": learner,
                    "dont_transfer": bool(dont_transfer),
                    "training_targets": int(training_targets),
                },
            )


def read_advice(ws: Workspace, target: str, method: str = "advisor") -> pd.DataFrame:
    """The newest stored advice of ``method`` for ``target`` (columns of ``latest_advice.sql``; ``top_features``
    decoded to dicts); empty when there is none."""
    frame = ws.read("latest_advice", {"target": target, "method": method})
    frame["top_features"] = [json.loads(v) for v in frame.top_features]
    frame["dont_transfer"] = frame.dont_transfer.astype(bool)
    return frame
