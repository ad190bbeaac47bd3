"""Flow ``select_training_subset``: choose the part of a candidate pool that best serves some target tasks.

Steps: drop pool rows that occur in a target's evaluation splits (leakage guard), embed the pool and the targets
(one Prefect task per split, through the content-keyed embedding cache), check both come from one encoder, run the
method (`selection.gio` and its quantised mode for big pools, ICONS (`flows.icons`) and VoG (`flows.vog`), or
`selection.random_baseline`), and store the
subset, in selection order, with its per-example scores in one transaction. The subset id hashes everything that
determines the subset, so asking again returns the stored one. A `SelectionRequest` is planned once
(`plan_selection`, a frozen `SelectionPlan`) and the flow runs that plan. `Results.subset` reads it back;
`store.selections.export_selection` writes it as a task file.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.embed import EncoderSettings, embed_split, embedding_key
from flows.gradient_rows import labelled_rows, method_settings, target_rows
from flows.icons import icons_order
from flows.progress import progress
from flows.runners import gather
from flows.vog import vog_order
from selection import gio
from selection.budget import resolve_budget
from selection.gradients import FEATURES_VERSION
from selection.icons import ICONS_DEFAULTS, WARMUP_RECIPE
from selection.random_baseline import random_select
from selection.vog import VOG_DEFAULTS
from store.catalog import catalog_digest, check_plan_current, get_task
from store.embeddings import find_embeddings
from store.errors import CorruptArtifactError, InputError
from store.leakage import drop_examples, drop_leaked
from store.rates import Rate, fine_tune_rate
from store.runs import config_hash, recorded_run
from store.selection_evidence import SelectionEvidence, selection_evidence
from store.selections import budget_kind, check_same_space, find_selection, put_selection
from store.tasks import Task
from store.workspace import Workspace
from transfer.encoder import DEFAULT_MODEL
from transfer.finetune import sample_indices

METHODS = ("gio", "icons", "vog", "random")
GRADIENT_METHODS = ("icons", "vog")
QUANTIZE_ABOVE = 50_000  # plain GIO's nearest-candidate step is O(pool) per pick; cluster bigger pools first
# Rough costs on 2 CPU cores (MEASURED.md, bench/gio.py), for the printed plan only; fine-tuning is costed at the
# workspace's measured rate (store.rates).
EMBED_TEXTS_PER_S = 290.0
GRADIENT_FEATURES_PER_S = 60.0  # Kronecker path, last block + head, max_length 64 (bench/gradients.py)
GIO_SECONDS_PER_STEP_PER_TARGET_ROW = 1.7e-6  # bench/gio.py: 85 ms per 50-step pick, 1,000 target rows
KMEANS_FLOPS_PER_S = 7.7e10
OWNER = "select_training_subset"


@dataclass(frozen=True)
class SelectionRequest:
    """What a user asks `select_training_subset` for (checked on construction; `plan_selection` checks it against
    the workspace). ``targets``: one task name or several. ``budget``: a float in (0, 1] is a fraction of the pool
    (``1.0`` the whole pool), an int ≥ 1 a count (``1`` one example); ``None`` lets GIO stop by its own criterion.
    ``method``: ``"gio"`` (Everaert & Potts 2023; its quantise-then-explode mode with ``n_clusters`` k-means
    clusters when ``quantize`` or, with ``quantize=None``, above 50,000 pool rows; ``method_params`` go to
    `selection.gio.gio_select`), ``"icons"`` (Wu et al.: consensus of per-target gradient influence on a warm-up
    checkpoint), ``"vog"`` (Agarwal et al.: variance of gradients across checkpoints; ``method_params`` strategy,
    n_checkpoints, ...) or ``"random"``. Targets contribute a seeded sample of at most ``max_target_examples`` rows
    of their ``target_split``; ``label_map`` maps target labels into the pool's (icons, vog)."""

    pool: str
    targets: tuple[str, ...] | str  # one name or several; always a tuple once constructed
    method: str = "gio"
    budget: int | float | None = 0.2
    pool_split: str = "train"
    target_split: str = "train"
    max_target_examples: int = 2000
    model: str = DEFAULT_MODEL
    precision: str = "exact"
    device: str = "auto"
    quantize: bool | None = None
    n_clusters: int = 1500
    method_params: dict[str, Any] = field(default_factory=dict)
    label_map: dict[str, str] | None = None
    leakage_guard: bool = True
    seed: int = 0
    workspace: str | None = None

    def __post_init__(self) -> None:
        names = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        if not names or not all(isinstance(t, str) and t for t in names):
            raise InputError(
                f"The 'targets' parameter of {OWNER} must name at least one stored task. Got {self.targets!r}."
            )
        object.__setattr__(self, "targets", names)
        object.__setattr__(self, "method_params", dict(self.method_params or {}))
        if self.method not in METHODS:
            raise InputError(
                f"The 'method' parameter of {OWNER} must be one of {list(METHODS)}. Got {self.method!r} instead."
            )
        if budget_kind(self.budget) == "method" and self.method != "gio":
            raise InputError(f"The 'budget' parameter of {OWNER} is required for method {self.method!r}. Got None.")
        if self.pool in names:
            raise InputError(
                f"The pool {self.pool!r} is also among the targets {list(names)}; select from a different task."
            )

    @property
    def encoder(self) -> EncoderSettings:
        return EncoderSettings(model=self.model, device=self.device, precision=self.precision)


