"""The public API, used the way the README uses it: only ``import transferscope as ts``, on real tasks."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import subprocess
import sys
import typing
from pathlib import Path

import pandas as pd
import pytest

import transferscope as ts

TARGET, POOL = "uci_sentiment_imdb", "uci_sentiment_amazon"
README = Path(__file__).resolve().parents[1] / "README.md"
# Each long flow's request type, planner and plan type, by the module that defines them, and the flow run_plan uses.
PLANNING = {
    "flows.rank": (("RankRequest", "plan_rank", "RankPlan"), "rank_sources"),
    "flows.select": (("SelectionRequest", "plan_selection", "SelectionPlan"), "select_training_subset"),
    "flows.measure": (("MeasureRequest", "plan_measure", "MeasurePlan"), "measure_transfer"),
    "flows.measure_selection": (
        ("MeasureSelectionRequest", "plan_measure_selection", "MeasureSelectionPlan"),
        "measure_selection",
    ),
}


def is_frozen_dataclass(kind: object) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind) and kind.__dataclass_params__.frozen


def test_every_public_name_is_documented_and_importing_it_is_light():
    for name in ts.__all__:
        item = getattr(ts, name)
        assert inspect.getdoc(item), name
        if inspect.isfunction(item):  # every function returns a DataFrame or a small frozen dataclass
            returned = typing.get_type_hints(item)["return"]
            assert returned is pd.DataFrame or is_frozen_dataclass(returned), (name, returned)
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, transferscope; print(sorted({'torch', 'prefect'} & set(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"  # flows, torch and Prefect load on first call


@pytest.mark.slow
def test_the_readme_workflow_through_the_facade(tmp_path, small_tasks, prefect_harness):
    ws = ts.Workspace(tmp_path / "ws")
    for name in (TARGET, POOL, "tweeteval_stance_atheism"):  # small real tasks: what is asserted is the facade's
        task = ts.add_task(ws, small_tasks(name))
        assert task.name == name and is_frozen_dataclass(type(task))
    embedded = ts.embed(ws, device="cpu")
    assert isinstance(embedded, pd.DataFrame) and set(embedded.task) == {TARGET, POOL, "tweeteval_stance_atheism"}
    assert embedded.columns.tolist() == ["task", "split", "n", "dim", "cached", "seconds", "run_id"]
    ranking = ts.rank_sources(ws, TARGET, methods=("centroid-cosine",), device="cpu")
    assert isinstance(ranking, pd.DataFrame) and sorted(ranking.source) == sorted([POOL, "tweeteval_stance_atheism"])
    assert ts.Results(ws).recommend_sources(TARGET, method="centroid-cosine").source.tolist() == ranking.source.tolist()
    advice = ts.advise_sources(ws, TARGET, inputs=("centroid-cosine",), atlas="none", device="cpu")
    assert isinstance(advice, pd.DataFrame) and advice.attrs["basis"] == "fused" and len(advice) == 2
    first = ts.select_subset(ws, POOL, TARGET, method="random", budget=5, seed=0)
    second = ts.select_subset(ws, POOL, TARGET, method="random", budget=5, seed=1)
    again = ts.select_subset(ws, POOL, TARGET, method="random", budget=5, seed=0)
    assert isinstance(again, pd.DataFrame) and len(again) == 5 and again.attrs["subset_id"] == first.attrs["subset_id"]
    assert again.example_id.tolist() == first.example_id.tolist()  # read back by id, in selection order
    assert second.equals(ts.Results(ws).stored_subset(POOL, TARGET, method="random", budget=5))  # the newest
    plan = ts.plan_rank(ts.RankRequest(TARGET, methods=("centroid-cosine",), workspace=str(ws.root)))
    assert is_frozen_dataclass(type(plan)) and isinstance(ts.run_plan(plan), pd.DataFrame)
    selection = ts.plan_selection(ts.SelectionRequest(POOL, TARGET, method="random", budget=5, workspace=str(ws.root)))
    assert ts.run_plan(selection).attrs["subset_id"] == first.attrs["subset_id"]  # the stored subset, as a frame
    report = ts.build_report(ws, tmp_path / "report")
    assert report == ts.Report(tmp_path / "report" / "index.html") and is_frozen_dataclass(ts.Report)


def test_planners_and_plan_types_are_public_and_run_plan_runs_each_with_its_flow(monkeypatch, tmp_path):
    import flows
    from store.errors import InputError

    for module, (names, flow) in PLANNING.items():
        for name in names:
            assert name in ts.__all__ and getattr(ts, name) is getattr(importlib.import_module(module), name)
        monkeypatch.setattr(flows, flow, lambda plan, flow=flow: (flow, plan))
    # the selection flow returns a summary with the id of the subset it stored; run_plan reads that subset back
    monkeypatch.setattr(flows, "select_training_subset", lambda plan: {"subset_id": ("select_training_subset", plan)})
    monkeypatch.setattr(ts.Results, "subset", lambda self, subset_id: subset_id)
    root = str(tmp_path / "ws")
    requests = {
        "rank_sources": ts.RankRequest("t", methods=("centroid-cosine",), workspace=root),
        "select_training_subset": ts.SelectionRequest("pool", "t", method="random", budget=5, workspace=root),
        "measure_transfer": ts.MeasureRequest("t", workspace=root),
        "measure_selection": ts.MeasureSelectionRequest("pool", "t", workspace=root),
    }
    for flow, request in requests.items():
        assert ts.run_plan(request) == (flow, request)
    with pytest.raises(InputError, match="The 'plan' parameter of run_plan must be a plan or request of plan_rank"):
        ts.run_plan({"target": "t"})


def test_the_readme_python_section_uses_only_the_facade():
    """The README's Python section imports transferscope alone and names only what it exports."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python") : text.index("\n## ", text.index("## Python") + 1)]
    code = "\n".join(re.findall(r"```python\n(.*?)```", section, re.S))
    assert re.findall(r"^\s*((?:import|from)\s+\S+)", code, re.M) == ["import transferscope"]
    named = set(re.findall(r"\bts\.(\w+)", section))
    assert named and named <= set(ts.__all__), named - set(ts.__all__)
    assert not re.search(r"`(flows|store)\.", section), "the Python section points at flows/ or store/"


