"""``python -m bench rank_scale``: ranking at the ESM-LogME paper's scale (Schulte et al. 2024 rank 1,553 sources):
one target against 1,000 sources through the CLI, end to end, with every ESM already stored (imported).

Setup (not timed, reported): a fresh workspace under /tmp with the real target ``mr`` and 1,000 small sources, each
120 training and 30 test rows sampled (seeded by its number) from one of ten real single-text tasks (sentiment,
topic, question type, emotion, subjectivity, intent, spam, clickbait, fact checking, grammaticality), so the
leakage guard has real overlaps to find (mr shares sentences with sst2). Each source's ESM is a seeded affine map
near the identity (`bench.esm_logme.synthetic_esms`), stored under the cache key of the rows the source would be
tuned on, as ``transferscope esm import`` would store a fitted one.

Timed: ``transferscope rank mr --method esm-logme --dry-run`` (the plan: leakage guard and ESM lookup per source)
and ``transferscope rank mr --method esm-logme`` (plan, flow, 1,000 ESM-LogME scores, the stored ranking), each a
fresh process. Target: the full command under 60 s on 2 cores; the time per source is stated. ``--quick``: 50
sources, nothing written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from bench.common import SHARED_TASKS, emit

TARGET = "mr"
BASES = (
    "sst2", "ag_news", "trec", "tweeteval_emotion", "subj", "banking77", "sms_spam", "clickbait", "liar", "cola",
)  # fmt: skip
TRAIN_ROWS, TEST_ROWS = 120, 30
GOAL_SECONDS = 60.0


def synthetic_sources(n: int) -> list:
    """``n`` small real-text tasks, each a seeded sample of one base task's training rows (labels as names)."""
    from store.task_files import load_task_dir, task_from_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bases = {name: load_task_dir(SHARED_TASKS / name) for name in BASES}
    tasks = []
    for i in range(n):
        base = bases[BASES[i % len(BASES)]]
        rows = base.split("train").to_pandas()
        picked = rows.sample(TRAIN_ROWS + TEST_ROWS, random_state=i).reset_index(drop=True)
        frame = pd.DataFrame(
            {
                "text": picked.text,
                "label": [base.label_names[int(v)] for v in picked.label],
                "split": ["train"] * TRAIN_ROWS + ["test"] * TEST_ROWS,
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tasks.append(task_from_table(frame, f"{base.name}-{i:04d}", label_names=base.label_names))
    return tasks


def build(root: Path, n: int) -> dict[str, float]:
    """The workspace: the target, ``n`` sources and one stored ESM each; returns setup seconds per step."""
    from bench.esm_logme import synthetic_esms
    from flows.checkpoints import checkpoint_key, sources_data
    from flows.embed import EncoderSettings
    from store.catalog import put_task
    from store.esms import put_esm
    from store.task_files import load_task_dir
    from store.workspace import Workspace
    from transfer.finetune import SMALL_BUDGET

    started = time.perf_counter()
    ws = Workspace(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        put_task(ws, load_task_dir(SHARED_TASKS / TARGET))
    sources = synthetic_sources(n)
    for task in sources:
        put_task(ws, task)
    tasks_s = time.perf_counter() - started
    base = EncoderSettings.of_recipe(SMALL_BUDGET, EncoderSettings.model, "cpu").load()
    maps = synthetic_esms(384, list(range(n)))
    rows_of = sources_data(ws, [task.name for task in sources], SMALL_BUDGET, 0)  # one leakage index for all
    for i, task in enumerate(sources):
        data = rows_of[task.name]
        checkpoint = checkpoint_key(data, SMALL_BUDGET, model=EncoderSettings.model, base_fp=base.fingerprint, seed=0)
        put_esm(
            ws, maps[f"source{i}"], base_model="all-MiniLM-L6-v2", base_fp=base.fingerprint, source=task.name,
            data_hash=data.data_hash, checkpoint_key=checkpoint.cache_key,
        )  # fmt: skip
    return {"tasks_s": round(tasks_s, 1), "esms_s": round(time.perf_counter() - started - tasks_s, 1)}


def timed(argv: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        output = done.stdout[-2000:] + done.stderr[-3000:]
        raise RuntimeError(f"{' '.join(argv[:6])} failed ({done.returncode}):\n{output}")
    return seconds, done.stdout


def run(quick: bool = False) -> None:
    n = 50 if quick else 1000
    with tempfile.TemporaryDirectory(prefix="transferscope-rank-scale-") as tmp:
        setup = build(Path(tmp) / "ws", n)
        cli = [sys.executable, "-m", "flows.cli", "--workspace", str(Path(tmp) / "ws"), "--device", "cpu"]
        rank = [*cli, "rank", TARGET, "--method", "esm-logme", "--top", "3"]
        plan_s, _ = timed([*rank, "--dry-run"])
        rank_s, _ = timed(rank)
        stored = subprocess.run(
            [*cli, "sql", "SELECT count(*) AS n FROM pair_scores WHERE method = 'esm-logme'"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    emit(
        {
            "bench": "rank_scale",
            "quick": quick,
            "sources": n,
            "target": TARGET,
            "setup_s": setup,
            "dry_run_s": round(plan_s, 1),
            "rank_s": round(rank_s, 1),
            "ms_per_source": round(1000 * rank_s / n, 1),
            "goal_s": GOAL_SECONDS,
            "goal_met": bool(rank_s < GOAL_SECONDS),
            "stored_scores": int(next(t for t in stored.split() if t.isdigit())),
            "load_average": [round(v, 2) for v in os.getloadavg()],
        }
    )
