"""ICONS specialist influence and generalist consensus on hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selection.icons import icons_select, specialist_influence, warmup_indices


def test_specialist_is_the_mean_cosine_to_the_target_examples():
    train = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [0.0, 0.0]])
    target = np.array([[2.0, 0.0], [0.0, 5.0]])
    # cosines: row 0 → (1, 0), row 1 → (0, 1), row 2 → (1/√2, 1/√2), a zero row → 0
    expected = np.array([0.5, 0.5, 1 / np.sqrt(2), 0.0])
    np.testing.assert_allclose(specialist_influence(train, target), expected, atol=1e-12)
    np.testing.assert_allclose(specialist_influence(train.astype(np.float16), target, block=1), expected, atol=1e-3)


def test_consensus_orders_by_votes_then_mean_normalised_influence():
    """Two tasks over five candidates, p = 40% (each task's top 2 vote).
    task a: [5, 4, 3, 2, 1] votes for 0, 1; task b: [1, 5, 4, 2, 3] votes for 1, 2.
    votes = [1, 2, 1, 0, 0]; z-scores (population std √2): a = [√2, 1/√2, 0, -1/√2, -√2],
    b = [-√2, √2, 1/√2, -1/√2, 0] → consensus = [0, 1.06, 0.35, -0.71, -0.71]: candidate 2 beats 0 among
    the 1-vote ones; 3 and 4 tie on both and fall back to index order."""
    result = icons_select({"a": np.array([5, 4, 3, 2, 1.0]), "b": np.array([1, 5, 4, 2, 3.0])}, 5, top_fraction=0.4)
    assert result.votes.tolist() == [1, 2, 1, 0, 0]
    np.testing.assert_allclose(
        result.consensus, [0, 3 / (2 * np.sqrt(2)), 1 / (2 * np.sqrt(2)), -1 / np.sqrt(2), -1 / np.sqrt(2)], atol=1e-12
    )
    assert result.order.tolist() == [1, 2, 0, 3, 4]
    assert result.thresholds == {"a": 4.0, "b": 4.0}
    assert icons_select({"a": np.array([5, 4, 3, 2, 1.0])}, 0.4).order.tolist() == [0, 1]


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 40), st.integers(1, 4), st.integers(0, 10_000))
def test_one_task_reduces_to_ranking_by_influence(n, tasks, seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=n)
    order = icons_select({"only": values}, n).order
    assert np.all(np.diff(values[order]) <= 0)
    # Permuting tasks changes nothing; every selected candidate has at least as many votes as any left out.
    influences = {f"t{i}": rng.normal(size=n) for i in range(tasks)}
    first = icons_select(influences, 0.5)
    second = icons_select(dict(reversed(list(influences.items()))), 0.5)
    assert first.order.tolist() == second.order.tolist()
    left_out = np.setdiff1d(np.arange(n), first.order)
    if len(left_out):
        assert first.votes[first.order].min() >= first.votes[left_out].max()


def test_stratified_budget_keeps_the_pool_class_shares_in_consensus_order():
    """One task ranks candidates 0..5 best first; classes [1, 1, 1, 0, 0, 0]. A budget of 2 takes the top two (both
    class 1) plainly, and the best of each class (0, then 3) when stratified."""
    influences = {"a": np.array([5, 4, 3, 2, 1, 0.0])}
    classes = np.array([1, 1, 1, 0, 0, 0])
    assert icons_select(influences, 2).order.tolist() == [0, 1]
    assert icons_select(influences, 2, stratify_by=classes).order.tolist() == [0, 3]


def test_warmup_takes_a_seeded_share_and_at_least_one_batch():
    rows = warmup_indices(2000, 0.05, seed=1)
    assert len(rows) == 100 and np.all(np.diff(rows) > 0) and np.array_equal(rows, warmup_indices(2000, 0.05, seed=1))
    assert len(warmup_indices(100, 0.05, seed=1)) == 16  # one batch of the warm-up recipe


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="'influences' parameter of icons_select must hold at least one task"):
        icons_select({}, 0.2)
    with pytest.raises(ValueError, match="'top_fraction' parameter of icons_select must be a float in"):
        icons_select({"a": np.ones(3)}, 1, top_fraction=0)
    with pytest.raises(ValueError, match=r"'budget' parameter of icons_select .* Got 9"):
        icons_select({"a": np.ones(3)}, 9)
    with pytest.raises(ValueError, match="same number of columns"):
        specialist_influence(np.ones((3, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"'warmup_fraction' ICONS parameter must be a float in \(0, 1\]. Got 5"):
        warmup_indices(100, 5, seed=0)
