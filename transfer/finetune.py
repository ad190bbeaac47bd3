"""Fine-tuning an encoder with a linear head: the recipe shared by ESMs, measured transfer, VoG and ICONS.

Model: pooled encoder states (mean over real tokens by default) → ``Linear(d, C)``; cross-entropy over C classes
for classification, MSE on one output for regression. Optimiser: AdamW (lr, weight decay), linear warm-up then
linear decay to zero, gradient-norm clipping, fixed batch size and epochs — the intermediate-task recipe of the
ESM paper (Schulte et al. 2024, "Less is More": 3 epochs, batch 32, lr 2e-5, weight decay 0.01, ≤ 10,000 source
examples). A fine-tuned model is saved as an ordinary Hugging Face model directory (plus ``head.safetensors`` and
``recipe.json``), so `transfer.embeddings.TextEncoder` embeds with it directly and its fingerprint is its content.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transfer.checks import check_positive_int
from transfer.embeddings import POOLINGS, Pooling, pool
from transfer.encoder import DEFAULT_MODEL, resolve_device, resolve_model_path
from transfer.errors import InputError

HEAD_FILE = "head.safetensors"
RECIPE_FILE = "recipe.json"


@dataclass(frozen=True)
class Recipe:
    """Fine-tuning hyper-parameters (all of them: the checkpoint cache key includes every field).

    ``length_buckets``: each epoch's shuffled order is cut into windows of `BUCKET_BATCHES` batches, each window
    is sorted by token length and cut into batches, and the batches are shuffled: batches of similar lengths pad
    less (the same number of optimiser steps, each example once per epoch; Hugging Face's ``group_by_length``
    does the same with larger windows). Off in the declared budgets, whose committed results were measured
    without it."""

    lr: float = 2e-5
    weight_decay: float = 0.01
    epochs: int = 3
    batch_size: int = 32
    max_examples: int = 10_000
    max_length: int = 128
    warmup_ratio: float = 0.0
    grad_clip: float = 1.0
    pooling: Pooling = "mean"
    length_buckets: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_examples", "max_length"):
            check_positive_int("Recipe", name, getattr(self, name))
        for name in ("lr", "grad_clip"):
            if not getattr(self, name) > 0:
                raise InputError(f"The {name!r} parameter of Recipe must be > 0. Got {getattr(self, name)!r} instead.")
        if self.weight_decay < 0 or not 0 <= self.warmup_ratio < 1:
            raise InputError(
                f"Recipe needs weight_decay >= 0 and warmup_ratio in [0, 1). Got {self.weight_decay!r} and "
                f"{self.warmup_ratio!r} instead."
            )
        if not isinstance(self.length_buckets, bool):
            raise InputError(
                f"The 'length_buckets' parameter of Recipe must be a bool. Got {self.length_buckets!r} instead."
            )
        if self.pooling not in POOLINGS:
            raise InputError(
                f"The 'pooling' parameter of Recipe must be one of {list(POOLINGS)}. Got {self.pooling!r}."
            )

    def examples(self, n_available: int) -> int:
        """Example-passes one fine-tune on ``n_available`` rows makes: min(n, max_examples) × epochs."""
        return min(n_available, self.max_examples) * self.epochs

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Declared budgets. SOURCE_RECIPE is the paper's; SMALL_BUDGET keeps CPU demos and tests to seconds per task;
# TARGET_RECIPE trains a few hundred target examples properly (lr 2e-5 with batch 32 leaves a 300-example SST-2
# model at 0.61-0.65 accuracy; this recipe trains it in ~40 s on two idle cores; DECISIONS.md).
SOURCE_RECIPE = Recipe()
SMALL_BUDGET = Recipe(lr=5e-5, batch_size=16, epochs=1, max_examples=500, max_length=64, warmup_ratio=0.06)
TARGET_RECIPE = Recipe(lr=5e-5, batch_size=16, epochs=3, max_examples=1000, max_length=64, warmup_ratio=0.06)
# The transfer atlas's source recipe (bench/transfer_atlas.py, chosen by measurement: README): twice the gain spread
# of SMALL_BUDGET between sources for 1,500 more example-epochs per checkpoint.
MEDIUM_RECIPE = Recipe(
    lr=5e-5, batch_size=16, epochs=2, max_examples=1000, max_length=64, warmup_ratio=0.06, length_buckets=True
)


class EncoderWithHead(nn.Module):
    """``encoder`` (a Hugging Face model) → pooling → ``Linear(d, n_outputs)``. Outputs logits [b, C] or
    regression values [b, 1]."""

    def __init__(self, encoder: nn.Module, n_outputs: int, pooling: str = "mean") -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.head = nn.Linear(int(encoder.config.hidden_size), n_outputs)  # type: ignore[union-attr,arg-type]

    def pooled(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        output = self.encoder(**batch)
        return pool(output.last_hidden_state, batch["attention_mask"], self.pooling, output)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.pooled(batch))


@dataclass
class FineTuned:
    """A fine-tuned model with its tokenizer, recipe and training record."""

    model: EncoderWithHead
    tokenizer: Any
    recipe: Recipe
    kind: str
    n_examples: int
    steps: int
    seconds: float
    losses: list[float]


# AdamW's fused kernel (one pass over all parameters, as Hugging Face's Trainer uses by default) where torch has
# it: the same update to float rounding, several times faster than the per-tensor loop on CPU, where the step over
# MiniLM's 11.7M-parameter word-embedding matrix was about a quarter of a small target's fine-tune.
FUSED_ADAMW_DEVICES = ("cpu", "cuda")
BUCKET_BATCHES = 8  # batches per length-sorted window (Recipe.length_buckets)
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight")  # parameters AdamW does not decay


def epoch_batches(
    order: np.ndarray, lengths: np.ndarray | None, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch's batches of example indices from its shuffled ``order`` [n]: consecutive chunks, or, given
    token ``lengths`` (indexed by example), length-bucketed batches (`Recipe.length_buckets`) in a shuffled order.
    The window is a whole number of batches, so the batch count is ceil(n / batch_size) either way."""
    if lengths is None:
        return [order[first : first + batch_size] for first in range(0, len(order), batch_size)]
    window = BUCKET_BATCHES * batch_size
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[first : first + batch_size] for first in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def training_order(
    chosen: np.ndarray, lengths: np.ndarray | None, recipe: Recipe, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Every optimiser step's example indices, epoch after epoch: `epoch_batches` of a fresh shuffle of ``chosen``
    [n] per epoch (``rng``: the run's seeded generator, used for nothing else)."""
    for _ in range(recipe.epochs):
        order = chosen[rng.permutation(len(chosen))]
        yield from epoch_batches(order, lengths, recipe.batch_size, rng)


def lr_schedule(recipe: Recipe, n_examples: int) -> tuple[int, Callable[[int], float]]:
    """(optimiser steps of a run on ``n_examples`` rows, the LR factor of step k): linear warm-up to 1, then linear
    decay to 0."""
    total = -(-n_examples // recipe.batch_size) * recipe.epochs
    warmup = int(round(recipe.warmup_ratio * total))

    def lr_factor(step: int) -> float:
        return (step + 1) / max(1, warmup) if step < warmup else max(0.0, (total - step) / max(1, total - warmup))

    return total, lr_factor


def decay_groups(named: Iterable[tuple[str, torch.Tensor]], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups of (name, parameter) pairs: ``weight_decay`` on all but biases and LayerNorm weights."""
    named = list(named)
    return [
        {"params": [p for n, p in named if not n.endswith(NO_DECAY)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n.endswith(NO_DECAY)], "weight_decay": 0.0},
    ]


def token_lengths(
    tokenizer: Any, texts: Sequence[str], text_pairs: Sequence[str] | None, max_length: int
) -> np.ndarray:
    """Tokens per example after truncation to ``max_length`` [n] (special tokens included)."""
    encoded = tokenizer(
        list(texts), list(text_pairs) if text_pairs is not None else None, truncation=True, max_length=max_length
    )
    return np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)


def sample_indices(n: int, max_examples: int, seed: int) -> np.ndarray:
    """The rows a recipe trains on: all ``n`` if ``n <= max_examples``, else a seeded sample (sorted)."""
    if n <= max_examples:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 1]).choice(n, size=max_examples, replace=False))


def check_training_rows(
    texts: Sequence[str], labels: Sequence[float] | np.ndarray, text_pairs: Sequence[str] | None, n_classes: int | None
) -> torch.Tensor:
    """The labels of `fine_tune`'s rows as a float64 tensor [n], after checking the rows and ``n_classes``."""
    if len(texts) == 0:
        raise InputError("The 'texts' parameter of fine_tune must hold at least one text. Got 0.")
    if len(labels) != len(texts) or (text_pairs is not None and len(text_pairs) != len(texts)):
        raise InputError(
            f"The 'labels' (and 'text_pairs') parameters of fine_tune must have one entry per text ({len(texts)}). "
            f"Got {len(labels)} labels" + ("" if text_pairs is None else f" and {len(text_pairs)} pairs") + "."
        )
    if n_classes is not None and (not isinstance(n_classes, int) or n_classes < 2):
        raise InputError(f"The 'n_classes' parameter of fine_tune must be an int >= 2 or None. Got {n_classes!r}.")
    target = torch.as_tensor(np.array(labels, dtype=np.float64))
    if n_classes is not None and (target.min() < 0 or target.max() >= n_classes or (target != target.round()).any()):
        raise InputError(f"The 'labels' parameter of fine_tune must be class indices in [0, {n_classes}).")
    return target


def load_base(model: str | os.PathLike[str] | None, n_outputs: int, pooling: str, seed: int) -> tuple[Any, Any]:
    """A fresh ``EncoderWithHead`` on the base encoder (head initialised from ``seed``) and its tokenizer."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = resolve_model_path(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = EncoderWithHead(AutoModel.from_pretrained(path), n_outputs, pooling)
    return network, AutoTokenizer.from_pretrained(path)


def tokenize_batch(
    tokenizer: Any, texts: Sequence[str], text_pairs: Sequence[str] | None, max_length: int, device: torch.device
) -> dict[str, torch.Tensor]:
    encoded = tokenizer(
        list(texts),
        list(text_pairs) if text_pairs is not None else None,
        truncation=True,
        max_length=max_length,
        padding=True,
        return_tensors="pt",
    )
    return {k: v.to(device) for k, v in encoded.items()}


def fine_tune(
    texts: Sequence[str],
    labels: Sequence[float] | np.ndarray,
    *,
    n_classes: int | None,
    text_pairs: Sequence[str] | None = None,
    model: str | os.PathLike[str] | None = DEFAULT_MODEL,
    recipe: Recipe = SOURCE_RECIPE,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: Callable[[int], None] | None = None,
    on_step: Callable[[int, EncoderWithHead], None] | None = None,
) -> FineTuned:
    """Fine-tune ``model`` on (``texts``[, ``text_pairs``], ``labels``).

    ``n_classes`` = number of classes for classification (labels are class indices), ``None`` for regression.
    At most ``recipe.max_examples`` examples are used (a seeded sample without replacement). Randomness (sample,
    head initialisation, shuffling, dropout) comes only from ``seed``; the global torch RNG is left untouched.
    ``progress`` is called with the number of examples done after every step. ``on_step`` is called after every
    optimiser step (and its scheduler step) with the 1-based step number and the network, still in training mode;
    a caller that keeps checkpoints copies ``network.state_dict()`` there (`selection.vog` does, at its chosen steps).
    It runs inside the seeded RNG context: one that draws torch random numbers changes the rest of the run.
    """
    target = check_training_rows(texts, labels, text_pairs, n_classes)
    resolved = resolve_device(device)
    rng = np.random.default_rng(seed)
    chosen = sample_indices(len(texts), recipe.max_examples, seed)
    network, tokenizer = load_base(model, n_classes or 1, recipe.pooling, seed)
    network.to(resolved).train()
    groups = decay_groups(network.named_parameters(), recipe.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=recipe.lr, fused=resolved.type in FUSED_ADAMW_DEVICES)
    total, lr_factor = lr_schedule(recipe, len(chosen))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    loss_fn: nn.Module = nn.CrossEntropyLoss() if n_classes is not None else nn.MSELoss()
    lengths = token_lengths(tokenizer, texts, text_pairs, recipe.max_length) if recipe.length_buckets else None
    losses: list[float] = []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[resolved.index or 0] if resolved.type == "cuda" else []):
        torch.manual_seed(seed)
        for index in training_order(chosen, lengths, recipe, rng):
            batch = tokenize_batch(
                tokenizer,
                [texts[i] for i in index],
                [text_pairs[i] for i in index] if text_pairs is not None else None,
                recipe.max_length,
                resolved,
            )
            output = network(batch)
            y = target[index].to(resolved)
            loss = loss_fn(output, y.long()) if n_classes is not None else loss_fn(output[:, 0], y.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(network.parameters(), recipe.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(len(index))
            if on_step is not None:
                on_step(len(losses), network)
    network.eval()
    return FineTuned(
        model=network,
        tokenizer=tokenizer,
        recipe=recipe,
        kind="classification" if n_classes is not None else "regression",
        n_examples=len(chosen),
        steps=total,
        seconds=time.perf_counter() - start,
        losses=losses,
    )


def pooled_and_outputs(
    network: EncoderWithHead,
    tokenizer: Any,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None = None,
    *,
    max_length: int = 128,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """The pooled encoder states [n, d] and the head's outputs [n, C] (logits) or [n, 1] (regression), float32,
    in input order. Batches are formed in order of token length (less padding; each row's values do not depend on
    its batch-mates beyond float rounding)."""
    device = next(network.parameters()).device
    network.eval()
    pooled = np.empty((len(texts), network.head.in_features), np.float32)
    outputs = np.empty((len(texts), network.head.out_features), np.float32)
    if len(texts) == 0:
        return pooled, outputs
    order = np.argsort(-token_lengths(tokenizer, texts, text_pairs, max_length), kind="stable")
    with torch.inference_mode():
        for first in range(0, len(texts), batch_size):
            index = order[first : first + batch_size]
            pairs = [text_pairs[i] for i in index] if text_pairs is not None else None
            batch = tokenize_batch(tokenizer, [texts[i] for i in index], pairs, max_length, device)
            states = network.pooled(batch)
            pooled[index] = states.float().cpu().numpy()
            outputs[index] = network.head(states).float().cpu().numpy()
    return pooled, outputs


def predict(
    network: EncoderWithHead,
    tokenizer: Any,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None = None,
    *,
    max_length: int = 128,
    batch_size: int = 64,
) -> np.ndarray:
    """Model outputs, float32 [n, C] (logits) or [n, 1] (regression), in input order (`pooled_and_outputs`)."""
    return pooled_and_outputs(network, tokenizer, texts, text_pairs, max_length=max_length, batch_size=batch_size)[1]


def save_fine_tuned(tuned: FineTuned, directory: str | os.PathLike[str]) -> Path:
    """Save as a Hugging Face model directory (+ head and recipe), atomically: a complete temporary directory renamed
    into place, so a crash never leaves a directory that a later run would load. An existing ``directory`` is never
    replaced (another process may be reading it): that raises FileExistsError and leaves it as it is."""
    from safetensors.torch import save_file

    target = Path(directory)
    if target.exists():
        raise FileExistsError(f"Checkpoint directory '{target}' already exists; save_fine_tuned never replaces one.")
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tuned.model.encoder.save_pretrained(tmp)  # type: ignore[operator]
        tuned.tokenizer.save_pretrained(tmp)
        save_file({k: v.contiguous() for k, v in tuned.model.head.state_dict().items()}, str(tmp / HEAD_FILE))
        meta = {
            "recipe": tuned.recipe.as_dict(),
            "kind": tuned.kind,
            "n_outputs": tuned.model.head.out_features,
            "n_examples": tuned.n_examples,
            "steps": tuned.steps,
            "seconds": tuned.seconds,
        }
        (tmp / RECIPE_FILE).write_text(json.dumps(meta, indent=1))
        os.rename(tmp, target)  # never over a directory: fails if one appeared meanwhile
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_fine_tuned(directory: str | os.PathLike[str], device: str | torch.device = "auto") -> FineTuned:
    """Load a directory written by `save_fine_tuned`."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    path = Path(directory)
    meta = json.loads((path / RECIPE_FILE).read_text())
    recipe = Recipe(**meta["recipe"])
    network = EncoderWithHead(AutoModel.from_pretrained(path), meta["n_outputs"], recipe.pooling)
    network.head.load_state_dict(load_file(str(path / HEAD_FILE)))
    network.to(resolve_device(device)).eval()
    return FineTuned(
        network,
        AutoTokenizer.from_pretrained(path),
        recipe,
        meta["kind"],
        meta["n_examples"],
        meta["steps"],
        meta["seconds"],
        [],
    )
