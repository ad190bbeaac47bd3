"""The source advisor's features, learner and intervals: hand-worked features and CV+ bounds; the nested
leave-one-target-out that never lets a held-out target's gains into any feature it is judged with; on synthetic
targets, that the learner finds the signal, its intervals cover held-out targets at about the nominal rate, the
bounds are infinite when too few targets back the level, it says "don't transfer" when nothing helps, and an
advised target's own measurements never reach its advice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from transfer.advisor import (
    PairFeatures,
    SourceAdvisor,
    advise_target,
    cv_plus_interval,
    descriptor_features,
    leave_one_target_out,
    method_features,
    nested_loto_predictions,
    prior_features,
    verified_ranking,
)
from transfer.advisor.learner import candidate_learners, training_rows


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


RIDGE = {"ridge": candidate_learners(0)["ridge"]}  # one learner: the tests of plumbing skip the learner choice


def test_cv_plus_by_hand():
    # one pair per target: plain CV+. centres mu_-k(x) = 1, 2, 3, 4; residuals 1, 1, 2, 0.5
    # upper: ceil(0.8 * 5) = 4th smallest of {2, 3, 5, 4.5} = 5; lower: 4th largest of {0, 1, 1, 3.5} = 0
    centres = [np.array([1.0]), np.array([2.0]), np.array([3.0]), np.array([4.0])]
    residuals = [np.array([1.0]), np.array([1.0]), np.array([2.0]), np.array([0.5])]
    lower, upper = cv_plus_interval(centres, residuals, alpha=0.2)
    assert lower.tolist() == [0.0] and upper.tolist() == [5.0]
    # at alpha 0.5 the level needs 2.5 of 5 units: the 3rd smallest / largest
    lower, upper = cv_plus_interval(centres, residuals, alpha=0.5)
    assert lower.tolist() == [1.0] and upper.tolist() == [4.5]


def test_cv_plus_weighs_every_target_as_one_unit():
    # target A has 4 pairs (weight 1/4 each), B and C one pair each; centre 0 in every fold, alpha 0.5: the upper
    # bound needs 2 of the 4 units. Ascending |r|: A's 1, 1, 1, 1 (cumulative 0.25 .. 1), B's 2 (2.0) -> 2.
    # Weighting pairs instead (6 pairs, need 3.5 of 7) would give A's fourth 1: the big target would decide.
    residuals = [np.array([1.0, 1.0, 1.0, 1.0]), np.array([2.0]), np.array([10.0])]
    lower, upper = cv_plus_interval([np.zeros(1)] * 3, residuals, alpha=0.5)
    assert upper.tolist() == [2.0] and lower.tolist() == [-2.0]


def test_cv_plus_is_infinite_when_too_few_targets_back_the_level():
    # 3 targets at 80%: (1 - 0.2)(3 + 1) = 3.2 units > 3, so no finite bound has the guarantee
    lower, upper = cv_plus_interval([np.zeros(2)] * 3, [np.ones(1)] * 3, alpha=0.2)
    assert np.isneginf(lower).all() and np.isposinf(upper).all()
    lower, upper = cv_plus_interval([np.zeros(2)] * 4, [np.ones(1)] * 4, alpha=0.2)  # 4 units: finite
    assert np.isfinite(lower).all() and np.isfinite(upper).all()
    with pytest.raises(ValueError, match="'alpha' parameter of cv_plus_interval must be in \\(0, 1\\). Got 0"):
        cv_plus_interval([np.zeros(1)], [np.ones(1)], alpha=0)


def test_inner_folds_recompute_the_priors_without_the_held_out_target():
    scores, measured, tasks = synthetic(n_targets=5, n_sources=6, seed=4)
    features = PairFeatures.build(scores, tasks)
    targets = sorted(measured.target.unique())
    changed = measured.copy()
    changed.loc[changed.target == "t1", "gain"] += 50.0  # only t1's own gains differ

    def nested(gains, rows):
        def fit(kept):
            X, y = rows(kept)
            train = y.gain.notna().to_numpy()
            return clone(RIDGE["ridge"]).fit(X[train], y.gain[train].to_numpy())

        return nested_loto_predictions(fit, rows, gains, targets)

    def honest(gains):
        return nested(gains, lambda kept: training_rows(features, gains, kept))

    # t1's held-out predictions never see t1's gains: not in the fit, not in any row's source prior or transitive
    assert honest(changed).loc["t1"].to_numpy() == pytest.approx(honest(measured).loc["t1"].to_numpy(), abs=1e-9)

    def features_once(gains):  # what a non-nested loop does: one feature matrix from every target's gains
        return nested(
            gains, lambda kept: (training_rows(features, gains, targets)[0], training_rows(features, gains, kept)[1])
        )

    # ...which this test would catch: there t1's gains reach the other rows' priors and move its predictions
    assert (
        np.abs(features_once(changed).loc["t1"].to_numpy() - features_once(measured).loc["t1"].to_numpy()).max() > 0.1
    )


def test_the_advisor_learns_the_signal_and_its_intervals_cover_held_out_targets():
    scores, measured, tasks = synthetic(n_targets=8, n_sources=10, seed=0)
    coverage, spearmen = [], []
    for held in ["t0", "t1", "t2", "t3"]:
        advice = advise_target(scores, measured, tasks, held, learners=RIDGE)
        truth = measured[measured.target == held].set_index("source").gain.reindex(advice.gains.index)
        coverage.append(((truth >= advice.gains.lower) & (truth <= advice.gains.upper)).mean())
        spearmen.append(advice.gains.expected_gain.corr(truth, method="spearman"))
        assert advice.gains["rank"].tolist() == list(range(1, 11)) and not advice.dont_transfer
        assert advice.level == pytest.approx(0.8) and np.isfinite(advice.gains.upper).all()
        top = advice.gains.top_features.iloc[0]
        assert "z:good" in top or "pct:good" in top  # the informative method drives the estimate
    assert np.mean(spearmen) > 0.8
    assert 0.6 <= np.mean(coverage) <= 1.0  # nominal 80%, per-target coverage averaged


def test_too_few_training_targets_give_infinite_bounds():
    scores, measured, tasks = synthetic(n_targets=4, n_sources=6, seed=5)
    advice = advise_target(scores, measured, tasks, "t0", learners=RIDGE)  # 3 training targets at 80%
    assert np.isposinf(advice.gains.upper).all() and np.isneginf(advice.gains.lower).all()
    features = PairFeatures.build(scores, tasks)
    assert SourceAdvisor(learners=RIDGE).fit(features, measured[measured.target != "t0"]).folds_ == []  # none fitted
    assert not advice.dont_transfer  # an infinite upper bound never says "don't transfer"


def test_dont_transfer_when_every_source_hurts_and_the_learner_is_chosen():
    scores, measured, tasks = synthetic(n_targets=6, n_sources=8, seed=1, shift=-30.0)
    features = PairFeatures.build(scores, tasks)
    advisor = SourceAdvisor().fit(features, measured[measured.target != "t0"])
    assert set(advisor.loto_errors_) == {"ridge", "boosted-trees"}
    assert advisor.learner_ == min(advisor.loto_errors_, key=advisor.loto_errors_.get)
    assert len(advisor.folds_) == 5 and all(len(f.targets) == 4 for f in advisor.folds_)
    assert advisor.advise("t0").dont_transfer


def test_the_advisor_is_a_scikit_learn_estimator():
    from sklearn.base import clone

    advisor = SourceAdvisor(alpha=0.1, seed=3)
    assert advisor.get_params() == {"alpha": 0.1, "seed": 3, "learners": None}
    assert clone(advisor.set_params(alpha=0.3)).alpha == 0.3


def test_bad_input_is_named():
    scores, measured, tasks = synthetic(n_targets=4, n_sources=3, seed=0)
    features = PairFeatures.build(scores, tasks)
    with pytest.raises(ValueError, match="'alpha' parameter of SourceAdvisor must be in \\(0, 1\\). Got 1.5"):
        SourceAdvisor(alpha=1.5).fit(features, measured)
    with pytest.raises(ValueError, match="at least 3 targets whose pairs have features. Got 2 targets"):
        SourceAdvisor().fit(features, measured[measured.target.isin(["t0", "t1"])])
    with pytest.raises(ValueError, match="'target' parameter of SourceAdvisor.advise is a training target: 't0'"):
        SourceAdvisor(learners=RIDGE).fit(features, measured[measured.target != "t3"]).advise("t0")


def test_an_advised_targets_own_gains_never_reach_its_advice():
    scores, measured, tasks = synthetic(n_targets=6, n_sources=8, seed=2)
    changed = measured.copy()
    changed.loc[changed.target == "t0", "gain"] = -40.0  # t0 now hurts everywhere
    before = advise_target(scores, measured, tasks, "t0", learners=RIDGE).gains
    after = advise_target(scores, changed, tasks, "t0", learners=RIDGE).gains
    pd.testing.assert_frame_equal(before.drop(columns="top_features"), after.drop(columns="top_features"))
    # the same change does reach every other target's advice (t0 is one of their training targets)
    other = advise_target(scores, measured, tasks, "t1", learners=RIDGE).gains.expected_gain
    moved = advise_target(scores, changed, tasks, "t1", learners=RIDGE).gains.expected_gain.reindex(other.index)
    assert np.abs(other - moved).max() > 0.1


def test_leave_one_target_out_scores_the_advisor_and_verification_honestly():
    scores, measured, tasks = synthetic(n_targets=6, n_sources=10, seed=2)
    runs = synthetic_runs(measured, seeds=2, noise=0.5, seed=3)
    rows = leave_one_target_out(scores, runs, tasks, verify=(2,), ks=(1, 3), learners=RIDGE)
    table = rows.pivot_table(index=["target", "method"], columns="metric", values="value")
    advisor = table.xs("advisor", level="method")
    assert len(advisor) == 6 and advisor.spearman.mean() > 0.7
    assert advisor.coverage.between(0, 1).all() and (advisor.width > 0).all()
    assert (advisor.dont_transfer == 0).all() and (advisor.nothing_helps == 0).all()
    assert table.xs("advisor+verify@2", level="method")["regret@1"].notna().all()
    # noise-free seeds: verifying the top 2 picks the better of the two exactly, so it never regrets more
    exact = leave_one_target_out(
        scores, synthetic_runs(measured, 2, 0.0, 3), tasks, verify=(2,), ks=(1,), learners=RIDGE
    )
    exact = exact[exact.metric == "regret@1"].pivot_table(index="target", columns="method", values="value")
    assert (exact["advisor+verify@2"] <= exact["advisor"] + 1e-9).all()
    assert (exact["advisor+verify@2"] < exact["advisor"]).any()  # and here it repairs at least one first pick
    # a target where nothing helps is recognised as such, and its call comes from the other targets alone
    hurt = runs.copy()
    hurt.loc[(hurt.target == "t0") & (hurt.source != ""), "value"] = 0.3
    again = leave_one_target_out(scores, hurt, tasks, verify=(), ks=(1,), learners=RIDGE)
    again = again.pivot_table(index=["target", "method"], columns="metric", values="value").xs(
        "advisor", level="method"
    )
    assert again.loc["t0", "nothing_helps"] == 1.0 and (again.drop(index="t0").nothing_helps == 0).all()
    assert again.loc["t0", "dont_transfer"] == 0.0  # t0's advice never saw its own losses
    assert again.loc["t0", "width"] == pytest.approx(advisor.loc["t0", "width"])