def test_the_recipes_old_name_still_works_through_the_facade_for_one_release(monkeypatch, tmp_path):
    """``ts.rank_sources(..., budget=...)`` and ``ts.measure_transfer(..., budget=..., target_budget=...)`` build the
    same request as ``recipe``/``target_recipe``, with a DeprecationWarning at the user's line; both is an error."""
    import flows.measure
    import flows.rank
    from store.errors import InputError

    monkeypatch.setattr(flows.rank, "rank_sources", lambda request: request)
    monkeypatch.setattr(flows.measure, "measure_transfer", lambda request: request)
    root = tmp_path / "ws"
    with pytest.warns(DeprecationWarning, match="The 'budget' parameter of rank_sources is deprecated") as caught:
        ranked = ts.rank_sources(root, "t", methods=("centroid-cosine",), budget="paper")
    assert ranked == ts.RankRequest("t", methods=("centroid-cosine",), recipe="paper", workspace=str(root))
    with pytest.warns(DeprecationWarning, match="of measure_transfer is deprecated") as more:
        measured = ts.measure_transfer(root, "t", budget="paper", target_budget={"epochs": 1})
    assert measured == ts.MeasureRequest("t", recipe="paper", target_recipe={"epochs": 1}, workspace=str(root))
    assert {w.filename for w in [*caught, *more]} == {__file__}  # the warning points at the caller
    with pytest.raises(InputError, match="rank_sources got both 'budget' and 'recipe'"):
        ts.rank_sources(root, "t", budget="paper", recipe="small")
    with pytest.raises(InputError, match="measure_transfer got both 'target_budget' and 'target_recipe'"):
        ts.measure_transfer(root, "t", target_budget="small", target_recipe="small")
