"""What the advisor learns from (`store.advice.measured_knowledge`): the atlas folder plus the workspace's own
measured and ranked targets, the advised target never among them; advice stored and served by `Results`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from store.advice import ATLAS_ENV, atlas_folder, cpu_seconds_per_run, measured_knowledge, put_advice, shipped_atlas
from store.measured import put_transfer_result
from store.rankings import put_ranking
from store.results import Results
from store.runs import start_run

RECIPE = {"epochs": 1, "max_examples": 48}


def write_atlas(folder, targets=("t1", "t2", "t3"), sources=("a", "b")):
    """A hand-made atlas folder: per target a baseline of 0.5 and source gains of 1 and 2 points per seed."""
    runs, scores = [], []
    for target in targets:
        for seed in (0, 1):
            runs.append((target, "", seed, 0.5))
            runs += [(target, s, seed, 0.5 + (i + 1) / 100) for i, s in enumerate(sources)]
        scores += [(target, s, "mmd", float(i), False) for i, s in enumerate(sources)]
    frame = pd.DataFrame(runs, columns=["target", "source", "seed", "value"])
    frame = frame.assign(
        recipe="medium", source_recipe=json.dumps(RECIPE), target_recipe=json.dumps(RECIPE), seconds=20.0
    )
    frame.loc[0, "seconds"] = 40.0
    frame["device"] = "cpu"
    frame.loc[1:10, ["device", "seconds"]] = ["NVIDIA H200", 1.0]  # GPU rows, most of them: not the CPU cost
    frame.to_parquet(folder / "transfer_atlas.parquet")
    pd.DataFrame(scores, columns=["target", "source", "method", "score", "higher_is_better"]).assign(
        recipe="medium"
    ).to_parquet(folder / "atlas_method_scores.parquet")
    names = sorted({*targets, *sources})
    pd.DataFrame({"name": names, "n_train": 100, "kind": "classification", "input": "single", "n_labels": 2}).to_csv(
        folder / "atlas_tasks.csv", index=False
    )
    return folder


def test_no_atlas_files_is_no_atlas(tmp_path, monkeypatch):
    assert shipped_atlas(tmp_path) is None
    monkeypatch.setenv(ATLAS_ENV, "none")
    assert atlas_folder() is None
    monkeypatch.setenv(ATLAS_ENV, str(tmp_path))
    assert atlas_folder() == tmp_path and atlas_folder("none") is None


def test_knowledge_merges_the_atlas_and_the_workspace_never_the_target(tmp_path, workspace):
    folder = write_atlas(tmp_path)
    atlas = shipped_atlas(folder)
    assert atlas.origin == {"t1": "atlas", "t2": "atlas", "t3": "atlas"} and atlas.source_recipe == RECIPE
    assert atlas.seconds_per_run == 20.0  # the median wall time of the CPU rows
    # The workspace measured and ranked t3 itself (it replaces the atlas's t3) and a new target t4; t5 is measured
    # but never ranked, so it has no features and is left out.
    run_id, config = start_run(workspace, "test", {})
    for target in ("t3", "t4", "t5"):
        for seed in (0, 1):
            put_transfer_result(workspace, "c", target, "", seed, {"primary": 0.4}, run_id)
            put_transfer_result(workspace, "c", target, "a", seed, {"primary": 0.3}, run_id)
    for target in ("t3", "t4"):
        put_ranking(workspace, run_id, config, target, "mmd", {"a": 1.0}, higher_is_better=False)
        put_ranking(workspace, run_id, config, target, "advisor", {"a": 1.0}, higher_is_better=True)
    knowledge = measured_knowledge(workspace, exclude="t1", atlas=str(folder))
    assert knowledge.origin == {"t2": "atlas", "t3": "workspace", "t4": "workspace"}
    assert set(knowledge.runs.target) == set(knowledge.scores.target) == {"t2", "t3", "t4"}
    assert set(knowledge.scores.method) == {"mmd"}  # the advisor never learns from its own past output
    t3 = knowledge.runs[knowledge.runs.target == "t3"]
    assert sorted(t3.value) == [0.3, 0.3, 0.4, 0.4]  # the workspace's runs, not the atlas's
    alone = measured_knowledge(workspace, exclude="t3", atlas="none")
    assert alone.origin == {"t4": "workspace"} and alone.source_recipe is None


def test_advice_is_stored_and_served_with_its_call(workspace):
    run_id, config = start_run(workspace, "advise_sources", {})
    table = pd.DataFrame(
        {
            "expected_gain": [-1.5, -3.0],
            "lower": [-4.0, -5.5],
            "upper": [-0.5, -0.5],
            "top_features": [{"z:mmd": -1.2}, {}],
            "rank": [1, 2],
        },
        index=pd.Index(["a", "b"], name="source"),
    )
    put_ranking(workspace, run_id, config, "t", "advisor", table.expected_gain.to_dict(), higher_is_better=True)
    put_advice(
        workspace, run_id, config, "t", "advisor", table, basis="learned", learner="ridge", dont_transfer=True,
        training_targets=7,
    )  # fmt: skip
    served = Results(workspace).recommend_sources("t", k=1, method="advisor")
    assert served.source.tolist() == ["a"] and served.top_features[0] == {"z:mmd": -1.2}
    assert served.expected_gain[0] == -1.5 and np.isnan(served.measured_gain[0])
    assert served.attrs == {"dont_transfer": True, "basis": "learned", "learner": "ridge", "training_targets": 7}
    with pytest.raises(LookupError, match="--method advisor --verify 2"):
        Results(workspace).recommend_sources("t", method="advisor+verify")


def test_cpu_seconds_per_run_without_device_column_or_cpu_rows():
    runs = pd.DataFrame({"seconds": [10.0, 30.0, 50.0]})
    assert cpu_seconds_per_run(runs) == 30.0  # an atlas that does not say where it ran: every run
    assert cpu_seconds_per_run(runs.assign(device="NVIDIA H200")) is None  # GPU rows only: no CPU cost to quote
