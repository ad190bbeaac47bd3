"""The transfer atlas benchmark: gains and the recipe comparison by hand, and a real quick run that appends each
finished run to its table and resumes without redoing any."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench import transfer_atlas


def synthetic_table() -> pd.DataFrame:
    """Both recipes on both recipe targets: baseline 0.50 per seed; source i gains i points (small) or 2i points
    (medium) on seed 0, and one point less on seed 1."""
    rows = []
    for recipe, scale in (("small", 1), ("medium", 2)):
        for target in transfer_atlas.RECIPE_TARGETS:
            for seed in (0, 1):
                rows.append(
                    {
                        "recipe": recipe,
                        "config_hash": recipe,
                        "target": target,
                        "source": "",
                        "seed": seed,
                        "value": 0.5,
                    }
                )
                for i, source in enumerate(transfer_atlas.RECIPE_SOURCES):
                    gain = scale * i - seed
                    rows.append(
                        {
                            "recipe": recipe,
                            "config_hash": recipe,
                            "target": target,
                            "source": source,
                            "seed": seed,
                            "value": 0.5 + gain / 100,
                        }
                    )
    return pd.DataFrame(rows)


def test_gains_and_recipe_comparison_by_hand():
    table = synthetic_table()
    gains = transfer_atlas.gains(table)
    assert len(gains) == 2 * 2 * 2 * len(transfer_atlas.RECIPE_SOURCES)
    medium = gains[(gains.recipe == "medium") & (gains.seed == 1) & (gains.target == "mr")]
    assert np.allclose(sorted(medium.gain), [2 * i - 1 for i in range(6)])
    comparison = transfer_atlas.compare_recipes(table)
    assert [e["target"] for e in comparison["per_target"]] == sorted(transfer_atlas.RECIPE_TARGETS)
    entry = comparison["per_target"][0]
    # mean gains: small i - 0.5, medium 2i - 0.5 over i = 0..5; per-source seed std = 1/sqrt(2) for both
    assert entry["small"]["mean_gain"] == pytest.approx(2.0)
    assert entry["medium"]["mean_gain"] == pytest.approx(4.5)
    assert entry["small"]["source_spread"] == pytest.approx(np.std(range(6), ddof=1))
    assert entry["medium"]["source_spread"] == pytest.approx(2 * np.std(range(6), ddof=1))
    assert entry["medium"]["seed_noise"] == pytest.approx(np.sqrt(0.5))
    assert entry["small"]["seed_spearman"] == pytest.approx(1.0) and entry["recipes_spearman"] == pytest.approx(1.0)
    assert entry["medium_minus_small"] == pytest.approx(np.mean(range(6)))
    scrambled = table.copy()
    swap = (scrambled.recipe == "medium") & (scrambled.seed == 1) & (scrambled.source != "")
    scrambled.loc[swap, "value"] = scrambled.loc[swap, "value"].to_numpy()[::-1]
    entry = transfer_atlas.compare_recipes(scrambled)["per_target"][0]
    assert entry["medium"]["seed_spearman"] == pytest.approx(stats.spearmanr(range(6), range(6)[::-1]).statistic)


@pytest.mark.slow
def test_quick_atlas_appends_every_run_and_resumes(copy_quick_atlas, capsys):
    _, path, first = copy_quick_atlas  # the session's quick atlas, measured once (`conftest.quick_atlas`)
    table = transfer_atlas.read_atlas(path)
    assert first["rows_added"] == 6 and first["runs_missing"] == 0
    assert sorted(set(table.source)) == ["", "tweeteval_stance_atheism", "uci_sentiment_amazon"]  # with the baseline
    assert sorted(table.seed.unique()) == [0, 1]
    assert table.config_hash.nunique() == 1 and table.value.between(0, 1).all()
    assert {"versions", "source_recipe", "target_recipe", "device", "weights_dtype", "seconds"} <= set(table.columns)
    assert json.loads(table.versions[0])["torch"] and json.loads(table.source_recipe[0])["length_buckets"] is True
    assert pd.read_csv(path.with_suffix(".csv")).shape[0] == 6
    transfer_atlas.run(quick=True, path=path)  # everything is stored: nothing is measured again
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["rows_added"] == 0 and second["rows"] == 6
    pd.testing.assert_frame_equal(transfer_atlas.read_atlas(path), table)


@pytest.mark.slow
def test_device_kit_reproduces_the_flow_and_merges_back(tmp_path, copy_quick_atlas, monkeypatch):
    """`bench.atlas_device` on CPU with float32 weights: the same rows, recipes and seeds as `measure_transfer`, so
    the same values (one model per run; the batched path's dropout masks differ, so its values are only plausible);
    merged back, the rows it measured are restored, with where they ran. ``compare`` times both paths on them."""
    from bench import atlas_device

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kit's shared checkpoints
    _, path, _ = copy_quick_atlas
    flow = transfer_atlas.read_atlas(path)
    target, source = transfer_atlas.QUICK["targets"][0], transfer_atlas.QUICK["sources"][1]
    runs = [("quick", target, "", 1), ("quick", target, source, 1)]
    kit = atlas_device.prepare(tmp_path / "kit", weights="float32", path=path, runs=runs, quick=True)
    assert atlas_device.measure(kit, tmp_path / "out", 0, 1, deadline=3600, device="cpu") == 2
    lines = (tmp_path / "out" / "atlas-shard-0.jsonl").read_text().splitlines()
    device = pd.DataFrame([json.loads(line) for line in lines])
    merged = device.merge(flow, on=transfer_atlas.KEY, suffixes=("", "_flow"))
    assert len(merged) == 2 and (merged.weights_dtype == "float32 (carried), float32 (trained)").all()
    np.testing.assert_allclose(merged.value, merged.value_flow, rtol=0, atol=1e-9)
    for column in ("source_recipe", "target_recipe", "max_test", "metrics"):
        assert [json.loads(str(v)).keys() if column == "metrics" else v for v in merged[column]] == [
            json.loads(str(v)).keys() if column == "metrics" else v for v in merged[f"{column}_flow"]
        ]
    assert set(device.columns) == set(flow.columns)
    result = atlas_device.compare(kit, tmp_path / "compare", "cpu", processes=1, batch=2, limit=2)
    assert result["single"]["rows"] == result["batched"]["rows"] == 2 and result["ratio"] > 0
    lines = (tmp_path / "compare" / "compare-batch2" / "atlas-shard-0.jsonl").read_text().splitlines()
    batched = pd.DataFrame([json.loads(line) for line in lines]).merge(flow[transfer_atlas.KEY])
    assert len(batched) == 2 and batched.value.between(0, 1).all() and batched.host.str.contains("up to 2 runs").all()
    kept = flow[~((flow.seed == 1) & flow.source.isin(["", source]))]
    kept.to_parquet(path, index=False)
    assert atlas_device.merge(tmp_path / "out", path) == 2
    restored = transfer_atlas.read_atlas(path)
    assert restored[transfer_atlas.KEY].equals(flow[transfer_atlas.KEY])
    np.testing.assert_allclose(restored.value, flow.value, rtol=0, atol=1e-9)
    assert restored.host.str.contains("processes share the device").sum() == 2


def test_missing_runs_count_only_the_atlas_recipe(tmp_path):
    """A run measured under another recipe (the recipe stage's ``small``) does not fill the atlas grid."""
    from bench import atlas_device

    path = tmp_path / "atlas.parquet"
    row = {"config_hash": "c", "target": "rte", "source": "", "seed": 0, "value": 0.5}
    transfer_atlas.append_rows(path, [{**row, "recipe": "small"}])
    medium = transfer_atlas.ATLAS_RECIPE
    assert (medium, "rte", "", 0) in atlas_device.missing_runs(path, "grid")
    transfer_atlas.append_rows(path, [{**row, "recipe": medium}])
    missing = atlas_device.missing_runs(path, "grid")
    assert (medium, "rte", "", 0) not in missing and (medium, "rte", "", 1) in missing
    assert missing[0][3] == 0 and missing[-1][3] == transfer_atlas.SEEDS[-1]  # seed by seed
    with pytest.raises(ValueError, match="'runs' parameter of prepare"):
        atlas_device.prepare(tmp_path / "kit", quick=True)


def pilot_verdicts(folder, monkeypatch) -> None:
    """Verdicts in ``folder`` (made the results folder): sst2 passed, sst5 failed, cola passed under the 1,000-example
    recipe with stronger evidence that its sources differ than sst2's, mr is a grid target."""
    pd.DataFrame(
        {
            "target": ["sst2", "sst5", "cola", "mr"],
            "recipe": ["medium", "medium", "medium+t1000", "medium"],
            "stage": ["pilot", "pilot", "pilot", "grid"],
            "passes": [True, False, True, True],
            "anova_p": [0.2, 0.01, 0.1, 0.0],
        }
    ).to_csv(folder / "atlas_targets.csv", index=False)
    monkeypatch.setattr(transfer_atlas, "RESULTS", folder)


def test_the_v2_grid_measures_the_pilots_that_passed(tmp_path, monkeypatch):
    """Only a pilot that passed (its baseline learns on every seed) gets the grid (every atlas source but itself x
    `V2_SEEDS`), under the recipe it was piloted with, the strongest pilot evidence that sources differ first; a
    failed pilot and a grid row get none."""
    pilot_verdicts(tmp_path, monkeypatch)
    runs = transfer_atlas.plan(False, "grid2")
    assert list(dict.fromkeys((r[0], r[2]) for r in runs)) == [("medium+t1000", "cola"), ("medium", "sst2")]
    sst2 = [r for r in runs if r[2] == "sst2"]
    assert len(sst2) == (len(transfer_atlas.SOURCES) - 1) * len(transfer_atlas.V2_SEEDS)  # never its own source
    assert "sst2" not in {r[3] for r in sst2} and {r[4] for r in sst2} == set(transfer_atlas.V2_SEEDS)
    cola = [r for r in runs if r[2] == "cola"]
    assert len(cola) == (len(transfer_atlas.SOURCES) - 1) * 3 and cola[0][1] == transfer_atlas.SOURCE_RECIPES["medium"]


def test_device_kit_lists_the_v2_grid_in_priority_order(tmp_path, monkeypatch):
    """The v2 grid of the device kit: passed pilots first, then the candidates not screened yet (a failed pilot gets
    none), seed by seed within each, every (recipe, target, seed) with its baseline first and every atlas source but
    the target, under the recipe it was piloted with; runs already in the atlas under that recipe are left out."""
    from bench import atlas_device
    from bench.common import RESERVED_TARGETS

    pilot_verdicts(tmp_path, monkeypatch)
    path = tmp_path / "atlas.parquet"
    done = {"config_hash": "c", "target": "sst2", "seed": 0, "value": 0.8}
    transfer_atlas.append_rows(path, [{**done, "recipe": "medium", "source": s} for s in ("", "ag_news")])
    transfer_atlas.append_rows(path, [{**done, "recipe": "medium+t1000", "target": "subj", "source": "trec"}])
    runs = atlas_device.missing_runs(path, "grid2")
    assert ("medium", "sst2", "", 0) not in runs and ("medium", "sst2", "ag_news", 0) not in runs
    assert ("medium", "subj", "trec", 0) in runs  # a run under another recipe does not count
    screens = list(dict.fromkeys((r[0], r[1]) for r in runs))
    piloted = {("medium", "sst2"), ("medium", "sst5"), ("medium+t1000", "cola")}
    unscreened = [(n, t) for n, _, t, _, _ in transfer_atlas.plan(False, "pilot") if (n, t) not in piloted]
    assert screens[:2] == [("medium+t1000", "cola"), ("medium", "sst2")]
    assert screens[2:] == list(dict.fromkeys(unscreened)) and ("medium", "sst5") not in screens
    assert ("medium+t1000", "wic") in screens and not {t for _, t in screens} & RESERVED_TARGETS
    passed = len([r for r in runs if (r[0], r[1]) in screens[:2]])
    # sst2 and cola are atlas sources: a baseline and 16 sources each, per seed; 2 sst2 runs are in the atlas
    assert passed == 2 * len(transfer_atlas.SOURCES) * len(transfer_atlas.V2_SEEDS) - 2
    assert [r[3] for r in runs[:passed]] == sorted(r[3] for r in runs[:passed])  # seed by seed
    assert [r[3] for r in runs[passed:]] == sorted(r[3] for r in runs[passed:])
    first = [r for r in runs if r[:2] == ("medium+t1000", "cola") and r[3] == 0]
    assert first[0][2] == "" and len(first) == len(transfer_atlas.SOURCES)  # baseline, every source but cola
    assert "cola" not in {r[2] for r in first}
    assert atlas_device.missing_runs(path)[: len(runs)] != runs  # "all": the v1 grid first
    assert atlas_device.missing_runs(path)[-len(runs) :] == runs
    with pytest.raises(ValueError, match="'stage' parameter of missing_runs"):
        atlas_device.missing_runs(path, "pilot")
