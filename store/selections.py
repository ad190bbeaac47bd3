"""Selection store: per-example scores, stored training subsets, and their export.

A subset is stored once, in one transaction: its ``selections`` row (pool, targets, method, budget, parameters, run),
its members in ``selection_members`` (rank 1 = chosen first) and, when the method scores examples, their scores in
``example_scores`` under the scoring configuration named by ``params["score_config"]``. The subset id is the hash
of everything that determines the subset (pool and target content, method, budget, parameters, encoder), so a
repeated request finds the stored subset instead of recomputing it.

`export_selection` writes the subset as a task file in the pool's own format (jsonl, csv or parquet; rows as in a
task directory: ``text`` or ``text_a``/``text_b``, the label by name) plus ``<file>.meta.json`` with the pool's
licence and the selection's provenance, so the file can be shared and read back with `store.task_files.load_task_file`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from store.artifacts import replace_atomically
from store.catalog import get_task
from store.embeddings import EmbeddingKey
from store.errors import CorruptArtifactError, InputError
from store.runs import canonical_json, library_versions
from store.tasks import FORMATS, Task
from store.workspace import Workspace, query

BudgetKind = Literal["fraction", "count", "method"]


def budget_kind(budget: int | float | None) -> BudgetKind:
    """``"fraction"`` for a float in (0, 1], ``"count"`` for an int ≥ 1, ``"method"`` for None (the method's own
    stopping rule). Range checks against the pool size happen where the pool is known."""
    if budget is None:
        return "method"
    if isinstance(budget, (int, np.integer)) and not isinstance(budget, bool):
        return "count"
    if isinstance(budget, float) and math.isfinite(budget):
        return "fraction"
    raise InputError(
        "The 'budget' parameter must be a float in (0, 1] (a fraction of the pool), an int >= 1 (a count) or None "
        f"(the method's own stopping rule). Got {budget!r} instead."
    )


def check_same_space(pool: EmbeddingKey, targets: Sequence[EmbeddingKey]) -> None:
    """Selection compares pool and target vectors directly: they must come from one encoder configuration (model
    fingerprint, pooling, max_length, normalisation). The precision mode may differ (same space, ~1e-3 apart)."""
    fields = ("model_fp", "pooling", "max_length", "normalize")
    reference = {f: getattr(pool, f) for f in fields}
    for key in targets:
        found = {f: getattr(key, f) for f in fields}
        if found != reference:
            diff = {f: (found[f], reference[f]) for f in fields if found[f] != reference[f]}
            raise InputError(
                f"Target {key.task!r} was embedded with another encoder than the pool {pool.task!r} "
                f"(model {key.model!r} vs {pool.model!r}; differing (target, pool): {diff}). Embed both with one "
                "encoder."
            )


def find_selection(ws: Workspace, subset_id: str) -> pd.Series | None:
    """The stored selection row ``subset_id``, or None."""
    rows = ws.read("find_selection", {"subset_id": subset_id})
    return None if rows.empty else rows.iloc[0]


def put_selection(
    ws: Workspace,
    *,
    subset_id: str,
    pool: Task,
    pool_split: str,
    targets: Sequence[str],
    method: str,
    budget: int | float | None,
    n_pool: int,
    example_ids: Sequence[str],
    params: dict[str, Any],
    run_id: str,
    scores: pd.DataFrame | None = None,
) -> None:
    """Store one subset (``example_ids`` in selection order) and, if given, per-example ``scores`` (columns
    example_id, score; stored under ``params["score_config"]``) in one transaction: all of it or nothing."""
    if len(set(example_ids)) != len(example_ids):
        raise ValueError(f"The 'example_ids' of subset {subset_id} contain duplicates; a subset is a set.")
    members = pd.DataFrame({"rank": np.arange(1, len(example_ids) + 1, dtype=np.int64), "example_id": example_ids})
    with ws.transaction() as con:
        con.execute(
            query("insert_selection"),
            {
                "subset_id": subset_id,
                "pool": pool.name,
                "pool_split": pool_split,
                "pool_hash": pool.split_hash(pool_split),
                "targets": list(targets),
                "method": method,
                "budget": None if budget is None else float(budget),
                "budget_kind": budget_kind(budget),
                "n_pool": n_pool,
                "n_selected": len(example_ids),
                "params_json": canonical_json(params),
                "run_id": run_id,
            },
        )
        con.register("selection_members_batch", members)
        con.execute(query("insert_selection_members"), {"subset_id": subset_id})
        if scores is not None:
            con.register("example_scores_batch", scores[["example_id", "score"]])
            con.execute(
                query("insert_example_scores"),
                {"config_hash": params["score_config"], "pool": pool.name, "method": method, "run_id": run_id},
            )


def selection_frame(ws: Workspace, selection: pd.Series) -> pd.DataFrame:
    """A stored subset's rows in selection order: rank, example_id, text, text_pair, label (the class name for
    classification), label_index (classification) and score (NaN where the method stores none)."""
    members = ws.read("selection_members", {"subset_id": selection.subset_id})
    pool = get_task(ws, selection.pool)
    rows = pool.split(selection.pool_split).select(["example_id", "text", "text_pair", "label"]).to_pandas()
    frame = members.merge(rows, on="example_id", how="left", validate="one_to_one")
    missing = frame.text.isna().sum()
    if missing:
        raise CorruptArtifactError(
            f"Subset {selection.subset_id}: {missing} example ids are not in the stored pool {selection.pool!r} "
            "(the task changed since); recompute the selection."
        )
    score_config = json.loads(selection.params_json).get("score_config")
    if score_config:
        scores = ws.read("example_scores", {"config_hash": score_config, "pool": selection.pool})
        frame = frame.merge(scores[["example_id", "score"]], on="example_id", how="left")
    else:
        frame["score"] = np.nan
    if pool.kind == "classification":
        frame["label_index"] = frame.label.astype(int)
        frame["label"] = [pool.label_names[i] for i in frame.label_index]
    return frame.sort_values("rank").reset_index(drop=True)


def export_selection(
    ws: Workspace, selection: pd.Series, path: str | Path, *, fmt: str | None = None
) -> tuple[Path, Path]:
    """Write a stored subset to ``path`` as a task file (``fmt`` jsonl/csv/parquet; default: the path's suffix,
    else the pool's original format) and its provenance to ``<path>.meta.json``, both atomically. Returns both
    paths."""
    path = Path(path)
    pool = get_task(ws, selection.pool)
    fmt = fmt or path.suffix.lstrip(".") or _source_format(pool)
    if fmt not in FORMATS:
        raise InputError(f"The 'fmt' parameter of export_selection must be one of {list(FORMATS)}. Got {fmt!r}.")
    frame = selection_frame(ws, selection)
    pair = pool.input == "pair"
    columns = {"text_a": frame.text, "text_b": frame.text_pair} if pair else {"text": frame.text}
    table = pa.table({**columns, "label": frame.label, "example_id": frame.example_id})
    with replace_atomically(path) as tmp:
        if fmt == "parquet":
            pq.write_table(table, tmp)
        elif fmt == "csv":
            pacsv.write_csv(table, tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as handle:
                for record in table.to_pylist():
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    meta = {
        "subset_id": selection.subset_id,
        "pool": selection.pool,
        "pool_split": selection.pool_split,
        "pool_source": pool.source_uri,
        "license": pool.license,
        "type": pool.kind,
        "input": pool.input,
        "labels": list(pool.label_names),
        "targets": list(selection.targets),
        "method": selection.method,
        "budget": None if pd.isna(selection.budget) else float(selection.budget),
        "budget_kind": selection.budget_kind,
        "n_pool": int(selection.n_pool),
        "n_selected": int(selection.n_selected),
        "params": json.loads(selection.params_json),
        "run_id": selection.run_id,
        "exported_with": library_versions(),
    }
    meta_path = path.with_name(path.name + ".meta.json")
    with replace_atomically(meta_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return path, meta_path


def _source_format(task: Task) -> str:
    """The format of the files a task was loaded from (jsonl when unknown, e.g. a DataFrame or Hugging Face)."""
    source = Path(task.source_uri) if task.source_uri else None
    if source is not None and source.is_file() and source.suffix.lstrip(".") in FORMATS:
        return source.suffix.lstrip(".")
    if source is not None and source.is_dir():
        for fmt in FORMATS:
            if next(source.glob(f"*.{fmt}"), None) is not None:
                return fmt
    return "jsonl"


# -------------------------------------------------------------------------------------- selection quality


def put_selection_result(
    ws: Workspace,
    config: str,
    *,
    pool: str,
    arm: str,
    method: str,
    budget: float,
    seed: int,
    subset_id: str,
    n_train: int,
    train_seconds: float,
    metrics: dict[str, dict[str, float]],
    run_id: str,
) -> None:
    """Store one fine-tune on a subset, evaluated on every target (``metrics``: {target: {metric: value}}), in one
    transaction."""
    with ws.transaction() as con:
        for target, values in metrics.items():
            for metric, value in values.items():
                con.execute(
                    query("insert_selection_result"),
                    {
                        "config_hash": config,
                        "pool": pool,
                        "arm": arm,
                        "method": method,
                        "budget": float(budget),
                        "seed": seed,
                        "target": target,
                        "subset_id": subset_id,
                        "n_train": n_train,
                        "train_seconds": float(train_seconds),
                        "metric": metric,
                        "value": float(value),
                        "run_id": run_id,
                    },
                )


def done_selection_runs(ws: Workspace, config: str) -> dict[tuple[str, float, int, str], str]:
    """{(arm, budget, seed, target): the subset id it trained on} of the runs stored under this measurement
    config."""
    rows = ws.read("done_selection_runs", {"config_hash": config})
    return {(r.arm, float(r.budget), int(r.seed), r.target): r.subset_id for r in rows.itertuples()}


def selection_results(ws: Workspace, config: str | None = None, pool: str | None = None) -> pd.DataFrame:
    """Primary metric per (arm, budget, seed, target) of one measurement: ``config``, else the newest one of
    ``pool``, else the newest of any pool. Columns: config_hash, pool, arm, method, budget, seed, target, subset_id,
    n_train, train_seconds, value."""
    return ws.read("selection_results", {"config_hash": config, "pool": pool})