@dataclass(frozen=True)
class SplitSize:
    """A task split and its number of examples (here: one the plan still has to embed)."""

    task: str
    split: str
    n: int


@dataclass(frozen=True)
class SelectionPlan:
    """A validated, costed `SelectionRequest`: what `select_training_subset` will compute, decided once.

    ``subset_id`` hashes everything that determines the subset (pool and target contents, method, budget,
    ``params``); ``leaked_ids`` are the pool rows the leakage guard drops (the flow drops exactly these);
    ``estimated_s`` is the rough time, with fine-tuning costed at ``rate`` (the workspace's measured rate);
    ``catalog``: the stored tasks it was made against (`store.catalog.catalog_digest`). `evidence` reads what
    measured data says about the method against random."""

    request: SelectionRequest
    catalog: str
    subset_id: str
    stored: bool
    n_pool: int
    leaked_ids: tuple[str, ...]
    n_budget: int | None
    n_target: int
    quantize: bool
    to_embed: tuple[SplitSize, ...]
    estimated_s: float
    rate: str
    params: dict[str, Any]

    def evidence(self) -> SelectionEvidence | None:
        """What measured data says about this method against random (`store.selection_evidence`: this pool's own
        measurement, else the benchmark's held-out pools), read when asked; None for random itself."""
        r = self.request
        if r.method == "random":
            return None
        fraction = None if self.n_budget is None else self.n_budget / self.n_pool
        spec = {"method": r.method, "params": r.method_params}
        return selection_evidence(Workspace(r.workspace), r.pool, arm_names(r.method, r.method_params), fraction, spec)


def arm_names(method: str, method_params: dict[str, Any]) -> tuple[str, ...]:
    """The names a measurement gives the arm of ``method`` with ``method_params``, most specific first (the
    benchmarks': ``icons-stratified``, ``vog-prune_easiest``; `transferscope measure-selection --method M`: ``M``
    for the method's defaults). Other parameters than those arms' (any GIO parameter; for ICONS and VoG any but
    ``stratify`` and ``strategy``) give one name, "<arm> (custom parameters)", that no measurement holds."""
    if method not in ("icons", "vog"):
        return (f"{method} (custom parameters)",) if method_params else (method,)
    settings, defaults = method_settings(method, method_params), method_settings(method, {})
    named = "stratify" if method == "icons" else "strategy"
    specific = (
        ("icons-stratified" if settings["stratify"] else "icons")
        if method == "icons"
        else f"vog-{settings['strategy']}"
    )
    if {k: v for k, v in settings.items() if k != named} != {k: v for k, v in defaults.items() if k != named}:
        return (f"{specific} (custom parameters)",)
    return (specific, method) if settings == defaults and specific != method else (specific,)


