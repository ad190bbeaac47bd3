"""Projected per-example gradient features (LESS, Xia et al. 2024; ICONS, Wu et al. 2024/2025; projections as in
TRAK, Park et al. 2023; the Kronecker-factored path from LoGra, Choe et al. 2024).

For an example i with loss ℓ_i (cross-entropy of its label; MSE for regression) and a linear layer y_t = W a_t
(t over the example's tokens), the weight gradient is a sum of outer products

    ∇_W ℓ_i = Σ_t g_t a_tᵀ            g_t = ∂ℓ_i/∂y_t  [out],  a_t the layer input [in].

Transformer examples do not interact in a forward pass (attention stays inside an example; padded positions get
zero output gradients because pooling masks them), so ONE backward pass of Σ_i ℓ_i over a batch yields every
example's (a_t, g_t), captured with module hooks; the per-example gradients follow without a batch-size-1 loop.
(torch.func's vmap over the Hugging Face model gives the same numbers; the hooks avoid replaying the model per
example and give the layer factors that the Kronecker path needs.)

Two projections to a fixed dimension k:

- ``"dense"`` (LESS/TRAK): φ_i = Rᵀ vec(∇ℓ_i) / √k with R [P, k] Rademacher (±1) or Gaussian, P the number of
  chosen weights. R is never stored: rows are generated block by block from (seed, block index), so any process
  rebuilds the same projection. Cost O(P·k) per example.
- ``"kronecker"`` (LoGra): per layer, φ_i = vec(P_out (Σ_t g_t a_tᵀ) P_inᵀ) = vec(Σ_t (P_out g_t)(P_in a_t)ᵀ) with
  P_out [k_o, out], P_in [k_i, in] (entries ±1/√k_o, ±1/√k_i), so the [out, in] gradient is never formed; it equals
  (P_out ⊗ P_in) vec(∇_W ℓ_i), a different (structured) JL projection from the dense one. A side that needs no
  compression (k = its size, e.g. a classifier head's C outputs) keeps the identity: exact, where a square random
  matrix only distorts. Layers are concatenated.

Both keep E‖φ‖² = ‖∇ℓ‖² (Johnson–Lindenstrauss), so inner products and cosines are preserved approximately.
Features are returned float32 [n, k]; callers L2-normalise them (ICONS) and may store them as fp16.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from transfer.checks import check_choice, check_positive_int
from transfer.errors import InputError
from transfer.finetune import EncoderWithHead, tokenize_batch

Projection = Literal["dense", "kronecker"]
Distribution = Literal["rademacher", "gaussian"]
# Part of every feature cache key and ICONS subset id: bump it when the numbers a projection gives change
# (2: identity Kronecker factors for the sides that need no compression).
FEATURES_VERSION = 2
PROJECTIONS = ("dense", "kronecker")
DISTRIBUTIONS = ("rademacher", "gaussian")
_LAYER_INDEX = re.compile(r"\.layer\.(\d+)\.")
_OWNER = "gradient_features"


def last_layer_linears(network: EncoderWithHead) -> list[str]:
    """Names of the linear layers of the encoder's last transformer block plus the head (the default parameter
    subset: the layers closest to the loss, whose gradients are cheapest to reach)."""
    names = [n for n, m in network.named_modules() if isinstance(m, nn.Linear) and _LAYER_INDEX.search(n + ".")]
    if not names:
        raise InputError("The network has no '.layer.N.' linear layers; name the layers with 'layers='.")
    last = max(int(_LAYER_INDEX.search(n + ".").group(1)) for n in names)  # type: ignore[union-attr]
    return [n for n in names if int(_LAYER_INDEX.search(n + ".").group(1)) == last] + ["head"]  # type: ignore[union-attr]


def _generator(seed: int, *stream: int) -> torch.Generator:
    """A CPU generator seeded from (seed, *stream) so every block or layer has its own reproducible stream."""
    mixed = np.random.SeedSequence([seed, *stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed) & ((1 << 63) - 1))


def _random_matrix(rows: int, cols: int, generator: torch.Generator, distribution: str) -> torch.Tensor:
    if distribution == "rademacher":
        return torch.randint(0, 2, (rows, cols), generator=generator, dtype=torch.int8).float().mul_(2).sub_(1)
    return torch.randn(rows, cols, generator=generator)


def dense_project(
    flat: torch.Tensor, dim: int, *, seed: int, distribution: Distribution = "rademacher", block_rows: int = 4096
) -> torch.Tensor:
    """Project per-example gradients ``flat`` [b, P] to [b, dim]: ``flat @ R / √dim`` with R [P, dim] generated in
    row blocks of ``block_rows`` from (seed, block index) and discarded after use (never stored)."""
    check_positive_int("dense_project", "dim", dim)
    out = torch.zeros(flat.shape[0], dim, dtype=torch.float32)
    for block, first in enumerate(range(0, flat.shape[1], block_rows)):
        rows = flat[:, first : first + block_rows].float().cpu()
        out += rows @ _random_matrix(rows.shape[1], dim, _generator(seed, 0, block), distribution)
    return out / math.sqrt(dim)


def _factor(k: int, side: int, generator: torch.Generator, distribution: str) -> torch.Tensor:
    """A [k, side] JL factor (entries ±1/√k or N(0, 1/k)); the identity when k = side."""
    if k == side:
        return torch.eye(side)
    return _random_matrix(k, side, generator, distribution) / math.sqrt(k)


@dataclass(frozen=True)
class KroneckerFactors:
    """Per-layer factors P_out [k_o, out] and P_in [k_i, in] (entries ±1/√k or N(0, 1/k), or the identity where
    k equals the side), rebuilt from the seed."""

    layers: tuple[str, ...]
    p_out: tuple[torch.Tensor, ...]
    p_in: tuple[torch.Tensor, ...]

    @property
    def dim(self) -> int:
        return sum(o.shape[0] * i.shape[0] for o, i in zip(self.p_out, self.p_in, strict=True))

    @classmethod
    def build(
        cls,
        network: nn.Module,
        layers: Sequence[str],
        dim: int,
        *,
        seed: int,
        distribution: Distribution = "rademacher",
    ) -> KroneckerFactors:
        """Split ``dim`` evenly over ``layers``: each gets k_o = min(out, r) and k_i = min(in, ⌊(dim / L) / k_o⌋)
        with r = ⌊√(dim / L)⌋, so the total is at most ``dim``. A factor as wide as its side (k = out or k = in) is
        the identity: a square random sign matrix would only distort that side (a binary head's P_out [2, 2] maps
        every output gradient, all ∝ (−1, 1), to 0 for one seed in four and doubles its squared norm for another one
        in four)."""
        modules = _linear_modules(network, layers)
        share = dim // len(layers)
        if share < 1:
            raise InputError(f"The 'dim' parameter of KroneckerFactors.build must be >= {len(layers)}. Got {dim}.")
        p_out, p_in = [], []
        for index, module in enumerate(modules):
            out_features, in_features = module.out_features, module.in_features
            k_out = min(out_features, max(1, math.isqrt(share)))
            k_in = min(in_features, max(1, share // k_out))
            p_out.append(_factor(k_out, out_features, _generator(seed, 1, index), distribution))
            p_in.append(_factor(k_in, in_features, _generator(seed, 2, index), distribution))
        return cls(tuple(layers), tuple(p_out), tuple(p_in))

    def project_gradient(self, layer: int, gradient: torch.Tensor) -> torch.Tensor:
        """P_out ∇W P_inᵀ flattened, for one full weight gradient [out, in] (the per-example-loop reference)."""
        return (self.p_out[layer] @ gradient.float().cpu() @ self.p_in[layer].T).reshape(-1)


class _Capture:
    """A forward hook per linear layer keeps its input a [b, T, in] and hooks its output tensor, whose gradient
    g [b, T, out] arrives during the backward pass."""

    def __init__(self, network: nn.Module, layers: Sequence[str]) -> None:
        modules = _linear_modules(network, layers)
        self.inputs: dict[int, torch.Tensor] = {}
        self.grads: dict[int, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(modules)]

    def _hook(self, index: int) -> Callable[..., None]:
        def keep(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self.inputs[index] = args[0].detach()
            if output.requires_grad:
                output.register_hook(lambda grad: self.grads.__setitem__(index, grad.detach()))

        return keep

    def factors(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(a [b, T, in], g [b, T, out]) of one layer; a pooled input [b, in] becomes T = 1."""
        a, g = self.inputs[index], self.grads[index]
        return (a[:, None], g[:, None]) if a.dim() == 2 else (a, g)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _linear_modules(network: nn.Module, layers: Sequence[str]) -> list[nn.Linear]:
    modules = dict(network.named_modules())
    found = [modules.get(name) for name in layers]
    wrong = [name for name, module in zip(layers, found, strict=True) if not isinstance(module, nn.Linear)]
    if wrong or not layers:
        raise InputError(f"The 'layers' parameter of {_OWNER} must name nn.Linear modules. Not linear: {wrong}.")
    return found  # type: ignore[return-value]


