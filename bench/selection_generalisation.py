"""``python -m bench selection_generalisation``: where a selection method beats random on pools it was not tuned on
(issue #31, part 2). Design fixed before any run:

- Label space: binary sentiment (negative/positive). Targets, for every pool: sst2 (movie-review sentences), cr
  (product reviews), uci_sentiment_yelp (restaurants), uci_sentiment_amazon (phones). The selection is joint over the
  four (`measure_selection` takes them as one tuple, as in `bench.selection_quality`); selection sees 300 training
  rows of each, evaluation is per target on its validation and test splits (at most 2,000 rows).
- Pools, 2,000 rows each, drawn with seed 0 by `bench.selection_quality.sentiment_pool`. No pool row's text
  (letters and digits, lower-cased) occurs in any split of a target (6,015 of mr's 8,530 training sentences do,
  nearly all in sst2; they are never drawn), and the rows drawn are distinct from one another (mpqa repeats phrases):
  * ``single-domain`` (held out): 2,000 rows of mr (Rotten Tomatoes snippets).
  * ``mixed-domain`` (held out): 500 rows each of mr, mpqa (news opinion phrases), uci_sentiment_imdb (IMDb
    sentences) and tweeteval_sentiment (tweets; its test split, the only large one, negative and positive rows only).
  * ``noisy`` (held out): the mixed-domain make-up with 400 rows per source (1,600 distinct rows) plus 400 exact
    copies of some of them (20% of the 2,000 rows are duplicates), and the labels of 20% of the 2,000 rows swapped
    (a copy carries its original's label, so 20% of the distinct texts are mislabelled too), shuffled (`corrupt`).
  * The tuning pool is `bench.selection_quality`'s (700 rows each of sst2, mr and mpqa; targets cr, yelp, amazon),
    where class-stratified ICONS was chosen. It is not measured again: the summary cites its committed numbers
    (``reports/results/selection_quality.csv``) as ``tuning pool``.
- Arms: the whole pool (``full``, the reference `measure_selection` adds), random, GIO, ICONS, ICONS with
  class-stratified budgets, VoG prune-easiest (`bench.selection_quality.ARMS`), at 10% and 20% of the pool, seeds
  0-4 (the seed drives the selection and the fine-tune), each subset fine-tuned from all-MiniLM-L6-v2 with
  `flows.measure_selection.SUBSET_RECIPE` (3 epochs, batch 16, lr 5e-5, 6% warm-up, max_length 64). 3 pools x 5 seeds
  x 11 fine-tunes = 165 fine-tunes (75,000 examples x 3 epochs) plus 15 VoG and 30 ICONS scorings: at
  `bench.selection_quality`'s measured costs on 2 idle cores (2,606 s for 34,020 examples; 270 s per VoG scoring)
  about 1.6 h of fine-tuning and 1.3 h of selection, a campaign over several sessions.
- Test, per pool and budget: for each seed, the arm's primary metric (accuracy) minus random's, averaged over the
  four targets (the targets share the seed's subset, so the seeds are the independent replicates); the 95% paired
  t-interval over the seeds, mean +- t(0.975, n-1) sd / sqrt(n), with its p-value; ``beats_random`` when the
  interval's lower end is above 0 (`transfer.arms.summarise_pools`). ``all held-out`` averages the three pools and
  their targets per seed first, over the seeds every pool has. Share: the arm's score over the full pool's, per
  (pool, target), averaged.

Order: seed-major (seed 0 for every pool, then seed 1, ...), one `measure_selection` call per (pool, seed), so
partial results stay balanced across pools. Each call stores its fine-tunes as they finish and skips what is stored
(the workspace, ``~/.cache/transferscope/bench/selection-generalisation`` or ``$TRANSFERSCOPE_BENCH_WORKSPACE``,
lives outside the repository and /tmp, so the campaign resumes in the next session); after each call its runs are
appended to ``reports/results/selection_generalisation_runs.csv`` (one row per run and target, with the config hash
and the provenance of the session that appended it; the grid in ``selection_generalisation_runs.json``), written to a
temporary file and renamed. The summary (``selection_generalisation.{csv,json}``) is written only once every pool has
every seed (DECISIONS.md); until then the last stdout line carries the partial summary and which seeds are in.
``--quick``: 60-row pools, one target, one seed, 20%, one epoch; writes under the workspace, not reports/results/.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import SHARED_TASKS, machine_provenance
from bench.selection_quality import ARMS as TUNED_ARMS
from bench.selection_quality import QUICK_ARMS as TUNED_QUICK_ARMS
from bench.selection_quality import RESULTS, sentiment_pool
from store.benchmarks import GENERALISATION_GRID as GRID
from store.benchmarks import GENERALISATION_RUNS as RUNS
from store.benchmarks import GENERALISATION_SUMMARY as SUMMARY

WORKSPACE = Path(
    os.environ.get("TRANSFERSCOPE_BENCH_WORKSPACE", "~/.cache/transferscope/bench/selection-generalisation")
).expanduser()
TARGETS = ("sst2", "cr", "uci_sentiment_yelp", "uci_sentiment_amazon")
MIXED_SOURCES = ("mr", "mpqa", "uci_sentiment_imdb", "tweeteval_sentiment")
SPLITS = {"tweeteval_sentiment": "test"}  # no train split; its test split holds 6,347 negative/positive tweets
POOLS = ("single-domain", "mixed-domain", "noisy")  # every one held out; the tuning pool is selection_quality's
ARM_NAMES = ("random", "gio", "icons", "icons-stratified", "vog-prune_easiest")
ARMS = {name: TUNED_ARMS[name] for name in ARM_NAMES}
QUICK_ARMS = {**ARMS, "vog-prune_easiest": TUNED_QUICK_ARMS["vog-prune_easiest"]}
KEY = ["pool", "arm", "budget", "seed", "target"]


def grid(quick: bool) -> dict[str, Any]:
    """The campaign's grid, or ``--quick``'s (written under the workspace, not reports/results/)."""
    if quick:
        return {
            "pool_rows": 60,
            "targets": ("uci_sentiment_yelp",),
            "arms": QUICK_ARMS,
            "budgets": (0.2,),
            "seeds": (0,),
            "recipe": {"epochs": 1, "max_length": 32},
            "max_test": 100,
            "workspace": WORKSPACE / "quick",
            "results": WORKSPACE / "quick" / "results",
        }
    return {
        "pool_rows": 2000,
        "targets": TARGETS,
        "arms": ARMS,
        "budgets": (0.1, 0.2),
        "seeds": (0, 1, 2, 3, 4),
        "recipe": {},
        "max_test": 2000,
        "workspace": WORKSPACE / "full",
        "results": RESULTS,
    }


def pool_specs(n_rows: int) -> dict[str, dict[str, Any]]:
    """Each pool's make-up at ``n_rows`` rows: sources, rows per source, and for ``noisy`` its corruption."""
    return {
        "single-domain": {"sources": ("mr",), "per_source": n_rows},
        "mixed-domain": {"sources": MIXED_SOURCES, "per_source": n_rows // 4},
        "noisy": {"sources": MIXED_SOURCES, "per_source": n_rows // 5, "duplicates": n_rows // 5, "flip": 0.2},
    }


def corrupt(rows: pd.DataFrame, flip: float, duplicates: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` (n distinct rows: text, label negative/positive) plus ``duplicates`` exact copies of as many of
    them, with round(flip x (n + duplicates)) of the resulting rows' labels swapped, shuffled; seeded. The swaps fall
    on copied rows (both copies) and on the others in proportion, so the rate holds over rows and over texts."""
    rng = np.random.default_rng([seed, 31])
    copied = rng.choice(len(rows), duplicates, replace=False)
    single = np.setdiff1d(np.arange(len(rows)), copied)
    n_copied = round(flip * duplicates)  # each counts twice
    swapped = np.concatenate(
        [
            rng.choice(copied, n_copied, replace=False),
            rng.choice(single, round(flip * (len(rows) + duplicates)) - 2 * n_copied, replace=False),
        ]
    )
    labels = rows.label.to_numpy().copy()
    labels[swapped] = np.where(labels[swapped] == "negative", "positive", "negative")
    out = rows.assign(label=labels)
    out = pd.concat([out, out.iloc[copied]], ignore_index=True)
    return out.iloc[rng.permutation(len(out))].reset_index(drop=True)


def target_texts(targets: tuple[str, ...] = TARGETS) -> set[str]:
    """The normalised texts (`store.leakage.normalise_text`) of every split of ``targets``."""
    from store.leakage import normalise_text
    from store.task_files import load_task_dir

    texts = set()
    for name in targets:
        task = load_task_dir(SHARED_TASKS / name)
        for split in task.splits:
            texts |= {normalise_text(t) for t in task.split(split).column("text").to_pylist()}
    return texts


def build_pool(pool: str, n_rows: int, exclude: set[str]) -> Any:
    """The pool task ``pool`` (one of `POOLS`, also its task name) with ``n_rows`` rows, none whose normalised
    text is in ``exclude`` (`target_texts`)."""
    spec = pool_specs(n_rows)[pool]
    edit = partial(corrupt, flip=spec["flip"], duplicates=spec["duplicates"]) if "flip" in spec else None
    return sentiment_pool(
        spec["per_source"], spec["sources"], name=pool, splits=SPLITS, distinct_from=exclude, edit=edit
    )


def provenance(model: str) -> dict[str, Any]:
    """Who measured a run (stored on its rows): model, device, host, library versions, when it was appended."""
    return {
        "model": model,
        "device": "cpu",
        **machine_provenance(),
        "appended_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def append_runs(path: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Append the runs in ``rows`` that ``path`` lacks (by pool, arm, budget, seed, target), writing it to a temporary
    file and renaming it; a pool's runs must share one config hash. Returns the whole table."""
    from store.artifacts import replace_atomically
    from transfer.errors import InputError

    table = pd.read_csv(path) if path.exists() else rows.iloc[:0]
    configs = pd.concat([table, rows]).groupby("pool").config_hash.nunique()
    if (configs > 1).any():
        raise InputError(
            f"The runs file {path} holds runs of pools {list(configs[configs > 1].index)} under another config hash "
            "than this grid's (recipe, model, pool or target content changed); move it aside to start a new campaign."
        )
    new = rows.merge(table[KEY], on=KEY, how="left", indicator=True).query("_merge == 'left_only'")
    if new.empty:
        return table
    table = pd.concat([table, new.drop(columns="_merge")], ignore_index=True).sort_values(KEY, ignore_index=True)
    with replace_atomically(path) as tmp:
        table.to_csv(tmp, index=False)
    return table


def seeds_in(runs: pd.DataFrame, per_seed: int) -> dict[str, list[int]]:
    """Per pool, the seeds with all ``per_seed`` runs (arms x budgets x targets, the full pool included)."""
    counts = runs.groupby(["pool", "seed"]).size()
    return {
        str(pool): sorted(int(seed) for (p, seed), n in counts.items() if p == pool and n == per_seed)
        for pool in runs.pool.unique()
    }


def summary_table(runs: pd.DataFrame, arms: tuple[str, ...], budgets: tuple[float, ...]) -> pd.DataFrame:
    """Per held-out pool and over them (`transfer.arms.summarise_pools`), then the tuning pool's committed rows for
    the same arms and budgets: pool, held_out, budget, arm, n_train, n_seeds, share_mean, share_std, vs_random_points,
    ci95_low, ci95_high, vs_random_p_value, beats_random."""
    from store.benchmarks import committed_selection_quality
    from transfer.arms import random_interval, summarise_pools

    columns = ["pool", "held_out", "budget", "arm", "n_train", "n_seeds", "share_mean", "share_std"]
    columns += ["vs_random_points", "ci95_low", "ci95_high", "vs_random_p_value", "beats_random"]
    held_out = summarise_pools(runs).assign(held_out=True)
    tuning = committed_selection_quality()
    if tuning is not None:
        tuning = tuning[tuning.arm.isin(["full", *arms]) & tuning.budget.isin([1.0, *budgets])]
        held_out = pd.concat([held_out, random_interval(tuning).assign(pool="tuning pool", held_out=False)])
    return held_out[columns].reset_index(drop=True)


def run(quick: bool = False, model: str | None = None) -> dict[str, Any]:
    """Measure the grid (`grid`) with ``model`` (default all-MiniLM-L6-v2), seed-major, one `measure_selection` call
    per (pool, seed), appending each call's runs to the runs file; write the summary once the grid is complete."""
    from flows.measure_selection import (
        SUBSET_RECIPE,
        MeasureSelectionRequest,
        check_arms,
        measure_selection,
        plan_measure_selection,
    )
    from store.artifacts import replace_atomically
    from store.catalog import put_task
    from store.runs import library_versions
    from store.selections import selection_results
    from store.task_files import load_task_dir
    from store.workspace import Workspace
    from transfer.encoder import DEFAULT_MODEL

    model = model or DEFAULT_MODEL
    config = grid(quick)
    ws, results = Workspace(config["workspace"]), Path(config["results"])
    start = time.perf_counter()
    exclude = target_texts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # known duplicates and conflicting labels in the shared tasks
        for pool in POOLS:
            put_task(ws, build_pool(pool, config["pool_rows"], exclude))
        for name in config["targets"]:
            put_task(ws, load_task_dir(SHARED_TASKS / name))
    described = {
        **{k: v for k, v in config.items() if k not in ("workspace", "results")},
        "pools": {p: {**s, "held_out": True, "splits": SPLITS} for p, s in pool_specs(config["pool_rows"]).items()},
        "tuning_pool": "bench.selection_quality (700 rows each of sst2, mr, mpqa); reports/results/selection_quality",
        "recipe": {**SUBSET_RECIPE.as_dict(), **config["recipe"]},
        "model": model,
        "test": "per seed the arm's primary metric minus random's, averaged over targets (and pools for 'all "
        "held-out'); 95% paired t-interval over seeds; beats_random: its lower end > 0",
    }
    with replace_atomically(results / GRID) as tmp:
        tmp.write_text(json.dumps(described, indent=1) + "\n")
    for seed in config["seeds"]:
        for pool in POOLS:
            plan = plan_measure_selection(
                MeasureSelectionRequest(
                    pool,
                    tuple(config["targets"]),
                    arms=config["arms"],
                    budgets=tuple(config["budgets"]),
                    seeds=(seed,),
                    recipe=config["recipe"],
                    max_test=config["max_test"],
                    model=model,
                    device="cpu",
                    workspace=str(ws.root),
                )
            )
            measure_selection(plan)
            stored = selection_results(ws, plan.config)
            stored = stored[(stored.seed == seed) & stored.arm.isin(["full", *config["arms"]])]
            meta = provenance(model)
            columns = ["pool", "held_out", "arm", "budget", "seed", "target", "n_train", "value", "config_hash"]
            rows = stored.assign(held_out=True, **meta)[[*columns, "train_seconds", *meta]]
            runs = append_runs(results / RUNS, rows)
    per_seed = len(check_arms(config["arms"], tuple(config["budgets"]))) * len(config["targets"])
    seeds = seeds_in(runs, per_seed)
    complete = all(seeds.get(p) == list(config["seeds"]) for p in POOLS)
    done = runs[[s in seeds.get(p, []) for p, s in zip(runs.pool, runs.seed, strict=True)]]
    summary = summary_table(done, tuple(config["arms"]), tuple(config["budgets"]))
    result = {
        "bench": "selection_generalisation",
        "quick": quick,
        "complete": complete,
        "seeds_in": seeds,
        "grid": described,
        "summary": json.loads(summary.round(4).to_json(orient="records")),
        "runs_file": str(results / RUNS),
        "versions": library_versions(),
        "seconds_this_call": round(time.perf_counter() - start, 1),
    }
    if complete:
        with replace_atomically(results / f"{SUMMARY}.csv") as tmp:
            summary.round(4).to_csv(tmp, index=False)
        with replace_atomically(results / f"{SUMMARY}.json") as tmp:
            tmp.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))  # the partial summary, while the grid is incomplete
    return result
