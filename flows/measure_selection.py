"""Flow ``measure_selection``: what each selection method's subsets are worth on the targets (`selection.quality`).

For every arm (a method with its parameters), budget and seed: select the subset with `select_training_subset`
(stored, so asking again reuses it; the seed is the selection's and the fine-tune's), fine-tune the base encoder on
it and evaluate the model on every target's held-out rows (the target labels mapped into the pool's label space).
The whole pool, trained the same way per seed, is the reference arm ``"full"``. Each fine-tune is one Prefect task
and is stored as soon as it finishes, keyed by the measurement config (pool and target content, recipe, model,
held-out rows) and the subset id, so an interrupted or extended grid resumes without repeating finished runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.gradient_rows import labelled_rows
from flows.progress import progress
from flows.runners import gather
from flows.select import METHODS, SelectionPlan, SelectionRequest, plan_selection, select_training_subset
from selection.icons import WARMUP_RECIPE
from selection.quality import FULL, RANDOM, summarise_selection
from store.catalog import catalog_digest, check_plan_current, get_task
from store.errors import InputError
from store.rates import fine_tune_rate
from store.runs import config_hash, recorded_run
from store.selections import (
    done_selection_runs,
    find_selection,
    put_selection_result,
    selection_frame,
    selection_results,
)
from store.tasks import Task
from store.worker import Deferred, WorkerWorkspace
from store.workspace import Workspace
from transfer.encoder import DEFAULT_MODEL
from transfer.finetune import Recipe, fine_tune, predict, sample_indices
from transfer.groundtruth import evaluate_outputs

OWNER = "measure_selection"
# Every method at every budget; the bench drops some VoG strategies at the outer budgets (DECISIONS.md).
DEFAULT_ARMS: dict[str, dict[str, Any]] = {
    "gio": {"method": "gio"},
    "icons": {"method": "icons"},
    "vog-prune_easiest": {"method": "vog", "params": {"strategy": "prune_easiest"}},
    "vog-keep_hardest": {"method": "vog", "params": {"strategy": "keep_hardest"}},
    "vog-weighted_sample": {"method": "vog", "params": {"strategy": "weighted_sample"}},
    RANDOM: {"method": "random"},
}
# The subset fine-tune: every selected example, 3 epochs, batch 16, lr 5e-5, 6% warm-up, max_length 64 (the
# warm-up recipe of ICONS; it trains a few hundred examples properly, DECISIONS.md).
SUBSET_RECIPE = WARMUP_RECIPE


@dataclass(frozen=True)
class ArmRun:
    """One arm at one budget (per seed): the method and its parameters."""

    arm: str
    method: str
    params: dict[str, Any] | None
    budget: float


def check_arms(arms: dict[str, dict[str, Any]], budgets: tuple[float, ...]) -> tuple[ArmRun, ...]:
    """The runs of one seed, full pool first; errors name the bad arm."""
    if not budgets or not all(isinstance(b, float) and 0 < b < 1 for b in budgets):
        raise InputError(f"The 'budgets' parameter of {OWNER} must be fractions in (0, 1). Got {budgets!r} instead.")
    runs = [ArmRun(FULL, "random", None, 1.0)]
    for name, spec in arms.items():
        if name == FULL or not isinstance(spec, dict) or spec.get("method") not in METHODS:
            raise InputError(
                f"The 'arms' parameter of {OWNER} maps names (not {FULL!r}) to {{'method': one of {list(METHODS)}, "
                f"'params': {{...}}, 'budgets': [...]}}. Got {name!r}: {spec!r} instead."
            )
        unknown = sorted(set(spec) - {"method", "params", "budgets"})
        if unknown:
            raise InputError(f"Arm {name!r} of {OWNER} has unknown keys {unknown}; known: method, params, budgets.")
        arm_budgets = tuple(spec.get("budgets", budgets))
        if not set(arm_budgets) <= set(budgets):
            raise InputError(f"Arm {name!r} asks for budgets {list(arm_budgets)} outside {list(budgets)}.")
        runs += [ArmRun(name, spec["method"], spec.get("params"), b) for b in arm_budgets]
    return tuple(runs)


@task(cache_policy=NO_CACHE, task_run_name="train-{arm}-{budget}-seed{seed}")
def train_on_subset(
    workspace: str, arm: str, budget: float, seed: int, subset_id: str, setup_json: str, config: str, run_id: str
) -> Deferred[dict[str, float]]:
    """Fine-tune the base encoder on one stored subset and evaluate it on every target's held-out rows; the flow
    stores the metrics as soon as it finishes. Returns {target: primary metric}."""
    setup = json.loads(setup_json)
    ws = WorkerWorkspace(workspace)
    selection = find_selection(ws, subset_id)
    if selection is None:
        raise LookupError(f"Subset {subset_id} is not stored; select_training_subset stores it before training.")
    pool = get_task(ws, setup["pool"])
    rows = selection_frame(ws, selection)
    recipe = Recipe(**setup["recipe"])
    classification = pool.kind == "classification"
    with progress(f"fine-tune on {arm} subset ({len(rows)} rows)", recipe.examples(len(rows)), "example") as advance:
        tuned = fine_tune(
            rows.text.tolist(),
            (rows.label_index if classification else rows.label).to_numpy(),
            n_classes=len(pool.label_names) if classification else None,
            text_pairs=rows.text_pair.tolist() if pool.input == "pair" else None,
            model=setup["model"],
            recipe=recipe,
            seed=seed,
            device=setup["device"],
            progress=advance,
        )
    metrics = {}
    for target in setup["targets"]:
        held = held_out_rows(ws, pool, target, setup)
        outputs = predict(tuned.model, tuned.tokenizer, held["texts"], held["pairs"], max_length=recipe.max_length)
        metrics[target] = evaluate_outputs(outputs, held["labels"], regression=pool.kind == "regression")
    put_selection_result(
        ws,
        config,
        pool=setup["pool"],
        arm=arm,
        method=selection.method,
        budget=budget,
        seed=seed,
        subset_id=subset_id,
        n_train=len(rows),
        train_seconds=tuned.seconds,
        metrics=metrics,
        run_id=run_id,
    )
    primary = {t: m["primary"] for t, m in metrics.items()}
    get_run_logger().info("%s at %.0f%% (seed %d, %d rows): %s", arm, 100 * budget, seed, len(rows), primary)
    return ws.deferred(primary)


def held_out_rows(ws: Workspace, pool: Task, target: str, setup: dict[str, Any]) -> dict[str, Any]:
    """A target's held-out rows (its ``held_out`` splits that exist, at most ``max_test``, one fixed sample so
    every arm and seed is scored on the same rows) with labels in the pool's label space."""
    goal = get_task(ws, target)
    parts = [
        labelled_rows(pool, goal, split, setup["label_map"], max_rows=None, seed=0)
        for split in setup["held_out"]
        if split in goal.splits
    ]
    texts = [t for p in parts for t in p.texts]
    pairs = [t for p in parts for t in p.pairs] if goal.input == "pair" else None  # type: ignore[union-attr]
    labels = np.concatenate([p.labels for p in parts])
    keep = np.sort(sample_indices(len(texts), setup["max_test"], 0))
    return {
        "texts": [texts[i] for i in keep],
        "pairs": [pairs[i] for i in keep] if pairs is not None else None,
        "labels": labels[keep],
    }


