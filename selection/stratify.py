"""Class-stratified budgets: take a method's ranking, but keep the pool's label proportions.

A selection method that ranks candidates by a score can drift to one class (gradient influence does on a binary
pool: a row's unit loss gradient is its label's sign times a direction that does not depend on the loss, so the
target's class mix and the gradients' shared direction shift each class's scores by a constant; `selection.icons`,
`reports/results/selection_diagnosis.json`). Stratifying by class (plain proportional allocation, as in stratified
sampling) fixes the per-class counts and lets the method choose only within each class:

    q_c = count · n_c / N, rounded by largest remainder so that Σ_c q_c = count,

then the subset is the first q_c candidates of each class c in the method's order, kept in that order.
"""

from __future__ import annotations

import numpy as np

from transfer.errors import InputError

_OWNER = "stratified_take"


def class_quotas(labels: np.ndarray, count: int) -> dict[int, int]:
    """{class: quota} proportional to the class counts of ``labels`` [N], summing to ``count`` (largest remainder;
    ties go to the larger, then the lower class)."""
    classes, sizes = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    exact = count * sizes / sizes.sum()
    quotas = np.floor(exact).astype(np.int64)
    remainder = exact - quotas
    for i in np.lexsort((classes, -sizes, -remainder))[: count - int(quotas.sum())]:
        quotas[i] += 1
    return dict(zip(classes.tolist(), quotas.tolist(), strict=True))


def stratified_take(order: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` of ``order`` (pool indices [N], a full ranking, best first) under per-class quotas
    proportional to the pool's classes ``labels`` [N] (class indices). Returns int64 indices [count], in ``order``'s
    order."""
    order, labels = np.asarray(order, dtype=np.int64), np.asarray(labels)
    if order.ndim != 1 or labels.ndim != 1 or sorted(order.tolist()) != list(range(len(labels))):
        raise InputError(
            f"The 'order' parameter of {_OWNER} must rank every one of the {len(labels)} pool rows once. Got "
            f"{len(order)} indices."
        )
    if not np.array_equal(labels, np.round(labels)):
        raise InputError(f"The 'labels' parameter of {_OWNER} must hold class indices; a regression pool has none.")
    if not (isinstance(count, (int, np.integer)) and 1 <= count <= len(order)):
        raise InputError(f"The 'count' parameter of {_OWNER} must be an int in [1, {len(order)}]. Got {count!r}.")
    remaining = class_quotas(labels, int(count))
    chosen = []
    for index in order:
        label = int(labels[index])
        if remaining[label] > 0:
            remaining[label] -= 1
            chosen.append(index)
    return np.array(chosen, dtype=np.int64)
