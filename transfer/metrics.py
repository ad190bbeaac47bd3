"""Ranking-quality metrics for intermediate-task (source) selection, for one target task at a time.

A method gives each source a predicted score (higher = predicted better, already oriented); the ground truth is
the measured target performance after intermediate fine-tuning on each source (accuracy in [0, 1], or for
regression the mean of Pearson/Spearman, which can be <= 0), plus the no-transfer baseline.

Conventions shared by every metric here:

* Inputs: ``predicted`` and ``measured`` are both mappings (dict or pandas Series, aligned by key; the key sets
  must match) or both 1-D array-likes aligned by position. Values must be finite (drop NaN scores first, as
  ESM-LogME does); the pool must be non-empty.
* Ties in predicted scores are broken pessimistically: among sources with equal predicted score, the one with the
  lower measured performance is ranked first. The predicted order is therefore deterministic, independent of
  input order, and a constant predictor gets the worst case. (Spearman and Kendall use average ranks / tau-b.)
* ``k`` must be a positive int; a ``k`` larger than the pool is clamped to the pool size.
* A metric that is undefined for the given values (normaliser <= 0, constant input) raises
  :class:`UndefinedMetricError` (a ``ValueError``); :func:`ranking_quality` reports such a metric as NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
from scipy import stats

from transfer.errors import InputError

Scores = Mapping[Any, float] | npt.ArrayLike
Gain = Literal["exponential", "rank"]


class UndefinedMetricError(ValueError):
    """The metric has no meaningful value for these inputs (e.g. a normaliser <= 0 or a constant input)."""


def _check_k(k: Any, name: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"The 'k' parameter of {name} must be a positive int. Got {k!r} instead.")
    return int(k)


def _is_keyed(x: Any) -> bool:
    return isinstance(x, Mapping) or (not isinstance(x, np.ndarray) and callable(getattr(x, "keys", None)))


def _aligned(predicted: Scores, measured: Scores, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as float64 arrays in the same source order, validated."""
    if _is_keyed(predicted) != _is_keyed(measured):
        raise InputError(
            f"The 'predicted' and 'measured' parameters of {name} must both be mappings or both be arrays. "
            f"Got {type(predicted).__name__} and {type(measured).__name__} instead."
        )
    if _is_keyed(measured):
        pred_map, meas_map = dict(cast(Mapping, predicted)), dict(cast(Mapping, measured))
        if pred_map.keys() != meas_map.keys():
            missing = sorted(map(str, meas_map.keys() - pred_map.keys()))
            extra = sorted(map(str, pred_map.keys() - meas_map.keys()))
            raise InputError(
                f"The 'predicted' and 'measured' parameters of {name} must have the same sources. "
                f"Missing from predicted: {missing}; missing from measured: {extra}."
            )
        keys = list(meas_map)
        pred = np.asarray([pred_map[s] for s in keys], dtype=np.float64)
        meas = np.asarray([meas_map[s] for s in keys], dtype=np.float64)
    else:
        pred, meas = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if pred.ndim != 1 or meas.ndim != 1 or pred.shape != meas.shape or pred.size == 0:
        raise InputError(
            f"The 'predicted' and 'measured' parameters of {name} must be non-empty 1-D with the same length. "
            f"Got shapes {pred.shape} and {meas.shape} instead."
        )
    for label, arr in (("predicted", pred), ("measured", meas)):
        if not np.all(np.isfinite(arr)):
            raise InputError(
                f"The '{label}' parameter of {name} must be finite. Got {int((~np.isfinite(arr)).sum())} "
                "non-finite values instead."
            )
    return pred, meas


