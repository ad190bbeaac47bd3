"""Flows ``rank_sources`` and ``build_esms``: rank source tasks for a target, building what is missing once.

ESM-LogME, per source (one Prefect task each, cached by content): fine-tune the base encoder on the source's
training data (seeded sample, leakage guard against every other stored task's evaluation splits) → checkpoint;
embed that sample with the base and the fine-tuned encoder → fit the source's ESM. Then, for the target: base
embeddings of at most ``max_target_examples`` training examples (seeded), ESM-LogME of every source from the
target's Gram statistics. Divergence measures run on the cached base embeddings of the training splits. Each
method's ranking is stored as one batch in ``pair_scores`` with the run id and config hash; an optional cheap
pre-filter narrows the sources first, and an optional fusion stores the combined ranking as its own method.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.checkpoint_scores import CHECKPOINT_METHODS, checkpoint_scores
from flows.checkpoints import ensure_checkpoint, source_data, sources_data
from flows.embed import EncoderSettings, ensure_embeddings
from flows.maxsim import maxsim_scores
from flows.runners import commit, gather
from store.catalog import get_task, list_tasks
from store.esms import esm_cache_key, find_esm, find_esms, put_esm
from store.rankings import put_ranking
from store.rates import fine_tune_rate
from store.runs import canonical_json, recorded_run
from store.tasks import Task
from store.worker import Deferred, WorkerWorkspace
from store.workspace import Workspace
from transfer.divergence import MEASURES, score_pair, target_context
from transfer.embeddings import TextEncoder
from transfer.encoder import DEFAULT_MODEL
from transfer.esm import EmbeddingSpaceMap
from transfer.esm_logme import esm_logme_scores
from transfer.finetune import SMALL_BUDGET, SOURCE_RECIPE, Recipe, sample_indices
from transfer.fusion import FUSIONS, fuse_rankings

BUDGETS = {"small": SMALL_BUDGET, "paper": SOURCE_RECIPE}
METHODS = ("esm-logme", *MEASURES, *CHECKPOINT_METHODS, "maxsim")
MAXSIM_SAMPLE = {"max_target_texts": 300, "max_source_texts": 500, "source_tokens": 4000}  # MaxSim's token samples


def recipe_for_budget(budget: str | dict) -> Recipe:
    """The fine-tuning `Recipe` of a source budget: a named one (``"small"``, ``"paper"``) or a dict of `Recipe`
    fields. (A subset's size is `selection.budget.resolve_budget`, a different thing.)"""
    if isinstance(budget, dict):
        return Recipe(**budget)
    if budget not in BUDGETS:
        raise ValueError(
            f"The 'budget' parameter must be one of {list(BUDGETS)} or a dict of Recipe fields. Got {budget!r} instead."
        )
    return BUDGETS[budget]


def plan_rank(ws: Workspace, target: str, sources: list[str], recipe: Recipe, base: TextEncoder) -> pd.DataFrame:
    """What `rank_sources` would compute: per source, whether an ESM exists and the fine-tuning work otherwise,
    costed at this machine's measured fine-tuning rate (`store.rates.fine_tune_rate`; ``attrs["rate"]``)."""
    rate = fine_tune_rate(ws)
    stored = set(ws.read("all_esms").cache_key)
    params = EmbeddingSpaceMap().params()
    rows = []
    for name, data in sources_data(ws, sources, recipe, seed=0).items():
        cached = esm_cache_key(base.fingerprint, name, data.data_hash, params) in stored
        work = 0 if cached else recipe.examples(len(data.texts))
        rows.append(
            {
                "source": name,
                "esm_cached": cached,
                "examples": len(data.texts),
                "epochs": recipe.epochs,
                "leaked_dropped": data.n_dropped,
                "estimated_s": round(rate.seconds(work) + (0 if cached else len(data.texts) / 100)),
            }
        )
    plan = pd.DataFrame(rows)
    plan.attrs["rate"] = rate
    return plan


@task(retries=1, cache_policy=NO_CACHE, task_run_name="esm-{source}")
def build_source_esm(
    workspace: str, source: str, model: str, recipe_json: str, seed: int, device: str, run_id: str
) -> Deferred[str]:
    """Fine-tune (or reuse the checkpoint), embed the tuned-on texts both ways, fit and store the ESM; the flow
    commits the catalog rows (`flows.runners.gather`)."""
    logger = get_run_logger()
    ws = WorkerWorkspace(workspace)
    recipe = Recipe(**json.loads(recipe_json))
    base = EncoderSettings.of_recipe(recipe, model, device).load()
    data = source_data(ws, source, recipe, seed)
    key = esm_cache_key(base.fingerprint, source, data.data_hash, EmbeddingSpaceMap().params())
    if find_esm(ws, key) is not None:
        logger.info("%s: ESM cached", source)
        return ws.deferred(key)
    directory = ensure_checkpoint(
        ws, data, recipe, model=model, base_fp=base.fingerprint, seed=seed, device=device, run_id=run_id
    )
    tuned_encoder = TextEncoder(
        directory, pooling=recipe.pooling, max_length=recipe.max_length, normalize=False, device=device
    )
    x, y = base.encode(data.texts, data.pairs), tuned_encoder.encode(data.texts, data.pairs)
    held = max(1, len(x) // 10)
    esm = EmbeddingSpaceMap().fit(x[held:], y[held:])
    heldout, identity = esm.mse(x[:held], y[:held]), float(np.mean((x[:held] - y[:held]) ** 2))
    key = put_esm(
        ws,
        esm,
        base_model=model,
        base_fp=base.fingerprint,
        source=source,
        data_hash=data.data_hash,
        heldout_mse=heldout,
        identity_mse=identity,
        run_id=run_id,
    )
    logger.info("%s: ESM fitted (held-out MSE %.2e vs identity %.2e)", source, heldout, identity)
    return ws.deferred(key)


def esm_logme_ranking(
    ws: Workspace,
    goal: Task,
    names: list[str],
    recipe: Recipe,
    *,
    model: str,
    seed: int,
    device: str,
    max_target_examples: int,
    build_missing: bool,
    run_id: str,
) -> dict[str, float]:
    """ESM-LogME scores {source: score}: ESMs built (or found) per source, then the target scored once."""
    base = EncoderSettings.of_recipe(recipe, model, device).load()
    params = EmbeddingSpaceMap().params()
    rows_of = sources_data(ws, names, recipe, seed)
    keys = {s: esm_cache_key(base.fingerprint, s, rows_of[s].data_hash, params) for s in names}
    stored = set(ws.read("all_esms").cache_key)  # one catalog read; a task per source only for what is missing
    to_build = [s for s in names if keys[s] not in stored] if build_missing else []
    if to_build:
        recipe_json = canonical_json(recipe.as_dict())
        futures = [build_source_esm.submit(str(ws.root), s, model, recipe_json, seed, device, run_id) for s in to_build]
        keys.update(zip(to_build, gather(ws, futures, "source ESMs", "source"), strict=True))
    esms = find_esms(ws, keys)
    missing = [s for s, e in esms.items() if e is None]
    if missing:
        raise LookupError(
            f"No ESM stored for sources {missing} (base model {model!r}, this budget); build them "
            f"with `transferscope esm build {' '.join(missing)}` or rank with build_missing=True."
        )
    ids, vectors, _ = ensure_embeddings(ws, goal, "train", base, run_id=run_id)
    rows = sample_indices(len(ids), max_target_examples, seed)
    labels = goal.split("train").column("label").to_numpy()[rows]
    return esm_logme_scores(
        vectors[rows].astype(np.float64),
        labels,
        esms,  # type: ignore[arg-type]
        regression=goal.kind == "regression",
    )


@task(cache_policy=NO_CACHE, task_run_name="divergences-{target}")
def divergence_scores(
    workspace: str,
    target: str,
    sources: list[str],
    measures: list[str],
    *,
    model: str,
    device: str,
    max_examples: int,
    seed: int,
    run_id: str,
) -> Deferred[dict[str, dict[str, float]]]:
    """{measure: {source: score}} on base embeddings (the `embed_tasks` defaults, so its cache is reused) of the
    training splits, sub-sampled to ``max_examples`` (seeded). Embeddings it has to compute are committed by the
    flow (`flows.runners.commit`)."""
    ws = WorkerWorkspace(workspace)
    encoder = EncoderSettings(model=model, device=device).load()
    goal = get_task(ws, target)
    labelled = [m for m in measures if MEASURES[m].needs_labels]

    def train(task: Task) -> tuple[np.ndarray, np.ndarray]:
        if labelled and task.kind != "classification":
            raise ValueError(f"The measures {labelled} need class labels, but task {task.name!r} is a regression task.")
        _, vectors, _ = ensure_embeddings(ws, task, "train", encoder, run_id=run_id)
        return vectors, task.split("train").column("label").to_numpy()

    target_x, target_y = train(goal)
    context = target_context(target_x, target_y, max_examples=max_examples, seed=seed)
    scores: dict[str, dict[str, float]] = {m: {} for m in measures}
    for name in sources:
        source_x, source_y = train(get_task(ws, name))
        for measure in measures:
            scores[measure][name] = score_pair(measure, source_x, context, source_y=source_y)
    return ws.deferred(scores)


def parse_prefilter(prefilter: str) -> tuple[str, int]:
    """``"centroid-cosine:10"`` → ("centroid-cosine", 10)."""
    name, _, count = prefilter.partition(":")
    if name not in MEASURES or not count.isdigit() or int(count) < 1:
        raise ValueError(
            f"The 'prefilter' parameter must be MEASURE:M with a measure among {list(MEASURES)} and M >= 1. "
            f"Got {prefilter!r} instead."
        )
    return name, int(count)


@flow(name="rank_sources", task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def rank_sources(
    target: str,
    sources: list[str] | None = None,
    methods: tuple[str, ...] = ("esm-logme",),
    budget: str | dict = "small",
    model: str = DEFAULT_MODEL,
    max_target_examples: int = 1000,
    max_divergence_examples: int = 2000,
    prefilter: str | None = None,
    fuse: str | None = None,
    fuse_weights: dict[str, float] | None = None,
    seed: int = 0,
    device: str = "auto",
    build_missing: bool = True,
    workspace: str | None = None,
) -> pd.DataFrame:
    """Rank ``sources`` (default: every other stored task) for ``target`` with each of ``methods``: ``esm-logme``,
    the divergence measures of `transfer.divergence.MEASURES`, ``direct-logme`` and ``leep`` (from each source's
    fine-tuned checkpoint, `flows.checkpoint_scores`) and ``maxsim`` (token-level similarity, `flows.maxsim`); every
    method's ranking is stored, rank 1 = best in that method's direction. Returns all rankings (one row per method
    and source).

    ``budget``: ``"small"`` (500 examples, 1 epoch, max_length 64: CPU demos), ``"paper"`` (≤ 10,000 examples,
    3 epochs, batch 32, lr 2e-5) or a dict of `Recipe` fields, for the source checkpoints (ESMs, direct LogME,
    LEEP). ``prefilter="centroid-cosine:10"`` keeps the 10 best sources by a
    cheap measure before the other methods run. ``fuse="rrf"`` (or ``"borda"``) also stores the fused ranking of
    ``methods`` as method ``fused-rrf``, with ``fuse_weights``; the fused inputs are part of the run's config. With
    ``build_missing=False`` a source without a stored ESM is an error."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"The 'methods' parameter of rank_sources must be among {list(METHODS)}. Got {list(methods)}.")
    if fuse is not None and fuse not in FUSIONS:
        raise ValueError(f"The 'fuse' parameter of rank_sources must be one of {list(FUSIONS)}. Got {fuse!r} instead.")
    ws = Workspace(workspace)
    recipe = recipe_for_budget(budget)
    goal = get_task(ws, target)
    names = sources or [n for n in list_tasks(ws)["name"] if n != target]
    if target in names:
        raise ValueError(f"The target {target!r} is also among the sources; a task cannot be its own source.")
    if not names:
        raise ValueError(f"No source tasks to rank for {target!r}: add tasks with `transferscope tasks add`.")
    params = {
        "target": target,
        "sources": sorted(names),
        "methods": list(methods),
        "recipe": recipe.as_dict(),
        "model": model,
        "max_target_examples": max_target_examples,
        "max_divergence_examples": max_divergence_examples,
        "prefilter": prefilter,
        "fuse": fuse and {"method": fuse, "inputs": list(methods), "weights": fuse_weights},
        "seed": seed,
    }
    with recorded_run(ws, "rank_sources", params, device=device) as run:
        run_id, config = run.run_id, run.config
        divergence_options: dict[str, Any] = {
            "model": model,
            "device": device,
            "max_examples": max_divergence_examples,
            "seed": seed,
            "run_id": run_id,
        }
        stored: dict[str, pd.DataFrame] = {}
        failures: dict[str, BaseException] = {}

        def attempt(step: list[str], compute: Callable[[], dict[str, dict[str, float]]]) -> None:
            """Run one step (methods computed together) and store each of its rankings at once; a step that fails
            is recorded and the others still run and are stored."""
            try:
                scores = compute()
            except Exception as err:
                failures.update(dict.fromkeys(step, err))
                get_run_logger().warning("rank_sources %s: %s failed: %s: %s", target, step, type(err).__name__, err)
                return
            for method, by_source in scores.items():
                stored[method] = put_ranking(
                    ws, run_id, config, target, method, by_source, higher_is_better=higher_is_better(method)
                )

        if prefilter:
            measure, keep = parse_prefilter(prefilter)
            future = divergence_scores.submit(str(ws.root), target, names, [measure], **divergence_options)
            first = commit(ws, future.result())
            direction = MEASURES[measure].higher_is_better
            stored[measure] = put_ranking(
                ws, run_id, config, target, measure, first[measure], higher_is_better=direction
            )
            names = stored[measure].source[:keep].tolist()  # best first
        for measure in [m for m in methods if m in MEASURES and m not in stored]:

            def divergence(m: str = measure) -> dict[str, dict[str, float]]:
                future = divergence_scores.submit(str(ws.root), target, names, [m], **divergence_options)
                return commit(ws, future.result())

            attempt([measure], divergence)
        by_checkpoint = [m for m in methods if m in CHECKPOINT_METHODS]
        if by_checkpoint:
            attempt(
                by_checkpoint,
                lambda: commit(
                    ws,
                    checkpoint_scores.submit(
                        str(ws.root),
                        target,
                        names,
                        by_checkpoint,
                        model=model,
                        recipe_json=canonical_json(recipe.as_dict()),
                        seed=seed,
                        device=device,
                        max_target_examples=max_target_examples,
                        run_id=run_id,
                    ).result(),
                ),
            )
        if "maxsim" in methods:
            attempt(
                ["maxsim"],
                lambda: {
                    "maxsim": commit(
                        ws,
                        maxsim_scores.submit(
                            str(ws.root),
                            target,
                            names,
                            model=model,
                            device=device,
                            **MAXSIM_SAMPLE,
                            seed=seed,
                            run_id=run_id,
                        ).result(),
                    )
                },
            )
        if "esm-logme" in methods:
            attempt(
                ["esm-logme"],
                lambda: {
                    "esm-logme": esm_logme_ranking(
                        ws,
                        goal,
                        names,
                        recipe,
                        model=model,
                        seed=seed,
                        device=device,
                        max_target_examples=max_target_examples,
                        build_missing=build_missing,
                        run_id=run_id,
                    )
                },
            )
        if failures and not any(m in stored for m in methods):
            raise next(iter(failures.values()))
        if fuse:
            ranks = fusion_inputs({m: r for m, r in stored.items() if m in methods}, names)
            fused = fuse_rankings(ranks, method=fuse, weights=fuse_weights)  # type: ignore[arg-type]
            stored[f"fused-{fuse}"] = put_ranking(
                ws, run_id, config, target, f"fused-{fuse}", fused, higher_is_better=True
            )
        if failures:  # the methods that ran are stored; the run says which did not
            run.status = "partial"
            run.error = "; ".join(f"{m}: {type(e).__name__}: {e}" for m, e in failures.items())
    rankings = pd.concat(list(stored.values()), ignore_index=True)
    rankings.attrs["failures"] = {m: f"{type(e).__name__}: {e}" for m, e in failures.items()}
    return rankings


def fusion_inputs(rankings: dict[str, pd.DataFrame], names: list[str]) -> dict[str, dict[str, float]]:
    """{method: {source: rank}} over ``names`` (the pre-filter's survivors) from stored rankings; a source a method
    could not score (NaN score, no rank) is left out of that method's ranks."""
    return {
        method: {s: float(k) for s, k in zip(r.source, r["rank"], strict=True) if s in names and pd.notna(k)}
        for method, r in rankings.items()
    }


def higher_is_better(method: str) -> bool:
    """Every method but some divergences scores a better source higher (ESM-LogME, direct LogME and LEEP are log
    evidences or likelihoods, MaxSim a similarity)."""
    return MEASURES[method].higher_is_better if method in MEASURES else True


@flow(name="build_esms", task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def build_esms(
    sources: list[str],
    budget: str | dict = "small",
    model: str = DEFAULT_MODEL,
    seed: int = 0,
    device: str = "auto",
    workspace: str | None = None,
) -> dict[str, str]:
    """Build (or find) the ESM of every source; returns {source: ESM cache key}."""
    ws = Workspace(workspace)
    recipe = recipe_for_budget(budget)
    params = {"sources": sorted(sources), "recipe": recipe.as_dict(), "model": model, "seed": seed}
    with recorded_run(ws, "build_esms", params, device=device) as run:
        args = (model, canonical_json(recipe.as_dict()), seed, device, run.run_id)
        futures = [build_source_esm.submit(str(ws.root), s, *args) for s in sources]
        keys = dict(zip(sources, gather(ws, futures, "source ESMs", "source"), strict=True))
    return keys
