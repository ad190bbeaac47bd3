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
from store.gc import collect_garbage
from store.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]  # CLI processes report to its server
TASKS = ("uci_sentiment_amazon", "uci_sentiment_yelp", "uci_sentiment_imdb")


def embed_command(ws: Workspace, *tasks: str, model: str) -> list[str]:
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


def one_thread() -> dict[str, str]:
    """The environment for a flow process: torch on one thread (on 2 shared cores, two threads of the tiny encoder
    spend far more time waiting on each other than computing)."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_embedding_flow_killed_mid_way_resumes_cleanly(tmp_path, task_workspace, tiny_encoder):
    ws = task_workspace(tmp_path / "ws", *TASKS, n_train=None)
    n_splits = 9  # three splits per task
    # Its own session, so the kill takes the whole process group: the flow and the Prefect server it started.
    # The tiny encoder: what is asserted is what the kill leaves and what the second run keeps, not the vectors.
    process = subprocess.Popen(
        embed_command(ws, model=tiny_encoder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=one_thread(),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert process.poll() is None, "the flow ended before it could be killed"
            if any(ws.root.glob("embeddings/*")):  # vectors written: count the committed splits, the flow stopped
                os.killpg(process.pid, signal.SIGSTOP)  # (stopped, it commits nothing between the count and the kill)
                if len(ws.sql("SELECT cache_key FROM embeddings")):
                    os.killpg(process.pid, signal.SIGKILL)
                    break
                os.killpg(process.pid, signal.SIGCONT)
            time.sleep(0.05)
        else:
            pytest.fail("the flow stored no split within 300 s")
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    before = ws.read("find_embedding_rows")
    assert 1 <= len(before) < n_splits, "kill the flow while it still has splits to embed"
    killed = ws.sql("SELECT status FROM runs WHERE flow = 'embed_tasks'")
    assert killed.status.tolist() == ["running"]  # the run row shows it never finished

    done = subprocess.run(
        embed_command(ws, model=tiny_encoder), capture_output=True, text=True, timeout=600, env=one_thread()
    )
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


def test_two_flows_at_once_on_one_workspace_lose_nothing(tmp_path, task_workspace, tiny_encoder):
    ws = task_workspace(tmp_path / "ws", *TASKS, n_train=None)
    # the tiny encoder: what is asserted is how the two processes' writes interleave, not the vectors
    first, second = (
        subprocess.Popen(
            embed_command(ws, *names, model=tiny_encoder), stderr=subprocess.PIPE, text=True, env=one_thread()
        )
        for names in ((TASKS[0], TASKS[1]), (TASKS[2], TASKS[1]))
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
