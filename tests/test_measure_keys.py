"""A measured-transfer run counts as done only while it was measured from the start a plan would make now: the
source checkpoint's key (base-model fingerprint, the source's exact rows, recipe, seed) or, for the baseline, the
base model's fingerprint. The real plan and flow, with fine-tuning replaced by recorders."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from store.catalog import put_task
from store.task_files import task_from_table
from store.workspace import Workspace

BUDGET = {"lr": 5e-5, "batch_size": 16, "epochs": 2, "max_examples": 500, "max_length": 32}
# Measurement config hashes of two requests on `films_workspace`, computed before the recipes' `budget` names were
# renamed `recipe` (issue #28). Stored runs, the committed atlas and users' workspaces are found by these hashes:
# they must never change.
PINNED_CONFIGS = {"BUDGET": "0e5e9bf3d99662c6", "default": "62276a4e94d9423a"}


def reviews(offset: int) -> pd.DataFrame:
    """40 labelled review texts, numbered from ``offset``."""
    texts = [f"a review of book {i} says it is {'fine' if i % 2 else 'dull'}" for i in range(offset, offset + 40)]
    return pd.DataFrame({"text": texts, "label": [t.split()[-1] for t in texts]})


def films_workspace(root) -> Workspace:
    """A workspace with target 'films' (20 train and 10 test rows) and source 'books' (`reviews`)."""
    films = [f"the film {i} is {'good' if i % 2 else 'bad'}" for i in range(30)]
    target = pd.DataFrame(
        {"text": films, "label": [t.split()[-1] for t in films], "split": ["train"] * 20 + ["test"] * 10}
    )
    ws = Workspace(root)
    put_task(ws, task_from_table(target, "films"))
    put_task(ws, task_from_table(reviews(0), "books"))
    return ws


@pytest.fixture()
def measured(tmp_path, prefect_harness, monkeypatch):
    """`films_workspace`, and the (source, seed) runs that fine-tune (recorded instead of run; no checkpoint is
    stored)."""
    import flows.measure

    ws = films_workspace(tmp_path / "ws")
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
        "films", ("books",), seeds=(0, 1), recipe=BUDGET, target_recipe=BUDGET, device="cpu", workspace=str(ws.root)
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
        "films", ("books",), seeds=(0,), recipe=BUDGET, target_recipe=BUDGET, model=str(model), device="cpu",
        workspace=str(ws.root),
    )  # fmt: skip
    measure_transfer(request)
    assert plan_measure(request).todo == ()
    weights = load_file(str(model / "model.safetensors"))
    name = next(iter(weights))
    save_file({**weights, name: weights[name] + torch.full_like(weights[name], 1e-3)}, str(model / "model.safetensors"))
    assert plan_measure(request).todo == (("", 0), ("books", 0))  # the same name and path, other weights


def test_a_requests_measurement_config_never_changes_and_the_old_recipe_names_still_work(tmp_path):
    """The pinned config hashes, whichever names the request uses; ``budget``/``target_budget`` are the recipes'
    deprecated names (a warning at the caller's line), and giving a name with its old one is an error."""
    from flows.measure import MeasureRequest, plan_measure
    from store.errors import InputError

    ws = films_workspace(tmp_path / "ws")
    common = {"seeds": (0, 1), "device": "cpu", "workspace": str(ws.root)}
    request = MeasureRequest("films", ("books",), recipe=BUDGET, target_recipe=BUDGET, **common)
    assert plan_measure(request).config == PINNED_CONFIGS["BUDGET"]
    assert plan_measure(MeasureRequest("films", ("books",), **common)).config == PINNED_CONFIGS["default"]
    with pytest.warns(DeprecationWarning, match="of MeasureRequest is deprecated") as caught:
        old = MeasureRequest("films", ("books",), budget=BUDGET, target_budget=BUDGET, **common)
    assert old == request and {w.filename for w in caught} == {__file__}  # the caller's line
    assert [str(w.message) for w in caught] == [
        "The 'budget' parameter of MeasureRequest is deprecated; use 'recipe'.",
        "The 'target_budget' parameter of MeasureRequest is deprecated; use 'target_recipe'.",
    ]
    for both in ({"recipe": "small", "budget": "small"}, {"target_recipe": "small", "target_budget": "small"}):
        with pytest.raises(InputError, match=f"got both {sorted(both)[0]!r} and {sorted(both)[1]!r}"):
            MeasureRequest("films", ("books",), **both, **common)
    with pytest.raises(InputError, match="got both 'budget' and 'recipe'"):
        MeasureRequest("films", ("books",), (0,), "small", budget="small")  # the recipe given by position
    with pytest.raises(InputError, match="The 'target_recipe' parameter must be one of \\['small'\\]"):
        MeasureRequest("films", target_recipe="paper")
    with pytest.raises(InputError, match="names fields \\['epoch'\\] that Recipe does not have"):
        MeasureRequest("films", recipe={"epoch": 2})


def test_measure_takes_recipe_options_and_budget_for_one_release(tmp_path):
    """``--recipe`` and ``--target-recipe`` take a name or a JSON object of Recipe fields; ``--budget`` still works,
    with a warning on stderr; giving both is one error naming both."""
    from flows.cli import app

    ws = films_workspace(tmp_path / "ws")

    def dry(*options: str):
        args = ["--workspace", str(ws.root), "measure", "films", "--sources", "books", "--seeds", "0", *options]
        return CliRunner().invoke(app, [*args, "--dry-run"])

    new = dry("--recipe", json.dumps(BUDGET), "--target-recipe", json.dumps(BUDGET))
    old = dry("--budget", json.dumps(BUDGET), "--target-recipe", json.dumps(BUDGET))
    assert new.exit_code == old.exit_code == 0, new.output + old.output
    assert "20 examples x 2 epochs each" in new.stdout and "80 example-epochs" in new.stdout  # BUDGET: 2 epochs
    assert old.stdout == new.stdout and not new.stderr
    assert old.stderr.strip() == "warning: --budget is deprecated for rank/measure; use --recipe"
    assert "20 examples x 3 epochs each" in dry().stdout  # the defaults: small, 3 target epochs
    both = dry("--recipe", "small", "--budget", "small")
    assert both.exit_code == 2 and "error: --budget and --recipe both given" in both.stdout
    bad = dry("--target-recipe", "{epochs: 2}")
    text = " ".join(bad.output.replace("│", " ").split())  # unwrapped from click's error box
    assert bad.exit_code == 2 and "--target-recipe: expected a recipe name or a JSON object of Recipe fields" in text
