"""The learner: `SourceAdvisor`, a scikit-learn estimator that predicts a source's gain over no transfer (points)
from the pair features (`transfer.advisor.features`) and gives it a CV+ interval over targets
(`transfer.advisor.intervals`).

The fitting procedure on a set of training targets T is nested so that no number it reports has seen the target it
is judged on:

1. learner choice: for each candidate regressor and each t1 ∈ T, the features of every row are recomputed from the
   gains of T \\ {t1} alone (so t1's gains reach neither its own features nor the priors of the rows it is judged
   against), the regressor is fitted on T \\ {t1} and predicts t1; the regressor with the lowest mean over targets
   of the per-target mean absolute error is chosen (`nested_loto_predictions`);
2. the chosen regressor is fitted on T with features from T's gains.

The interval runs that whole procedure once more per training target k on T \\ {k} (CV+), so the residuals that set
its width come from models that chose their learner without k.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from threadpoolctl import threadpool_limits

from transfer.advisor.features import PairFeatures
from transfer.advisor.intervals import cv_plus_interval
from transfer.errors import InputError

# Hundreds of fits and predictions on a few hundred rows each: one OpenMP thread apiece (boosted trees' threads
# cost more than they save at this size, and thrash on a busy machine: 10x slower measured on 2 loaded cores).
ONE_THREAD = threadpool_limits.wrap(limits=1, user_api="openmp")
MIN_TARGETS = 3  # the learner is chosen by leave-one-target-out error among at least two other targets
MAX_SHARED_ERROR = 0.9  # below 1: measuring one source never settles the others


def candidate_learners(seed: int) -> dict[str, object]:
    """The small regressors `SourceAdvisor` chooses among (imputation and scaling included; a prior no training
    row has, as in an inner fold of one target, is kept as a constant column)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "ridge": make_pipeline(
            SimpleImputer(keep_empty_features=True), StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 11))
        ),
        "boosted-trees": make_pipeline(
            SimpleImputer(keep_empty_features=True),
            HistGradientBoostingRegressor(max_depth=3, max_iter=150, learning_rate=0.05, random_state=seed),
        ),
    }


