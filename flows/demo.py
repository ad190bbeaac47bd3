"""The end-to-end demo on real tasks, through the public API (`transferscope`) only: register, embed, query, rank
sources for a target, ask ``recommend`` (the advisor screens and shortlists, two fine-tunes decide), measure a tiny
transfer grid and score the ranking against it, select a training subset with GIO and measure what it is worth
against random, write the HTML report.
Grows with the pipeline; stays within minutes on 2 CPU cores.

Data, in order: ``--data`` / ``$TRANSFERSCOPE_DEMO_DATA``; ``../shared/data/tasks`` beside this repository (the
development setup); the public TweetEval tasks from the Hugging Face hub (``hf`` extra, online); else a message
saying how to point the demo at local files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from store.hf_tasks import load_hf_task
from store.task_files import load_task_dir, task_from_table
from store.tasks import Task

DEMO_TASKS = ("tweeteval_emotion", "sst2", "trec", "poem_sentiment", "rte")
# Selection: a 600-row sample of sst2 as the candidate pool, a small review-sentiment task as the target.
SELECTION_POOL, SELECTION_TARGET, POOL_ROWS = "sst2", "uci_sentiment_yelp", 600
# The tiny measured grid: 1 seed, the atlas's target recipe (300 examples, 3 epochs, batch 16, lr 5e-5, 6% warm-up,
# max_length 64), 300 test rows.
DEMO_TARGET_RECIPE = {
    "lr": 5e-5, "batch_size": 16, "epochs": 3, "max_examples": 300, "max_length": 64, "warmup_ratio": 0.06
}  # fmt: skip
DEMO_MAX_TEST = 300
DEMO_RECOMMEND_RUNS, DEMO_SHORTLIST = 2, 2  # recommend's measuring: the baseline and one source pull
DEMO_ARMS = {"gio": {"method": "gio"}, "random": {"method": "random"}}
HF_DEMO_TASKS = {
    "tweeteval_emotion": ("tweet_eval", "emotion"),
    "tweeteval_irony": ("tweet_eval", "irony"),
    "tweeteval_hate": ("tweet_eval", "hate"),
}
NEAREST_SQL = """
WITH v AS (SELECT v.* FROM embedding_vectors v JOIN embeddings e USING (cache_key)
           WHERE e.normalize AND e.max_length = 128),
     q AS (SELECT v.embedding FROM v JOIN task_examples x USING (example_id) WHERE x.text = $query LIMIT 1)
SELECT v.task, x.text, round(list_cosine_similarity(v.embedding, q.embedding), 3) AS cosine
FROM v JOIN task_examples x USING (example_id), q
WHERE x.text <> $query
ORDER BY cosine DESC LIMIT 5
"""
SHARED_TASKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tasks"


def demo_tasks(data: str | None) -> list[Task]:
    """The demo's real tasks from the first data source that is available."""
    folder = Path(data or os.environ.get("TRANSFERSCOPE_DEMO_DATA") or SHARED_TASKS)
    if folder.is_dir():
        names = [n for n in DEMO_TASKS if (folder / n).is_dir()] or sorted(
            p.name for p in folder.iterdir() if p.is_dir()
        )[:5]
        return [load_task_dir(folder / n) for n in names]
    try:
        return [load_hf_task(dataset, name, config=config) for name, (dataset, config) in HF_DEMO_TASKS.items()]
    except Exception as err:  # noqa: BLE001 - offline, or the hf extra missing
        raise SystemExit(
            f"No demo data: '{folder}' does not exist and the Hugging Face hub is not usable ({err}).\n"
            "Point the demo at a folder of task directories ({train,validation,test}.jsonl|csv|parquet, meta.json "
            "optional): `transferscope demo --data DIR` or TRANSFERSCOPE_DEMO_DATA=DIR."
        ) from None


def selection_tasks(tasks: list[Task], data: str | None) -> tuple[Task, Task] | None:
    """The selection part's pool (a seeded sample of sst2's training rows) and target, when the data has both."""
    folder = Path(data or os.environ.get("TRANSFERSCOPE_DEMO_DATA") or SHARED_TASKS)
    source = next((t for t in tasks if t.name == SELECTION_POOL), None)
    if source is None or not (folder / SELECTION_TARGET).is_dir():
        return None
    rows = source.split("train").to_pandas().sample(POOL_ROWS, random_state=0)
    frame = rows.assign(label=[source.label_names[int(v)] for v in rows.label])[["text", "label"]]
    pool = task_from_table(
        frame, f"{SELECTION_POOL}_pool", label_names=source.label_names, source_uri=source.source_uri
    )
    return pool, load_task_dir(folder / SELECTION_TARGET)


