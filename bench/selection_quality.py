"""``python -m bench selection_quality``: what each selection method's training subsets are worth on real targets.

Pool: 2,100 real binary-sentiment training sentences, 700 drawn (seeded) from each of sst2 and mr (movie reviews)
and mpqa (opinion phrases from news), labels negative/positive. Targets, from other domains in that label space:
cr (product reviews), uci_sentiment_yelp (restaurants) and uci_sentiment_amazon (phones); selection sees 300
training rows per target, evaluation uses each target's validation and test splits (754, 200 and 200 rows), and
the leakage guard drops pool rows that occur in them. Arms: GIO, ICONS, ICONS with class-stratified budgets (our
addition, `selection.stratify`), VoG (prune-easiest, keep-hardest, weighted-sample) and random, at 10%, 20% and
50% of the pool, plus the whole pool; keep-hardest and weighted-sample VoG run at 20% only (DECISIONS.md allows
dropping arms at 10% and 50%). Each subset is fine-tuned
from all-MiniLM-L6-v2 for 3 epochs (batch 16, lr 5e-5, 6% warm-up, max_length 64), 3 seeds (the seed drives
both the selection and the fine-tune). Runs resume (`flows.measure_selection`), so the grid may finish over
several sessions; the table (CSV, JSON with every run, and the curves as SVG) is written to ``reports/results/``
only once it is complete.
``--quick``: a 120-row pool, one target, 20% budget, one seed, one epoch (a couple of minutes).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bench.common import SHARED_TASKS

RESULTS = Path(__file__).resolve().parents[1] / "reports" / "results"
# Outside the repository and /tmp, so a grid interrupted by the end of a session resumes in the next one.
WORKSPACE = Path(os.environ.get("TRANSFERSCOPE_BENCH_WORKSPACE", "~/.cache/transferscope/bench/selection-quality"))
WORKSPACE = WORKSPACE.expanduser()
POOL = "sentiment_pool"
POOL_SOURCES = ("sst2", "mr", "mpqa")
LABELS = ("negative", "positive")
TARGETS = ("cr", "uci_sentiment_yelp", "uci_sentiment_amazon")
ARMS = {
    "gio": {"method": "gio"},
    "icons": {"method": "icons"},
    "icons-stratified": {"method": "icons", "params": {"stratify": True}},
    "vog-prune_easiest": {"method": "vog", "params": {"strategy": "prune_easiest"}},
    "vog-keep_hardest": {"method": "vog", "params": {"strategy": "keep_hardest"}, "budgets": [0.2]},
    "vog-weighted_sample": {"method": "vog", "params": {"strategy": "weighted_sample"}, "budgets": [0.2]},
    "random": {"method": "random"},
}
QUICK_ARMS = {
    "gio": {"method": "gio"},
    "icons": {"method": "icons"},
    "vog-prune_easiest": {"method": "vog", "params": {"strategy": "prune_easiest", "n_checkpoints": 3}},
    "random": {"method": "random"},
}


def grid(quick: bool) -> dict:
    if quick:
        return {
            "per_source": 40,
            "targets": ("uci_sentiment_yelp",),
            "arms": QUICK_ARMS,
            "budgets": (0.2,),
            "seeds": (0,),
            "recipe": {"epochs": 1, "max_length": 32},
            "max_test": 100,
            "workspace": WORKSPACE / "quick",
        }
    return {
        "per_source": 700,
        "targets": TARGETS,
        "arms": ARMS,
        "budgets": (0.1, 0.2, 0.5),
        "seeds": (0, 1, 2),
        "recipe": {},
        "max_test": 2000,
        "workspace": WORKSPACE / "full",
    }


def sentiment_pool(
    per_source: int,
    sources: tuple[str, ...] = POOL_SOURCES,
    *,
    name: str = POOL,
    splits: dict[str, str] | None = None,
    distinct_from: set[str] | None = None,
    edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
):
    """The pool task ``name``: ``per_source`` seeded rows of each of ``sources``, in that order, labels by name, rows
    labelled negative or positive only (tweeteval_sentiment's neutral is dropped). ``splits``: the split each source
    is drawn from (default train). ``distinct_from``: texts, normalised by `store.leakage.normalise_text`, no drawn
    row may have; when given, the drawn rows are also distinct from one another. ``edit``: applied to the drawn rows
    (a frame with columns text and label) before the task is built."""
    from store.leakage import normalise_text
    from store.task_files import load_task_dir, task_from_table
    from transfer.finetune import sample_indices

    frames, licences = [], []
    seen = None if distinct_from is None else set(distinct_from)
    for source_name in sources:
        source = load_task_dir(SHARED_TASKS / source_name)
        rows = source.split((splits or {}).get(source_name, "train")).to_pandas()
        rows = pd.DataFrame({"text": rows.text, "label": [source.label_names[int(i)] for i in rows.label]})
        keep = rows.label.isin(LABELS)
        if seen is not None:
            keys = rows.text.map(normalise_text)
            keep &= ~keys.isin(seen) & ~keys.duplicated()
        rows = rows[keep].reset_index(drop=True)
        rows = rows.iloc[sample_indices(len(rows), per_source, 0)]
        if seen is not None:
            seen |= set(rows.text.map(normalise_text))
        frames.append(rows)
        licences.append(f"{source_name}: {source.license}")
    table = pd.concat(frames, ignore_index=True)
    return task_from_table(
        edit(table) if edit else table,
        name,
        label_names=LABELS,
        source_uri="shared tasks " + ", ".join(sources),
        license="; ".join(licences),
    )


def run(quick: bool = False, model: str | None = None) -> None:
    """Measure the grid (`grid`) with ``model`` (default all-MiniLM-L6-v2) as the encoder every arm selects with
    and fine-tunes."""
    from flows.measure_selection import SUBSET_RECIPE, MeasureSelectionRequest, measure_selection
    from reports.html import selection_curves
    from selection.quality import summarise_selection
    from store.catalog import put_task
    from store.runs import library_versions
    from store.selections import selection_results
    from store.task_files import load_task_dir
    from store.workspace import Workspace
    from transfer.encoder import DEFAULT_MODEL

    model = model or DEFAULT_MODEL
    config = grid(quick)
    ws = Workspace(config["workspace"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        put_task(ws, sentiment_pool(config["per_source"]))
        for name in config["targets"]:
            put_task(ws, load_task_dir(SHARED_TASKS / name))
    start = time.perf_counter()
    measure_selection(
        MeasureSelectionRequest(
            POOL,
            tuple(config["targets"]),
            arms=config["arms"],
            budgets=tuple(config["budgets"]),
            seeds=tuple(config["seeds"]),
            recipe=config["recipe"],
            max_test=config["max_test"],
            model=model,
            device="cpu",
            workspace=str(ws.root),
        )
    )
    runs = selection_results(ws, pool=POOL)
    summary = summarise_selection(runs)
    completed = ws.sql(  # where the time went: the longest completed measurement, every selection by method
        "SELECT flow, json_extract_string(params_json, '$.method') AS method, "
        "json_extract(timings_json, '$.total_s')::DOUBLE AS seconds FROM runs WHERE status = 'completed'"
    )
    selections = completed[completed.flow == "select_training_subset"].groupby("method").seconds.sum()
    overall = summary[summary.target == "all"].drop(columns="target")
    result = {
        "bench": "selection_quality",
        "quick": quick,
        "grid": {
            **{k: v for k, v in config.items() if k != "workspace"},
            "recipe": {**SUBSET_RECIPE.as_dict(), **config["recipe"]},
            "model": model,
            "pool": POOL,
            "pool_sources": POOL_SOURCES,
            "n_pool": int(runs[runs.arm == "full"].n_train.iloc[0]),
        },
        "summary": json.loads(overall.to_json(orient="records")),
        "per_target": json.loads(summary[summary.target != "all"].to_json(orient="records")),
        "runs": json.loads(runs.drop(columns=["config_hash", "pool"]).to_json(orient="records")),
        "config_hash": runs.config_hash.iloc[0],
        "versions": library_versions(),
        "seconds_this_call": time.perf_counter() - start,
        "measure_wall_seconds": float(completed[completed.flow == "measure_selection"].seconds.max()),
        "train_seconds_total": float(runs.drop_duplicates(["arm", "budget", "seed"]).train_seconds.sum()),
        "selection_seconds_by_method": {str(k): float(v) for k, v in selections.items()},
    }
    if not quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "selection_quality.json").write_text(json.dumps(result, indent=1) + "\n")
        overall.round(4).to_csv(RESULTS / "selection_quality.csv", index=False)
        (RESULTS / "selection_quality.svg").write_text(selection_curves(summary) + "\n")
        result = {k: v for k, v in result.items() if k != "runs"}  # the committed JSON has them; keep the line short
    print(json.dumps(result))  # the table lives in reports/results/, not reports/bench/
