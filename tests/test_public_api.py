"""The public API, used the way the README uses it: only ``import transferscope as ts``, on real tasks."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

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


def test_every_public_name_is_documented_and_importing_it_is_light():
    for name in ts.__all__:
        item = getattr(ts, name)
        assert inspect.getdoc(item), name
        if inspect.isfunction(item):
            assert "return" in inspect.get_annotations(item, eval_str=False), name
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, transferscope; print(sorted({'torch', 'prefect'} & set(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"  # flows, torch and Prefect load on first call


@pytest.mark.slow
def test_the_readme_workflow_through_the_facade(tmp_path, shared_tasks, prefect_harness):
    ws = ts.Workspace(tmp_path / "ws")
    for name in (TARGET, POOL, "tweeteval_stance_atheism"):
        assert ts.add_task(ws, shared_tasks / name).name == name
    assert {r["task"] for r in ts.embed(ws, device="cpu")} == {
        TARGET,
        POOL,
        "tweeteval_stance_atheism",
    }
    ranking = ts.rank_sources(ws, TARGET, methods=("centroid-cosine",), device="cpu")
    assert sorted(ranking.source) == sorted([POOL, "tweeteval_stance_atheism"])
    assert ts.Results(ws).recommend_sources(TARGET, method="centroid-cosine").source.tolist() == ranking.source.tolist()
    advice = ts.advise_sources(ws, TARGET, inputs=("centroid-cosine",), atlas="none", device="cpu")
    assert advice.attrs["basis"] == "fused" and len(advice) == 2
    first_ids, first = ts.select_subset(ws, POOL, TARGET, method="random", budget=5, seed=0)
    ts.select_subset(ws, POOL, TARGET, method="random", budget=5, seed=1)
    again_ids, again = ts.select_subset(ws, POOL, TARGET, method="random", budget=5, seed=0)
    assert again_ids == first_ids and again.attrs["subset_id"] == first.attrs["subset_id"]  # read back by id
    assert (tmp_path / "report" / "index.html") == ts.build_report(ws, tmp_path / "report")


def test_planners_and_plan_types_are_public_and_run_plan_runs_each_with_its_flow(monkeypatch, tmp_path):
    import flows
    from store.errors import InputError

    for module, (names, flow) in PLANNING.items():
        for name in names:
            assert name in ts.__all__ and getattr(ts, name) is getattr(importlib.import_module(module), name)
        monkeypatch.setattr(flows, flow, lambda plan, flow=flow: (flow, plan))
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