def plan_selection(request: SelectionRequest) -> SelectionPlan:
    """Check ``request`` against the workspace and say what it would compute, without computing it: the subset
    id, whether it is stored, the pool size after the leakage guard, the budget as a count, the embeddings to
    compute and a rough time estimate. `select_training_subset` runs exactly this plan."""
    r = request
    ws = Workspace(r.workspace)
    stored_pool = get_task(ws, r.pool)
    if r.pool_split not in stored_pool.splits:
        raise InputError(
            f"The 'pool_split' parameter of {OWNER} must be a split of pool {r.pool!r} ({list(stored_pool.splits)}). "
            f"Got {r.pool_split!r} instead."
        )
    goal_tasks = [get_task(ws, name) for name in r.targets]
    for goal in goal_tasks:
        if r.target_split not in goal.splits:
            raise InputError(
                f"The 'target_split' parameter of {OWNER} must be a split of target {goal.name!r} "
                f"({list(goal.splits)}). Got {r.target_split!r} instead."
            )
    leaked = drop_leaked(stored_pool, goal_tasks, split=r.pool_split)[1].dropped_ids if r.leakage_guard else ()
    pool_task = drop_examples(stored_pool, leaked)
    n_pool = pool_task.counts().get(r.pool_split, 0)
    if n_pool == 0:
        raise InputError(
            f"The pool {r.pool!r} has no {r.pool_split!r} examples left to select from (leaked: {len(leaked)})."
        )
    count = None if r.budget is None else resolve_budget(OWNER, r.budget, n_pool)
    encoder = r.encoder.load()  # its content fingerprint is part of every subset id
    to_embed: list[SplitSize] = []
    if r.method == "gio":
        for task in [pool_task.name, *r.targets]:
            split = r.pool_split if task == r.pool else r.target_split
            stored = stored_pool if task == r.pool else goal_tasks[r.targets.index(task)]
            key = embedding_key(encoder, task, split, stored.split_hash(split))
            if ws.read("find_embedding", {"cache_key": key.cache_key}).empty:
                to_embed.append(SplitSize(task, split, stored.counts()[split]))
    n_target = min(r.max_target_examples, sum(g.counts()[r.target_split] for g in goal_tasks))
    if r.method in GRADIENT_METHODS:  # parameters and label spaces must line up before anything is computed
        if method_settings(r.method, r.method_params).get("stratify") and pool_task.kind != "classification":
            raise InputError(f"The 'stratify' ICONS parameter needs a classification pool; {r.pool!r} is not.")
        target_rows(pool_task, goal_tasks, r.target_split, r.label_map, max_rows=1, seed=r.seed)
    use_quantized = r.method == "gio" and (n_pool > QUANTIZE_ABOVE if r.quantize is None else r.quantize)
    params = {
        "pool_split": r.pool_split,
        "target_split": r.target_split,
        "max_target_examples": r.max_target_examples,
        "encoder": encoder.cache_params(),
        "quantize": use_quantized,
        "n_clusters": r.n_clusters if use_quantized else None,
        "method_params": r.method_params if r.method != "random" else None,
        "features_version": FEATURES_VERSION if r.method == "icons" else None,
        "label_map": r.label_map if r.method in GRADIENT_METHODS else None,
        "leakage_guard": r.leakage_guard,
        "seed": r.seed,
    }
    subset_id = config_hash(
        {
            "pool": r.pool,
            "pool_hash": pool_task.split_hash(r.pool_split),
            "targets": {g.name: g.split_hash(r.target_split) for g in goal_tasks},
            "method": r.method,
            "budget": r.budget,
            "budget_kind": budget_kind(r.budget),
            "params": params,
        }
    )
    rate = fine_tune_rate(ws)
    return SelectionPlan(
        request=r,
        catalog=catalog_digest(ws),
        subset_id=subset_id,
        stored=find_selection(ws, subset_id) is not None,
        n_pool=n_pool,
        leaked_ids=leaked,
        n_budget=count,
        n_target=n_target,
        quantize=use_quantized,
        to_embed=tuple(to_embed),
        estimated_s=round(_estimate_s(r, n_pool, count, n_target, use_quantized, to_embed, rate), 1),
        rate=rate.basis,
        params=params,
    )


