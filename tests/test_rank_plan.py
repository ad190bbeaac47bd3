"""The ranking plan (what ``rank --dry-run`` prints) costs every method that reads a source's fine-tuned checkpoint
(ESM-LogME, direct LogME, LEEP): each source fine-tune once, however many methods read it, with its time; a stored
checkpoint is not fine-tuned again. No model runs here: plans only read the catalog and the task rows."""

from __future__ import annotations

import warnings

import pytest
from typer.testing import CliRunner

TARGET = "uci_sentiment_imdb"
SOURCES = ("uci_sentiment_amazon", "tweeteval_stance_atheism")
TINY = {"lr": 5e-5, "batch_size": 16, "epochs": 1, "max_examples": 64, "max_length": 32, "warmup_ratio": 0.06}


@pytest.fixture(scope="module")
def plan_workspace(tmp_path_factory, shared_tasks):
    from store.catalog import put_task
    from store.task_files import load_task_dir
    from store.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("plan") / "ws")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in (TARGET, *SOURCES):
            put_task(ws, load_task_dir(shared_tasks / name))
    return ws


def plan(ws, methods, **options):
    from flows.rank import RankRequest, plan_rank

    return plan_rank(RankRequest(TARGET, SOURCES, methods, TINY, device="cpu", workspace=str(ws.root), **options))


def test_every_checkpoint_reader_is_costed_and_a_shared_fine_tune_counted_once(plan_workspace):
    from flows.rank import FORWARD_TEXTS_PER_S
    from store.catalog import get_task
    from store.rates import fine_tune_rate

    rate = fine_tune_rate(plan_workspace)
    target_texts = min(get_task(plan_workspace, TARGET).counts()["train"], 1000)  # max_target_examples
    leep = plan(plan_workspace, ("leep",))
    assert [w.source for w in leep.work] == list(SOURCES) and leep.fine_tunes == 2
    assert all(w.fine_tune and not w.checkpoint_cached and w.esm_key is None for w in leep.work)
    for w in leep.work:  # the fine-tune at the measured rate, then the target sample through the tuned model
        assert w.examples == 64 and w.estimated_s == pytest.approx(
            rate.seconds(w.examples * w.epochs) + target_texts / FORWARD_TEXTS_PER_S, abs=0.05
        )
    assert leep.estimated_s == pytest.approx(sum(w.estimated_s for w in leep.work))
    every = plan(plan_workspace, ("esm-logme", "direct-logme", "leep"))
    assert every.fine_tunes == 2  # three methods read each checkpoint: one fine-tune per source
    assert [w.checkpoint_key for w in every.work] == [w.checkpoint_key for w in leep.work]
    assert every.estimated_s > leep.estimated_s  # plus the ESMs' forward passes, not another fine-tune
    assert plan(plan_workspace, ("direct-logme",)).fine_tunes == 2
    cheap = plan(plan_workspace, ("centroid-cosine", "maxsim"))
    assert cheap.work == () and cheap.fine_tunes == 0 and cheap.estimated_s == 0
    kept = plan(plan_workspace, ("leep",), prefilter="centroid-cosine:1")
    assert kept.fine_tunes == 1 and kept.estimated_s == max(w.estimated_s for w in kept.work)  # at most one runs


def test_a_stored_checkpoint_is_not_fine_tuned_again(plan_workspace):
    """A checkpoint stored under the plan's key is read, not fine-tuned: LEEP then costs only its forward pass, and
    ESM-LogME (its ESM still missing) fits the map from it without a fine-tune."""
    from flows.checkpoints import checkpoint_key, source_data
    from flows.rank import recipe_for_name
    from store.checkpoints import checkpoint_path, put_checkpoint
    from transfer.encoder import DEFAULT_MODEL, model_fingerprint, resolve_model_path

    recipe, seed = recipe_for_name(TINY), 7  # a seed of its own: the other tests' plans stay uncached
    data = source_data(plan_workspace, SOURCES[0], recipe, seed)
    fingerprint = model_fingerprint(resolve_model_path(DEFAULT_MODEL))
    key = checkpoint_key(data, recipe, model=DEFAULT_MODEL, base_fp=fingerprint, seed=seed)
    assert key.cache_key == plan(plan_workspace, ("leep",), seed=seed).work[0].checkpoint_key
    checkpoint_path(plan_workspace, key).mkdir(parents=True)
    (checkpoint_path(plan_workspace, key) / "weights").write_text("w")
    put_checkpoint(plan_workspace, key, n_examples=len(data.texts), steps=4, seconds=6.4)
    leep = plan(plan_workspace, ("leep",), seed=seed)
    assert [w.fine_tune for w in leep.work] == [False, True] and leep.work[0].checkpoint_cached
    assert leep.fine_tunes == 1 and leep.work[0].estimated_s < leep.work[1].estimated_s
    esm = plan(plan_workspace, ("esm-logme",), seed=seed)
    assert esm.work[0].esm_cached is False and not esm.work[0].fine_tune and esm.fine_tunes == 1


