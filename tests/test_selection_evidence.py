"""What `select`'s plan says about a method against random (issue #31 part 3): this pool's own measurement first,
else the committed held-out pools, else that nothing is measured; hand-worked paired t-intervals over seeds."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from scipy import stats

from store.selection_evidence import selection_evidence
from store.selections import put_selection_result
from store.workspace import Workspace

T_975_2 = stats.t.ppf(0.975, 2)  # three seeds
GIO, ICONS, STRATIFIED = {"method": "gio"}, {"method": "icons"}, {"method": "icons", "params": {"stratify": True}}
RANDOM = [0.70, 0.72, 0.74]


def committed_folder(folder):
    """Runs of a partial benchmark: pools p1 and p2, one target, seeds 0-2 of 5 planned. GIO minus random per seed:
    p1 +2, +3, +4 points; p2 +1, -1, 0; ICONS -5 points everywhere."""
    folder.mkdir()
    rows = []
    for pool, gio in (("p1", (0.02, 0.03, 0.04)), ("p2", (0.01, -0.01, 0.0))):
        for seed in range(3):
            arms = {("full", 1.0): 0.8, ("random", 0.2): RANDOM[seed], ("gio", 0.2): RANDOM[seed] + gio[seed]}
            arms[("icons", 0.2)] = RANDOM[seed] - 0.05
            for (arm, budget), value in arms.items():
                rows.append(
                    {"pool": pool, "held_out": True, "arm": arm, "budget": budget, "seed": seed, "target": "t",
                     "n_train": int(2000 * budget), "value": value, "config_hash": pool}
                )  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "selection_generalisation_runs.csv", index=False)
    (folder / "selection_generalisation_runs.json").write_text(json.dumps({"seeds": [0, 1, 2, 3, 4]}))
    return folder


def test_held_out_pools_answer_when_this_pool_was_not_measured(tmp_path):
    folder = committed_folder(tmp_path / "results")
    ws = Workspace(tmp_path / "ws")
    gio = selection_evidence(ws, "mine", ("gio",), 0.25, GIO, folder=folder)
    # over both pools, targets averaged per seed: +1.5, +1.0, +2.0 points; sd 0.5
    half = T_975_2 * 0.5 / 3**0.5
    assert gio.basis == "held-out pools" and gio.budget == 0.2 and gio.seeds == 3 and gio.partial
    assert gio.points == pytest.approx(1.5) and gio.low == pytest.approx(1.5 - half) and gio.low > 0
    assert gio.beats_random
    assert (gio.pools_beaten, gio.pools) == (1, 2)  # p1's interval (+3 ± 2.48) clears 0, p2's (0 ± 2.48) does not
    assert "beat random on 1 of 2 pools" in gio.message and "partial benchmark" in gio.message
    assert "It beat random there." in gio.message
    icons = selection_evidence(ws, "mine", ("icons",), None, ICONS, folder=folder)
    assert icons.points == pytest.approx(-5.0) and not icons.beats_random and icons.pools_beaten == 0
    assert "random selection is as good there, and cheap (--method random)" in icons.message


def test_this_pools_measurement_comes_first_at_the_nearest_budget(tmp_path):
    folder = committed_folder(tmp_path / "results")
    ws = Workspace(tmp_path / "ws")
    gains = {0.1: (-0.01, -0.02, 0.0), 0.2: (0.05, 0.06, 0.07)}  # icons-stratified minus random, per seed
    for seed in range(3):
        arms = {("full", 1.0): 0.8}
        for budget, gain in gains.items():
            arms[("random", budget)] = RANDOM[seed]
            arms[("icons-stratified", budget)] = RANDOM[seed] + gain[seed]
        for (arm, budget), value in arms.items():
            put_selection_result(
                ws, "c", pool="mine", arm=arm, method="random" if arm in ("full", "random") else "icons",
                budget=budget, seed=seed, subset_id=f"{arm}-{budget}-{seed}", n_train=int(1000 * budget),
                train_seconds=1.0, metrics={"t": {"primary": value}}, run_id="r",
            )  # fmt: skip
    low = selection_evidence(ws, "mine", ("icons-stratified",), 0.12, STRATIFIED, folder=folder)
    half = T_975_2 * 1.0 / 3**0.5
    assert low.basis == "this pool" and low.budget == 0.1 and low.pools is None and not low.partial
    assert low.points == pytest.approx(-1.0) and low.high == pytest.approx(-1.0 + half) and not low.beats_random
    assert "on this pool (measured in this workspace)" in low.message
    high = selection_evidence(ws, "mine", ("icons-stratified",), 0.3, STRATIFIED, folder=folder)
    assert high.budget == 0.2 and high.points == pytest.approx(6.0) and high.beats_random
    other = selection_evidence(ws, "other", ("icons-stratified",), 0.2, STRATIFIED, folder=folder)
    assert other.basis == "none"  # another pool; the benchmark never measured stratified ICONS in this folder


def test_nothing_measured_says_so_and_how_to_check(tmp_path):
    ws = Workspace(tmp_path / "ws")
    vog = selection_evidence(
        ws, "pool_task", ("vog-prune_easiest", "vog"), 0.2, {"method": "vog", "params": {}}, tmp_path
    )
    assert vog.basis == "none" and not vog.beats_random and vog.points is None
    assert "transferscope measure-selection pool_task --target T --method vog --method random" in vog.message
    hardest = {"method": "vog", "params": {"strategy": "keep_hardest"}}
    python = selection_evidence(ws, "pool_task", ("vog-keep_hardest",), 0.2, hardest, tmp_path)
    assert "ts.measure_selection(ws, 'pool_task', [T], arms={'vog-keep_hardest': {'method': 'vog'" in python.message


def test_seeds_without_a_random_run_are_not_evidence(tmp_path):
    """The interval counts only the seeds both arms have; an arm measured without random is skipped for the
    benchmark's evidence."""
    ws = Workspace(tmp_path / "ws")
    for seed, gain in enumerate((0.05, 0.02, 0.06, 0.30, 0.30)):  # random only on seeds 0-2
        arms = {("full", 1.0): 0.8, ("gio", 0.2): 0.7 + gain, ("icons", 0.2): 0.7}
        if seed < 3:
            arms[("random", 0.2)] = 0.7
        for (arm, budget), value in arms.items():
            put_selection_result(
                ws, "c", pool="mine", arm=arm, method="random" if arm == "full" else arm, budget=budget, seed=seed,
                subset_id=f"{arm}-{seed}", n_train=10, train_seconds=1.0, metrics={"t": {"primary": value}},
                run_id="r",
            )  # fmt: skip
    gio = selection_evidence(ws, "mine", ("gio",), 0.2, GIO, tmp_path)
    sd = pd.Series([5.0, 2.0, 6.0]).std()
    assert gio.seeds == 3 and gio.points == pytest.approx(13 / 3)
    assert gio.low == pytest.approx(13 / 3 - T_975_2 * sd / 3**0.5) and gio.low < 0 and not gio.beats_random
    ws2 = Workspace(tmp_path / "ws2")  # a measurement of the pool without random: the benchmark answers instead
    for seed in range(2):
        for arm, budget in (("full", 1.0), ("gio", 0.2)):
            put_selection_result(
                ws2, "c", pool="mine", arm=arm, method="random" if arm == "full" else arm, budget=budget, seed=seed,
                subset_id=f"{arm}-{seed}", n_train=10, train_seconds=1.0, metrics={"t": {"primary": 0.7}}, run_id="r",
            )  # fmt: skip
    folder = committed_folder(tmp_path / "results")
    assert selection_evidence(ws2, "mine", ("gio",), 0.2, GIO, folder).basis == "held-out pools"


