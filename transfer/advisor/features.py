"""The advisor's features of each (target t, source s) pair.

- per method m: the oriented score (higher = better) as a z-score and as a rank percentile within t's sources
  (`method_features`);
- source and target descriptors: log training size, log number of labels (0 for regression), regression and
  text-pair flags, and whether s and t agree on each flag (`descriptor_features`);
- what the measured pairs of *other* targets say (`prior_features`): ``source_prior`` (s's mean gain over the other
  targets; Choshen et al. 2022 find much of transfer is the source's general quality) and ``transitive`` (s's gains
  on the `PRIOR_NEIGHBOURS` other targets most similar to t, weighted by that similarity; TaskShop, Kim et al.
  2023, estimates through pivot tasks in the same spirit).

The first two never read a measurement and are computed once (`PairFeatures.build`); the priors depend on which
targets' gains may be used, so every fold of a cross-validation recomputes them from its own training targets
(`PairFeatures.given`).
"""

from __future__ import annotations

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
# per source) made the advisor better on every measure of the 12-target atlas, leave-one-target-out, so the default
# pays for them (the figures: README, "The advisor").
DEFAULT_INPUTS = ("esm-logme", "direct-logme", "leep", *CHEAP_INPUTS)
# The single method that ranks the atlas's sources best without measuring transfer (lowest mean regret@1 over its
# targets, `reports/results/ranking_quality.csv`: 3.8 points, against 5.5 for ESM-LogME): `rank`'s default.
BEST_RANKING_METHOD = "direct-logme"


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
    source, gain: mean gains in points), never using the pair's own target:

        source_prior(t, s) = mean_{t' ≠ t} gain(t', s)
        transitive(t, s)   = Σ_{t' ∈ N} w(t, t')·gain(t', s) / Σ_{t' ∈ N} w(t, t'),  w = max(similarity, 0),

    N the `PRIOR_NEIGHBOURS` targets t' ≠ t that measured s with the largest w (ties: the first by name), falling
    back to source_prior when Σ w = 0 or ``similarity`` [targets × targets] lacks t. NaN where no other target
    measured s. Vectorised per target: [targets × sources] arrays, no per-pair loop."""
    table = gains.pivot_table(index="target", columns="source", values="gain")
    values = table.to_numpy(np.float64)
    measured = ~np.isnan(values)
    filled = np.where(measured, values, 0.0)
    out = np.full((len(pairs), 2), np.nan)  # [pairs, (source_prior, transitive)]
    targets = pairs.get_level_values("target")
    for target in targets.unique():
        rows = np.flatnonzero(targets == target)
        wanted = pairs[rows].get_level_values("source")
        columns = table.columns.get_indexer(wanted)
        known = columns >= 0
        others = table.index != target  # [T]
        usable = measured & others[:, None]  # [T, S]: another target measured the source
        counts = usable.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            prior = np.where(counts > 0, (filled * usable).sum(axis=0) / counts, np.nan)
        transitive = prior.copy()
        if similarity is not None and target in similarity.index:
            weights = similarity.loc[target].reindex(table.index).fillna(0.0).clip(lower=0.0).to_numpy(np.float64)
            masked = np.where(usable, weights[:, None], -np.inf)  # [T, S]
            order = np.argsort(-masked, axis=0, kind="stable")[:PRIOR_NEIGHBOURS]  # [k, S]
            chosen_w = np.take_along_axis(masked, order, axis=0)
            chosen_w = np.where(np.isfinite(chosen_w), chosen_w, 0.0)
            chosen_gain = np.take_along_axis(filled, order, axis=0)
            total = chosen_w.sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                transitive = np.where(total > 0, (chosen_w * chosen_gain).sum(axis=0) / total, prior)
        out[rows[known], 0] = prior[columns[known]]
        out[rows[known], 1] = transitive[columns[known]]
    return pd.DataFrame(out, index=pairs, columns=["source_prior", "transitive"])


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


@dataclass(frozen=True)
class PairFeatures:
    """Every pair's features. ``fixed`` [pairs × p]: `method_features` (missing z-scores 0: a method that failed on
    a pair) and `descriptor_features`, index (target, source); ``similarity`` [targets × targets]:
    `profile_similarity` of the method features. Neither reads a measurement."""

    fixed: pd.DataFrame
    similarity: pd.DataFrame

    @classmethod
    def build(cls, scores: pd.DataFrame, tasks: pd.DataFrame) -> PairFeatures:
        """From long method ``scores`` of every pair and ``tasks`` (`describe_tasks`)."""
        methods = method_features(scores)
        fixed = pd.concat(
            [
                methods.fillna({c: 0.0 for c in methods if c.startswith("z:")}),
                descriptor_features(methods.index, tasks),
            ],
            axis=1,
        )
        return cls(fixed=fixed, similarity=profile_similarity(fixed))

    def given(self, gains: pd.DataFrame | None) -> pd.DataFrame:
        """The features when only ``gains`` (columns target, source, gain) are known: ``fixed`` plus
        `prior_features` (none without gains). NaN priors (a source no other target measured) are imputed by the
        learner's pipeline."""
        if gains is None or not len(gains):
            return self.fixed
        return pd.concat([self.fixed, prior_features(self.fixed.index, gains, self.similarity)], axis=1)

    def targets(self) -> pd.Index:
        return self.fixed.index.get_level_values("target")
