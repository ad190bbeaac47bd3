"""Flows ``rank_sources`` and ``build_esms``: rank source tasks for a target, building what is missing once.

ESM-LogME, per source (one Prefect task each, cached by content): fine-tune the base encoder on the source's
training data (seeded sample, leakage guard against every other stored task's evaluation splits) → checkpoint;
embed that sample with the base and the fine-tuned encoder → fit the source's ESM. Then, for the target: base
embeddings of at most ``max_target_examples`` training examples (seeded), ESM-LogME of every source from the
target's Gram statistics. Divergence measures run on the cached base embeddings of the training splits. Each
method's ranking is stored as one batch in ``pair_scores`` with the run id and config hash; an optional cheap
pre-filter narrows the sources first, and an optional fusion stores the combined ranking as its own method.
A `RankRequest` is planned once (`plan_rank`: sources, recipe, and for the methods that read each source's
fine-tuned checkpoint, each source's fine-tune and ESM work, the leakage guard read once for all sources) into a
frozen `RankPlan`, and the flow runs that plan.
"""

from __future__ import annotations

import functools
import inspect
import json
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.checkpoint_scores import CHECKPOINT_METHODS, checkpoint_scores
from flows.checkpoints import checkpoint_key, ensure_checkpoint, source_data, sources_data
from flows.embed import EncoderSettings, ensure_embeddings
from flows.maxsim import maxsim_scores
from flows.runners import commit, gather
from store.catalog import catalog_digest, check_plan_current, get_task, list_tasks
from store.checkpoints import stored_checkpoints
from store.errors import InputError, MissingResultError
from store.esms import esm_cache_key, find_esm, find_esms, put_esm
from store.rankings import put_ranking
from store.rates import Rate, fine_tune_rate
from store.runs import canonical_json, recorded_run
from store.tasks import Task
from store.worker import Deferred, WorkerWorkspace
from store.workspace import Workspace
from transfer.advisor import BEST_RANKING_METHOD
from transfer.divergence import MEASURES, score_pair, target_context
from transfer.embeddings import TextEncoder
from transfer.encoder import DEFAULT_MODEL, model_fingerprint, resolve_model_path
from transfer.esm import EmbeddingSpaceMap
from transfer.esm_logme import esm_logme_scores
from transfer.finetune import MEDIUM_RECIPE, SMALL_BUDGET, SOURCE_RECIPE, Recipe, sample_indices
from transfer.fusion import FUSIONS, fuse_rankings

RECIPES = {"small": SMALL_BUDGET, "medium": MEDIUM_RECIPE, "paper": SOURCE_RECIPE}  # named source recipes
METHODS = ("esm-logme", *MEASURES, *CHECKPOINT_METHODS, "maxsim")
MAXSIM_SAMPLE = {"max_target_texts": 300, "max_source_texts": 500, "source_tokens": 4000}  # MaxSim's token samples
CHECKPOINT_READERS = ("esm-logme", *CHECKPOINT_METHODS)  # the methods that read each source's fine-tuned checkpoint
FORWARD_TEXTS_PER_S = 250  # MiniLM forward passes on 2 idle cores (MEASURED.md): what a plan costs encoding at
RequestType = TypeVar("RequestType", bound=type)


def recipe_for_name(
    recipe: str | dict[str, Any], named: Mapping[str, Recipe] = RECIPES, parameter: str = "recipe"
) -> Recipe:
    """The fine-tuning `Recipe` ``recipe`` names: one of ``named`` (default the source recipes, ``"small"`` and
    ``"paper"``) or a dict of `Recipe` fields; ``parameter`` is the name errors give it. (A subset's size, its
    budget, is `selection.budget.resolve_budget`, a different thing.)"""
    if isinstance(recipe, dict):
        known = [f.name for f in fields(Recipe)]
        unknown = sorted(set(recipe) - set(known))
        if unknown:
            raise InputError(
                f"The {parameter!r} parameter names fields {unknown} that Recipe does not have; its fields are "
                f"{known}. Got {recipe!r} instead."
            )
        return Recipe(**recipe)
    if recipe not in named:
        raise InputError(
            f"The {parameter!r} parameter must be one of {list(named)} or a dict of Recipe fields. "
            f"Got {recipe!r} instead."
        )
    return named[recipe]


