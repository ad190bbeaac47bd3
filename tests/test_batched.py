"""`transfer.batched`: R fine-tunes trained as one batched model are R lone `fine_tune` runs, up to float rounding."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from transfer.errors import InputError
from transfer.finetune import Recipe, fine_tune, predict
from transfer.groundtruth import Split

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "the", "a", "movie", "plot", "acting", "really", "quite"]
# Small enough to run in seconds; lr high and grad_clip low, so clipping and the schedule both matter.
RECIPE = Recipe(
    lr=1e-3, batch_size=16, epochs=2, max_examples=40, max_length=16, warmup_ratio=0.1, length_buckets=True,
    grad_clip=0.5,
)  # fmt: skip


@pytest.fixture(scope="module")
def starts(tiny_encoder, tmp_path_factory):
    """Two dropout-free starts of one architecture: the tiny encoder, and the same with other seeded weights (as a
    source checkpoint would be). Without dropout neither path draws random numbers while training."""
    import torch
    from transformers import AutoConfig, AutoModel

    root = tmp_path_factory.mktemp("no-dropout")
    first, second = root / "first", root / "second"
    shutil.copytree(tiny_encoder, first)
    config = json.loads((first / "config.json").read_text())
    (first / "config.json").write_text(
        json.dumps({**config, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    )
    shutil.copytree(first, second)
    torch.manual_seed(1)
    AutoModel.from_config(AutoConfig.from_pretrained(first)).save_pretrained(second)
    return [str(first), str(second)]


def split(seed: int, n_classes: int | None, pairs: bool) -> Split:
    """40 seeded texts of 2-11 words (pairs: with a second text), labelled by sentiment words or N(0, 1)."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, rng.integers(2, 12))) for _ in range(40)]
    labels = np.array([int("good" in t or "great" in t) for t in texts]) if n_classes else rng.normal(size=40)
    return Split(texts, [" ".join(rng.choice(WORDS, 3)) for _ in texts] if pairs else None, labels)


@pytest.mark.parametrize(("n_classes", "pairs"), [(2, False), (None, True)])
def test_a_batched_run_is_each_lone_run(starts, n_classes, pairs):
    """Three runs (two starts, three seeds so three data orders, two training sets; 40 rows in batches of 16, so
    each epoch's short batch falls at a different step per run) trained as one batched model and alone: every final
    weight within 2e-5 (measured: at most 8e-6), every step's loss and every output within 1e-5, the same metrics."""
    from transfer.batched import fine_tune_batched, train_and_evaluate_batched
    from transfer.groundtruth import evaluate_outputs

    trains = [split(10, n_classes, pairs), split(10, n_classes, pairs), split(11, n_classes, pairs)]
    runs = {"starts": [starts[0], starts[1], starts[0]], "seeds": [0, 1, 2]}
    batched = fine_tune_batched(trains, n_classes=n_classes, recipe=RECIPE, device="cpu", **runs)
    test = split(12, n_classes, pairs)
    metrics = train_and_evaluate_batched(trains, [test] * 3, n_classes=n_classes, recipe=RECIPE, device="cpu", **runs)
    for train, start, seed, together, got in zip(trains, runs["starts"], runs["seeds"], batched, metrics, strict=True):
        alone = fine_tune(
            train.texts, train.labels, n_classes=n_classes, text_pairs=train.pairs, model=start, recipe=RECIPE,
            seed=seed, device="cpu",
        )  # fmt: skip
        assert together.steps == alone.steps == 6 and together.n_examples == 40
        weights, expected = together.model.state_dict(), alone.model.state_dict()
        assert weights.keys() == expected.keys()
        for name, value in expected.items():
            np.testing.assert_allclose(weights[name].numpy(), value.numpy(), rtol=0, atol=2e-5, err_msg=name)
        np.testing.assert_allclose(together.losses, alone.losses, rtol=0, atol=1e-5)
        outputs = [predict(t.model, t.tokenizer, test.texts, test.pairs, max_length=16) for t in (together, alone)]
        np.testing.assert_allclose(*outputs, rtol=0, atol=1e-5)
        want = evaluate_outputs(outputs[1], test.labels, regression=n_classes is None)  # train_and_evaluate's metrics
        assert got.keys() == want.keys()
        np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=0, atol=1e-5)


def test_batched_runs_must_match_in_count_and_size(starts):
    from transfer.batched import fine_tune_batched

    rows = split(0, 2, False)
    with pytest.raises(InputError, match="'splits', 'starts' and 'seeds'.*Got 1, 2 and 1"):
        fine_tune_batched([rows], n_classes=2, starts=starts, recipe=RECIPE, seeds=[0], device="cpu")
    short = Split(rows.texts[:30], None, rows.labels[:30])
    with pytest.raises(InputError, match=r"as many training rows .*Got \[40, 30\]"):
        fine_tune_batched([rows, short], n_classes=2, starts=starts, recipe=RECIPE, seeds=[0, 1], device="cpu")
