"""Flow ``measure_transfer``: the ground truth — fine-tune on the target alone and after each source, per seed.

Each (source, seed) run is its own Prefect task and is stored as soon as it finishes, keyed by the measurement
config (target, budgets, model, caps), so a crashed or extended grid resumes without redoing finished runs. Source
checkpoints come from the cache shared with ESMs. Per pair, the summary (mean gain, its spread, share of positive
seeds, paired t-test) is rewritten from all stored seeds at the end.
"""

from __future__ import annotations

import json

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.checkpoints import ensure_checkpoint, source_data
from flows.embed import EncoderSettings
from flows.progress import progress
from flows.rank import recipe_for_budget
from flows.runners import gather
from store.catalog import get_task, list_tasks
from store.measured import done_transfer_runs, put_transfer_gains, put_transfer_result
from store.runs import config_hash, recorded_run
from store.tasks import Task, ensure_split
from store.worker import Deferred, WorkerWorkspace
from store.workspace import Workspace
from transfer.encoder import DEFAULT_MODEL
from transfer.finetune import TARGET_RECIPE, Recipe, sample_indices
from transfer.groundtruth import Split, summarise_gains, train_and_evaluate

BASELINE = ""  # the source name of the no-transfer runs
TARGET_BUDGETS = {"small": TARGET_RECIPE}


def target_splits(goal: Task, recipe: Recipe, max_test: int, seed: int) -> tuple[Split, Split]:
    """Training rows (≤ recipe.max_examples, seeded) and held-out rows (the test split, else validation, else 20%
    carved from train; ≤ ``max_test``, seeded)."""
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
    """One fine-tuning run on the target (from the base encoder, or from ``source``'s checkpoint); the flow stores
    it as soon as it finishes (`flows.runners.gather`)."""
    setup = json.loads(setup_json)
    ws = WorkerWorkspace(workspace)
    goal = get_task(ws, target)
    target_recipe, source_recipe = Recipe(**setup["target_recipe"]), Recipe(**setup["source_recipe"])
    train, test = target_splits(goal, target_recipe, setup["max_test"], seed)
    start = setup["model"]
    if source != BASELINE:
        base = EncoderSettings.of_recipe(source_recipe, setup["model"], setup["device"]).load()
        data = source_data(ws, source, source_recipe, seed)
        start = str(
            ensure_checkpoint(
                ws,
                data,
                source_recipe,
                model=setup["model"],
                base_fp=base.fingerprint,
                seed=seed,
                device=setup["device"],
                run_id=run_id,
            )
        )
    n_classes = len(goal.label_names) if goal.kind == "classification" else None
    name = f"fine-tune {target} from {source or 'the base model'} (seed {seed})"
    with progress(name, target_recipe.examples(len(train.texts)), "example") as advance:
        metrics = train_and_evaluate(
            train, test, n_classes=n_classes, start=start, recipe=target_recipe, seed=seed, device=setup["device"],
            progress=advance,
        )  # fmt: skip
    put_transfer_result(ws, config, target, source, seed, metrics, run_id)
    get_run_logger().info("%s <- %s (seed %d): %.4f", target, source or "no transfer", seed, metrics["primary"])
    return ws.deferred(metrics)


@flow(name="measure_transfer", task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def measure_transfer(
    target: str,
    sources: list[str] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    budget: str | dict = "small",
    target_budget: str | dict = "small",
    max_test: int = 2000,
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    workspace: str | None = None,
) -> pd.DataFrame:
    """Measure the gain of intermediate fine-tuning on each source for ``target``; returns the per-pair summary
    (source, baseline_mean, source_mean, mean_gain, std_gain, positive_share, p_value, n_seeds).

    ``budget`` is the source recipe (as in `rank_sources`); ``target_budget`` the target's (``"small"``: ≤ 1,000
    examples, 3 epochs, batch 16, lr 5e-5, 6% warm-up, max_length 64 — enough steps for a few hundred target
    examples to train; DECISIONS.md)."""
    ws = Workspace(workspace)
    goal = get_task(ws, target)
    names = sources or [n for n in list_tasks(ws)["name"] if n != target]
    if target in names:
        raise ValueError(f"The target {target!r} is also among the sources; a task cannot be its own source.")
    if not seeds or any(not isinstance(s, int) for s in seeds):
        raise ValueError(f"The 'seeds' parameter of measure_transfer must be a non-empty tuple of ints. Got {seeds!r}.")
    source_recipe = recipe_for_budget(budget)
    target_recipe = Recipe(**target_budget) if isinstance(target_budget, dict) else TARGET_BUDGETS.get(target_budget)
    if target_recipe is None:
        raise ValueError(
            f"The 'target_budget' parameter must be one of {list(TARGET_BUDGETS)} or a dict of Recipe "
            f"fields. Got {target_budget!r} instead."
        )
    setup = {
        "model": model,
        "source_recipe": source_recipe.as_dict(),
        "target_recipe": target_recipe.as_dict(),
        "max_test": max_test,
        "device": device,
        "target_content": goal.content_hash,
    }
    config = config_hash({k: v for k, v in setup.items() if k != "device"})
    params = {**setup, "target": target, "sources": names, "seeds": list(seeds)}
    with recorded_run(ws, "measure_transfer", params, device=device) as run:
        run_id = run.run_id
        done = done_transfer_runs(ws, config, target)
        todo = [(s, seed) for seed in seeds for s in [BASELINE, *names] if (s, seed) not in done]
        get_run_logger().info(
            "measure_transfer %s: %d runs to do, %d already stored",
            target,
            len(todo),
            len(seeds) * (len(names) + 1) - len(todo),
        )
        setup_json = json.dumps(setup)
        futures = [measure_run.submit(str(ws.root), target, s, seed, setup_json, config, run_id) for s, seed in todo]
        gather(ws, futures, f"measure {target}", "fine-tune")
        summary = summarise(ws, config, target, names, seeds, run_id)
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
