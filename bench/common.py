"""Helpers shared by the benchmarks: real texts, interleaved timing, and the JSON result line."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SHARED_TASKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tasks"
RESULTS = Path(__file__).resolve().parents[1] / "reports" / "bench"
PEER_PYTHON = Path(__file__).resolve().parents[1] / ".venv-peers" / "bin" / "python"
# Kept for independent evaluation: never the target of a measured-transfer or source-ranking grid, benchmark,
# fixture or test in this repository (they may be sources, selection pools or selection targets).
RESERVED_TARGETS = frozenset(
    {"financial_phrasebank", "poem_sentiment", "uci_sentiment_yelp", "ethos_binary", "cr", "tweeteval_stance_feminist"}
)


def machine_provenance() -> dict[str, str]:
    """The host (name and cores) and library versions a run was measured with, for its stored rows."""
    import os
    import platform

    from store.runs import library_versions

    return {
        "host": f"{platform.node()} ({os.cpu_count()} cores)",
        "versions": json.dumps(library_versions(), sort_keys=True),
    }


def check_targets(bench: str, targets: tuple[str, ...] | list[str]) -> None:
    """Refuse a transfer or ranking grid whose targets include a reserved task (`RESERVED_TARGETS`)."""
    reserved = sorted(set(targets) & RESERVED_TARGETS)
    if reserved:
        raise ValueError(
            f"The 'targets' parameter of {bench} must not name a reserved task; {reserved} are kept for "
            f"independent evaluation (sources, selection pools and selection targets only). Got {list(targets)!r}."
        )


def real_texts(n: int, tasks: tuple[str, ...] = ("sst2", "tweeteval_emotion", "ag_news", "trec", "banking77")):
    """``n`` real single texts, drawn round-robin from the training splits of the shared tasks."""
    from store.task_files import load_task_dir

    if not SHARED_TASKS.is_dir():
        raise SystemExit(f"Benchmarks read the real tasks in {SHARED_TASKS}; that folder is missing.")
    pools = [load_task_dir(SHARED_TASKS / t).split("train").column("text").to_pylist() for t in tasks]
    texts = []
    for i in range(n):
        pool = pools[i % len(pools)]
        texts.append(pool[(i // len(pools)) % len(pool)])
    return texts


def interleaved_medians(contenders: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median wall time of each callable over ``repeats`` rounds, run interleaved after one warm-up call each."""
    for fn in contenders.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def emit(result: dict[str, Any]) -> None:
    """Print the result as the last line; a full (not ``quick``) run also writes ``reports/bench/<bench>.json``."""
    if not result.get("quick"):
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{result['bench']}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


def run_peer(script: str, payload: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """Run ``script`` with .venv-peers' Python, ``payload`` as JSON on stdin; its last stdout line is JSON."""
    if not PEER_PYTHON.exists():
        raise SystemExit(
            f"{PEER_PYTHON} is missing: python3 -m venv .venv-peers && .venv-peers/bin/pip install torch==2.13.0 "
            "&& .venv-peers/bin/pip install -r bench/peers-requirements.txt"
        )
    proc = subprocess.run(
        [str(PEER_PYTHON), "-c", script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/tmp",
    )
    if proc.returncode != 0:
        raise RuntimeError(f"peer failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
