"""Subset budgets, one rule for every selection method: a float in (0, 1] is a fraction of the pool (``1.0`` = the
whole pool, rounded to the nearest count, at least one example); an int ≥ 1 is a count (``1`` = one example)."""

from __future__ import annotations

import math

import numpy as np

from transfer.errors import InputError


def resolve_budget(owner: str, budget: object, n_pool: int) -> int:
    """The number of examples ``budget`` asks for out of ``n_pool``; a clear error when it is not a fraction in
    (0, 1] or a count in [1, n_pool]."""
    count = -1
    if isinstance(budget, (int, np.integer)) and not isinstance(budget, bool):
        count = int(budget)
    elif isinstance(budget, (float, np.floating)) and math.isfinite(budget) and 0 < budget <= 1:
        count = max(1, int(round(float(budget) * n_pool)))
    if not 1 <= count <= n_pool:
        raise InputError(
            f"The 'budget' parameter of {owner} must be a float in (0, 1] (a fraction of the pool) or an int in "
            f"[1, {n_pool}] (a count; the pool has {n_pool} examples). Got {budget!r} instead."
        )
    return count