def test_arm_names_follow_the_benchmarks_and_the_cli():
    from flows.select import arm_names

    assert arm_names("gio", {}) == ("gio",)
    assert arm_names("icons", {}) == ("icons",) == arm_names("icons", {"stratify": False})
    assert arm_names("icons", {"stratify": True}) == ("icons-stratified",)
    assert arm_names("vog", {}) == ("vog-prune_easiest", "vog")
    assert arm_names("vog", {"strategy": "keep_hardest"}) == ("vog-keep_hardest",)
    assert arm_names("vog", {"n_checkpoints": 3}) == ("vog-prune_easiest (custom parameters)",)  # matches nothing
    assert arm_names("icons", {"stratify": True, "top_fraction": 0.1}) == ("icons-stratified (custom parameters)",)
    assert arm_names("gio", {"k": 5}) == ("gio (custom parameters)",)


def test_the_plan_reads_the_evidence_when_asked(tmp_path, task_workspace, tiny_encoder):
    from flows.select import SelectionRequest, plan_selection

    ws = task_workspace(tmp_path / "ws", "uci_sentiment_amazon", "uci_sentiment_imdb")
    options = {"budget": 0.2, "model": tiny_encoder, "device": "cpu", "workspace": str(ws.root)}
    random = plan_selection(SelectionRequest("uci_sentiment_amazon", "uci_sentiment_imdb", "random", **options))
    assert random.evidence() is None
    gio = plan_selection(SelectionRequest("uci_sentiment_amazon", "uci_sentiment_imdb", "gio", **options)).evidence()
    assert gio is not None and gio.arm == "gio" and gio.basis != "this pool"
