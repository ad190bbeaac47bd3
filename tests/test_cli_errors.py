"""Every expected failure reaches a CLI user as one clear line and exit code 2 (inside a flow too); --debug shows
the traceback; a real bug keeps its traceback. Run as a user runs it: the real command in a subprocess (stdout and
stderr both checked)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from typer.testing import CliRunner

from flows.cli import app
from store.catalog import put_task
from store.task_files import load_task_dir
from store.workspace import Workspace

TARGET, SOURCE = "uci_sentiment_imdb", "uci_sentiment_amazon"


@pytest.fixture()
def cli_workspace(tmp_path, shared_tasks):
    ws = Workspace(tmp_path / "ws")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in (TARGET, SOURCE):
            put_task(ws, load_task_dir(shared_tasks / name))
    return ws


def run_cli(ws: Workspace, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "flows.cli", "--workspace", str(ws.root), "--device", "cpu", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


CASES = [
    (("rank", "nope", "--method", "centroid-cosine"), "No task 'nope' in workspace"),  # unknown task, in a flow
    (("evaluate", TARGET), f"No measured transfer for target '{TARGET}'"),  # missing measurements
    (("rank", TARGET, "--method", "bogus"), "unknown method(s) ['bogus']"),  # bad option
    (("rank", TARGET, "--method", "advisor", "--fuse", "rrf"), "do not apply to --method advisor"),  # clash
    (("select", SOURCE, "--target", TARGET, "--budget", "2.5"), "'budget' parameter"),  # bad input
    (("esm", "import", "/nonexistent-folder"), "/nonexistent-folder"),  # missing artefact
]


pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("args", "message"), CASES, ids=[c[0][0] + "-" + c[0][1] for c in CASES])
def test_expected_errors_are_one_line_and_exit_2(cli_workspace, args, message):
    result = run_cli(cli_workspace, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stdout and "Traceback" not in result.stdout + result.stderr
    assert sum(line.startswith("error:") for line in result.stdout.splitlines()) == 1


def test_a_corrupt_task_file_inside_a_flow_is_one_line(cli_workspace):
    path = cli_workspace.path(cli_workspace.read("get_task", {"name": TARGET}).path.iloc[0])
    path.write_bytes(path.read_bytes()[:-10] + b"corrupted!")
    result = run_cli(cli_workspace, "rank", TARGET, "--method", "centroid-cosine")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "fails its checksum; re-add the task with `transferscope tasks add" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_debug_shows_the_traceback_and_a_bug_keeps_it(cli_workspace, monkeypatch):
    debug = run_cli(cli_workspace, "--debug", "rank", "nope", "--method", "centroid-cosine")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "UnknownTaskError" in debug.stderr
    import store.catalog

    def broken(ws):
        raise KeyError("a bug")

    monkeypatch.setattr(store.catalog, "list_tasks", broken)
    bug = CliRunner().invoke(app, ["--workspace", str(cli_workspace.root), "tasks", "list"])
    assert bug.exit_code == 1 and type(bug.exception) is KeyError


def test_a_task_warning_is_printed_once(tmp_path):
    rows = tmp_path / "conflicts.csv"
    rows.write_text("text,label\ngood film,pos\ngood film,neg\nbad film,neg\ndull,neg\nfine,pos\n")
    result = run_cli(Workspace(tmp_path / "ws"), "tasks", "add", "conflicts", str(rows))
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert output.count("1 texts in train occur with conflicting labels") == 1
