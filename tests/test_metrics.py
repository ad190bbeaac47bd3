"""Ranking-quality metrics: hand-worked examples (arithmetic in comments), conventions and properties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from transfer.metrics import (
    UndefinedMetricError,
    kendall,
    ndcg_at_k,
    one_seed_oracle,
    points_lost_at_k,
    ranking_quality,
    regret_at_k,
    spearman,
    taskweb_regret_at_k,
    top1_hit,
)

LOG2_3, LOG2_5 = math.log2(3), math.log2(5)

# Example A: four sources, accuracies; no-transfer baseline 0.72.
# Predicted order (score descending): b (0.9), c (0.5), d (0.3), a (0.1). True order: a, b, c, d.
MEAS_A = {"a": 0.80, "b": 0.75, "c": 0.70, "d": 0.60}
PRED_A = {"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.3}
BASE_A = 0.72


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (1, 6.25),  # best = max(0.80, 0.72) = 0.80; top-1 {b} -> 0.75; (0.80 - 0.75) / 0.80 * 100 = 6.25
        (3, 6.25),  # top-3 {b, c, d} -> max 0.75; same 6.25
        (4, 0.0),  # top-4 includes a (0.80) -> 0
        (10, 0.0),  # k > pool: clamped to 4 -> 0
    ],
)
def test_regret_example_a(k, expected):
    assert regret_at_k(PRED_A, MEAS_A, k=k, baseline=BASE_A) == pytest.approx(expected)
    # the baseline (0.72) is below the best source, so dropping it changes nothing here
    assert regret_at_k(PRED_A, MEAS_A, k=k, include_no_transfer=False) == pytest.approx(expected)
    # absolute: (0.80 - 0.75) * 100 = 5 points at k = 1
    assert regret_at_k(PRED_A, MEAS_A, k=k, baseline=BASE_A, normalize=False) == pytest.approx(expected * 0.8)


@pytest.mark.parametrize(
    ("k", "baseline", "expected"),
    [
        (1, BASE_A, 5.0),  # best = max(0.80, 0.72) = 0.80 (a); top-1 {b} -> 0.75; (0.80 - 0.75) * 100 = 5 points
        (3, BASE_A, 5.0),  # top-3 {b, c, d} -> max 0.75; still 5 points
        (4, BASE_A, 0.0),  # top-4 includes a (0.80) -> nothing lost
        (1, 0.85, 10.0),  # no transfer is best: (0.85 - 0.75) * 100 = 10 points, what taking b costs
        (4, 0.85, 5.0),  # even the best source a (0.80) loses (0.85 - 0.80) * 100 = 5 points to no transfer
    ],
)
def test_points_lost_example_a(k, baseline, expected):
    assert points_lost_at_k(PRED_A, MEAS_A, k=k, baseline=baseline) == pytest.approx(expected)
    # the same loss as regret@k before its division by the best performance: 5 points of 0.80 is 6.25%
    best = max(max(MEAS_A.values()), baseline)
    assert regret_at_k(PRED_A, MEAS_A, k=k, baseline=baseline) == pytest.approx(expected / best)


def test_points_lost_is_defined_where_regret_is_not():
    # regression scores all below zero: the best is x (-0.10), the top-1 is y (-0.25): 15 points lost; regret would
    # divide by -0.10
    predicted, measured = {"x": 0.0, "y": 1.0}, {"x": -0.10, "y": -0.25}
    assert points_lost_at_k(predicted, measured, k=1, baseline=-0.30) == pytest.approx(15.0)
    assert points_lost_at_k(predicted, measured, k=1, include_no_transfer=False) == pytest.approx(15.0)
    with pytest.raises(UndefinedMetricError):
        regret_at_k(predicted, measured, k=1, baseline=-0.30)
    out = ranking_quality(predicted, measured, baseline=-0.30, ks=(1,))
    assert math.isnan(out["regret@1"]) and out["points_lost@1"] == pytest.approx(15.0)
    with pytest.raises(ValueError, match="The 'k' parameter of points_lost_at_k must be a positive int"):
        points_lost_at_k(predicted, measured, k=0, baseline=-0.30)
    with pytest.raises(ValueError, match="The 'baseline' parameter of points_lost_at_k must be a finite float"):
        points_lost_at_k(predicted, measured, k=1)


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (1, 6.25),  # true top-1 mean 0.80, predicted {b} 0.75: 0.05 / 0.80 * 100
        (2, 0.05 / 0.775 * 100),  # true (0.80 + 0.75) / 2 = 0.775; predicted {b, c} (0.75 + 0.70) / 2 = 0.725
        (3, (0.75 - 0.6833333333333333) / 0.75 * 100),  # true (.8+.75+.7)/3 = .75; predicted (.75+.7+.6)/3 = .68333
        (9, 0.0),  # k > pool: both means are over all four sources
    ],
)
def test_taskweb_regret_example_a(k, expected):
    assert taskweb_regret_at_k(PRED_A, MEAS_A, k=k) == pytest.approx(expected)


def test_ndcg_exponential_example_a():
    # gains 2**(100 p) - 1: a 2**80 - 1, b 2**75 - 1, c 2**70 - 1, d 2**60 - 1; predicted order b, c, d, a
    g = {s: 2.0 ** (100 * p) - 1 for s, p in MEAS_A.items()}
    # @1: (2**75 - 1) / (2**80 - 1) ~= 1/32
    assert ndcg_at_k(PRED_A, MEAS_A, k=1) == pytest.approx(g["b"] / g["a"], rel=1e-12)
    assert ndcg_at_k(PRED_A, MEAS_A, k=1) == pytest.approx(1 / 32, rel=1e-12)
    # @2: (g_b + g_c / log2 3) / (g_a + g_b / log2 3) = (32 + 0.63093) / (1024 + 20.18975) (both / 2**70)
    expected = (g["b"] + g["c"] / LOG2_3) / (g["a"] + g["b"] / LOG2_3)
    assert ndcg_at_k(PRED_A, MEAS_A, k=2) == pytest.approx(expected, rel=1e-12)
    assert ndcg_at_k(PRED_A, MEAS_A, k=2) == pytest.approx(32.63093 / 1044.18975, rel=1e-6)


def test_ndcg_rank_example_a():
    # true ranks a 1, b 2, c 3, d 4 -> rel = n + 1 - rank = 4, 3, 2, 1 -> gains 2**rel - 1 = 15, 7, 3, 1
    # predicted order b, c, d, a -> gains 7, 3, 1, 15
    dcg = 7 + 3 / LOG2_3 + 1 / 2 + 15 / LOG2_5  # 7 + 1.892789 + 0.5 + 6.460148 = 15.852937
    idcg = 15 + 7 / LOG2_3 + 3 / 2 + 1 / LOG2_5  # 15 + 4.416508 + 1.5 + 0.430677 = 21.347185
    assert ndcg_at_k(PRED_A, MEAS_A, gain="rank") == pytest.approx(dcg / idcg)
    assert ndcg_at_k(PRED_A, MEAS_A, gain="rank") == pytest.approx(0.742624, abs=1e-6)  # 15.852937 / 21.347185
    assert ndcg_at_k(PRED_A, MEAS_A, k=1, gain="rank") == pytest.approx(7 / 15)
    assert ndcg_at_k(PRED_A, MEAS_A, k=99, gain="rank") == ndcg_at_k(PRED_A, MEAS_A, gain="rank")  # clamped


def test_correlations_and_top1_example_a():
    # ascending ranks: predicted a1 d2 c3 b4, measured d1 c2 b3 a4; d = -3, 1, 1, 1; sum d^2 = 12
    # rho = 1 - 6 * 12 / (4 * (16 - 1)) = 1 - 72/60 = -0.2
    assert spearman(PRED_A, MEAS_A) == pytest.approx(-0.2)
    # pairs: (a,b) (a,c) (a,d) discordant, (b,c) (b,d) (c,d) concordant -> tau = (3 - 3) / 6 = 0
    assert kendall(PRED_A, MEAS_A) == pytest.approx(0.0)
    # predicted best is b (0.75), true best is a (0.80)
    assert top1_hit(PRED_A, MEAS_A) == 0.0


def test_ranking_quality_example_a():
    out = ranking_quality(PRED_A, MEAS_A, baseline=BASE_A, ks=(1, 3))
    assert set(out) == {
        "regret@1", "regret@3", "points_lost@1", "points_lost@3", "taskweb_regret@1", "taskweb_regret@3", "ndcg@1",
        "ndcg@3",
        "ndcg_rank@1", "ndcg_rank@3", "ndcg", "ndcg_rank", "spearman", "kendall", "top1_hit",
    }  # fmt: skip
    assert out["regret@1"] == pytest.approx(6.25) and out["points_lost@1"] == pytest.approx(5.0)
    assert out["taskweb_regret@3"] == pytest.approx(taskweb_regret_at_k(PRED_A, MEAS_A, k=3))
    assert out["ndcg_rank"] == pytest.approx(0.742624, abs=1e-6)
    assert out["spearman"] == pytest.approx(-0.2) and out["top1_hit"] == 0.0
    assert all(isinstance(v, float) for v in out.values())
    assert set(ranking_quality(PRED_A, MEAS_A, baseline=BASE_A)) >= {"regret@5", "ndcg@5", "ndcg_rank@5"}


def test_inputs_dict_array_series_agree():
    keys = list(MEAS_A)
    pred, meas = [PRED_A[s] for s in keys], [MEAS_A[s] for s in keys]
    # dict order does not matter: alignment is by key
    shuffled = {s: PRED_A[s] for s in reversed(keys)}
    ref = ranking_quality(PRED_A, MEAS_A, baseline=BASE_A)
    for p, m in [(pred, meas), (np.array(pred), np.array(meas)), (pd.Series(shuffled), pd.Series(MEAS_A))]:
        assert ranking_quality(p, m, baseline=BASE_A) == pytest.approx(ref)


# --- ties -------------------------------------------------------------------------------------------------------


def test_predicted_ties_take_the_worst_case():
    # a and b tie on the predicted score; the worse of them (b, 0.6) is ranked first: order b, a, c
    pred, meas = {"a": 0.9, "b": 0.9, "c": 0.1}, {"a": 0.8, "b": 0.6, "c": 0.7}
    assert regret_at_k(pred, meas, k=1, baseline=0.5) == pytest.approx(25.0)  # (0.8 - 0.6) / 0.8 * 100
    assert regret_at_k(pred, meas, k=2, baseline=0.5) == 0.0  # {b, a} holds 0.8
    assert top1_hit(pred, meas) == 0.0
    # taskweb@1: (0.8 - 0.6) / 0.8 * 100 = 25; @2: true (0.8 + 0.7) / 2 = 0.75, predicted (0.6 + 0.8) / 2 = 0.7
    assert taskweb_regret_at_k(pred, meas, k=2) == pytest.approx(0.05 / 0.75 * 100)
    # same result whatever the input order
    flipped = ({"b": 0.9, "a": 0.9, "c": 0.1}, {"c": 0.7, "b": 0.6, "a": 0.8})
    assert regret_at_k(*flipped, k=1, baseline=0.5) == pytest.approx(25.0)


def test_constant_predictor_is_scored_as_the_reversed_ranking():
    meas = [0.9, 0.7, 0.5, 0.3]
    for gain in ("exponential", "rank"):
        for k in (1, 2, None):
            assert ndcg_at_k([0, 0, 0, 0], meas, k=k, gain=gain) == ndcg_at_k([1, 2, 3, 4], meas, k=k, gain=gain)
    assert regret_at_k([5, 5, 5, 5], meas, k=1, include_no_transfer=False) == pytest.approx((0.9 - 0.3) / 0.9 * 100)
    with pytest.raises(UndefinedMetricError):
        spearman([5, 5, 5, 5], meas)
    assert math.isnan(ranking_quality([5, 5, 5, 5], meas, baseline=0.1)["kendall"])


def test_measured_ties_count_as_top1_hits_and_share_rank_relevance():
    assert top1_hit({"a": 0.9, "b": 0.1}, {"a": 0.8, "b": 0.8}) == 1.0
    # measured 0.8, 0.8, 0.5: ranks 1.5, 1.5, 3 -> rel 2.5, 2.5, 1; any order of a and b is ideal
    assert ndcg_at_k([0.1, 0.9, 0.0], [0.8, 0.8, 0.5], gain="rank") == pytest.approx(1.0)
    assert ndcg_at_k([0.1, 0.9, 0.0], [0.8, 0.8, 0.5], k=1, gain="exponential") == pytest.approx(1.0)


def test_correlations_with_ties():
    pred, meas = [1, 1, 2], [1, 2, 3]
    # tau-b: pairs (0,1) tied in pred only, (0,2) and (1,2) concordant; n0 = 3, ties in pred 1, in meas 0
    # tau_b = 2 / sqrt((3 - 1) * (3 - 0)) = 2 / sqrt(6)
    assert kendall(pred, meas) == pytest.approx(2 / math.sqrt(6))
    # average ranks pred 1.5, 1.5, 3 (dev -.5 -.5 1), meas 1, 2, 3 (dev -1 0 1): 1.5 / sqrt(1.5 * 2) = sqrt(3) / 2
    assert spearman(pred, meas) == pytest.approx(math.sqrt(3) / 2)


# --- perfect / reversed, every source hurts, scores <= 0 ----------------------------------------------------------


def test_perfect_and_reversed_rankings():
    meas = np.array([0.9, 0.8, 0.6, 0.55, 0.3])
    for gain in ("exponential", "rank"):
        for k in (1, 3, None):
            assert ndcg_at_k(meas, meas, k=k, gain=gain) == pytest.approx(1.0)
    assert spearman(meas, meas) == pytest.approx(1.0) and kendall(meas, meas) == pytest.approx(1.0)
    assert spearman(-meas, meas) == pytest.approx(-1.0) and kendall(-meas, meas) == pytest.approx(-1.0)
    assert top1_hit(meas, meas) == 1.0 and top1_hit(-meas, meas) == 0.0
    assert ndcg_at_k(-meas, meas, gain="rank") < 1.0
    assert regret_at_k(meas, meas, k=1, baseline=0.5) == 0.0
    assert taskweb_regret_at_k(meas, meas, k=3) == 0.0


def test_every_source_hurts():
    # both sources below no-transfer (0.70): the best option (no-transfer) cannot be predicted
    meas = {"a": 0.60, "b": 0.55}
    perfect = dict(meas)
    # (0.70 - 0.60) / 0.70 * 100 = 14.2857...
    assert regret_at_k(perfect, meas, k=1, baseline=0.70) == pytest.approx(100 / 7)
    assert regret_at_k(perfect, meas, k=2, baseline=0.70) == pytest.approx(100 / 7)
    assert regret_at_k(perfect, meas, k=1, include_no_transfer=False) == 0.0
    assert regret_at_k(perfect, meas, k=1, baseline=0.70, include_no_transfer=False) == 0.0


def test_regression_scores_below_zero_with_a_positive_best():
    # mean Pearson/Spearman: a 0.2, b -0.1, c -0.3; reversed prediction picks c first
    pred, meas = {"a": 1, "b": 2, "c": 3}, {"a": 0.2, "b": -0.1, "c": -0.3}
    # best = max(0.2, baseline 0.1) = 0.2; (0.2 - (-0.3)) / 0.2 * 100 = 250 (> 100 is possible)
    assert regret_at_k(pred, meas, k=1, baseline=0.1) == pytest.approx(250.0)
    assert regret_at_k(pred, meas, k=1, baseline=0.1, normalize=False) == pytest.approx(50.0)  # 0.5 * 100
    # taskweb@2: true (0.2 - 0.1) / 2 = 0.05; predicted (c, b) (-0.3 - 0.1) / 2 = -0.2; 0.25 / 0.05 * 100 = 500
    assert taskweb_regret_at_k(pred, meas, k=2) == pytest.approx(500.0)
    # exponential gain clips at 0: gains a 2**20 - 1, b 0, c 0; predicted order c, b, a
    assert ndcg_at_k(pred, meas, k=1) == 0.0
    assert ndcg_at_k(pred, meas) == pytest.approx(1 / 2)  # (2**20 - 1) / log2(4) over (2**20 - 1) / 1
    # rank gain only uses the order: rel a 3, b 2, c 1 -> gains 7, 3, 1; predicted c, b, a
    expected = (1 + 3 / LOG2_3 + 7 / 2) / (7 + 3 / LOG2_3 + 1 / 2)
    assert ndcg_at_k(pred, meas, gain="rank") == pytest.approx(expected)
    assert spearman(pred, meas) == pytest.approx(-1.0)


def test_regression_scores_all_at_or_below_zero():
    pred, meas, baseline = {"a": 2, "b": 1}, {"a": -0.1, "b": -0.2}, -0.05
    with pytest.raises(UndefinedMetricError, match="normalize=False"):
        regret_at_k(pred, meas, k=1, baseline=baseline)
    # absolute: best = max(-0.1, -0.2, -0.05) = -0.05; chosen a = -0.1 -> 0.05 * 100 = 5 points
    assert regret_at_k(pred, meas, k=1, baseline=baseline, normalize=False) == pytest.approx(5.0)
    with pytest.raises(UndefinedMetricError):
        taskweb_regret_at_k(pred, meas, k=1)
    assert taskweb_regret_at_k({"a": 1, "b": 2}, meas, k=1, normalize=False) == pytest.approx(10.0)  # 0.1 * 100
    with pytest.raises(UndefinedMetricError):
        ndcg_at_k(pred, meas)  # every exponential gain clips to 0
    out = ranking_quality(pred, meas, baseline=baseline, ks=(1,))
    for key in ("regret@1", "taskweb_regret@1", "ndcg@1", "ndcg"):
        assert math.isnan(out[key]), key
    assert out["ndcg_rank@1"] == 1.0 and out["ndcg_rank"] == pytest.approx(1.0)
    assert out["spearman"] == pytest.approx(1.0) and out["kendall"] == pytest.approx(1.0) and out["top1_hit"] == 1.0


def test_exponential_gain_rejects_percentages_and_rank_gain_handles_big_pools():
    with pytest.raises(ValueError, match="fractions"):
        ndcg_at_k([1, 2], [80.0, 70.0])
    assert ndcg_at_k([1, 2], [80.0, 70.0], gain="rank") < 1.0
    # 50 sources: 2**50 is exact in float64, so the unscaled textbook formula is a reference for the scaled one
    meas = np.linspace(0, 1, 50)
    gains = 2.0 ** np.arange(1, 51) - 1  # rel 1 (worst) .. 50 (best), in measured order
    discounts = 1 / np.log2(np.arange(2, 52))
    assert ndcg_at_k(-meas, meas, gain="rank") == pytest.approx((gains @ discounts) / (gains[::-1] @ discounts))
    # 2000 sources: 2**2000 would overflow without the common scaling
    meas = np.linspace(0, 1, 2000)
    assert ndcg_at_k(meas, meas, gain="rank") == pytest.approx(1.0)
    assert 0.0 < ndcg_at_k(-meas, meas, gain="rank") < 1.0


# --- validation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [-1, 0, 1.5, True, "3"])
def test_k_must_be_a_positive_int(k):
    with pytest.raises(ValueError, match=rf"The 'k' parameter of regret_at_k must be a positive int. Got {k!r}"):
        regret_at_k([1, 2], [0.1, 0.2], k=k, baseline=0.0)


def test_k_message_is_sklearn_style():
    with pytest.raises(ValueError) as info:
        regret_at_k([1, 2], [0.1, 0.2], k=-1, baseline=0.0)
    assert str(info.value) == "The 'k' parameter of regret_at_k must be a positive int. Got -1 instead."
    with pytest.raises(ValueError, match="of ranking_quality"):
        ranking_quality([1, 2], [0.1, 0.2], baseline=0.0, ks=(1, 0))
    assert regret_at_k([1, 2], [0.1, 0.2], k=np.int64(1), baseline=0.0) == 0.0


@pytest.mark.parametrize(
    ("pred", "meas", "match"),
    [
        ([1, 2], [0.1, 0.2, 0.3], "same length"),
        ([], [], "non-empty"),
        ([[1, 2]], [[0.1, 0.2]], "1-D"),
        ([1, np.nan], [0.1, 0.2], "'predicted' parameter of top1_hit must be finite"),
        ([1, 2], [0.1, np.inf], "'measured' parameter of top1_hit must be finite"),
        ({"a": 1}, {"b": 0.1}, "same sources"),
        ({"a": 1}, [0.1], "both be mappings or both be arrays"),
    ],
)
def test_input_validation(pred, meas, match):
    with pytest.raises(ValueError, match=match):
        top1_hit(pred, meas)


def test_option_validation():
    with pytest.raises(ValueError, match="'baseline' parameter of regret_at_k"):
        regret_at_k([1, 2], [0.1, 0.2], k=1)
    with pytest.raises(ValueError, match="'gain' parameter of ndcg_at_k"):
        ndcg_at_k([1, 2], [0.1, 0.2], gain="linear")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        regret_at_k([1, 2], [0.1, 0.2], 1)  # type: ignore[misc]


# --- properties -------------------------------------------------------------------------------------------------

# small value sets so that ties in both predicted scores and performances are frequent
pools = st.integers(1, 8).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(-3, 3).map(float), min_size=n, max_size=n),
        st.lists(st.sampled_from([-0.2, 0.0, 0.3, 0.5, 0.55, 0.9]), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(pools, st.randoms(use_true_random=False), st.sampled_from([-0.1, 0.4, 0.95]))
def test_invariant_to_permuting_sources_jointly(pool, rnd, baseline):
    pred, meas = pool
    perm = list(range(len(pred)))
    rnd.shuffle(perm)
    a = ranking_quality(pred, meas, baseline=baseline, ks=(1, 2, 3, 10))
    b = ranking_quality([pred[i] for i in perm], [meas[i] for i in perm], baseline=baseline, ks=(1, 2, 3, 10))
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[key] for key in a], [b[key] for key in a], rtol=1e-12, atol=1e-12, equal_nan=True)


@settings(max_examples=60, deadline=None)
@given(pools, st.integers(1, 10))
def test_ndcg_in_unit_interval(pool, k):
    pred, meas = pool
    for gain in ("exponential", "rank"):
        try:
            value = ndcg_at_k(pred, meas, k=k, gain=gain)
        except UndefinedMetricError:
            assert gain == "exponential" and max(meas) <= 0
            continue
        assert 0.0 <= value <= 1.0 + 1e-12


@settings(max_examples=60, deadline=None)
@given(pools, st.sampled_from([-0.1, 0.4, 0.95]))
def test_regret_nonnegative_and_nonincreasing_in_k(pool, baseline):
    pred, meas = pool
    assume(max(max(meas), baseline) > 0)
    for include in (True, False):
        assume(include or max(meas) > 0)
        values = [regret_at_k(pred, meas, k=k, baseline=baseline, include_no_transfer=include) for k in range(1, 10)]
        assert all(v >= 0 for v in values)
        assert all(later <= earlier for earlier, later in zip(values, values[1:], strict=False))
        assert values[-1] == 0.0 or (include and baseline > max(meas))


@settings(max_examples=60, deadline=None)
@given(pools)
def test_top1_hit_matches_zero_source_regret(pool):
    pred, meas = pool
    regret = regret_at_k(pred, meas, k=1, include_no_transfer=False, normalize=False)
    assert top1_hit(pred, meas) == float(regret == 0.0)


def test_one_seed_oracle_by_hand():
    """Two seeds. Seed 0 ranks a > c > b, scored against seed 1 (a .74, b .79, c .70): picks a, the best is b,
    regret (0.79 - 0.74) / 0.79 · 100; ranks (3, 1, 2) vs (2, 3, 1): Σd² = 6, ρ = 1 - 6·6 / (3·8) = -0.5. Seed 1
    ranks b > a > c, scored against seed 0 (a .80, b .70, c .75): picks b, regret (0.80 - 0.70) / 0.80 · 100 = 12.5;
    ρ = -0.5 again. The oracle is the mean over the two."""
    runs = {"a": [0.80, 0.74], "b": [0.70, 0.79], "c": [0.75, 0.70]}
    oracle = one_seed_oracle(runs, [0.70, 0.70], ks=(1,))
    assert oracle["regret@1"] == pytest.approx(((0.79 - 0.74) / 0.79 * 100 + 12.5) / 2)
    assert oracle["spearman"] == pytest.approx(-0.5)
    assert oracle["top1_hit"] == 0.0
    agreeing = one_seed_oracle({"a": [0.9, 0.8], "b": [0.7, 0.6], "c": [0.5, 0.4]}, [0.3, 0.3], ks=(1,))
    assert agreeing["regret@1"] == 0.0 and agreeing["spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'runs' parameter of one_seed_oracle must give every source the same number"):
        one_seed_oracle({"a": [0.8], "b": [0.7]}, [0.7])


def test_near_ties_by_hand():
    from transfer.metrics import near_ties

    # mean |score| 0.712 -> tolerance 0.0036: -0.698, -0.699, -0.701 chain (gaps 0.001, 0.002); -0.75 stands apart
    scores = {"a": -0.701, "b": -0.699, "c": -0.698, "d": -0.75, "e": float("nan")}
    assert near_ties(scores) == [["c", "b", "a"]]
    assert near_ties(scores, relative=0.001) == []  # tolerance 0.0007: every gap is larger
    assert near_ties({"a": 1.0}) == []
    with pytest.raises(ValueError, match="'relative' parameter of near_ties"):
        near_ties(scores, relative=0)


def test_evaluate_target_scores_methods_and_references_by_hand():
    from transfer.metrics import evaluate_target

    runs = {"": [0.50, 0.50], "a": [0.60, 0.62], "b": [0.55, 0.53]}  # means: a 0.61, b 0.54, baseline 0.50
    predicted = {"m": {"a": 1.0, "b": 2.0}, "alone": {"a": 1.0}}
    rows = evaluate_target(predicted, {"a": 0.61, "b": 0.54}, 0.50, runs=runs, prior={"a": 3.0, "b": -1.0})
    table = {(r["method"], r["metric"]): r["value"] for r in rows}
    # m picks b first: it loses 0.61 - 0.54 of the best performance 0.61
    assert table[("m", "regret@1")] == pytest.approx(100 * 0.07 / 0.61)
    assert table[("m", "points_lost@1")] == pytest.approx(7.0)
    assert table[("source-prior", "points_lost@1")] == 0.0  # the prior orders a first
    assert table[("one-seed-oracle", "points_lost@1")] == 0.0  # a beats b on both seeds
    assert 0 < table[("random", "points_lost@1")] < 7.0  # half the random orders pick b first
    assert not any(method == "alone" for method, _ in table)  # one scored source ranks nothing
    assert {r["n_sources"] for r in rows} == {2}
    # without per-seed runs (only summaries stored) there is no oracle row; everything else stands
    summary_only = evaluate_target(predicted, {"a": 0.61, "b": 0.54}, 0.50)
    assert {r["method"] for r in summary_only} == {"m", "random"}
