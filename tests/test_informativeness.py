"""Is a target informative? The block ANOVA against an independent least-squares fit, split-half reliability and
the chance level by hand, and the decision on synthetic targets that do and do not learn."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from transfer.informativeness import block_anova, chance_level, split_half_reliability, target_signal


def least_squares_f(gains: np.ndarray) -> tuple[float, float]:
    """The source effect's F and p from two linear models fitted by least squares (seed-only vs source + seed)."""
    n_sources, n_seeds = gains.shape
    y = gains.ravel()
    source = np.repeat(np.eye(n_sources), n_seeds, axis=0)
    seed = np.tile(np.eye(n_seeds), (n_sources, 1))
    full, reduced = np.hstack([source, seed[:, 1:]]), seed
    rss = [float(np.sum((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2)) for X in (full, reduced)]
    df_effect, df_error = n_sources - 1, (n_sources - 1) * (n_seeds - 1)
    f = ((rss[1] - rss[0]) / df_effect) / (rss[0] / df_error)
    return f, float(stats.f.sf(f, df_effect, df_error))


def test_block_anova_by_hand():
    # sources (rows) 1, 2, 3 points apart on every seed, seeds shift everything by 0 / 10: no error, but one cell
    # moved by 1 gives SS_error 2/3 (the interaction residual of a 3x2 table with one cell off by one)
    gains = np.array([[1.0, 11.0], [2.0, 12.0], [3.0, 14.0]])
    f, p = block_anova(gains)
    # means: sources 6, 7, 8.5; seeds 2, 12.333; grand 7.1667. SS_source = 2 * (1.3611 + 0.0278 + 1.7778) = 6.3333
    # SS_total = 164.8333, SS_seed = 3 * (26.6944 + 26.6944) = 160.1667, SS_error = 0.3333
    assert f == pytest.approx((6.3333333 / 2) / (0.3333333 / 2))
    assert p == pytest.approx(stats.f.sf(f, 2, 2))
    with pytest.raises(ValueError, match="complete \\[sources, seeds\\] array"):
        block_anova(np.array([[1.0, np.nan], [2.0, 3.0]]))


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 6), st.integers(2, 5), st.integers(0, 10_000))
def test_block_anova_matches_least_squares(n_sources, n_seeds, seed):
    gains = np.random.default_rng(seed).normal(size=(n_sources, n_seeds))
    assert block_anova(gains) == pytest.approx(least_squares_f(gains), rel=1e-9)


def test_split_half_reliability_by_hand():
    # 4 seeds: splits {0,1}|{2,3}, {0,2}|{1,3}, {0,3}|{1,2}; sources ordered alike in every half: rho 1
    gains = np.array([[0.0, 0.1, 0.0, 0.1], [1.0, 1.1, 1.0, 1.1], [2.0, 2.1, 2.0, 2.1]])
    assert split_half_reliability(gains) == pytest.approx((1.0, 1.0))
    # 2 seeds that reverse each other: one split, rho -1, Spearman-Brown stays at -1
    assert split_half_reliability(np.array([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0]])) == pytest.approx((-1.0, -1.0))
    # rho 0.5 is corrected to 2 * 0.5 / 1.5
    halves = np.array([[1.0, 1.0], [2.0, 3.0], [3.0, 4.0], [4.0, 2.0]])  # spearman of (1,2,3,4) and (1,3,4,2) = 0.4
    rho, full = split_half_reliability(halves)
    assert rho == pytest.approx(0.4) and full == pytest.approx(2 * 0.4 / 1.4)


def test_chance_level():
    assert chance_level(np.array([0, 0, 1, 2, 0]), regression=False) == pytest.approx(0.6)
    assert chance_level(np.array([0.3, 0.9]), regression=True) == 0.0


def test_a_target_at_its_majority_class_is_not_informative_however_the_sources_differ():
    rng = np.random.default_rng(0)
    chance = np.full(5, 0.68)
    effects = np.linspace(-0.05, 0.0, 8)[:, None]  # sources only ever hurt, by clearly different amounts
    at_majority = 0.68 + rng.normal(0, 0.001, 5)
    signal = target_signal(at_majority, chance, at_majority + effects + rng.normal(0, 0.002, (8, 5)), False)
    assert not signal.learns and signal.sources_differ and not signal.informative
    assert signal.skill == pytest.approx(0.0, abs=0.01)


def test_a_learning_target_whose_sources_differ_is_informative():
    rng = np.random.default_rng(1)
    chance = np.full(5, 0.5)
    baseline = 0.75 + rng.normal(0, 0.01, 5)  # skill 0.5
    effects = np.linspace(-0.03, 0.06, 10)[:, None]
    signal = target_signal(baseline, chance, baseline + effects + rng.normal(0, 0.01, (10, 5)), False)
    assert signal.learns and signal.sources_differ and signal.informative
    assert signal.reliability > 0.8 and signal.significantly_positive >= 3 and signal.significantly_negative >= 1
    assert signal.best_gain == pytest.approx(100 * (baseline + effects[-1] - baseline).mean(), abs=1.5)
    # the same target whose sources differ only by seed noise: it learns, but carries no ranking signal
    noise = target_signal(baseline, chance, baseline + rng.normal(0, 0.01, (10, 5)), False)
    assert noise.learns and not noise.sources_differ and not noise.informative


