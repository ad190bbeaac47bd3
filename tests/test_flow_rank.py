"""Integration: rank_sources on real tasks (80 training rows each) with the tiny seeded encoder and a tiny recipe
(what is asserted is what is stored, reused and served, not what a model learns), Results API, ESM reuse, export and
import between workspaces, bad input, and the CLI (the real model, as a user runs it)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from typer.testing import CliRunner

from store.catalog import put_task
from store.esms import export_esms, import_esms, list_esms
from store.results import Results
from store.task_files import load_task_dir
from store.workspace import Workspace

pytestmark = pytest.mark.slow
TARGET = "uci_sentiment_imdb"
SOURCES = ["uci_sentiment_amazon", "tweeteval_stance_atheism"]
TINY = {"lr": 5e-5, "batch_size": 16, "epochs": 1, "max_examples": 64, "max_length": 32, "warmup_ratio": 0.06}
ESM = ("esm-logme",)  # the tests of ESMs ask for them: rank's default is direct LogME


@pytest.fixture(scope="module")
def rank_workspace(tmp_path_factory, task_workspace, prefect_harness):
    return task_workspace(tmp_path_factory.mktemp("rank") / "ws", TARGET, *SOURCES, "poem_sentiment")


@pytest.fixture(scope="module")
def ranking(rank_workspace, tiny_encoder):
    from flows import rank_sources
    from flows.rank import RankRequest

    return rank_sources(
        RankRequest(
            target=TARGET,
            sources=SOURCES,
            recipe=TINY,
            methods=ESM,
            model=tiny_encoder,
            device="cpu",
            max_target_examples=400,
            workspace=str(rank_workspace.root),
        )
    )


def test_ranking_is_stored_and_served(rank_workspace, ranking):
    assert sorted(ranking.source) == sorted(SOURCES) and ranking["rank"].tolist() == [1, 2]
    assert ranking.score.is_monotonic_decreasing
    served = Results(rank_workspace).recommend_sources(TARGET, k=5, method="esm-logme")
    assert served.source.tolist() == ranking.source.tolist() and served.run_id.nunique() == 1
    assert Results(rank_workspace).recommend_sources(TARGET, k=1, method="esm-logme").shape[0] == 1
    compared = Results(rank_workspace).compare_methods(TARGET)
    assert {"score:esm-logme (higher is better)", "rank:esm-logme"} <= set(compared.columns)
    row = rank_workspace.sql("SELECT * FROM runs WHERE flow = 'rank_sources'").iloc[0]
    stored = rank_workspace.sql("SELECT DISTINCT config_hash FROM pair_scores")
    assert row.status == "completed" and stored.config_hash.tolist() == [row.config_hash]
    esms = list_esms(rank_workspace)
    assert sorted(esms.source) == sorted(SOURCES)
    assert (esms.heldout_mse < esms.identity_mse).all()  # each ESM explains part of what fine-tuning did


def test_second_run_reuses_esms_and_checkpoints(rank_workspace, ranking, tiny_encoder):
    from flows import rank_sources
    from flows.rank import RankRequest

    again = rank_sources(
        RankRequest(
            target=TARGET,
            sources=SOURCES,
            recipe=TINY,
            methods=ESM,
            model=tiny_encoder,
            device="cpu",
            max_target_examples=400,
            workspace=str(rank_workspace.root),
            build_missing=False,
        )
    )
    assert again.score.tolist() == pytest.approx(ranking.score.tolist(), rel=1e-9)
    counts = rank_workspace.sql("SELECT (SELECT count(*) FROM esms) AS e, (SELECT count(*) FROM checkpoints) AS c")
    assert counts.e[0] == 2 and counts.c[0] == 2


def test_a_request_is_planned_once_and_a_plan_runs_as_planned(rank_workspace, ranking, monkeypatch, tiny_encoder):
    """The plan reads task contents and the leakage guard once for all sources; the flow given a plan reads them
    no more (its ESMs are stored) and never re-plans; a request given to the flow is planned exactly once."""
    import dataclasses

    import flows.rank
    from flows import rank_sources
    from flows.rank import RankRequest, plan_rank

    request = RankRequest(
        TARGET, tuple(SOURCES), ESM, TINY, model=tiny_encoder, device="cpu", max_target_examples=400,
        workspace=str(rank_workspace.root),
    )  # fmt: skip
    reads: list[list[str]] = []
    real_read = flows.rank.sources_data
    monkeypatch.setattr(
        flows.rank, "sources_data", lambda ws, names, *a: reads.append(names) or real_read(ws, names, *a)
    )
    plan = plan_rank(request)
    assert reads == [SOURCES] and [w.esm_cached for w in plan.work] == [True, True] and plan.estimated_s == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.sources = ()  # type: ignore[misc]
    monkeypatch.setattr(flows.rank, "plan_rank", lambda request: pytest.fail("the flow planned a plan again"))
    again = rank_sources(plan)
    assert reads == [SOURCES] and again.score.tolist() == pytest.approx(ranking.score.tolist(), rel=1e-9)
    planned: list[RankRequest] = []
    monkeypatch.setattr(flows.rank, "plan_rank", lambda request: planned.append(request) or plan_rank(request))
    rank_sources(request)
    assert planned == [request] and len(reads) == 2


def test_bad_input(rank_workspace, ranking):
    from flows import rank_sources
    from flows.rank import RankRequest

    with pytest.raises(ValueError, match="also among the sources"):
        rank_sources(RankRequest(target=TARGET, sources=[TARGET], recipe=TINY, workspace=str(rank_workspace.root)))
    with pytest.raises(LookupError, match=r"No ESM stored for sources \['poem_sentiment'\]"):
        rank_sources(
            RankRequest(
                target=TARGET,
                sources=["poem_sentiment"],
                recipe=TINY,
                methods=ESM,
                device="cpu",
                workspace=str(rank_workspace.root),
                build_missing=False,
            )
        )
    with pytest.raises(LookupError, match="No 'direct-logme' ranking stored for target 'tweeteval_stance_atheism'"):
        Results(rank_workspace).recommend_sources("tweeteval_stance_atheism")
    with pytest.raises(ValueError, match="'k' parameter of recommend_sources must be a positive int"):
        Results(rank_workspace).recommend_sources(TARGET, k=0)


def test_divergences_prefilter_and_fusion(rank_workspace, ranking, tiny_encoder):
    from flows import rank_sources
    from flows.rank import RankRequest

    sources = [*SOURCES, "poem_sentiment"]
    out = rank_sources(
        RankRequest(
            target=TARGET,
            sources=sources,
            methods=("centroid-cosine", "mmd", "esm-logme"),
            recipe=TINY,
            model=tiny_encoder,
            device="cpu",
            max_target_examples=400,
            max_divergence_examples=300,
            prefilter="centroid-cosine:2",
            fuse="rrf",
            workspace=str(rank_workspace.root),
        )
    )
    by_method = {m: r for m, r in out.groupby("method")}
    assert set(by_method) == {"centroid-cosine", "mmd", "esm-logme", "fused-rrf"}
    assert len(by_method["centroid-cosine"]) == 3  # the pre-filter scores every source ...
    kept = by_method["centroid-cosine"].source[:2].tolist()
    for method in ("mmd", "esm-logme", "fused-rrf"):  # ... and the others run on the 2 it keeps
        assert sorted(by_method[method].source) == sorted(kept)
    mmd = by_method["mmd"]
    assert mmd.score.is_monotonic_increasing  # lower is better: rank 1 has the smallest MMD
    compared = Results(rank_workspace).compare_methods(TARGET)
    assert "score:mmd (lower is better)" in compared.columns and "rank:fused-rrf" in compared.columns
    run = rank_workspace.sql("SELECT params_json FROM runs WHERE run_id = $id", {"id": out.run_id[0]})
    assert '"fuse":{"inputs":["centroid-cosine","mmd","esm-logme"],"method":"rrf","weights":null}' in run.params_json[0]
    with pytest.raises(ValueError, match="'prefilter' parameter must be MEASURE:M"):
        rank_sources(
            RankRequest(
                target=TARGET, sources=sources, methods=("mmd",), prefilter="mmd", workspace=str(rank_workspace.root)
            )
        )
    with pytest.raises(ValueError, match="'methods' parameter of rank_sources must be among"):
        rank_sources(RankRequest(target=TARGET, methods=("cosine",), workspace=str(rank_workspace.root)))


def test_label_aware_distance_rejects_regression_tasks(rank_workspace, small_tasks):
    from flows import rank_sources
    from flows.rank import RankRequest

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        put_task(rank_workspace, load_task_dir(small_tasks("emobank_valence")))
    with pytest.raises(ValueError, match="need class labels, but task 'emobank_valence' is a regression task"):
        rank_sources(
            RankRequest(
                target="emobank_valence",
                sources=SOURCES,
                methods=("otdd",),
                device="cpu",
                workspace=str(rank_workspace.root),
            )
        )


def test_esms_move_between_workspaces_in_both_layouts(rank_workspace, ranking, tmp_path):
    stored = sorted(list_esms(rank_workspace).source)
    assert set(SOURCES) <= set(stored)
    export_esms(rank_workspace, tmp_path / "ours")
    other = Workspace(tmp_path / "other")
    assert sorted(import_esms(other, tmp_path / "ours")) == stored
    export_esms(rank_workspace, tmp_path / "hf", layout="hfselect")
    third = Workspace(tmp_path / "third")
    fingerprint = list_esms(rank_workspace).base_fp[0]
    assert sorted(import_esms(third, tmp_path / "hf", base_fp=fingerprint)) == stored
    with pytest.raises(ValueError, match="'base_fp' parameter of import_esms is required"):
        import_esms(Workspace(tmp_path / "fourth"), tmp_path / "hf")


def test_cli_rank_dry_run_and_run(rank_workspace, ranking):
    from flows.cli import app

    root = str(rank_workspace.root)
    dry = CliRunner().invoke(
        app, ["--workspace", root, "--device", "cpu", "rank", TARGET, "--sources", ",".join(SOURCES), "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    assert "plan" in dry.output and "uci_sentiment_amazon" in dry.output
    listed = CliRunner().invoke(app, ["--workspace", root, "esm", "list"])
    assert listed.exit_code == 0 and "tweeteval_stance_atheism" in listed.output
    # A real run, as a user runs it: each table says its direction in the title, in the order of --method.
    command = [sys.executable, "-m", "flows.cli", "--workspace", root, "--device", "cpu", "rank", TARGET]
    ran = subprocess.run(
        [*command, "--sources", ",".join(SOURCES), "--method", "mmd,centroid-cosine"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    text = " ".join(ran.stdout.split())  # rich wraps long titles
    first = text.index(f"mmd ranking for {TARGET} (score: lower is better)")
    assert first < text.index(f"centroid-cosine ranking for {TARGET} (score: higher is better)")


def test_checkpoint_methods_reuse_the_checkpoints_and_match_an_independent_computation(
    rank_workspace, ranking, tiny_encoder
):
    """direct-logme and leep read the checkpoints the ESMs were built from (no new fine-tune); direct-logme equals
    LogME of the target sample's features from the fine-tuned encoder computed by hand; maxsim is stored with
    its direction."""
    import numpy as np

    from flows import rank_sources
    from flows.rank import RankRequest
    from store.catalog import get_task
    from transfer.embeddings import TextEncoder
    from transfer.finetune import sample_indices
    from transfer.logme import logme_score

    count = "SELECT count(*) AS n FROM checkpoints"
    before = rank_workspace.sql(count).n[0]
    rankings = rank_sources(
        RankRequest(
            target=TARGET,
            sources=SOURCES,
            methods=("direct-logme", "leep", "maxsim"),
            recipe=TINY,
            model=tiny_encoder,
            device="cpu",
            max_target_examples=120,
            workspace=str(rank_workspace.root),
        )
    )
    assert rankings.groupby("method").source.apply(sorted).to_dict() == {m: sorted(SOURCES) for m in rankings.method}
    assert set(rankings.method) == {"direct-logme", "leep", "maxsim"}
    assert rank_workspace.sql(count).n[0] == before  # the ESMs' checkpoints reused, none added
    assert (rankings[rankings.method == "leep"].score <= 0).all()
    checkpoints = rank_workspace.sql(
        "SELECT task, path FROM checkpoints WHERE task IN ('uci_sentiment_amazon', 'tweeteval_stance_atheism')"
    )
    goal = get_task(rank_workspace, TARGET)
    rows = goal.split("train").take(sample_indices(goal.split("train").num_rows, 120, 0))
    for task, path in zip(checkpoints.task, checkpoints.path, strict=True):
        tuned = TextEncoder(rank_workspace.root / path, pooling="mean", max_length=32, normalize=False, device="cpu")
        features = tuned.encode(rows.column("text").to_pylist()).astype(np.float64)
        expected = logme_score(features, rows.column("label").to_numpy())
        stored = rankings[(rankings.method == "direct-logme") & (rankings.source == task)].score.iloc[0]
        assert stored == pytest.approx(expected, rel=1e-4)
    served = Results(rank_workspace).compare_methods(TARGET)
    assert {"score:maxsim (higher is better)", "score:leep (higher is better)"} <= set(served.columns)


def test_a_failing_method_keeps_the_others_rankings(rank_workspace, ranking, monkeypatch, tiny_encoder):
    """Each method's ranking is stored as it finishes: one failing measure no longer loses the others, the run is
    marked partial with the failure, and a run where every method fails still raises."""
    import flows.rank
    from flows import rank_sources
    from flows.rank import RankRequest

    real = flows.rank.score_pair

    def failing_mmd(measure, *args, **kwargs):
        if measure == "mmd":
            raise ValueError("mmd exploded")
        return real(measure, *args, **kwargs)

    monkeypatch.setattr(flows.rank, "score_pair", failing_mmd)
    options = {
        "target": TARGET, "sources": SOURCES, "model": tiny_encoder, "device": "cpu",
        "workspace": str(rank_workspace.root),
    }  # fmt: skip
    rankings = rank_sources(RankRequest(methods=("mmd", "centroid-cosine"), **options))
    assert set(rankings.method) == {"centroid-cosine"}
    assert rankings.attrs["failures"] == {"mmd": "ValueError: mmd exploded"}
    run = rank_workspace.sql("SELECT status, error FROM runs WHERE flow = 'rank_sources' ORDER BY started_at DESC")
    assert run.status.iloc[0] == "partial" and "mmd: ValueError: mmd exploded" in run.error.iloc[0]
    with pytest.raises(ValueError, match="mmd exploded"):
        rank_sources(RankRequest(methods=("mmd",), **options))


def test_an_esm_is_keyed_by_the_recipe_and_seed_of_its_checkpoint(rank_workspace, ranking, tiny_encoder):
    """Two recipes that tune on the same rows (64 of the source's rows either way) but with another lr make two
    checkpoints and two ESMs: building the second fine-tunes instead of returning the first ESM, which the plan no
    longer reports as stored; another seed is another ESM too."""
    from flows.rank import RankRequest, build_esms, plan_rank
    from store.esms import list_esms

    source, other_lr = SOURCES[0], {**TINY, "lr": 1e-4}
    first = list_esms(rank_workspace).set_index("source").cache_key[source]
    count = "SELECT (SELECT count(*) FROM esms) AS e, (SELECT count(*) FROM checkpoints) AS c"
    before = rank_workspace.sql(count)
    built = build_esms([source], recipe=other_lr, model=tiny_encoder, device="cpu", workspace=str(rank_workspace.root))
    after = rank_workspace.sql(count)
    assert built[source] != first and (after.e[0], after.c[0]) == (before.e[0] + 1, before.c[0] + 1)
    stored = rank_workspace.sql("SELECT checkpoint_key FROM esms WHERE cache_key = $k", {"k": built[source]})
    tuned = rank_workspace.sql("SELECT cache_key, recipe_json FROM checkpoints ORDER BY created_at DESC LIMIT 1")
    assert stored.checkpoint_key[0] == tuned.cache_key[0] and '"lr":0.0001' in tuned.recipe_json[0]

    def planned(recipe, seed=0):
        request = RankRequest(
            TARGET, (source,), ESM, recipe, model=tiny_encoder, seed=seed, workspace=str(rank_workspace.root)
        )
        return plan_rank(request).work[0]

    assert planned(TINY).esm_key == first and planned(other_lr).esm_key == built[source]
    assert planned(TINY).esm_cached and planned(other_lr).esm_cached
    assert not planned(TINY, seed=1).esm_cached and planned(TINY, seed=1).fine_tune
