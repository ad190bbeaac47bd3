"""VoG: Variance of Gradients as a per-example difficulty score (Agarwal, D'souza & Hooker, CVPR 2022, "Estimating
Example Difficulty using Variance of Gradients"; for text, Anand et al. 2023), and the subset strategies built on it.

Fine-tune on the pool (`transfer.finetune.fine_tune`) and keep K checkpoints t = 1..K, taken at the optimiser steps
ceil(k·T/K), k = 1..K, of a run of T steps (evenly spaced; the last is the end of the run). At each checkpoint, for
an example with label y and real (non-padding) tokens 1..n,

    S_t = ∂ z_y / ∂ E                                       [L, D]

where z_y is the pre-softmax logit of the true class (the authors' ImageNet script; their toy script uses the
softmax probability instead) and E = the word-embedding output, i.e. the ``inputs_embeds`` a Hugging Face encoder
accepts (the token embeddings before position / token-type embeddings and LayerNorm are added), [L, D]. For a
regression pool (one output) z is that single output. Then

    VoG = 1/(n·D) · Σ_{l ≤ n, d ≤ D} sqrt( 1/K · Σ_t (S_t[l, d] − mean_t S[l, d])² )

the population standard deviation across checkpoints per input entry (token × dimension, real tokens only:
padding positions get (near-)zero gradients and would tie the score to the text's length and its batch), then the
mean over entries — not the variance of a token-averaged gradient (DECISIONS.md). Scores are then normalised per
class, (v − μ_c)/σ_c (the paper's), over the whole pool, or not at all.

Computation: examples do not interact in the forward pass (eval mode, no dropout), so one backward pass of
Σ_i z_i(y_i) gives every example's S_t in a batch at once. Batches are the outer loop and checkpoints the inner one
(the K state dicts stay in memory, each loaded in turn into one network), and the standard deviation is a streaming
Welford update in float64, so the running state is one batch's [b, L, D] mean and sum of squared deviations —
never a K × N × L × D tensor. Cost: the fine-tune plus K forward and backward passes over the pool; memory: K
state dicts (≈ 90 MB each for the default all-MiniLM-L6-v2).

Strategies (pure functions of the scores; budgets follow `selection.budget`): ``keep_hardest`` keeps the top-VoG
budget; ``prune_easiest`` sets aside a thin top slice (likely label noise, 5% by default) and prunes the easiest
down to the budget; ``weighted_sample`` draws the budget without replacement with softmax weights (Anand et al.'s
probabilistic option).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from selection.budget import resolve_budget
from transfer.checks import check_choice, check_positive_int
from transfer.encoder import DEFAULT_MODEL
from transfer.errors import InputError
from transfer.finetune import SMALL_BUDGET, EncoderWithHead, Recipe, fine_tune, tokenize_batch

Normalize = Literal["class", "dataset", "none"]
NORMALIZATIONS = ("class", "dataset", "none")
_OWNER = "vog_scores"

# The method's defaults as `select --method vog` uses them (`flows.vog`).
VOG_DEFAULTS: dict[str, Any] = {
    "strategy": "prune_easiest",
    "n_checkpoints": 10,
    "normalize": "class",
    "drop_hardest": 0.05,
    "temperature": 1.0,
}
VOG_STRATEGIES = ("prune_easiest", "keep_hardest", "weighted_sample")


@dataclass
class VoGResult:
    """What ``vog_scores`` returns. ``raw``: VoG per pool example [N] (float64, ≥ 0); ``scores``: ``raw``
    normalised as ``normalize`` says [N]; ``checkpoint_steps``: the 1-based optimiser steps of the K checkpoints;
    ``n_steps``: the run's optimiser steps T; ``seconds``: wall time of the fine-tune and of the gradients."""

    raw: np.ndarray
    scores: np.ndarray
    normalize: str
    checkpoint_steps: list[int]
    n_steps: int
    seconds: dict[str, float] = field(default_factory=dict)


class RunningStd:
    """Welford's streaming mean and population standard deviation over a sequence of same-shape tensors, kept in
    float64: after values x_1..x_K, ``std()`` = sqrt(1/K · Σ_t (x_t − mean)²), elementwise."""

    def __init__(self) -> None:
        self.count = 0
        self._mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None

    def update(self, value: torch.Tensor) -> None:
        value = value.to(torch.float64)
        self.count += 1
        if self._mean is None or self._m2 is None:
            self._mean, self._m2 = value.clone(), torch.zeros_like(value)
            return
        delta = value - self._mean
        self._mean += delta / self.count
        self._m2 += delta * (value - self._mean)

    def std(self) -> torch.Tensor:
        if self._m2 is None:
            raise ValueError("RunningStd.std needs at least one update.")
        return torch.sqrt(self._m2 / self.count)