def renamed(
    owner: str, renames: Mapping[str, str], kwargs: dict[str, Any], positional: Collection[str] = ()
) -> dict[str, Any]:
    """``kwargs`` of a call to ``owner`` with each deprecated keyword of ``renames`` (``{old: new}``, accepted for
    one release) given as its new name, with a `DeprecationWarning` pointing at the code that called ``owner``.
    Giving an old name and its new one (a keyword, or among the names given ``positional``ly) is an `InputError`."""
    kwargs = dict(kwargs)
    for old, new in renames.items():
        if old not in kwargs:
            continue
        if new in kwargs or new in positional:
            raise InputError(
                f"{owner} got both {old!r} and {new!r}; {old!r} is the deprecated name of {new!r}: give {new!r} only."
            )
        warnings.warn(f"The {old!r} parameter of {owner} is deprecated; use {new!r}.", DeprecationWarning, stacklevel=3)
        kwargs[new] = kwargs.pop(old)
    return kwargs


def renamed_keywords(**renames: str) -> Callable[[RequestType], RequestType]:
    """Class decorator of a request dataclass: its constructor also takes the deprecated keywords of ``renames``
    (``old="new"``, `renamed`). The dataclass's fields (its equality, hash and stored configs) keep the new names."""

    def decorate(cls: RequestType) -> RequestType:
        init = vars(cls)["__init__"]  # the one @dataclass wrote
        names = list(inspect.signature(init).parameters)[1:]  # without self

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **renamed(cls.__name__, renames, kwargs, names[: len(args)]))

        cls.__init__ = __init__  # type: ignore[misc]
        return cls

    return decorate


@renamed_keywords(budget="recipe")  # the old name, until the next release
@dataclass(frozen=True)
class RankRequest:
    """What a user asks `rank_sources` for (checked on construction; `plan_rank` checks it against the workspace).

    ``sources``: default every other stored task. ``methods`` (default ``direct-logme``, the atlas's best single
    ranking without measured transfer, `transfer.advisor.BEST_RANKING_METHOD`): ``esm-logme``, the divergence
    measures of `transfer.divergence.MEASURES`, ``direct-logme`` and ``leep`` (from each source's fine-tuned
    checkpoint, `flows.checkpoint_scores`) and ``maxsim`` (token-level similarity, `flows.maxsim`). ``recipe``, the
    fine-tuning recipe of the source checkpoints (ESMs, direct LogME, LEEP): ``"small"`` (500 examples, 1 epoch,
    max_length 64: CPU demos), ``"medium"`` (1,000 examples, 2 epochs: the transfer atlas's), ``"paper"`` (≤ 10,000
    examples, 3 epochs, batch 32, lr 2e-5) or a dict of `Recipe` fields (`recipe_for_name`; ``budget=`` is its
    deprecated name).
    ``prefilter="centroid-cosine:10"`` keeps the 10 best sources by a cheap measure before the other methods run.
    ``fuse="rrf"`` (or ``"borda"``) also stores the fused ranking of ``methods`` as method ``fused-rrf``, with
    ``fuse_weights``. With ``build_missing=False`` a source without a stored ESM is an error (``esm-logme`` only)."""

    target: str
    sources: tuple[str, ...] | None = None
    methods: tuple[str, ...] = (BEST_RANKING_METHOD,)
    recipe: str | dict[str, Any] = "small"
    model: str = DEFAULT_MODEL
    max_target_examples: int = 1000
    max_divergence_examples: int = 2000
    prefilter: str | None = None
    fuse: str | None = None
    fuse_weights: dict[str, float] | None = None
    seed: int = 0
    device: str = "auto"
    build_missing: bool = True
    workspace: str | None = None

    def __post_init__(self) -> None:
        methods = (self.methods,) if isinstance(self.methods, str) else tuple(self.methods)
        object.__setattr__(self, "methods", methods)
        if self.sources is not None:
            object.__setattr__(self, "sources", tuple(self.sources))
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise InputError(
                f"The 'methods' parameter of rank_sources must be among {list(METHODS)}. Got {list(methods)}."
            )
        if self.fuse is not None and self.fuse not in FUSIONS:
            raise InputError(
                f"The 'fuse' parameter of rank_sources must be one of {list(FUSIONS)}. Got {self.fuse!r} instead."
            )
        if self.prefilter is not None:
            parse_prefilter(self.prefilter)
        recipe_for_name(self.recipe)
        if self.target in (self.sources or ()):
            raise InputError(f"The target {self.target!r} is also among the sources; a task cannot be its own source.")


