"""TransferScope's public Python API: ``import transferscope as ts``.

A thin facade over the project's packages (``store`` for the workspace and its results, ``flows`` for the work);
everything here is also reachable there, but this is the one entry point a user needs::

    import transferscope as ts

    ws = ts.Workspace("my-workspace")
    ts.add_task(ws, "path/to/my_task")  # a directory, a jsonl/csv/parquet file, a DataFrame (name=...), or hf:NAME
    ts.embed(ws)
    answer = ts.recommend(ws, "my_task", runs=6)  # which source first, or none: answer.attrs["message"]
    ts.rank_sources(ws, "my_task", methods=("centroid-cosine", "esm-logme"))
    advice = ts.advise_sources(ws, "my_task")  # expected gains, intervals, advice.attrs["dont_transfer"]
    subset = ts.select_subset(ws, "my_pool", "my_task", method="gio", budget=0.2)  # the picked rows, in order
    ts.Results(ws).recommend_sources("my_task", method="advisor")
    plan = ts.plan_rank(ts.RankRequest("my_task", methods=("esm-logme",), workspace=str(ws.root)))
    ts.run_plan(plan)  # exactly what the plan says (plan.estimated_s: its cost, before any work)

Every function takes the workspace first (a `Workspace`, a folder, or None for ``$TRANSFERSCOPE_WORKSPACE`` or
``./transferscope-workspace``) and forwards other keyword arguments to the flow it names. Every function returns
a pandas DataFrame (its columns in its docstring) or a small frozen dataclass (`Task`, `Report`, the plans). Each
long request also has its request and plan types and its planner here (`RankRequest`, `plan_rank`, `RankPlan`;
`SelectionRequest`, `plan_selection`, `SelectionPlan`; `MeasureRequest`, `plan_measure`, `MeasurePlan`;
`RecommendRequest`, `plan_recommend`, `RecommendPlan`;
`MeasureSelectionRequest`, `plan_measure_selection`, `MeasureSelectionPlan`), and `run_plan` runs a plan with its
flow. Flows and these types (and with them Prefect and torch) are imported on first use, so ``import
transferscope`` is quick.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from store.errors import InputError
from store.results import Results
from store.task_files import load_task
from store.tasks import Task
from store.workspace import Workspace

# The request and plan types and the planners of the long flows, each with the module that defines it (imported on
# first access, PEP 562); the flow that runs each module's plans (`run_plan`).
PLANNING = {
    **dict.fromkeys(("RankRequest", "RankPlan", "plan_rank"), "flows.rank"),
    **dict.fromkeys(("SelectionRequest", "SelectionPlan", "plan_selection"), "flows.select"),
    **dict.fromkeys(("MeasureRequest", "MeasurePlan", "plan_measure"), "flows.measure"),
    **dict.fromkeys(("RecommendRequest", "RecommendPlan", "plan_recommend"), "flows.recommend"),
    **dict.fromkeys(
        ("MeasureSelectionRequest", "MeasureSelectionPlan", "plan_measure_selection"), "flows.measure_selection"
    ),
}
PLAN_FLOWS = {
    "flows.rank": "rank_sources",
    "flows.select": "select_training_subset",
    "flows.measure": "measure_transfer",
    "flows.recommend": "recommend_source",
    "flows.measure_selection": "measure_selection",
}

__all__ = [
    "MeasurePlan",
    "MeasureRequest",
    "MeasureSelectionPlan",
    "MeasureSelectionRequest",
    "RankPlan",
    "RankRequest",
    "RecommendPlan",
    "RecommendRequest",
    "Report",
    "Results",
    "SelectionPlan",
    "SelectionRequest",
    "Task",
    "Workspace",
    "add_task",
    "advise_sources",
    "build_report",
    "embed",
    "evaluate_rankings",
    "load_task",
    "measure_selection",
    "measure_transfer",
    "plan_measure",
    "plan_measure_selection",
    "plan_rank",
    "plan_recommend",
    "plan_selection",
    "rank_sources",
    "recommend",
    "run_plan",
    "select_subset",
]

WorkspaceLike = Workspace | str | os.PathLike[str] | None


@dataclass(frozen=True)
class Report:
    """A written HTML report (`build_report`): ``path``, its ``index.html``; ``target``, the one target its
    per-target sections show (None: every stored task)."""

    path: Path
    target: str | None = None


def __getattr__(name: str) -> Any:
    """Import a request or plan type or a planner (`PLANNING`) on first access and keep it as this module's
    attribute."""
    if name not in PLANNING:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(PLANNING[name]), name)
    globals()[name] = value
    return value


def run_plan(plan: Any) -> pd.DataFrame:
    """Run exactly what ``plan`` says with its flow and return a DataFrame, as the `ts` function of that flow
    does: a `RankPlan` (or `RankRequest`) with `flows.rank.rank_sources` (the ranking, as `rank_sources`), a
    `SelectionPlan` with `flows.select.select_training_subset` (the stored subset, as `select_subset`), a
    `MeasurePlan` with `flows.measure.measure_transfer` (the measured gains, as `measure_transfer`), a
    `RecommendPlan` with `flows.recommend.recommend_source` (the answer, as `recommend`) and a
    `MeasureSelectionPlan` with `flows.measure_selection.measure_selection` (as `measure_selection`). A request is
    planned first."""
    kind = type(plan)
    if PLANNING.get(kind.__name__) != kind.__module__:
        raise InputError(
            "The 'plan' parameter of run_plan must be a plan or request of plan_rank, plan_selection, plan_measure, "
            f"plan_recommend or plan_measure_selection. Got {kind.__name__} instead."
        )
    import flows

    result = getattr(flows, PLAN_FLOWS[kind.__module__])(plan)
    if kind.__module__ != "flows.select":
        return result
    request = plan if kind.__name__ == "SelectionRequest" else plan.request
    return Results(request.workspace).subset(result["subset_id"])  # the flow stored it and returned its summary


def _root(workspace: WorkspaceLike) -> str:
    """The workspace folder a flow takes (creating and migrating the workspace on first use)."""
    return str((workspace if isinstance(workspace, Workspace) else Workspace(workspace)).root)


def add_task(
    workspace: WorkspaceLike, source: str | Path | pd.DataFrame | Task, name: str | None = None, **options: Any
) -> Task:
    """Store a task: a `Task`, or anything `load_task` reads (``options``: text_column, label_column, kind, ...);
    returns it (a frozen dataclass). Storing the same content again changes nothing."""
    from store.catalog import put_task

    task = source if isinstance(source, Task) else load_task(source, name, **options)
    put_task(workspace if isinstance(workspace, Workspace) else Workspace(workspace), task)
    return task


def embed(
    workspace: WorkspaceLike,
    tasks: list[str] | None = None,
    splits: tuple[str, ...] | None = ("train",),
    **options: Any,
) -> pd.DataFrame:
    """Embed ``splits`` (default: train, what ranking and selection read; None: every split) of ``tasks``
    (default: every stored task) with the base encoder, cached (`flows.embed.embed_tasks`; ``options``: model,
    precision, device, ...). One row per (task, split): task, split, n (texts), dim, cached (read from the cache,
    not computed), seconds, run_id."""
    from flows import embed_tasks

    rows = embed_tasks(tasks=tasks, splits=list(splits) if splits else None, workspace=_root(workspace), **options)
    return pd.DataFrame(rows, columns=["task", "split", "n", "dim", "cached", "seconds", "run_id"])


def rank_sources(
    workspace: WorkspaceLike, target: str, sources: list[str] | None = None, **options: Any
) -> pd.DataFrame:
    """Rank ``sources`` (default: every other stored task) for ``target`` with each method (`flows.rank.rank_sources`;
    ``options``: the fields of `flows.rank.RankRequest`: methods, recipe, fuse, prefilter, device, ...; ``budget``
    is recipe's deprecated name). One row per method and source: source, score, rank (1 = best in the method's
    direction), method, run_id, higher_is_better; ``attrs["failures"]``: the methods that failed, with why."""
    from flows.rank import RankRequest, renamed
    from flows.rank import rank_sources as flow

    names = None if sources is None else tuple(sources)
    options = renamed("rank_sources", {"budget": "recipe"}, options)  # here, so the warning names the caller's line
    return flow(RankRequest(target, names, workspace=_root(workspace), **options))


def recommend(workspace: WorkspaceLike, target: str, sources: list[str] | None = None, **options: Any) -> pd.DataFrame:
    """Which source to fine-tune on first, or none, verified by measurement within a budget
    (`flows.recommend.recommend_source`; ``options``: the fields of `flows.recommend.RecommendRequest`: runs,
    seconds, confidence, shortlist, device, ...). One row per arm, the answer first: source ('' = no transfer),
    prior_gain, prior_sd, pulls, gain, gain_sd (points over no transfer), p_best, chosen; ``attrs``: ``answer``,
    ``dont_transfer``, ``p_best``, ``lower``/``upper``, ``runs``, ``seconds``, ``message``."""
    from flows.recommend import RecommendRequest, recommend_source

    names = None if sources is None else tuple(sources)
    return recommend_source(RecommendRequest(target, names, workspace=_root(workspace), **options))


def advise_sources(
    workspace: WorkspaceLike, target: str, sources: list[str] | None = None, **options: Any
) -> pd.DataFrame:
    """The learned recommendation (`flows.advisor.advise_sources`; ``options``: inputs, verify, alpha, atlas,
    device). One row per source, best first: source, rank, expected_gain, lower, upper (points over no transfer;
    NaN when the advisor fused its inputs' ranks instead), top_features, and measured_gain when verified; ``attrs``
    say whether to transfer at all (``dont_transfer``) and what the advice was learned from (``basis``,
    ``message``)."""
    from flows import advise_sources as flow

    return flow(target=target, sources=sources, workspace=_root(workspace), **options)


def measure_transfer(
    workspace: WorkspaceLike, target: str, sources: list[str] | None = None, **options: Any
) -> pd.DataFrame:
    """Measure real transfer to ``target``: fine-tune on it alone and after each source, per seed, resumable
    (`flows.measure.measure_transfer`; ``options``: the fields of `flows.measure.MeasureRequest`: seeds, recipe,
    target_recipe, device, ...; ``budget`` and ``target_budget`` are the recipes' deprecated names). One row per
    source, best gain first: source, baseline_mean, source_mean, mean_gain, std_gain, positive_share, p_value,
    n_seeds (in the target's primary metric, over the seeds)."""
    from flows.measure import MeasureRequest
    from flows.measure import measure_transfer as flow
    from flows.rank import renamed

    names = None if sources is None else tuple(sources)
    options = renamed("measure_transfer", {"budget": "recipe", "target_budget": "target_recipe"}, options)
    return flow(MeasureRequest(target, names, workspace=_root(workspace), **options))


def evaluate_rankings(workspace: WorkspaceLike, target: str, **options: Any) -> pd.DataFrame:
    """Score every stored ranking of ``target`` against its measured transfer (`flows.evaluate.evaluate_rankings`):
    one row per method (the index), one column per metric (regret@k, points_lost@k, ndcg@k, spearman, ...)."""
    from flows import evaluate_rankings as flow

    return flow(target=target, workspace=_root(workspace), **options)


def select_subset(
    workspace: WorkspaceLike,
    pool: str,
    targets: str | list[str],
    method: str = "gio",
    budget: int | float | None = 0.2,
    **options: Any,
) -> pd.DataFrame:
    """Select a training subset of ``pool`` for ``targets`` (`flows.select.select_training_subset`; ``options``: the
    fields of `flows.select.SelectionRequest`: method_params, label_map, seed, device, ...) and return it as
    `Results.stored_subset` does, read back by the subset id the selection returned: the picked rows in selection
    order (rank, example_id, text, text_pair, label, label_index for classification, score); ``attrs`` hold the
    subset id, run id, method and parameters."""
    from flows.select import SelectionRequest

    request = SelectionRequest(pool, targets, method, budget, workspace=_root(workspace), **options)  # type: ignore[arg-type]
    return run_plan(request)


def measure_selection(workspace: WorkspaceLike, pool: str, targets: str | list[str], **options: Any) -> pd.DataFrame:
    """What each selection method's subsets of ``pool`` are worth when trained on (`flows.measure_selection`;
    ``options``: the fields of `flows.measure_selection.MeasureSelectionRequest`: arms, budgets, seeds, recipe, ...).
    One row per (target, arm, budget), target ``"all"`` averaging the targets: n_train, n_seeds, score_*, share_*
    (of the full-pool score), vs_random_* (`transfer.arms.COLUMNS`)."""
    from flows.measure_selection import MeasureSelectionRequest
    from flows.measure_selection import measure_selection as flow

    return flow(MeasureSelectionRequest(pool, targets, workspace=_root(workspace), **options))  # type: ignore[arg-type]


def build_report(
    workspace: WorkspaceLike = None, out_dir: str | os.PathLike[str] | None = None, target: str | None = None
) -> Report:
    """Write the static HTML report of the workspace to ``out_dir/index.html`` (default ``<workspace>/report/``;
    `reports.html.build_report`; ``target``: only that task in the per-target sections); returns its `Report`."""
    from reports.html import build_report as build

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    return Report(build(ws, out_dir, target=target), target)
