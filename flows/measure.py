"""Flow ``measure_transfer``: the ground truth — fine-tune on the target alone and after each source, per seed.

Each (source, seed) run is its own Prefect task and is stored as soon as it finishes, keyed by the measurement
config (target, recipes, model, caps) with what it started from (the source checkpoint's key, or the base model's
fingerprint), so a crashed or extended grid resumes without redoing finished runs, and a run whose source rows or
base weights changed since is measured again; a `MeasureRequest` is planned once (`plan_measure`, a frozen
`MeasurePlan` with the runs still to do). Source checkpoints come from the cache shared with ESMs. Per pair, the
summary (mean gain, its spread, share of positive seeds, paired t-test) is rewritten from all stored seeds at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.checkpoints import checkpoint_key, ensure_checkpoint, source_data, sources_data
from flows.progress import progress
from flows.rank import recipe_for_name, renamed_keywords
from flows.runners import gather
from store.catalog import catalog_digest, check_plan_current, get_task, list_tasks
from store.checkpoints import stored_checkpoints
from store.errors import InputError
from store.measured import MeasurementRecipe, done_transfer_runs, put_transfer_gains, put_transfer_result
from store.rates import fine_tune_rate
from store.runs import config_hash, recorded_run
from store.tasks import Task, ensure_split
from store.worker import Deferred, WorkerWorkspace
from store.workspace import Workspace
from transfer.encoder import DEFAULT_MODEL, model_fingerprint, resolve_model_path
from transfer.finetune import TARGET_RECIPE, Recipe, sample_indices
from transfer.groundtruth import Split, summarise_gains, train_and_evaluate

BASELINE = ""  # the source name of the no-transfer runs
TARGET_RECIPES = {"small": TARGET_RECIPE}  # the named target fine-tuning recipes


def target_splits(goal: Task, recipe: Recipe, max_test: int, seed: int) -> tuple[Split, Split]:
    """Training rows (≤ recipe.max_examples, seeded) and held-out rows (the test split, else validation, else 20%
    carved from train per seed; ≤ ``max_test``, seeded). A carved target's whole train split is in the leakage
    guard (`store.leakage.evaluation_splits`), so no source trains on a text any seed holds out."""
    held_name = next((s for s in ("test", "validation") if s in goal.splits), None)
    if held_name is None:
        goal, held_name = ensure_split(goal, "test", fraction=0.2, seed=seed), "test"

    def split(name: str, cap: int) -> Split:
        rows = goal.split(name)
        rows = rows.take(sample_indices(rows.num_rows, cap, seed))
        pairs = rows.column("text_pair").to_pylist() if goal.input == "pair" else None
        return Split(rows.column("text").to_pylist(), pairs, rows.column("label").to_numpy())

    return split("train", recipe.max_examples), split(held_name, max_test)


@task(cache_policy=NO_CACHE, task_run_name="measure-{target}-{source}-seed{seed}")
def measure_run(
    workspace: str, target: str, source: str, seed: int, setup_json: str, config: str, run_id: str
) -> Deferred[dict[str, float]]:
    """One fine-tuning run on the target (from the base encoder, or from ``source``'s checkpoint), stored with the
    key of what it started from (the checkpoint's, or the base model's fingerprint); the flow commits it as soon as
    it finishes (`flows.runners.gather`)."""
    setup = json.loads(setup_json)
    ws = WorkerWorkspace(workspace)
    goal = get_task(ws, target)
    target_recipe, source_recipe = Recipe(**setup["target_recipe"]), Recipe(**setup["source_recipe"])
    train, test = target_splits(goal, target_recipe, setup["max_test"], seed)
    model, device = setup["model"], setup["device"]
    base_fp = model_fingerprint(resolve_model_path(model))
    start, start_key = model, base_fp
    if source != BASELINE:
        data = source_data(ws, source, source_recipe, seed)
        start_key = checkpoint_key(data, source_recipe, model=model, base_fp=base_fp, seed=seed).cache_key
        directory = ensure_checkpoint(
            ws, data, source_recipe, model=model, base_fp=base_fp, seed=seed, device=device, run_id=run_id
        )
        start = str(directory)
    name = f"fine-tune {target} from {source or 'the base model'} (seed {seed})"
    with progress(name, target_recipe.examples(len(train.texts)), "example") as advance:
        metrics = train_and_evaluate(
            train, test, n_classes=goal.n_classes, start=start, recipe=target_recipe, seed=seed, device=device,
            progress=advance,
        )  # fmt: skip
    put_transfer_result(ws, config, target, source, seed, metrics, run_id, start_key=start_key)
    get_run_logger().info("%s <- %s (seed %d): %.4f", target, source or "no transfer", seed, metrics["primary"])
    return ws.deferred(metrics)


@renamed_keywords(budget="recipe", target_budget="target_recipe")  # the old names, until the next release
@dataclass(frozen=True)
class MeasureRequest:
    """What `measure_transfer` is asked to measure (checked on construction; `plan_measure` checks it against the
    workspace). ``sources``: default every other stored task. ``recipe`` is the sources' fine-tuning recipe (as in
    `flows.rank.RankRequest`); ``target_recipe`` the target's (`TARGET_RECIPES`: ``"small"``, ≤ 1,000 examples,
    3 epochs, batch 16, lr 5e-5, 6% warm-up, max_length 64 — enough steps for a few hundred target examples to
    train; DECISIONS.md) or a dict of `Recipe` fields; ``budget=`` and ``target_budget=`` are their deprecated
    names. Held-out rows: the target's test split, else validation, else 20% of train, at most ``max_test``."""

    target: str
    sources: tuple[str, ...] | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    recipe: str | dict[str, Any] = "small"
    target_recipe: str | dict[str, Any] = "small"
    max_test: int = 2000
    model: str = DEFAULT_MODEL
    device: str = "auto"
    workspace: str | None = None

    def __post_init__(self) -> None:
        if self.sources is not None:
            object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if self.target in (self.sources or ()):
            raise InputError(f"The target {self.target!r} is also among the sources; a task cannot be its own source.")
        if not self.seeds or any(not isinstance(s, int) or isinstance(s, bool) for s in self.seeds):
            raise InputError(
                f"The 'seeds' parameter of measure_transfer must be a non-empty tuple of ints. Got {self.seeds!r}."
            )
        self.fine_tune_recipes()

    def fine_tune_recipes(self) -> tuple[Recipe, Recipe]:
        """The (source, target) fine-tuning `Recipe`s that ``recipe`` and ``target_recipe`` name."""
        return recipe_for_name(self.recipe), recipe_for_name(self.target_recipe, TARGET_RECIPES, "target_recipe")


