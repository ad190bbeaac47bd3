"""The source advisor end to end on real tasks: the fused fallback on a fresh workspace, advice learned from the
shipped atlas (gains, intervals, contributions, stored and served), the "don't transfer" call through the CLI,
verification by fine-tuning (`--verify`), and its dry-run cost."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from store.advice import ATLAS_ENV, SHIPPED_ATLAS, shipped_atlas
from store.results import Results
from store.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]  # the flows report to its server
TARGET = "uci_sentiment_imdb"  # not an atlas target, not reserved
SOURCES = ["uci_sentiment_amazon", "tweeteval_stance_atheism", "rte"]  # rte is an atlas source: it has a prior
INPUTS = ("centroid-cosine", "mmd")


@pytest.fixture(scope="module")
def advisor_workspace(tmp_path_factory, task_workspace, prefect_harness):
    """Small real tasks (80 training rows): the advice is learned from the atlas, whatever the tasks' size."""
    return task_workspace(tmp_path_factory.mktemp("advisor") / "ws", TARGET, *SOURCES)


def test_a_fresh_workspace_gets_fused_ranks_and_is_told_so(advisor_workspace):
    from flows import advise_sources

    advice = advise_sources(
        target=TARGET, sources=SOURCES, inputs=INPUTS, atlas="none", device="cpu",
        workspace=str(advisor_workspace.root),
    )  # fmt: skip
    assert advice.attrs["basis"] == "fused" and not advice.attrs["dont_transfer"]
    assert (
        "no model, only 0 measured targets" in advice.attrs["message"]
        and "reciprocal-rank fusion" in advice.attrs["message"]
    )
    assert sorted(advice.source) == sorted(SOURCES) and advice["rank"].tolist() == [1, 2, 3]
    served = Results(advisor_workspace).recommend_sources(TARGET, method="advisor")
    assert served.source.tolist() == advice.source.tolist() and served.attrs["basis"] == "fused"
    assert served.expected_gain.isna().all()


def test_advice_learned_from_the_shipped_atlas(advisor_workspace):
    from flows import advise_sources

    atlas = shipped_atlas()
    assert atlas is not None, "the atlas files ship in reports/results (python -m bench ranking_quality writes them)"
    advice = advise_sources(
        target=TARGET, sources=SOURCES, inputs=INPUTS, atlas=str(SHIPPED_ATLAS), device="cpu",
        workspace=str(advisor_workspace.root),
    )  # fmt: skip
    assert advice.attrs["basis"] == "learned" and advice.attrs["learner"] in ("ridge", "boosted-trees")
    assert (
        f"learned from {len(atlas.origin)} measured targets ({len(atlas.origin)} from the atlas)"
        in (advice.attrs["message"])
    )
    assert advice.expected_gain.is_monotonic_decreasing and np.isfinite(advice.expected_gain).all()
    assert ((advice.lower < advice.expected_gain) & (advice.expected_gain < advice.upper)).all()
    assert advice.attrs["level"] == pytest.approx(0.8) and np.isfinite(advice.upper).all()  # 12 targets back 80%
    assert "80% intervals (CV+ over targets)" in advice.attrs["message"]
    assert all(0 < len(f) <= 3 for f in advice.top_features)
    assert advice.attrs["dont_transfer"] == bool(advice.upper.max() < 0)
    served = Results(advisor_workspace).recommend_sources(TARGET, k=2, method="advisor")
    assert served.source.tolist() == advice.source[:2].tolist()
    assert served.attrs["training_targets"] == len(atlas.origin)
    stored = advisor_workspace.sql(
        "SELECT p.source, p.score, r.config_hash = p.config_hash AS same FROM pair_scores p JOIN runs r USING "
        "(run_id) WHERE p.method = 'advisor' AND r.flow = 'advise_sources' AND r.status = 'completed' "
        "ORDER BY r.started_at DESC, p.rank LIMIT 3"
    )
    assert stored.same.all() and stored.score.to_numpy() == pytest.approx(advice.expected_gain.to_numpy())


def run_cli(ws: Workspace, *args: str) -> Result:
    """The ``transferscope`` command in process (its flows report to the session's server; the encoder it loads
    stays loaded)."""
    from flows.cli import app

    return CliRunner().invoke(app, ["--workspace", str(ws.root), "--device", "cpu", *args])


def test_dont_transfer_and_verification_end_to_end(advisor_workspace, tmp_path, tiny_encoder, tiny_atlas, monkeypatch):
    from flows import advise_sources

    # the tiny encoder verifies: what is asserted is where the runs go, not what a fine-tune learns
    hurts = tiny_atlas(tmp_path / "atlas", tiny_encoder, shift=-0.3)
    sources = ",".join(SOURCES)
    monkeypatch.setenv(ATLAS_ENV, str(hurts))
    plan = run_cli(
        advisor_workspace, "rank", TARGET, "--method", "advisor", "--sources", sources, "--verify", "2", "--dry-run"
    )
    assert plan.exit_code == 0, plan.output
    median = shipped_atlas(hurts).seconds_per_run
    assert f"verification fine-tunes the top 2 sources and the no-transfer baseline on {TARGET} (3 runs" in plan.output
    assert f"median of {median:.0f} s" in plan.output
    runs_before = len(advisor_workspace.sql("SELECT * FROM runs"))
    said = run_cli(advisor_workspace, "rank", TARGET, "--method", "advisor,centroid-cosine,mmd", "--sources", sources)
    assert said.exit_code == 0, said.output
    assert len(advisor_workspace.sql("SELECT * FROM runs")) > runs_before  # the dry run stored nothing; this did
    assert "expected gain over no transfer, points" in said.output
    assert f"Don't transfer: no source is expected to help {TARGET}" in said.output
    assert Results(advisor_workspace).recommend_sources(TARGET, method="advisor").attrs["dont_transfer"]

    verified = advise_sources(
        target=TARGET, sources=SOURCES, inputs=INPUTS, verify=1, atlas=str(hurts), model=tiny_encoder, device="cpu",
        workspace=str(advisor_workspace.root),
    )  # fmt: skip
    top = Results(advisor_workspace).recommend_sources(TARGET, method="advisor")  # the ranking before verification
    assert verified.source.iloc[0] == top.source.iloc[0]  # one verified source: it stays first
    assert np.isfinite(verified.measured_gain.iloc[0]) and verified.measured_gain.iloc[1:].isna().all()
    measured = advisor_workspace.sql(
        "SELECT source, seed FROM transfer_results WHERE target = ? AND metric = 'primary' ORDER BY source", [TARGET]
    )
    assert measured.source.tolist() == ["", top.source.iloc[0]] and measured.seed.tolist() == [0, 0]
    # verified under the advisor's own recipe (the atlas's max_test included), so the runs can join its knowledge
    content = advisor_workspace.read("list_tasks").set_index("name").content_hash[TARGET]
    configs = advisor_workspace.sql("SELECT DISTINCT config_hash FROM transfer_results WHERE target = ?", [TARGET])
    assert configs.config_hash.tolist() == [shipped_atlas(hurts).recipe.config(content)]
    served = Results(advisor_workspace).recommend_sources(TARGET, method="advisor+verify")
    assert served.measured_gain.iloc[0] == pytest.approx(verified.measured_gain.iloc[0])
    assert served.attrs["dont_transfer"] == (verified.measured_gain.iloc[0] <= 0)
