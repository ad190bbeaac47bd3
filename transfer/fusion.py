"""Rank fusion: combine several methods' rankings of the same sources into one.

* Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): score(s) = Σ_m w_m / (k + rank_m(s)), k = 60 by
  default. A source a method did not rank contributes nothing for that method.
* Weighted Borda count: score(s) = Σ_m w_m · (n_m − rank_m(s)) / (n_m − 1), each method's ranks mapped to [0, 1]
  (1 for its best) so methods ranking different numbers of sources weigh alike.

Inputs are ranks (1 = best, already oriented by each method's direction), one mapping per method. Higher fused
score = better.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from transfer.checks import check_choice
from transfer.errors import InputError

FUSIONS = ("rrf", "borda")


def fuse_rankings(
    ranks: Mapping[str, Mapping[str, float]],
    *,
    method: Literal["rrf", "borda"] = "rrf",
    weights: Mapping[str, float] | None = None,
    k: float = 60.0,
) -> dict[str, float]:
    """Fused scores {source: score} from ``ranks`` {method: {source: rank}}; ``weights`` {method: w} (default 1)."""
    check_choice("fuse_rankings", "method", method, FUSIONS)
    if not ranks:
        raise InputError("The 'ranks' parameter of fuse_rankings must hold at least one method's ranking. Got none.")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(ranks))
    if unknown or any(w < 0 for w in weights.values()):
        raise InputError(
            f"The 'weights' parameter of fuse_rankings must map fused methods to weights >= 0. Got {dict(weights)}."
        )
    if not k > 0:
        raise InputError(f"The 'k' parameter of fuse_rankings must be > 0. Got {k!r} instead.")
    fused: dict[str, float] = {}
    for name, ranking in ranks.items():
        weight = weights.get(name, 1.0)
        n = len(ranking)
        for source, rank in ranking.items():
            if rank != rank:  # NaN: unranked by this method
                continue
            borda = (n - rank) / (n - 1) if n > 1 else 1.0
            gain = 1.0 / (k + rank) if method == "rrf" else borda
            fused[source] = fused.get(source, 0.0) + weight * gain
        for source in ranking:
            fused.setdefault(source, 0.0)
    return fused