@dataclass(frozen=True)
class MeasureSelectionRequest:
    """What `measure_selection` is asked to measure (checked on construction; `plan_measure_selection` checks it
    against the workspace). ``arms``: {name: {"method": gio|icons|vog|random, "params": method parameters,
    "budgets": a subset of ``budgets``}} (default `DEFAULT_ARMS`); ``budgets``: fractions of the pool in (0, 1);
    ``recipe``: Recipe fields over `SUBSET_RECIPE`. Selection sees a seeded sample of at most
    ``max_target_examples`` rows of each target's train split; evaluation uses its ``held_out`` splits (at most
    ``max_test`` rows, one fixed sample)."""

    pool: str
    targets: tuple[str, ...] | str  # one name or several; always a tuple once constructed
    arms: dict[str, dict[str, Any]] | None = None
    budgets: tuple[float, ...] = (0.1, 0.2, 0.5)
    seeds: tuple[int, ...] = (0, 1, 2)
    recipe: dict[str, Any] | None = None
    held_out: tuple[str, ...] = ("validation", "test")
    max_test: int = 2000
    max_target_examples: int = 300
    label_map: dict[str, str] | None = None
    pool_split: str = "train"
    model: str = DEFAULT_MODEL
    device: str = "auto"
    workspace: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", (self.targets,) if isinstance(self.targets, str) else tuple(self.targets))
        object.__setattr__(self, "arms", dict(DEFAULT_ARMS if self.arms is None else self.arms))
        object.__setattr__(self, "budgets", tuple(self.budgets))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "held_out", tuple(self.held_out))
        object.__setattr__(self, "recipe", dict(self.recipe or {}))
        if not self.seeds or any(not isinstance(s, int) or isinstance(s, bool) for s in self.seeds):
            raise InputError(f"The 'seeds' parameter of {OWNER} must be a non-empty tuple of ints. Got {self.seeds!r}.")
        check_arms(self.arms, self.budgets)  # type: ignore[arg-type]

    @property
    def subset_recipe(self) -> Recipe:
        return Recipe(**{**SUBSET_RECIPE.as_dict(), **(self.recipe or {})})


@dataclass(frozen=True)
class Trial:
    """One fine-tune still to run: an arm's subset at a budget and seed, with the plan of its selection."""

    run: ArmRun
    seed: int
    selection: SelectionPlan

    def key(self, target: str) -> tuple[str, float, int, str]:
        """How `store.selections.done_selection_runs` names this trial's stored run on ``target``."""
        return (self.run.arm, self.run.budget, self.seed, target)