def run_demo(*, workspace: str, data: str | None, device: str, console: Console, show: Callable[..., Any]) -> None:
    """The demo, through the public API (`transferscope`) only."""
    import transferscope as ts
    from store.selections import export_selection, find_selection

    started = time.perf_counter()
    ws = ts.Workspace(workspace)
    results = ts.Results(ws)
    console.rule("1. Tasks")
    tasks = demo_tasks(data)
    for task in tasks:
        ts.add_task(ws, task)
        console.print(f"{task.name}: {task.kind}/{task.input}, {task.counts()}")
    console.rule("2. Embeddings of the training splits (all-MiniLM-L6-v2, mean pooling, cached by content)")
    embedded = ts.embed(ws, [t.name for t in tasks], device=device)
    computed = int((~embedded.cached).sum())
    console.print(
        f"{embedded.n.sum()} texts in {len(embedded)} splits; {computed} splits computed, "
        f"{len(embedded) - computed} from the cache"
    )
    console.rule("3. What the store holds (SQL over the workspace views)")
    show(
        ws.sql(
            "SELECT task, split, n, dim, max_length, normalize, round(seconds, 1) AS seconds FROM embeddings "
            "ORDER BY task, split, max_length"
        ),
        title="embeddings",
    )
    show(
        ws.sql(NEAREST_SQL, {"query": tasks[0].split(tasks[0].splits[0]).column("text")[0].as_py()}),
        title=f"nearest stored texts to the first {tasks[0].name} example, by cosine, in SQL",
    )
    console.rule("4. Which source to fine-tune on first? direct LogME, rank's default (small CPU recipe)")
    target, sources = tasks[0].name, [t.name for t in tasks[1:]]
    ts.rank_sources(ws, target, sources, recipe="small", device=device)
    ranking = results.recommend_sources(target, k=len(sources))
    show(ranking, title=f"direct-logme ranking for {target} (higher is better)")
    console.print(
        f"(score: LogME evidence per example of {target}'s features from each source's fine-tuned encoder; the best "
        "single ranking on the committed atlas without measuring, and still no better than seed noise allows)",
        soft_wrap=True,
    )
    console.rule("5. Which source first, or none? recommend: screen, shortlist, then measure to decide")
    from transfer.advisor import CHEAP_INPUTS

    console.print(
        f"(a small budget: {DEMO_RECOMMEND_RUNS} target fine-tunes, the no-transfer baseline first, on a shortlist of "
        f"{DEMO_SHORTLIST} by the advisor on the checkpoint-free methods; the default also reads ESM-LogME, direct "
        "LogME and LEEP on the shortlist and spends 6 fine-tunes)",
        soft_wrap=True,
    )
    answer = ts.recommend(
        ws, target, sources, runs=DEMO_RECOMMEND_RUNS, shortlist=DEMO_SHORTLIST, inputs=CHEAP_INPUTS,
        screen_inputs=CHEAP_INPUTS, device=device,
    )  # fmt: skip
    show(
        answer.assign(source=answer.source.replace("", "(no transfer)")).round(3),
        title=f"recommend for {target}: gain over no transfer, points (prior: the advisor's; runs: fine-tunes)",
    )
    console.print(answer.attrs["message"], soft_wrap=True)
    console.rule("6. Did the ranking hold? A tiny measured grid")
    ranked = results.recommend_sources(target, k=len(sources))
    measured = [ranked.source.iloc[0], ranked.source.iloc[-1]]
    gains = ts.measure_transfer(
        ws, target, measured, seeds=(0,), target_recipe=DEMO_TARGET_RECIPE, max_test=DEMO_MAX_TEST, device=device
    )
    show(
        gains[["source", "baseline_mean", "source_mean", "mean_gain"]],
        title=f"measured gain on {target}: its first and last direct-logme source (higher is better)",
    )
    quality = ts.evaluate_rankings(ws, target)
    show(
        quality[["regret@1", "spearman"]].reset_index(), title=f"ranking quality for {target} (regret: lower is better)"
    )
    console.print(
        f"(a grid this small, 1 seed, {DEMO_TARGET_RECIPE['max_examples']} target examples, {len(measured)} sources, "
        "shows the workflow, not a verdict: seed noise alone moves gains by points; the committed atlas in the "
        "report's section 8 is the reference)",
        soft_wrap=True,
    )
    console.rule("7. Which training data to keep? GIO picks from a candidate pool, and what the picks are worth")
    pool_target = selection_tasks(tasks, data)
    if pool_target is None:
        console.print("skipped: the demo data has no sentiment pool and target sharing one label space")
    else:
        pool, goal = pool_target
        for task in pool_target:
            ts.add_task(ws, task)
        subset = ts.select_subset(ws, pool.name, goal.name, method="gio", budget=0.2, device=device)
        show(
            subset.head(8)[["rank", "text", "label", "score"]],
            title=f"first GIO picks from {pool.name} for {goal.name}",
        )
        selection = find_selection(ws, subset.attrs["subset_id"])
        assert selection is not None  # select_subset has just read it
        exported, _ = export_selection(ws, selection, ws.root / "exports" / "subset.jsonl")
        console.print(
            f"{len(subset)} of {selection.n_pool} {pool.name} examples chosen to match {goal.name} (score: KL(target ‖ "
            f"subset) after each pick); exported with its licence metadata to {exported}",
            soft_wrap=True,
        )
        worth = ts.measure_selection(
            ws, pool.name, [goal.name], arms=DEMO_ARMS, budgets=(0.2,), seeds=(0,), recipe={"epochs": 1},
            max_test=DEMO_MAX_TEST, device=device,
        )  # fmt: skip
        show(
            worth[worth.target == "all"][["arm", "budget", "n_train", "share_mean"]],
            title=f"share of the whole pool's score on {goal.name} (1 seed, 1 epoch; higher is better)",
        )
    console.rule("8. Report")
    console.print(f"HTML report (opens offline): {ts.build_report(ws).path}")
    console.print(
        f'Workspace: {ws.root}  (SQL: `transferscope sql "SELECT * FROM tasks"`, or open '
        f"{ws.views_path} in any DuckDB client)"
    )
    console.print(f"Demo finished in {time.perf_counter() - started:.0f} s.")
