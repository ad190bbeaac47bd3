"""What the source advisor learns from, and where its advice is stored.

`measured_knowledge` gathers measured transfer: the transfer atlas shipped with the package (``reports/results/``:
the per-seed runs ``transfer_atlas.parquet``, every ranking method's scores of the atlas pairs
``atlas_method_scores.parquet``, the atlas tasks' descriptors ``atlas_tasks.csv``; written by ``python -m bench
ranking_quality``) plus the workspace's own measurements, under one rule: only runs measured under the advisor's
`MeasurementRecipe` (the atlas's encoder, source recipe, target recipe and ``max_test``) count, since a gain under
another recipe is another quantity, and of a workspace target only its current measurement (the view
``current_measurements``, the one definition of a target's measurement that its gains, the source prior and the
report read too): a target last measured under another recipe is ignored. A workspace target measured under the
atlas's exact config (same recipe, same data) adds its seeds to the atlas's (its own replacing the atlas's of the
same source and seed); any other workspace target joins, replacing an atlas target of its name, only with
`MIN_JOIN_SOURCES` sources each measured on at least `MIN_JOIN_SEEDS` seeds with their baselines (a mean gain from
one seed is mostly seed noise, and the features rank a target's sources within it) and a stored ranking to read its
features from; the others are listed as ignored, with why. ``$TRANSFERSCOPE_ATLAS`` points at another atlas folder
(``none``: the workspace alone). `put_advice` stores one advice batch in one transaction.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from store.measured import MeasurementRecipe, complete_recipe
from store.workspace import Workspace, optional_float, query

SHIPPED_ATLAS = Path(str(resources.files("reports").joinpath("results")))
ATLAS_ENV = "TRANSFERSCOPE_ATLAS"  # another atlas folder, or "none" to learn from the workspace alone
ATLAS_RUNS, ATLAS_SCORES, ATLAS_TASKS = "transfer_atlas.parquet", "atlas_method_scores.parquet", "atlas_tasks.csv"
SCORE_COLUMNS = ["target", "source", "method", "score", "higher_is_better"]
RUN_COLUMNS = ["target", "source", "seed", "value"]
TASK_COLUMNS = ["n_train", "kind", "input", "n_labels"]
MIN_JOIN_SOURCES = 5
MIN_JOIN_SEEDS = 2


@dataclass(frozen=True)
class Knowledge:
    """Measured transfer to learn from. ``runs``: per-seed primary metrics (`RUN_COLUMNS`; source '' = no
    transfer), all under ``recipe``; ``scores``: method scores of the measured pairs (`SCORE_COLUMNS`); ``tasks``:
    descriptors indexed by task name (`TASK_COLUMNS`); ``recipe``: the `MeasurementRecipe` every run was measured
    under (the atlas's, else the caller's default); ``origin``: {target: "atlas" | "workspace" |
    "atlas+workspace"}; ``ignored``: {workspace target: why its runs were left out}; ``seconds_per_run``: the
    atlas's median wall seconds per (target, source, seed) run measured on CPU (2 cores), the cost of one
    verification fine-tune there (None without an atlas; the atlas's GPU rows took about a tenth of it on an
    H200)."""

    runs: pd.DataFrame
    scores: pd.DataFrame
    tasks: pd.DataFrame
    recipe: MeasurementRecipe
    origin: dict[str, str]
    seconds_per_run: float | None
    ignored: dict[str, str] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)  # the atlas's config hash per target


def shipped_atlas(directory: Path = SHIPPED_ATLAS) -> Knowledge | None:
    """The atlas shipped in ``directory``, restricted to the runs of the recipe its method scores were computed
    under; None when any of its three files is missing."""
    paths = [directory / name for name in (ATLAS_RUNS, ATLAS_SCORES, ATLAS_TASKS)]
    if not all(p.exists() for p in paths):
        return None
    runs, scores = pd.read_parquet(paths[0]), pd.read_parquet(paths[1])
    (recipe,) = scores.recipe.unique()
    runs = runs[(runs.recipe == recipe) & runs.target.isin(scores.target.unique())]
    first = runs.iloc[0]
    return Knowledge(
        runs=runs[RUN_COLUMNS].reset_index(drop=True),
        scores=scores[SCORE_COLUMNS].reset_index(drop=True),
        tasks=pd.read_csv(paths[2], index_col="name")[TASK_COLUMNS],
        recipe=MeasurementRecipe(
            str(first.model), json.loads(first.source_recipe), json.loads(first.target_recipe), int(first.max_test)
        ),
        origin=dict.fromkeys(sorted(runs.target.unique()), "atlas"),
        seconds_per_run=cpu_seconds_per_run(runs),
        configs=runs.groupby("target").config_hash.first().to_dict(),
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


def enough_measured(runs: pd.DataFrame) -> bool:
    """Whether one target's ``runs`` (source, seed, value) hold `MIN_JOIN_SOURCES` sources each measured on at
    least `MIN_JOIN_SEEDS` seeds that also have a baseline run."""
    baseline_seeds = set(runs.seed[runs.source == ""])
    paired = runs[(runs.source != "") & runs.seed.isin(baseline_seeds)]
    return int((paired.groupby("source").seed.nunique() >= MIN_JOIN_SEEDS).sum()) >= MIN_JOIN_SOURCES


def well_measured(runs: pd.DataFrame) -> pd.DataFrame:
    """One target's ``runs`` without the sources measured on fewer than `MIN_JOIN_SEEDS` seeds paired with a
    baseline (their mean gain is mostly seed noise)."""
    baseline_seeds = set(runs.seed[runs.source == ""])
    paired = runs[runs.seed.isin(baseline_seeds)]
    seeds = paired[paired.source != ""].groupby("source").seed.nunique()
    keep = {"", *seeds.index[seeds >= MIN_JOIN_SEEDS]}
    return paired[paired.source.isin(keep)].reset_index(drop=True)


def recipe_rankings(ws: Workspace, target: str, recipe: MeasurementRecipe) -> pd.DataFrame:
    """``target``'s newest ranking by each method among the `rank_sources` runs made under ``recipe``'s source
    recipe and encoder (a checkpoint method's scores depend on both), without the advisor's and fused rankings
    (`SCORE_COLUMNS`)."""
    rows = ws.read("target_rankings", {"target": target})
    if not len(rows):
        return pd.DataFrame(columns=SCORE_COLUMNS)
    params = {run: json.loads(text) for run, text in zip(rows.run_id, rows.params_json, strict=False)}
    matching = {
        run
        for run, p in params.items()
        if p.get("model") == recipe.model and complete_recipe(p.get("recipe") or {}) == recipe.source_recipe
    }
    rows = rows[rows.run_id.isin(matching) & ~rows.method.str.startswith(("advisor", "fused-"))]
    newest = rows.groupby("method").created_at.transform("max")
    return rows[rows.created_at == newest].assign(target=target)[SCORE_COLUMNS].reset_index(drop=True)


def measured_knowledge(
    ws: Workspace, default: MeasurementRecipe, *, exclude: str | None = None, atlas: str | None = None
) -> Knowledge:
    """The atlas (`atlas_folder`) plus the workspace's measurements under the advisor's recipe (the atlas's, else
    ``default``), by the rule of the module docstring, without target ``exclude`` (the one being advised, so its
    own measurements never reach its advice)."""
    folder = atlas_folder(atlas)
    shipped = shipped_atlas(folder) if folder is not None else None
    recipe = shipped.recipe if shipped is not None else default
    runs = {t: r for t, r in shipped.runs.groupby("target")} if shipped else {}
    scores = {t: s for t, s in shipped.scores.groupby("target")} if shipped else {}
    origin = dict(shipped.origin) if shipped else {}
    ignored: dict[str, str] = {}
    listed = ws.read("list_tasks")
    current = {str(t): runs for t, runs in ws.read("current_transfer_runs").groupby("target")}
    for name, content in zip(listed.name, listed.content_hash, strict=True):
        if name == exclude or name not in current:
            continue
        config = recipe.config(content)
        if current[name].config_hash.iloc[0] != config:
            ignored[name] = (
                "its current measurement is under another recipe than the advisor's; `transferscope measure "
                f"{name} --advisor-recipe` measures it so that it can join"
            )
            continue
        mine = current[name][RUN_COLUMNS].reset_index(drop=True)
        if shipped is not None and shipped.configs.get(name) == config:  # the atlas's own measurement: add seeds
            merged = pd.concat([runs[name], mine]).drop_duplicates(["source", "seed"], keep="last")
            runs[name], origin[name] = merged.reset_index(drop=True), "atlas+workspace"
            continue
        ranked = recipe_rankings(ws, name, recipe)
        if not enough_measured(mine):
            ignored[name] = (
                f"{len(mine)} runs under the advisor's recipe; it needs {MIN_JOIN_SOURCES} sources on "
                f"{MIN_JOIN_SEEDS}+ seeds with baselines"
            )
        elif not len(ranked):
            ignored[name] = (
                "measured but not ranked under the advisor's source recipe and encoder (`transferscope rank "
                f"{name} --method advisor` ranks it so)"
            )
        else:
            runs[name], scores[name], origin[name] = well_measured(mine), ranked, "workspace"
    keep = sorted(t for t in origin if t != exclude)
    tasks = [shipped.tasks] if shipped else []
    tasks.append(listed.set_index("name")[TASK_COLUMNS])
    all_tasks = pd.concat(tasks)

    def stacked(parts: dict[str, pd.DataFrame], columns: list[str]) -> pd.DataFrame:
        frames = [parts[t] for t in keep if t in parts]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    return Knowledge(
        runs=stacked(runs, RUN_COLUMNS),
        scores=stacked(scores, SCORE_COLUMNS),
        tasks=all_tasks[~all_tasks.index.duplicated(keep="last")],
        recipe=recipe,
        origin={t: origin[t] for t in keep},
        seconds_per_run=shipped.seconds_per_run if shipped else None,
        ignored=ignored,
        configs=shipped.configs if shipped else {},
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
    level: float | None,
) -> None:
    """Store one target's advice (``advice`` indexed by source with columns rank, expected_gain, lower, upper,
    top_features and optionally measured_gain) as one batch in one transaction; ``level``: the intervals' nominal
    coverage (None without intervals). Infinite bounds (too few training targets for the level) are stored as
    ±inf."""

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
                    "expected_gain": optional_float(row.get("expected_gain")),
                    "lower": optional_float(row.get("lower")),
                    "upper": optional_float(row.get("upper")),
                    "measured_gain": optional_float(row.get("measured_gain")),
                    "top_features": json.dumps(row.get("top_features") or {}),
                    "basis": basis,
                    "learner": learner,
                    "dont_transfer": bool(dont_transfer),
                    "training_targets": int(training_targets),
                    "level": level,
                },
            )


def read_advice(ws: Workspace, target: str, method: str = "advisor") -> pd.DataFrame:
    """The newest stored advice of ``method`` for ``target`` (columns of ``latest_advice.sql``; ``top_features``
    decoded to dicts); empty when there is none."""
    frame = ws.read("latest_advice", {"target": target, "method": method})
    frame["top_features"] = [json.loads(v) for v in frame.top_features]
    frame["dont_transfer"] = frame.dont_transfer.astype(bool)
    return frame
