"""A measured-transfer run counts as done only while it was measured from the start a plan would make now: the
source checkpoint's key (base-model fingerprint, the source's exact rows, recipe, seed) or, for the baseline, the
base model's fingerprint. The real plan and flow, with fine-tuning replaced by recorders."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from store.catalog import put_task
from store.task_files import task_from_table
from store.workspace import Workspace

BUDGET = {"lr": 5e-5, "batch_size": 16, "epochs": 2, "max_examples": 500, "max_length": 32}


def reviews(offset: int) -> pd.DataFrame:
    """40 labelled review texts, numbered from ``offset``."""
    texts = [f"a review of book {i} says it is {'fine' if i % 2 else 'dull'}" for i in range(offset, offset + 40)]
    return pd.DataFrame({"text": texts, "label": [t.split()[-1] for t in texts]})


@pytest.fixture()
def measured(tmp_path, prefect_harness, monkeypatch):
    """A workspace with target 'films' (train and test) and source 'books', and the (source, seed) runs that
    fine-tune (recorded instead of run; no checkpoint is stored)."""
    import flows.measure

    films = [f"the film {i} is {'good' if i % 2 else 'bad'}" for i in range(30)]
    target = pd.DataFrame(
        {"text": films, "label": [t.split()[-1] for t in films], "split": ["train"] * 20 + ["test"] * 10}
    )
    ws = Workspace(tmp_path / "ws")
    put_task(ws, task_from_table(target, "films"))
    put_task(ws, task_from_table(reviews(0), "books"))
    runs: list[tuple[str, int]] = []

    def train_and_evaluate(train, test, *, seed, start, **_):
        runs.append(("books" if start == "tuned-checkpoint" else "", seed))
        return {"primary": 0.5}

    monkeypatch.setattr(flows.measure, "ensure_checkpoint", lambda *a, **k: "tuned-checkpoint")
    monkeypatch.setattr(flows.measure, "train_and_evaluate", train_and_evaluate)
    return ws, runs


def test_a_sources_changed_rows_or_an_unrecorded_start_are_measured_again(measured):
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.measure import MeasureRequest, measure_transfer, plan_measure
    from store.measured import put_transfer_result
    from store.rates import fine_tune_rate

    ws, runs = measured
    request = MeasureRequest(
        "films", ("books",), seeds=(0, 1), budget=BUDGET, target_budget=BUDGET, device="cpu", workspace=str(ws.root)
    )
    measure_transfer(request)
    assert sorted(runs) == [("", 0), ("", 1), ("books", 0), ("books", 1)]
    assert plan_measure(request).todo == ()  # stored from the start the plan would make: nothing to redo
    put_task(ws, task_from_table(reviews(100), "books"))  # the source re-added with other rows
    plan = plan_measure(request)
    assert plan.todo == (("books", 0), ("books", 1))  # the baseline did not change
    # no source checkpoint is cached: two source fine-tunes of 40 rows x 2 epochs, in the estimate at the rate
    assert plan.source_fine_tunes == 2 and plan.source_example_epochs == 2 * 40 * 2
    target_epochs = len(plan.todo) * plan.target_examples * 2
    assert plan.estimated_s == pytest.approx(fine_tune_rate(ws).seconds(target_epochs + 160))
    runs.clear()
    measure_transfer(plan)
    assert sorted(runs) == [("books", 0), ("books", 1)] and plan_measure(request).todo == ()
    put_transfer_result(ws, plan.config, "films", "", 1, {"primary": 0.4}, "imported")  # no start key recorded
    assert plan_measure(request).todo == (("", 1),)
    dry = CliRunner().invoke(
        app, ["--workspace", str(ws.root), "measure", "films", "--sources", "books", "--seeds", "0,1", "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    assert "and 2 source fine-tunes (checkpoints not yet cached, 80 example-epochs)" in dry.output  # 40 rows x 1


def test_a_runs_base_weights_changed_under_the_same_path_are_measured_again(measured, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from flows.measure import MeasureRequest, measure_transfer, plan_measure
    from transfer.encoder import resolve_model_path

    ws, runs = measured
    model = tmp_path / "model"
    shutil.copytree(resolve_model_path(None), model)
    request = MeasureRequest(
        "films", ("books",), seeds=(0,), budget=BUDGET, target_budget=BUDGET, model=str(model), device="cpu",
        workspace=str(ws.root),
    )  # fmt: skip
    measure_transfer(request)
    assert plan_measure(request).todo == ()
    weights = load_file(str(model / "model.safetensors"))
    name = next(iter(weights))
    save_file({**weights, name: weights[name] + torch.full_like(weights[name], 1e-3)}, str(model / "model.safetensors"))
    assert plan_measure(request).todo == (("", 0), ("books", 0))  # the same name and path, other weights
