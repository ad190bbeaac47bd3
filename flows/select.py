"""Flow ``select_training_subset``: choose the part of a candidate pool that best serves some target tasks.

Steps: drop pool rows that occur in a target's evaluation splits (leakage guard), embed the pool and the targets
(one Prefect task per split, through the content-keyed embedding cache), check both come from one encoder, run the
method (`selection.gio` and its quantised mode for big pools, ICONS (`flows.icons`) and VoG (`flows.vog`), or
`selection.random_baseline`), and store the
subset, in selection order, with its per-example scores in one transaction. The subset id hashes everything that
determines the subset, so asking again returns the stored one. `Results.select_subset` reads it back;
`store.selections.export_selection` writes it as a task file.
"""

from __future__ import annotations

import time
from dataclasses import asdict
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
from selection.icons import ICONS_DEFAULTS, WARMUP_RECIPE
from selection.random_baseline import random_select
from selection.vog import VOG_DEFAULTS
from store.catalog import get_task
from store.embeddings import find_embeddings
from store.leakage import drop_leaked
from store.rates import fine_tune_rate
from store.runs import config_hash, recorded_run
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


def _target_names(targets: str | list[str]) -> list[str]:
    names = [targets] if isinstance(targets, str) else list(targets)
    if not names or not all(isinstance(t, str) and t for t in names):
        raise ValueError(f"The 'targets' parameter of {OWNER} must name at least one stored task. Got {targets!r}.")
    return names


def _pool_rows(ws: Workspace, pool: str, pool_split: str, targets: list[Task], leakage_guard: bool) -> tuple[Task, int]:
    """The pool task and how many of its rows the leakage guard dropped (the task keeps only the rest)."""
    stored = get_task(ws, pool)
    if pool_split not in stored.splits:
        raise ValueError(
            f"The 'pool_split' parameter of {OWNER} must be a split of pool {pool!r} ({list(stored.splits)}). "
            f"Got {pool_split!r} instead."
        )
    if not leakage_guard:
        return stored, 0
    cleaned, report = drop_leaked(stored, targets, split=pool_split)
    return cleaned, report.n_dropped


