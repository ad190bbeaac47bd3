"""``python -m bench selection_diagnosis``: why ICONS, plain and class-stratified, keeps less of the full pool's score
than random on a mixed-domain pool (issue #31, part 1), measured without subset fine-tunes.

Cases (each at seeds 0, 1, 2; budget 20%; targets contribute 300 training rows each, `measure_selection`'s
default; everything else is `select_training_subset`'s ICONS, computed here by the same library calls as
`flows.icons`, without the workspace caches):

- ``mixed``: 500 seeded training rows from each of mr (Rotten Tomatoes snippets), uci_sentiment_amazon (phone
  reviews), uci_sentiment_imdb (IMDb sentences) and uci_sentiment_yelp (restaurant reviews), built like
  `bench.selection_quality`'s pool; targets sst2 and cr (sentence-level sentiment); the default 5% warm-up.
- ``mixed-warmup25``: the same with a 25% warm-up (500 rows instead of 100), to see whether a model that has
  learned more changes the picture.
- ``committed``: `bench.selection_quality`'s pool (700 rows each of sst2, mr, mpqa; targets cr, uci_sentiment_yelp,
  uci_sentiment_amazon), where stratified ICONS ranked first, for contrast.

Measured per case and seed: (a) each subset (random, ICONS, ICONS class-stratified, and as a diagnostic only
``stratified-unnormalised``: the stratified consensus with the pool rows' gradients left unnormalised, g_i · mean_j
ĝ_j, which keeps the loss size the cosine drops) against the pool: source
("domain") and class shares, mean length in words, duplicate rate (rows whose letters-and-digits text repeats an
earlier row of the subset), and how easy its rows are for the warm-up model (accuracy, mean margin
logit_true − logit_other); (b) the warm-up (rows, optimiser steps, accuracy on the pool rows it did not train on,
share predicted positive, accuracy on each target's rows), and per target the influence scores I(i) =
ĝ_i · mean_j ĝ_j (ĝ the unit projected loss gradient): share of the top 20% in the mass of I − min I, Gini of
I − min I, correlation with the class (point-biserial), Spearman with length overall and within each class, the
share of within-class variance that the source explains (η²), the cosine between the target's mean unit gradients
of its two classes, the share of the squared mass of the target's unit gradients along their first singular
direction (how one-dimensional they are), the class and source shares of the target's top 20%; the head block's
share of the squared
gradient norm and the influence without it; consensus across targets (Spearman, overlap of the top-20% sets,
votes). ``sign_identity_error``: for binary cross-entropy the unit gradient of (x, y) is minus that of (x, 1 − y)
(∇ℓ = (p₁ − y)·∇(z₁ − z₀)), so I(i) = σ_i · û_i · mean_j σ_j û_j with σ the label's sign: the loss value drops out;
the check is max |cos(ĝ(x, y), ĝ(x, 1 − y)) + 1| over a few target rows.

Full run 64 min on 2 busy cores (3,811 s measured); writes ``reports/results/selection_diagnosis.json`` (every
case and seed; the last stdout line carries the means over seeds). ``--quick``: 60 pool rows, 20 target rows, one
case, one seed.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import SHARED_TASKS
from bench.selection_quality import POOL_SOURCES, TARGETS, sentiment_pool

RESULTS = Path(__file__).resolve().parents[1] / "reports" / "results"
MIXED_SOURCES = ("mr", "uci_sentiment_amazon", "uci_sentiment_imdb", "uci_sentiment_yelp")
MIXED_TARGETS = ("sst2", "cr")
TOP = 0.2  # the budget, and ICONS's top_fraction


def grid(quick: bool) -> dict[str, Any]:
    mixed = {"sources": MIXED_SOURCES, "targets": MIXED_TARGETS, "warmup_fraction": 0.05}
    if quick:
        return {"cases": {"mixed": {**mixed, "per_source": 15}}, "max_target": 20, "seeds": (0,)}
    return {
        "cases": {
            "mixed": {**mixed, "per_source": 500},
            "mixed-warmup25": {**mixed, "per_source": 500, "warmup_fraction": 0.25},
            "committed": {"sources": POOL_SOURCES, "targets": TARGETS, "per_source": 700, "warmup_fraction": 0.05},
        },
        "max_target": 300,
        "seeds": (0, 1, 2),
    }


def concentration(scores: np.ndarray) -> dict[str, float]:
    """Of x = scores − min(scores) [N]: the top ``TOP`` share of Σx, and the Gini coefficient
    G = 2·Σ_i i·x_(i) / (N·Σx) − (N + 1)/N (x sorted ascending, i from 1)."""
    x = np.sort(scores - scores.min())
    total = x.sum()
    if total <= 0:
        return {"top_mass_share": float("nan"), "gini": 0.0}
    n = len(x)
    top = x[n - max(1, int(round(TOP * n))) :].sum()
    gini = 2 * np.sum(np.arange(1, n + 1) * x) / (n * total) - (n + 1) / n
    return {"top_mass_share": float(top / total), "gini": float(gini)}


def eta_squared_within(scores: np.ndarray, groups: np.ndarray, classes: np.ndarray) -> float:
    """Share of the within-class sum of squares of ``scores`` that ``groups`` (the sources) explain:
    Σ_c SS_between-groups(c) / Σ_c SS_total(c)."""
    between = total = 0.0
    for c in np.unique(classes):
        s, g = scores[classes == c], groups[classes == c]
        total += float(((s - s.mean()) ** 2).sum())
        between += sum(float((g == k).sum() * (s[g == k].mean() - s.mean()) ** 2) for k in np.unique(g))
    return between / total if total > 0 else float("nan")


def shares(values: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    return {name: round(float(np.mean(values == name)), 4) for name in names}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def profile(rows: np.ndarray, facts: dict[str, Any], sources: tuple[str, ...]) -> dict[str, Any]:
    """(a): what the rows (indices into the allowed pool) look like."""
    keys = facts["keys"][rows]
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    return {
        "n": len(rows),
        "positive_share": round(float(facts["labels"][rows].mean()), 4),
        "domain_shares": shares(facts["domains"][rows], sources),
        "mean_words": round(float(facts["words"][rows].mean()), 2),
        "duplicate_rate": round(float(np.mean([first[k] != i for i, k in enumerate(keys)])), 4),
        "warmup_accuracy": round(float(facts["correct"][rows].mean()), 4),
        "warmup_margin": round(float(facts["margin"][rows].mean()), 4),
    }


def influence_profile(scores: np.ndarray, facts: dict[str, Any], sources: tuple[str, ...]) -> dict[str, Any]:
    """(b): how the influence scores [N] of one target are spread and what they follow."""
    labels, words = facts["labels"], facts["words"]
    top = np.argsort(-scores, kind="stable")[: max(1, int(round(TOP * len(scores))))]
    return {
        **{k: round(v, 4) for k, v in concentration(scores).items()},
        "class_correlation": round(float(np.corrcoef(scores, labels)[0, 1]), 4),
        "length_spearman": round(spearman(scores, words), 4),
        "length_spearman_by_class": {
            str(c): round(spearman(scores[labels == c], words[labels == c]), 4) for c in (0, 1)
        },
        "domain_eta2_within_class": round(eta_squared_within(scores, facts["domains"], labels), 4),
        "top_positive_share": round(float(labels[top].mean()), 4),
        "top_domain_shares": shares(facts["domains"][top], sources),
    }


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)


def diagnose(case: dict[str, Any], seed: int, max_target: int, model: str | None) -> dict[str, Any]:
    """One case at one seed: the warm-up, the gradient features, the influences, the subsets and their profiles."""
    from flows.gradient_rows import labelled_rows, target_rows
    from selection.gradients import KroneckerFactors, gradient_features, last_layer_linears
    from selection.icons import ICONS_DEFAULTS, WARMUP_RECIPE, icons_select, specialist_influence, warmup_indices
    from selection.random_baseline import random_select
    from store.leakage import drop_leaked, normalise_text
    from store.task_files import load_task_dir
    from transfer.finetune import fine_tune, predict

    sources = tuple(case["sources"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pool = sentiment_pool(case["per_source"], sources)
        goals = [load_task_dir(SHARED_TASKS / name) for name in case["targets"]]
        sizes = [min(case["per_source"], load_task_dir(SHARED_TASKS / s).counts()["train"]) for s in sources]
    rows = labelled_rows(pool, pool, "train", None, max_rows=None, seed=0)
    if len(rows.texts) != sum(sizes):
        raise RuntimeError(f"The pool has {len(rows.texts)} rows, not the {sum(sizes)} its sources gave.")
    leaked = set(drop_leaked(pool, goals, split="train")[1].dropped_ids)
    allowed = np.array([eid not in leaked for eid in rows.example_ids])
    targets = target_rows(pool, goals, "train", None, max_rows=max_target, seed=seed)

    start = time.perf_counter()
    chosen = warmup_indices(len(rows.texts), case["warmup_fraction"], seed)
    tuned = fine_tune(
        [rows.texts[i] for i in chosen],
        rows.labels[chosen],
        n_classes=2,
        model=model,
        recipe=WARMUP_RECIPE,
        seed=seed,
        device="cpu",
    )
    warmup_s = time.perf_counter() - start
    length = WARMUP_RECIPE.max_length
    logits = predict(tuned.model, tuned.tokenizer, rows.texts, max_length=length)
    labels = rows.labels.astype(int)
    unseen = np.ones(len(labels), bool)
    unseen[chosen] = False
    facts = {
        "labels": labels[allowed],
        "domains": np.repeat(np.array(sources), sizes)[allowed],
        "words": np.array([len(t.split()) for t in rows.texts])[allowed],
        "keys": np.array([normalise_text(t) for t in rows.texts])[allowed],
        "correct": (logits.argmax(1) == labels)[allowed],
        "margin": (logits[np.arange(len(labels)), labels] - logits[np.arange(len(labels)), 1 - labels])[allowed],
    }
    target_accuracy = {
        t.task: round(
            float((predict(tuned.model, tuned.tokenizer, t.texts, max_length=length).argmax(1) == t.labels).mean()), 4
        )
        for t in targets
    }

    options: dict[str, Any] = {"dim": ICONS_DEFAULTS["dim"], "projection": ICONS_DEFAULTS["projection"], "seed": seed}
    start = time.perf_counter()
    pool_features = gradient_features(
        tuned.model, tuned.tokenizer, rows.texts, rows.labels, max_length=length, **options
    )
    pool_features = pool_features[allowed].astype(np.float16).astype(np.float64)  # fp16 as the flow stores them
    target_features = {
        t.task: gradient_features(tuned.model, tuned.tokenizer, t.texts, t.labels, max_length=length, **options)
        .astype(np.float16)
        .astype(np.float64)
        for t in targets
    }
    features_s = time.perf_counter() - start
    probe = targets[0]
    few = slice(0, min(16, len(probe.texts)))
    flipped = gradient_features(
        tuned.model, tuned.tokenizer, probe.texts[few], 1 - probe.labels[few], max_length=length, **options
    )
    sign_error = float(np.abs((unit(flipped) * unit(target_features[probe.task][few])).sum(1) + 1).max())

    factors = KroneckerFactors.build(tuned.model, last_layer_linears(tuned.model), options["dim"], seed=seed)
    head = pool_features.shape[1] - factors.p_out[-1].shape[0] * factors.p_in[-1].shape[0]  # the head block is last
    influences = {t: specialist_influence(pool_features, f) for t, f in target_features.items()}
    without_head = {t: specialist_influence(pool_features[:, :head], f[:, :head]) for t, f in target_features.items()}
    # Diagnostic, not a method: the pool rows' gradients left unnormalised, g_i · mean_j ĝ_j = ‖g_i‖ · I(i), which
    # keeps the loss size that the cosine drops (an example the model already fits has a near-zero gradient).
    unnormalised = {t: pool_features @ unit(f).mean(0) for t, f in target_features.items()}
    per_target = {}
    for t in targets:
        units = unit(target_features[t.task])
        means = [units[t.labels == c].mean(0) for c in (0, 1)]
        singular = np.linalg.svd(units, compute_uv=False)  # how one-dimensional the target's unit gradients are
        per_target[t.task] = {
            "positive_share": round(float(t.labels.mean()), 4),
            "direction_norm": round(float(np.linalg.norm(units.mean(0))), 4),
            "class_direction_cosine": round(float(unit(np.stack(means))[0] @ unit(np.stack(means))[1]), 4),
            "top_direction_share": round(float(singular[0] ** 2 / (singular**2).sum()), 4),
            "influence": influence_profile(influences[t.task], facts, sources),
            "without_head": {
                "spearman_with_full": round(spearman(influences[t.task], without_head[t.task]), 4),
                "class_correlation": round(float(np.corrcoef(without_head[t.task], facts["labels"])[0, 1]), 4),
            },
        }

    n = int(allowed.sum())
    plain = icons_select(influences, TOP, top_fraction=TOP)
    stratified = icons_select(influences, TOP, top_fraction=TOP, stratify_by=facts["labels"])
    names = list(influences)
    tops = [set(np.argsort(-influences[t], kind="stable")[: int(round(TOP * n))].tolist()) for t in names]
    head_share = (pool_features[:, head:] ** 2).sum(1) / (pool_features**2).sum(1)
    return {
        "n_pool": n,
        "n_leaked": len(leaked),
        "warmup": {
            "n_examples": len(chosen),
            "steps": tuned.steps,
            "seconds": round(warmup_s, 1),
            "pool_accuracy_unseen": round(float((logits.argmax(1) == labels)[unseen].mean()), 4),
            "pool_predicted_positive": round(float(logits.argmax(1).mean()), 4),
            "pool_majority_share": round(float(max(labels.mean(), 1 - labels.mean())), 4),
            "target_accuracy": target_accuracy,
        },
        "features_seconds": round(features_s, 1),
        "sign_identity_error": sign_error,
        "head_norm_share": round(float(head_share.mean()), 4),
        "targets": per_target,
        "consensus": {
            "spearman": round(spearman(influences[names[0]], influences[names[-1]]), 4) if len(names) > 1 else 1.0,
            "top_jaccard_first_last": round(len(tops[0] & tops[-1]) / len(tops[0] | tops[-1]), 4),
            "votes": np.bincount(plain.votes, minlength=len(names) + 1).tolist(),
        },
        "subsets": {
            "pool": profile(np.arange(n), facts, sources),
            "random": profile(random_select(n, TOP, seed=seed), facts, sources),
            "icons": profile(plain.order, facts, sources),
            "icons-stratified": profile(stratified.order, facts, sources),
            "stratified-unnormalised": profile(
                icons_select(unnormalised, TOP, top_fraction=TOP, stratify_by=facts["labels"]).order, facts, sources
            ),
        },
    }


def mean_over_seeds(runs: list[dict[str, Any]]) -> Any:
    """The element-wise mean of the seeds' nested results (numbers averaged; anything else from the first seed)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: mean_over_seeds([r[k] for r in runs]) for k in first}
    if isinstance(first, list):
        return [mean_over_seeds(list(values)) for values in zip(*runs, strict=True)]
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return round(float(np.mean(runs)), 4)
    return first


