"""Deployments: schedules from one place, typed parameters, the workspace as a parameter (fast); the `refresh` and
`measure_grid` flows on small real tasks (slow, session harness); and end to end (slow, its own server): a real
`prefect server start`, `transferscope serve` against it, one on-demand selection triggered through the API and
checked in the store."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from store.catalog import put_task
from store.task_files import load_task_dir

POOL, TARGET, OTHER = "uci_sentiment_amazon", "uci_sentiment_imdb", "uci_sentiment_yelp"
BIN = Path(sys.executable).parent
TINY = {"max_examples": 16, "epochs": 1, "batch_size": 8, "max_length": 32}  # a few optimiser steps per fine-tune


# ------------------------------------------------------------------------------------------ deployments (fast)


def test_deployments_take_their_schedules_from_one_place(tmp_path, monkeypatch):
    from flows.deploy import DEPLOYMENT, SCHEDULES, build_deployments

    monkeypatch.chdir(tmp_path)
    refresh, grid, select, worth = build_deployments("ws", [TARGET], device="cpu")
    assert [d.full_name for d in (refresh, grid, select, worth)] == [
        f"refresh/{DEPLOYMENT}",
        f"measure_grid/{DEPLOYMENT}",
        f"select_training_subset/{DEPLOYMENT}",
        f"measure_selection/{DEPLOYMENT}",
    ]
    assert [d.entrypoint for d in (refresh, grid, select, worth)] == [
        "flows.deploy.refresh",
        "flows.deploy.measure_grid",
        "flows.select.select_training_subset",
        "flows.measure_selection.measure_selection",
    ]
    crons = [[(s.schedule.cron, s.schedule.timezone, s.active) for s in d.schedules] for d in (refresh, grid, select)]
    assert crons == [[(SCHEDULES.refresh, "UTC", True)], [(SCHEDULES.measure_grid, "UTC", True)], []]
    assert worth.schedules == [] and worth.parameters == {} == select.parameters  # one request each, on demand
    root = str(tmp_path / "ws")  # resolved when serving, so runs write where the server was started for
    assert refresh.parameters == grid.parameters == {"targets": [TARGET], "device": "cpu", "workspace": root}
    for deployment, request in ((select, "SelectionRequest"), (worth, "MeasureSelectionRequest")):
        schema = deployment._parameter_openapi_schema.model_dump()
        assert schema["required"] == ["plan"] and schema["definitions"][request]["required"] == ["pool", "targets"]
    budget = select._parameter_openapi_schema.model_dump()["definitions"]["SelectionRequest"]["properties"]["budget"]
    assert {t["type"] for t in budget["anyOf"]} == {"integer", "number", "null"}
    assert grid._parameter_openapi_schema.model_dump()["required"] == ["targets"]
    ranked, measured = (set(d._parameter_openapi_schema.model_dump()["properties"]) for d in (refresh, grid))
    assert "recipe" in ranked and {"recipe", "target_recipe"} <= measured  # fine-tuning recipes, by that name
    assert not {"budget", "target_budget"} & (ranked | measured)

    hourly = replace(SCHEDULES, refresh="0 * * * *", timezone="Europe/Berlin")
    refresh, grid, _, _ = build_deployments("ws", [TARGET], schedules=hourly, active=False)
    assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in refresh.schedules] == [
        ("0 * * * *", "Europe/Berlin", False)
    ]
    refresh, grid, _, _ = build_deployments("ws")  # no targets: the refresh only embeds; the grid waits for targets
    assert "targets" not in refresh.parameters and [s.active for s in refresh.schedules] == [True]
    assert [s.active for s in grid.schedules] == [False]


def test_schedules_reject_bad_cron_strings_and_time_zones():
    from flows.deploy import SCHEDULES

    with pytest.raises(ValueError, match="Invalid cron string"):
        replace(SCHEDULES, measure_grid="every sunday")
    with pytest.raises(ValueError, match="IANA time zone"):
        replace(SCHEDULES, timezone="Mars/Olympus")
    assert replace(SCHEDULES, refresh=None).refresh is None  # on demand only


def test_cli_serve_checks_before_serving(tmp_path, task_workspace):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.cli import app

    ws = task_workspace(tmp_path / "ws", TARGET)
    args = ["--workspace", str(ws.root), "serve"]
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "PREFECT_API_URL is not set" in result.output
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # nothing listens: never reached
        bad_cron = CliRunner().invoke(app, [*args, "--cron", "refresh=at midnight"])
        bad_name = CliRunner().invoke(app, [*args, "--cron", "nightly=0 2 * * *"])
        missing = CliRunner().invoke(app, [*args, "--targets", f"{TARGET},nope"])
    assert bad_cron.exit_code == 2 and "Invalid cron string" in bad_cron.output
    assert bad_name.exit_code == 2 and "expected NAME=CRON" in bad_name.output
    assert missing.exit_code == 2 and "['nope'] are not stored tasks" in missing.output


# ------------------------------------------------------------------------------- the deployed flows (slow)


@pytest.fixture(scope="module")
def small_workspace(tmp_path_factory, task_workspace, prefect_harness):
    return task_workspace(tmp_path_factory.mktemp("deploy") / "ws", POOL, TARGET, OTHER)


@pytest.mark.slow
def test_refresh_ranks_again_only_when_tasks_change(small_workspace, small_tasks, tiny_encoder):
    from flows.deploy import refresh
    from store.results import Results

    ws = small_workspace
    options = {
        "targets": [TARGET],
        "methods": ("centroid-cosine",),
        "model": tiny_encoder,  # what is asserted is when the refresh ranks, not what it finds
        "device": "cpu",
        "workspace": str(ws.root),
    }

    def distinct(column: str, table: str) -> int:
        return int(ws.sql(f"SELECT count(DISTINCT {column}) AS n FROM {table}")["n"].iloc[0])

    assert refresh(**options) == {TARGET: "ranked"}
    ranking = Results(ws).recommend_sources(TARGET, method="centroid-cosine")
    assert sorted(ranking.source) == [POOL, OTHER]
    embedded, rankings = distinct("cache_key", "embeddings"), distinct("run_id", "pair_scores")
    assert embedded == 3 * 3  # every split of every task, with embed_tasks' defaults (the divergences reuse them)

    assert refresh(**options) == {TARGET: "unchanged"}
    assert (distinct("cache_key", "embeddings"), distinct("run_id", "pair_scores")) == (embedded, rankings)
    stored = ws.sql("SELECT params_json FROM runs WHERE flow = 'refresh'").params_json
    assert [json.loads(p)["budget"] for p in stored] == ["small"]  # the recipe under its old key: hashes still match

    put_task(ws, load_task_dir(small_tasks(POOL, n_train=60)))  # a changed source
    assert refresh(**options) == {TARGET: "ranked"}
    assert distinct("run_id", "pair_scores") == rankings + 1
    assert Results(ws).recommend_sources(TARGET, method="centroid-cosine").run_id.iloc[0] != ranking.run_id.iloc[0]
    with pytest.raises(ValueError, match=r"not stored: \['nope'\]"):
        refresh(targets=["nope"], workspace=str(ws.root))


@pytest.mark.slow
def test_measure_grid_measures_and_evaluates_each_target(small_workspace, tiny_encoder):
    from flows.deploy import measure_grid

    ws = small_workspace
    quality = measure_grid(
        targets=[TARGET],
        sources=[POOL, OTHER, TARGET],  # the target itself is left out of its own sources
        seeds=(0,),
        recipe=TINY,
        target_recipe=TINY,
        model=tiny_encoder,  # what is asserted is what the grid stores and evaluates, not what a fine-tune learns
        device="cpu",
        workspace=str(ws.root),
    )
    gains = ws.sql("SELECT target, source FROM transfer_gains ORDER BY source")
    assert gains.values.tolist() == [[TARGET, POOL], [TARGET, OTHER]]
    assert "random" in quality[TARGET].index
    with pytest.raises(ValueError, match="leaves no source"):
        measure_grid(targets=[TARGET], sources=[TARGET], workspace=str(ws.root))


# ------------------------------------------------------------------------- end to end: server + serve (slow)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A subprocess leading its own process group (so its children stop with it), output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM to the process group of ``process``, SIGKILL to whatever is left after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_for(what: str, check, processes: dict[str, tuple[subprocess.Popen, Path]], timeout: float) -> object:
    """Poll ``check()`` until it returns something truthy; fail with the logs if a process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, (process, log) in processes.items():
            if process.poll() is not None:
                pytest.fail(f"{name} exited ({process.returncode}) while waiting for {what}:\n{tail(log)}")
        with contextlib.suppress(Exception):
            found = check()
            if found:
                return found
        time.sleep(0.25)
    logs = "\n".join(f"--- {name}\n{tail(log)}" for name, (_, log) in processes.items())
    pytest.fail(f"no {what} after {timeout:.0f} s:\n{logs}")


