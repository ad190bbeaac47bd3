"""A flow killed mid-way (SIGKILL, no clean-up of any kind) resumes without duplicate rows or corrupt files: the
embedding flow over three real tasks is killed once its first split is stored, then run again to completion."""

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
from store.tasks import load_task_dir
from store.workspace import Workspace

pytestmark = pytest.mark.slow
TASKS = ("uci_sentiment_amazon", "uci_sentiment_yelp", "uci_sentiment_imdb")


def embed_command(ws: Workspace) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "--workspace", str(ws.root), "--device", "cpu", "embed"]


def test_embedding_flow_killed_mid_way_resumes_cleanly(tmp_path, shared_tasks):
    ws = Workspace(tmp_path / "ws")
    for name in TASKS:
        put_task(ws, load_task_dir(shared_tasks / name))
    n_splits = 9  # three splits per task
    process = subprocess.Popen(embed_command(ws), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not ws.read("find_embedding_rows").shape[0] and time.monotonic() < deadline:
            assert process.poll() is None, "the flow ended before it could be killed"
            time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
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
