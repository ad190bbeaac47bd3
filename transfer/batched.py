"""Several fine-tunes of one recipe trained at once, as one batched model (`torch.func`), to fill a GPU that one
small fine-tune leaves idle (issue #29: MiniLM at batch 16).

R runs' parameters are stacked [R, ...] (`torch.func.stack_module_state`); every optimiser step stacks the R runs'
own batches [R, b, L] and makes one `vmap`ped forward and backward (`functional_call` of one template network), one
AdamW step over the stacked parameters (elementwise, so each run keeps its own moments and decoupled weight decay)
and per-run gradient-norm clipping. Each run keeps everything `transfer.finetune.fine_tune` takes from its seed:
its row sample, head initialisation, data order (length buckets included) and LR schedule, so with dropout off a
batched run is that run's computation up to float rounding (tests/test_batched.py: within 2e-5 on every weight).
Float rounding differs because the batched model pads every run's batch to the longest row of the step (a short
batch is filled with copies of its first row, weighted 0 in the loss) and uses eager attention with an additive
mask: PyTorch's CPU flash attention has no `vmap` rule, and Hugging Face's SDPA mask asks whether a batched padding
mask is all ones, which `vmap` cannot answer. Dropout masks come from one generator seeded by the first run's seed
(``randomness="different"``: every run draws its own masks), so they are not the masks a lone run would draw.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from transfer.embeddings import pool
from transfer.encoder import resolve_device
from transfer.errors import InputError
from transfer.finetune import (
    FUSED_ADAMW_DEVICES,
    EncoderWithHead,
    FineTuned,
    Recipe,
    check_training_rows,
    decay_groups,
    load_base,
    lr_schedule,
    predict,
    sample_indices,
    token_lengths,
    training_order,
)
from transfer.groundtruth import Split, evaluate_outputs

PREFIXES = ("encoder.", "head.")  # `EncoderWithHead`'s two parts, by parameter name


def stacked_batch(
    encodings: Sequence[dict[str, list[list[int]]]], indices: Sequence[np.ndarray], pad_ids: Sequence[int]
) -> tuple[dict[str, torch.Tensor], torch.Tensor, np.ndarray]:
    """The R runs' batches (rows ``indices[r]`` of the tokenised ``encodings[r]``) as tensors [R, b, L], b the
    largest batch and L the longest row; a shorter batch is filled with copies of its first row. Also the loss
    weights [R, b] (1 for a real row, 0 for a copy) and the row indices [R, b] the tensors hold."""
    size = max(len(index) for index in indices)
    rows = np.stack([np.concatenate([index, np.repeat(index[:1], size - len(index))]) for index in indices])
    length = max(len(enc["input_ids"][i]) for enc, row in zip(encodings, rows, strict=True) for i in row)
    arrays = {key: np.zeros((len(rows), size, length), np.int64) for key in encodings[0]}
    for r, (enc, row) in enumerate(zip(encodings, rows, strict=True)):
        arrays["input_ids"][r] = pad_ids[r]
        for n, i in enumerate(row):
            for key, array in arrays.items():
                array[r, n, : len(enc[key][i])] = enc[key][i]
    weights = torch.zeros(rows.shape)
    for r, index in enumerate(indices):
        weights[r, : len(index)] = 1.0
    return {key: torch.from_numpy(array) for key, array in arrays.items()}, weights, rows


def clip_per_run(grads: Sequence[torch.Tensor], max_norm: float) -> None:
    """`torch.nn.utils.clip_grad_norm_` for each run of stacked gradients [R, ...]: run r's gradients are scaled by
    min(1, max_norm / (its total 2-norm + 1e-6)), in place."""
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])  # [parameters, R]
    scale = (max_norm / (torch.linalg.vector_norm(norms, dim=0) + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))


def fine_tune_batched(
    splits: Sequence[Split],
    *,
    n_classes: int | None,
    starts: Sequence[str | None],
    recipe: Recipe,
    seeds: Sequence[int],
    device: str | torch.device = "auto",
) -> list[FineTuned]:
    """Fine-tune run r from ``starts[r]`` (the base encoder or a checkpoint directory of the same architecture; a new
    head) on ``splits[r]`` with ``seeds[r]``, all R at once; `transfer.finetune.fine_tune`'s result for each run (its
    ``seconds`` is the batch's wall time). Every run must train on as many rows (min(n, recipe.max_examples)), so
    all take the same steps."""
    from torch.func import functional_call, stack_module_state, vmap

    if not len(splits) == len(starts) == len(seeds) or not splits:
        raise InputError(
            f"The 'splits', 'starts' and 'seeds' parameters of fine_tune_batched must give one entry per run (at least "
            f"one). Got {len(splits)}, {len(starts)} and {len(seeds)}."
        )
    targets = [check_training_rows(s.texts, s.labels, s.pairs, n_classes) for s in splits]
    chosen = [sample_indices(len(s.texts), recipe.max_examples, seed) for s, seed in zip(splits, seeds, strict=True)]
    if len({len(c) for c in chosen}) > 1:
        raise InputError(
            f"The 'splits' parameter of fine_tune_batched must give every run as many training rows (after "
            f"recipe.max_examples). Got {[len(c) for c in chosen]}."
        )
    resolved = resolve_device(device)
    networks: list[EncoderWithHead] = []
    tokenizers, encodings, orders = [], [], []
    for split, start, seed, rows in zip(splits, starts, seeds, chosen, strict=True):
        network, tokenizer = load_base(start, n_classes or 1, recipe.pooling, seed)
        networks.append(network.to(resolved).train())
        tokenizers.append(tokenizer)
        pairs = list(split.pairs) if split.pairs is not None else None
        encodings.append(tokenizer(list(split.texts), pairs, truncation=True, max_length=recipe.max_length))
        lengths = token_lengths(tokenizer, split.texts, pairs, recipe.max_length) if recipe.length_buckets else None
        orders.append(training_order(rows, lengths, recipe, np.random.default_rng(seed)))
    params, _ = stack_module_state(networks)  # type: ignore[arg-type]
    buffers = dict(networks[0].named_buffers())
    template = copy.deepcopy(networks[0]).to("meta")
    template.encoder.set_attn_implementation("eager")  # type: ignore[operator]
    optimizer = torch.optim.AdamW(
        decay_groups(params.items(), recipe.weight_decay), lr=recipe.lr, fused=resolved.type in FUSED_ADAMW_DEVICES
    )
    total, lr_factor = lr_schedule(recipe, len(chosen[0]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)

    def outputs(state: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One run's outputs [b, C] from its parameters and batch [b, L] (`EncoderWithHead.forward`)."""
        state = {**state, **buffers}
        encoder, head = ({k.removeprefix(p): v for k, v in state.items() if k.startswith(p)} for p in PREFIXES)
        mask = batch["attention_mask"]
        additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        output = functional_call(template.encoder, encoder, kwargs={**batch, "attention_mask": additive})
        pooled = pool(output.last_hidden_state, mask, recipe.pooling, output)
        return functional_call(template.head, head, (pooled,))

    batched = vmap(outputs, randomness="different")
    losses: list[torch.Tensor] = []  # per step [R], read once at the end (no device sync per step)
    began = time.perf_counter()
    with torch.random.fork_rng(devices=[resolved.index or 0] if resolved.type == "cuda" else []):
        torch.manual_seed(seeds[0])
        for _ in range(total):
            batch, weights, rows = stacked_batch(
                encodings, [next(order) for order in orders], [tok.pad_token_id for tok in tokenizers]
            )
            y = torch.stack([target[row] for target, row in zip(targets, rows, strict=True)]).to(resolved)
            output = batched(params, {k: v.to(resolved) for k, v in batch.items()})  # [R, b, C]
            if n_classes is not None:
                per_row = F.cross_entropy(output.flatten(0, 1), y.long().flatten(), reduction="none").view(y.shape)
            else:
                per_row = (output[..., 0] - y.float()) ** 2
            weights = weights.to(resolved)
            loss = (per_row * weights).sum(1) / weights.sum(1)  # [R]: each run's mean over its real rows
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()  # run r's loss depends on run r's parameters only
            clip_per_run([p.grad for p in params.values() if p.grad is not None], recipe.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(loss.detach())
    seconds = time.perf_counter() - began
    with torch.no_grad():
        for r, network in enumerate(networks):
            for name, parameter in network.named_parameters():
                parameter.copy_(params[name][r])
            network.eval()
    kind = "classification" if n_classes is not None else "regression"
    per_run = torch.stack(losses, 1).cpu().tolist()  # [R, steps]
    return [
        FineTuned(network, tok, recipe, kind, len(chosen[0]), total, seconds, run)
        for network, tok, run in zip(networks, tokenizers, per_run, strict=True)
    ]


def train_and_evaluate_batched(
    trains: Sequence[Split],
    tests: Sequence[Split],
    *,
    n_classes: int | None,
    starts: Sequence[str | None],
    recipe: Recipe,
    seeds: Sequence[int],
    device: str = "auto",
) -> list[dict[str, Any]]:
    """`transfer.groundtruth.train_and_evaluate` of R runs at once (`fine_tune_batched`): run r trains from
    ``starts[r]`` on ``trains[r]`` with ``seeds[r]``; its metrics on ``tests[r]``, in run order."""
    if len(tests) != len(trains):
        raise InputError(
            f"The 'tests' parameter of train_and_evaluate_batched must give one split per run ({len(trains)}). "
            f"Got {len(tests)}."
        )
    tuned = fine_tune_batched(trains, n_classes=n_classes, starts=starts, recipe=recipe, seeds=seeds, device=device)
    return [
        evaluate_outputs(
            predict(t.model, t.tokenizer, test.texts, test.pairs, max_length=recipe.max_length),
            test.labels,
            regression=n_classes is None,
        )
        for t, test in zip(tuned, tests, strict=True)
    ]
