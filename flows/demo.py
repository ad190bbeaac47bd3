"""The end-to-end demo on real tasks, through the public API (`transferscope`) only: register, embed, query, rank
sources for a target, ask the advisor, select a training subset for it with GIO, write the HTML report.
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
from store.task_files import load_task_dir
from store.tasks import Task

DEMO_TASKS = ("tweeteval_emotion", "sst2", "trec", "poem_sentiment", "rte")
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
    total = sum(r["n"] for r in embedded)
    computed = [r for r in embedded if not r["cached"]]
    console.print(
        f"{total} texts in {len(embedded)} splits; {len(computed)} splits computed, "
        f"{len(embedded) - len(computed)} from the cache"
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
    console.rule("4. Which source to fine-tune on first? ESM-LogME (small CPU budget)")
    target, sources = tasks[0].name, [t.name for t in tasks[1:]]
    ts.rank_sources(ws, target, sources, budget="small", device=device)
    show(results.recommend_sources(target, k=len(sources)), title=f"esm-logme ranking for {target} (higher is better)")
    console.print(f"(score: LogME evidence per example of {target}'s embeddings mapped by each source's ESM)")
    console.rule("5. The advisor: expected gain, its interval, and whether to transfer at all")
    advice = ts.advise_sources(ws, target, sources, device=device)
    shown = advice.assign(top_features=[", ".join(f"{k} {v:+.2f}" for k, v in f.items()) for f in advice.top_features])
    show(shown, title=f"advisor for {target}: expected gain over no transfer, points (higher is better)")
    console.print(advice.attrs["message"], soft_wrap=True)
    console.rule("6. Which training data to keep? GIO subset of a candidate pool")
    pool = sources[0]
    ids, subset = ts.select_subset(ws, pool, target, method="gio", budget=200, max_target_examples=500, device=device)
    show(subset.head(8)[["rank", "text", "label", "score"]], title=f"first GIO picks from {pool} for {target}")
    selection = find_selection(ws, subset.attrs["subset_id"])
    assert selection is not None  # select_subset has just read it
    exported, _ = export_selection(ws, selection, ws.root / "exports" / "subset.jsonl")
    console.print(
        f"{len(ids)} of {selection.n_pool} {pool} examples chosen to match {target} (score: KL(target ‖ subset) after "
        f"each pick); exported with its licence metadata to {exported}"
    )
    console.rule("7. Report")
    console.print(f"HTML report (opens offline): {ts.build_report(ws)}")
    console.print(
        f'Workspace: {ws.root}  (SQL: `transferscope sql "SELECT * FROM tasks"`, or open '
        f"{ws.views_path} in any DuckDB client)"
    )
    console.print(f"Demo finished in {time.perf_counter() - started:.0f} s.")