def test_dry_run_prints_the_fine_tunes_of_every_checkpoint_reader(plan_workspace):
    from flows.cli import app

    root = str(plan_workspace.root)
    for methods in ("leep", "esm-logme,direct-logme,leep"):
        dry = CliRunner().invoke(
            app, ["--workspace", root, "--device", "cpu", "rank", TARGET, "--sources", ",".join(SOURCES),
                  "--method", methods, "--dry-run"],
        )  # fmt: skip
        assert dry.exit_code == 0, dry.output
        text = " ".join(dry.output.split())  # rich wraps long titles
        assert "over 2 sources; 2 source fine-tune(s) of 1 epoch(s), about" in text, text
        assert all(source in text for source in SOURCES) and "fine_tune" in text
        assert ("esm_cached" in text) == ("esm-logme" in methods)
    cheap = CliRunner().invoke(app, ["--workspace", root, "rank", TARGET, "--method", "mmd", "--dry-run"])
    assert cheap.exit_code == 0 and "plan: 1 method(s) (mmd) over 2 sources" in " ".join(cheap.output.split())


def test_rank_takes_a_recipe_and_budget_for_one_release(plan_workspace):
    """``rank --recipe`` takes a name or a JSON object of Recipe fields, and ``RankRequest`` its ``recipe``; their old
    name ``budget`` still works for one release, with a warning (stderr; a DeprecationWarning at the caller's line);
    giving both is an error naming both."""
    import json

    from flows.cli import app
    from flows.rank import RankRequest, recipe_for_name
    from store.errors import InputError

    def dry(*options: str):
        args = ["--workspace", str(plan_workspace.root), "--device", "cpu", "rank", TARGET, "--method", "leep"]
        return CliRunner().invoke(app, [*args, "--sources", ",".join(SOURCES), *options, "--dry-run"])

    new, old = dry("--recipe", json.dumps(TINY)), dry("--budget", json.dumps(TINY))
    assert new.exit_code == old.exit_code == 0, new.output + old.output
    assert "2 source fine-tune(s) of 1 epoch(s)" in " ".join(new.stdout.split()) and "64" in new.stdout  # TINY's
    assert old.stdout == new.stdout and not new.stderr
    assert old.stderr.strip() == "warning: --budget is deprecated for rank/measure; use --recipe"
    assert "500" in dry().stdout and "500" not in new.stdout  # the default, small: 500 rows per source
    both = dry("--recipe", "small", "--budget", "small")
    assert both.exit_code == 2 and "error: --budget and --recipe both given" in both.stdout
    esm = ["--workspace", str(plan_workspace.root), "esm", "build", "src", "--recipe", "small", "--budget", "small"]
    assert "error: --budget and --recipe both given" in CliRunner().invoke(app, esm).stdout  # esm build's too
    with pytest.warns(DeprecationWarning, match="The 'budget' parameter of RankRequest is deprecated") as caught:
        request = RankRequest(TARGET, SOURCES, ("leep",), budget=TINY)
    assert request == RankRequest(TARGET, SOURCES, ("leep",), recipe=TINY) and caught[0].filename == __file__
    with pytest.raises(InputError, match="RankRequest got both 'budget' and 'recipe'"):
        RankRequest(TARGET, SOURCES, ("leep",), "paper", budget=TINY)
    with pytest.raises(InputError, match=r"The 'recipe' parameter must be one of \['small', 'medium', 'paper'\]"):
        recipe_for_name("large")


def test_the_medium_recipe_is_the_atlas_source_recipe():
    """``--recipe medium`` fine-tunes sources exactly as the transfer atlas did, so its runs and rankings compare."""
    from bench.transfer_atlas import SOURCE_RECIPES
    from flows.rank import recipe_for_name
    from transfer.finetune import Recipe

    assert recipe_for_name("medium") == Recipe(**SOURCE_RECIPES["medium"])
