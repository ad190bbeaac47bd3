"""ICONS: influence consensus for data selection (Wu et al. 2024/2025, "ICONS: Influence Consensus for
Vision-Language Data Selection"; code princetonvisualai/icons, built on LESS, Xia et al. 2024).

Inputs are projected per-example gradient features (`selection.gradients`): the pool's training gradients
T [N, k] and, per target task τ, gradients of that task's examples V_τ [M_τ, k], all row-L2-normalised.

- Specialist (LESS influence) of candidate i for task τ:  I_τ(i) = mean_j cos(T_i, V_τ,j) = T̂_i · mean_j V̂_τ,j.
- Generalist (consensus): each task votes for the candidates in its top ``top_fraction`` (p = 20%): v(i) =
  Σ_τ 1[I_τ(i) ≥ q_τ] with q_τ the influence of task τ's ⌈p·N⌉-th best candidate. Candidates are ordered by
  votes, ties broken by the mean over tasks of the z-scored influence (the reference breaks ties by argsort order;
  METHODS.md asks for the mean influence), then by index; the subset is the first ``budget`` of that order.

Gradients are plain loss gradients for both sides (SGD, as the released ICONS scripts pass; LESS proper uses
Adam-preconditioned training gradients, which needs the warm-up's optimiser state). Other deviations: the warm-up
fine-tunes every weight on max(16, ⌈5%·N⌉) pool rows (ICONS: LoRA, 500 steps of 16 per device, ≥ 8,000 rows;
LESS: LoRA, 5% of ≈270K rows, 4 epochs): on a 2,000-row pool 100 rows and 21 steps; one checkpoint (as ICONS; LESS
sums four, weighted by their mean learning rate); gradients of the last block's linear layers and the
classification head (about half the squared norm) instead of LoRA weights in every layer; a Kronecker-factored
projection (LoGra, 7,704 dims at dim 8192) instead of a dense Rademacher one (LESS 8,192, ICONS 5,120); target rows
sampled from a split (training by default) instead of a validation set; ties broken by mean influence; class
stratification is ours.

Binary classification (`bench/selection_diagnosis.py`, `reports/results/selection_diagnosis.json`): for two-class
cross-entropy ∇ℓ(x, y) = (p₁ − y)·∇(z₁ − z₀), so the unit gradient is σ_y·û(x) (σ = ±1 by label) and
I_τ(i) = σ_i û_i · mean_j σ_j û_j: the loss value drops out, whatever the warm-up. Two things follow, measured on a
pool of four review sources with targets sst2 and cr (20%, seeds 0–2): the class is a large additive term (cr's
top 20% were all positive on every seed, the consensus subset 97–100% positive: a one-class model), and within a
class the score ranks rows by how confidently the warm-up already classifies them (class-stratified picks: 94–100%
warm-up accuracy against 64–78% in the pool, 2–3× the pool's margin; a 25% warm-up does not change that). ICONS on
such a task selects easy, prototypical rows: that helped where small random subsets trained unreliably (the
selection_quality pool at 10%: 96% of the full pool's score against random's 83%, p = 0.06) and lost to random
where the pool is in-domain and the budget suffices (the mixed review pool at 20%, issue #31).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from selection.budget import resolve_budget
from selection.stratify import stratified_take
from transfer.errors import InputError
from transfer.finetune import Recipe, sample_indices

_OWNER = "icons_select"

# The method's defaults (`flows.icons` reads them): the warm-up fine-tune and the selection parameters.
WARMUP_RECIPE = Recipe(lr=5e-5, batch_size=16, epochs=3, max_examples=1_000_000, max_length=64, warmup_ratio=0.06)
ICONS_DEFAULTS = {
    "warmup_fraction": 0.05,
    "dim": 8192,
    "projection": "kronecker",
    "top_fraction": 0.2,
    "stratify": False,  # keep the pool's class proportions (selection.stratify); not in the paper
}


def warmup_indices(n: int, fraction: float, seed: int) -> np.ndarray:
    """The pool rows [m] the warm-up fine-tune trains on: a seeded sample (sorted) of m = max(batch size,
    ⌈fraction · n⌉) of the ``n`` pool rows."""
    if not (isinstance(fraction, float) and 0 < fraction <= 1):
        raise InputError(f"The 'warmup_fraction' ICONS parameter must be a float in (0, 1]. Got {fraction!r}.")
    return sample_indices(n, max(WARMUP_RECIPE.batch_size, math.ceil(fraction * n)), seed)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def specialist_influence(train: np.ndarray, target: np.ndarray, *, block: int = 65536) -> np.ndarray:
    """I(i) = mean_j cos(train_i, target_j), float64 [N], for ``train`` [N, k] and ``target`` [M, k] (any float
    dtype, e.g. fp16 from storage), computed blockwise over the pool."""
    train, target = np.asarray(train), np.asarray(target)
    if train.ndim != 2 or target.ndim != 2 or train.shape[1] != target.shape[1] or not len(target):
        raise InputError(
            "The 'train' and 'target' parameters of specialist_influence must be 2-D with the same number of "
            f"columns and at least one target row. Got shapes {train.shape} and {target.shape}."
        )
    direction = _unit_rows(target.astype(np.float64)).mean(0)
    return np.concatenate(
        [_unit_rows(train[s : s + block].astype(np.float64)) @ direction for s in range(0, len(train), block)]
    )


@dataclass(frozen=True)
class ConsensusResult:
    """``order``: pool indices in selection order [b]; ``votes`` [N]; ``consensus`` [N] (mean z-scored influence,
    the tie-breaker and the per-example score); ``thresholds``: each task's top-p influence threshold."""

    order: np.ndarray
    votes: np.ndarray
    consensus: np.ndarray
    thresholds: dict[str, float]


