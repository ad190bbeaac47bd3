"""Selection quality: the summary against a hand-worked example and invariances; the measure_selection flow on a
small real run (stored, resumed, extended, checked against an independent fine-tune); the CLI's dry run; the
benchmark's --quick mode."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from selection.quality import summarise_selection
from store.catalog import put_task
from store.results import Results
from store.selections import selection_results
from store.task_files import load_task_dir, task_from_table
from store.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
# (arm, target) -> metric per seed 0, 1 at budget 0.2 (full: budget 1.0)
HAND = {
    ("full", "A"): (0.80, 0.90),
    ("full", "B"): (0.60, 0.60),
    ("random", "A"): (0.68, 0.85),
    ("random", "B"): (0.54, 0.48),
    ("gio", "A"): (0.85, 0.85),
    ("gio", "B"): (0.57, 0.60),
}


def hand_runs() -> pd.DataFrame:
    rows = [
        {"arm": arm, "budget": 1.0 if arm == "full" else 0.2, "seed": seed, "target": target, "n_train": 10, "value": v}
        for (arm, target), values in HAND.items()
        for seed, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def row(summary: pd.DataFrame, target: str, arm: str) -> pd.Series:
    return summary[(summary.target == target) & (summary.arm == arm)].iloc[0]


def test_summary_matches_hand_worked_example():
    summary = summarise_selection(hand_runs())
    # full-pool means: A 0.85, B 0.60. gio shares: A (1, 1), B (0.95, 1) -> per seed (0.975, 1.0)
    gio = row(summary, "all", "gio")
    assert gio.share_mean == pytest.approx(0.9875, abs=1e-12)
    assert gio.share_std == pytest.approx(0.025 / math.sqrt(2), abs=1e-12)
    # random shares: A (0.8, 1.0), B (0.9, 0.8) -> per seed (0.85, 0.9)
    rnd = row(summary, "all", "random")
    assert rnd.share_mean == pytest.approx(0.875, abs=1e-12) and math.isnan(rnd.vs_random_mean)
    # paired vs random, mean over targets per seed: gio (0.71, 0.725) - random (0.61, 0.665) = (0.10, 0.06)
    assert gio.vs_random_mean == pytest.approx(0.08, abs=1e-12)
    assert gio.vs_random_std == pytest.approx(0.02 * math.sqrt(2), abs=1e-12)
    assert gio.vs_random_positive_share == 1.0
    # t = 0.08 / (0.0283 / sqrt 2) = 4 with 1 degree of freedom (Cauchy): p = 1 - 2/pi * atan(4)
    assert gio.vs_random_p_value == pytest.approx(1 - 2 / math.pi * math.atan(4), abs=1e-9)
    assert row(summary, "A", "gio").vs_random_mean == pytest.approx(0.085, abs=1e-12)
    full = row(summary, "all", "full")
    assert full.share_mean == pytest.approx(1.0, abs=1e-12) and full.budget == 1.0
    assert full.share_std == pytest.approx(abs(0.8 / 0.85 - 0.9 / 0.85) / 2 / math.sqrt(2), abs=1e-12)
    assert row(summary, "B", "gio").score_mean == pytest.approx(0.585, abs=1e-12)
    assert set(summary.target) == {"A", "B", "all"} and (summary.n_seeds == 2).all()


def test_summary_rejects_missing_reference_and_columns():
    runs = hand_runs()
    with pytest.raises(ValueError, match=r"No full-pool \('full'\) runs for targets \['B'\]"):
        summarise_selection(runs[~((runs.arm == "full") & (runs.target == "B"))])
    with pytest.raises(ValueError, match=r"lacks the columns \['n_train'\]"):
        summarise_selection(runs.drop(columns="n_train"))


@settings(max_examples=40, deadline=None)
@given(
    scale=st.floats(0.1, 10.0),
    values=st.lists(st.floats(0.05, 1.0), min_size=12, max_size=12),
)
def test_shares_ignore_a_targets_metric_scale(scale, values):
    runs = hand_runs().assign(value=values)
    scaled = runs.assign(value=np.where(runs.target == "A", runs.value * scale, runs.value))
    left, right = summarise_selection(runs), summarise_selection(scaled)
    np.testing.assert_allclose(left.share_mean, right.share_mean, rtol=1e-10)
    np.testing.assert_allclose(left.share_std, right.share_std, rtol=1e-9, atol=1e-12)
    full = left[left.arm == "full"]
    np.testing.assert_allclose(full.share_mean, 1.0, rtol=1e-12)


# ------------------------------------------------------------------------------------------ the flow, real data

TARGET = "uci_sentiment_yelp"
RECIPE = {"epochs": 1, "max_length": 32}
ARMS = {"gio": {"method": "gio"}, "random": {"method": "random"}}


@pytest.fixture(scope="module")
def measured(tmp_path_factory, shared_tasks, small_tasks, prefect_harness, tiny_encoder):
    """A 60-row real pool (30 sst2 and 30 mpqa sentences) measured for yelp (its first 200 training sentences and 50
    of each evaluation split) with GIO and random at 50%, 2 seeds, with the tiny seeded encoder (what is asserted is
    what is stored and resumed, not what a model learns)."""
    from flows.measure_selection import MeasureSelectionRequest, measure_selection

    frames = []
    ws = Workspace(tmp_path_factory.mktemp("selection-quality") / "ws")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mpqa's known conflicting duplicates
        for name in ("sst2", "mpqa"):
            task = load_task_dir(shared_tasks / name)
            rows = task.split("train").to_pandas().head(30)
            frames.append(pd.DataFrame({"text": rows.text, "label": [task.label_names[int(i)] for i in rows.label]}))
        put_task(ws, task_from_table(pd.concat(frames, ignore_index=True), "pool", license="research use"))
        put_task(ws, load_task_dir(small_tasks(TARGET, 200)))
    options = {
        "arms": ARMS, "budgets": (0.5,), "recipe": RECIPE, "max_test": 80, "device": "cpu", "model": tiny_encoder
    }  # fmt: skip
    summary = measure_selection(
        MeasureSelectionRequest("pool", TARGET, seeds=(0, 1), workspace=str(ws.root), **options)
    )
    return ws, options, summary


@pytest.mark.slow
def test_flow_stores_every_run_and_summarises_them(measured):
    ws, _, summary = measured
    runs = selection_results(ws)
    assert sorted(set(zip(runs.arm, runs.budget, strict=True))) == [("full", 1.0), ("gio", 0.5), ("random", 0.5)]
    assert len(runs) == 6 and set(runs.seed) == {0, 1} and set(runs.target) == {TARGET}
    assert (runs[runs.arm == "full"].n_train == 60).all() and (runs[runs.arm != "full"].n_train == 30).all()
    assert runs.value.between(0, 1).all() and (runs.train_seconds > 0).all()
    metrics = ws.sql("SELECT DISTINCT metric FROM selection_results ORDER BY metric").metric.tolist()
    assert metrics == ["accuracy", "macro_f1", "primary"]
    stored = Results(ws).selection_quality()
    assert stored.attrs["pool"] == "pool"
    pd.testing.assert_frame_equal(stored.reset_index(drop=True), summary.reset_index(drop=True))
    gio = row(summary, "all", "gio")
    assert gio.n_seeds == 2 and math.isfinite(gio.vs_random_mean)


@pytest.mark.slow
def test_stored_score_matches_an_independent_fine_tune(measured, small_tasks):
    """Retrain GIO's seed-0 subset by hand and score it on the target's validation and test rows."""
    from flows.measure_selection import SUBSET_RECIPE
    from store.catalog import get_task
    from store.selections import find_selection, selection_frame
    from transfer.finetune import Recipe, fine_tune, predict, sample_indices

    ws, options, _ = measured
    runs = selection_results(ws)
    stored = runs[(runs.arm == "gio") & (runs.seed == 0)].iloc[0]
    subset = selection_frame(ws, find_selection(ws, stored.subset_id))
    assert len(subset) == stored.n_train == 30
    recipe = Recipe(**{**SUBSET_RECIPE.as_dict(), **RECIPE})
    tuned = fine_tune(
        subset.text.tolist(),
        subset.label_index.to_numpy(),
        n_classes=2,
        recipe=recipe,
        seed=0,
        device="cpu",
        model=options["model"],
    )
    held = pd.concat(
        [pd.read_json(small_tasks(TARGET, 200) / f"{split}.jsonl", lines=True) for split in ("validation", "test")],
        ignore_index=True,
    )
    held = held.iloc[np.sort(sample_indices(len(held), 80, 0))]
    logits = predict(tuned.model, tuned.tokenizer, held.text.tolist(), max_length=recipe.max_length)
    truth = held.label.map(get_task(ws, "pool").label_names.index).to_numpy()
    assert stored.value == pytest.approx(float((logits.argmax(1) == truth).mean()), abs=1e-12)


@pytest.mark.slow
def test_flow_resumes_and_extends_without_repeating_runs(measured):
    from flows.measure_selection import MeasureSelectionRequest, measure_selection

    ws, options, summary = measured
    before = ws.sql("SELECT arm, seed, created_at FROM selection_results WHERE metric = 'primary'")
    again = measure_selection(MeasureSelectionRequest("pool", TARGET, seeds=(0, 1), workspace=str(ws.root), **options))
    pd.testing.assert_frame_equal(again, summary)
    extended = measure_selection(
        MeasureSelectionRequest("pool", TARGET, seeds=(0, 1, 2), workspace=str(ws.root), **options)
    )
    after = ws.sql("SELECT arm, seed, created_at FROM selection_results WHERE metric = 'primary'")
    assert len(after) == 9
    kept = after.merge(before, on=["arm", "seed"], suffixes=("", "_before"))
    assert len(kept) == 6 and (kept.created_at == kept.created_at_before).all()  # not re-run
    assert (extended.n_seeds == 3).all()


@pytest.mark.slow
def test_flow_rejects_bad_grids_before_any_work(measured):
    from flows.measure_selection import MeasureSelectionRequest, measure_selection

    ws, options, _ = measured
    root = str(ws.root)
    count = len(ws.sql("SELECT * FROM selection_results"))
    with pytest.raises(ValueError, match=r"'budgets' parameter of measure_selection must be fractions in \(0, 1\)"):
        measure_selection(MeasureSelectionRequest("pool", TARGET, **{**options, "budgets": (1.0,)}, workspace=root))
    with pytest.raises(ValueError, match=r"'arms' parameter of measure_selection .* Got 'x': \{'method': 'lasso'\}"):
        measure_selection(
            MeasureSelectionRequest("pool", TARGET, **{**options, "arms": {"x": {"method": "lasso"}}}, workspace=root)
        )
    with pytest.raises(ValueError, match=r"Arm 'gio' asks for budgets \[0.3\] outside \[0.5\]"):
        measure_selection(
            MeasureSelectionRequest(
                "pool", TARGET, **{**options, "arms": {"gio": {"method": "gio", "budgets": [0.3]}}}, workspace=root
            )
        )
    with pytest.raises(ValueError, match=r"'held_out' parameter .* none of which target 'uci_sentiment_yelp' has"):
        measure_selection(MeasureSelectionRequest("pool", TARGET, held_out=("dev",), **options, workspace=root))
    assert len(ws.sql("SELECT * FROM selection_results")) == count


@pytest.mark.slow
def test_cli_dry_run_plans_without_training(measured):
    from flows.cli import app

    ws, _, _ = measured
    count = len(ws.sql("SELECT * FROM selection_results"))
    result = CliRunner().invoke(
        app,
        ["--workspace", str(ws.root), "--device", "cpu", "measure-selection", "pool", "--target", TARGET,
         "--method", "random", "--budget", "0.5", "--seed", "5", "--dry-run"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(ws.sql("SELECT * FROM selection_results")) == count
    bad = CliRunner().invoke(
        app, ["--workspace", str(ws.root), "measure-selection", "pool", "--target", TARGET, "--budget", "2"]
    )
    assert bad.exit_code == 2 and "must be fractions in (0, 1)" in bad.output


@pytest.mark.slow
def test_bench_quick_runs_end_to_end(tmp_path, monkeypatch, capsys, prefect_harness, tiny_encoder):
    from bench import selection_quality

    committed = ROOT / "reports" / "results" / "selection_quality.json"
    before = committed.read_bytes() if committed.exists() else None
    monkeypatch.setattr(selection_quality, "WORKSPACE", tmp_path)
    # what `python -m bench selection_quality --quick` calls, in this process, with the tiny encoder (plumbing)
    selection_quality.run(quick=True, model=tiny_encoder)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    arms = {r["arm"] for r in result["summary"]}
    assert arms == {"full", "gio", "icons", "vog-prune_easiest", "random"}
    assert result["grid"]["n_pool"] == 120 and result["quick"] is True and result["grid"]["model"] == tiny_encoder
    full = next(r for r in result["summary"] if r["arm"] == "full")
    assert full["share_mean"] == pytest.approx(1.0)
    after = committed.read_bytes() if committed.exists() else None
    assert after == before  # a quick run never touches the committed results
