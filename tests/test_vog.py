"""VoG: batched input gradients equal one-at-a-time ones, the streaming std equals the stored-gradient std, padding
does not enter, the formula by hand, normalisation, the subset strategies, and the fine_tune step hook; on the
real default encoder with 64 SST-2 texts, max_length 32 and 3 checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selection.vog import (
    RunningStd,
    input_gradients,
    keep_hardest,
    mean_over_real_entries,
    normalize_scores,
    prune_easiest,
    vog_from_checkpoints,
    vog_scores,
    weighted_sample,
)
from store.task_files import load_task_dir
from transfer.finetune import Recipe, fine_tune, load_base, tokenize_batch

RECIPE = Recipe(lr=1e-4, batch_size=16, epochs=1, max_examples=64, max_length=32, warmup_ratio=0.06)
STEPS = [2, 3, 4]  # ceil(k·4/3), k = 1..3, for 64 examples in batches of 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one torch thread is several times faster than two on busy shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sst2(shared_tasks):
    train = load_task_dir(shared_tasks / "sst2").split("train")
    return train.column("text").to_pylist()[:64], train.column("label").to_numpy()[:64].astype(int)


@pytest.fixture(scope="module")
def trained(sst2):
    """One small fine-tune with the step hook recording every call and keeping CPU copies at STEPS."""
    texts, labels = sst2
    calls: list[tuple[int, int]] = []
    checkpoints: list[dict[str, torch.Tensor]] = []

    def on_step(step, network):
        calls.append((step, id(network)))
        if step in STEPS:
            checkpoints.append({k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()})

    tuned = fine_tune(texts, labels, n_classes=2, recipe=RECIPE, seed=0, device="cpu", on_step=on_step)
    final = {k: v.detach().clone() for k, v in tuned.model.state_dict().items()}  # tests load checkpoints into it
    return tuned, checkpoints, (calls, final)


def gradients_at(network, tokenizer, checkpoint, texts, labels):
    network.load_state_dict(checkpoint)
    network.eval()
    batch = tokenize_batch(tokenizer, texts, None, RECIPE.max_length, torch.device("cpu"))
    return input_gradients(network, batch, torch.as_tensor(labels)), batch["attention_mask"]


@pytest.mark.slow
def test_fine_tune_calls_on_step_once_per_step_with_the_network(trained):
    tuned, checkpoints, (calls, final) = trained
    assert tuned.steps == 4 and [step for step, _ in calls] == [1, 2, 3, 4]
    assert {network for _, network in calls} == {id(tuned.model)}
    assert all(torch.equal(checkpoints[-1][k], final[k]) for k in final)  # the last checkpoint = the end
    assert not torch.equal(checkpoints[0]["head.weight"], checkpoints[-1]["head.weight"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_batched_input_gradients_equal_one_at_a_time(trained, sst2, kind):
    texts, labels = sst2[0][:8], sst2[1][:8]
    if kind == "classification":
        tuned, checkpoints, _ = trained
        network, tokenizer, targets = tuned.model, tuned.tokenizer, torch.as_tensor(labels)
        network.load_state_dict(checkpoints[0])
    else:  # one output: the gradient of that output, no targets
        network, tokenizer = load_base(None, 1, "mean", seed=0)
        targets = None
    network.eval()
    cpu = torch.device("cpu")
    batch = tokenize_batch(tokenizer, texts, None, RECIPE.max_length, cpu)
    batched = input_gradients(network, batch, targets)
    assert batched.shape == (*batch["input_ids"].shape, 384)
    lengths = batch["attention_mask"].sum(1)
    assert lengths.min() < lengths.max()  # the batch pads
    for i, text in enumerate(texts):
        single = input_gradients(
            network,
            tokenize_batch(tokenizer, [text], None, RECIPE.max_length, cpu),
            None if targets is None else targets[i : i + 1],
        )[0]
        real = batched[i][batch["attention_mask"][i].bool()]
        assert single.shape == real.shape and single.abs().max() > 0
        torch.testing.assert_close(real, single, rtol=1e-5, atol=1e-5 * float(single.abs().max()))


@pytest.mark.slow
def test_streaming_std_equals_std_of_stored_gradients(trained, sst2):
    tuned, checkpoints, _ = trained
    texts, labels = sst2[0][:12], sst2[1][:12]
    stored, mask = [], None
    for checkpoint in checkpoints:  # all K gradients kept, one batch of 12
        gradient, mask = gradients_at(tuned.model, tuned.tokenizer, checkpoint, texts, labels)
        stored.append(gradient.double().numpy())
    std = np.stack(stored).std(axis=0)  # [12, L, D], float64, population
    real = mask.numpy()[:, :, None].astype(float)
    expected = (std * real).sum((1, 2)) / (real.sum((1, 2)) * std.shape[-1])
    streamed = vog_from_checkpoints(
        tuned.model, tuned.tokenizer, checkpoints, texts, labels, max_length=RECIPE.max_length, batch_size=5
    )  # batches of 5, 5, 2: other padding, same scores
    assert streamed.dtype == np.float64 and (streamed > 0).all()
    np.testing.assert_allclose(streamed, expected, rtol=1e-4)


def test_welford_equals_two_pass_std_in_float64():
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 0.01, size=(7, 4, 5, 6)).astype(np.float32)  # mean ≫ spread
    running = RunningStd()
    for value in values:
        running.update(torch.from_numpy(value))
    np.testing.assert_allclose(running.std().numpy(), values.astype(np.float64).std(axis=0), rtol=1e-9)
    with pytest.raises(ValueError, match="at least one update"):
        RunningStd().std()


@pytest.mark.slow
def test_padding_does_not_change_an_examples_vog(trained, sst2):
    tuned, checkpoints, _ = trained
    short, long = "a gem .", " ".join(sst2[0][:6])  # the long one fills max_length
    score = {}
    for texts in ([short], [short, long]):
        score[len(texts)] = vog_from_checkpoints(
            tuned.model, tuned.tokenizer, checkpoints, texts, [1] * len(texts), max_length=RECIPE.max_length
        )[0]
    np.testing.assert_allclose(score[2], score[1], rtol=1e-4)
    # the check can fail: averaging over the padded positions too would shrink the short example's score
    running = RunningStd()
    for checkpoint in checkpoints:
        running.update(gradients_at(tuned.model, tuned.tokenizer, checkpoint, [short, long], [1, 1])[0])
    all_positions = mean_over_real_entries(running.std(), torch.ones(2, running.std().shape[1]))[0]
    assert float(all_positions) < 0.5 * score[1]


def test_vog_formula_by_hand():
    """Two examples, 2 tokens × 2 dims; example 0 has one real token and one padding position (whose gradients,
    however large, do not count). Checkpoints give S_1, S_2, S_3."""
    s = torch.tensor(
        [
            [[[1.0, 2.0], [50.0, 0.0]], [[0.0, 1.0], [4.0, 4.0]]],
            [[[2.0, 2.0], [-50.0, 9.0]], [[0.0, 1.0], [4.0, 4.0]]],
            [[[6.0, 2.0], [7.0, 1.0]], [[0.0, 1.0], [4.0, 10.0]]],
        ]
    )
    mask = torch.tensor([[1, 0], [1, 1]])
    running = RunningStd()
    for value in s:
        running.update(value)
    # example 0, token 0: entries (1, 2, 6) → mean 3, deviations (−2, −1, 3) → std sqrt(14/3); (2, 2, 2) → 0
    # example 1: only entry (4, 4, 10) varies → mean 6, deviations (−2, −2, 4) → std sqrt(8); 4 entries
    expected = [math.sqrt(14 / 3) / 2, math.sqrt(8) / 4]
    np.testing.assert_allclose(mean_over_real_entries(running.std(), mask).numpy(), expected, rtol=1e-12)


def test_normalisation_per_class_over_the_dataset_or_none():
    rng = np.random.default_rng(1)
    raw = rng.gamma(2.0, size=40) * np.repeat([1.0, 5.0], 20)
    labels = np.repeat([0, 1], 20)
    by_class = normalize_scores(raw, labels, "class")
    for c in (0, 1):
        np.testing.assert_allclose([by_class[labels == c].mean(), by_class[labels == c].std()], [0, 1], atol=1e-12)
    overall = normalize_scores(raw, labels, "dataset")
    np.testing.assert_allclose([overall.mean(), overall.std()], [0, 1], atol=1e-12)
    assert not np.allclose(overall, by_class)
    np.testing.assert_array_equal(normalize_scores(raw, None, "none"), raw)
    np.testing.assert_array_equal(normalize_scores([2.0, 1.0, 3.0], [0, 1, 1], "class"), [0.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="normalize='class' needs class labels"):
        normalize_scores(raw, None, "class")
    with pytest.raises(ValueError, match="'normalize' parameter of normalize_scores must be one of"):
        normalize_scores(raw, labels, "zscore")  # type: ignore[arg-type]


def test_bad_vog_scores_arguments_fail_before_any_training():
    texts, labels = ["good", "bad", "fine"], [1, 0, 1]
    with pytest.raises(ValueError, match="'normalize' parameter of vog_scores cannot be 'class' for a regression"):
        vog_scores(texts, [0.5, 1.0, 2.0], n_classes=None)
    with pytest.raises(ValueError, match="'n_checkpoints' parameter of vog_scores must be an int >= 2. Got 1"):
        vog_scores(texts, labels, n_classes=2, n_checkpoints=1)
    with pytest.raises(ValueError, match="at most the run's optimiser steps \\(1\\). Got 10"):
        vog_scores(texts, labels, n_classes=2)
    with pytest.raises(ValueError, match="'texts' parameter of vog_scores must hold at least one text"):
        vog_scores([], [], n_classes=2)


@pytest.mark.slow
def test_vog_scores_end_to_end_reuses_the_same_run(trained, sst2):
    texts, labels = sst2
    result = vog_scores(texts, labels, n_classes=2, recipe=RECIPE, n_checkpoints=3, seed=0, device="cpu")
    assert (
        result.checkpoint_steps == STEPS and result.n_steps == 4 and set(result.seconds) == {"fine_tune", "gradients"}
    )
    tuned, checkpoints, _ = trained
    expected = vog_from_checkpoints(
        tuned.model, tuned.tokenizer, checkpoints, texts[:16], labels[:16], max_length=RECIPE.max_length
    )
    np.testing.assert_allclose(result.raw[:16], expected, rtol=1e-4)  # the seeded run is the fixture's run
    np.testing.assert_allclose(result.scores, normalize_scores(result.raw, labels, "class"))
    assert result.raw.shape == (64,) and np.isfinite(result.raw).all() and (result.raw > 0).all()


@pytest.mark.slow
def test_regression_pairs_end_to_end(shared_tasks):
    stsb = load_task_dir(shared_tasks / "stsb").split("train")
    texts, pairs = stsb.column("text").to_pylist()[:32], stsb.column("text_pair").to_pylist()[:32]
    recipe = Recipe(lr=1e-4, batch_size=16, epochs=1, max_examples=32, max_length=32)
    result = vog_scores(
        texts,
        stsb.column("label").to_numpy()[:32],
        n_classes=None,
        text_pairs=pairs,
        recipe=recipe,
        n_checkpoints=2,
        normalize="dataset",
        device="cpu",
    )
    assert result.checkpoint_steps == [1, 2] and (result.raw > 0).all()
    np.testing.assert_allclose([result.scores.mean(), result.scores.std()], [0, 1], atol=1e-9)


SCORES = np.arange(100, dtype=float)[np.random.default_rng(2).permutation(100)]


def test_keep_hardest_and_prune_easiest_counts_and_sets():
    hardest = keep_hardest(SCORES, 0.3)
    assert hardest.dtype == np.int64 and len(hardest) == 30
    np.testing.assert_array_equal(SCORES[hardest], np.arange(99, 69, -1))  # the top 30, hardest first
    assert len(keep_hardest(SCORES, 7)) == 7 and len(keep_hardest(SCORES, 1)) == 1
    # prune_easiest: the top 5% (5 examples) set aside as likely noise, then the easiest pruned down to the budget
    pruned = prune_easiest(SCORES, 0.3)
    np.testing.assert_array_equal(SCORES[pruned], np.arange(94, 64, -1))
    assert len(set(pruned) & set(hardest)) == 25  # distinct from keep_hardest
    np.testing.assert_array_equal(prune_easiest(SCORES, 30, drop_hardest=0.0), hardest)
    np.testing.assert_array_equal(SCORES[prune_easiest(SCORES, 97)], np.arange(96, -1, -1))  # budget wins: 3 dropped
    assert sorted(prune_easiest(SCORES, 1.0)) == list(range(100))
    np.testing.assert_array_equal(keep_hardest([1.0, 3.0, 3.0, 2.0], 2), [1, 2])  # ties in pool order


def test_weighted_sample_is_seeded_weighted_and_tempered():
    first = weighted_sample(SCORES, 20, seed=5)
    assert first.dtype == np.int64 and len(first) == 20 and len(set(first)) == 20
    np.testing.assert_array_equal(weighted_sample(SCORES, 20, seed=5), first)
    assert not np.array_equal(weighted_sample(SCORES, 20, seed=6), first)
    assert len(weighted_sample(SCORES, 0.25, seed=0)) == 25
    # cold: the hardest, in order; hot: close to uniform; in between: weighted towards high VoG
    np.testing.assert_array_equal(weighted_sample(SCORES, 20, temperature=1e-6), keep_hardest(SCORES, 20))
    hot = np.mean([SCORES[weighted_sample(SCORES, 20, seed=s, temperature=1e6)].mean() for s in range(200)])
    warm = np.mean([SCORES[weighted_sample(SCORES, 20, seed=s)].mean() for s in range(200)])
    assert abs(hot - 49.5) < 3 and warm > 60
    # the first draw follows softmax(z / T)
    scores = np.array([0.0, 1.0, 2.0, 4.0])
    z = (scores - scores.mean()) / scores.std() / 0.5
    p = np.exp(z) / np.exp(z).sum()
    draws = np.bincount([weighted_sample(scores, 1, seed=s, temperature=0.5)[0] for s in range(4000)], minlength=4)
    assert np.all(np.abs(draws / 4000 - p) < 4 * np.sqrt(p * (1 - p) / 4000) + 1e-3), (draws / 4000, p)
    assert sorted(weighted_sample(np.ones(5), 5)) == list(range(5))  # constant scores: uniform, all of them


def test_strategy_errors_name_the_parameter():
    with pytest.raises(ValueError, match="'budget' parameter of keep_hardest must be a float in \\(0, 1\\]"):
        keep_hardest(SCORES, 0)
    with pytest.raises(ValueError, match="'budget' parameter of prune_easiest .* Got 101 instead"):
        prune_easiest(SCORES, 101)
    with pytest.raises(ValueError, match="'drop_hardest' parameter of prune_easiest must be a fraction in \\[0, 1\\)"):
        prune_easiest(SCORES, 10, drop_hardest=1.0)
    with pytest.raises(ValueError, match="'temperature' parameter of weighted_sample must be a finite number > 0"):
        weighted_sample(SCORES, 10, temperature=0.0)
    with pytest.raises(ValueError, match="'scores' parameter of weighted_sample must be a non-empty 1-D array"):
        weighted_sample([1.0, np.nan], 1)
    with pytest.raises(ValueError, match="'scores' parameter of keep_hardest .* Got shape \\(2, 2\\)"):
        keep_hardest(np.ones((2, 2)), 1)


def test_stored_vog_scores_are_keyed_by_the_base_weights_and_the_recipe(tmp_path, monkeypatch):
    """The config VoG scores are stored and found under (`flows.vog.vog_order`'s third value) changes when the base
    model's weights change under the same path and when the fine-tuning recipe changes; not with the strategy,
    which only reads the scores. Scoring is replaced by a recorder; the model is a directory the key only reads."""
    import logging
    from types import SimpleNamespace

    import pandas as pd

    import flows.vog
    from flows.gradient_rows import labelled_rows
    from store.task_files import task_from_table
    from store.workspace import Workspace

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"first weights")
    texts = [f"the film {i} is {'good' if i % 2 else 'bad'}" for i in range(20)]
    pool = task_from_table(pd.DataFrame({"text": texts, "label": [t.split()[-1] for t in texts]}), "films")
    rows = labelled_rows(pool, pool, "train", None, max_rows=None, seed=0)
    scored = SimpleNamespace(scores=np.arange(20.0), seconds={"fine_tune": 0.0, "gradients": 0.0})
    monkeypatch.setattr(flows.vog, "vog_scores", lambda *a, **k: scored)
    monkeypatch.setattr(flows.vog, "get_run_logger", lambda: logging.getLogger(__name__))
    ws = Workspace(tmp_path / "ws")

    def config(**options):
        options = {"n_checkpoints": 3, **options}
        allowed = np.ones(20, dtype=bool)
        return flows.vog.vog_order(ws, pool, rows, allowed, 5, options, model=str(model), seed=0, device="cpu")[2]

    first = config()
    assert config(strategy="keep_hardest") == first and config(n_checkpoints=4) != first
    (model / "model.safetensors").write_bytes(b"other weights")  # the same name and path
    second = config()
    assert second != first
    monkeypatch.setattr(flows.vog, "SMALL_BUDGET", Recipe(lr=1e-4, batch_size=16, epochs=2, max_examples=500))
    assert config() != second