def training_rows(features: PairFeatures, gains: pd.DataFrame, targets: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The feature matrix of every pair when only ``targets``' gains are known (`PairFeatures.given`), and the
    measured mean gain of each pair of those targets (NaN elsewhere), aligned to it: (X [pairs × p], y [pairs])."""
    known = gains[gains.target.isin(targets)]
    X = features.given(known)
    y = known.set_index(["target", "source"]).gain.reindex(X.index)
    return X, y.to_frame("gain")


def nested_loto_predictions(
    fit: Callable[[list[str]], object],
    rows: Callable[[list[str]], tuple[pd.DataFrame, pd.DataFrame]],
    gains: pd.DataFrame,
    targets: list[str],
) -> pd.Series:
    """Leave-one-target-out predictions over ``targets`` with the features recomputed inside every fold: for each
    t1, the model ``fit(T')`` fitted on the other targets T' (their pairs, with features from their gains alone:
    ``rows(T')``, `training_rows` of T') predicts t1's pairs, whose features ``rows(T')`` also computes without
    t1's gains. Returns the predictions of every measured pair of ``targets`` (index (target, source))."""
    out = []
    for held in targets:
        kept = [t for t in targets if t != held]
        X, _ = rows(kept)
        mine = (X.index.get_level_values("target") == held) & gains_known(gains, held, X.index)
        out.append(pd.Series(fit(kept).predict(X[mine]), index=X.index[mine]))  # type: ignore[attr-defined]
    return pd.concat(out)


def gains_known(gains: pd.DataFrame, target: str, index: pd.MultiIndex) -> np.ndarray:
    """Mask over ``index`` of ``target``'s pairs with a measured gain."""
    measured = pd.MultiIndex.from_frame(gains.loc[gains.target == target, ["target", "source"]])
    return np.asarray(index.isin(measured))


@dataclass(frozen=True)
class Fitted:
    """One run of the fitting procedure on ``targets``: the chosen ``learner``, its ``model`` and every candidate's
    nested leave-one-target-out error (``errors``, points)."""

    targets: list[str]
    learner: str
    model: object
    errors: dict[str, float]


@dataclass(frozen=True)
class Advice:
    """Per source of one target: expected gain (points), the interval at ``level``, the rank (1 = best expected
    gain) and the features that moved the estimate most (name -> contribution in points)."""

    gains: pd.DataFrame  # index source; columns expected_gain, lower, upper, rank, top_features
    dont_transfer: bool  # the best source's upper bound is below zero: fine-tune on the target alone
    learner: str
    level: float  # the intervals' nominal coverage, 1 - alpha
    shared_error: float  # `SourceAdvisor.shared_error`: how much of its error a target's sources share


class SourceAdvisor(BaseEstimator):
    """Learned gain estimates with CV+ intervals over targets (module docstring).

    ``fit(features, gains)``: ``features`` a `PairFeatures` of every pair (training targets' and the targets to
    advise), ``gains`` the training targets' measured mean gains (columns target, source, gain; ≥ `MIN_TARGETS`
    targets). Learned state: ``targets_``, ``learner_`` (the chosen regressor's name), ``model_``,
    ``loto_errors_`` {learner: nested leave-one-target-out mean absolute error}, ``folds_`` (one `Fitted` per
    training target, without it), ``errors_`` (per fold: its held-out target's signed errors, prediction − measured
    gain [its pairs]; their magnitudes are CV+'s residuals), ``columns_``, ``means_``."""

    def __init__(self, alpha: float = 0.2, seed: int = 0, learners: Mapping[str, object] | None = None) -> None:
        self.alpha = alpha
        self.seed = seed
        self.learners = learners

    @ONE_THREAD
    def fit(self, features: PairFeatures, gains: pd.DataFrame) -> SourceAdvisor:
        if not isinstance(self.alpha, float | int) or not 0 < self.alpha < 1:
            raise InputError(f"The 'alpha' parameter of SourceAdvisor must be in (0, 1). Got {self.alpha!r} instead.")
        pairs = pd.MultiIndex.from_frame(gains[["target", "source"]])
        targets = sorted(set(gains.target[np.asarray(pairs.isin(features.fixed.index))]))
        if len(targets) < MIN_TARGETS:
            raise InputError(
                f"SourceAdvisor.fit needs measured gains of at least {MIN_TARGETS} targets whose pairs have features. "
                f"Got {len(targets)} targets."
            )
        self.features_ = features
        self.gains_ = gains
        self.targets_ = targets
        self._known_rows: dict[frozenset[str], tuple[pd.DataFrame, pd.DataFrame]] = {}
        self._fits: dict[tuple[str, frozenset[str]], object] = {}
        whole = self._procedure(targets)
        self.learner_, self.model_, self.loto_errors_ = whole.learner, whole.model, whole.errors
        X, y = self._rows(targets)
        train = y.gain.notna().to_numpy()
        self.columns_ = list(X.columns)
        self.means_ = X[train].mean()
        # CV+ needs (1 - alpha)(K + 1) <= K units to bound anything: with fewer targets the bounds are infinite,
        # and the folds that would set them are not fitted.
        finite = (1 - self.alpha) * (len(targets) + 1) <= len(targets) + 1e-9
        self.folds_ = [self._procedure([t for t in targets if t != held]) for held in targets] if finite else []
        self.errors_ = []
        for fold in self.folds_:
            (held,) = set(targets) - set(fold.targets)
            X_k, _ = self._rows(fold.targets)
            mine = (X_k.index.get_level_values("target") == held) & gains_known(gains, held, X_k.index)
            truth = gains.set_index(["target", "source"]).gain.reindex(X_k.index[mine]).to_numpy()
            self.errors_.append(fold.model.predict(X_k[mine]) - truth)  # type: ignore[attr-defined]
        return self

    def _rows(self, targets: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """`training_rows` of ``targets``, computed once per set of targets (the nested folds repeat them)."""
        key = frozenset(targets)
        if key not in self._known_rows:
            self._known_rows[key] = training_rows(self.features_, self.gains_, sorted(key))
        return self._known_rows[key]

    def _fit(self, name: str, targets: list[str]) -> object:
        """Candidate ``name`` fitted on ``targets``' pairs with features from their gains, once per set of targets:
        the nested folds meet one training set from both sides (T minus {k, t} is an inner fold of fold k and of
        fold t; the final fit of fold k is an inner fit of the whole), so caching halves the fits."""
        key = (name, frozenset(targets))
        if key not in self._fits:
            X, y = self._rows(targets)
            train = y.gain.notna().to_numpy()
            model = dict(self.learners or candidate_learners(self.seed))[name]
            self._fits[key] = clone(model).fit(X[train], y.gain[train].to_numpy())  # type: ignore[attr-defined]
        return self._fits[key]

    def _procedure(self, targets: list[str]) -> Fitted:
        """Choose the learner by nested leave-one-target-out error over ``targets`` and fit it on them."""
        truth = self.gains_.set_index(["target", "source"]).gain
        errors = {}
        for name in self.learners or candidate_learners(self.seed):
            predicted = nested_loto_predictions(partial(self._fit, name), self._rows, self.gains_, targets)
            absolute = (truth.reindex(predicted.index) - predicted).abs()
            errors[name] = float(absolute.groupby(level="target").mean().mean())
        learner = min(errors, key=errors.__getitem__)
        return Fitted(targets=targets, learner=learner, model=self._fit(learner, targets), errors=errors)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Expected gains in points [n] of pairs with features ``X`` computed from every training target's gains."""
        return np.asarray(self.model_.predict(X[self.columns_]), np.float64)  # type: ignore[attr-defined]

    def interval(self, target: str) -> tuple[np.ndarray, np.ndarray]:
        """CV+ (lower, upper) [sources of ``target``] at level 1 - alpha, in ``features_``' row order; ±inf when too
        few training targets back the level."""
        if not self.folds_:
            n = int((self.features_.targets() == target).sum())
            return np.full(n, -np.inf), np.full(n, np.inf)
        centres = []
        for fold in self.folds_:
            X_k, _ = self._rows(fold.targets)
            rows = X_k[X_k.index.get_level_values("target") == target]
            centres.append(np.asarray(fold.model.predict(rows), np.float64))  # type: ignore[attr-defined]
        return cv_plus_interval(centres, [np.abs(e) for e in self.errors_], self.alpha)

    def shared_error(self) -> float:
        """ρ: the share of the leave-one-target-out error variance that a target's sources have in common (they are
        over- or under-estimated together), var over targets of their mean error / var of all errors, clipped to
        [0, `MAX_SHARED_ERROR`]; 0 without folds. It is the prior correlation of `transfer.advisor.best_arm`."""
        if len(self.errors_) < 3:
            return 0.0
        share = np.var([e.mean() for e in self.errors_], ddof=1) / np.var(np.concatenate(self.errors_), ddof=1)
        return float(np.clip(share, 0.0, MAX_SHARED_ERROR))

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each feature's contribution to each prediction [n, p]: the prediction minus the prediction with that
        feature set to its training mean (exact for the ridge learner; a local sensitivity for trees)."""
        X = X[self.columns_]
        base = self.predict(X)
        out = {}
        for column in self.columns_:
            moved = X.copy()
            moved[column] = self.means_[column]
            out[column] = base - self.predict(moved)
        return pd.DataFrame(out, index=X.index)

    @ONE_THREAD
    def advise(self, target: str, top: int = 3) -> Advice:
        """Advice for ``target``'s sources (a target of ``features_`` outside the training targets)."""
        if target in self.targets_:
            raise InputError(f"The 'target' parameter of SourceAdvisor.advise is a training target: {target!r}.")
        X, _ = self._rows(self.targets_)
        X = X[X.index.get_level_values("target") == target]
        if not len(X):
            raise InputError(f"The 'target' parameter of SourceAdvisor.advise has no scored sources: {target!r}.")
        expected = self.predict(X)
        lower, upper = self.interval(target)
        top_features = [
            {name: round(float(row[name]), 2) for name in row.abs().nlargest(top).index}
            for _, row in self.contributions(X).iterrows()
        ]
        gains = pd.DataFrame(
            {"expected_gain": expected, "lower": lower, "upper": upper, "top_features": top_features},
            index=pd.Index(X.index.get_level_values("source"), name="source"),
        ).sort_values("expected_gain", ascending=False)
        gains["rank"] = np.arange(1, len(gains) + 1)
        return Advice(
            gains=gains, dont_transfer=bool(gains.upper.max() < 0), learner=self.learner_, level=1 - self.alpha,
            shared_error=self.shared_error(),
        )  # fmt: skip


def advise_target(
    scores: pd.DataFrame,
    gains: pd.DataFrame,
    tasks: pd.DataFrame,
    target: str,
    *,
    alpha: float = 0.2,
    seed: int = 0,
    learners: Mapping[str, object] | None = None,
) -> Advice:
    """Advice for ``target``'s sources, learned from the measured ``gains`` (columns target, source, gain) of the
    *other* targets (``target``'s own rows are dropped): features from ``scores`` (long method scores of every
    pair, ``target``'s included) and ``tasks`` (`describe_tasks`), a `SourceAdvisor` fitted on the other targets.
    Needs ≥ `MIN_TARGETS` other measured targets."""
    features = PairFeatures.build(scores, tasks)
    if not (features.targets() == target).any():
        raise InputError(f"The 'scores' parameter of advise_target holds no scores for target {target!r}.")
    others = gains[gains.target != target]
    return SourceAdvisor(alpha=alpha, seed=seed, learners=learners).fit(features, others).advise(target)
