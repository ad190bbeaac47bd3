"""GIO: Gradient Information Optimization for training-data selection (Everaert & Potts 2023, "GIO: Gradient
Information Optimization for Training Dataset Selection", arXiv:2306.11670; reference package ``grad-info-opt``,
``GIO/GIOKL.py``).

GIO greedily grows a selected set W (a start set plus real pool points) so that the KL divergence from the target
distribution X to W, estimated with k-nearest-neighbour distances, decreases. With X the target [n, d] and W the
current set [m, d] the relaxed estimator (the reference's, k = 5, ε = 1e-8) is

    KL(X ‖ W) = mean_{i ≤ n, j ≤ m} [d·log(r_xw(i, j) + ε)] − mean_{i ≤ n} [d·log(r_xx(i) + ε)]
                + mean_{j = 1..m} log(k·m / (j·(n − 1)))

where r_xw(i, j) = ‖x_i − w_j‖ (every selected point, not only the k-th neighbour: this relaxation keeps the
gradient informative) and r_xx(i) is the distance from x_i to its k-th nearest other target point (the
(k+1)-th smallest including itself). Distances are square roots of squared distances clipped to [1e-10, 1e20],
so duplicates (zero distances) give r = 1e-5 and a zero gradient, as in the reference. The X→X term does not
depend on W and is computed once; the X→W distances are kept as an [n, m] matrix that gains one column per pick.

Each step starts a free point v (the target mean, ``v_init="mean"``; a random target point, ``"jump"``; or the
previous optimum, ``"prev_opt"``), runs ``steps`` gradient-descent steps on KL(X ‖ W ∪ {v}) (3 × ``steps`` on the
first step and after a reset) with the gradient scaled by a factor fixed once at the start,
‖v₀‖ / ‖∇KL(v₀)‖ (``scale="auto"``), then adds the nearest remaining pool point to W and removes it from the pool.

Behaviour matched to the reference (and checked against recorded fixtures): the start set is 20 uniform points in
[−1, 1]^d, each scaled to unit length when ``normalize``; the pick that triggers a stop is not added; the loop adds
at most ``max_iter + 1`` picks (the reference checks ``total_iter > max_iter``); ``"data_size"`` stops once
``floor(max_data_size · len(pool))`` + 1 picks are in; after a reset (``resets_allowed``) the pick that raised the
KL is dropped, the whole pool becomes available again (so picks can repeat) and the step counter goes back one.
Two criteria differ on purpose, because the reference's versions can never fire (see ``gio_select``):
``"max_resets"`` and ``"sequential_increase_tolerance"``. ``stop="budget"`` (not in the reference) adds exactly
``budget`` picks whatever the KL does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from transfer.checks import check_choice, check_positive_int
from transfer.neighbors import nearest_neighbors

Stop = Literal[
    "increase", "max_resets", "min_difference", "sequential_increase_tolerance", "min_kl", "data_size", "budget"
]
VInit = Literal["mean", "jump", "prev_opt"]
STOPS = ("increase", "max_resets", "min_difference", "sequential_increase_tolerance", "min_kl", "data_size", "budget")
V_INITS = ("mean", "jump", "prev_opt")
_CLIP_LOW, _CLIP_HIGH = 1e-10, 1e20
_OWNER = "gio_select"


@dataclass
class GIOResult:
    """What ``gio_select`` returns. ``selected``: pool indices in pick order (int64; repeats only after resets);
    ``kl_trajectory``: KL(target ‖ start ∪ picks so far) after each pick; ``start_set``: the start points [s, d]
    (``start_set`` + ``pool[selected]`` is the reference's returned W, whose README drops ``W[20:]``)."""

    selected: np.ndarray
    kl_trajectory: np.ndarray
    start_set: np.ndarray
    start_kl: float
    scale_factor: float
    n_resets: int
    stop_reason: str
    info: dict[str, float] = field(default_factory=dict)


def uniform_start(dim: int, size: int = 20, *, normalize: bool = True, seed: int | None = 0) -> np.ndarray:
    """The reference's default start set: ``size`` points uniform in [−1, 1]^dim, each scaled to unit L2 norm
    when ``normalize`` (a zero row stays zero)."""
    points = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(size, dim))
    if normalize:
        norms = np.linalg.norm(points, axis=1, keepdims=True)
        points = np.divide(points, norms, out=points.copy(), where=norms > 0)
    return points


