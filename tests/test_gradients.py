"""Projected per-example gradient features: the batched paths equal a per-example loop (the LESS/ICONS way), the
dense projection is rebuilt identically from its seed, and the Kronecker-factored projection preserves inner
products (Johnson–Lindenstrauss) on real gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selection.gradients import (
    KroneckerFactors,
    dense_project,
    gradient_features,
    last_layer_linears,
    per_example_loop_features,
)
from store.task_files import load_task_dir
from transfer.finetune import load_base, tokenize_batch

SMALL_LAYERS = ["encoder.encoder.layer.5.attention.output.dense", "head"]


@pytest.fixture(scope="module")
def network_and_data(shared_tasks):
    network, tokenizer = load_base(None, 2, "mean", seed=0)
    train = load_task_dir(shared_tasks / "sst2").split("train").slice(0, 12)
    texts = train.column("text").to_pylist()
    texts[3] = texts[3] + " " + " ".join(["very"] * 30)  # one long example: the others are padded in its batch
    return network, tokenizer, texts, train.column("label").to_numpy()


def test_last_layer_linears_are_the_last_block_and_the_head(network_and_data):
    names = last_layer_linears(network_and_data[0])
    assert names[-1] == "head" and len(names) == 7 and all(".layer.5." in n for n in names[:-1])


@pytest.mark.parametrize("projection", ["kronecker", "dense"])
def test_batched_features_equal_a_per_example_loop(network_and_data, projection):
    network, tokenizer, texts, labels = network_and_data
    layers = None if projection == "kronecker" else SMALL_LAYERS
    options = dict(layers=layers, dim=1024, projection=projection, seed=3, max_length=64)
    batched = gradient_features(network, tokenizer, texts, labels, batch_size=5, project_every=4, **options)
    looped = per_example_loop_features(network, tokenizer, texts, labels, **options)
    assert batched.shape == looped.shape and batched.shape[1] <= 1024
    scale = np.abs(looped).max()
    np.testing.assert_allclose(batched, looped, rtol=0, atol=2e-4 * scale)
    assert not any(p.grad is not None for p in network.parameters())  # state restored
    assert all(p.requires_grad for p in network.parameters())


def test_dense_projection_is_rebuilt_from_its_seed_and_preserves_norms():
    torch.manual_seed(0)
    flat = torch.randn(6, 10_000)
    one = dense_project(flat, 2048, seed=7, block_rows=1000)
    again = dense_project(flat, 2048, seed=7, block_rows=1000)
    other = dense_project(flat, 2048, seed=8, block_rows=1000)
    assert torch.equal(one, again) and not torch.allclose(one, other)
    # A projection is linear: project the sum = sum of the projections.
    torch.testing.assert_close(
        dense_project(flat[:2].sum(0, keepdim=True), 2048, seed=7, block_rows=1000),
        one[:2].sum(0, keepdim=True),
        rtol=1e-4,
        atol=1e-3,
    )
    ratio = one.norm(dim=1) / flat.norm(dim=1)
    assert torch.all((ratio > 0.9) & (ratio < 1.1))  # JL: sqrt(2/2048) ≈ 3% relative spread


def test_kronecker_inner_products_approximate_the_exact_ones(network_and_data):
    """JL for the structured map P_out ⊗ P_in: cosines between projected real per-example gradients stay within
    a few 1/√k of the exact cosines (k ≈ 8,000 here; the bound tested is 0.1 absolute)."""
    network, tokenizer, texts, labels = network_and_data
    dense = per_example_loop_features(
        network, tokenizer, texts, labels, layers=SMALL_LAYERS, dim=8192, projection="dense", seed=0
    )
    modules = dict(network.named_modules())
    flat = []
    for text, label in zip(texts, labels, strict=True):
        network.zero_grad()
        batch = tokenize_batch(tokenizer, [text], None, 64, torch.device("cpu"))
        torch.nn.functional.cross_entropy(network(batch), torch.tensor([int(label)])).backward()
        flat.append(torch.cat([modules[n].weight.grad.reshape(-1) for n in SMALL_LAYERS]))
    network.zero_grad(set_to_none=True)
    flat_np = torch.stack(flat).numpy().astype(np.float64)
    kron = gradient_features(network, tokenizer, texts, labels, layers=SMALL_LAYERS, dim=16384, seed=1)

    def cosines(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return x @ x.T

    assert np.abs(cosines(kron) - cosines(flat_np)).max() < 0.1
    assert np.abs(cosines(dense) - cosines(flat_np)).max() < 0.1
    norms = np.linalg.norm(kron, axis=1) / np.linalg.norm(flat_np, axis=1)
    assert np.all((norms > 0.8) & (norms < 1.2))


def test_a_side_that_needs_no_compression_is_kept_exactly(network_and_data):
    """The binary head's output side (2) and, at this dim, its input side (384) fit their shares, so its block of
    the features is the exact gradient (softmax(z) − onehot(y)) hᵀ for every seed. A random 2 × 2 sign factor
    (the old behaviour) maps every head gradient, all ∝ (−1, 1) on the output side, to 0 or doubles its squared
    norm, one seed in four each."""
    network, tokenizer, texts, labels = network_and_data
    network.eval()
    with torch.no_grad():
        pooled = network.pooled(tokenize_batch(tokenizer, texts, None, 64, torch.device("cpu")))
        error = torch.softmax(network.head(pooled), dim=1) - torch.eye(2)[torch.tensor(labels, dtype=torch.long)]
    exact = torch.einsum("bo,bi->boi", error, pooled).reshape(len(texts), -1).numpy()
    for seed in range(8):
        features = gradient_features(network, tokenizer, texts, labels, layers=SMALL_LAYERS, dim=2048, seed=seed)
        head = features[:, -exact.shape[1] :]
        np.testing.assert_allclose(np.linalg.norm(head, axis=1), np.linalg.norm(exact, axis=1), rtol=1e-4)
        np.testing.assert_allclose(head, exact, rtol=0, atol=1e-4 * np.abs(exact).max())


def test_kronecker_factors_split_the_dimension(network_and_data):
    network = network_and_data[0]
    factors = KroneckerFactors.build(network, last_layer_linears(network), 8192, seed=0)
    assert factors.dim <= 8192 and factors.dim > 6000
    same = KroneckerFactors.build(network, last_layer_linears(network), 8192, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(factors.p_in, same.p_in, strict=True))


def test_bad_parameters_name_themselves(network_and_data):
    network, tokenizer, texts, labels = network_and_data
    with pytest.raises(ValueError, match="'projection' parameter of gradient_features must be one of"):
        gradient_features(network, tokenizer, texts, labels, projection="sparse")
    with pytest.raises(ValueError, match="'layers' parameter of gradient_features must name nn.Linear modules"):
        gradient_features(network, tokenizer, texts, labels, layers=["encoder.encoder.layer.5.output.LayerNorm"])
    with pytest.raises(ValueError, match="'dim' parameter of gradient_features must be a positive int. Got 0"):
        gradient_features(network, tokenizer, texts, labels, dim=0)
