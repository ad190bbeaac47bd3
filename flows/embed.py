"""Flow ``embed_tasks``: embed every (task, split) of the workspace with one encoder, cached by content.

One Prefect task per (task, split). Each looks the embedding up in the store's content-keyed cache first (model
fingerprint, pooling, max_length, normalisation, precision, split content hash), so a second run computes nothing
and a changed task or model recomputes only what changed. Only small summaries pass through Prefect; the vectors
go straight to Parquet, written by the task, and the flow commits their catalog rows (`flows.runners`), so the
tasks can run on Dask workers.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.progress import progress
from flows.runners import gather
from store.catalog import get_task
from store.embeddings import EmbeddingKey, find_embeddings, put_embeddings
from store.errors import InputError
from store.runs import recorded_run
from store.tasks import Task
from store.worker import Deferred, WorkerWorkspace
from store.workspace import Workspace
from transfer.embeddings import TextEncoder
from transfer.encoder import DEFAULT_MODEL
from transfer.finetune import Recipe


@dataclass(frozen=True)
class EncoderSettings:
    """One encoder configuration, defined once. The default is the base encoder every embedding-based method reads
    (mean pooling, 128 tokens, L2-normalised: `embed_tasks`, the divergences, GIO); `of_recipe` is the unnormalised
    base encoder a source recipe fine-tunes from (ESMs, direct LogME, LEEP). All but ``device`` and
    ``batch_size`` enter the embedding cache key (`embedding_key`)."""

    model: str = DEFAULT_MODEL
    pooling: str = "mean"
    max_length: int = 128
    normalize: bool = True
    device: str = "auto"
    precision: str = "exact"
    batch_size: int = 64

    @classmethod
    def of_recipe(cls, recipe: Recipe, model: str, device: str) -> EncoderSettings:
        return cls(model=model, pooling=recipe.pooling, max_length=recipe.max_length, normalize=False, device=device)

    def load(self) -> TextEncoder:
        """The encoder, loaded once per configuration and process (`load_encoder`)."""
        return load_encoder(**asdict(self))


@functools.lru_cache(maxsize=2)
def load_encoder(
    model: str, pooling: str, max_length: int, normalize: bool, device: str, precision: str, batch_size: int
) -> TextEncoder:
    """One encoder per configuration and process (model loading costs about a second)."""
    return TextEncoder(
        model,
        pooling=pooling,  # type: ignore[arg-type]
        max_length=max_length,
        normalize=normalize,
        device=device,
        precision=precision,  # type: ignore[arg-type]
        batch_size=batch_size,
    )


def embedding_key(encoder: TextEncoder, task_name: str, split: str, split_hash: str) -> EmbeddingKey:
    params = encoder.cache_params()
    return EmbeddingKey(model=encoder.model_name, task=task_name, split=split, content_hash=split_hash, **params)


def ensure_embeddings(
    ws: Workspace,
    stored: Task,
    split: str,
    encoder: TextEncoder,
    *,
    rows: np.ndarray | None = None,
    run_id: str | None = None,
) -> tuple[list[str], np.ndarray, bool]:
    """(example_ids, float32 [n, d], cached?) of one split, or of its ``rows`` (positions in the split, e.g. a
    seeded sample): from the cache (the whole split's embedding serves any rows of it), or computed and stored.
    A sample is embedded and cached on its own, so a method that reads 1,000 rows of a large split embeds 1,000."""
    if rows is not None and np.array_equal(rows, np.arange(stored.counts()[split])):  # every row, in order
        rows = None
    whole = find_embeddings(ws, embedding_key(encoder, stored.name, split, stored.split_hash(split)))
    if whole is not None:
        ids, vectors = whole
        return (ids, vectors, True) if rows is None else ([ids[i] for i in rows], vectors[rows], True)
    key = embedding_key(encoder, stored.name, split, stored.split_hash(split, rows))
    cached = find_embeddings(ws, key)
    if cached is not None:
        return cached[0], cached[1], True
    table = stored.split(split) if rows is None else stored.split(split).take(rows)
    texts = table.column("text").to_pylist()
    pairs = table.column("text_pair").to_pylist() if stored.input == "pair" else None
    start = time.perf_counter()
    with progress(f"embed {stored.name}/{split}", len(texts), "text") as advance:
        vectors = encoder.encode(texts, pairs, progress=advance)
    ids = table.column("example_id").to_pylist()
    put_embeddings(ws, key, ids, vectors, run_id=run_id, seconds=time.perf_counter() - start)
    return ids, vectors, False


@task(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE, task_run_name="embed-{task_name}-{split}")
def embed_split(
    workspace: str, task_name: str, split: str, encoder_config: dict[str, Any], run_id: str
) -> Deferred[dict]:
    """Embed one split of one stored task unless the cache already holds it; return a summary row (and the
    embedding's catalog row, for the flow to commit: `flows.runners.gather`)."""
    logger = get_run_logger()
    ws = WorkerWorkspace(workspace)
    encoder = EncoderSettings(**encoder_config).load()
    start = time.perf_counter()
    ids, vectors, cached = ensure_embeddings(ws, get_task(ws, task_name), split, encoder, run_id=run_id)
    seconds = 0.0 if cached else time.perf_counter() - start
    logger.info(
        "%s/%s: %s %d vectors in %.1f s", task_name, split, "cached" if cached else "embedded", len(ids), seconds
    )
    return ws.deferred(
        {
            "task": task_name,
            "split": split,
            "n": len(ids),
            "dim": vectors.shape[1],
            "cached": cached,
            "seconds": seconds,
        }
    )


@flow(name="embed_tasks", task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def embed_tasks(
    tasks: list[str] | None = None,
    splits: list[str] | None = None,
    model: str = DEFAULT_MODEL,
    pooling: str = "mean",
    max_length: int = 128,
    normalize: bool = True,
    precision: str = "exact",
    device: str = "auto",
    batch_size: int = 64,
    workspace: str | None = None,
) -> list[dict]:
    """Embed ``tasks`` (default: every stored task), ``splits`` (default: every split each task has).

    Returns one summary per (task, split): n, dim, seconds, and whether it came from the cache. The encoder runs
    one split at a time (two torch jobs on two cores thrash); a Dask task runner spreads splits over workers:
    ``embed_tasks.with_options(task_runner=flows.runners.task_runner(dask_local=2))(...)``.
    """
    ws = Workspace(workspace)
    names = tasks or ws.read("list_tasks")["name"].tolist()
    if not names:
        raise InputError(f"Workspace '{ws.root}' holds no tasks; add some with `transferscope tasks add NAME PATH`.")
    encoder_config = asdict(EncoderSettings(model, pooling, max_length, normalize, device, precision, batch_size))
    plan = []
    for name in names:
        stored = get_task(ws, name)
        wanted = splits or list(stored.splits)
        missing = [s for s in wanted if s not in stored.splits]
        if splits and len(missing) == len(wanted):
            raise InputError(f"Task {name!r} has none of the splits {wanted}; it has {list(stored.splits)}.")
        plan += [(name, s) for s in wanted if s in stored.splits]
    params = {"tasks": names, "splits": splits, **encoder_config}
    with recorded_run(ws, "embed_tasks", params, device=device) as run:
        futures = [embed_split.submit(str(ws.root), name, split, encoder_config, run.run_id) for name, split in plan]
        results = gather(ws, futures, "embed splits", "split")
        run.timings["embed_s"] = sum(r["seconds"] for r in results)
    return [{**r, "run_id": run.run_id} for r in results]