def _sq_dists(a: torch.Tensor, b: torch.Tensor, block: int = 2048) -> torch.Tensor:
    """Clipped squared Euclidean distances [len(a), len(b)], float64, blockwise over rows of ``a``."""
    b_sq = (b * b).sum(1)
    out = []
    for start in range(0, a.shape[0], block):
        rows = a[start : start + block]
        d2 = (rows * rows).sum(1)[:, None] - 2.0 * rows @ b.T + b_sq[None, :]
        out.append(d2.clamp(_CLIP_LOW, _CLIP_HIGH))
    return torch.cat(out)


def _log_r(sq: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.log(torch.sqrt(sq) + eps)


def _correction(k: int, m: int, n: int) -> float:
    """mean_{j=1..m} log(k·m / (j·(n − 1)))."""
    return float(np.mean(np.log(k * m / (np.arange(1, m + 1, dtype=np.float64) * (n - 1)))))


def _as_2d(owner: str, name: str, value: object) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"The {name!r} parameter of {owner} must be a non-empty 2-D array. Got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"The {name!r} parameter of {owner} must contain only finite values.")
    return array


def _check_number(owner: str, name: str, value: object, *, low: float | None = None, positive: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive:
        ok = float(value) > 0  # type: ignore[arg-type]
    if ok and low is not None:
        ok = float(value) >= low  # type: ignore[arg-type]
    if not ok:
        what = "a positive finite number" if positive else "a finite number" + ("" if low is None else f" >= {low}")
        raise ValueError(f"The {name!r} parameter of {owner} must be {what}. Got {value!r} instead.")


def gio_select(
    target: np.ndarray,
    pool: np.ndarray,
    *,
    k: int = 5,
    lr: float = 0.01,
    steps: int = 50,
    max_iter: int = 100,
    stop: Stop = "increase",
    start: np.ndarray | None = None,
    start_size: int = 20,
    normalize: bool = True,
    v_init: VInit = "mean",
    scale: float | Literal["auto"] = "auto",
    resets_allowed: bool = False,
    max_resets: int = 2,
    min_difference: float = 0.0,
    max_sequential_increases: int = 3,
    min_kl: float = 0.0,
    max_data_size: float = 1.0,
    budget: int | float | None = None,
    random_restart_prob: float = 0.0,
    eps: float = 1e-8,
    seed: int | None = 0,
    backend: Literal["auto", "faiss", "torch"] = "auto",
) -> GIOResult:
    """Select pool points whose distribution approaches the target's, by GIO (Everaert & Potts 2023).

    ``target`` [n, d] (n ≥ k + 1) and ``pool`` [N, d] are embeddings; returns a ``GIOResult`` whose ``selected``
    holds pool indices in pick order and ``kl_trajectory`` the objective

        KL(X ‖ W) = mean_{i,j} d·log(‖x_i − w_j‖ + ε) − mean_i d·log(r_k(x_i) + ε) + mean_{j≤m} log(k·m/(j·(n−1)))

    (W = start set ∪ picks, m = |W|, r_k the distance to the k-th nearest other target point) after each pick.

    Parameters follow the reference's ``GIOKL.fit``: ``k`` neighbours; ``lr``, ``steps`` (``grad_desc_iter``) for
    the descent; ``max_iter``; ``start`` (the reference's ``D``; default ``uniform_start(d, start_size,
    normalize=normalize, seed=seed)``); ``v_init`` in {"mean", "jump", "prev_opt"}; ``scale`` ("auto" or a
    number); ``random_restart_prob`` (chance of a 3× descent at a step). ``stop``:

    - ``"increase"`` (default): stop at the first pick that raises the KL.
    - ``"min_difference"``: stop when a pick lowers the KL by less than ``min_difference``.
    - ``"min_kl"``: stop when the KL falls below ``min_kl``.
    - ``"data_size"``: stop after ``floor(max_data_size · N) + 1`` picks (the reference's count).
    - ``"max_resets"``: on a KL increase drop that pick, make the whole pool available again and go on, up to
      ``max_resets`` times; stop at the next increase. (The reference's ``"max_resets"`` test only fires when the
      reset count already equals ``max_resets`` while resets only happen below it, so it never resets or stops;
      its ``stop_criterion="increase", resets_allowed=True`` does what we do here.) ``resets_allowed=True`` adds
      the same resets to the other criteria, as in the reference.
    - ``"sequential_increase_tolerance"``: KL increases are accepted; stop at the ``max_sequential_increases``-th
      increase in a row (that pick is dropped). (The reference counts increases only inside its stop branch,
      which needs the count to be already at the tolerance, so with tolerance ≥ 1 it never stops.)
    - ``"budget"``: exactly ``budget`` picks (an int ≥ 1 is a count, a float in (0, 1] a fraction of the pool),
      regardless of the KL and ``max_iter``.

    The pick that triggers a stop is not kept. Every run stops when the pool is exhausted.
    """
    target = _as_2d(_OWNER, "target", target)
    pool = _as_2d(_OWNER, "pool", pool)
    check_positive_int(_OWNER, "k", k)
    check_positive_int(_OWNER, "steps", steps)
    check_positive_int(_OWNER, "max_iter", max_iter)
    if stop == "max_resets" or resets_allowed:
        check_positive_int(_OWNER, "max_resets", max_resets)
    check_choice(_OWNER, "stop", stop, STOPS)
    check_choice(_OWNER, "v_init", v_init, V_INITS)
    _check_number(_OWNER, "lr", lr, positive=True)
    _check_number(_OWNER, "min_difference", min_difference)
    _check_number(_OWNER, "min_kl", min_kl)
    _check_number(_OWNER, "random_restart_prob", random_restart_prob, low=0.0)
    _check_number(_OWNER, "eps", eps, low=0.0)
    if not (isinstance(max_data_size, (int, float)) and 0 < max_data_size <= 1):
        raise ValueError(f"The 'max_data_size' parameter of {_OWNER} must be a float in (0, 1]. Got {max_data_size!r}.")
    if scale != "auto":
        _check_number(_OWNER, "scale", scale, positive=True)
    if stop == "sequential_increase_tolerance":
        check_positive_int(_OWNER, "max_sequential_increases", max_sequential_increases)
    if target.shape[1] != pool.shape[1]:
        raise ValueError(
            f"The 'target' and 'pool' parameters of {_OWNER} must have the same dimension. "
            f"Got {target.shape[1]} and {pool.shape[1]}."
        )
    n, d = target.shape
    if n < k + 1:
        raise ValueError(f"The 'target' parameter of {_OWNER} needs at least k + 1 = {k + 1} rows. Got {n}.")
    n_budget = _resolve_budget(budget, len(pool)) if stop == "budget" else None
    rng = np.random.default_rng(seed)
    if start is None:
        check_positive_int(_OWNER, "start_size", start_size)
        start_set = uniform_start(d, start_size, normalize=normalize, seed=seed)
    else:
        start_set = _as_2d(_OWNER, "start", start)
        if start_set.shape[1] != d:
            raise ValueError(f"The 'start' parameter of {_OWNER} must have {d} columns. Got {start_set.shape[1]}.")

    x = torch.from_numpy(np.ascontiguousarray(target))
    # X→X: the (k+1)-th smallest clipped squared distance including self = k-th neighbour excluding self.
    xx = torch.cat(
        [_sq_dists(x[s : s + 1024], x).topk(k + 1, dim=1, largest=False).values[:, -1] for s in range(0, n, 1024)]
    )
    xx_term = float(d * _log_r(xx, eps).mean())
    xw = _sq_dists(x, torch.from_numpy(np.ascontiguousarray(start_set)))  # [n, m], grows one column per pick
    log_sum = float(_log_r(xw, eps).sum())

    def kl_of(total_log: float, m: int) -> float:
        return d * total_log / (n * m) - xx_term + _correction(k, m, n)

    def objective(v: torch.Tensor, m: int) -> torch.Tensor:
        col = ((x - v) ** 2).sum(1).clamp(_CLIP_LOW, _CLIP_HIGH)
        return d * (log_sum + _log_r(col, eps).sum()) / (n * (m + 1))

    def gradient(v: torch.Tensor, m: int) -> torch.Tensor:
        v = v.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(objective(v, m), v)
        return g

    def descend(v: torch.Tensor, m: int, iterations: int) -> torch.Tensor:
        for _ in range(iterations):
            v = v - lr * scale_factor * gradient(v, m)
        return v.detach()

    mean_v = x.mean(0)

    def fresh_v() -> torch.Tensor:
        return x[int(rng.integers(n))].clone() if v_init == "jump" else mean_v.clone()

    m = xw.shape[1]
    kl_prev = kl_of(log_sum, m)
    start_kl = kl_prev
    v = fresh_v()
    scale_factor = float(torch.linalg.norm(v) / torch.linalg.norm(gradient(v, m))) if scale == "auto" else scale
    pool32 = np.ascontiguousarray(pool, dtype=np.float32)
    available = np.ones(len(pool), dtype=bool)
    selected: list[int] = []
    trajectory: list[float] = []
    columns = [xw]
    step, total_iter, n_resets, consecutive, just_reset = 0, 0, 0, 0, False
    reason = "pool exhausted"
    while available.any():
        long = step == 0 or just_reset or (random_restart_prob > 0 and rng.random() < random_restart_prob)
        v = descend(v, m, steps * 3 if long else steps)
        candidates = np.flatnonzero(available)
        _, nearest = nearest_neighbors(v.numpy()[None, :], pool32[candidates], 1, backend=backend)
        pick = int(candidates[nearest[0, 0]])
        available[pick] = False
        col = _sq_dists(x, torch.from_numpy(pool[pick : pick + 1]))
        col_log = float(_log_r(col, eps).sum())
        kl = kl_of(log_sum + col_log, m + 1)
        if n_budget is None and total_iter > max_iter:
            reason = "max_iter"
            break
        if v_init != "prev_opt":
            v = fresh_v()
        increased = kl - kl_prev > 0
        if stop == "budget":
            halt = False
        elif stop in ("increase", "max_resets"):
            halt = increased
        elif stop == "min_difference":
            halt = kl_prev - kl < min_difference
        elif stop == "min_kl":
            halt = kl < min_kl
        elif stop == "data_size":
            halt = step > int(max_data_size * len(pool))
        else:  # sequential_increase_tolerance
            consecutive = consecutive + 1 if increased else 0
            halt = consecutive >= max_sequential_increases
        if halt:
            reason = stop
            if (resets_allowed or stop == "max_resets") and n_resets < max_resets:
                n_resets += 1
                consecutive = 0
                if v_init == "prev_opt":
                    v = mean_v.clone()
                available[:] = True
                step -= 1
                just_reset = True
                continue
            break
        just_reset = False
        columns.append(col)
        log_sum += col_log
        m += 1
        selected.append(pick)
        trajectory.append(kl)
        kl_prev = kl
        step += 1
        total_iter += 1
        if n_budget is not None and len(selected) >= n_budget:
            reason = "budget"
            break
    return GIOResult(
        selected=np.asarray(selected, dtype=np.int64),
        kl_trajectory=np.asarray(trajectory, dtype=np.float64),
        start_set=start_set,
        start_kl=start_kl,
        scale_factor=scale_factor,
        n_resets=n_resets,
        stop_reason=reason,
        info={"xx_term": xx_term, "n_columns": float(sum(c.shape[1] for c in columns))},
    )


def _resolve_budget(budget: int | float | None, n_pool: int) -> int:
    if isinstance(budget, bool) or budget is None:
        count = -1
    elif isinstance(budget, (int, np.integer)):
        count = int(budget)
    elif isinstance(budget, float) and 0 < budget <= 1:
        count = max(1, int(round(budget * n_pool)))
    else:
        count = -1
    if not 1 <= count <= n_pool:
        raise ValueError(
            f"The 'budget' parameter of {_OWNER} must be an int in [1, {n_pool}] (a count) or a float in (0, 1] "
            f"(a fraction of the pool) when stop='budget'. Got {budget!r} instead."
        )
    return count


class GIOSelector:
    """Scikit-learn style wrapper of ``gio_select`` (GIO, Everaert & Potts 2023); see ``gio_select`` for the
    objective and the parameters.

    ``fit(target [n, d], pool [N, d])`` returns self with ``selected_`` (pool indices in pick order),
    ``kl_trajectory_`` (KL after each pick), ``start_set_`` [s, d], ``start_kl_``, ``scale_factor_``,
    ``n_resets_`` and ``stop_reason_``.
    """

    def __init__(
        self,
        k: int = 5,
        lr: float = 0.01,
        steps: int = 50,
        max_iter: int = 100,
        stop: Stop = "increase",
        start_size: int = 20,
        normalize: bool = True,
        v_init: VInit = "mean",
        scale: float | Literal["auto"] = "auto",
        resets_allowed: bool = False,
        max_resets: int = 2,
        min_difference: float = 0.0,
        max_sequential_increases: int = 3,
        min_kl: float = 0.0,
        max_data_size: float = 1.0,
        budget: int | float | None = None,
        random_restart_prob: float = 0.0,
        seed: int | None = 0,
        backend: Literal["auto", "faiss", "torch"] = "auto",
    ) -> None:
        self.k, self.lr, self.steps, self.max_iter, self.stop = k, lr, steps, max_iter, stop
        self.start_size, self.normalize, self.v_init, self.scale = start_size, normalize, v_init, scale
        self.resets_allowed, self.max_resets, self.min_difference = resets_allowed, max_resets, min_difference
        self.max_sequential_increases, self.min_kl, self.max_data_size = max_sequential_increases, min_kl, max_data_size
        self.budget, self.random_restart_prob, self.seed, self.backend = budget, random_restart_prob, seed, backend

    def fit(self, target: np.ndarray, pool: np.ndarray, start: np.ndarray | None = None) -> GIOSelector:
        result = gio_select(
            target,
            pool,
            k=self.k,
            lr=self.lr,
            steps=self.steps,
            max_iter=self.max_iter,
            stop=self.stop,
            start=start,
            start_size=self.start_size,
            normalize=self.normalize,
            v_init=self.v_init,
            scale=self.scale,
            resets_allowed=self.resets_allowed,
            max_resets=self.max_resets,
            min_difference=self.min_difference,
            max_sequential_increases=self.max_sequential_increases,
            min_kl=self.min_kl,
            max_data_size=self.max_data_size,
            budget=self.budget,
            random_restart_prob=self.random_restart_prob,
            seed=self.seed,
            backend=self.backend,
        )
        self.selected_ = result.selected
        self.kl_trajectory_ = result.kl_trajectory
        self.start_set_ = result.start_set
        self.start_kl_ = result.start_kl
        self.scale_factor_ = result.scale_factor
        self.n_resets_ = result.n_resets
        self.stop_reason_ = result.stop_reason
        return self


def gio_kl(target: np.ndarray, selected: np.ndarray, *, k: int = 5, eps: float = 1e-8) -> float:
    """The relaxed k-NN KL(target ‖ selected) that GIO minimises (the formula in ``gio_select``)."""
    target = _as_2d("gio_kl", "target", target)
    selected = _as_2d("gio_kl", "selected", selected)
    check_positive_int("gio_kl", "k", k)
    n, d = target.shape
    if n < k + 1:
        raise ValueError(f"The 'target' parameter of gio_kl needs at least k + 1 = {k + 1} rows. Got {n}.")
    x = torch.from_numpy(np.ascontiguousarray(target))
    xx = _sq_dists(x, x).topk(k + 1, dim=1, largest=False).values[:, -1]
    xw = _sq_dists(x, torch.from_numpy(np.ascontiguousarray(selected)))
    m = xw.shape[1]
    return float(d * _log_r(xw, eps).mean() - d * _log_r(xx, eps).mean()) + _correction(k, m, n)
