"""Int8 ONNX Runtime inference for `TextEncoder(precision="fast")` on CPU.

The encoder is exported once with ``torch.onnx.export(dynamo=True)`` (dynamic batch and sequence axes; the legacy
TorchScript exporter gives silently wrong outputs for BERT under transformers 5), then its weight matrix
multiplications are quantized with ONNX Runtime dynamic quantization: int8 per-channel weights, uint8 activations
quantized per batch at run time. Embeddings, LayerNorm, softmax, GELU and the pooler stay fp32.
The FFN down projections (the MatMul after GELU, whose activations have the widest range) also stay fp32:
quantizing them too is ~10% faster but its worst rows fall below 0.98 cosine to fp32.

Measured (all-MiniLM-L6-v2, mean pooling, L2-normalised, max_length 128, batch 64, 2 threads, 4,000 real texts
from sst2 / tweeteval_emotion / ag_news / trec / rte pairs) against `TextEncoder(precision="exact")`: per-row
cosine mean 0.9963, 1st percentile 0.9916, min 0.974; 2.3x the texts/s of torch fp32 (ONNX Runtime fp32 alone:
~1.4x). Export plus quantization takes ~6 s once; the file is 70 MB (the fp32 word embeddings are most of it).

The quantized file is cached under ``$TRANSFERSCOPE_CACHE/onnx`` (default ``~/.cache/transferscope/onnx``), keyed by
the model fingerprint, the quantization recipe and the torch / transformers / onnx / onnxruntime versions, and
written atomically (temporary name in the same folder, then `os.replace`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transfer.errors import MissingDependencyError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# What is quantized; part of the cache key, so changing it re-exports.
RECIPE: dict[str, Any] = {
    "format": 1,
    "export": "dynamo",
    "quantization": "dynamic",
    "weight_type": "QInt8",
    "per_channel": True,
    "reduce_range": False,
    "op_types": ["MatMul"],
    "exclude": ["ffn_down"],
}
_SESSIONS: dict[tuple[str, int], OnnxEncoderSession] = {}
_LOCK = threading.Lock()


def _require(package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        pip_name = "onnxruntime" if package.startswith("onnxruntime") else package
        raise MissingDependencyError(
            f"precision='fast' on CPU needs {pip_name}: pip install {pip_name} (or use precision='exact')."
        ) from None


def cache_dir() -> Path:
    """Folder of the cached ``.onnx`` files."""
    root = os.environ.get("TRANSFERSCOPE_CACHE") or Path.home() / ".cache" / "transferscope"
    return Path(root).expanduser() / "onnx"


def model_file(fingerprint: str, recipe: dict[str, Any] = RECIPE) -> Path:
    """Cache path of the quantized model for ``fingerprint`` and ``recipe`` under the installed versions."""
    import transformers

    onnx, ort = _require("onnx"), _require("onnxruntime")
    key = {
        "model": fingerprint,
        "recipe": recipe,
        "versions": [torch.__version__, transformers.__version__, onnx.__version__, ort.__version__],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"{fingerprint}-{digest}.onnx"


class _Wrapper(torch.nn.Module):
    """Positional-input, tuple-output view of a Hugging Face encoder (what the exporter wants)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.takes_token_types = "token_type_ids" in inspect.signature(model.forward).parameters

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        kwargs = {"token_type_ids": token_type_ids} if self.takes_token_types else {}
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        pooler = getattr(output, "pooler_output", None)
        return (output.last_hidden_state,) if pooler is None else (output.last_hidden_state, pooler)


def export_fp32(model: torch.nn.Module, path: Path) -> None:
    """Export ``model`` (eval, CPU) to fp32 ONNX with dynamic batch and sequence axes."""
    _require("onnxscript")
    wrapper = _Wrapper(model).eval()
    example = (
        torch.randint(1000, 2000, (2, 16)),
        torch.ones(2, 16, dtype=torch.int64),
        torch.zeros(2, 16, dtype=torch.int64),
    )
    dynamic = {name: {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC} for name in INPUT_NAMES}
    outputs = ["last_hidden_state", "pooler_output"][: len(wrapper(*example))]
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            example,
            dynamo=True,
            input_names=list(INPUT_NAMES),
            output_names=outputs,
            dynamic_shapes=dynamic,
            optimize=True,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export(dynamo=True) returned no program.")
    program.save(str(path), external_data=False)


def excluded_nodes(path: Path, recipe: dict[str, Any] = RECIPE) -> list[str]:
    """Names of the weight MatMuls whose role (``qkv``, ``attn_out``, ``ffn_up``, ``ffn_down``) is excluded.

    Node names are generated by the exporter, so roles are read from the graph: the FFN down projection consumes a
    GELU output, Q/K/V share one input, the FFN up projection reads a LayerNorm output, the rest is attention out.
    """
    if not recipe["exclude"]:
        return []
    graph = _require("onnx").load(str(path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    matmuls = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    readers: dict[str, int] = {}
    for node in matmuls:
        readers[node.input[0]] = readers.get(node.input[0], 0) + 1
    names = []
    for node in matmuls:
        source = producer.get(node.input[0])
        source_op = source.op_type if source is not None else ""
        if source_op in ("Gelu", "FastGelu", "BiasGelu"):
            role = "ffn_down"
        elif readers[node.input[0]] == 3:
            role = "qkv"
        elif source_op == "LayerNormalization":
            role = "ffn_up"
        else:
            role = "attn_out"
        if role in recipe["exclude"]:
            names.append(node.name)
    return names


def quantize(src: Path, dst: Path, recipe: dict[str, Any] = RECIPE) -> None:
    """Dynamic int8 quantization of ``src`` into ``dst`` following ``recipe``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=recipe["op_types"],
        per_channel=recipe["per_channel"],
        reduce_range=recipe["reduce_range"],
        weight_type=QuantType[recipe["weight_type"]],
        nodes_to_exclude=excluded_nodes(src, recipe),
        extra_options={"MatMulConstBOnly": True},
    )


def build(model: torch.nn.Module, fingerprint: str, recipe: dict[str, Any] = RECIPE) -> Path:
    """Path of the cached quantized model, exporting and quantizing it first when absent."""
    target = model_file(fingerprint, recipe)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.stem}-", dir=target.parent))
    try:
        export_fp32(model, work / "fp32.onnx")
        quantize(work / "fp32.onnx", work / "int8.onnx", recipe)
        os.replace(work / "int8.onnx", target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


class OnnxEncoderSession:
    """An ONNX Runtime CPU session over the quantized encoder; ``run`` maps a padded batch to its outputs."""

    def __init__(self, path: str | os.PathLike[str], num_threads: int | None = None) -> None:
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @classmethod
    def for_encoder(cls, encoder: Any) -> OnnxEncoderSession:
        """Shared session for a `TextEncoder` (its ``model`` on CPU and ``fingerprint``), built once per process."""
        threads = torch.get_num_threads()
        with _LOCK:
            path = build(encoder.model, encoder.fingerprint)
            key = (str(path), threads)
            if key not in _SESSIONS:
                _SESSIONS[key] = cls(path, threads)
            return _SESSIONS[key]

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs (``last_hidden_state`` [b, L, d], ``pooler_output`` [b, d] when the model has one) as float32."""
        feeds = {name: np.ascontiguousarray(batch[name], dtype=np.int64) for name in self.input_names}
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))
