"""What the advisor learns from (`store.advice.measured_knowledge`): the atlas folder plus the workspace's own
measurements under the advisor's recipe only, a target joining only with enough of it measured, the advised target
never among them; advice stored and served by `Results` with its interval level."""

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
        recipe="medium",
        source_recipe=json.dumps(RECIPE),
        target_recipe=json.dumps(RECIPE),
        seconds=20.0,
        model="m",
        max_test=1000,
        config_hash=frame.target + "-atlas-config",
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


def tiny_task(name: str):
    """A registered task of four rows, its content (hence its measurement config) its own."""
    from store.tasks import RawRow, build_task

    rows = [RawRow(f"{name} text {i}", None, i % 2, f"row {i}") for i in range(4)]
    return build_task(name, {"train": rows})


def test_knowledge_takes_only_the_advisors_recipe_and_enough_of_it(tmp_path, workspace):
    from flows.measure import summarise
    from store.catalog import put_task
    from store.measured import MeasurementRecipe

    folder = write_atlas(tmp_path)
    atlas = shipped_atlas(folder)
    assert atlas.origin == {"t1": "atlas", "t2": "atlas", "t3": "atlas"}
    assert atlas.recipe == MeasurementRecipe("m", RECIPE, RECIPE, 1000)
    assert atlas.seconds_per_run == 20.0  # the median wall time of the CPU rows
    other = MeasurementRecipe("m", RECIPE, {**RECIPE, "epochs": 3}, 1000)  # e.g. the small target recipe
    short = MeasurementRecipe("m", RECIPE, RECIPE, 2000)  # the atlas's recipes, another max_test (old --verify)
    sources = [f"s{i}" for i in range(5)]
    for name in ("t2", "t3", "t4", "t5", "t6"):
        put_task(workspace, tiny_task(name))
    tasks = workspace.read("list_tasks").set_index("name").content_hash
    run_id, config = start_run(workspace, "test", {})

    def measure(target, recipe, names, seeds, value):
        """Store runs and their gain summary, as `measure_transfer` does (the summary makes the config current)."""
        for seed in seeds:
            put_transfer_result(workspace, recipe.config(tasks[target]), target, "", seed, {"primary": 0.4}, run_id)
            for source in names:
                put_transfer_result(
                    workspace, recipe.config(tasks[target]), target, source, seed, {"primary": value}, run_id
                )
        summarise(workspace, recipe.config(tasks[target]), target, list(names), tuple(seeds), run_id)

    measure("t3", atlas.recipe, sources, (0, 1), 0.3)  # enough under the atlas's recipe: replaces the atlas's t3
    measure("t2", other, sources, (0, 1, 2), 0.9)  # another target recipe: never joins, however much
    measure("t2", short, sources[:2], (0,), 0.9)  # another max_test: never joins either
    measure("t4", atlas.recipe, sources, (0, 1), 0.45)  # a new target, enough: joins
    measure("t5", atlas.recipe, sources[:4], (0, 1), 0.45)  # four sources: not enough
    measure("t6", atlas.recipe, sources, (0,), 0.45)  # one seed: not enough
    ranked, _ = start_run(workspace, "rank_sources", {"recipe": RECIPE, "model": "m"})  # the advisor's recipe
    elsewhere, _ = start_run(workspace, "rank_sources", {"recipe": {**RECIPE, "epochs": 2}, "model": "m"})
    for target in ("t2", "t3", "t5", "t6"):
        put_ranking(workspace, ranked, config, target, "mmd", dict.fromkeys(sources, 1.0), higher_is_better=False)
        put_ranking(workspace, ranked, config, target, "advisor", dict.fromkeys(sources, 1.0), higher_is_better=True)
    put_ranking(workspace, elsewhere, config, "t4", "mmd", dict.fromkeys(sources, 1.0), higher_is_better=False)
    measure("t4", atlas.recipe, ["s9"], (2,), 0.45)  # one more source on one seed: too noisy to keep
    knowledge = measured_knowledge(workspace, other, exclude="t1", atlas=str(folder))
    assert knowledge.recipe == atlas.recipe  # with an atlas, its recipe is the advisor's whatever the default
    # t4 is measured enough but ranked only under another source recipe: its features would not compare
    assert knowledge.origin == {"t2": "atlas", "t3": "workspace"}
    assert (
        set(knowledge.ignored) == {"t2", "t4", "t5", "t6"} and "needs 5 sources on 2+ seeds" in knowledge.ignored["t5"]
    )
    assert "current measurement is under another recipe" in knowledge.ignored["t2"]
    assert "--advisor-recipe" in knowledge.ignored["t2"]
    assert "not ranked under the advisor's source recipe" in knowledge.ignored["t4"]
    put_ranking(workspace, ranked, config, "t4", "mmd", dict.fromkeys(sources, 1.0), higher_is_better=False)
    knowledge = measured_knowledge(workspace, other, exclude="t1", atlas=str(folder))
    assert knowledge.origin == {"t2": "atlas", "t3": "workspace", "t4": "workspace"}
    t4 = knowledge.runs[knowledge.runs.target == "t4"]
    assert "s9" not in set(t4.source) and len(t4) == 13  # the one-seed source is left out, the rest kept
    assert set(knowledge.runs.target) == set(knowledge.scores.target) == {"t2", "t3", "t4"}
    assert set(knowledge.scores.method) == {"mmd"}  # the advisor never learns from its own past output
    t2 = knowledge.runs[knowledge.runs.target == "t2"]
    assert sorted(t2.value) == [0.5, 0.5, 0.51, 0.51, 0.52, 0.52]  # the atlas's runs, untouched by t2's others
    t3 = knowledge.runs[knowledge.runs.target == "t3"]
    assert sorted(set(t3.value)) == [0.3, 0.4] and len(t3) == 12  # the workspace's runs, not the atlas's
    alone = measured_knowledge(workspace, other, exclude="t3", atlas="none")
    assert alone.recipe == other and alone.origin == {}  # t2's current measurement is the `short` one
    measure("t2", other, sources, (0, 1, 2), 0.9)  # measured again under `other`: that is t2's current one now
    alone = measured_knowledge(workspace, other, exclude="t3", atlas="none")
    assert alone.origin == {"t2": "workspace"}


