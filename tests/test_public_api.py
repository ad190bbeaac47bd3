"""The public API, used the way the README uses it: only ``import transferscope as ts``, on real tasks."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import transferscope as ts

TARGET, POOL = "uci_sentiment_imdb", "uci_sentiment_amazon"


def test_every_public_name_is_documented_and_importing_it_is_light():
    for name in ts.__all__:
        item = getattr(ts, name)
        assert inspect.getdoc(item), name
        if inspect.isfunction(item):
            assert "return" in inspect.get_annotations(item, eval_str=False), name
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, transferscope; print(sorted({'torch', 'prefect'} & set(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"  # flows, torch and Prefect load on first call


@pytest.mark.slow
def test_the_readme_workflow_through_the_facade(tmp_path, shared_tasks, prefect_harness):
    ws = ts.Workspace(tmp_path / "ws")
    for name in (TARGET, POOL, "tweeteval_stance_atheism"):
        assert ts.add_task(ws, shared_tasks / name).name == name
    assert {r["task"] for r in ts.embed(ws, device="cpu")} == {
        TARGET,
        POOL,
        "tweeteval_stance_atheism",
    }
    ranking = ts.rank_sources(ws, TARGET, methods=("centroid-cosine",), device="cpu")
    assert sorted(ranking.source) == sorted([POOL, "tweeteval_stance_atheism"])
    assert ts.Results(ws).recommend_sources(TARGET, method="centroid-cosine").source.tolist() == ranking.source.tolist()
    advice = ts.advise_sources(ws, TARGET, inputs=("centroid-cosine",), atlas="none", device="cpu")
    assert advice.attrs["basis"] == "fused" and len(advice) == 2
    first_ids, first = ts.select_subset(ws, POOL, TARGET, method="random", budget=5, seed=0)
    ts.select_subset(ws, POOL, TARGET, method="random", budget=5, seed=1)
    again_ids, again = ts.select_subset(ws, POOL, TARGET, method="random", budget=5, seed=0)
    assert again_ids == first_ids and again.attrs["subset_id"] == first.attrs["subset_id"]  # read back by id
    assert (tmp_path / "report" / "index.html") == ts.build_report(ws, tmp_path / "report")
