"""Random subsets: the baseline every selection method must beat (seeded, uniform without replacement)."""

from __future__ import annotations

import numpy as np

from selection.budget import resolve_budget


def random_select(n_pool: int, budget: int | float, *, seed: int = 0) -> np.ndarray:
    """``resolve_budget(budget, n_pool)`` distinct pool indices [b] drawn uniformly without replacement (int64,
    in draw order) with ``numpy.random.default_rng(seed)``."""
    count = resolve_budget("random_select", budget, n_pool)
    return np.random.default_rng(seed).choice(n_pool, size=count, replace=False).astype(np.int64)
