"""The source advisor's features and learner: hand-worked features, the conformal width, and on synthetic targets
that the learner finds the signal, its intervals cover held-out gains at about the nominal rate, and it says
"don't transfer" when nothing helps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from transfer.advisor import (
    SourceAdvisor,
    conformal_quantile,
    descriptor_features,
    leave_one_target_out,
    method_features,
    pair_features,
    prior_features,
    verified_ranking,
)


def test_method_features_orient_and_standardise_within_the_target():
    scores = pd.DataFrame(
        {
            "target": ["t"] * 3,
            "source": ["a", "b", "c"],
            "method": ["mmd"] * 3,
            "score": [1.0, 2.0, 3.0],
            "higher_is_better": [False] * 3,
        }
    )
    wide = method_features(scores)
    # oriented -1, -2, -3: mean -2, sample std 1 -> z = 1, 0, -1; rank percentiles 1, 2/3, 1/3
    assert wide["z:mmd"].tolist() == pytest.approx([1.0, 0.0, -1.0])
    assert wide["pct:mmd"].tolist() == pytest.approx([1.0, 2 / 3, 1 / 3])


def test_prior_features_never_use_the_pairs_own_target():
    gains = pd.DataFrame(
        {"target": ["t1", "t1", "t2", "t2", "t3"], "source": ["a", "b", "a", "b", "a"], "gain": [2, 0, 4, -2, 99]}
    )
    similarity = pd.DataFrame([[1, 0.2, 0.9], [0.2, 1, 0.1], [0.9, 0.1, 1]], index=["t1", "t2", "t3"])
    similarity.columns = similarity.index
    pairs = pd.MultiIndex.from_tuples([("t3", "a"), ("t3", "b"), ("t1", "b")], names=["target", "source"])
    priors = prior_features(pairs, gains, similarity)
    # t3's own 99 is never used: a's prior is (2 + 4) / 2, its transitive estimate (0.9·2 + 0.1·4) / (0.9 + 0.1)
    assert priors.loc[("t3", "a")].tolist() == pytest.approx([3.0, 2.2])
    assert priors.loc[("t3", "b")].tolist() == pytest.approx([-1.0, (0.9 * 0 + 0.1 * -2) / 1.0])
    assert priors.loc[("t1", "b")].tolist() == pytest.approx([-2.0, -2.0])  # only t2 measured b besides t1


def test_descriptors_and_agreement_flags():
    tasks = pd.DataFrame(
        {"n_train": [1000, 100], "n_labels": [2, 0], "regression": [False, True], "pair": [True, True]},
        index=["s", "t"],
    )
    pairs = pd.MultiIndex.from_tuples([("t", "s")], names=["target", "source"])
    row = descriptor_features(pairs, tasks).iloc[0]
    assert row.source_log_train == pytest.approx(3.0) and row.target_log_labels == 0.0
    assert row.same_pair == 1.0 and row.same_regression == 0.0


def test_conformal_quantile_by_hand():
    assert conformal_quantile(np.array([1.0, -2.0, 3.0, -4.0]), 0.2) == 4.0  # ceil(5 * 0.8) = 4th smallest |r|
    assert conformal_quantile(np.array([1.0, -2.0, 3.0, -4.0]), 0.5) == 3.0  # ceil(2.5) = 3rd


def synthetic(n_targets: int, n_sources: int, seed: int, shift: float = 0.0):
    """Gain = 3·(true quality of the source for the target) + noise; one method sees that quality with noise,
    another sees nothing."""
    rng = np.random.default_rng(seed)
    rows, gains = [], []
    for t in range(n_targets):
        quality = rng.normal(size=n_sources)
        for s in range(n_sources):
            rows.append((f"t{t}", f"s{s}", "good", quality[s] + 0.3 * rng.normal(), True))
            rows.append((f"t{t}", f"s{s}", "noise", rng.normal(), True))
            gains.append((f"t{t}", f"s{s}", 3 * quality[s] + shift + 0.5 * rng.normal()))
    scores = pd.DataFrame(rows, columns=["target", "source", "method", "score", "higher_is_better"])
    measured = pd.DataFrame(gains, columns=["target", "source", "gain"])
    names = sorted({*scores.target, *scores.source})
    tasks = pd.DataFrame({"n_train": 500, "n_labels": 2, "regression": False, "pair": False}, index=names)
    return scores, measured, tasks


def test_the_advisor_learns_the_signal_and_its_intervals_cover_held_out_targets():
    scores, measured, tasks = synthetic(n_targets=10, n_sources=12, seed=0)
    covered, spearmen = [], []
    for held in sorted(measured.target.unique())[:4]:
        others = measured[measured.target != held]
        features = pair_features(scores, tasks, others, None)
        y = measured.set_index(["target", "source"]).gain.reindex(features.index)
        train = features.index.get_level_values("target") != held
        advisor = SourceAdvisor(alpha=0.2).fit(
            features[train], y[train].to_numpy(), features.index[train].get_level_values(0)
        )
        advice = advisor.advise(features[~train])
        truth = y[~train].droplevel(0).reindex(advice.gains.index)
        covered.extend(((truth >= advice.gains.lower) & (truth <= advice.gains.upper)).tolist())
        spearmen.append(advice.gains.expected_gain.corr(truth, method="spearman"))
        assert advice.gains["rank"].tolist() == list(range(1, 13)) and not advice.dont_transfer
        top = advice.gains.top_features.iloc[0]
        assert "z:good" in top or "pct:good" in top  # the informative method drives the estimate
    assert np.mean(spearmen) > 0.8
    assert 0.6 <= np.mean(covered) <= 1.0  # nominal 80%


def test_dont_transfer_when_every_source_hurts():
    scores, measured, tasks = synthetic(n_targets=6, n_sources=8, seed=1, shift=-30.0)
    features = pair_features(scores, tasks, None, None)
    y = measured.set_index(["target", "source"]).gain.reindex(features.index).to_numpy()
    train = features.index.get_level_values("target") != "t0"
    advisor = SourceAdvisor().fit(features[train], y[train], features.index[train].get_level_values(0))
    assert advisor.learner_ in advisor.loto_errors_ and advisor.residual_quantile_ > 0
    assert advisor.advise(features[~train]).dont_transfer


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="'alpha' parameter of SourceAdvisor must be in \\(0, 1\\). Got 1.5"):
        SourceAdvisor(alpha=1.5)
    scores, measured, tasks = synthetic(n_targets=2, n_sources=3, seed=0)
    features = pair_features(scores, tasks, None, None)
    with pytest.raises(ValueError, match="at least 3 targets. Got 2 targets"):
        SourceAdvisor().fit(features, np.zeros(len(features)), features.index.get_level_values(0))


def test_verification_reorders_the_top_k_by_their_measured_gain():
    expected = pd.Series({"a": 5.0, "b": 4.0, "c": 3.0, "d": -1.0})
    measured = pd.Series({"a": -2.0, "b": 1.5, "c": 7.0})  # c was not among the top 2: its measurement is unused
    scores = verified_ranking(expected, measured, k=2)
    assert scores.sort_values(ascending=False).index.tolist() == ["b", "a", "c", "d"]
    assert verified_ranking(expected, measured, k=3).idxmax() == "c"
    with pytest.raises(ValueError, match="lacks the verified sources \\['d'\\]"):
        verified_ranking(expected, measured, k=4)
    with pytest.raises(ValueError, match="'k' parameter of verified_ranking must be a positive int. Got 0"):
        verified_ranking(expected, measured, k=0)


def synthetic_runs(measured: pd.DataFrame, seeds: int, noise: float, seed: int) -> pd.DataFrame:
    """Per-seed runs around the synthetic mean gains: baseline 0.5 per seed, source = 0.5 + (gain + noise) / 100."""
    rng = np.random.default_rng(seed)
    rows = []
    for target in measured.target.unique():
        for s in range(seeds):
            rows.append((target, "", s, 0.5))
            for row in measured[measured.target == target].itertuples():
                rows.append((target, row.source, s, 0.5 + (row.gain + noise * rng.normal()) / 100))
    return pd.DataFrame(rows, columns=["target", "source", "seed", "value"])


def test_leave_one_target_out_scores_the_advisor_and_verification_honestly():
    scores, measured, tasks = synthetic(n_targets=6, n_sources=10, seed=2)
    runs = synthetic_runs(measured, seeds=2, noise=0.5, seed=3)
    rows = leave_one_target_out(scores, runs, tasks, verify=(2,), ks=(1, 3))
    table = rows.pivot_table(index=["target", "method"], columns="metric", values="value")
    advisor = table.xs("advisor", level="method")
    assert len(advisor) == 6 and advisor.spearman.mean() > 0.7
    assert advisor.coverage.between(0, 1).all() and (advisor.width > 0).all()
    assert (advisor.dont_transfer == 0).all() and (advisor.nothing_helps == 0).all()
    assert table.xs("advisor+verify@2", level="method")["regret@1"].notna().all()
    # noise-free seeds: verifying the top 2 picks the better of the two exactly, so it never regrets more
    exact = leave_one_target_out(scores, synthetic_runs(measured, 2, 0.0, 3), tasks, verify=(2,), ks=(1,))
    exact = exact[exact.metric == "regret@1"].pivot_table(index="target", columns="method", values="value")
    assert (exact["advisor+verify@2"] <= exact["advisor"] + 1e-9).all()
    assert (exact["advisor+verify@2"] < exact["advisor"]).any()  # and here it repairs at least one first pick
    # a target's own runs never reach its features: changing them changes only its own scores
    changed = runs.copy()
    changed.loc[(changed.target == "t0") & (changed.source != ""), "value"] = 0.5
    again = leave_one_target_out(scores, changed, tasks, verify=(2,), ks=(1, 3))
    again = again.pivot_table(index=["target", "method"], columns="metric", values="value")
    assert again.xs("advisor", level="method").loc["t0", "nothing_helps"] == 1.0
    assert again.loc[("t0", "advisor"), "width"] == pytest.approx(table.loc[("t0", "advisor"), "width"])