def mean_over_real_entries(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Per example, the mean of ``values`` [b, L, D] over the real tokens' entries (``attention_mask`` [b, L] = 1)
    and all D dimensions: [b]."""
    mask = attention_mask.to(values.dtype)
    return (values * mask.unsqueeze(-1)).sum((1, 2)) / (mask.sum(1).clamp(min=1) * values.shape[-1])


def input_gradients(
    network: EncoderWithHead, batch: Mapping[str, torch.Tensor], targets: torch.Tensor | None
) -> torch.Tensor:
    """S = ∂ z_{y_i} / ∂ E_i for every example i of a tokenized ``batch`` (``tokenize_batch``'s output), [b, L, D]
    float32: z = the network's pre-softmax outputs, y = ``targets`` [b] (class indices; ``None`` for a one-output
    regression network, whose single output is differentiated), E = the word-embedding output (``inputs_embeds``).
    One backward pass of Σ_i z_i(y_i); the network's mode is the caller's (VoG uses eval mode)."""
    embeddings = network.encoder.get_input_embeddings()  # type: ignore[operator]
    inputs = {k: v for k, v in batch.items() if k != "input_ids"}
    with torch.enable_grad():
        embeds = embeddings(batch["input_ids"]).detach().requires_grad_(True)
        outputs = network({**inputs, "inputs_embeds": embeds})
        picked = outputs[:, 0] if targets is None else outputs.gather(1, targets.view(-1, 1))[:, 0]
        (gradient,) = torch.autograd.grad(picked.sum(), embeds)
    return gradient


def vog_from_checkpoints(
    network: EncoderWithHead,
    tokenizer: Any,
    checkpoints: Sequence[Mapping[str, torch.Tensor]],
    texts: Sequence[str],
    labels: Sequence[int] | np.ndarray | None,
    *,
    text_pairs: Sequence[str] | None = None,
    max_length: int = 128,
    batch_size: int = 64,
) -> np.ndarray:
    """Raw VoG [N] (float64) of (``texts``[, ``text_pairs``]) over K ≥ 2 ``checkpoints`` (state dicts of
    ``network``, in training order), tokenized by ``tokenizer`` to ``max_length``.

    ``labels``: class indices [N] for a classifier (C ≥ 2 outputs); for a one-output (regression) network they
    are not used (``None`` is fine): the gradient is that of the single output. Batches of ``batch_size`` are
    the outer loop, checkpoints the inner one (each loaded into ``network``, on its device, in eval mode); the
    network is left holding the last checkpoint.
    """
    owner = "vog_from_checkpoints"
    check_positive_int(owner, "batch_size", batch_size)
    check_positive_int(owner, "max_length", max_length)
    if len(checkpoints) < 2:
        raise InputError(
            f"The 'checkpoints' parameter of {owner} must hold at least 2 state dicts. Got {len(checkpoints)} instead."
        )
    if len(texts) == 0 or (text_pairs is not None and len(text_pairs) != len(texts)):
        raise InputError(
            f"The 'texts' parameter of {owner} must hold at least one text (and 'text_pairs' one pair per text). "
            f"Got {len(texts)} texts" + ("" if text_pairs is None else f" and {len(text_pairs)} pairs") + "."
        )
    n_outputs = network.head.out_features
    targets = None
    if n_outputs > 1:
        values = np.asarray(labels if labels is not None else [], dtype=np.float64)
        valid = values.shape == (len(texts),) and bool(((values >= 0) & (values < n_outputs)).all())
        if not valid or (values != np.round(values)).any():
            raise InputError(
                f"The 'labels' parameter of {owner} must hold one class index in [0, {n_outputs}) per text "
                f"({len(texts)}) for a {n_outputs}-output network."
            )
        targets = torch.as_tensor(values.astype(np.int64))
    device = next(network.parameters()).device
    states = [{k: v.to(device) for k, v in state.items()} for state in checkpoints]
    network.eval()
    scores = []
    for first in range(0, len(texts), batch_size):
        pairs = text_pairs[first : first + batch_size] if text_pairs is not None else None
        batch = tokenize_batch(tokenizer, texts[first : first + batch_size], pairs, max_length, device)
        y = targets[first : first + batch_size].to(device) if targets is not None else None
        running = RunningStd()
        for state in states:
            network.load_state_dict(state)
            running.update(input_gradients(network, batch, y))
        scores.append(mean_over_real_entries(running.std(), batch["attention_mask"]).cpu().numpy())
    return np.concatenate(scores)


def _checkpoint_steps(n_steps: int, n_checkpoints: int) -> list[int]:
    """The 1-based optimiser steps ceil(k·T/K), k = 1..K, of K checkpoints evenly spaced over T steps (last = T)."""
    if n_checkpoints > n_steps:
        raise InputError(
            f"The 'n_checkpoints' parameter of {_OWNER} must be at most the run's optimiser steps ({n_steps}). "
            f"Got {n_checkpoints} instead; train longer (recipe epochs, smaller batch) or take fewer checkpoints."
        )
    return [-(-k * n_steps // n_checkpoints) for k in range(1, n_checkpoints + 1)]


def normalize_scores(raw: np.ndarray, labels: Sequence[int] | np.ndarray | None, how: Normalize) -> np.ndarray:
    """``"class"``: (v − μ_c)/σ_c within each class c of ``labels`` (the VoG paper's); ``"dataset"``: (v − μ)/σ
    over all; ``"none"``: a copy. Population σ; a group whose σ is 0 gets zeros. Float64 [N]."""
    check_choice("normalize_scores", "normalize", how, NORMALIZATIONS)
    values = np.asarray(raw, dtype=np.float64)
    if how == "none":
        return values.copy()
    groups = np.zeros(len(values), dtype=np.int64)
    if how == "class":
        if labels is None:
            raise InputError(
                "normalize='class' needs class labels; a regression pool (n_classes=None) takes 'dataset' or 'none'."
            )
        groups = np.asarray(labels).astype(np.int64)
    out = np.empty_like(values)
    for group in np.unique(groups):
        member = groups == group
        centred = values[member] - values[member].mean()
        sd = values[member].std()
        out[member] = centred / sd if sd > 0 else 0.0
    return out


def vog_scores(
    texts: Sequence[str],
    labels: Sequence[float] | np.ndarray,
    *,
    n_classes: int | None,
    text_pairs: Sequence[str] | None = None,
    model: str | os.PathLike[str] | None = DEFAULT_MODEL,
    recipe: Recipe = SMALL_BUDGET,
    n_checkpoints: int = 10,
    normalize: Normalize = "class",
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: Callable[[int], None] | None = None,
) -> VoGResult:
    """VoG of every pool example: fine-tune ``model`` on the pool with ``recipe`` and ``seed`` (at most
    ``recipe.max_examples`` examples train, a seeded sample; every example is scored), copy ``n_checkpoints``
    state dicts (on the CPU) at the optimiser steps ceil(k·T/K), k = 1..K, then ``vog_from_checkpoints``
    at ``recipe.max_length`` and ``normalize_scores``.

    ``n_classes``: the number of classes (``labels`` are class indices) or ``None`` for regression (gradient of the
    single output; ``normalize="class"`` is then an error). Anand et al. take 10 checkpoints, one per epoch of a
    10-epoch run; the default recipe (``SMALL_BUDGET``, one epoch) spreads them over the steps of one epoch.
    ``progress`` is passed to `transfer.finetune.fine_tune` (examples done after every step).
    """
    if len(texts) == 0:
        raise InputError(f"The 'texts' parameter of {_OWNER} must hold at least one text. Got 0.")
    if not isinstance(n_checkpoints, int) or isinstance(n_checkpoints, bool) or n_checkpoints < 2:
        raise InputError(
            f"The 'n_checkpoints' parameter of {_OWNER} must be an int >= 2. Got {n_checkpoints!r} instead."
        )
    check_positive_int(_OWNER, "batch_size", batch_size)
    check_choice(_OWNER, "normalize", normalize, NORMALIZATIONS)
    if n_classes is None and normalize == "class":
        raise InputError(
            f"The 'normalize' parameter of {_OWNER} cannot be 'class' for a regression pool (n_classes=None): "
            "use 'dataset' or 'none'."
        )
    n_steps = math.ceil(min(len(texts), recipe.max_examples) / recipe.batch_size) * recipe.epochs
    steps = _checkpoint_steps(n_steps, n_checkpoints)
    wanted = set(steps)
    saved: list[dict[str, torch.Tensor]] = []

    def keep(step: int, network: EncoderWithHead) -> None:
        if step in wanted:
            saved.append({k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()})

    start = time.perf_counter()
    tuned = fine_tune(
        texts,
        labels,
        n_classes=n_classes,
        text_pairs=text_pairs,
        model=model,
        recipe=recipe,
        seed=seed,
        device=device,
        progress=progress,
        on_step=keep,
    )
    trained = time.perf_counter()
    class_labels = np.asarray(labels).astype(np.int64) if n_classes is not None else None
    raw = vog_from_checkpoints(
        tuned.model,
        tuned.tokenizer,
        saved,
        texts,
        class_labels,
        text_pairs=text_pairs,
        max_length=recipe.max_length,
        batch_size=batch_size,
    )
    return VoGResult(
        raw=raw,
        scores=normalize_scores(raw, class_labels, normalize),
        normalize=normalize,
        checkpoint_steps=steps,
        n_steps=tuned.steps,
        seconds={"fine_tune": trained - start, "gradients": time.perf_counter() - trained},
    )


def _check_scores(owner: str, scores: np.ndarray | Sequence[float]) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0 or not np.isfinite(values).all():
        raise InputError(
            f"The 'scores' parameter of {owner} must be a non-empty 1-D array of finite numbers. Got shape "
            f"{values.shape} with {int((~np.isfinite(values)).sum())} non-finite values instead."
        )
    return values


def _hardest_first(values: np.ndarray) -> np.ndarray:
    """Indices by decreasing score; ties keep pool order."""
    return np.argsort(-values, kind="stable").astype(np.int64)


def keep_hardest(scores: np.ndarray | Sequence[float], budget: int | float) -> np.ndarray:
    """The ``budget`` highest-VoG examples (``selection.budget`` rule), hardest first (int64; ties in pool order).
    This keeps the whole hard tail, including the highest-VoG examples the VoG paper finds atypical or mislabelled;
    as a set it is also Anand et al.'s plain pruning of the lowest-VoG (easiest) examples."""
    values = _check_scores("keep_hardest", scores)
    return _hardest_first(values)[: resolve_budget("keep_hardest", budget, len(values))]


def prune_easiest(
    scores: np.ndarray | Sequence[float], budget: int | float, *, drop_hardest: float = 0.05
) -> np.ndarray:
    """Keep ``budget`` examples (``selection.budget`` rule) by pruning the easiest (lowest VoG) after setting aside
    the hardest ``drop_hardest`` fraction of the pool as likely label noise: the VoG paper finds the highest-VoG
    examples atypical or mislabelled, and Anand et al. find that pruning hard examples hurts, so only a thin top
    slice goes. Returns the examples ranked round(``drop_hardest``·N) + 1 .. + ``budget`` by decreasing VoG,
    hardest first (int64; ties in pool order). The budget wins: when fewer than round(``drop_hardest``·N)
    examples are left over, only those are dropped from the top (``1.0`` keeps the whole pool).
    ``drop_hardest=0`` gives ``keep_hardest``. The 5% default is this library's choice, not the papers'."""
    values = _check_scores("prune_easiest", scores)
    count = resolve_budget("prune_easiest", budget, len(values))
    if not (isinstance(drop_hardest, (int, float)) and 0 <= drop_hardest < 1):
        raise InputError(
            f"The 'drop_hardest' parameter of prune_easiest must be a fraction in [0, 1). Got {drop_hardest!r} instead."
        )
    skip = min(int(round(drop_hardest * len(values))), len(values) - count)
    return _hardest_first(values)[skip : skip + count]


def weighted_sample(
    scores: np.ndarray | Sequence[float], budget: int | float, *, seed: int = 0, temperature: float = 1.0
) -> np.ndarray:
    """``budget`` examples (``selection.budget`` rule) drawn without replacement with probabilities
    p ∝ softmax(z / ``temperature``), z = the scores standardised over the pool ((s − mean)/std; all zeros when
    the scores are constant), so the temperature has the same meaning for raw and normalised scores: → 0 gives
    ``keep_hardest``, → ∞ uniform random. Drawn by Gumbel top-k (keys z/T + Gumbel(0, 1) noise from
    ``numpy.random.default_rng(seed)``; the ``budget`` largest keys), which has the distribution of successive
    draws without replacement, each proportional to p among the examples left, and stays exact in log space
    where the softmax underflows. Int64 indices in draw order."""
    values = _check_scores("weighted_sample", scores)
    count = resolve_budget("weighted_sample", budget, len(values))
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise InputError(
            f"The 'temperature' parameter of weighted_sample must be a finite number > 0. Got {temperature!r} instead."
        )
    sd = values.std()
    z = (values - values.mean()) / sd if sd > 0 else np.zeros_like(values)
    keys = z / temperature + np.random.default_rng(seed).gumbel(size=len(values))
    return _hardest_first(keys)[:count]