@dataclass(frozen=True)
class MeasureSelectionPlan:
    """A validated, costed `MeasureSelectionRequest`: the measurement config (``setup``, hashed as ``config``), every
    run of the grid (``runs`` per seed) and the ``todo`` trials not yet stored, with the fine-tuning they cost
    (``examples`` x epochs, ``estimated_s`` at the workspace's measured ``rate``); ``catalog``: the stored tasks it
    was made against."""

    request: MeasureSelectionRequest
    catalog: str
    setup: dict[str, Any]
    config: str
    runs: tuple[ArmRun, ...]
    todo: tuple[Trial, ...]
    examples: int
    estimated_s: float
    rate: str


def plan_measure_selection(request: MeasureSelectionRequest) -> MeasureSelectionPlan:
    """Check ``request`` against the workspace and plan it: the selections each trial needs (`plan_selection`) and
    the fine-tunes not yet stored. Nothing is computed."""
    r = request
    ws = Workspace(r.workspace)
    stored_pool = get_task(ws, r.pool)
    goals = [get_task(ws, name) for name in r.targets]
    for goal in goals:
        if not set(r.held_out) & set(goal.splits):
            raise InputError(
                f"The 'held_out' parameter of {OWNER} names splits {list(r.held_out)}, none of which target "
                f"{goal.name!r} has ({list(goal.splits)})."
            )
    setup = {
        "pool": r.pool,
        "pool_content": stored_pool.split_hash(r.pool_split),
        "pool_split": r.pool_split,
        "targets": list(r.targets),
        "target_content": {g.name: g.content_hash for g in goals},
        "recipe": r.subset_recipe.as_dict(),
        "held_out": list(r.held_out),
        "max_test": r.max_test,
        "max_target_examples": r.max_target_examples,
        "label_map": r.label_map,
        "model": r.model,
    }
    config = config_hash(setup)
    done = done_selection_runs(ws, config)
    runs = check_arms(r.arms, r.budgets)  # type: ignore[arg-type]
    todo = []
    for seed in r.seeds:
        for run in runs:
            selection = plan_selection(
                SelectionRequest(
                    r.pool,
                    r.targets,
                    run.method,
                    run.budget,
                    pool_split=r.pool_split,
                    max_target_examples=r.max_target_examples,
                    model=r.model,
                    device=r.device,
                    method_params=run.params or {},
                    label_map=r.label_map,
                    seed=seed,
                    workspace=r.workspace,
                )
            )
            trial = Trial(run, seed, selection)
            if any(done.get(trial.key(name)) != selection.subset_id for name in r.targets):
                todo.append(trial)
    n_pool = stored_pool.counts()[r.pool_split]
    examples = sum(round(t.run.budget * n_pool) for t in todo) * r.subset_recipe.epochs
    rate = fine_tune_rate(ws)
    return MeasureSelectionPlan(
        r, catalog_digest(ws), setup, config, runs, tuple(todo), examples, rate.seconds(examples), rate.basis
    )


@flow(name="measure_selection", task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def measure_selection(plan: MeasureSelectionPlan | MeasureSelectionRequest) -> pd.DataFrame:
    """Run a measurement plan (a `MeasureSelectionRequest` is planned here, once): fine-tune on the subsets each
    arm selects from the pool for the targets at each budget and seed, and on the whole pool; returns
    `selection.quality.summarise_selection` of the stored runs (share of the full-pool score and the paired
    comparison against ``random``, per target and averaged over targets)."""
    if isinstance(plan, MeasureSelectionRequest):
        plan = plan_measure_selection(plan)
    r = plan.request
    ws = Workspace(r.workspace)
    check_plan_current(ws, plan.catalog, OWNER)
    done = done_selection_runs(ws, plan.config)  # a plan run again (after a crash) skips what landed since
    todo = [t for t in plan.todo if any(done.get(t.key(name)) != t.selection.subset_id for name in r.targets)]
    get_run_logger().info(
        "measure_selection %s for %s: %d fine-tunes to do (%d already stored), %d examples x epochs; about %.0f s "
        "of fine-tuning (at %s) plus the selections",
        r.pool,
        list(r.targets),
        len(todo),
        len(plan.runs) * len(r.seeds) - len(todo),
        plan.examples,
        plan.estimated_s,
        plan.rate,
    )
    params = {**plan.setup, "arms": r.arms, "budgets": list(r.budgets), "seeds": list(r.seeds)}
    with recorded_run(ws, OWNER, params) as run:
        run_id = run.run_id
        setup_json = json.dumps({**plan.setup, "device": r.device})
        for trial in todo:  # every selection first: two torch jobs thrash
            if find_selection(ws, trial.selection.subset_id) is None:
                select_training_subset(trial.selection)
        futures = [
            train_on_subset.submit(
                str(ws.root), t.run.arm, t.run.budget, t.seed, t.selection.subset_id, setup_json, plan.config, run_id
            )
            for t in todo
        ]
        gather(ws, futures, f"measure selection of {r.pool}", "fine-tune")
        stored = selection_results(ws, plan.config)
        wanted = {(run.arm, run.budget) for run in plan.runs}
        in_grid = np.array([(a, b) in wanted for a, b in zip(stored.arm, stored.budget, strict=True)], dtype=bool)
        stored = stored[stored.seed.isin(r.seeds).to_numpy() & in_grid]
        summary = summarise_selection(stored)
    return summary
