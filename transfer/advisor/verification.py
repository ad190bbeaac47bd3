"""Verification: fold a few measured fine-tunes into the advisor's ranking."""

from __future__ import annotations

import pandas as pd

from transfer.errors import InputError


def verified_ranking(expected: pd.Series, measured: pd.Series, k: int) -> pd.Series:
    """Fold verification into a ranking: the ``k`` sources with the highest ``expected`` gain (index source) are
    fine-tuned on the target, and ``measured`` (their gain over the baseline of the same seeds, index source)
    re-orders them; they rank above every unverified source, which keep their expected order. Returns scores
    (higher = better) over ``expected``'s sources."""
    if not isinstance(k, int) or k < 1:
        raise InputError(f"The 'k' parameter of verified_ranking must be a positive int. Got {k!r} instead.")
    verified = expected.nlargest(k).index
    missing = sorted(set(verified) - set(measured.index))
    if missing:
        raise InputError(f"The 'measured' parameter of verified_ranking lacks the verified sources {missing}.")
    scores = expected.astype(float).copy()
    scores[verified] = expected.max() + 1.0 + measured[verified] - measured[verified].min()
    return scores
