"""The GPU path (`bench.gpu`): CUDA results equal CPU results on the random-weights MiniLM of ``gpu-kit/`` (built
here from its config with seed 0; the kit is prepared first when it is missing), and the CPU fallback of
``python -m bench gpu`` runs end to end and fails when a check fails.

The ``gpu`` tests need CUDA (``pytest -m gpu tests/test_gpu.py``; `bench.gpu` runs them on the device machine,
which has neither prefect, duckdb, faiss nor ../shared: this file imports only bench, transfer, selection, numpy
and torch).
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

import bench.gpu
from bench.__main__ import main
from bench.embed import cosine_rows
from bench.gradients import relative_diff
from selection.gradients import gradient_features, per_example_loop_features
from transfer.embeddings import TextEncoder
from transfer.finetune import Recipe, fine_tune, load_base
from transfer.neighbors import nearest_neighbors


@pytest.fixture(scope="module")
def kit():
    return bench.gpu.ensure_kit()


@pytest.fixture(scope="module")
def model(kit, tmp_path_factory):
    """The random-weights encoder (MiniLM's config, ``torch.manual_seed(0)``)."""
    return bench.gpu.random_encoder(kit / "model", tmp_path_factory.mktemp("gpu") / "encoder")


@pytest.fixture(scope="module")
def texts(kit):
    return bench.gpu.kit_texts(kit)


@pytest.mark.gpu
def test_fine_tune_on_cuda_lowers_the_loss_and_matches_cpu(model, texts, tmp_path):
    """Full-batch steps on a dropout-free copy: no random numbers are drawn, so CUDA and CPU follow one path."""
    still = bench.gpu.without_dropout(model, tmp_path / "no-dropout")
    sentences, labels = texts["sst2"]
    recipe = Recipe(lr=2e-5, epochs=8, batch_size=32, max_examples=32, max_length=64)
    runs = {
        device: fine_tune(sentences[:32], labels[:32], n_classes=2, model=still, recipe=recipe, device=device)
        for device in ("auto", "cpu")
    }
    assert next(runs["auto"].model.parameters()).device.type == "cuda"
    losses = runs["auto"].losses
    assert len(losses) == 8 and losses[-1] < 0.95 * losses[0], losses
    np.testing.assert_allclose(losses, runs["cpu"].losses, rtol=1e-3)


@pytest.mark.gpu
def test_embeddings_on_cuda_equal_cpu(model, texts):
    sentences = texts["sst2"][0][:128] + texts["ag_news"][0][:128]
    cuda = TextEncoder(model, device="auto")
    assert cuda.device.type == "cuda"
    on_cuda = cuda.encode(sentences)
    assert cosine_rows(on_cuda, TextEncoder(model, device="cpu").encode(sentences)).min() >= 0.9999
    fast = TextEncoder(model, device="cuda", precision="fast")
    assert fast.backend in {"torch-bfloat16", "torch-float16"}
    assert cosine_rows(fast.encode(sentences), on_cuda).mean() >= 0.99


@pytest.mark.gpu
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_torch_knn_on_cuda_equals_cpu(metric):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((20_000, 384), dtype=np.float32)
    queries = rng.standard_normal((512, 384), dtype=np.float32)
    on_cuda = nearest_neighbors(queries, base, 10, metric=metric, backend="torch", device="cuda", block_size=128)
    on_cpu = nearest_neighbors(queries, base, 10, metric=metric, backend="torch", device="cpu")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(on_cuda[1], on_cpu[1], strict=True)])
    assert recall >= 0.999
    assert np.abs(on_cuda[0] - on_cpu[0]).max() <= 1e-5 * np.abs(on_cpu[0]).max()


@pytest.mark.gpu
def test_gradient_features_on_cuda_equal_cpu_and_the_loop(model, texts):
    sentences, labels = texts["sst2"][0][:64], texts["sst2"][1][:64]
    cuda, tokenizer = load_base(model, 2, "mean", seed=0)
    cuda.to("cuda")
    cpu, _ = load_base(model, 2, "mean", seed=0)
    on_cuda = gradient_features(cuda, tokenizer, sentences, labels)
    assert relative_diff(on_cuda, gradient_features(cpu, tokenizer, sentences, labels)) <= 1e-4
    looped = per_example_loop_features(cuda, tokenizer, sentences[:16], labels[:16])
    assert relative_diff(on_cuda[:16], looped) < 1e-3


CHECKS = {
    "device_auto",
    "embed_device_vs_cpu",
    "embed_ours_vs_peer",
    "gradients_batched_vs_loop",
    "gradients_device_vs_cpu",
    "finetune_loss_falls",
    "finetune_device_vs_cpu",
    "esm_scores_finite",
    "esm_gram_vs_direct",
    "knn_recall",
    "knn_distances",
}
FIGURES = [
    ("embed", "texts_per_s", "exact"),
    ("embed", "texts_per_s", "peer"),
    ("gradients", "batched_features_per_s"),
    ("gradients", "loop_features_per_s"),
    ("gradients", "ratio"),
    ("finetune", "examples_per_s"),
    ("esm_logme", "ms_per_source"),
    ("knn", "queries_per_s", "device_torch"),
]


@pytest.mark.slow
def test_cpu_fallback_runs_end_to_end_and_fails_on_a_failed_check(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, even on a GPU box
    out = tmp_path / "gpu.json"
    assert bench.gpu.run(out) == 0
    assert "no CUDA GPU found: ran the CPU fallback" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["gpu"] is False and result["passed"] is True and result["failed_checks"] == []
    assert list(result["sections"]) == list(bench.gpu.SECTIONS)
    checks = {name: c for s in result["sections"].values() for name, c in s.get("checks", {}).items()}
    assert set(checks) == CHECKS and all(c["passed"] for c in checks.values()), checks
    for path in FIGURES:
        value = result["sections"]
        for key in path:
            value = value[key]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (path, value)
    assert "need CUDA" in result["sections"]["pytest"]["skipped"]
    assert result["seconds"] < 120

    # An impossible tolerance: the command (python -m bench gpu) must exit 1 and name the failed check.
    monkeypatch.setitem(bench.gpu.TOLERANCES, "knn_recall", 1.01)
    failing = tmp_path / "failing.json"
    monkeypatch.setattr(sys, "argv", ["bench", "gpu", "--only", "knn", "--out", str(failing)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    result = json.loads(failing.read_text())
    assert result["failed_checks"] == ["knn_recall"] and result["passed"] is False
    assert list(result["sections"]) == ["environment", "knn"]