@dataclass(frozen=True)
class SourceWork:
    """One source's work for the methods that read its fine-tuned checkpoint (`CHECKPOINT_READERS`), as planned:
    the checkpoint's key (`flows.checkpoints.checkpoint_key`) and whether it is stored; for ESM-LogME the ESM's key
    (`store.esms.esm_cache_key` of that checkpoint) and whether it is stored (both None without ESM-LogME).
    ``fine_tune``: whether the source is fine-tuned, once whichever methods read the checkpoint, on ``examples`` rows
    (left after the leakage guard dropped ``leaked_dropped``) for ``epochs``. ``estimated_s``: that fine-tune at the
    measured rate plus the forward passes the methods make (a missing ESM: the source rows through the base and the
    tuned encoder; direct LogME and LEEP: the target sample through the tuned one)."""

    source: str
    checkpoint_key: str
    checkpoint_cached: bool
    esm_key: str | None
    esm_cached: bool | None
    fine_tune: bool
    examples: int
    epochs: int
    leaked_dropped: int
    estimated_s: float


@dataclass(frozen=True)
class RankPlan:
    """A validated, costed `RankRequest`: the sources it ranks, the source recipe, and, when a method reads the
    sources' fine-tuned checkpoints, each source's `SourceWork` (``work``; empty otherwise), costed at the
    workspace's measured fine-tuning ``rate`` (`store.rates.fine_tune_rate`). With a pre-filter keeping M sources
    the checkpoint methods run on M of them, so `fine_tunes` and `estimated_s` are upper bounds (the M costliest).
    ``catalog``: the stored tasks it was made against (`store.catalog.catalog_digest`)."""

    request: RankRequest
    catalog: str
    sources: tuple[str, ...]
    recipe: Recipe
    work: tuple[SourceWork, ...]
    rate: str

    @property
    def _runs_on(self) -> int:
        """How many sources the checkpoint methods run on: every one, or the pre-filter's M."""
        prefilter = self.request.prefilter
        return len(self.work) if prefilter is None else min(len(self.work), parse_prefilter(prefilter)[1])

    @property
    def fine_tunes(self) -> int:
        """The source fine-tunes the run makes (at most, with a pre-filter), each source counted once."""
        return min(sum(w.fine_tune for w in self.work), self._runs_on)

    @property
    def estimated_s(self) -> float:
        return float(sum(sorted((w.estimated_s for w in self.work), reverse=True)[: self._runs_on]))

    def work_frame(self) -> pd.DataFrame:
        """The per-source work as a table (one row per source; the ESM column only for ESM-LogME)."""
        frame = pd.DataFrame([asdict(w) for w in self.work])
        dropped = ["checkpoint_key", "esm_key"] + ([] if "esm-logme" in self.request.methods else ["esm_cached"])
        return frame.drop(columns=dropped, errors="ignore")


def plan_rank(request: RankRequest) -> RankPlan:
    """Check ``request`` against the workspace and say what `rank_sources` would compute: the sources and, for the
    methods that read a fine-tuned checkpoint (`CHECKPOINT_READERS`), per source what is stored and the fine-tune
    and forward passes that are not (task contents and the leakage guard read once for all sources)."""
    r = request
    ws = Workspace(r.workspace)
    goal = get_task(ws, r.target)
    names = r.sources or tuple(n for n in list_tasks(ws)["name"] if n != r.target)
    if not names:
        raise InputError(f"No source tasks to rank for {r.target!r}: add tasks with `transferscope tasks add`.")
    recipe = recipe_for_name(r.recipe)
    rate = fine_tune_rate(ws)
    reads_checkpoints = any(m in CHECKPOINT_READERS for m in r.methods)
    work = source_work(ws, goal, list(names), r, recipe, rate) if reads_checkpoints else ()
    return RankPlan(r, catalog_digest(ws), tuple(names), recipe, work, rate.basis)