def tail(log: Path, n: int = 4000) -> str:
    return log.read_text(errors="replace")[-n:]


def healthy(api: str) -> bool:
    with urllib.request.urlopen(f"{api}/health", timeout=5) as response:
        return response.status == 200


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_serve_runs_an_on_demand_selection_triggered_through_the_api(tmp_path, task_workspace, small_tasks):
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import DEPLOYMENT
    from store.results import Results

    ws = task_workspace(tmp_path / "ws", POOL, TARGET)
    home, port = tmp_path / "prefect-home", free_port()
    home.mkdir()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    server_command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]
    serve_command = [str(BIN / "transferscope"), "--workspace", str(ws.root), "--device", "cpu", "serve"]
    serve_command += ["--targets", TARGET, "--no-schedules"]
    processes: dict[str, tuple[subprocess.Popen, Path]] = {}
    try:
        processes["server"] = (start(server_command, env, tmp_path / "server.log"), tmp_path / "server.log")
        wait_for("healthy server", lambda: healthy(api), processes, timeout=240)
        serve_env = env | {"PREFECT_API_URL": api, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
        processes["serve"] = (start(serve_command, serve_env, tmp_path / "serve.log"), tmp_path / "serve.log")
        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            flows = ("refresh", "measure_grid", "select_training_subset", "measure_selection")
            names = [f"{flow}/{DEPLOYMENT}" for flow in flows]
            deployments = wait_for(
                "served deployments", lambda: [client.read_deployment_by_name(n) for n in names], processes, 240
            )
            assert [d.parameters.get("workspace") for d in deployments] == [str(ws.root), str(ws.root), None, None]
            assert deployments[0].parameters["targets"] == [TARGET]
            assert [[s.active for s in d.schedules] for d in deployments] == [
                [False],
                [False],
                [],
                [],
            ]  # --no-schedules
            run = run_deployment(
                f"select_training_subset/{DEPLOYMENT}",
                parameters={"plan": {"pool": POOL, "targets": [TARGET], "method": "random", "budget": 40}},
                timeout=300,
                poll_interval=1,
                as_subflow=False,
            )
        assert run.state is not None and run.state.is_completed(), f"{run.state}\n{tail(tmp_path / 'serve.log')}"
        frame = Results(ws).stored_subset(POOL, TARGET, "random", 40)
        ids = frame.example_id.tolist()
        pool_ids = set(load_task_dir(small_tasks(POOL)).split("train").column("example_id").to_pylist())
        assert len(ids) == 40 == len(set(ids)) and set(ids) <= pool_ids
        assert frame.attrs["run_id"] in set(ws.sql("SELECT run_id FROM runs WHERE status = 'completed'").run_id)
    finally:
        for process, _ in reversed(processes.values()):
            stop(process)
    assert all(process.poll() is not None for process, _ in processes.values())