def test_the_atlas_own_config_adds_seeds_instead_of_replacing(tmp_path, workspace):
    from flows.measure import summarise
    from store.catalog import put_task

    folder = write_atlas(tmp_path, targets=("t1", "t2", "t3", "t4"))
    put_task(workspace, tiny_task("t2"))
    content = workspace.read("list_tasks").content_hash.iloc[0]
    atlas = shipped_atlas(folder)
    frame = pd.read_parquet(folder / "transfer_atlas.parquet")
    frame.loc[frame.target == "t2", "config_hash"] = atlas.recipe.config(content)  # the atlas measured this t2
    frame.to_parquet(folder / "transfer_atlas.parquet")
    run_id, _ = start_run(workspace, "test", {})
    for source, value in (("", 0.5), ("a", 0.7)):  # one verification seed: too little alone, but the same recipe
        put_transfer_result(workspace, atlas.recipe.config(content), "t2", source, 2, {"primary": value}, run_id)
    summarise(workspace, atlas.recipe.config(content), "t2", ["a"], (2,), run_id)
    knowledge = measured_knowledge(workspace, atlas.recipe, exclude="t1", atlas=str(folder))
    assert knowledge.origin["t2"] == "atlas+workspace" and not knowledge.ignored
    t2 = knowledge.runs[knowledge.runs.target == "t2"]
    assert len(t2) == 6 + 2 and t2[t2.seed == 2].set_index("source").value.to_dict() == {"": 0.5, "a": 0.7}


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
        training_targets=7, level=0.9,
    )  # fmt: skip
    served = Results(workspace).recommend_sources("t", k=1, method="advisor")
    assert served.source.tolist() == ["a"] and served.top_features[0] == {"z:mmd": -1.2}
    assert served.expected_gain[0] == -1.5 and np.isnan(served.measured_gain[0])
    assert served.attrs == {
        "dont_transfer": True, "basis": "learned", "learner": "ridge", "training_targets": 7, "level": 0.9,
    }  # fmt: skip
    with pytest.raises(LookupError, match="--method advisor --verify 2"):
        Results(workspace).recommend_sources("t", method="advisor+verify")


def test_cpu_seconds_per_run_without_device_column_or_cpu_rows():
    runs = pd.DataFrame({"seconds": [10.0, 30.0, 50.0]})
    assert cpu_seconds_per_run(runs) == 30.0  # an atlas that does not say where it ran: every run
    assert cpu_seconds_per_run(runs.assign(device="NVIDIA H200")) is None  # GPU rows only: no CPU cost to quote


