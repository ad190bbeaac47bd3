"""The source advisor: one learned, calibrated estimate of each source's gain for a target, from every cheap
ranking method's score and what measured transfer already knows.

Per (target t, source s) pair the features are

- per method m: the oriented score (higher = better) as a z-score and as a rank percentile within t's sources;
- source and target descriptors: log training size, log number of labels (0 for regression), regression and
  text-pair flags, and whether s and t agree on each flag;
- what the measured pairs of *other* targets say: ``source_prior`` (s's mean gain over the other targets;
  Choshen et al. 2022 find much of transfer is the source's general quality) and ``transitive`` (s's gains on
  the ``k`` other targets most similar to t, weighted by that similarity; TaskShop, Kim et al. 2023, estimates
  through pivot tasks in the same spirit).

The learner (`SourceAdvisor`) is chosen among a few small scikit-learn regressors by leave-one-target-out error
on the training targets and predicts the gain in points over no transfer. Its interval is split-conformal on
the leave-one-target-out residuals: prediction ± the ⌈(n+1)(1-α)⌉-th smallest absolute residual (Lei et al.
2018), so about 1-α of held-out gains fall inside. Every feature of a held-out target is computed without its own
measurements (`pair_features(..., gains)` takes only the other targets' gains), so leave-one-target-out is honest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

PRIOR_NEIGHBOURS = 3
# The checkpoint-free methods: a new target costs seconds per source.
CHEAP_INPUTS = (
    "centroid-cosine", "mmd", "frechet", "knn-kl", "knn-kl-reverse", "js", "sliced-wasserstein", "sinkhorn", "pad",
    "maxsim",
)  # fmt: skip
# The methods `rank --method advisor` computes by default: every ranking method the atlas scores (all but OTDD, which
# needs class labels on both sides). The three that read each source's fine-tuned checkpoint (one cached fine-tune
# per source) made the advisor better on every measure of the 12-target atlas, leave-one-target-out (NDCG@5 0.49
# vs 0.41, regret@1 9.6 vs 11.1, Spearman 0.15 vs 0.03 with `CHEAP_INPUTS` alone), so the default pays for them.
DEFAULT_INPUTS = ("esm-logme", "direct-logme", "leep", *CHEAP_INPUTS)


def method_features(scores: pd.DataFrame) -> pd.DataFrame:
    """Wide features from long ``scores`` (columns target, source, method, score, higher_is_better): per method,
    ``z:<m>`` (the oriented score standardised within the target; 0 where all are equal) and ``pct:<m>`` (its
    rank percentile within the target, 1 = best). Index: (target, source)."""
    score = scores.score.astype(np.float64)
    frame = scores.assign(oriented=np.where(scores.higher_is_better.astype(bool), score, -score))
    grouped = frame.groupby(["target", "method"]).oriented
    spread = grouped.transform("std").replace(0, np.nan)
    frame["z"] = ((frame.oriented - grouped.transform("mean")) / spread).fillna(0.0)
    frame["pct"] = grouped.rank(pct=True)
    wide = frame.pivot_table(index=["target", "source"], columns="method", values=["z", "pct"])
    wide.columns = [f"{kind}:{method}" for kind, method in wide.columns]
    return wide


def descriptor_features(pairs: pd.MultiIndex, tasks: pd.DataFrame) -> pd.DataFrame:
    """Source and target descriptors for each (target, source) pair; ``tasks`` is indexed by task name with
    columns n_train, n_labels (0 for regression), regression (bool), pair (bool)."""
    described = pd.DataFrame(
        {
            "log_train": np.log10(tasks.n_train.astype(float)),
            "log_labels": np.log2(tasks.n_labels.clip(lower=1).astype(float)),
            "regression": tasks.regression.astype(float),
            "pair": tasks.pair.astype(float),
        }
    )
    source = described.loc[pairs.get_level_values("source")].add_prefix("source_").set_index(pairs)
    target = described.loc[pairs.get_level_values("target")].add_prefix("target_").set_index(pairs)
    same = pd.DataFrame(
        {f"same_{d}": (source[f"source_{d}"] == target[f"target_{d}"]).astype(float) for d in ("regression", "pair")}
    )
    return pd.concat([source, target, same], axis=1)


def prior_features(pairs: pd.MultiIndex, gains: pd.DataFrame, similarity: pd.DataFrame | None) -> pd.DataFrame:
    """``source_prior`` and ``transitive`` for each (target, source) pair from measured ``gains`` (columns target,
    source, gain: mean gains in points), never using the pair's own target: source_prior(t, s) = mean over t' ≠ t of
    gain(t', s); transitive(t, s) = Σ w·gain(t', s) / Σ w over the `PRIOR_NEIGHBOURS` targets t' ≠ t most similar
    to t (``similarity`` [targets × targets], w = max(sim, 0)), falling back to source_prior. NaN where no other
    target measured s."""
    table = gains.pivot_table(index="target", columns="source", values="gain")
    rows = []
    for target, source in pairs:
        others = table.drop(index=target, errors="ignore")
        column = others[source].dropna() if source in others else pd.Series(dtype=float)
        prior = float(column.mean()) if len(column) else math.nan
        transitive = prior
        if similarity is not None and target in similarity.index and len(column):
            weights = similarity.loc[target].reindex(column.index).fillna(0.0).clip(lower=0.0)
            nearest = weights.nlargest(PRIOR_NEIGHBOURS)
            if nearest.sum() > 0:
                transitive = float((nearest * column[nearest.index]).sum() / nearest.sum())
        rows.append({"source_prior": prior, "transitive": transitive})
    return pd.DataFrame(rows, index=pairs)


def pair_features(
    scores: pd.DataFrame, tasks: pd.DataFrame, gains: pd.DataFrame | None, similarity: pd.DataFrame | None
) -> pd.DataFrame:
    """Every feature of every (target, source) pair that ``scores`` ranks: `method_features`,
    `descriptor_features` and, given measured ``gains`` of other targets, `prior_features`. Index (target,
    source); missing values (a method that failed on a pair, a source no other target measured) are 0 for the
    method columns and the training mean for the priors (`SourceAdvisor` imputes)."""
    methods = method_features(scores)
    parts = [methods.fillna({c: 0.0 for c in methods if c.startswith("z:")}), descriptor_features(methods.index, tasks)]
    if gains is not None and len(gains):
        parts.append(prior_features(methods.index, gains, similarity))
    return pd.concat(parts, axis=1)


@dataclass(frozen=True)
class Advice:
    """Per source of one target: expected gain (points), the interval, the rank (1 = best expected gain) and the
    features that moved the estimate most (name -> contribution in points)."""

    gains: pd.DataFrame  # index source; columns expected_gain, lower, upper, rank, top_features
    dont_transfer: bool  # the best source's upper bound is below zero: fine-tune on the target alone
    learner: str


def candidate_learners(seed: int) -> dict[str, object]:
    """The small regressors `SourceAdvisor` chooses among (imputation and scaling included)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "ridge": make_pipeline(SimpleImputer(), StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 11))),
        "boosted-trees": make_pipeline(
            SimpleImputer(),
            HistGradientBoostingRegressor(max_depth=3, max_iter=150, learning_rate=0.05, random_state=seed),
        ),
    }