def source_work(
    ws: Workspace, goal: Task, names: list[str], r: RankRequest, recipe: Recipe, rate: Rate
) -> tuple[SourceWork, ...]:
    """Each source's `SourceWork` for the checkpoint readers among ``r.methods``: the rows it is tuned on
    (`sources_data`), its checkpoint and ESM keys and whether they are stored (one catalog read each), and what is
    missing costs at ``rate``."""
    base_fp = model_fingerprint(resolve_model_path(r.model))
    checkpoints = stored_checkpoints(ws)
    with_esm = "esm-logme" in r.methods
    esms = set(ws.read("all_esms").cache_key) if with_esm else set()
    params = EmbeddingSpaceMap().params()
    direct = any(m in CHECKPOINT_METHODS for m in r.methods)
    target_texts = min(goal.counts().get("train", 0), r.max_target_examples) if direct else 0
    work = []
    for name, data in sources_data(ws, names, recipe, r.seed).items():
        key = checkpoint_key(data, recipe, model=r.model, base_fp=base_fp, seed=r.seed).cache_key
        esm_key = esm_cache_key(key, params) if with_esm else None
        esm_cached = esm_key in esms if with_esm else None
        tuned = key in checkpoints
        fine_tune = not tuned and (direct or esm_cached is False)
        forward = target_texts + (2 * len(data.texts) if esm_cached is False else 0)
        seconds = rate.seconds(recipe.examples(len(data.texts))) * fine_tune + forward / FORWARD_TEXTS_PER_S
        planned = SourceWork(
            name, key, tuned, esm_key, esm_cached, fine_tune, len(data.texts), recipe.epochs, data.n_dropped,
            round(seconds, 1),
        )  # fmt: skip
        work.append(planned)
    return tuple(work)


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
    checkpoint = checkpoint_key(data, recipe, model=model, base_fp=base.fingerprint, seed=seed).cache_key
    key = esm_cache_key(checkpoint, EmbeddingSpaceMap().params())
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
        checkpoint_key=checkpoint,
        heldout_mse=heldout,
        identity_mse=identity,
        run_id=run_id,
    )
    logger.info("%s: ESM fitted (held-out MSE %.2e vs identity %.2e)", source, heldout, identity)
    return ws.deferred(key)


