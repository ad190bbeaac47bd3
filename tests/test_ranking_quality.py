"""The ranking-quality benchmark on the (quick) transfer atlas: atlas runs are imported, not measured again; every
method and reference row is evaluated; the table pairs each method with the best single one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench import ranking_quality, transfer_atlas


def test_summary_table_pairs_methods_with_the_best_single_method():
    quality = pd.DataFrame(
        {
            "target": ["t", "t", "t", "u", "u", "u"],
            "method": ["a", "b", "random", "a", "b", "random"],
            "regret@1": [0.0, 4.0, 2.0, 1.0, 3.0, 2.0],
            "ndcg@5": [0.9, 0.5, 0.6, 0.7, 0.6, 0.6],
            "spearman": [0.5, -0.5, 0.0, 0.4, 0.1, 0.0],
        }
    )
    table = ranking_quality.summary_table(quality)
    assert table.attrs["best_single_method"] == "a"  # mean NDCG@5 0.8 vs 0.55; random is a reference row
    assert table.loc["b", "regret@1_minus_best_mean"] == pytest.approx(3.0)  # (4 - 0 + 3 - 1) / 2
    assert table.loc["b", "regret@1_minus_best_std"] == pytest.approx(np.std([4.0, 2.0], ddof=1))
    assert table.loc["a", "ndcg@5_minus_best_mean"] == 0.0 and table.loc["a", "n_targets"] == 2
    assert table.loc["random", "spearman_mean"] == 0.0


@pytest.mark.slow
def test_quick_ranking_quality_imports_the_atlas_and_evaluates_every_method(
    tmp_path, monkeypatch, capsys, prefect_harness
):
    monkeypatch.setattr(transfer_atlas, "WORKSPACE", tmp_path / "ws")
    monkeypatch.setattr(ranking_quality, "RESULTS", tmp_path / "results")
    ranking_quality.run(quick=True)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["complete"] and result["targets"] == list(transfer_atlas.QUICK["targets"])
    methods = {row["method"] for row in result["table"]}
    assert methods == {*ranking_quality.QUICK_METHODS, "random", "one-seed-oracle"}  # one target: no source prior
    assert not (tmp_path / "results").exists()  # quick runs never write the committed tables
    from store.workspace import Workspace

    ws = Workspace(tmp_path / "ws" / "quick")
    runs = ws.sql("SELECT DISTINCT run_id FROM transfer_results")
    assert set(runs.run_id) != {"atlas"}  # the atlas itself measured these runs; nothing was imported twice
    atlas = transfer_atlas.read_atlas(tmp_path / "ws" / "quick" / "transfer_atlas.parquet")
    gains = ws.sql("SELECT source, source_mean, n_seeds FROM transfer_gains ORDER BY source")
    expected = atlas[atlas.source != ""].groupby("source").value.mean().sort_index()
    assert gains.source_mean.to_numpy() == pytest.approx(expected.to_numpy()) and (gains.n_seeds == 2).all()
    rankings = ws.sql("SELECT count(DISTINCT run_id) AS n FROM pair_scores").n.iloc[0]
    ranking_quality.run(quick=True, learned_only=True)  # re-evaluates from the stored rankings: ranks nothing
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ws.sql("SELECT count(DISTINCT run_id) AS n FROM pair_scores").n.iloc[0] == rankings
    assert again["table"] == result["table"]


def test_learned_rows_evaluate_the_advisor_and_fusion_per_target():
    rng = np.random.default_rng(0)
    targets, sources = [f"t{i}" for i in range(5)], [f"s{j}" for j in range(8)]
    scores, atlas = [], []
    for target in targets:
        quality = rng.normal(size=len(sources))
        for seed in (0, 1):
            atlas.append({"target": target, "source": "", "seed": seed, "value": 0.6})
        for j, source in enumerate(sources):
            # a cheap input of the advisor sees the quality; leep (a checkpoint method, not cheap) sees noise
            for method, score in (("centroid-cosine", quality[j]), ("leep", rng.normal())):
                scores.append({"target": target, "source": source, "method": method, "score": score})
            for seed in (0, 1):
                value = 0.6 + (3 * quality[j] + 0.3 * rng.normal()) / 100
                atlas.append({"target": target, "source": source, "seed": seed, "value": value})
    scores = pd.DataFrame(scores).assign(higher_is_better=True)
    scores["rank"] = scores.groupby(["target", "method"]).score.rank(ascending=False).astype("Int64")
    tasks = pd.DataFrame(
        {"n_train": 500, "n_labels": 2, "kind": "classification", "input": "single"}, index=targets + sources
    )
    rows = ranking_quality.learned_rows(scores, pd.DataFrame(atlas), tasks)
    assert set(rows.method) == set(ranking_quality.LEARNED)
    assert rows.groupby("method").target.nunique().eq(5).all()
    cheap = rows[rows.method == "advisor-cheap-inputs"].set_index("target")
    assert cheap.spearman.mean() > 0.7 and cheap.coverage.notna().all()
    advisor = rows[rows.method == "advisor"].set_index("target")
    assert advisor.spearman.mean() > 0.5  # the noisy method's features do not drown the signal
    table = ranking_quality.summary_table(rows)
    assert len(table) == 7 and table.attrs["best_single_method"] is None  # learned rows are never "single methods"
    assert table.loc["advisor", "coverage_mean"] == pytest.approx(advisor.coverage.mean())


def test_verification_value_per_device_by_hand():
    atlas = pd.DataFrame({"device": ["cpu", "cpu", "cpu", "NVIDIA H200", "NVIDIA H200"], "seconds": [20, 30, 40, 2, 4]})
    seconds = ranking_quality.run_seconds(atlas)
    assert seconds == {"cpu": 30.0, "gpu": 3.0}
    quality = pd.DataFrame(
        {
            "target": ["a", "a", "b", "b"],
            "method": ["advisor", "advisor+verify@2", "advisor", "advisor+verify@2"],
            "regret@1": [6.0, 2.0, 3.0, 1.0],
        }
    )
    value = ranking_quality.verification_value(quality, seconds)["advisor+verify@2"]
    # removed: mean(6 - 2, 3 - 1) = 3 points; 3 runs at 30 s = 1.5 CPU minutes, at 3 s = 0.15 GPU minutes
    assert value == {
        "regret@1_removed": 3.0,
        "cpu_minutes": 1.5,
        "regret@1_removed_per_cpu_minute": 2.0,
        "gpu_minutes": 0.15,
        "regret@1_removed_per_gpu_minute": 20.0,
    }
