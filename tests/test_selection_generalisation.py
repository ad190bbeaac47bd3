"""The selection benchmark on held-out pools (`bench.selection_generalisation`): the pools' make-up on the real
tasks, the summary against hand-worked numbers, appending and resuming the campaign, and the report's table."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import selection_generalisation as bench
from bench.selection_quality import sentiment_pool
from reports.html import held_out_selection
from store.leakage import normalise_text
from store.task_files import load_task_dir
from transfer.arms import ALL_POOLS, summarise_pools

ROOT = Path(__file__).resolve().parents[1]
T_975_DF2 = 4.302652729749464  # Student's t, 97.5% quantile, 2 degrees of freedom (printed tables: 4.303)


@pytest.fixture(scope="module")
def pools(shared_tasks):
    """The three held-out pools at full size, and the normalised texts of every split of the targets."""
    exclude = bench.target_texts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mpqa's known duplicates
        built = {name: bench.build_pool(name, 2000, exclude) for name in bench.POOLS}
    return built, exclude


def texts_of(task, split: str = "train") -> list[str]:
    return task.split(split).column("text").to_pylist()


def test_pools_have_their_make_up_and_no_target_rows(pools, shared_tasks):
    built, exclude = pools
    assert set(bench.TARGETS).isdisjoint({s for spec in bench.pool_specs(2000).values() for s in spec["sources"]})
    for name, task in built.items():
        texts = texts_of(task)
        assert task.name == name and len(texts) == 2000 and task.label_names == ("negative", "positive")
        assert not {normalise_text(t) for t in texts} & exclude, name  # no row of any target's split
    assert len(set(texts_of(built["single-domain"]))) == 2000
    assert set(texts_of(built["single-domain"])) <= set(texts_of(load_task_dir(shared_tasks / "mr")))
    mixed = set(texts_of(built["mixed-domain"]))
    assert len(mixed) == 2000
    for source in bench.MIXED_SOURCES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mpqa's known conflicting duplicates
            task = load_task_dir(shared_tasks / source)
        rows = task.split(bench.SPLITS.get(source, "train")).to_pandas()
        kept = rows[[task.label_names[int(i)] != "neutral" for i in rows.label]]
        assert len(mixed & set(kept.text)) == 500, source
        assert not mixed & set(rows.text[~rows.index.isin(kept.index)]), source  # no neutral tweet


def test_noisy_pool_flips_a_fifth_of_the_labels_and_duplicates_a_fifth_of_the_rows(pools):
    built, exclude = pools
    noisy = built["noisy"].split("train").to_pandas()
    names = built["noisy"].label_names
    noisy = noisy.assign(label=[names[int(i)] for i in noisy.label])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean = sentiment_pool(400, bench.MIXED_SOURCES, splits=bench.SPLITS, distinct_from=exclude)
    truth = dict(
        zip(texts_of(clean), (clean.label_names[int(i)] for i in clean.split("train").column("label")), strict=True)
    )
    assert len(truth) == 1600 and set(noisy.text) == set(truth)
    assert noisy.duplicated(["text", "label"]).sum() == 400 and noisy.text.duplicated().sum() == 400
    flipped = noisy.label != noisy.text.map(truth)
    assert flipped.sum() == 400  # 20% of the 2,000 rows
    assert noisy[flipped].text.nunique() == 320  # and of the 1,600 texts


def test_pools_are_deterministic(pools):
    built, exclude = pools
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = {name: bench.build_pool(name, 2000, exclude).content_hash for name in bench.POOLS}
    assert again == {name: task.content_hash for name, task in built.items()}
    assert len(set(again.values())) == 3


# ------------------------------------------------------------------------------------------------ the summary

# per (pool, seed): the difference to random averaged over targets x and y, for an arm that beats random on every
# seed ("good") and one that does not ("mixed"); pool b also has seed 3, which pool a lacks
GAINS = {
    ("a", "good"): (0.04, 0.06, 0.05),
    ("a", "mixed"): (0.05, -0.03, 0.01),
    ("b", "good"): (0.02, 0.04, 0.03, 0.03),
    ("b", "mixed"): (0.0, 0.0, 0.0, 0.0),
}
FULL = {"x": 0.80, "y": 0.75}
RANDOM = {"x": 0.70, "y": 0.60}


def hand_runs() -> pd.DataFrame:
    """Per target, random scores RANDOM and an arm RANDOM + gain +- 0.01 (x up, y down: the target mean is the gain)."""
    rows = []
    for (pool, arm), gains in GAINS.items():
        for seed, gain in enumerate(gains):
            for target, shift in (("x", 0.01), ("y", -0.01)):
                common = {"pool": pool, "seed": seed, "target": target}
                rows.append({**common, "arm": arm, "budget": 0.2, "n_train": 4, "value": RANDOM[target] + gain + shift})
                if arm == "good":
                    rows.append({**common, "arm": "random", "budget": 0.2, "n_train": 4, "value": RANDOM[target]})
                    rows.append({**common, "arm": "full", "budget": 1.0, "n_train": 20, "value": FULL[target]})
    return pd.DataFrame(rows)


def row(summary: pd.DataFrame, pool: str, arm: str) -> pd.Series:
    return summary[(summary.pool == pool) & (summary.arm == arm)].iloc[0]


def test_summary_pairs_each_arm_with_random_over_seeds_by_hand():
    summary = summarise_pools(hand_runs())
    # pool a, good: differences (4, 6, 5) points -> mean 5, sd 1, half-width t(0.975, 2) / sqrt 3
    good = row(summary, "a", "good")
    half = T_975_DF2 / math.sqrt(3)
    assert good.vs_random_points == pytest.approx(5.0, abs=1e-9) and good.n_seeds == 3
    assert (good.ci95_low, good.ci95_high) == (pytest.approx(5 - half, abs=1e-9), pytest.approx(5 + half, abs=1e-9))
    assert good.beats_random
    # t = 5 / (1 / sqrt 3) with 2 degrees of freedom: two-sided p = 1 - t / sqrt(t^2 + 2)
    t = 5 * math.sqrt(3)
    assert good.vs_random_p_value == pytest.approx(1 - t / math.sqrt(t**2 + 2), abs=1e-9)
    # share of the full pool: targets x (0.71 + 0.05) / 0.80 and y (0.59 + 0.05) / 0.75, averaged
    assert good.share_mean == pytest.approx((0.76 / 0.80 + 0.64 / 0.75) / 2, abs=1e-9)
    # pool a, mixed: (5, -3, 1) -> mean 1, sd 4: the interval holds 0
    mixed = row(summary, "a", "mixed")
    assert mixed.vs_random_points == pytest.approx(1.0, abs=1e-9)
    assert mixed.ci95_low == pytest.approx(1 - 4 * half, abs=1e-9) and not mixed.beats_random
    # pool b has 4 seeds; over pools only seeds 0-2 count: good (3, 5, 4) -> mean 4, sd 1
    assert row(summary, "b", "good").n_seeds == 4 and row(summary, "b", "good").beats_random
    both = row(summary, ALL_POOLS, "good")
    assert both.n_seeds == 3 and both.vs_random_points == pytest.approx(4.0, abs=1e-9)
    assert both.ci95_low == pytest.approx(4 - half, abs=1e-9) and both.beats_random
    # b, mixed: no difference on any seed, an interval of width 0 at 0 does not beat random
    assert row(summary, "b", "mixed").ci95_low == pytest.approx(0.0, abs=1e-9)
    assert not row(summary, "b", "mixed").beats_random
    assert math.isnan(row(summary, "a", "random").ci95_low) and not row(summary, "a", "random").beats_random
    with pytest.raises(ValueError, match=r"'results' parameter of summarise_pools must hold runs with a 'pool'"):
        summarise_pools(hand_runs().drop(columns="pool"))


def test_summary_table_adds_the_tuning_pool_from_its_committed_numbers(monkeypatch):
    import store.benchmarks

    committed = pd.DataFrame(
        {
            "arm": ["full", "good", "good", "other", "random"],
            "budget": [1.0, 0.2, 0.5, 0.2, 0.2],
            "n_train": [2100.0, 420.0, 1050.0, 420.0, 420.0],
            "n_seeds": [3, 3, 3, 3, 3],
            "share_mean": [1.0, 0.98, 0.99, 0.9, 0.95],
            "share_std": [0.01] * 5,
            "vs_random_mean": [np.nan, 0.03, 0.01, -0.05, np.nan],
            "vs_random_std": [np.nan, 0.01, 0.01, 0.02, np.nan],
            "vs_random_p_value": [np.nan, 0.04, 0.3, 0.1, np.nan],
        }
    )
    monkeypatch.setattr(store.benchmarks, "committed_selection_quality", lambda: committed)
    table = bench.summary_table(hand_runs(), ("good", "mixed", "random"), (0.2,))
    tuning = table[~table.held_out]
    assert set(tuning.pool) == {"tuning pool"} and sorted(tuning.arm) == ["full", "good", "random"]
    good = tuning[tuning.arm == "good"].iloc[0]
    assert good.ci95_low == pytest.approx(3 - T_975_DF2 / math.sqrt(3), abs=1e-9) and good.beats_random
    assert set(table[table.held_out].pool) == {"a", "b", ALL_POOLS}


# ----------------------------------------------------------------------------------------------- the runs file


def test_runs_are_appended_once_and_keep_their_provenance(tmp_path):
    path = tmp_path / "runs.csv"
    first = hand_runs().assign(config_hash="c1", appended_at="first")
    bench.append_runs(path, first[first.seed == 0])
    table = bench.append_runs(path, first.assign(appended_at="second"))
    assert len(table) == len(first) and (table[table.seed == 0].appended_at == "first").all()
    assert (table[table.seed > 0].appended_at == "second").all()
    before = path.read_bytes()
    bench.append_runs(path, first)
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match=r"holds runs of pools \['a', 'b'\] under another config hash"):
        bench.append_runs(path, first.assign(config_hash="c2"))
    assert bench.seeds_in(table, per_seed=8) == {"a": [0, 1, 2], "b": [0, 1, 2, 3]}


@pytest.mark.slow
def test_quick_run_appends_per_call_and_a_second_run_measures_nothing(
    tmp_path, monkeypatch, capsys, prefect_harness, tiny_encoder
):
    """`python -m bench selection_generalisation --quick` in this process, with the tiny encoder (plumbing) and two
    arms: every pool's runs land in the runs file with provenance, and a second run trains nothing."""
    from store.selections import selection_results
    from store.workspace import Workspace

    committed = tmp_path / "committed"  # where the full grid writes: --quick must not (the campaign may be running)
    monkeypatch.setattr(bench, "RESULTS", committed)
    monkeypatch.setattr(bench, "WORKSPACE", tmp_path)
    monkeypatch.setattr(bench, "QUICK_ARMS", {"random": {"method": "random"}, "gio": {"method": "gio"}})
    result = bench.run(quick=True, model=tiny_encoder)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["complete"] is True
    assert result["seeds_in"] == {pool: [0] for pool in bench.POOLS}
    runs = pd.read_csv(tmp_path / "quick" / "results" / bench.RUNS)
    assert len(runs) == 3 * 3 and set(runs.pool) == set(bench.POOLS) and runs.held_out.all()
    assert set(runs.target) == {"uci_sentiment_yelp"} and (runs[runs.arm == "full"].n_train == 60).all()
    assert (runs.model == tiny_encoder).all() and runs.versions.str.contains('"torch"').all()
    summary = pd.read_csv(tmp_path / "quick" / "results" / f"{bench.SUMMARY}.csv")
    assert {ALL_POOLS, *bench.POOLS} <= set(summary.pool) and "beats_random" in summary
    ws = Workspace(tmp_path / "quick")
    stored = selection_results(ws)  # the newest pool's measurement
    before = (runs.to_csv(), stored)
    bench.run(quick=True, model=tiny_encoder)
    again = pd.read_csv(tmp_path / "quick" / "results" / bench.RUNS)
    assert again.to_csv() == before[0]
    pd.testing.assert_frame_equal(selection_results(ws), before[1])
    trained = ws.sql("SELECT count(*) AS n FROM selection_results WHERE metric = 'primary'").n.iloc[0]
    assert trained == 9  # nothing measured twice
    assert not committed.exists()