def icons_select(
    influences: Mapping[str, np.ndarray],
    budget: int | float,
    *,
    top_fraction: float = 0.2,
    stratify_by: np.ndarray | None = None,
) -> ConsensusResult:
    """The generalist selection (see the module docstring) from per-task specialist ``influences`` {task: [N]}.
    With ``stratify_by`` (the pool's class indices [N]), the budget keeps the pool's class proportions: the first
    candidates of each class in consensus order (`selection.stratify`; not in the paper)."""
    if not influences:
        raise InputError(f"The 'influences' parameter of {_OWNER} must hold at least one task. Got none.")
    if not (isinstance(top_fraction, float) and 0 < top_fraction <= 1):
        raise InputError(f"The 'top_fraction' parameter of {_OWNER} must be a float in (0, 1]. Got {top_fraction!r}.")
    matrix = np.stack([np.asarray(v, dtype=np.float64) for v in influences.values()])  # [tasks, N]
    if matrix.ndim != 2 or not np.isfinite(matrix).all():
        raise InputError(f"The 'influences' parameter of {_OWNER} must map tasks to finite 1-D arrays of one length.")
    n = matrix.shape[1]
    count = resolve_budget(_OWNER, budget, n)
    top = max(1, math.ceil(top_fraction * n))
    thresholds = -np.sort(-matrix, axis=1)[:, top - 1]
    votes = (matrix >= thresholds[:, None]).sum(0)
    spread = matrix.std(axis=1, keepdims=True)
    z = np.divide(matrix - matrix.mean(axis=1, keepdims=True), spread, out=np.zeros_like(matrix), where=spread > 0)
    consensus = z.mean(0)
    order = np.lexsort((np.arange(n), -consensus, -votes))
    order = order[:count] if stratify_by is None else stratified_take(order, stratify_by, count)
    return ConsensusResult(
        order=order.astype(np.int64),
        votes=votes,
        consensus=consensus,
        thresholds=dict(zip(influences, thresholds.tolist(), strict=True)),
    )