def _estimate_s(
    r: SelectionRequest,
    n_pool: int,
    count: int | None,
    n_target: int,
    quantized: bool,
    to_embed: list[SplitSize],
    rate: Rate,
) -> float:
    """Rough seconds for a selection: embedding, GIO's picks (k-means first when quantised), the fine-tunes and
    gradient passes of VoG and ICONS (at the workspace's measured fine-tuning ``rate``)."""
    estimate = sum(e.n for e in to_embed) / EMBED_TEXTS_PER_S
    if r.method == "gio":
        picks = count if count is not None else 101  # GIO's own stopping: at most max_iter + 1 picks by default
        rows = n_target
        if quantized:  # GIO on centroids picks clusters; k-means costs about 20 passes over the pool
            picks, rows = min(r.n_clusters, -(-picks * r.n_clusters // n_pool)), min(n_target, r.n_clusters)
            estimate += 20 * 2 * n_pool * r.n_clusters * 384 / KMEANS_FLOPS_PER_S
        estimate += picks * r.method_params.get("steps", 50) * rows * GIO_SECONDS_PER_STEP_PER_TARGET_ROW
    if r.method == "vog":  # the fine-tune, then K forward and backward passes over the pool
        n_checkpoints = r.method_params.get("n_checkpoints", VOG_DEFAULTS["n_checkpoints"])
        estimate += rate.seconds(min(n_pool, 500)) + n_checkpoints * n_pool / GRADIENT_FEATURES_PER_S
    if r.method == "icons":
        fraction = r.method_params.get("warmup_fraction", ICONS_DEFAULTS["warmup_fraction"])
        estimate += rate.seconds(fraction * n_pool * WARMUP_RECIPE.epochs)
        estimate += (n_pool + n_target * len(r.targets)) / GRADIENT_FEATURES_PER_S
    return estimate


@flow(name="select_training_subset", task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def select_training_subset(plan: SelectionPlan | SelectionRequest) -> dict[str, Any]:
    """Run a selection plan (a `SelectionRequest` is planned here, once, by `plan_selection`): select a training
    subset of the pool for the targets and store it; returns a summary with the ``subset_id`` (read it with
    ``Results.subset``). A subset already stored under the plan's id is returned as it is."""
    logger = get_run_logger()
    if isinstance(plan, SelectionRequest):
        plan = plan_selection(plan)
    r = plan.request
    logger.info(
        "select %s from %s (%d rows, %d dropped as leaked) for %s at budget %s: embed %s; about %.0f s",
        r.method,
        r.pool,
        plan.n_pool,
        len(plan.leaked_ids),
        list(r.targets),
        r.budget,
        [f"{e.task}/{e.split} ({e.n})" for e in plan.to_embed] or "nothing",
        plan.estimated_s,
    )
    summary = {
        "subset_id": plan.subset_id,
        "pool": r.pool,
        "targets": list(r.targets),
        "method": r.method,
        "budget": r.budget,
        "n_pool": plan.n_pool,
        "leaked_dropped": len(plan.leaked_ids),
    }
    ws = Workspace(r.workspace)
    check_plan_current(ws, plan.catalog, OWNER)
    stored = find_selection(ws, plan.subset_id)
    if stored is not None:
        return {**summary, "n_selected": int(stored.n_selected), "run_id": stored.run_id, "cached": True}
    started = time.perf_counter()
    with recorded_run(
        ws, OWNER, {"pool": r.pool, "targets": list(r.targets), "method": r.method, **plan.params}
    ) as run:
        run_id = run.run_id
        ids, scores, score_config = _run_selection(ws, plan, run_id)
        put_selection(
            ws,
            subset_id=plan.subset_id,
            pool=get_task(ws, r.pool),
            pool_split=r.pool_split,
            targets=list(r.targets),
            method=r.method,
            budget=r.budget,
            n_pool=plan.n_pool,
            example_ids=ids,
            params={**plan.params, "score_config": score_config},
            run_id=run_id,
            scores=scores,
        )
    seconds = time.perf_counter() - started
    logger.info("stored subset %s: %d of %d examples in %.1f s", plan.subset_id, len(ids), plan.n_pool, seconds)
    return {**summary, "n_selected": len(ids), "run_id": run_id, "cached": False, "seconds": seconds}


def _run_selection(
    ws: Workspace, plan: SelectionPlan, run_id: str
) -> tuple[list[str], pd.DataFrame | None, str | None]:
    """Run the planned method; returns (example ids in selection order, per-example scores or None, the config
    hash the scores are stored under: the subset's own id, or VoG's pool-only scoring config)."""
    r = plan.request
    whole = get_task(ws, r.pool)
    pool_task = drop_examples(whole, plan.leaked_ids)
    if r.method == "gio":
        ids, scores = _gio_order(ws, plan, pool_task, run_id)
        return ids, scores, plan.subset_id
    budget = r.budget
    assert budget is not None  # every method but GIO needs one (SelectionRequest)
    if r.method == "random":
        pool_ids = pool_task.split(r.pool_split).column("example_id").to_pylist()
        return [pool_ids[i] for i in random_select(len(pool_ids), budget, seed=r.seed)], None, None
    pool_rows = labelled_rows(whole, whole, r.pool_split, None, max_rows=None, seed=0)
    leaked = set(plan.leaked_ids)
    allowed = np.array([eid not in leaked for eid in pool_rows.example_ids])
    if r.method == "vog":
        return vog_order(
            ws, whole, pool_rows, allowed, budget, r.method_params, model=r.model, seed=r.seed, device=r.device
        )
    goal_tasks = [get_task(ws, t) for t in r.targets]
    targets = target_rows(whole, goal_tasks, r.target_split, r.label_map, max_rows=r.max_target_examples, seed=r.seed)
    ids, scores = icons_order(
        ws,
        whole,
        pool_rows,
        allowed,
        targets,
        budget,
        r.method_params,
        model=r.model,
        seed=r.seed,
        device=r.device,
        run_id=run_id,
    )
    return ids, scores, plan.subset_id


def _gio_order(ws: Workspace, plan: SelectionPlan, pool_task: Task, run_id: str) -> tuple[list[str], pd.DataFrame]:
    """Embed pool and targets (through the cache), check one encoder made both, run GIO (quantised for big pools)."""
    r = plan.request
    config = asdict(r.encoder)
    splits = [(r.pool, r.pool_split)] + [(t, r.target_split) for t in r.targets]
    futures = [embed_split.submit(str(ws.root), name, split, config, run_id) for name, split in splits]
    gather(ws, futures, "embed splits", "split")
    encoder = r.encoder.load()
    keys, loaded = [], []
    for name, split in splits:
        key = embedding_key(encoder, name, split, get_task(ws, name).split_hash(split))
        found = find_embeddings(ws, key)
        if found is None:
            raise CorruptArtifactError(
                f"Embeddings of {name}/{split} vanished from the cache during the run; run it again."
            )
        keys.append(key)
        loaded.append(found)
    check_same_space(keys[0], keys[1:])
    keep = set(pool_task.split(r.pool_split).column("example_id").to_pylist())
    all_ids, all_vectors = loaded[0]
    rows = np.flatnonzero([eid in keep for eid in all_ids])
    pool_ids = [all_ids[i] for i in rows]
    pool_vectors = all_vectors[rows]
    target_vectors = np.concatenate([vectors for _, vectors in loaded[1:]])
    target_vectors = target_vectors[sample_indices(len(target_vectors), r.max_target_examples, r.seed)]
    method_params = dict(r.method_params)
    if plan.quantize:
        result = gio.gio_quantized(
            target_vectors,
            pool_vectors,
            n_pool_clusters=min(r.n_clusters, len(pool_ids)),
            n_target_clusters=min(r.n_clusters, len(target_vectors)),
            budget=r.budget,
            seed=r.seed,
            **method_params,
        )
        order = result.selected
        kl = np.full(len(order), np.nan)
    else:
        if r.budget is not None:
            method_params.update(stop="budget", budget=r.budget)
        total = plan.n_budget if plan.n_budget is not None else method_params.get("max_iter", 100)
        with progress("GIO picks", total, "pick") as advance:
            plain = gio.gio_select(target_vectors, pool_vectors, seed=r.seed, progress=advance, **method_params)
        order, kl = plain.selected, plain.kl_trajectory
    first = pd.Series(range(len(order)), index=order).groupby(level=0).min().sort_values()  # drop repeats (resets)
    ids = [pool_ids[i] for i in first.index]
    scores = pd.DataFrame({"example_id": ids, "score": kl[first.to_numpy()]})
    return ids, scores.dropna()
