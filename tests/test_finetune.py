"""Fine-tuning learns on a real task (small budget), is seeded, and round-trips through its saved directory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.task_files import load_task_dir
from transfer.embeddings import TextEncoder
from transfer.finetune import (
    SMALL_BUDGET,
    Recipe,
    epoch_batches,
    fine_tune,
    load_base,
    load_fine_tuned,
    predict,
    save_fine_tuned,
)

pytestmark = pytest.mark.slow


def accuracy(network, tokenizer, texts, labels):
    logits = predict(network, tokenizer, texts, max_length=SMALL_BUDGET.max_length)
    return float((logits.argmax(1) == labels).mean())


def learned(acc: float, majority: float) -> bool:
    """The criterion: clearly above the majority-class rate (by 10 points)."""
    return acc > majority + 0.10


@pytest.fixture(scope="module")
def sst2(shared_tasks):
    task = load_task_dir(shared_tasks / "sst2")
    train, test = task.split("train"), task.split("test")
    test_texts = test.column("text").to_pylist()[:400]
    test_labels = test.column("label").to_numpy()[:400].astype(int)
    return train.column("text").to_pylist(), train.column("label").to_numpy(), test_texts, test_labels


@pytest.fixture(scope="module")
def tuned(sst2_small_tuned):
    return sst2_small_tuned[0]


def test_small_budget_fine_tune_learns_and_zero_steps_do_not(sst2, tuned):
    _, _, test_texts, test_labels = sst2
    majority = max(np.mean(test_labels), 1 - np.mean(test_labels))
    untrained, tokenizer = load_base(None, 2, "mean", seed=0)
    zero_step = accuracy(untrained, tokenizer, test_texts, test_labels)
    trained = accuracy(tuned.model, tuned.tokenizer, test_texts, test_labels)
    assert tuned.n_examples == 500 and tuned.steps == 32
    assert learned(trained, majority), (trained, majority)
    assert trained > zero_step + 0.10
    assert not learned(zero_step, majority), (zero_step, majority)  # the criterion can fail


def test_saved_directory_round_trips_and_embeds(tuned, sst2, tmp_path):
    _, _, test_texts, _ = sst2
    path = save_fine_tuned(tuned, tmp_path / "ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary directory left behind
    loaded = load_fine_tuned(path, device="cpu")
    np.testing.assert_allclose(
        predict(loaded.model, loaded.tokenizer, test_texts[:20]),
        predict(tuned.model, tuned.tokenizer, test_texts[:20]),
        atol=1e-5,
    )
    assert loaded.recipe == SMALL_BUDGET
    base, tuned_encoder = TextEncoder(device="cpu"), TextEncoder(path, device="cpu")
    assert tuned_encoder.fingerprint != base.fingerprint
    moved = 1 - (base.encode(test_texts[:20]) * tuned_encoder.encode(test_texts[:20])).sum(1)
    assert moved.mean() > 1e-3  # the fine-tuned encoder maps texts elsewhere


def test_regression_and_pairs_train(shared_tasks):
    stsb = load_task_dir(shared_tasks / "stsb").split("train")
    recipe = Recipe(lr=5e-5, batch_size=16, epochs=1, max_examples=64, max_length=48)
    result = fine_tune(
        stsb.column("text").to_pylist(),
        stsb.column("label").to_numpy(),
        n_classes=None,
        text_pairs=stsb.column("text_pair").to_pylist(),
        recipe=recipe,
        seed=1,
        device="cpu",
    )
    assert result.kind == "regression" and result.model.head.out_features == 1 and result.steps == 4
    assert np.isfinite(result.losses).all()


def test_seeded_runs_are_identical(shared_tasks):
    trec = load_task_dir(shared_tasks / "trec").split("train")
    recipe = Recipe(batch_size=8, epochs=1, max_examples=24, max_length=32)
    texts, labels = trec.column("text").to_pylist(), trec.column("label").to_numpy()
    first = fine_tune(texts, labels, n_classes=6, recipe=recipe, seed=3, device="cpu")
    second = fine_tune(texts, labels, n_classes=6, recipe=recipe, seed=3, device="cpu")
    assert first.losses == second.losses
    bucketed = Recipe(batch_size=8, epochs=1, max_examples=24, max_length=32, length_buckets=True)
    third = fine_tune(texts, labels, n_classes=6, recipe=bucketed, seed=3, device="cpu")
    assert third.losses == fine_tune(texts, labels, n_classes=6, recipe=bucketed, seed=3, device="cpu").losses
    assert third.steps == first.steps and third.losses != first.losses  # other batches, same number of steps


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="'epochs' parameter of Recipe must be a positive int. Got 0"):
        Recipe(epochs=0)
    with pytest.raises(ValueError, match="'length_buckets' parameter of Recipe must be a bool. Got 1 instead"):
        Recipe(length_buckets=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'labels' .* must have one entry per text"):
        fine_tune(["a", "b"], [0], n_classes=2)
    with pytest.raises(ValueError, match="class indices in \\[0, 2\\)"):
        fine_tune(["a", "b"], [0, 5], n_classes=2)


@given(
    n=st.integers(1, 300),
    batch_size=st.integers(1, 40),
    seed=st.integers(0, 10),
    bucketed=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_epoch_batches_cover_each_example_once_in_the_same_number_of_steps(n, batch_size, seed, bucketed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 64, size=n) if bucketed else None
    order = rng.permutation(n)
    batches = epoch_batches(order, lengths, batch_size, rng)
    assert len(batches) == -(-n // batch_size)
    assert sorted(np.concatenate(batches).tolist()) == list(range(n))
    assert all(1 <= len(b) <= batch_size for b in batches)
    if not bucketed:
        assert np.array_equal(np.concatenate(batches), order)  # consecutive chunks, as before buckets existed


def test_length_buckets_pad_less_than_random_batches():
    """A hand-checkable case: 32 examples of lengths 1..32, batches of 4, one window of 8 batches. Sorted within
    the window, batch i holds lengths 32-4i..29-4i and pads to 32-4i: 4·(32+28+...+4) = 576 tokens, against the
    random batches' larger total."""
    rng = np.random.default_rng(0)
    lengths = np.arange(1, 33)
    order = rng.permutation(32)
    bucketed = epoch_batches(order, lengths, 4, np.random.default_rng(1))
    padded = sum(len(b) * lengths[b].max() for b in bucketed)
    assert padded == 4 * sum(range(4, 33, 4)) == 576
    assert sorted(tuple(sorted(lengths[b])) for b in bucketed) == [tuple(range(i, i + 4)) for i in range(1, 33, 4)]
    random_padded = sum(len(b) * lengths[b].max() for b in epoch_batches(order, None, 4, rng))
    assert random_padded > padded


def test_predict_returns_rows_in_input_order(sst2):
    """Batches are formed by token length; each row's output must land at its own index (one row at a time is the
    reference)."""
    _, _, test_texts, _ = sst2
    network, tokenizer = load_base(None, 2, "mean", seed=0)
    texts = test_texts[:40]
    together = predict(network, tokenizer, texts, batch_size=16)
    alone = np.concatenate([predict(network, tokenizer, [t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.ptp([len(t) for t in texts]) > 20  # the rows differ in length, so the order was really changed