def test_the_advisor_finds_runs_measured_under_the_atlas_recipe_by_the_measure_plans_own_hash(shared_tasks, workspace):
    """`plan_measure` under the shipped atlas's recipe stores its runs under exactly the config the atlas's own rows
    carry and `measured_knowledge` looks up: partial recipe dicts (the atlas writes only the fields it sets) are
    completed before hashing."""
    import warnings

    from flows.measure import MeasureRequest, plan_measure
    from store.catalog import put_task
    from store.task_files import load_task_dir

    atlas = shipped_atlas()
    assert atlas is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("cb", "rte"):
            put_task(workspace, load_task_dir(shared_tasks / name))
    recipe = atlas.recipe
    request = MeasureRequest(
        "cb", ("rte",), (0,), recipe.source_recipe, recipe.target_recipe, max_test=recipe.max_test,
        model=recipe.model, workspace=str(workspace.root),
    )  # fmt: skip
    content = workspace.read("list_tasks").set_index("name").content_hash["cb"]
    assert plan_measure(request).config == recipe.config(content) == atlas.configs["cb"]


def test_every_reader_takes_a_targets_current_measurement(tmp_path, workspace):
    """Target t measured under two configs (first A, the advisor's recipe, then B): its gains (and evaluation),
    the source prior of another target, the report and the advisor all read B, t's current measurement, and
    nothing mixes A into it; asked for A, the advisor ignores t instead of reading A's older runs."""
    from flows.measure import summarise
    from reports.html import latest_gains
    from store.catalog import put_task
    from store.measured import MeasurementRecipe

    sources = [f"s{i}" for i in range(5)]
    for name in ("t", "u"):
        put_task(workspace, tiny_task(name))
    content = workspace.read("list_tasks").set_index("name").content_hash
    recipe_a = MeasurementRecipe("m", RECIPE, RECIPE, 1000)
    recipe_b = MeasurementRecipe("m", RECIPE, {**RECIPE, "epochs": 3}, 1000)
    run_id, config = start_run(workspace, "rank_sources", {"recipe": RECIPE, "model": "m"})

    def measure(target, recipe, gains):
        """Two seeds of runs with ``gains`` (points) over a 0.5 baseline, summarised as `measure_transfer` does."""
        for seed in (0, 1):
            base = 0.5 + seed / 1000
            put_transfer_result(workspace, recipe.config(content[target]), target, "", seed, {"primary": base}, run_id)
            for source, gain in zip(sources, gains, strict=True):
                value = {"primary": base + gain / 100}
                put_transfer_result(workspace, recipe.config(content[target]), target, source, seed, value, run_id)
        summarise(workspace, recipe.config(content[target]), target, sources, (0, 1), run_id)

    measure("t", recipe_a, [5, 4, 3, 2, 1])
    measure("u", recipe_b, [1, 1, 1, 1, 1])
    measure("t", recipe_b, [-1, -2, -3, -4, 6])  # t's current measurement from now on
    put_ranking(workspace, run_id, config, "t", "mmd", dict.fromkeys(sources, 1.0), higher_is_better=False)
    current = recipe_b.config(content["t"])
    expected = {"s0": -1.0, "s1": -2.0, "s2": -3.0, "s3": -4.0, "s4": 6.0}

    plain = workspace.sql("SELECT target, config_hash FROM current_measurements ORDER BY target")  # plain SQL too
    assert plain.config_hash.tolist() == [current, recipe_b.config(content["u"])]
    gains = workspace.read("latest_transfer_gains", {"target": "t"})
    assert set(gains.config_hash) == {current}
    assert (100 * gains.set_index("source").mean_gain).round(6).to_dict() == expected
    prior = workspace.read("source_prior", {"target": "u"})
    assert (100 * prior.set_index("source").prior).round(6).to_dict() == expected and set(prior.n_targets) == {1}
    report = latest_gains(workspace, "t")
    assert set(report.config_hash) == {current}
    assert (100 * report.set_index("source").mean_gain).round(6).to_dict() == expected
    knowledge = measured_knowledge(workspace, recipe_b, exclude="u", atlas="none")
    runs = knowledge.runs[knowledge.runs.seed == 0].set_index("source").value
    assert {s: round(100 * (runs[s] - runs[""]), 6) for s in sources} == expected
    stale = measured_knowledge(workspace, recipe_a, exclude="u", atlas="none")
    assert "t" not in stale.origin and "current measurement is under another recipe" in stale.ignored["t"]
