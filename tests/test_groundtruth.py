"""Measured transfer: metrics and gain summaries by hand, and the real measure_transfer flow (tiny recipes) with
resumption."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from scipy import stats

from store.catalog import put_task
from store.task_files import load_task_dir
from store.workspace import Workspace
from transfer.groundtruth import evaluate_outputs, summarise_gains

TINY = {"lr": 5e-5, "batch_size": 16, "epochs": 1, "max_examples": 48, "max_length": 32, "warmup_ratio": 0.06}


def test_classification_metrics_by_hand():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 2.0]])
    metrics = evaluate_outputs(logits, np.array([0, 1, 1, 1]), regression=False)
    # predictions 0, 1, 0, 1: accuracy 3/4; F1(class 0) = 2·1·0.5/1.5 = 2/3, F1(class 1) = 2·1·(2/3)/(5/3) = 0.8
    assert metrics["primary"] == metrics["accuracy"] == 0.75
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_regression_metric_is_mean_of_pearson_and_spearman():
    truth = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    outputs = np.array([[0.0], [1.5], [1.0], [3.0], [5.0]])
    metrics = evaluate_outputs(outputs, truth, regression=True)
    expected = (stats.pearsonr(outputs[:, 0], truth).statistic + 0.9) / 2  # Spearman: one swapped pair → 0.9
    assert metrics["primary"] == pytest.approx(expected)
    assert evaluate_outputs(np.ones((5, 1)), truth, regression=True)["primary"] == 0.0  # constant output


def test_gain_summary_by_hand():
    summary = summarise_gains([0.80, 0.70, 0.75], [0.70, 0.72, 0.70])
    # gains 0.10, -0.02, 0.05: mean 0.0433, sample std 0.0603, 2 of 3 positive
    assert summary.mean_gain == pytest.approx(0.13 / 3)
    assert summary.std_gain == pytest.approx(np.std([0.10, -0.02, 0.05], ddof=1))
    assert summary.positive_share == pytest.approx(2 / 3) and summary.n_seeds == 3
    assert summary.p_value == pytest.approx(stats.ttest_rel([0.80, 0.70, 0.75], [0.70, 0.72, 0.70]).pvalue)
    assert np.isnan(summarise_gains([0.8], [0.7]).p_value)
    with pytest.raises(ValueError, match="must be paired by seed"):
        summarise_gains([0.8, 0.9], [0.7])


@pytest.mark.slow
def test_measure_transfer_stores_runs_and_resumes(tmp_path, shared_tasks, prefect_harness, tiny_encoder):
    from flows import measure_transfer
    from flows.measure import MeasureRequest, plan_measure

    ws = Workspace(tmp_path / "ws")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("uci_sentiment_imdb", "uci_sentiment_amazon"):
            put_task(ws, load_task_dir(shared_tasks / name))
    options = {
        "target": "uci_sentiment_imdb",
        "sources": ["uci_sentiment_amazon"],
        "recipe": TINY,
        "target_recipe": TINY,
        "max_test": 100,
        "device": "cpu",
        "model": tiny_encoder,  # what is asserted is what is stored and resumed, not what is learned
        "workspace": str(ws.root),
    }
    plan = plan_measure(MeasureRequest(seeds=(0, 1), **options))
    assert len(plan.todo) == 4 and plan.target_examples == 48
    first = measure_transfer(plan)
    created = ws.sql("SELECT created_at FROM transfer_results ORDER BY created_at").created_at.tolist()
    measure_transfer(plan)  # the same plan again (as after a crash): what landed is skipped, not redone
    assert ws.sql("SELECT created_at FROM transfer_results ORDER BY created_at").created_at.tolist() == created
    assert first.source.tolist() == ["uci_sentiment_amazon"] and first.n_seeds[0] == 2
    runs = ws.sql("SELECT source, seed, value FROM transfer_results WHERE metric = 'accuracy' ORDER BY source, seed")
    assert runs.shape[0] == 4 and runs.value.between(0, 1).all()
    baseline = runs[runs.source == ""].value.mean()
    assert first.baseline_mean[0] == pytest.approx(baseline)
    second = measure_transfer(MeasureRequest(seeds=(0, 1, 2), **options))  # only seed 2 is new
    assert ws.sql("SELECT count(DISTINCT run_id) AS n FROM transfer_results WHERE seed < 2").n[0] == 1
    assert ws.sql("SELECT count(*) AS n FROM transfer_results WHERE metric = 'primary'").n[0] == 6
    assert second.n_seeds[0] == 3
    assert ws.sql("SELECT count(*) AS n FROM transfer_gains").n[0] == 1  # the summary was replaced, not added
    with pytest.raises(ValueError, match="also among the sources"):
        measure_transfer(
            MeasureRequest(target="uci_sentiment_imdb", sources=["uci_sentiment_imdb"], workspace=str(ws.root))
        )
    from typer.testing import CliRunner

    from flows.cli import app

    plan = CliRunner().invoke(app, ["--workspace", str(ws.root), "measure", "uci_sentiment_imdb", "--dry-run"])
    assert plan.exit_code == 0, plan.output  # the CLI's small recipes: none of the TINY runs above count
    assert "plan: 6 target fine-tunes (3 seeds x 1 sources + baseline, 0 already stored)" in plan.output


def test_evaluate_rankings_against_stored_gains(tmp_path, prefect_harness):
    """Stored measured gains and rankings (written through the store API) → the quality table, baselines included."""
    import pandas as pd

    from flows import evaluate_rankings
    from store.measured import put_transfer_gains, put_transfer_result
    from store.rankings import put_ranking
    from store.results import Results
    from transfer.metrics import one_seed_oracle

    ws = Workspace(tmp_path / "ws")

    def gains(target, means):
        return pd.DataFrame(
            {
                "source": list(means),
                "baseline_mean": 0.70,
                "source_mean": list(means.values()),
                "mean_gain": [m - 0.70 for m in means.values()],
                "std_gain": 0.01,
                "positive_share": 1.0,
                "p_value": float("nan"),
                "n_seeds": 3,
            }
        )

    put_transfer_gains(ws, "cfg", "t", gains("t", {"a": 0.80, "b": 0.75, "c": 0.72}), "run-m")
    put_transfer_gains(ws, "old", "u", gains("u", {"a": 0.99, "b": 0.10, "c": 0.10}), "run-o")  # superseded below
    put_transfer_gains(ws, "cfg", "u", gains("u", {"a": 0.71, "b": 0.90, "c": 0.60}), "run-m")  # prior: b, a, c
    seeds = {"": [0.70, 0.70], "a": [0.81, 0.79], "b": [0.74, 0.76], "c": [0.73, 0.71]}  # means as stored above
    for source, values in seeds.items():
        for seed, value in enumerate(values):
            put_transfer_result(ws, "cfg", "t", source, seed, {"primary": value}, "run-m")
    put_ranking(ws, "r1", "h1", "t", "perfect", {"a": 3.0, "b": 2.0, "c": 1.0}, higher_is_better=True)
    put_ranking(ws, "r2", "h2", "t", "mmd", {"a": 0.3, "b": 0.2, "c": 0.1}, higher_is_better=False)  # reversed
    table = evaluate_rankings(target="t", workspace=str(ws.root))
    assert table.loc["perfect", "regret@1"] == 0.0 and table.loc["perfect", "spearman"] == pytest.approx(1.0)
    assert table.loc["mmd", "spearman"] == pytest.approx(-1.0)  # lower MMD predicted c best: the worst order
    assert table.loc["mmd", "regret@1"] == pytest.approx((0.80 - 0.72) / 0.80 * 100)
    assert table.loc["mmd", "points_lost@1"] == pytest.approx((0.80 - 0.72) * 100)  # taking c costs 8 points
    assert table.loc["mmd", "points_lost@3"] == 0.0 and table.loc["perfect", "points_lost@1"] == 0.0
    assert table.loc["source-prior", "top1_hit"] == 0.0  # the prior picks b (u's newest config only), the best is a
    assert -1.0 < table.loc["random", "spearman"] < 1.0 and 0 < table.loc["random", "top1_hit"] < 1
    oracle = one_seed_oracle({s: v for s, v in seeds.items() if s}, seeds[""])
    assert table.loc["one-seed-oracle"].to_dict() == pytest.approx(oracle, nan_ok=True)
    assert table.loc["one-seed-oracle", "spearman"] == pytest.approx(1.0)  # both seeds order a > b > c
    served = Results(ws).method_quality("t")
    assert set(served.method) == {"perfect", "mmd", "source-prior", "random", "one-seed-oracle"}
    assert served.set_index("method").loc["mmd", "points_lost@1"] == pytest.approx(8.0)  # stored with the rest
    with pytest.raises(LookupError, match="No measured transfer for target 'nope'"):
        evaluate_rankings(target="nope", workspace=str(ws.root))
    from typer.testing import CliRunner

    from flows.cli import app

    shown = CliRunner().invoke(app, ["--workspace", str(ws.root), "evaluate", "t"])
    assert shown.exit_code == 0, shown.output
    assert "source-prior" in shown.output and "spearman" in shown.output
    assert "points_lost@1" in shown.output  # mmd's row: regret@1 10%, regret@3 0, points_lost@1 8 points
    assert re.search(r"mmd +│ 10 +│ 0 +│ 8 +│", shown.output), shown.output
    assert "regret@k: % of the best performance (no transfer included) lost by taking the best of the top k" in (
        shown.output
    )