def test_a_regression_target_learns_by_its_correlation():
    rng = np.random.default_rng(2)
    weak = target_signal(np.full(3, 0.05) + rng.normal(0, 0.001, 3), np.zeros(3), rng.normal(0.05, 0.01, (4, 3)), True)
    strong = target_signal(np.full(3, 0.3) + rng.normal(0, 0.001, 3), np.zeros(3), rng.normal(0.3, 0.01, (4, 3)), True)
    assert not weak.learns and strong.learns and strong.skill == pytest.approx(0.3, abs=0.01)


def test_atlas_targets_scores_the_rows_each_seed_evaluated(shared_tasks, tmp_path):
    import json

    import pandas as pd

    from bench import atlas_targets
    from flows.measure import target_splits
    from store.task_files import load_task_dir
    from transfer.finetune import Recipe

    recipe = {"lr": 5e-5, "batch_size": 16, "epochs": 3, "max_examples": 300, "max_length": 64, "warmup_ratio": 0.06}
    goal = load_task_dir(shared_tasks / "cb")
    held = [target_splits(goal, Recipe(**recipe), 40, seed)[1].labels for seed in (0, 1, 2)]
    majority = [float(np.bincount(labels.astype(int)).max() / len(labels)) for labels in held]
    rows = []
    for seed in (0, 1, 2):
        rows.append(("cb", "", seed, majority[seed]))  # a baseline that predicts the majority class
        rows += [("cb", f"s{i}", seed, majority[seed] + 0.01 * i) for i in range(4)]
    atlas = pd.DataFrame(rows, columns=["target", "source", "seed", "value"]).assign(
        recipe="medium", target_recipe=json.dumps(recipe), max_test=40
    )
    table = atlas_targets.target_rows(atlas)
    row = table.iloc[0]
    assert len(table) == 1 and row.chance == pytest.approx(100 * np.mean(majority)) and row.skill == pytest.approx(0)
    assert not row.learns and row.n_sources == 4 and row.n_seeds == 3 and row.seeds == "0,1,2"
    table.to_csv(tmp_path / "atlas_targets.csv", index=False)
    assert atlas_targets.informative_targets(tmp_path / "atlas_targets.csv") == []


def test_a_pilot_is_screened_but_never_counted_informative(tmp_path):
    """A target measured on the pilot's three sources is a ``pilot`` row (it passes when its baseline learns); only a
    grid of at least `MIN_GRID_SOURCES` sources can be informative; anything between is ``partial``."""
    import pandas as pd

    from bench import atlas_targets, transfer_atlas

    pilot = set(transfer_atlas.pilot_sources("sst2"))
    assert pilot == {"trec", "ag_news", "sick_nli"}  # sst2 is a pilot source: trec stands in for it
    assert atlas_targets.stage("sst2", pilot) == "pilot"
    assert atlas_targets.stage("sst2", pilot | {"cola"}) == "partial"
    assert atlas_targets.stage("sst2", {f"s{i}" for i in range(atlas_targets.MIN_GRID_SOURCES)}) == "grid"
    table = pd.DataFrame(
        {"target": ["a", "b"], "recipe": "medium", "stage": ["pilot", "grid"], "informative": [True, True]}
    )
    table.to_csv(tmp_path / "atlas_targets.csv", index=False)
    assert atlas_targets.informative_targets(tmp_path / "atlas_targets.csv") == ["b"]


def test_a_pilot_passes_when_its_baseline_learns_on_every_seed(shared_tasks):
    """Two seeds are too few for the t-test of ``learns`` (skills 0.2 and 0.6: p > 0.05), so a pilot passes on the
    skill of each seed's baseline instead; one seed at chance fails it."""
    import json

    import pandas as pd

    from bench import atlas_targets, transfer_atlas
    from flows.measure import target_splits
    from store.task_files import load_task_dir
    from transfer.finetune import Recipe

    recipe = {"lr": 5e-5, "batch_size": 16, "epochs": 3, "max_examples": 300, "max_length": 64, "warmup_ratio": 0.06}
    goal = load_task_dir(shared_tasks / "cb")
    chance = [
        float(np.bincount(target_splits(goal, Recipe(**recipe), 40, seed)[1].labels.astype(int)).max() / 40)
        for seed in (0, 1)
    ]

    def pilot(skills):
        baseline = [c + s * (1 - c) for c, s in zip(chance, skills, strict=True)]
        rows = [("cb", "", seed, baseline[seed]) for seed in (0, 1)]
        rows += [
            ("cb", source, seed, baseline[seed]) for source in transfer_atlas.pilot_sources("cb") for seed in (0, 1)
        ]
        atlas = pd.DataFrame(rows, columns=["target", "source", "seed", "value"])
        return atlas_targets.target_rows(atlas.assign(recipe="medium", target_recipe=json.dumps(recipe), max_test=40))

    learned = pilot([0.2, 0.6]).iloc[0]
    assert learned.stage == "pilot" and learned.baseline_p > 0.05 and not learned.learns
    assert learned.passes and learned.min_seed_skill == pytest.approx(0.2)
    assert not pilot([0.05, 0.6]).iloc[0].passes
