"""Class-stratified budgets: a hand-worked example, the largest-remainder quotas, and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selection.stratify import class_quotas, stratified_take


def test_hand_worked_example():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])  # 30% / 70%
    order = np.array([3, 4, 0, 5, 6, 1, 7, 8, 2, 9])  # the method prefers class 1
    assert class_quotas(labels, 4) == {0: 1, 1: 3}  # 1.2 and 2.8: the larger remainder (0.8) gets the extra one
    np.testing.assert_array_equal(stratified_take(order, labels, 4), [3, 4, 0, 5])
    np.testing.assert_array_equal(stratified_take(order, labels, 10), order)
    assert class_quotas(np.array([0, 1, 2]), 2) == {0: 1, 1: 1, 2: 0}  # equal remainders: the lower class first


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="'order' parameter of stratified_take must rank every one of the 3"):
        stratified_take(np.array([0, 1]), np.array([0, 1, 1]), 1)
    with pytest.raises(ValueError, match="'labels' parameter of stratified_take must hold class indices"):
        stratified_take(np.array([0, 1]), np.array([0.5, 1.0]), 1)
    with pytest.raises(ValueError, match=r"'count' parameter of stratified_take must be an int in \[1, 2\]. Got 3"):
        stratified_take(np.array([0, 1]), np.array([0, 1]), 3)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), n=st.integers(1, 60), n_classes=st.integers(1, 5))
def test_quotas_are_proportional_and_the_order_is_kept(data, n, n_classes):
    labels = np.array(data.draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n)))
    order = np.array(data.draw(st.permutations(range(n))))
    count = data.draw(st.integers(1, n))
    taken = stratified_take(order, labels, count)
    assert len(taken) == count == len(set(taken.tolist()))
    positions = {index: i for i, index in enumerate(order.tolist())}
    assert [positions[i] for i in taken] == sorted(positions[i] for i in taken)  # in the method's order
    for label in np.unique(labels):
        members = labels == label
        got = int(members[taken].sum())
        assert abs(got - count * members.sum() / n) < 1
        first = [i for i in order.tolist() if labels[i] == label][:got]
        assert sorted(first) == sorted(i for i in taken.tolist() if labels[i] == label)  # the class's best
