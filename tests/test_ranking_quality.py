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
    # the 95% half-width over 2 targets: t(0.975, 1) = 12.706 times sd / sqrt(2)
    assert table.loc["b", "regret@1_minus_best_ci95"] == pytest.approx(
        12.7062 * np.std([4.0, 2.0], ddof=1) / np.sqrt(2)
    )
    assert table.loc["a", "ndcg@5_minus_best_mean"] == 0.0 and table.loc["a", "n_targets"] == 2
    assert table.loc["random", "spearman_mean"] == 0.0


def test_the_atlas_grid_adds_the_v2_targets_with_their_seeds(tmp_path, monkeypatch):
    """The v1 targets need `SEEDS`, a passed pilot under the atlas's recipe `V2_SEEDS`; a pilot passed under the
    1,000-example recipe and a failed one are not ranked; a target is complete when each of its own seeds is in."""
    pd.DataFrame(
        {
            "target": ["sst2", "sst5", "cola"],
            "recipe": ["medium", "medium", "medium+t1000"],
            "stage": "pilot",
            "passes": [True, False, True],
            "anova_p": 0.1,
        }
    ).to_csv(tmp_path / "atlas_targets.csv", index=False)
    monkeypatch.setattr(transfer_atlas, "RESULTS", tmp_path)
    grid = ranking_quality.atlas_grid()
    seeds = {target: target_seeds for target, _, target_seeds in grid}
    assert list(seeds) == [*transfer_atlas.TARGETS, "sst2"] and seeds["sst2"] == transfer_atlas.V2_SEEDS
    assert seeds["mr"] == transfer_atlas.SEEDS and "sst2" not in dict((t, s) for t, s, _ in grid)["sst2"]
    sources = [s for s in transfer_atlas.SOURCES if s != "sst2"]
    runs = [("sst2", source, seed) for source in ["", *sources] for seed in transfer_atlas.V2_SEEDS]
    atlas = pd.DataFrame(runs, columns=["target", "source", "seed"])
    assert ranking_quality.complete_targets(atlas, grid) == ["sst2"]
    assert ranking_quality.complete_targets(atlas.iloc[1:], grid) == []


@pytest.mark.slow
def test_quick_ranking_quality_imports_the_atlas_and_evaluates_every_method(
    tmp_path, monkeypatch, capsys, copy_quick_atlas
):
    monkeypatch.setattr(ranking_quality, "RESULTS", tmp_path / "results")
    ranking_quality.run(quick=True)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["complete"] and result["targets"] == list(transfer_atlas.QUICK["targets"])
    methods = {row["method"] for row in result["table"]}
    assert methods == {*ranking_quality.QUICK_METHODS, "random", "one-seed-oracle"}  # one target: no source prior
    assert not (tmp_path / "results").exists()  # quick runs never write the committed tables
    from store.workspace import Workspace

    ws = Workspace(tmp_path / "ws" / "quick")
    atlas = transfer_atlas.read_atlas(tmp_path / "ws" / "quick" / "transfer_atlas.parquet")
    # the quick atlas measured these runs in this workspace: import_runs found every one stored and imported none
    # (an imported run carries run_id 'atlas'), and no (source, seed) is stored twice
    stored = ws.sql("SELECT source, seed, run_id FROM transfer_results WHERE metric = 'primary'")
    assert "atlas" not in set(stored.run_id) and len(stored) == len(atlas)
    assert not stored.duplicated(["source", "seed"]).any()
    gains = ws.sql("SELECT source, source_mean, n_seeds FROM transfer_gains ORDER BY source")
    expected = atlas[atlas.source != ""].groupby("source").value.mean().sort_index()
    assert gains.source_mean.to_numpy() == pytest.approx(expected.to_numpy()) and (gains.n_seeds == 2).all()
    rankings = ws.sql("SELECT count(DISTINCT run_id) AS n FROM pair_scores").n.iloc[0]
    ranking_quality.run(quick=True, stage="learned")  # re-evaluates from the stored rankings: ranks nothing
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ws.sql("SELECT count(DISTINCT run_id) AS n FROM pair_scores").n.iloc[0] == rankings
    assert again["table"] == result["table"]
    # stage new: the complete targets the committed scores lack are ranked and added; the committed rows are kept
    # as they were
    from store.advice import ATLAS_SCORES

    (tmp_path / "results").mkdir()
    committed = pd.DataFrame(
        {"source": ["a", "b"], "method": "leep", "score": [1.0, 2.0], "higher_is_better": True, "target": "earlier"}
    ).assign(recipe=transfer_atlas.ATLAS_RECIPE)
    committed.to_parquet(tmp_path / "results" / ATLAS_SCORES, index=False)
    (target,) = transfer_atlas.QUICK["targets"]
    grid = [(target, list(transfer_atlas.QUICK["sources"]), tuple(transfer_atlas.QUICK["seeds"]))]
    quick_recipe = transfer_atlas.QUICK["recipe"]
    samples = ranking_quality.QUICK_SAMPLES
    ranking_quality.add_new_targets(ws, atlas, grid, [target], quick_recipe, ranking_quality.QUICK_METHODS, samples)
    written = pd.read_parquet(tmp_path / "results" / ATLAS_SCORES)
    pd.testing.assert_frame_equal(written[written.target == "earlier"][committed.columns], committed)
    added = written[written.target == target]
    assert set(added.method) == set(ranking_quality.QUICK_METHODS) and len(added) == len(grid[0][1]) * 2
    stored = ws.read("latest_rankings_all_methods", {"target": target})
    assert sorted(added.score) == pytest.approx(sorted(stored.score))
    assert target in set(pd.read_csv(tmp_path / "results" / "atlas_tasks.csv").name)
    ranking_quality.add_new_targets(ws, atlas, grid, [target], quick_recipe, ranking_quality.QUICK_METHODS, samples)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "results" / ATLAS_SCORES), written)  # nothing new


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