def _predicted_order(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    """Indices by predicted score descending; ties by measured performance ascending (worst case)."""
    return np.lexsort((meas, -pred))


def _best_and_chosen(
    predicted: Scores, measured: Scores, k: Any, baseline: float | None, include_no_transfer: bool, name: str
) -> tuple[float, float]:
    """(the best measured performance, no-transfer ``baseline`` included when ``include_no_transfer``; the best
    measured performance among the predicted top ``k``), both validated and in the inputs' units."""
    k = _check_k(k, name)
    pred, meas = _aligned(predicted, measured, name)
    best = float(meas.max())
    if include_no_transfer:
        if baseline is None or not np.isfinite(baseline):
            raise InputError(
                f"The 'baseline' parameter of {name} must be a finite float when include_no_transfer=True. "
                f"Got {baseline!r} instead."
            )
        best = max(best, float(baseline))
    return best, float(meas[_predicted_order(pred, meas)[:k]].max())


def regret_at_k(
    predicted: Scores,
    measured: Scores,
    *,
    k: int,
    baseline: float | None = None,
    include_no_transfer: bool = True,
    normalize: bool = True,
) -> float:
    """Regret@k of Poth et al. 2021 ("What to pre-train on? Efficient intermediate task selection"), as used by
    Schulte et al. 2024 ("Less is More", ESM-LogME): ``(best - best within predicted top-k) / best * 100``, the
    percentage of the best *performance* (a score, not a gain over no transfer) lost by taking the best of the top k.

    ``best`` is the maximum over all options, including the no-transfer ``baseline`` when
    ``include_no_transfer=True`` (the papers' definition; ``baseline`` is then required). No-transfer counts in the
    maximum but cannot be predicted, so a perfect ranking still shows regret when every source hurts. With
    ``include_no_transfer=False`` the maximum is over the sources only, and a perfect ranking has regret 0.

    Ties in predicted scores take the worst case (lower measured performance first); ``k`` larger than the pool
    is clamped to the pool size. The result is non-increasing in ``k``.

    Scores <= 0: the normalisation by ``best`` assumes performance > 0. If ``best <= 0`` (regression targets where
    every option is <= 0) this raises :class:`UndefinedMetricError`; pass ``normalize=False`` to get the absolute
    regret ``(best - best within top-k) * 100`` instead, which is :func:`points_lost_at_k`. With ``best > 0`` but
    negative performances in the top-k the relative regret can exceed 100.
    """
    name = "regret_at_k"
    best, chosen = _best_and_chosen(predicted, measured, k, baseline, include_no_transfer, name)
    if not normalize:
        return (best - chosen) * 100.0
    if best <= 0:
        raise UndefinedMetricError(
            f"{name} divides by the best performance, which is {best!r} <= 0; use normalize=False for absolute regret."
        )
    return (best - chosen) / best * 100.0


def points_lost_at_k(
    predicted: Scores, measured: Scores, *, k: int, baseline: float | None = None, include_no_transfer: bool = True
) -> float:
    """Points lost@k, what following the ranking costs a user: ``(best - best within predicted top-k) * 100``, the
    best option's mean performance minus the best mean performance among the predicted top k, in points (accuracy
    points for accuracies given as fractions). ``k=1``: the price of fine-tuning on the top source. It is regret@k
    before the division by ``best`` (`regret_at_k` with ``normalize=False``), so it is defined for scores <= 0 too.

    ``best`` and ties as in :func:`regret_at_k`: the no-transfer ``baseline`` counts in ``best`` when
    ``include_no_transfer=True`` (then required); ties in predicted scores take the worst case; ``k`` larger than the
    pool is clamped. The result is >= 0 and non-increasing in ``k``.

    Example: sources a .80, b .75, c .70 predicted in the order b, c, a, no transfer .72: 5.0 points lost at k = 1
    (0.80 - 0.75) and at k = 2, 0 at k = 3; with no transfer at .85 instead: 10.0, 10.0 and 5.0.
    """
    best, chosen = _best_and_chosen(predicted, measured, k, baseline, include_no_transfer, "points_lost_at_k")
    return (best - chosen) * 100.0


def taskweb_regret_at_k(predicted: Scores, measured: Scores, *, k: int, normalize: bool = True) -> float:
    """Regret@k of TaskWeb (Kim et al. 2023, "TaskWeb: Selecting Better Source Tasks for Multi-task NLP"):
    ``(mean of the true top-k - mean of the predicted top-k) / mean of the true top-k * 100``.

    The true top-k are the k sources with the highest measured performance; there is no no-transfer option. (The
    TaskWeb code orders its gold top-k by its combined PC/PM transfer score and then averages measured
    performance, and reports the fraction times 100; here the gold top-k is by measured performance, so the
    result is always >= 0.) It is not monotone in ``k``.

    Ties in predicted scores take the worst case; ``k`` larger than the pool is clamped to the pool size (both
    means then cover the whole pool and the regret is 0).

    Scores <= 0: the normalisation assumes the true top-k mean is > 0; otherwise this raises
    :class:`UndefinedMetricError`. ``normalize=False`` returns the absolute difference of the means times 100.
    """
    name = "taskweb_regret_at_k"
    k = _check_k(k, name)
    pred, meas = _aligned(predicted, measured, name)
    true_mean = float(np.sort(meas)[::-1][:k].mean())
    pred_mean = float(meas[_predicted_order(pred, meas)[:k]].mean())
    if not normalize:
        return (true_mean - pred_mean) * 100.0
    if true_mean <= 0:
        raise UndefinedMetricError(
            f"{name} divides by the mean of the true top-{k}, which is {true_mean!r} <= 0; use normalize=False."
        )
    return (true_mean - pred_mean) / true_mean * 100.0


def ndcg_at_k(predicted: Scores, measured: Scores, *, k: int | None = None, gain: Gain = "exponential") -> float:
    """NDCG@k of the predicted source ranking: DCG of the predicted top-k over DCG of the ideal top-k, with the
    discount ``1 / log2(position + 1)`` (positions from 1). ``k=None`` uses the whole pool.

    ``gain="exponential"`` (Schulte et al. 2024 "Less is More", paper code): gain ``2**(100 * perf) - 1`` from the
    measured performance as a fraction. Performances above 1 raise ``ValueError`` (percentages would make the
    gain overflow). Scores <= 0: the gain is clipped at 0, so such sources count as irrelevant and NDCG stays in
    [0, 1]; if every performance is <= 0 the ideal DCG is 0 and this raises :class:`UndefinedMetricError`.

    ``gain="rank"`` (TaskWeb, Kim et al. 2023, ``taskshop/metrics.py``): relevance from the true rank,
    ``rel = n + 1 - true_rank`` (best source n, worst 1; tied performances share their average rank), gain
    ``2**rel - 1``. Only the order of performances matters, so scores <= 0 need no special handling. TaskWeb
    reports it over the whole pool (``k=None``).

    Both gains are computed relative to the largest one (numerator and denominator scaled by the same factor), so
    large pools do not overflow. Ties in predicted scores take the worst case; ``k`` larger than the pool is
    clamped. The result lies in [0, 1] and is 1 for a perfect ranking.
    """
    name = "ndcg_at_k"
    if gain not in ("exponential", "rank"):
        raise InputError(f"The 'gain' parameter of {name} must be 'exponential' or 'rank'. Got {gain!r} instead.")
    pred, meas = _aligned(predicted, measured, name)
    n = meas.size
    k = n if k is None else min(_check_k(k, name), n)
    if gain == "exponential":
        if meas.max() > 1:
            raise InputError(
                f"The 'measured' parameter of {name} must be performances as fractions (<= 1) for gain='exponential'. "
                f"Got a maximum of {meas.max()!r} instead."
            )
        exponent = 100.0 * meas
    else:
        exponent = n + 1 - stats.rankdata(-meas, method="average")
    # 2**e - 1 scaled by 2**-top: exact up to that common factor, and finite for any pool size.
    top = float(exponent.max())
    gains = np.maximum(np.exp2(exponent - top) - np.exp2(-top), 0.0)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = float(np.sort(gains)[::-1][:k] @ discounts)
    if ideal <= 0:
        raise UndefinedMetricError(f"{name} is undefined: every measured performance is <= 0 (ideal DCG is 0).")
    return float(gains[_predicted_order(pred, meas)[:k]] @ discounts) / ideal


def _correlation_inputs(predicted: Scores, measured: Scores, name: str) -> tuple[np.ndarray, np.ndarray]:
    pred, meas = _aligned(predicted, measured, name)
    if pred.size < 2 or np.ptp(pred) == 0 or np.ptp(meas) == 0:
        raise UndefinedMetricError(f"{name} is undefined for fewer than 2 sources or a constant input.")
    return pred, meas


def spearman(predicted: Scores, measured: Scores) -> float:
    """Spearman rank correlation between predicted scores and measured performance (``scipy.stats.spearmanr``).

    Ties get average ranks. Scores <= 0 need no special handling (only order matters). Undefined for fewer than
    2 sources or a constant input: raises :class:`UndefinedMetricError`. No ``k``.
    """
    pred, meas = _correlation_inputs(predicted, measured, "spearman")
    return float(stats.spearmanr(pred, meas).statistic)


def kendall(predicted: Scores, measured: Scores) -> float:
    """Kendall's tau-b between predicted scores and measured performance (``scipy.stats.kendalltau``).

    tau-b corrects for ties in either input. Scores <= 0 need no special handling. Undefined for fewer than 2
    sources or a constant input: raises :class:`UndefinedMetricError`. No ``k``.
    """
    pred, meas = _correlation_inputs(predicted, measured, "kendall")
    return float(stats.kendalltau(pred, meas, variant="b").statistic)


def top1_hit(predicted: Scores, measured: Scores) -> float:
    """1.0 if the predicted best source is a true best source, else 0.0 (the top-1 accuracy used in source
    selection papers, e.g. Poth et al. 2021).

    Sources tied for the best measured performance all count as hits. Ties in predicted scores take the worst
    case: if the top predicted score is shared, the tied source with the lowest measured performance is taken.
    Scores <= 0 need no special handling; the no-transfer baseline plays no part. No ``k``.
    """
    pred, meas = _aligned(predicted, measured, "top1_hit")
    return float(meas[_predicted_order(pred, meas)[0]] == meas.max())


def ranking_quality(
    predicted: Scores, measured: Scores, *, baseline: float, ks: Iterable[int] = (1, 3, 5)
) -> dict[str, float]:
    """All metrics above for one target: ``regret@k`` (Poth/Schulte, no-transfer included), ``points_lost@k`` (the
    same loss in points), ``taskweb_regret@k``, ``ndcg@k`` (exponential gain), ``ndcg_rank@k`` (TaskWeb rank gain)
    for each k in ``ks``; ``ndcg`` and ``ndcg_rank`` over the whole pool; ``spearman``, ``kendall`` and
    ``top1_hit``.

    A metric that is undefined for these values (:class:`UndefinedMetricError`, e.g. regret when the best option
    is <= 0, or correlations with a constant input) is NaN; invalid inputs still raise ``ValueError``.
    """
    ks = [_check_k(k, "ranking_quality") for k in ks]
    _aligned(predicted, measured, "ranking_quality")
    out: dict[str, float] = {}
    for k in ks:
        out[f"regret@{k}"] = _or_nan(regret_at_k, predicted, measured, k=k, baseline=baseline)
        out[f"points_lost@{k}"] = points_lost_at_k(predicted, measured, k=k, baseline=baseline)
        out[f"taskweb_regret@{k}"] = _or_nan(taskweb_regret_at_k, predicted, measured, k=k)
        out[f"ndcg@{k}"] = _or_nan(ndcg_at_k, predicted, measured, k=k, gain="exponential")
        out[f"ndcg_rank@{k}"] = _or_nan(ndcg_at_k, predicted, measured, k=k, gain="rank")
    out["ndcg"] = _or_nan(ndcg_at_k, predicted, measured, gain="exponential")
    out["ndcg_rank"] = _or_nan(ndcg_at_k, predicted, measured, gain="rank")
    out["spearman"] = _or_nan(spearman, predicted, measured)
    out["kendall"] = _or_nan(kendall, predicted, measured)
    out["top1_hit"] = _or_nan(top1_hit, predicted, measured)
    return out


def _or_nan(metric: Callable[..., float], *args: Any, **kwargs: Any) -> float:
    try:
        return float(metric(*args, **kwargs))
    except UndefinedMetricError:
        return float("nan")


def one_seed_oracle(
    runs: Mapping[str, Sequence[float]], baseline: Sequence[float], *, ks: Iterable[int] = (1, 3, 5)
) -> dict[str, float]:
    """The ceiling that seed noise puts on any ranking: rank the sources by one seed's measured performance and
    score that ranking (`ranking_quality`) against the mean of the other seeds, averaged over the choice of seed.

    ``runs``: {source: per-seed primary metric [S]}, ``baseline``: the no-transfer runs of the same seeds [S],
    S >= 2, paired by position. For seed s: predicted_s = {src: runs[src][s]}, measured_s = {src: mean over s' ≠ s
    of runs[src][s']}, baseline_s = mean over s' ≠ s of baseline[s']; the result is the mean over s of each metric
    (NaNs ignored). It is what one real fine-tune per pair would achieve as a ranker."""
    values = np.array([np.asarray(v, np.float64) for v in runs.values()])
    base = np.asarray(baseline, np.float64)
    if values.ndim != 2 or values.shape[1] < 2 or base.shape != (values.shape[1],):
        raise InputError(
            "The 'runs' parameter of one_seed_oracle must give every source the same number (>= 2) of seeds as "
            f"'baseline'. Got shapes {values.shape} and {base.shape} instead."
        )
    sources, n_seeds = list(runs), values.shape[1]
    draws = []
    for seed in range(n_seeds):
        others = [s for s in range(n_seeds) if s != seed]
        predicted = dict(zip(sources, values[:, seed], strict=True))
        measured = dict(zip(sources, values[:, others].mean(1), strict=True))
        draws.append(ranking_quality(predicted, measured, baseline=float(base[others].mean()), ks=ks))
    table = np.array([[d[m] for m in draws[0]] for d in draws])
    means = [float(np.mean(col[~np.isnan(col)])) if (~np.isnan(col)).any() else float("nan") for col in table.T]
    return dict(zip(draws[0], means, strict=True))


def random_expectation(
    measured: Mapping[str, float], baseline: float, *, ks: Iterable[int] = (1, 3, 5), n: int = 200, seed: int = 0
) -> dict[str, float]:
    """Mean of each `ranking_quality` metric over ``n`` seeded random orders of the sources (NaNs ignored): what a
    ranking that knows nothing scores."""
    rng = np.random.default_rng(seed)
    sources = list(measured)
    draws = [
        ranking_quality(
            dict(zip(sources, rng.permutation(len(sources)).astype(float), strict=True)), measured, baseline=baseline,
            ks=ks,
        )
        for _ in range(n)
    ]  # fmt: skip
    table = np.array([[d[m] for m in draws[0]] for d in draws])
    means = [float(np.mean(col[~np.isnan(col)])) if (~np.isnan(col)).any() else float("nan") for col in table.T]
    return dict(zip(draws[0], means, strict=True))


def evaluate_target(
    predicted: Mapping[str, Mapping[str, float]],
    measured: Mapping[str, float],
    baseline: float,
    *,
    runs: Mapping[str, Sequence[float]] | None = None,
    prior: Mapping[str, float] | None = None,
    ks: Iterable[int] = (1, 3, 5),
    n_random: int = 200,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Every ranking of one target scored against its measured transfer, beside the reference rows.

    ``predicted``: {method: {source: score, oriented so higher = better}}; ``measured``: {source: its mean primary
    metric over the seeds}, ``baseline`` the no-transfer mean; ``runs``: the per-seed primary metrics {source: [S]}
    with the baseline under '' (every source on the same S seeds, paired by position), for the ``one-seed-oracle``
    row (`one_seed_oracle`, when S ≥ 2); ``prior``: {source: its mean gain on other targets} for the
    ``source-prior`` row. Rows (method, n_sources, metric, value) for each method (over the measured sources it
    scored, ≥ 2, NaN scores dropped), ``source-prior``, ``random`` (`random_expectation`) and the oracle."""
    ks = tuple(ks)
    rows: list[dict[str, Any]] = []

    def add(method: str, scores: Mapping[str, float] | None) -> None:
        common = {s: float(v) for s, v in (scores or {}).items() if s in measured and v == v}
        if len(common) < 2:
            return
        quality = ranking_quality(common, {s: measured[s] for s in common}, baseline=baseline, ks=ks)
        rows.extend({"method": method, "n_sources": len(common), "metric": m, "value": v} for m, v in quality.items())

    for method, scores in predicted.items():
        add(method, scores)
    add("source-prior", prior)
    expectation = random_expectation(measured, baseline, ks=ks, n=n_random, seed=seed)
    rows.extend(
        {"method": "random", "n_sources": len(measured), "metric": m, "value": v} for m, v in expectation.items()
    )
    if runs is not None and "" in runs and len(runs[""]) >= 2:
        per_source = {s: runs[s] for s in measured if s in runs}
        oracle = one_seed_oracle(per_source, runs[""], ks=ks)
        rows.extend(
            {"method": "one-seed-oracle", "n_sources": len(per_source), "metric": m, "value": v}
            for m, v in oracle.items()
        )
    return rows


NEAR_TIE = 0.005  # scores closer than 0.5% of their mean magnitude: no method here is that precise


def near_ties(scores: Mapping[str, float], relative: float = NEAR_TIE) -> list[list[str]]:
    """Groups of sources a method cannot tell apart: sorted by score, consecutive sources whose scores differ by less
    than ``relative`` · mean |score| are chained into one group; groups of ≥ 2, best first, NaN scores ignored.
    Example: ESM-LogME evidences -0.701, -0.699 and -0.698 (spread 0.003, 0.4% of their size) are one group."""
    if not relative > 0:
        raise InputError(f"The 'relative' parameter of near_ties must be > 0. Got {relative!r} instead.")
    ordered = sorted(((float(v), s) for s, v in scores.items() if np.isfinite(v)), reverse=True)
    if len(ordered) < 2:
        return []
    tolerance = relative * float(np.mean([abs(v) for v, _ in ordered]))
    groups: list[list[str]] = [[ordered[0][1]]]
    for (previous, _), (value, source) in zip(ordered, ordered[1:], strict=False):
        if previous - value < tolerance:
            groups[-1].append(source)
        else:
            groups.append([source])
    return [g for g in groups if len(g) > 1]
