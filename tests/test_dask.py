"""Task runners: the choice and its errors, and the embedding flow plus one scoring flow on a real 2-worker Dask
`LocalCluster` giving the in-process results.

"Identical" (DECISIONS.md, Dask results): the stored vectors are compared bitwise, because both runs pin what
decides the bits: one torch thread (the test pins it in-process; the Dask nanny starts workers with
OMP_NUM_THREADS=1, checked below), the same batch size and so the same batch composition, the same CPU kernels.
Divergence scores go through numpy/BLAS, whose thread count differs between the test process and the workers, so
they are compared within 1e-6 relative, and the rankings exactly.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.runners import check_runner_options, local_cluster, task_runner
from store.workspace import Workspace

EMBEDDED = ("uci_sentiment_amazon", "uci_sentiment_imdb")
TARGET, SOURCES = "uci_sentiment_imdb", ["uci_sentiment_amazon", "cb"]  # cb is embedded by the scoring flow itself
MEASURES = ("centroid-cosine", "mmd")


def test_task_runner_choices():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    default = task_runner()
    assert isinstance(default, ThreadPoolTaskRunner) and default._max_workers == 1
    remote = task_runner(dask_address="tcp://10.0.0.5:8786")
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    local = task_runner(dask_local=3)
    assert isinstance(local, DaskTaskRunner) and local.cluster_class is local_cluster
    assert local.cluster_kwargs == {"n_workers": 3, "threads_per_worker": 1, "processes": True}


@pytest.mark.parametrize(
    ("address", "local", "message"),
    [
        ("tcp://a:1", 2, "Choose one Dask cluster"),
        ("localhost:8786", None, "'dask_address' parameter must be a Dask scheduler address"),
        ("", None, "'dask_address' parameter must be"),
        (None, 0, "'dask_local' parameter must be a number of worker processes >= 1. Got 0"),
        (None, True, "'dask_local' parameter must be"),
    ],
)
def test_bad_runner_options(address, local, message):
    with pytest.raises(ValueError, match=message):
        check_runner_options(address, local)
    with pytest.raises(ValueError, match=message):
        task_runner(address, local)


def test_cli_rejects_bad_runner_options():
    from flows.cli import app

    for args in (
        ["--dask-local", "0"],
        ["--dask-address", "nowhere"],
        ["--dask-local", "2", "--dask-address", "tcp://a:1"],
    ):
        result = CliRunner().invoke(app, [*args, "tasks", "list"])
        assert result.exit_code == 2, result.output
        assert "dask" in result.output.lower()


def test_local_cluster_points_workers_at_this_process_api(monkeypatch):
    import distributed
    from prefect.settings import PREFECT_API_URL, temporary_settings

    seen = {}
    monkeypatch.setattr(distributed, "LocalCluster", lambda **kwargs: seen.update(kwargs))
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4321/api"}):
        local_cluster(n_workers=2, env={"OTHER": "1"})
    assert seen == {"n_workers": 2, "env": {"OTHER": "1", "PREFECT_API_URL": "http://127.0.0.1:4321/api"}}


def _run_flows(ws: Workspace, model: str, runner=None):
    from flows import embed_tasks, rank_sources
    from flows.rank import RankRequest

    embed = embed_tasks if runner is None else embed_tasks.with_options(task_runner=runner)
    rank = rank_sources if runner is None else rank_sources.with_options(task_runner=runner)
    embedded = embed(tasks=list(EMBEDDED), splits=["train"], model=model, device="cpu", workspace=str(ws.root))
    request = RankRequest(TARGET, tuple(SOURCES), tuple(MEASURES), model=model, device="cpu", workspace=str(ws.root))
    ranking = rank(request)
    return embedded, ranking


def _vectors(ws: Workspace):
    rows = ws.sql("SELECT cache_key, n, dim, checksum FROM embeddings ORDER BY task, split")
    vectors = ws.sql("SELECT task, example_id, embedding FROM embedding_vectors ORDER BY task, split, example_id")
    return rows, vectors


@pytest.mark.slow
def test_embedding_and_scoring_flows_on_a_local_cluster_match_in_process(
    tmp_path, task_workspace, prefect_harness, tiny_encoder
):
    """With the tiny encoder and small tasks: what must match is the runner's plumbing, not what MiniLM computes."""
    import distributed
    import torch
    from prefect.settings import PREFECT_API_URL

    started = time.perf_counter()
    names = sorted({*EMBEDDED, *SOURCES, TARGET})
    local, remote = task_workspace(tmp_path / "local", *names), task_workspace(tmp_path / "dask", *names)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the Dask workers: one torch thread, so the same reductions in the same order
    try:
        local_embedded, local_ranking = _run_flows(local, tiny_encoder)
    finally:
        torch.set_num_threads(threads)

    def guard_catalog() -> None:  # runs in each worker process: opening the catalog there is an error
        import duckdb

        import flows.runners
        import store.worker

        connect = duckdb.connect

        def checked(database=":memory:", *args, **kwargs):
            if str(database).endswith("catalog.duckdb"):
                raise RuntimeError(f"a Dask worker opened the catalog {database}")
            return connect(database, *args, **kwargs)

        duckdb.connect = checked
        flows.runners.TASKS_RUN = 0
        init = store.worker.WorkerWorkspace.__init__

        def counting(self, root):
            flows.runners.TASKS_RUN += 1
            init(self, root)

        store.worker.WorkerWorkspace.__init__ = counting

    def worker_state() -> tuple[str | None, int, int]:
        import os

        import torch

        import flows.runners

        return os.environ.get("PREFECT_API_URL"), torch.get_num_threads(), getattr(flows.runners, "TASKS_RUN", 0)

    # The workers report to the session's test server (local_cluster passes PREFECT_API_URL), not to servers of
    # their own.
    cluster = local_cluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with distributed.Client(cluster, set_as_default=False) as client:
            client.run(guard_catalog)
            states = client.run(worker_state)
        assert len(states) == 2
        assert {api for api, _, _ in states.values()} == {PREFECT_API_URL.value()}
        assert {n for _, n, _ in states.values()} == {1}
        remote_embedded, remote_ranking = _run_flows(
            remote, tiny_encoder, task_runner(dask_address=cluster.scheduler_address)
        )
        with distributed.Client(cluster, set_as_default=False) as client:
            ran = sum(n for _, _, n in client.run(worker_state).values())
    finally:
        cluster.close()
    assert ran == len(EMBEDDED) + len(MEASURES)  # every embedding task and each measure's task ran on the workers

    strip = [{k: v for k, v in r.items() if k not in ("seconds", "run_id")} for r in local_embedded]
    assert strip == [{k: v for k, v in r.items() if k not in ("seconds", "run_id")} for r in remote_embedded]
    assert not any(r["cached"] for r in remote_embedded)
    (local_rows, local_vectors), (remote_rows, remote_vectors) = _vectors(local), _vectors(remote)
    assert len(local_rows) == len(EMBEDDED) + 1  # amazon, imdb (embed flow) and cb (scoring flow), train only
    assert local_rows.equals(remote_rows)  # same cache keys, sizes and file checksums
    assert local_vectors[["task", "example_id"]].equals(remote_vectors[["task", "example_id"]])
    assert np.array_equal(np.stack(local_vectors.embedding), np.stack(remote_vectors.embedding))  # bitwise

    assert set(local_ranking.method) == set(MEASURES)
    for method in MEASURES:
        ours = local_ranking[local_ranking.method == method].reset_index(drop=True)
        theirs = remote_ranking[remote_ranking.method == method].reset_index(drop=True)
        assert ours.source.tolist() == theirs.source.tolist() and ours["rank"].tolist() == theirs["rank"].tolist()
        np.testing.assert_allclose(theirs.score.to_numpy(), ours.score.to_numpy(), rtol=1e-6, atol=0)
    runs = remote.sql("SELECT flow, status FROM runs ORDER BY started_at")
    assert runs.values.tolist() == [["embed_tasks", "completed"], ["rank_sources", "completed"]]
    stored = remote.sql("SELECT DISTINCT run_id FROM embeddings WHERE task = 'cb'")
    assert stored.run_id.tolist() == remote_ranking.run_id.unique().tolist()  # committed by the flow, its run
    print(f"in-process and 2-worker Dask runs compared in {time.perf_counter() - started:.0f} s")
