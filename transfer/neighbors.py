"""Exact k-nearest-neighbour search: FAISS when importable (GPU FAISS when installed and on CUDA), else torch.

Both backends return squared Euclidean distances (``metric="l2"``) or inner products (``metric="ip"``), sorted
best first, with int64 indices into ``base``. The torch path works blockwise over queries so memory stays at
``block_size × n_base`` floats.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from transfer.errors import InputError, MissingDependencyError

Metric = Literal["l2", "ip"]
Backend = Literal["auto", "faiss", "torch"]


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _check(queries: np.ndarray, base: np.ndarray, k: int, metric: str) -> None:
    if queries.ndim != 2 or base.ndim != 2 or queries.shape[1] != base.shape[1]:
        raise InputError(
            f"The 'queries' and 'base' parameters of nearest_neighbors must be 2-D with the same dimension. "
            f"Got shapes {queries.shape} and {base.shape}."
        )
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= base.shape[0]:
        raise InputError(
            f"The 'k' parameter of nearest_neighbors must be an int in [1, {base.shape[0]}] (the base size). "
            f"Got {k!r} instead."
        )
    if metric not in ("l2", "ip"):
        raise InputError(f"The 'metric' parameter of nearest_neighbors must be 'l2' or 'ip'. Got {metric!r} instead.")


def nearest_neighbors(
    queries: np.ndarray,
    base: np.ndarray,
    k: int,
    *,
    metric: Metric = "l2",
    backend: Backend = "auto",
    device: str | torch.device = "cpu",
    block_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``base`` [n, d] for each row of ``queries`` [q, d].

    Returns (scores [q, k] float32, indices [q, k] int64): squared L2 distances ascending for ``metric="l2"``,
    inner products descending for ``metric="ip"``. ``backend="auto"`` uses FAISS when importable.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    base = np.ascontiguousarray(base, dtype=np.float32)
    _check(queries, base, k, metric)
    if backend == "faiss" or (backend == "auto" and faiss_available()):
        return _faiss_search(queries, base, k, metric, torch.device(device))
    if backend not in ("auto", "torch"):
        raise InputError(
            f"The 'backend' parameter of nearest_neighbors must be 'auto', 'faiss' or 'torch'. Got {backend!r}."
        )
    return _torch_search(queries, base, k, metric, torch.device(device), block_size)


def _faiss_search(
    queries: np.ndarray, base: np.ndarray, k: int, metric: str, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError(
            "backend='faiss' needs faiss: pip install faiss-cpu (or faiss-gpu on CUDA)."
        ) from None
    index: Any = faiss.IndexFlatL2(base.shape[1]) if metric == "l2" else faiss.IndexFlatIP(base.shape[1])
    if device.type == "cuda" and hasattr(faiss, "StandardGpuResources"):  # faiss-cpu has no GPU resources
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), device.index or 0, index)
    index.add(base)
    scores, indices = index.search(queries, k)
    return scores, indices.astype(np.int64)


def _torch_search(
    queries: np.ndarray, base: np.ndarray, k: int, metric: str, device: torch.device, block_size: int
) -> tuple[np.ndarray, np.ndarray]:
    base_t = torch.from_numpy(base).to(device)
    base_sq = (base_t * base_t).sum(1)
    scores_out = np.empty((len(queries), k), dtype=np.float32)
    indices_out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block_size):
        block = torch.from_numpy(queries[start : start + block_size]).to(device)
        products = block @ base_t.T
        if metric == "l2":
            # ‖q − b‖² = ‖q‖² − 2 q·b + ‖b‖², clamped at 0 against rounding
            distances = ((block * block).sum(1, keepdim=True) - 2 * products + base_sq).clamp_min_(0)
            scores, indices = torch.topk(distances, k, dim=1, largest=False)
        else:
            scores, indices = torch.topk(products, k, dim=1, largest=True)
        scores_out[start : start + len(block)] = scores.cpu().numpy()
        indices_out[start : start + len(block)] = indices.cpu().numpy()
    return scores_out, indices_out