@dataclass(frozen=True)
class MeasurePlan:
    """A validated, costed `MeasureRequest`: the sources, the measurement ``setup`` (hashed as ``config``, the key
    stored runs are found by), ``start_keys`` (source, seed, start key) for every run of the grid (what it starts
    from: the source checkpoint's `flows.checkpoints.checkpoint_key`, or the base model's fingerprint for
    ``BASELINE`` = no transfer), the (source, seed) runs still to do (`pending`), and their cost: ``target_examples``
    x epochs per run, plus ``source_fine_tunes`` (the runs to do whose source checkpoint is not cached yet;
    ``source_example_epochs`` in all), at the workspace's measured ``rate``. ``catalog``: the stored tasks it was
    made against."""

    request: MeasureRequest
    catalog: str
    sources: tuple[str, ...]
    setup: dict[str, Any]
    config: str
    start_keys: tuple[tuple[str, int, str], ...]
    todo: tuple[tuple[str, int], ...]
    target_examples: int
    source_fine_tunes: int
    source_example_epochs: int
    estimated_s: float
    rate: str


def pending(
    start_keys: tuple[tuple[str, int, str], ...], done: dict[tuple[str, int], str | None]
) -> tuple[tuple[str, int], ...]:
    """The runs of ``start_keys`` ((source, seed, start key) each) that ``done`` (`store.measured.done_transfer_runs`)
    lacks or holds from another start (or from an unrecorded one, None)."""
    return tuple((s, seed) for s, seed, key in start_keys if done.get((s, seed)) != key)


