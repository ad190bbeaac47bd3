"""``recommend`` end to end on real tasks: screen, shortlist, sequential measurement against the no-transfer
baseline, the stored answer (flow, API, store, report) and its plan; the "don't transfer" answer; the priors it
builds from the advisor and the atlas (`transfer.advisor.priors`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from store.workspace import Workspace
from transfer.advisor.priors import pooled_noise, prior_sd, target_noise

TARGET = "uci_sentiment_imdb"  # not an atlas target, not reserved
SOURCES = ["uci_sentiment_amazon", "tweeteval_stance_atheism", "rte"]


@pytest.fixture(scope="module")
def recommend_workspace(tmp_path_factory, task_workspace, prefect_harness):
    return task_workspace(tmp_path_factory.mktemp("recommend") / "ws", TARGET, *SOURCES)  # small real tasks


def request(ws: Workspace, atlas: str, model: str, **options):
    """A recommendation on the tiny encoder (MiniLM's shape shrunk, seeded weights): this checks the plumbing."""
    from flows.recommend import RecommendRequest

    return RecommendRequest(
        TARGET, tuple(SOURCES), screen_inputs=("centroid-cosine",), inputs=("centroid-cosine", "direct-logme"),
        shortlist=2, atlas=atlas, model=model, device="cpu", workspace=str(ws.root), **options,
    )  # fmt: skip


def test_recommend_measures_stores_and_serves_its_answer(recommend_workspace, tmp_path, tiny_encoder, tiny_atlas):
    import transferscope as ts
    from flows.recommend import plan_recommend, recommend_source

    ws = recommend_workspace
    atlas = str(tiny_atlas(tmp_path / "atlas", tiny_encoder))
    plan = plan_recommend(request(ws, atlas, tiny_encoder, runs=3, confidence=0.99))
    assert plan.shortlist == 2 and plan.runs == 3 and list(plan.stages().stage) == ["screen", "shortlist", "measure"]
    assert plan.target_run_s > 0 and plan.estimated_s >= plan.measure_s > 0
    answer = recommend_source(plan)
    a = answer.attrs
    assert set(answer.source) == {"", *a["shortlist"]} and len(a["shortlist"]) == 2
    assert a["runs"] == a["new_runs"] == answer.pulls.sum() == 3 and a["stopped"] == "budget"
    assert answer.pulls[answer.source == ""].item() >= 1  # every gain is measured against the baseline
    assert answer.chosen.sum() == 1 and answer.source[0] == a["answer"] and answer.chosen[0]
    assert answer.p_best.sum() == pytest.approx(1.0) and a["lower"] <= answer.gain[0] <= a["upper"]
    assert a["answer"] in a["message"] or "Don't transfer" in a["message"]
    # every pull is an ordinary measured-transfer run under the advisor's (the atlas's) recipe
    runs = ws.sql("SELECT source, seed FROM transfer_results WHERE target = ? AND metric = 'primary'", [TARGET])
    assert len(runs) == 3
    pulled = answer.set_index("source").pulls
    assert runs.groupby("source").size().reindex(pulled.index, fill_value=0).tolist() == pulled.tolist()
    # stored and served as it was returned
    served = ts.Results(ws).recommendation(TARGET)
    assert served.source.tolist() == answer.source.tolist() and served.attrs["answer"] == a["answer"]
    np.testing.assert_allclose(served.gain, answer.gain)
    # asked again, it reads the stored pulls instead of fine-tuning them again (same decisions, same seeds)
    again = recommend_source(plan_recommend(request(ws, atlas, tiny_encoder, runs=3, confidence=0.99)))
    assert again.attrs["new_runs"] == 0 and again.attrs["answer"] == a["answer"]
    page = (ts.build_report(ws, out_dir=tmp_path / "report", target=TARGET).path).read_text()
    assert f'id="recommend-{TARGET}"' in page and "(no transfer)" in page


def test_dont_transfer_when_every_source_is_expected_to_hurt(recommend_workspace, tmp_path, tiny_encoder, tiny_atlas):
    """With an atlas where transfer hurts by 30 points and no runs to spend, the prior alone answers: no transfer."""
    from flows.recommend import recommend_source

    atlas = str(tiny_atlas(tmp_path / "hurts", tiny_encoder, shift=-0.3))
    answer = recommend_source(request(recommend_workspace, atlas, tiny_encoder, runs=0))
    assert answer.attrs["answer"] == "" and answer.attrs["dont_transfer"] and answer.attrs["runs"] == 0
    assert answer.attrs["message"].startswith("Don't transfer")
    assert (answer.gain[answer.source != ""] < -10).all() and answer.p_best[0] == answer.p_best.max()
    # a time budget that pays for no fine-tune plans no pull (a run budget is then not needed)
    from flows.recommend import plan_recommend

    tight = plan_recommend(request(recommend_workspace, atlas, tiny_encoder, seconds=0.01))
    assert tight.request.runs is None and tight.runs == 0 and tight.measure_s == 0


def test_cli_dry_run_prints_every_stage_and_runs_nothing(recommend_workspace):
    from flows.cli import app

    root = str(recommend_workspace.root)
    before = recommend_workspace.sql("SELECT count(*) AS n FROM runs").n.item()
    out = CliRunner().invoke(app, ["--workspace", root, "recommend", TARGET, "--budget", "20m", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert all(stage in out.output for stage in ("screen", "shortlist", "measure")) and "rate:" in out.output
    assert recommend_workspace.sql("SELECT count(*) AS n FROM runs").n.item() == before
    bad = CliRunner().invoke(app, ["--workspace", root, "recommend", TARGET, "--budget", "soon", "--dry-run"])
    assert bad.exit_code == 2 and "15m" in bad.output


def test_bad_requests_name_the_parameter():
    from flows.recommend import RecommendRequest
    from store.errors import InputError

    for options, name in (({"runs": -1}, "runs"), ({"confidence": 1.0}, "confidence"), ({"shortlist": 0}, "shortlist"),
                          ({"seconds": 0}, "seconds")):  # fmt: skip
        with pytest.raises(InputError, match=f"'{name}' parameter of recommend_source"):
            RecommendRequest(TARGET, **options)
    assert RecommendRequest(TARGET).runs == 6 and RecommendRequest(TARGET, seconds=60).runs is None


def test_priors_from_intervals_and_pooled_seed_noise():
    # an 80% interval of half-width z_0.9 = 1.2816 is one standard deviation; unbounded or missing: the fallback
    sd = prior_sd(pd.Series([-1.2816, 0.0, -np.inf]), pd.Series([1.2816, np.nan, 1.0]), 0.8, 4.0)
    np.testing.assert_allclose(sd, [1.0, 4.0, 4.0], atol=1e-4)
    # seed noise: per target the root mean over arms of the variance over seeds (points), pooled over its kind
    runs = pd.DataFrame(
        {
            "target": ["a"] * 4 + ["b"] * 4 + ["c"] * 2,
            "source": ["", "", "s", "s"] * 2 + ["", ""],
            "seed": [0, 1] * 5,
            "value": [0.50, 0.52, 0.60, 0.60, 0.70, 0.74, 0.80, 0.76, 0.3, 0.3],
        }
    )
    noise = target_noise(runs)  # a: var 2, 0 -> sqrt(1); b: var 8, 8 -> sqrt(8); c: 0
    np.testing.assert_allclose(noise[["a", "b", "c"]], [1.0, np.sqrt(8), 0.0], atol=1e-9)
    kinds = pd.Series({"a": "classification", "b": "classification", "c": "regression"})
    assert pooled_noise(noise, kinds, "classification") == pytest.approx(np.sqrt((1 + 8) / 2))
    assert pooled_noise(noise, kinds, "ranking") == pytest.approx(np.sqrt(9 / 3))  # no target of its kind: all


def test_shared_error_is_the_share_of_error_a_targets_sources_have_in_common():
    from transfer.advisor import SourceAdvisor
    from transfer.advisor.learner import MAX_SHARED_ERROR

    advisor = SourceAdvisor()
    advisor.errors_ = [np.array([1.0, 1.0]), np.array([-1.0, -1.0]), np.array([3.0, 3.0])]
    assert advisor.shared_error() == MAX_SHARED_ERROR  # errors only per target: all shared (capped)
    advisor.errors_ = [np.array([1.0, -1.0]), np.array([2.0, -2.0]), np.array([-1.0, 1.0])]
    assert advisor.shared_error() == 0.0  # every target's mean error is 0: nothing shared
    advisor.errors_ = [np.array([0.0, 2.0]), np.array([0.0, -2.0]), np.array([1.0, 1.0])]
    # target means 1, -1, 1 (var 4/3); all errors 0, 2, 0, -2, 1, 1 (mean 1/3, var 2.2667)
    assert advisor.shared_error() == pytest.approx((4 / 3) / np.var([0, 2, 0, -2, 1, 1], ddof=1))
