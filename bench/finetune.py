"""``python -m bench finetune``: TransferScope's ``fine_tune`` vs a plain ``transformers.Trainer`` loop.

Same recipe (the atlas's target recipe), model and data on both sides: all-MiniLM-L6-v2 with mean pooling and a
linear head (`transfer.finetune.EncoderWithHead`, head initialised from the same seed), 300 real MR training
examples (``sample_indices(n, 300, seed)``), 3 epochs, batch 16, AdamW lr 5e-5 with weight decay 0.01 except on
bias and LayerNorm weights, linear warm-up over round(6% of the steps) then linear decay to zero, gradient-norm
clip 1.0, max_length 64, the same torch threads. Ours runs with ``length_buckets=True`` (batches of similar token
lengths). The peer is the Trainer's plain loop: pre-tokenized examples, ``DataCollatorWithPadding``, random batches
(no ``group_by_length``), its own linear schedule (whose first step has lr 0), otherwise its defaults (with torch
>= 2.8 its optimizer is the fused AdamW kernel, as ours is). Each call goes from raw
texts to a trained model (model loading and tokenization included); the value is training examples (examples ×
epochs) per second, the median of interleaved repeats after a warm-up call of each. Also reported: each side's
final training loss (mean of the last epoch's batch losses) and first batch loss, and its accuracy on the same 500
held-out MR test rows with `transfer.finetune.predict`. Target: ratio >= 1.5 with the same final loss within noise.
``--quick``: 64 examples, 1 epoch, max_length 32, 64 held-out rows, one repeat.
"""

from __future__ import annotations

import tempfile
from importlib import metadata
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.common import SHARED_TASKS, emit, interleaved_medians

SEED = 0


class WithLoss(nn.Module):
    """``EncoderWithHead`` in the Trainer's calling convention: keyword tensors in, ``{"loss", "logits"}`` out.
    Records each training batch's loss, as `fine_tune` does."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.losses: list[float] = []

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids
        logits = self.network(batch)
        output = {"logits": logits}
        if labels is not None:
            output["loss"] = nn.functional.cross_entropy(logits, labels)
            if self.training:
                self.losses.append(float(output["loss"].detach()))
        return output


class Examples(torch.utils.data.Dataset):
    """Pre-tokenized examples (unpadded) with their labels, as the Trainer's collator expects them."""

    def __init__(self, encoded: dict[str, list[list[int]]], labels: list[int]) -> None:
        self.encoded = encoded
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**{k: v[i] for k, v in self.encoded.items()}, "label": self.labels[i]}


def train_ours(texts: list[str], labels: list[int], recipe: Any) -> tuple[Any, Any, list[float]]:
    from transfer.finetune import fine_tune

    tuned = fine_tune(texts, labels, n_classes=2, recipe=recipe, seed=SEED, device="cpu")
    return tuned.model, tuned.tokenizer, tuned.losses


def train_peer(texts: list[str], labels: list[int], recipe: Any) -> tuple[Any, Any, list[float]]:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from transfer.finetune import load_base

    network, tokenizer = load_base(None, 2, recipe.pooling, SEED)
    model = WithLoss(network)
    encoded = tokenizer(texts, truncation=True, max_length=recipe.max_length)
    total = -(-len(texts) // recipe.batch_size) * recipe.epochs
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=recipe.batch_size,
            num_train_epochs=recipe.epochs,
            learning_rate=recipe.lr,
            weight_decay=recipe.weight_decay,
            warmup_steps=int(round(recipe.warmup_ratio * total)),
            lr_scheduler_type="linear",
            max_grad_norm=recipe.grad_clip,
            seed=SEED,
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=Examples(dict(encoded), labels),
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        trainer.train()
    return network, tokenizer, model.losses


def run(quick: bool = False) -> None:
    from store.task_files import load_task_dir
    from transfer.finetune import Recipe, predict, sample_indices

    n, epochs, max_length, n_held_out, repeats = (64, 1, 32, 64, 1) if quick else (300, 3, 64, 500, 3)
    recipe = Recipe(
        lr=5e-5,
        batch_size=16,
        epochs=epochs,
        max_examples=n,
        max_length=max_length,
        warmup_ratio=0.06,
        length_buckets=True,
    )
    task = load_task_dir(SHARED_TASKS / "mr")
    train, test = task.split("train"), task.split("test")
    chosen = sample_indices(train.num_rows, n, SEED)
    texts = [str(t) for t in np.array(train.column("text").to_pylist(), dtype=object)[chosen]]
    labels = [int(y) for y in train.column("label").to_numpy()[chosen]]
    held_out = sample_indices(test.num_rows, n_held_out, SEED)
    test_texts = [str(t) for t in np.array(test.column("text").to_pylist(), dtype=object)[held_out]]
    test_labels = test.column("label").to_numpy()[held_out].astype(np.int64)
    threads = torch.get_num_threads()
    trained: dict[str, tuple[Any, Any, list[float]]] = {}

    def timed(name, train_fn):
        def call():
            trained[name] = train_fn(texts, labels, recipe)

        return call

    medians = interleaved_medians({"ours": timed("ours", train_ours), "peer": timed("peer", train_peer)}, repeats)
    assert torch.get_num_threads() == threads, "the peer changed torch's thread count"
    steps_per_epoch = -(-n // recipe.batch_size)
    final_loss, first_loss, accuracy = {}, {}, {}
    for name, (network, tokenizer, losses) in trained.items():
        assert len(losses) == steps_per_epoch * epochs, f"{name}: {len(losses)} batch losses"
        final_loss[name] = float(np.mean(losses[-steps_per_epoch:]))
        first_loss[name] = losses[0]
        logits = predict(network, tokenizer, test_texts, max_length=max_length)
        accuracy[name] = float((logits.argmax(1) == test_labels).mean())
    per_s = {name: n * epochs / seconds for name, seconds in medians.items()}
    emit(
        {
            "bench": "finetune",
            "ours": per_s["ours"],
            "peer": "transformers.Trainer",
            "peer_value": per_s["peer"],
            "ratio": per_s["ours"] / per_s["peer"],
            "unit": "training examples/s",
            "seconds": medians,
            "final_loss": final_loss,
            "first_loss": first_loss,
            "accuracy": accuracy,
            "task": "mr",
            "n_examples": n,
            "held_out": n_held_out,
            "steps": steps_per_epoch * epochs,
            "recipe": recipe.as_dict(),
            "threads": threads,
            "repeats": repeats,
            "quick": quick,
            "versions": {p: metadata.version(p) for p in ("torch", "transformers", "accelerate")},
            "targets": {"ratio": ">= 1.5", "final_loss": "same as the peer's within noise"},
        }
    )
