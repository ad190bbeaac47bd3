"""``python -m bench ranking_quality``: how well each ranking method predicts real intermediate-task transfer.

Grid: the six targets our collection shares with TaskWeb (rte, cb, mrpc, stsb, wic, mr: an external check on
the measured gains), each against 11 sources (the other five plus sst2, trec, ag_news, sick_nli,
financial_phrasebank, subj); target training data capped at 300 examples (3 epochs, batch 16, lr 5e-5, 6% warm-up,
max_length 64: about 45 s per fine-tune on 2 idle cores), sources at the small budget (500 examples, 1 epoch), 2
seeds. Per target: `rank_sources` with ESM-LogME and the cheap divergences, `measure_transfer`, then
`evaluate_rankings`. Everything resumes (cached checkpoints, ESMs, measured runs), so a grid longer than one
session finishes over several; the results table is written to ``reports/results/`` only once the grid is complete.
``--quick``: one small target, two sources, one seed, tiny budgets (a few minutes).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

from bench.common import SHARED_TASKS, emit

RESULTS = Path(__file__).resolve().parents[1] / "reports" / "results"
# Outside the repository and /tmp, so a grid interrupted by the end of a session resumes in the next one.
WORKSPACE = Path(os.environ.get("TRANSFERSCOPE_BENCH_WORKSPACE", "~/.cache/transferscope/bench/ranking-quality"))
WORKSPACE = WORKSPACE.expanduser()
TARGETS = ("rte", "cb", "mrpc", "stsb", "wic", "mr")
EXTRA_SOURCES = ("sst2", "trec", "ag_news", "sick_nli", "financial_phrasebank", "subj")
METHODS = ("esm-logme", "centroid-cosine", "mmd", "frechet", "knn-kl")
TARGET_BUDGET = {"lr": 5e-5, "batch_size": 16, "epochs": 3, "max_examples": 300, "max_length": 64, "warmup_ratio": 0.06}
QUICK_BUDGET = {"lr": 5e-5, "batch_size": 16, "epochs": 1, "max_examples": 64, "max_length": 32, "warmup_ratio": 0.06}
METRICS = ("regret@1", "regret@3", "regret@5", "ndcg@5", "spearman")


def grid(quick: bool) -> dict:
    if quick:
        return {
            "targets": ("uci_sentiment_imdb",),
            "sources": ("uci_sentiment_amazon", "tweeteval_stance_atheism"),
            "seeds": (0,),
            "budget": QUICK_BUDGET,
            "target_budget": QUICK_BUDGET,
            "workspace": WORKSPACE / "quick",
        }
    return {
        "targets": TARGETS,
        "sources": TARGETS + EXTRA_SOURCES,
        "seeds": (0, 1),
        "budget": "small",
        "target_budget": TARGET_BUDGET,
        "workspace": WORKSPACE / "full",
    }


def run(quick: bool = False) -> None:
    from flows import evaluate_rankings, measure_transfer, rank_sources
    from store.catalog import put_task
    from store.results import Results
    from store.tasks import load_task_dir
    from store.workspace import Workspace

    config = grid(quick)
    ws = Workspace(config["workspace"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(set(config["targets"]) | set(config["sources"])):
            put_task(ws, load_task_dir(SHARED_TASKS / name))
    runtimes: dict[str, float] = {}
    for target in config["targets"]:
        sources = [s for s in config["sources"] if s != target]
        for method in METHODS:
            start = time.perf_counter()
            rank_sources(
                target=target,
                sources=sources,
                methods=(method,),
                budget=config["budget"],
                device="cpu",
                workspace=str(ws.root),
            )
            runtimes[method] = runtimes.get(method, 0.0) + time.perf_counter() - start
        measure_transfer(
            target=target,
            sources=sources,
            seeds=config["seeds"],
            budget=config["budget"],
            target_budget=config["target_budget"],
            device="cpu",
            workspace=str(ws.root),
        )
        evaluate_rankings(target=target, workspace=str(ws.root))
    quality = Results(ws).method_quality()
    table = quality.groupby("method")[[m for m in METRICS if m in quality.columns]].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    gains = ws.sql("SELECT target, source, mean_gain, std_gain, positive_share, p_value FROM transfer_gains")
    result = {
        "bench": "ranking_quality",
        "quick": quick,
        "grid": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items() if k != "workspace"},
        "methods": json.loads(table.reset_index().to_json(orient="records")),
        "per_target": json.loads(quality.to_json(orient="records")),
        "method_seconds_total": runtimes,
        "mean_gain_by_source": json.loads(gains.groupby("source").mean_gain.mean().to_json()),
    }
    if not quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "ranking_quality.json").write_text(json.dumps(result, indent=1) + "\n")
        table.round(4).to_csv(RESULTS / "ranking_quality.csv")
    emit(result)