def _per_example_losses(network: EncoderWithHead, batch: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    output = network(batch)
    if network.head.out_features == 1:
        return (output[:, 0] - labels.float()) ** 2
    return nn.functional.cross_entropy(output, labels.long(), reduction="none")


def gradient_features(
    network: EncoderWithHead,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[float] | np.ndarray,
    *,
    text_pairs: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    dim: int = 8192,
    projection: Projection = "kronecker",
    distribution: Distribution = "rademacher",
    seed: int = 0,
    max_length: int = 64,
    batch_size: int = 32,
    project_every: int = 256,
) -> np.ndarray:
    """Projected per-example loss gradients, float32 [n, k] (k = ``dim`` for ``"dense"``, ≤ ``dim`` for
    ``"kronecker"``; see the module docstring), w.r.t. the weights of ``layers`` (default: `last_layer_linears`).

    The network runs in eval mode (no dropout); one backward per batch of ``batch_size``. Batches are formed in
    order of token length (rows are returned in the input order), so little of a batch is padding (in input order,
    about half the tokens of batches of 32 of the shared tasks' texts are). The dense path projects
    ``project_every`` examples at a time, so each block of its random matrix is generated once per chunk.
    """
    check_positive_int(_OWNER, "dim", dim)
    check_positive_int(_OWNER, "batch_size", batch_size)
    check_positive_int(_OWNER, "project_every", project_every)
    check_choice(_OWNER, "projection", projection, PROJECTIONS)
    check_choice(_OWNER, "distribution", distribution, DISTRIBUTIONS)
    if len(labels) != len(texts) or (text_pairs is not None and len(text_pairs) != len(texts)):
        raise InputError(f"The 'labels' (and 'text_pairs') parameters of {_OWNER} need one entry per text.")
    names = list(layers) if layers is not None else last_layer_linears(network)
    factors = KroneckerFactors.build(network, names, dim, seed=seed, distribution=distribution)
    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    wanted = {id(m.weight) for m in _linear_modules(network, names)}
    saved = [(p, p.requires_grad) for p in network.parameters()]
    for parameter, _ in saved:
        parameter.requires_grad_(id(parameter) in wanted)
    capture = _Capture(network, names)
    target = torch.as_tensor(np.array(labels, dtype=np.float64))
    order = _by_length(tokenizer, texts, text_pairs, max_length)
    chunks: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []
    try:
        for first in range(0, len(texts), batch_size):
            rows = order[first : first + batch_size]
            pairs = [text_pairs[i] for i in rows] if text_pairs is not None else None
            batch = tokenize_batch(tokenizer, [texts[i] for i in rows], pairs, max_length, device)
            network.zero_grad(set_to_none=True)
            _per_example_losses(network, batch, target[torch.as_tensor(rows)].to(device)).sum().backward()
            if projection == "kronecker":
                chunks.append(_kronecker_batch(capture, factors))
                continue
            pending.append(torch.cat([_full_gradients(capture, i) for i in range(len(names))], dim=1))
            if sum(p.shape[0] for p in pending) >= project_every:
                chunks.append(dense_project(torch.cat(pending), dim, seed=seed, distribution=distribution))
                pending = []
        if pending:
            chunks.append(dense_project(torch.cat(pending), dim, seed=seed, distribution=distribution))
    finally:
        capture.close()
        network.zero_grad(set_to_none=True)
        for parameter, flag in saved:
            parameter.requires_grad_(flag)
        network.train(was_training)
    width = dim if projection == "dense" else factors.dim
    if not chunks:
        return np.empty((0, width), np.float32)
    features = np.empty((len(texts), width), np.float32)
    features[order] = torch.cat(chunks).numpy()
    return features


def _by_length(tokenizer: Any, texts: Sequence[str], text_pairs: Sequence[str] | None, max_length: int) -> np.ndarray:
    """Row indices in order of (truncated) token length, ties in input order."""
    if not texts:
        return np.empty(0, np.int64)
    pairs = list(text_pairs) if text_pairs is not None else None
    encoded = tokenizer(list(texts), pairs, truncation=True, max_length=max_length)["input_ids"]
    return np.argsort(np.array([len(ids) for ids in encoded]), kind="stable")


def _full_gradients(capture: _Capture, index: int) -> torch.Tensor:
    """Per-example weight gradients of one layer, flattened [b, out·in] (row-major like ``weight.grad``)."""
    a, g = capture.factors(index)
    return torch.einsum("bto,bti->boi", g.float(), a.float()).reshape(a.shape[0], -1).cpu()


def _kronecker_batch(capture: _Capture, factors: KroneckerFactors) -> torch.Tensor:
    """[b, Σ k_o·k_i]: per layer Σ_t (P_out g_t)(P_in a_t)ᵀ, flattened, never forming [out, in]."""
    parts = []
    for index in range(len(factors.layers)):
        a, g = capture.factors(index)
        p_out = factors.p_out[index].to(g.device)
        p_in = factors.p_in[index].to(a.device)
        projected = torch.einsum("btk,btj->bkj", g.float() @ p_out.T, a.float() @ p_in.T)
        parts.append(projected.reshape(a.shape[0], -1).cpu())
    return torch.cat(parts, dim=1)


def per_example_loop_features(
    network: EncoderWithHead,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[float] | np.ndarray,
    *,
    text_pairs: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    dim: int = 8192,
    projection: Projection = "kronecker",
    distribution: Distribution = "rademacher",
    seed: int = 0,
    max_length: int = 64,
) -> np.ndarray:
    """The reference way (LESS/ICONS): one forward and backward per example (batch size 1), read each chosen
    weight's ``.grad``, then project with the same projection as `gradient_features`. Same output, for tests and
    the benchmark."""
    names = list(layers) if layers is not None else last_layer_linears(network)
    factors = KroneckerFactors.build(network, names, dim, seed=seed, distribution=distribution)
    device = next(network.parameters()).device
    network.eval()
    weights = [m.weight for m in _linear_modules(network, names)]
    saved = [(p, p.requires_grad) for p in network.parameters()]
    for parameter, _ in saved:
        parameter.requires_grad_(any(parameter is w for w in weights))
    target = torch.as_tensor(np.array(labels, dtype=np.float64))
    rows = []
    try:
        for i in range(len(texts)):
            pair = [text_pairs[i]] if text_pairs is not None else None
            batch = tokenize_batch(tokenizer, [texts[i]], pair, max_length, device)
            network.zero_grad(set_to_none=True)
            _per_example_losses(network, batch, target[i : i + 1].to(device)).sum().backward()
            grads = [w.grad.detach() for w in weights]  # type: ignore[union-attr]
            if projection == "kronecker":
                rows.append(torch.cat([factors.project_gradient(k, g) for k, g in enumerate(grads)]))
            else:
                rows.append(torch.cat([g.float().reshape(-1).cpu() for g in grads]))
    finally:
        network.zero_grad(set_to_none=True)
        for parameter, flag in saved:
            parameter.requires_grad_(flag)
    stacked = torch.stack(rows)
    if projection == "dense":
        stacked = dense_project(stacked, dim, seed=seed, distribution=distribution)
    return stacked.numpy()