class SourceAdvisor:
    """Learned gain estimates with conformal intervals (module docstring).

    ``fit(X, y, groups)``: ``X`` pair features [n, p] (a DataFrame from `pair_features`), ``y`` measured mean
    gains in points [n], ``groups`` the target of each row [n] (≥ 3 targets). Learned state: ``learner_`` (the name
    of the chosen regressor), ``model_``, ``loto_errors_`` {learner: mean absolute leave-one-target-out error},
    ``residual_quantile_`` (the conformal half-width), ``columns_``, ``means_``."""

    def __init__(self, alpha: float = 0.2, seed: int = 0, learners: Mapping[str, object] | None = None) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"The 'alpha' parameter of SourceAdvisor must be in (0, 1). Got {alpha!r} instead.")
        self.alpha = alpha
        self.seed = seed
        self.learners = learners

    def fit(self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> SourceAdvisor:
        from sklearn.base import clone

        y, groups = np.asarray(y, np.float64), np.asarray(groups)
        if len(np.unique(groups)) < 3 or not len(X) == len(y) == len(groups):
            raise ValueError(
                "SourceAdvisor.fit needs one target per row and at least 3 targets. Got "
                f"{len(np.unique(groups))} targets for {len(X)} rows and {len(y)} gains."
            )
        learners = dict(self.learners or candidate_learners(self.seed))
        self.columns_ = list(X.columns)
        self.means_ = X.mean()
        residuals = {name: loto_residuals(clone(model), X, y, groups) for name, model in learners.items()}
        self.loto_errors_ = {name: float(np.mean(np.abs(r))) for name, r in residuals.items()}
        self.learner_ = min(self.loto_errors_, key=self.loto_errors_.__getitem__)
        self.residual_quantile_ = conformal_quantile(residuals[self.learner_], self.alpha)
        self.model_ = clone(learners[self.learner_]).fit(X, y)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Expected gains in points [n]."""
        return np.asarray(self.model_.predict(X[self.columns_]), np.float64)  # type: ignore[attr-defined]

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

    def advise(self, X: pd.DataFrame, top: int = 3) -> Advice:
        """Advice for one target's sources (``X`` indexed by (target, source) or by source)."""
        expected = self.predict(X)
        sources = X.index.get_level_values(-1)
        contributions = self.contributions(X)
        top_features = [
            {name: round(float(row[name]), 2) for name in row.abs().nlargest(top).index}
            for _, row in contributions.iterrows()
        ]
        gains = pd.DataFrame(
            {
                "expected_gain": expected,
                "lower": expected - self.residual_quantile_,
                "upper": expected + self.residual_quantile_,
                "top_features": top_features,
            },
            index=pd.Index(sources, name="source"),
        ).sort_values("expected_gain", ascending=False)
        gains["rank"] = np.arange(1, len(gains) + 1)
        return Advice(gains=gains, dont_transfer=bool(gains.upper.max() < 0), learner=self.learner_)


def loto_residuals(model: object, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Leave-one-target-out residuals y - ŷ [n]: each target predicted by ``model`` fitted on the others."""
    from sklearn.base import clone

    residuals = np.empty(len(y))
    for group in np.unique(groups):
        held = groups == group
        fitted = clone(model).fit(X[~held], y[~held])  # type: ignore[arg-type]
        residuals[held] = y[held] - fitted.predict(X[held])
    return residuals


def conformal_quantile(residuals: np.ndarray, alpha: float) -> float:
    """Split-conformal half-width: the ⌈(n+1)(1-α)⌉-th smallest |residual| (the largest when that exceeds n)."""
    magnitudes = np.sort(np.abs(np.asarray(residuals, np.float64)))
    k = min(len(magnitudes), math.ceil((len(magnitudes) + 1) * (1 - alpha)))
    return float(magnitudes[k - 1])


def verified_ranking(expected: pd.Series, measured: pd.Series, k: int) -> pd.Series:
    """Fold verification into a ranking: the ``k`` sources with the highest ``expected`` gain (index source) are
    fine-tuned on the target, and ``measured`` (their gain over the baseline of the same seeds, index source)
    re-orders them; they rank above every unverified source, which keep their expected order. Returns scores
    (higher = better) over ``expected``'s sources."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"The 'k' parameter of verified_ranking must be a positive int. Got {k!r} instead.")
    verified = expected.nlargest(k).index
    missing = sorted(set(verified) - set(measured.index))
    if missing:
        raise ValueError(f"The 'measured' parameter of verified_ranking lacks the verified sources {missing}.")
    scores = expected.astype(float).copy()
    scores[verified] = expected.max() + 1.0 + measured[verified] - measured[verified].min()
    return scores


def profile_similarity(features: pd.DataFrame) -> pd.DataFrame:
    """Target × target similarity from the methods alone (no measurement): the Pearson correlation of two targets'
    method z-score profiles over the sources both were ranked against (0 where fewer than 3 are shared)."""
    z = features[[c for c in features.columns if c.startswith("z:")]]
    profiles = {t: frame.droplevel("target") for t, frame in z.groupby(level="target")}
    names = sorted(profiles)
    out = pd.DataFrame(0.0, index=names, columns=names)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = profiles[a].index.intersection(profiles[b].index)
            if len(shared) >= 3:
                x = profiles[a].loc[shared].to_numpy(dtype=np.float64).ravel()
                y = profiles[b].loc[shared].to_numpy(dtype=np.float64).ravel()
                out.loc[a, b] = out.loc[b, a] = float(np.corrcoef(x, y)[0, 1]) if x.std() and y.std() else 0.0
    return out


def describe_tasks(tasks: pd.DataFrame) -> pd.DataFrame:
    """The descriptor table `descriptor_features` reads, from a task listing (index name; columns n_train, kind,
    input, n_labels as `store` lists them)."""
    classification = tasks.kind == "classification"
    return pd.DataFrame(
        {
            "n_train": tasks.n_train,
            "n_labels": tasks.n_labels.fillna(0).where(classification, 0),
            "regression": tasks.kind == "regression",
            "pair": tasks.input == "pair",
        }
    )


def seed_gains(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-seed gains in points from measured ``runs`` (columns target, source, seed, value; source '' = the
    no-transfer baseline, value a fraction): gain = 100·(value − the baseline of the same target and seed). Columns
    target, source, seed, gain; runs without a baseline of their seed are dropped."""
    points = runs.assign(value=100 * runs.value.astype(float), seed=runs.seed.astype(int))
    baseline = points[points.source == ""].set_index(["target", "seed"]).value
    gains = points[points.source != ""]
    reference = baseline.reindex(pd.MultiIndex.from_arrays([gains.target, gains.seed])).to_numpy()
    return gains.assign(gain=gains.value.to_numpy() - reference).dropna(subset=["gain"])[
        ["target", "source", "seed", "gain"]
    ]


def mean_gains(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean gain in points over the seeds per (target, source) (`seed_gains`): columns target, source, gain."""
    return seed_gains(runs).groupby(["target", "source"]).gain.mean().rename("gain").reset_index()


def advise_target(
    scores: pd.DataFrame, gains: pd.DataFrame, tasks: pd.DataFrame, target: str, *, alpha: float = 0.2, seed: int = 0
) -> Advice:
    """Advice for ``target``'s sources, learned from the measured ``gains`` (columns target, source, gain) of the
    *other* targets (``target``'s own rows are dropped): features from ``scores`` (long method scores of every
    pair, ``target``'s included) and ``tasks`` (`describe_tasks`), the transitive prior weighted by
    `profile_similarity`, a `SourceAdvisor` fitted on the other targets' pairs. Needs ≥ 3 other measured targets."""
    others = gains[gains.target != target]
    features = pair_features(scores, tasks, others, None)
    features = pair_features(scores, tasks, others, profile_similarity(features))
    y = others.set_index(["target", "source"]).gain.reindex(features.index)
    held = features.index.get_level_values("target") == target
    if not held.any():
        raise ValueError(f"The 'scores' parameter of advise_target holds no scores for target {target!r}.")
    train = ~held & y.notna().to_numpy()
    groups = features.index[train].get_level_values("target").to_numpy()
    advisor = SourceAdvisor(alpha=alpha, seed=seed).fit(features[train], y[train].to_numpy(), groups)
    return advisor.advise(features[held])


def leave_one_target_out(
    scores: pd.DataFrame,
    runs: pd.DataFrame,
    tasks: pd.DataFrame,
    *,
    alpha: float = 0.2,
    verify: tuple[int, ...] = (2, 3),
    ks: tuple[int, ...] = (1, 3, 5),
    seed: int = 0,
    name: str = "advisor",
) -> pd.DataFrame:
    """Strict leave-one-target-out evaluation of the advisor on measured transfer.

    ``runs``: per-seed measured runs (columns target, source, seed, value; source '' = no transfer) with ≥ 2 seeds
    per target; ``scores`` the methods' long scores of the same pairs. For each target t, t's runs reach neither
    the features (priors from the other targets only) nor the learner (`advise_target`); the advisor's ranking is
    scored with `transfer.metrics.ranking_quality` against t's mean per source, and ``<name>+verify@K`` re-ranks
    the top K by one seed's measured gains (`verified_ranking`) and is scored against the other seeds' mean,
    averaged over the seed, like the one-seed oracle. Also per target: ``coverage`` (share of t's mean gains
    inside the intervals), ``width`` (interval width, points), ``dont_transfer`` (the call) and ``nothing_helps``
    (no source's mean gain is above zero). Returns long rows (target, method, metric, value)."""
    from transfer.metrics import ranking_quality

    per_seed_gains = seed_gains(runs)
    mean_gain = mean_gains(runs)
    points = runs.assign(value=100 * runs.value.astype(float), seed=runs.seed.astype(int))
    baseline = points[points.source == ""].set_index(["target", "seed"]).value
    rows: list[dict] = []
    for target in sorted(mean_gain.target.unique()):
        advice = advise_target(scores, mean_gain, tasks, target, alpha=alpha, seed=seed)
        truth = mean_gain[mean_gain.target == target].set_index("source").gain.reindex(advice.gains.index)
        base = float(baseline[target].mean())
        measured = ((truth + base) / 100).to_dict()  # mean performance as a fraction, as every method is scored
        quality = ranking_quality(advice.gains.expected_gain.to_dict(), measured, baseline=base / 100, ks=ks)
        inside = (truth >= advice.gains.lower) & (truth <= advice.gains.upper)
        calibration = {
            "coverage": float(inside.mean()),
            "width": float((advice.gains.upper - advice.gains.lower).mean()),
            "dont_transfer": float(advice.dont_transfer),
            "nothing_helps": float(truth.max() <= 0),
        }
        rows += [
            {"target": target, "method": name, "metric": m, "value": v} for m, v in {**quality, **calibration}.items()
        ]
        per_seed = per_seed_gains[per_seed_gains.target == target].pivot_table(
            index="source", columns="seed", values="gain"
        )
        for k in verify:
            draws = []
            for s in per_seed.columns:
                rest = [c for c in per_seed.columns if c != s]
                reranked = verified_ranking(advice.gains.expected_gain, per_seed[s], k)
                rest_base = float(baseline[target][rest].mean())
                truth_rest = ((per_seed[rest].mean(axis=1) + rest_base) / 100).to_dict()
                draws.append(ranking_quality(reranked.to_dict(), truth_rest, baseline=rest_base / 100, ks=ks))
            averaged = pd.DataFrame(draws).mean(skipna=True)
            rows += [
                {"target": target, "method": f"{name}+verify@{k}", "metric": m, "value": float(v)}
                for m, v in averaged.items()
            ]
    return pd.DataFrame(rows)