def test_summary_table_reports_points_lost_beside_regret():
    """points_lost@k (regret@k's loss in points) is summarised like regret; the JSON says what each one measures."""
    quality = pd.DataFrame(
        {
            "target": ["t", "u"],
            "method": ["a", "a"],
            "regret@1": [6.25, 0.0],  # t: best 0.80, a's top source 0.75: 0.05 / 0.80 = 6.25%
            "points_lost@1": [5.0, 0.0],  # the same loss in points: (0.80 - 0.75) * 100
            "ndcg@5": [0.9, 0.7],
        }
    )
    table = ranking_quality.summary_table(quality)
    assert table.loc["a", "points_lost@1_mean"] == pytest.approx(2.5)
    assert table.loc["a", "points_lost@1_std"] == pytest.approx(np.std([5.0, 0.0], ddof=1))
    assert "% of the best performance" in ranking_quality.DEFINITIONS["regret@k"]
    assert "gain" not in ranking_quality.DEFINITIONS["regret@k"].replace("not a gain", "")


def test_committed_quality_scores_the_committed_files_like_the_flow():
    from transfer.metrics import ranking_quality as quality_of

    runs, scores = [], []
    gains = {"t0": {"a": 2.0, "b": 1.0, "c": 0.0}, "t1": {"a": -1.0, "b": 3.0, "c": 0.0}, "t2": {"a": 0.0, "b": 5.0}}
    for target, by_source in gains.items():
        for seed in (0, 1):
            runs.append({"target": target, "source": "", "seed": seed, "value": 0.5})
            runs += [
                {"target": target, "source": s, "seed": seed, "value": 0.5 + (g + seed) / 100}
                for s, g in by_source.items()
            ]
        scores += [
            {"target": target, "source": s, "method": "mmd", "score": -g, "higher_is_better": False}
            for s, g in by_source.items()
        ]
    wide = ranking_quality.committed_quality(pd.DataFrame(runs), pd.DataFrame(scores), ["t0", "t1", "t2"])
    row = wide.set_index(["target", "method"])
    # mmd (lower is better) equals the gain's order: a perfect ranking on every target
    assert (row.xs("mmd", level="method")["regret@1"] == 0).all()
    # t0's source prior: a's mean gain on t1 and t2 is (-1 + 0) / 2, b's (3 + 5) / 2, c's 0 (t1 only): b first
    measured = {"a": 0.525, "b": 0.515, "c": 0.505}
    expected = quality_of({"a": -0.5, "b": 4.0, "c": 0.0}, measured, baseline=0.5)
    assert row.loc[("t0", "source-prior"), "points_lost@1"] == pytest.approx(expected["points_lost@1"]) == 1.0
    assert set(row.index.get_level_values("method")) == {"mmd", "source-prior", "random", "one-seed-oracle"}


def test_rank_defaults_to_the_committed_atlas_best_single_method_for_the_first_source():
    """`rank`'s default method is the single (not learned, not reference) method with the lowest mean regret@1 on
    the committed atlas, and the one that agrees best with TaskWeb on the tasks both share."""
    from flows.rank import RankRequest
    from store.results import Results
    from transfer.advisor import BEST_RANKING_METHOD

    table = pd.read_csv(ranking_quality.RESULTS / "ranking_quality.csv", index_col="method")
    singles = table.drop(index=[m for m in (*ranking_quality.REFERENCES, *ranking_quality.LEARNED) if m in table.index])
    assert len(singles) >= 10
    assert singles["regret@1_mean"].idxmin() == BEST_RANKING_METHOD
    assert singles["taskweb_spearman_mean"].idxmax() == BEST_RANKING_METHOD
    assert RankRequest("t").methods == (BEST_RANKING_METHOD,)
    assert Results.recommend_sources.__defaults__[-1] == BEST_RANKING_METHOD
