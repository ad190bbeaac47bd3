"""Measured transfer: what intermediate fine-tuning on a source really does to a target (the ground truth that
rankings are judged against; Poth et al. 2021, Schulte et al. 2024).

For one seed: fine-tune the encoder on the target alone (the no-transfer baseline) and, per source, starting from
the source's fine-tuned checkpoint with a new head; evaluate each on the target's held-out examples. Primary metric:
accuracy for classification (macro-F1 also reported), the mean of Pearson and Spearman for regression. Across
seeds, a pair's gain is summarised by its mean, standard deviation, share of positive seeds and a paired t-test of
the source runs against the baseline runs of the same seeds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from transfer.errors import InputError

if TYPE_CHECKING:
    from transfer.finetune import Recipe


@dataclass(frozen=True)
class Split:
    """Texts (and pairs) with labels: class indices or regression values."""

    texts: list[str]
    pairs: list[str] | None
    labels: np.ndarray


def evaluate_outputs(outputs: np.ndarray, labels: np.ndarray, *, regression: bool) -> dict[str, float]:
    """Metrics of model outputs [n, C] (logits) or [n, 1] (regression) against labels [n]; ``primary`` is the one
    rankings are judged by."""
    labels = np.asarray(labels)
    if regression:
        predicted = outputs[:, 0].astype(np.float64)
        pearson = float(stats.pearsonr(predicted, labels).statistic) if np.std(predicted) > 0 else 0.0
        spearman = float(stats.spearmanr(predicted, labels).statistic) if np.std(predicted) > 0 else 0.0
        return {"primary": (pearson + spearman) / 2, "pearson": pearson, "spearman": spearman}
    from sklearn.metrics import f1_score

    predicted_class = outputs.argmax(1)
    truth = labels.astype(np.int64)
    accuracy = float((predicted_class == truth).mean())
    return {
        "primary": accuracy,
        "accuracy": accuracy,
        "macro_f1": float(f1_score(truth, predicted_class, average="macro", zero_division=0)),
    }


def train_and_evaluate(
    train: Split,
    test: Split,
    *,
    n_classes: int | None,
    start: str | os.PathLike[str] | None,
    recipe: Recipe,
    seed: int,
    device: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Fine-tune from ``start`` (the base encoder, or a source checkpoint directory: its encoder, a new head) on
    ``train`` and return the metrics on ``test``; ``progress`` as in `transfer.finetune.fine_tune`."""
    from transfer.finetune import fine_tune, predict  # torch: only here, so the gain statistics import without it

    tuned = fine_tune(
        train.texts,
        train.labels,
        n_classes=n_classes,
        text_pairs=train.pairs,
        model=start,
        recipe=recipe,
        seed=seed,
        device=device,
        progress=progress,
    )
    outputs = predict(tuned.model, tuned.tokenizer, test.texts, test.pairs, max_length=recipe.max_length)
    return evaluate_outputs(outputs, test.labels, regression=n_classes is None)


@dataclass(frozen=True)
class GainSummary:
    """Across seeds: mean and standard deviation of (source − baseline), share of seeds with a positive gain, and
    the two-sided paired t-test p-value (NaN with fewer than two seeds or identical differences)."""

    mean_gain: float
    std_gain: float
    positive_share: float
    p_value: float
    n_seeds: int


def summarise_gains(source_values: Sequence[float], baseline_values: Sequence[float]) -> GainSummary:
    """Summarise per-seed primary metrics of the source runs against the baseline runs of the same seeds."""
    source, baseline = np.asarray(source_values, np.float64), np.asarray(baseline_values, np.float64)
    if source.shape != baseline.shape or source.size == 0:
        raise InputError(
            f"The 'source_values' and 'baseline_values' parameters of summarise_gains must be paired by seed. "
            f"Got {source.size} and {baseline.size} values."
        )
    gains = source - baseline
    p_value = float("nan")
    if gains.size >= 2 and np.ptp(gains) > 0:
        p_value = float(stats.ttest_rel(source, baseline).pvalue)
    return GainSummary(
        mean_gain=float(gains.mean()),
        std_gain=float(gains.std(ddof=1)) if gains.size > 1 else 0.0,
        positive_share=float((gains > 0).mean()),
        p_value=p_value,
        n_seeds=int(gains.size),
    )