# ------------------------------------------------------------------------------------------------- the report


def test_report_shows_the_held_out_table_complete_partial_or_how_to_run(tmp_path, monkeypatch):
    import store.benchmarks

    assert "python -m bench selection_generalisation" in held_out_selection(tmp_path)
    runs = hand_runs().assign(config_hash="c1", held_out=True)
    runs.to_csv(tmp_path / bench.RUNS, index=False)
    (tmp_path / bench.GRID).write_text(json.dumps({"seeds": [0, 1, 2, 3, 4]}))
    partial = held_out_selection(tmp_path)
    assert "PARTIAL: a 3 of 5 seeds, b 4 of 5 seeds" in partial
    half = T_975_DF2 / math.sqrt(3)
    assert f'<td>a</td><td>20%</td><td class="num">+5.0 [{5 - half:.1f}, {5 + half:.1f}] ✓</td>' in partial
    assert f'<td class="num">+1.0 [{1 - 4 * half:.1f}, {1 + 4 * half:.1f}]</td>' in partial
    assert "<td>all held-out</td>" in partial
    monkeypatch.setattr(store.benchmarks, "committed_selection_quality", lambda: None)
    table = bench.summary_table(runs, ("good", "mixed"), (0.2,))
    result = {"summary": json.loads(table.to_json(orient="records")), "seeds_in": {"a": [0, 1, 2, 3, 4]}}
    (tmp_path / f"{bench.SUMMARY}.json").write_text(json.dumps({**result, "grid": {"seeds": [0, 1, 2, 3, 4]}}))
    complete = held_out_selection(tmp_path)
    assert "all 5 seeds" in complete and "PARTIAL" not in complete and "+5.0" in complete
