"""Embedding Space Maps: fitted on real base → fine-tuned embeddings, both fits beat the identity map on held-out
texts and agree; persistence and the hf-dataset-selector layout (fixture written by the package itself)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from store.task_files import load_task_dir
from transfer.embeddings import TextEncoder
from transfer.esm import EmbeddingSpaceMap, ESMRecipe, export_hfselect, import_hfselect

FIXTURES = Path(__file__).parent / "fixtures" / "esm_hfselect"


@pytest.fixture(scope="module")
def pairs(shared_tasks, sst2_small_tuned, encoder):
    """Base and fine-tuned embeddings of 600 real texts: 500 SST-2 ones to fit, 100 movie reviews held out."""
    texts = load_task_dir(shared_tasks / "sst2").split("validation").column("text").to_pylist()[:500]
    texts += load_task_dir(shared_tasks / "mr").split("test").column("text").to_pylist()[:100]
    tuned = TextEncoder(sst2_small_tuned[1], device="cpu")
    return encoder.encode(texts), tuned.encode(texts)


@pytest.mark.slow
def test_both_fits_beat_identity_on_held_out_texts_and_agree(pairs):
    base, tuned = pairs
    fit, held = slice(0, 500), slice(500, None)
    sgd = EmbeddingSpaceMap().fit(base[fit], tuned[fit])
    ridge = EmbeddingSpaceMap(fit_method="ridge").fit(base[fit], tuned[fit])
    identity = float(np.mean((base[held] - tuned[held]) ** 2))
    assert sgd.mse(base[held], tuned[held]) < 0.5 * identity
    assert ridge.mse(base[held], tuned[held]) < 0.5 * identity
    assert sgd.losses_[-1] < sgd.losses_[0]
    a, b = sgd.transform(base[held]), ridge.transform(base[held])
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.mean() > 0.99


def test_ridge_recovers_a_known_affine_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    weight, bias = rng.normal(size=(8, 8)), rng.normal(size=8)
    esm = EmbeddingSpaceMap(fit_method="ridge", ridge_alpha=0.0).fit(x, x @ weight.T + bias)
    assert EmbeddingSpaceMap(fit_method="ridge", ridge_alpha=1e6).fit(x, x @ weight.T).weight_ == pytest.approx(
        np.eye(8), abs=1e-3
    )  # a huge penalty keeps the identity: "fine-tuning changed nothing"
    np.testing.assert_allclose(esm.weight_, weight, atol=1e-4)
    np.testing.assert_allclose(esm.bias_, bias, atol=1e-4)
    np.testing.assert_allclose(esm.affine, np.hstack([weight, bias[:, None]]), atol=1e-4)


def test_sgd_fit_is_seeded_and_learns_a_known_map():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(512, 6)).astype(np.float32)
    y = x @ rng.normal(size=(6, 6)).T * 0.5
    recipe = ESMRecipe(lr=1e-2, epochs=30)
    first, second = EmbeddingSpaceMap(recipe=recipe).fit(x, y), EmbeddingSpaceMap(recipe=recipe).fit(x, y)
    np.testing.assert_array_equal(first.weight_, second.weight_)
    assert first.mse(x, y) < 0.05 * float(np.mean((x - y) ** 2))  # far better than the identity it starts from


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 4))
    esm = EmbeddingSpaceMap(fit_method="ridge").fit(x, 2 * x)
    esm.save(tmp_path / "m.safetensors", {"source": "sst2", "base_fp": "abc"})
    loaded, config = EmbeddingSpaceMap.load(tmp_path / "m.safetensors")
    assert config == {"params": esm.params(), "source": "sst2", "base_fp": "abc"}
    np.testing.assert_array_equal(loaded.transform(x), esm.transform(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_reads_the_layout_hf_dataset_selector_writes(tmp_path):
    """``model/`` was saved by hf-dataset-selector 0.2.1 (``ESM.save_pretrained``); ``forward.json`` holds its own
    forward pass on a fixed input."""
    esm, config = import_hfselect(FIXTURES / "model")
    forward = json.loads((FIXTURES / "forward.json").read_text())
    np.testing.assert_allclose(esm.transform(np.asarray(forward["input"], np.float32)), forward["output"], atol=1e-6)
    assert config["task_id"] == "sst2" and esm.params()["lr"] == 0.001
    exported = export_hfselect(esm, tmp_path / "out", {"base_model_name": "m", "task_id": "t"})
    reread, reread_config = import_hfselect(exported)
    np.testing.assert_array_equal(reread.weight_, esm.weight_)
    assert reread_config["esm_embedding_dim"] == 6 and reread_config["esm_architecture"] == "linear"


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="'fit_method' parameter of EmbeddingSpaceMap must be 'sgd' or 'ridge'"):
        EmbeddingSpaceMap(fit_method="lasso")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'tuned' parameter of EmbeddingSpaceMap must be a finite \[n, 3\]"):
        EmbeddingSpaceMap().fit(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(RuntimeError, match="not fitted yet"):
        EmbeddingSpaceMap().transform(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="'epochs' parameter of ESMRecipe must be a positive int"):
        ESMRecipe(epochs=0)