def summary(case: dict[str, Any]) -> dict[str, Any]:
    """The key figures of one case (means over seeds) for the last stdout line."""
    m = case["mean"]
    return {
        "warmup_pool_accuracy": m["warmup"]["pool_accuracy_unseen"],
        "warmup_predicted_positive": m["warmup"]["pool_predicted_positive"],
        "head_norm_share": m["head_norm_share"],
        "sign_identity_error": m["sign_identity_error"],
        "consensus_spearman": m["consensus"]["spearman"],
        "targets": {
            t: {
                "class_correlation": v["influence"]["class_correlation"],
                "class_direction_cosine": v["class_direction_cosine"],
                "top_direction_share": v["top_direction_share"],
                "top_positive_share": v["influence"]["top_positive_share"],
                "top_mass_share": v["influence"]["top_mass_share"],
                "gini": v["influence"]["gini"],
                "length_spearman_by_class": v["influence"]["length_spearman_by_class"],
                "domain_eta2_within_class": v["influence"]["domain_eta2_within_class"],
            }
            for t, v in m["targets"].items()
        },
        "subsets": {
            name: {
                k: s[k]
                for k in ("n", "positive_share", "domain_shares", "mean_words", "warmup_accuracy", "warmup_margin")
            }
            for name, s in m["subsets"].items()
        },
    }


def run(quick: bool = False, model: str | None = None) -> dict[str, Any]:
    """Diagnose every case of the grid; write the committed table (full runs) and print the key figures last."""
    from store.artifacts import replace_atomically
    from store.runs import library_versions

    config = grid(quick)
    start = time.perf_counter()
    cases = {}
    for name, case in config["cases"].items():
        runs = [diagnose(case, seed, config["max_target"], model) for seed in config["seeds"]]
        cases[name] = {"config": case, "seeds": dict(zip(map(str, config["seeds"]), runs, strict=True))}
        cases[name]["mean"] = mean_over_seeds(runs)
    result = {
        "bench": "selection_diagnosis",
        "quick": quick,
        "grid": {"max_target": config["max_target"], "seeds": config["seeds"], "budget": TOP, "model": model},
        "summary": {name: summary(case) for name, case in cases.items()},
        "seconds": round(time.perf_counter() - start, 1),
        "versions": library_versions(),
    }
    if not quick:
        with replace_atomically(RESULTS / "selection_diagnosis.json") as tmp:
            tmp.write_text(json.dumps({**result, "cases": cases}, indent=1) + "\n")
    print(json.dumps(result))
    return result