def plan_selection(
    pool: str,
    targets: str | list[str],
    method: str = "gio",
    budget: int | float | None = 0.2,
    *,
    pool_split: str = "train",
    target_split: str = "train",
    max_target_examples: int = 2000,
    model: str = DEFAULT_MODEL,
    precision: str = "exact",
    device: str = "auto",
    quantize: bool | None = None,
    n_clusters: int = 1500,
    method_params: dict[str, Any] | None = None,
    label_map: dict[str, str] | None = None,
    leakage_guard: bool = True,
    seed: int = 0,
    workspace: str | None = None,
) -> dict[str, Any]:
    """Validate a selection request and say what it would compute, without computing it: the subset id, whether
    it is stored, the pool size after the leakage guard, the budget as a count, the embeddings to compute and a
    rough time estimate. `select_training_subset` runs exactly this plan."""
    if method not in METHODS:
        raise ValueError(f"The 'method' parameter of {OWNER} must be one of {list(METHODS)}. Got {method!r} instead.")
    kind = budget_kind(budget)
    if kind == "method" and method != "gio":
        raise ValueError(f"The 'budget' parameter of {OWNER} is required for method {method!r}. Got None.")
    ws = Workspace(workspace)
    names = _target_names(targets)
    if pool in names:
        raise ValueError(f"The pool {pool!r} is also among the targets {names}; select from a different task.")
    goal_tasks = [get_task(ws, name) for name in names]
    for goal in goal_tasks:
        if target_split not in goal.splits:
            raise ValueError(
                f"The 'target_split' parameter of {OWNER} must be a split of target {goal.name!r} "
                f"({list(goal.splits)}). Got {target_split!r} instead."
            )
    pool_task, n_leaked = _pool_rows(ws, pool, pool_split, goal_tasks, leakage_guard)
    n_pool = pool_task.counts().get(pool_split, 0)
    if n_pool == 0:
        raise ValueError(f"The pool {pool!r} has no {pool_split!r} examples left to select from (leaked: {n_leaked}).")
    count = None if budget is None else resolve_budget(OWNER, budget, n_pool)
    settings = EncoderSettings(model=model, device=device, precision=precision)
    encoder_config = asdict(settings)
    encoder = settings.load()
    splits = [(pool, pool_split)] + [(t, target_split) for t in names] if method == "gio" else []
    to_embed: list[dict[str, Any]] = []
    for name, split in splits:
        stored = get_task(ws, name)
        key = embedding_key(encoder, name, split, stored.split_hash(split))
        if ws.read("find_embedding", {"cache_key": key.cache_key}).empty:
            to_embed.append({"task": name, "split": split, "n": stored.counts()[split]})
    n_target = min(max_target_examples, sum(g.counts()[target_split] for g in goal_tasks))
    if method in GRADIENT_METHODS:  # parameters and label spaces must line up before anything is computed
        if method_settings(method, method_params).get("stratify") and pool_task.kind != "classification":
            raise ValueError(f"The 'stratify' ICONS parameter needs a classification pool; {pool!r} is not.")
        target_rows(pool_task, goal_tasks, target_split, label_map, max_rows=1, seed=seed)
    use_quantized = method == "gio" and (n_pool > QUANTIZE_ABOVE if quantize is None else quantize)
    params = {
        "pool_split": pool_split,
        "target_split": target_split,
        "max_target_examples": max_target_examples,
        "encoder": encoder.cache_params(),
        "quantize": use_quantized,
        "n_clusters": n_clusters if use_quantized else None,
        "method_params": (method_params or {}) if method != "random" else None,
        "label_map": label_map if method in GRADIENT_METHODS else None,
        "leakage_guard": leakage_guard,
        "seed": seed,
    }
    subset_id = config_hash(
        {
            "pool": pool,
            "pool_hash": pool_task.split_hash(pool_split),
            "targets": {g.name: g.split_hash(target_split) for g in goal_tasks},
            "method": method,
            "budget": budget,
            "budget_kind": kind,
            "params": params,
        }
    )
    rate = fine_tune_rate(ws)
    estimate = sum(e["n"] for e in to_embed) / EMBED_TEXTS_PER_S
    if method == "gio":
        picks = count if count is not None else 101  # GIO's own stopping: at most max_iter + 1 picks by default
        rows = n_target
        if use_quantized:  # GIO on centroids picks clusters; k-means costs about 20 passes over the pool
            picks, rows = min(n_clusters, -(-picks * n_clusters // n_pool)), min(n_target, n_clusters)
            estimate += 20 * 2 * n_pool * n_clusters * 384 / KMEANS_FLOPS_PER_S
        estimate += picks * (method_params or {}).get("steps", 50) * rows * GIO_SECONDS_PER_STEP_PER_TARGET_ROW
    if method == "vog":  # the fine-tune, then K forward and backward passes over the pool
        n_checkpoints = (method_params or {}).get("n_checkpoints", VOG_DEFAULTS["n_checkpoints"])
        estimate += rate.seconds(min(n_pool, 500)) + n_checkpoints * n_pool / GRADIENT_FEATURES_PER_S
    if method == "icons":
        fraction = (method_params or {}).get("warmup_fraction", ICONS_DEFAULTS["warmup_fraction"])
        estimate += rate.seconds(fraction * n_pool * WARMUP_RECIPE.epochs)
        estimate += (n_pool + n_target * len(names)) / GRADIENT_FEATURES_PER_S
    return {
        "subset_id": subset_id,
        "stored": find_selection(ws, subset_id) is not None,
        "pool": pool,
        "targets": names,
        "method": method,
        "budget": budget,
        "budget_kind": kind,
        "n_pool": n_pool,
        "leaked_dropped": n_leaked,
        "n_budget": count,
        "n_target": n_target,
        "quantize": use_quantized,
        "to_embed": to_embed,
        "estimated_s": round(estimate, 1),
        "rate": rate.basis,
        "params": params,
        "encoder_config": encoder_config,
    }


@flow(name="select_training_subset", task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def select_training_subset(
    pool: str,
    targets: str | list[str],
    method: str = "gio",
    budget: int | float | None = 0.2,
    pool_split: str = "train",
    target_split: str = "train",
    max_target_examples: int = 2000,
    model: str = DEFAULT_MODEL,
    precision: str = "exact",
    device: str = "auto",
    quantize: bool | None = None,
    n_clusters: int = 1500,
    method_params: dict[str, Any] | None = None,
    label_map: dict[str, str] | None = None,
    leakage_guard: bool = True,
    seed: int = 0,
    dry_run: bool = False,
    workspace: str | None = None,
) -> dict[str, Any]:
    """Select a training subset of ``pool`` (its ``pool_split``) for ``targets`` (a sample of their
    ``target_split``, at most ``max_target_examples`` rows, seeded) and store it; returns a summary with the
    ``subset_id`` (read it with ``Results.select_subset``).

    ``method``: ``"gio"`` (Everaert & Potts 2023; its quantise-then-explode mode with ``n_clusters`` k-means
    clusters when ``quantize`` or, with ``quantize=None``, above 50,000 pool rows; ``method_params`` go to
    `selection.gio.gio_select`), ``"icons"`` (Wu et al.: consensus of per-target gradient influence on a warm-up
    checkpoint), ``"vog"`` (Agarwal et al.: variance of gradients across checkpoints; ``method_params`` strategy,
    n_checkpoints, ...) or ``"random"``. ``budget``: a float in (0, 1] is a fraction of the pool (``1.0``
    the whole pool), an int ≥ 1 a count (``1`` one example); ``None`` lets GIO stop by its own criterion. With
    ``dry_run`` only the plan is returned (see `plan_selection`)."""
    logger = get_run_logger()
    plan = plan_selection(
        pool,
        targets,
        method,
        budget,
        pool_split=pool_split,
        target_split=target_split,
        max_target_examples=max_target_examples,
        model=model,
        precision=precision,
        device=device,
        quantize=quantize,
        n_clusters=n_clusters,
        method_params=method_params,
        label_map=label_map,
        leakage_guard=leakage_guard,
        seed=seed,
        workspace=workspace,
    )
    logger.info(
        "select %s from %s (%d rows, %d dropped as leaked) for %s at budget %s: embed %s; about %.0f s%s",
        method,
        pool,
        plan["n_pool"],
        plan["leaked_dropped"],
        plan["targets"],
        budget,
        [f"{e['task']}/{e['split']} ({e['n']})" for e in plan["to_embed"]] or "nothing",
        plan["estimated_s"],
        " (already stored)" if plan["stored"] else "",
    )
    summary = {k: plan[k] for k in ("subset_id", "pool", "targets", "method", "budget", "n_pool", "leaked_dropped")}
    if dry_run:
        return {**plan, "dry_run": True}
    ws = Workspace(workspace)
    stored = find_selection(ws, plan["subset_id"]) if plan["stored"] else None
    if stored is not None:
        return {**summary, "n_selected": int(stored.n_selected), "run_id": stored.run_id, "cached": True}
    started = time.perf_counter()
    with recorded_run(ws, OWNER, {"pool": pool, "targets": plan["targets"], "method": method, **plan["params"]}) as run:
        run_id = run.run_id
        ids, scores, score_config = _run_selection(ws, plan, run_id)
        put_selection(
            ws,
            subset_id=plan["subset_id"],
            pool=get_task(ws, pool),
            pool_split=pool_split,
            targets=plan["targets"],
            method=method,
            budget=budget,
            n_pool=plan["n_pool"],
            example_ids=ids,
            params={**plan["params"], "score_config": score_config},
            run_id=run_id,
            scores=scores,
        )
    seconds = time.perf_counter() - started
    logger.info("stored subset %s: %d of %d examples in %.1f s", plan["subset_id"], len(ids), plan["n_pool"], seconds)
    return {**summary, "n_selected": len(ids), "run_id": run_id, "cached": False, "seconds": seconds}


def _run_selection(
    ws: Workspace, plan: dict[str, Any], run_id: str
) -> tuple[list[str], pd.DataFrame | None, str | None]:
    """Run the planned method; returns (example ids in selection order, per-example scores or None, the config
    hash the scores are stored under: the subset's own id, or VoG's pool-only scoring config)."""
    params = plan["params"]
    goal_tasks = [get_task(ws, t) for t in plan["targets"]]
    pool_task, _ = _pool_rows(ws, plan["pool"], params["pool_split"], goal_tasks, params["leakage_guard"])
    if plan["method"] == "random":
        pool_ids = pool_task.split(params["pool_split"]).column("example_id").to_pylist()
        return [pool_ids[i] for i in random_select(len(pool_ids), plan["budget"], seed=params["seed"])], None, None
    if plan["method"] in GRADIENT_METHODS:
        whole = get_task(ws, plan["pool"])
        pool_rows = labelled_rows(whole, whole, params["pool_split"], None, max_rows=None, seed=0)
        kept = set(pool_task.split(params["pool_split"]).column("example_id").to_pylist())
        targets = target_rows(
            whole,
            goal_tasks,
            params["target_split"],
            params["label_map"],
            max_rows=params["max_target_examples"],
            seed=params["seed"],
        )
        allowed = np.array([eid in kept for eid in pool_rows.example_ids])
        if plan["method"] == "vog":
            return vog_order(
                ws,
                whole,
                pool_rows,
                allowed,
                plan["budget"],
                params["method_params"],
                model=plan["encoder_config"]["model"],
                seed=params["seed"],
                device=plan["encoder_config"]["device"],
            )
        ids, scores = icons_order(
            ws,
            whole,
            pool_rows,
            allowed,
            targets,
            plan["budget"],
            params["method_params"],
            model=plan["encoder_config"]["model"],
            seed=params["seed"],
            device=plan["encoder_config"]["device"],
            run_id=run_id,
        )
        return ids, scores, plan["subset_id"]
    ids, scores = _gio_order(ws, plan, pool_task, run_id)
    return ids, scores, plan["subset_id"]


def _gio_order(ws: Workspace, plan: dict[str, Any], pool_task: Task, run_id: str) -> tuple[list[str], pd.DataFrame]:
    """Embed pool and targets (through the cache), check one encoder made both, run GIO (quantised for big pools)."""
    params = plan["params"]
    config = plan["encoder_config"]
    splits = [(plan["pool"], params["pool_split"])] + [(t, params["target_split"]) for t in plan["targets"]]
    futures = [embed_split.submit(str(ws.root), name, split, config, run_id) for name, split in splits]
    gather(ws, futures, "embed splits", "split")
    encoder = EncoderSettings(**config).load()
    keys, loaded = [], []
    for name, split in splits:
        key = embedding_key(encoder, name, split, get_task(ws, name).split_hash(split))
        found = find_embeddings(ws, key)
        if found is None:
            raise RuntimeError(f"Embeddings of {name}/{split} vanished from the cache during the run; run it again.")
        keys.append(key)
        loaded.append(found)
    check_same_space(keys[0], keys[1:])
    keep = set(pool_task.split(params["pool_split"]).column("example_id").to_pylist())
    all_ids, all_vectors = loaded[0]
    rows = np.flatnonzero([eid in keep for eid in all_ids])
    pool_ids = [all_ids[i] for i in rows]
    pool_vectors = all_vectors[rows]
    target_vectors = np.concatenate([vectors for _, vectors in loaded[1:]])
    target_vectors = target_vectors[sample_indices(len(target_vectors), params["max_target_examples"], params["seed"])]
    method_params = dict(params["method_params"])
    if params["quantize"]:
        result = gio.gio_quantized(
            target_vectors,
            pool_vectors,
            n_pool_clusters=min(params["n_clusters"], len(pool_ids)),
            n_target_clusters=min(params["n_clusters"], len(target_vectors)),
            budget=plan["budget"],
            seed=params["seed"],
            **method_params,
        )
        order = result.selected
        kl = np.full(len(order), np.nan)
    else:
        if plan["budget"] is not None:
            method_params.update(stop="budget", budget=plan["budget"])
        total = plan["n_budget"] if plan["n_budget"] is not None else method_params.get("max_iter", 100)
        with progress("GIO picks", total, "pick") as advance:
            plain = gio.gio_select(target_vectors, pool_vectors, seed=params["seed"], progress=advance, **method_params)
        order, kl = plain.selected, plain.kl_trajectory
    first = pd.Series(range(len(order)), index=order).groupby(level=0).min().sort_values()  # drop repeats (resets)
    ids = [pool_ids[i] for i in first.index]
    scores = pd.DataFrame({"example_id": ids, "score": kl[first.to_numpy()]})
    return ids, scores.dropna()
