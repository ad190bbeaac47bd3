"""Task runners for the flows, and the rule that keeps the catalog in one process.

`task_runner` picks where a flow's Prefect tasks run: in-process (a one-thread pool: two torch jobs on two cores
thrash), on an existing Dask cluster (``dask_address="tcp://host:8786"``), or on a local Dask cluster started for
the flow (``dask_local=N``: N single-threaded worker processes). Apply it to any flow::

    from flows import embed_tasks
    from flows.runners import task_runner

    embed_tasks.with_options(task_runner=task_runner(dask_local=2))(tasks=["sst2"], device="cpu")

or from the CLI: ``transferscope --dask-local 2 embed`` / ``transferscope --dask-address tcp://host:8786 rank T``.

Work units are one (task, split) to embed, one source ESM, one (source, seed) fine-tune, one divergence batch:
seconds to minutes each, so scheduler overhead stays small. Tasks take names, the workspace path and small configs
and return small summaries; vectors, checkpoints and ESMs travel as files in the workspace, never through the
scheduler. Workers therefore need the workspace on a shared filesystem at the same path, and a Prefect API to
report to: set ``PREFECT_API_URL`` on remote workers. A ``dask_local`` cluster's workers are pointed at the flow's
own API (its server, or the ephemeral one it started), so they do not each start an ephemeral server.

Catalog writes — why workers never open DuckDB. Store functions take the workspace's inter-process file lock
(``flock``) around short DuckDB transactions. On one machine that serialises any number of writer processes
(tests/test_store.py), but a cluster shares the workspace over a network filesystem, where ``flock`` is only as
good as the filesystem's lock support (NFSv4 emulates it with byte-range locks; others silently keep it host-local)
and DuckDB itself does not support a database file opened from several hosts. Rather than depend on that, a task
never opens the catalog: it runs against a `WorkerWorkspace` (`store.worker`), which reads the catalog's committed
Parquet snapshots (``tables/*.parquet``, rewritten atomically after every commit, never locked) and *records* the
catalog writes the store functions make, while artefact files (Parquet, checkpoints, ESMs) are written straight to
the workspace, atomically, as before. The task returns a `Deferred` (its value and the recorded statements); the
flow, the only process that opens ``catalog.duckdb``, replays each task's statements in one transaction as soon as
that task finishes (`gather`). The same code path runs in-process, so results and stored rows are the same under
every runner; a crash between a task's end and its commit leaves only an unreferenced file, which the next run
recomputes and ``gc`` removes (as before, for a crash between file and row).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.progress import progress
from store.errors import InputError, MissingDependencyError
from store.worker import Deferred, WorkerWorkspace
from store.workspace import Workspace

T = TypeVar("T")
_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://[^\s/]+$")


def check_runner_options(dask_address: str | None = None, dask_local: int | None = None) -> None:
    """Raise a ValueError naming the problem if the runner options are unusable (no Prefect or Dask needed)."""
    if dask_address is not None and dask_local is not None:
        raise InputError(
            "Choose one Dask cluster: 'dask_address' (an existing scheduler) or 'dask_local' (start a local one). "
            f"Got both ({dask_address!r} and {dask_local!r})."
        )
    if dask_address is not None and not (isinstance(dask_address, str) and _ADDRESS.match(dask_address)):
        raise InputError(
            "The 'dask_address' parameter must be a Dask scheduler address such as 'tcp://10.0.0.5:8786'. "
            f"Got {dask_address!r} instead."
        )
    if dask_local is not None and (isinstance(dask_local, bool) or not isinstance(dask_local, int) or dask_local < 1):
        raise InputError(
            f"The 'dask_local' parameter must be a number of worker processes >= 1. Got {dask_local!r} instead."
        )


def task_runner(dask_address: str | None = None, dask_local: int | None = None) -> TaskRunner[Any]:
    """The task runner for a flow: in-process (one thread) by default, `DaskTaskRunner` on the scheduler at
    ``dask_address``, or on a local cluster of ``dask_local`` single-threaded worker processes."""
    check_runner_options(dask_address, dask_local)
    if dask_address is None and dask_local is None:
        return ThreadPoolTaskRunner(max_workers=1)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise MissingDependencyError(
            "Dask task runners need the 'prefect-dask' package (pip install prefect-dask)."
        ) from None
    if dask_address is not None:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(
        cluster_class=local_cluster,
        cluster_kwargs={"n_workers": dask_local, "threads_per_worker": 1, "processes": True},
    )


def current_api_url() -> str | None:
    """The Prefect API this process reports to: ``PREFECT_API_URL``, else the ephemeral server it started."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if url:
        return str(url)
    server = SubprocessASGIServer()  # the process-wide ephemeral server (started by the flow's client)
    return server.api_url if server.running else None


def local_cluster(**kwargs: Any) -> Any:
    """A `distributed.LocalCluster` whose workers report to this process's Prefect API (``env``), so that no
    worker starts an ephemeral API server of its own (each costs 10-30 s and a second database)."""
    from distributed import LocalCluster

    env = dict(kwargs.pop("env", None) or {})
    url = current_api_url()
    if url and "PREFECT_API_URL" not in env:
        env["PREFECT_API_URL"] = url
    return LocalCluster(env=env, **kwargs)


# ---------------------------------------------------------------------------------- deferred catalog writes


def commit(ws: Workspace, result: Deferred[T]) -> T:
    """Commit a task's recorded catalog writes in one transaction (in the flow's process); return its value."""
    if isinstance(ws, WorkerWorkspace):
        raise TypeError("Commit with the flow's Workspace, not a WorkerWorkspace.")
    if result.writes:
        with ws.transaction() as con:
            for statement, params in result.writes:
                con.execute(statement, params)
    return result.value


def gather(
    ws: Workspace, futures: Sequence[PrefectFuture[Deferred[T]]], step: str = "tasks", unit: str = "task"
) -> list[T]:
    """Wait for ``futures``, committing each task's writes as soon as it finishes (a crash loses only unfinished
    work); the values in submission order. The first failure is raised once seen (tasks finished before it are
    committed). Progress is shown as ``step`` counted in ``unit`` (`flows.progress`)."""
    index = {id(f): i for i, f in enumerate(futures)}
    values: list[Any] = [None] * len(futures)
    with progress(step, len(futures), unit) as advance:
        for future in as_completed(list(futures)):
            values[index[id(future)]] = commit(ws, future.result())
            advance(1)
    return values