def esm_logme_ranking(ws: Workspace, goal: Task, names: list[str], plan: RankPlan, run_id: str) -> dict[str, float]:
    """ESM-LogME scores {source: score} of ``names``: the plan's ESMs, built first where missing, then the target
    scored once."""
    r = plan.request
    keys: dict[str, str] = {w.source: w.esm_key for w in plan.work if w.source in names}  # type: ignore[misc]
    stored = set(ws.read("all_esms").cache_key)  # one catalog read; a task per source only for what is missing
    to_build = [s for s in names if keys[s] not in stored] if r.build_missing else []
    if to_build:
        recipe_json = canonical_json(plan.recipe.as_dict())
        futures = [
            build_source_esm.submit(str(ws.root), s, r.model, recipe_json, r.seed, r.device, run_id) for s in to_build
        ]
        keys.update(zip(to_build, gather(ws, futures, "source ESMs", "source"), strict=True))
    esms = find_esms(ws, keys)
    missing = [s for s, e in esms.items() if e is None]
    if missing:
        raise MissingResultError(
            f"No ESM stored for sources {missing} (base model {r.model!r}, this recipe); build them "
            f"with `transferscope esm build {' '.join(missing)}` or rank with build_missing=True."
        )
    base = EncoderSettings.of_recipe(plan.recipe, r.model, r.device).load()
    rows = sample_indices(goal.counts()["train"], r.max_target_examples, r.seed)
    _, vectors, _ = ensure_embeddings(ws, goal, "train", base, rows=rows, run_id=run_id)
    labels = goal.split("train").column("label").to_numpy()[rows]
    return esm_logme_scores(
        vectors.astype(np.float64),
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
            raise InputError(f"The measures {labelled} need class labels, but task {task.name!r} is a regression task.")
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
        raise InputError(
            f"The 'prefilter' parameter must be MEASURE:M with a measure among {list(MEASURES)} and M >= 1. "
            f"Got {prefilter!r} instead."
        )
    return name, int(count)


@flow(name="rank_sources", task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def rank_sources(plan: RankPlan | RankRequest) -> pd.DataFrame:
    """Run a ranking plan (a `RankRequest` is planned here, once, by `plan_rank`): rank the plan's sources for its
    target with each method; every method's ranking is stored as it finishes, rank 1 = best in that method's
    direction, and a method that fails is reported while the others still run. Returns all rankings (one row per
    method and source; ``attrs["failures"]``: the methods that failed, with why). The fused inputs are part of
    the run's config."""
    if isinstance(plan, RankRequest):
        plan = plan_rank(plan)
    r = plan.request
    target, methods, names = r.target, r.methods, list(plan.sources)
    ws = Workspace(r.workspace)
    check_plan_current(ws, plan.catalog, "rank_sources")
    goal = get_task(ws, target)
    params = {
        "target": target,
        "sources": sorted(names),
        "methods": list(methods),
        "recipe": plan.recipe.as_dict(),
        "model": r.model,
        "max_target_examples": r.max_target_examples,
        "max_divergence_examples": r.max_divergence_examples,
        "prefilter": r.prefilter,
        "fuse": r.fuse and {"method": r.fuse, "inputs": list(methods), "weights": r.fuse_weights},
        "seed": r.seed,
    }
    with recorded_run(ws, "rank_sources", params, device=r.device) as run:
        run_id, config = run.run_id, run.config
        divergence_options: dict[str, Any] = {
            "model": r.model,
            "device": r.device,
            "max_examples": r.max_divergence_examples,
            "seed": r.seed,
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

        if r.prefilter:
            measure, keep = parse_prefilter(r.prefilter)
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
                        model=r.model,
                        recipe_json=canonical_json(plan.recipe.as_dict()),
                        seed=r.seed,
                        device=r.device,
                        max_target_examples=r.max_target_examples,
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
                            model=r.model,
                            device=r.device,
                            **MAXSIM_SAMPLE,
                            seed=r.seed,
                            run_id=run_id,
                        ).result(),
                    )
                },
            )
        if "esm-logme" in methods:
            attempt(["esm-logme"], lambda: {"esm-logme": esm_logme_ranking(ws, goal, names, plan, run_id)})
        if failures and not any(m in stored for m in methods):
            raise next(iter(failures.values()))
        if r.fuse:
            ranks = fusion_inputs({m: k for m, k in stored.items() if m in methods}, names)
            fused = fuse_rankings(ranks, method=r.fuse, weights=r.fuse_weights)  # type: ignore[arg-type]
            stored[f"fused-{r.fuse}"] = put_ranking(
                ws, run_id, config, target, f"fused-{r.fuse}", fused, higher_is_better=True
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
    recipe: str | dict[str, Any] = "small",
    model: str = DEFAULT_MODEL,
    seed: int = 0,
    device: str = "auto",
    workspace: str | None = None,
) -> dict[str, str]:
    """Build (or find) the ESM of every source, its checkpoint fine-tuned under ``recipe`` (`recipe_for_name`);
    returns {source: ESM cache key}."""
    ws = Workspace(workspace)
    recipe_fields = recipe_for_name(recipe).as_dict()
    params = {"sources": sorted(sources), "recipe": recipe_fields, "model": model, "seed": seed}
    with recorded_run(ws, "build_esms", params, device=device) as run:
        args = (model, canonical_json(recipe_fields), seed, device, run.run_id)
        futures = [build_source_esm.submit(str(ws.root), s, *args) for s in sources]
        keys = dict(zip(sources, gather(ws, futures, "source ESMs", "source"), strict=True))
    return keys
