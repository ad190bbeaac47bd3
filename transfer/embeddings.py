"""Sentence embeddings from a Hugging Face encoder, written on transformers and torch directly.

``TextEncoder(model).encode(texts, text_pairs)`` returns float32 ``[n, d]``. Speed comes from tokenising once,
sorting by token count so each batch pads to nearly its own length, padding batches with numpy, running the model
under ``torch.inference_mode``, and (``precision="fast"``) int8 ONNX Runtime on CPU or fp16/bf16 autocast on GPU.
Output is deterministic for the same input and configuration.

Pooling (Reimers & Gurevych 2019): ``mean`` = Σ_t m_t h_t / Σ_t m_t over the attention mask m (the
sentence-transformers default), ``cls`` = h_0, ``pooler`` = the model's pooler output (tanh(W h_0 + b) for BERT).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from transfer.checks import check_choice, check_positive_int
from transfer.encoder import DEFAULT_MODEL, model_fingerprint, resolve_device, resolve_model_path
from transfer.errors import InputError

Pooling = Literal["mean", "cls", "pooler"]
Precision = Literal["exact", "fast"]
POOLINGS = ("mean", "cls", "pooler")
PRECISIONS = ("exact", "fast")
_TOKENIZE_CHUNK = 8192


class TextEncoder:
    """Embed texts (or text pairs) with an encoder model.

    Parameters
    ----------
    model: Hugging Face name or local directory; default all-MiniLM-L6-v2 (shipped offline).
    pooling: ``"mean"`` over real tokens, ``"cls"`` (first token) or ``"pooler"`` (model pooler output).
    max_length: tokens per input (pairs: both texts together), truncating the longer text first.
    normalize: L2-normalise each embedding.
    device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
    precision: ``"exact"`` (fp32) or ``"fast"`` (int8 ONNX Runtime on CPU, bf16/fp16 autocast on GPU).
    batch_size: inputs per forward pass.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = DEFAULT_MODEL,
        *,
        pooling: Pooling = "mean",
        max_length: int = 128,
        normalize: bool = True,
        device: str | torch.device = "auto",
        precision: Precision = "exact",
        batch_size: int = 64,
    ) -> None:
        check_choice("TextEncoder", "pooling", pooling, POOLINGS)
        check_choice("TextEncoder", "precision", precision, PRECISIONS)
        check_positive_int("TextEncoder", "max_length", max_length)
        check_positive_int("TextEncoder", "batch_size", batch_size)
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.model_name = str(model or DEFAULT_MODEL)
        self.model_path = resolve_model_path(model)
        self.fingerprint = model_fingerprint(self.model_path)
        self.pooling = pooling
        self.normalize = normalize
        self.precision = precision
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.max_length = min(max_length, self.tokenizer.model_max_length or max_length)
        self.model = AutoModel.from_pretrained(self.model_path).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self._fast_session: Any = None

    @property
    def backend(self) -> str:
        """What actually runs the forward pass (part of the cache key via ``precision``)."""
        if self.precision == "exact":
            return "torch-fp32"
        return (
            "onnxruntime-int8" if self.device.type == "cpu" else f"torch-{self._autocast_dtype()}".replace("torch.", "")
        )

    def cache_params(self) -> dict[str, Any]:
        """Everything about this encoder that changes the numbers (the embedding cache key): a fast-mode result is
        never returned for an exact request, nor one made with another quantization recipe."""
        precision = "exact"
        if self.precision == "fast":
            precision = f"fast:{self.backend}"
            if self.device.type == "cpu":
                from transfer.onnx_runtime import RECIPE

                precision += ":" + hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:8]
        return {
            "model_fp": self.fingerprint,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "normalize": self.normalize,
            "precision": precision,
        }

    # ------------------------------------------------------------------------------------------ tokenising

    def tokenize(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> dict[str, list[list[int]]]:
        """Unpadded token ids (and token types) for every input, truncated to ``max_length``."""
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise InputError(
                f"The 'text_pairs' parameter must have one entry per text ({len(texts)}). Got {len(text_pairs)}."
            )
        out: dict[str, list[list[int]]] = {"input_ids": [], "token_type_ids": []}
        for start in range(0, len(texts), _TOKENIZE_CHUNK):
            stop = start + _TOKENIZE_CHUNK
            encoded = self.tokenizer(
                list(texts[start:stop]),
                list(text_pairs[start:stop]) if text_pairs is not None else None,
                truncation=True,
                max_length=self.max_length,
                padding=False,
                return_attention_mask=False,
                return_token_type_ids=True,
            )
            out["input_ids"] += encoded["input_ids"]
            out["token_type_ids"] += encoded.get("token_type_ids") or [[0] * len(i) for i in encoded["input_ids"]]
        return out

    def _pad(self, ids: list[list[int]], types: list[list[int]]) -> dict[str, np.ndarray]:
        width = max(len(i) for i in ids)
        pad_id = self.tokenizer.pad_token_id or 0
        input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
        token_type_ids = np.zeros((len(ids), width), dtype=np.int64)
        attention_mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, (tokens, kinds) in enumerate(zip(ids, types, strict=True)):
            input_ids[row, : len(tokens)] = tokens
            token_type_ids[row, : len(kinds)] = kinds
            attention_mask[row, : len(tokens)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}

    # ------------------------------------------------------------------------------------------- encoding

    def encode(
        self,
        texts: Sequence[str],
        text_pairs: Sequence[str] | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embeddings of ``texts`` (paired with ``text_pairs`` when given): float32 ``[n, d]`` in input order.

        ``progress`` is called with the number of inputs finished after every batch."""
        if isinstance(texts, str):
            raise InputError("The 'texts' parameter of encode must be a sequence of strings, not one string.")
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        tokens = self.tokenize(texts, text_pairs)
        lengths = np.fromiter((len(i) for i in tokens["input_ids"]), dtype=np.int64, count=n)
        order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks early, padding stays small
        forward = self._forward_fast if self.precision == "fast" and self.device.type == "cpu" else self._forward
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            batch = self._pad([tokens["input_ids"][i] for i in index], [tokens["token_type_ids"][i] for i in index])
            out[index] = forward(batch)
            if progress is not None:
                progress(len(index))
        return out

    def _autocast_dtype(self) -> torch.dtype:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
        use_autocast = self.precision == "fast" and self.device.type == "cuda"
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type,
                dtype=self._autocast_dtype() if use_autocast else torch.float32,
                enabled=use_autocast,
            ),
        ):
            output = self.model(**inputs)
            pooled = pool(output.last_hidden_state, inputs["attention_mask"], self.pooling, output)
            pooled = pooled.float()
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.cpu().numpy()

    def _forward_fast(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        from transfer.onnx_runtime import OnnxEncoderSession

        if self._fast_session is None:
            self._fast_session = OnnxEncoderSession.for_encoder(self)
        outputs = self._fast_session.run(batch)
        pooler = outputs.get("pooler_output")
        pooled = pool(
            torch.from_numpy(outputs["last_hidden_state"]),
            torch.from_numpy(batch["attention_mask"]),
            self.pooling,
            pooler_output=None if pooler is None else torch.from_numpy(pooler),
        )
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.numpy()


def pool(
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    pooling: str,
    output: Any = None,
    *,
    pooler_output: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pool token states ``hidden`` [b, L, d] into [b, d] (``mean`` over the mask, ``cls``, or ``pooler``)."""
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if pooling == "cls":
        return hidden[:, 0]
    pooled = pooler_output if pooler_output is not None else getattr(output, "pooler_output", None)
    if pooled is None:
        raise InputError("pooling='pooler' needs a model with a pooler output (e.g. BERT); use 'mean' or 'cls'.")
    return pooled
