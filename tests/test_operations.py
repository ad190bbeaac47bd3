"""Operations safety with real processes: a flow killed mid-way (SIGKILL, no clean-up of any kind) resumes without
duplicate rows or corrupt files; two flows started at once on one workspace serialise their writes and lose
nothing, while ad-hoc SQL reads the last committed state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from store.archive import verify_artefacts
from store.catalog import put_task
from store.gc import collect_garbage
from store.task_files import load_task_dir
from store.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]  # CLI processes report to its server
TASKS = ("uci_sentiment_amazon", "uci_sentiment_yelp", "uci_sentiment_imdb")


def embed_command(ws: Workspace, *tasks: str, model: str = "all-MiniLM-L6-v2") -> list[str]:
    return [
        sys.executable,
        "-m",
        "flows.cli",
        "--workspace",
        str(ws.root),
        "--device",
        "cpu",
        "embed",
        *tasks,
        "--split",
        "all",
        "--model",
        model,
    ]


def test_embedding_flow_killed_mid_way_resumes_cleanly(tmp_path, shared_tasks):
    ws = Workspace(tmp_path / "ws")
    for name in TASKS:
        put_task(ws, load_task_dir(shared_tasks / name))
    n_splits = 9  # three splits per task
    # Its own session, so the kill takes the whole process group: the flow and the Prefect server it started.
    process = subprocess.Popen(
        embed_command(ws), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        while not ws.read("find_embedding_rows").shape[0] and time.monotonic() < deadline:
            assert process.poll() is None, "the flow ended before it could be killed"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    before = ws.read("find_embedding_rows")
    assert 1 <= len(before) < n_splits, "kill the flow while it still has splits to embed"
    killed = ws.sql("SELECT status FROM runs WHERE flow = 'embed_tasks'")
    assert killed.status.tolist() == ["running"]  # the run row shows it never finished

    done = subprocess.run(embed_command(ws), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = ws.read("find_embedding_rows")
    assert len(after) == n_splits and after.cache_key.is_unique
    assert after.groupby(["task", "split"]).size().eq(1).all()
    # Splits stored before the kill were reused, not recomputed.
    kept = after.set_index("cache_key").loc[before.cache_key, "created_at"]
    assert (kept.to_numpy() == before.set_index("cache_key").created_at.to_numpy()).all()
    assert verify_artefacts(ws) == []
    runs = ws.sql("SELECT status FROM runs WHERE flow = 'embed_tasks' ORDER BY started_at")
    assert runs.status.tolist() == ["running", "completed"]
    # Whatever the kill left half-written is unreferenced: gc removes it and nothing that is referenced.
    collect_garbage(ws, min_age_s=0)
    assert verify_artefacts(ws) == [] and not list(ws.root.glob("embeddings/*.tmp-*"))


def test_two_flows_at_once_on_one_workspace_lose_nothing(tmp_path, shared_tasks, tiny_encoder):
    ws = Workspace(tmp_path / "ws")
    for name in TASKS:
        put_task(ws, load_task_dir(shared_tasks / name))
    # the tiny encoder: what is asserted is how the two processes' writes interleave, not the vectors
    first = subprocess.Popen(
        embed_command(ws, TASKS[0], TASKS[1], model=tiny_encoder), stderr=subprocess.PIPE, text=True
    )
    second = subprocess.Popen(
        embed_command(ws, TASKS[2], TASKS[1], model=tiny_encoder), stderr=subprocess.PIPE, text=True
    )
    seen = set()
    try:
        while first.poll() is None or second.poll() is None:  # SQL over the views while both flows write
            seen.add(len(ws.sql("SELECT * FROM embeddings")))
            time.sleep(0.5)
        assert first.wait() == 0 and second.wait() == 0, (first.stderr.read()[-2000:], second.stderr.read()[-2000:])
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
    rows = ws.read("find_embedding_rows")
    assert len(rows) == 9 and rows.groupby(["task", "split"]).size().eq(1).all()  # the shared task stored once
    assert verify_artefacts(ws) == []
    assert ws.sql("SELECT status FROM runs").status.tolist() == ["completed", "completed"]
    assert len(seen) > 1  # the readers saw the store grow, commit by commit