def plan_measure(request: MeasureRequest) -> MeasurePlan:
    """Check ``request`` against the workspace and plan it: the runs not yet stored from the start they would make
    now (each source's rows worked out as `flows.rank.plan_rank` does, leakage guard read once), and their cost."""
    r = request
    ws = Workspace(r.workspace)
    goal = get_task(ws, r.target)
    names = r.sources or tuple(n for n in list_tasks(ws)["name"] if n != r.target)
    source_recipe, target_recipe = r.fine_tune_recipes()
    recipe = MeasurementRecipe(r.model, source_recipe.as_dict(), target_recipe.as_dict(), r.max_test)
    setup = recipe.setup(goal.content_hash)  # the advisor finds these runs by the same hash (store.advice)
    base_fp = model_fingerprint(resolve_model_path(r.model))
    start_keys, tunes = [], {}  # tunes: {(source, seed): (checkpoint key, example-epochs of its fine-tune)}
    for seed in r.seeds:
        start_keys.append((BASELINE, seed, base_fp))
        for name, data in sources_data(ws, list(names), source_recipe, seed).items():
            key = checkpoint_key(data, source_recipe, model=r.model, base_fp=base_fp, seed=seed).cache_key
            start_keys.append((name, seed, key))
            tunes[name, seed] = (key, source_recipe.examples(len(data.texts)))
    config = config_hash(setup)
    todo = pending(tuple(start_keys), done_transfer_runs(ws, config, r.target))
    cached = stored_checkpoints(ws)
    fine_tunes = [tunes[run][1] for run in todo if run[0] != BASELINE and tunes[run][0] not in cached]
    examples = min(goal.counts().get("train", 0), target_recipe.max_examples)
    rate = fine_tune_rate(ws)
    estimate = rate.seconds(len(todo) * examples * target_recipe.epochs + sum(fine_tunes))
    return MeasurePlan(
        r, catalog_digest(ws), tuple(names), setup, config, tuple(start_keys), todo, examples, len(fine_tunes),
        sum(fine_tunes), estimate, rate.basis,
    )  # fmt: skip


@flow(name="measure_transfer", task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def measure_transfer(plan: MeasurePlan | MeasureRequest) -> pd.DataFrame:
    """Run a measurement plan (a `MeasureRequest` is planned here, once, by `plan_measure`): the gain of
    intermediate fine-tuning on each source for the target; returns the per-pair summary (source, baseline_mean,
    source_mean, mean_gain, std_gain, positive_share, p_value, n_seeds) over the request's seeds."""
    if isinstance(plan, MeasureRequest):
        plan = plan_measure(plan)
    r = plan.request
    ws = Workspace(r.workspace)
    check_plan_current(ws, plan.catalog, "measure_transfer")
    params = {
        **plan.setup,
        "device": r.device,
        "target": r.target,
        "sources": list(plan.sources),
        "seeds": list(r.seeds),
    }
    with recorded_run(ws, "measure_transfer", params, device=r.device) as run:
        run_id = run.run_id
        done = done_transfer_runs(ws, plan.config, r.target)  # a plan run again (after a crash) skips what landed
        left = set(pending(plan.start_keys, done))
        todo = [run for run in plan.todo if run in left]
        get_run_logger().info(
            "measure_transfer %s: %d runs to do, %d already stored",
            r.target,
            len(todo),
            len(r.seeds) * (len(plan.sources) + 1) - len(todo),
        )
        setup_json = json.dumps({**plan.setup, "device": r.device})
        futures = [
            measure_run.submit(str(ws.root), r.target, name, seed, setup_json, plan.config, run_id)
            for name, seed in todo
        ]
        gather(ws, futures, f"measure {r.target}", "fine-tune")
        summary = summarise(ws, plan.config, r.target, list(plan.sources), r.seeds, run_id)
    return summary


def summarise(
    ws: Workspace, config: str, target: str, names: list[str], seeds: tuple[int, ...], run_id: str
) -> pd.DataFrame:
    """Per-pair gain summaries over ``seeds`` from the stored primary metrics; stored in ``transfer_gains``."""
    values = ws.read("primary_transfer_results", {"config_hash": config, "target": target})
    values = values[values.seed.isin(seeds)].pivot(index="seed", columns="source", values="value")
    baseline = values[BASELINE]
    rows = []
    for name in names:
        gain = summarise_gains(values[name].to_numpy(), baseline.to_numpy())
        rows.append(
            {
                "source": name,
                "baseline_mean": float(baseline.mean()),
                "source_mean": float(values[name].mean()),
                **gain.__dict__,
            }
        )
    frame = pd.DataFrame(rows).sort_values("mean_gain", ascending=False).reset_index(drop=True)
    put_transfer_gains(ws, config, target, frame, run_id)
    return frame
