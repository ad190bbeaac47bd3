"""LogME: the maximum log evidence of a Bayesian linear model on fixed features (higher is better).

You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021
(reference code: thuml/LogME ``LogME.py``; also shipped in the ``hf-dataset-selector`` package).

Model, for features F [n, d] and one target column y [n]: w ~ N(0, α⁻¹I_d), y | F, w ~ N(Fw, β⁻¹I_n), so
y ~ N(0, β⁻¹I + α⁻¹FFᵀ). LogME is max over α, β of log p(y | F, α, β), divided by n. Classification uses one
one-hot column per class, regression one column per output; the score is the mean over columns.

With FᵀF = V diag(σ) Vᵀ and z = VᵀFᵀy (z² = σx² for x = Uᵀy, F = U S Vᵀ), MacKay's fixed point starts from
α = β = 1 and, with t = α/β, repeats

    γ = Σ σ/(σ+t),   m² = Σ z²/(σ+t)²,   res² = ‖y‖² − Σ z²(σ+2t)/(σ+t)²,
    α ← γ/(m² + 1e-5),   β ← (n − γ)/(res² + 1e-5),

until |t′ − t|/t ≤ ``tol`` (default 1e-3) or ``max_iter`` iterations (default 50, as hf-dataset-selector; thuml's
``LogME.py`` stops at 11, which some real columns exceed); m² = ‖m‖² and res² = ‖y − Fm‖² at the posterior mean
m = β(αI + βFᵀF)⁻¹Fᵀy. Nothing divides by σ, so null directions of F are harmless. Then

    evidence = d/2·log α + n/2·log β − ½ Σ_i log(α + βσ_i) − β/2·res² − α/2·m² − n/2·log 2π,

evaluated as the reference does (the final α, β with the m², res² of the last iteration) and divided by n.
Everything needs only the sufficient statistics FᵀF, Fᵀy, ‖y‖² and n (:func:`logme_statistics`), so callers that
know FᵀF another way (e.g. ESM-LogME's Ã G Ãᵀ) can call :func:`logme_evidence` without forming F. One symmetric
eigendecomposition of FᵀF serves every column; the fixed point runs for all columns together, each column frozen
at its own convergence, so every value equals the one-column computation.

Modes differ only in the log-determinant sum Σ_i log(α + βσ_i):

- ``"exact"`` (default): over all d eigenvalues of FᵀF, zeros included, i.e. the true log det(αI + βFᵀF). This is
  the true log evidence also when F is rank-deficient (d > n, or collinear features), which is what a score meant
  to compare feature extractors of different widths should be; it is the default for that reason.
- ``"reference"``: thuml's / hf-dataset-selector's value, which keeps d/2·log α but sums only over the min(n, d)
  largest eigenvalues (the singular values of its thin SVD of F). When d > n it exceeds the exact evidence by
  (d − n)/(2n)·log α. Use it to compare with published numbers. (When n > d the reference cuts singular values
  √σ ≤ 1e-10 from its SVD of FᵀF, but null directions come out of that SVD as rounding noise ≈ 1e-8·‖F‖, above the
  cut, so in practice it keeps all d, e.g. for all-MiniLM-L6-v2's dead dimensions or an all-zero column; so do
  we.)

Inputs with n > d give both modes the same value, rank-deficient (collinear, dead dimensions) or not. When d > n
the supremum of the evidence can lie on the boundary (β → ∞: y interpolated without noise; or α → ∞); the fixed
point then stops at a finite (α, β) whose evidence is a lower bound, as in the reference.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

try:  # a dependency of scikit-learn
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

Mode = Literal["exact", "reference"]
MODES = ("exact", "reference")
EPSILON = 1e-5  # added to m² and res² in the updates, as in the reference


@dataclass(frozen=True)
class LogMEStatistics:
    """Sufficient statistics of features F [n, d] and targets Y [n, c]: FᵀF [d, d], FᵀY [d, c], ‖y_j‖² [c], n."""

    gram: np.ndarray
    cross: np.ndarray
    target_sq: np.ndarray
    n: int


@dataclass(frozen=True)
class LogMEResult:
    """Per target column: evidence (divided by n), the maximising α and β, and the fixed-point iterations used."""

    evidences: np.ndarray
    alphas: np.ndarray
    betas: np.ndarray
    n_iter: np.ndarray

    @property
    def evidence(self) -> float:
        """The LogME score: the mean evidence over columns."""
        return float(self.evidences.mean())


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """The d × d eigendecomposition gains little from BLAS threads, and on busy cores their spin-waits make it up to
    ~100× slower (measured 3.5 s instead of 0.03 s at d = 384 on 2 loaded cores), so it runs on one thread."""
    return contextlib.nullcontext() if threadpool_limits is None else threadpool_limits(1, user_api="blas")


def _fail(caller: str, name: str, expected: str, got: Any) -> ValueError:
    return ValueError(f"The {name!r} parameter of {caller} must be {expected}. Got {got} instead.")


def check_features(features: Any, caller: str) -> np.ndarray:
    f = np.asarray(features)
    if f.ndim != 2:
        raise _fail(caller, "features", "a 2-D array [n_examples, n_features]", f"an array of shape {f.shape}")
    if f.shape[0] < 2 or f.shape[1] < 1:
        raise _fail(caller, "features", "an array with at least 2 rows and 1 column", f"shape {f.shape}")
    if not np.issubdtype(f.dtype, np.number) or np.issubdtype(f.dtype, np.complexfloating):
        raise _fail(caller, "features", "a real-valued numeric array", f"dtype {f.dtype}")
    f = f.astype(np.float64, copy=False)
    if not np.isfinite(f).all():
        bad = int((~np.isfinite(f)).sum())
        raise _fail(caller, "features", "finite (no NaN or inf)", f"{bad} non-finite values")
    return f


def _check_options(caller: str, mode: Any, max_iter: Any, tol: Any) -> None:
    if mode not in MODES:
        raise _fail(caller, "mode", f"one of {list(MODES)}", repr(mode))
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
        raise _fail(caller, "max_iter", "a positive int", repr(max_iter))
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not tol >= 0:
        raise _fail(caller, "tol", "a non-negative float", repr(tol))


def logme_targets(labels: Any, n: int, *, regression: bool, caller: str = "logme_targets") -> tuple[np.ndarray, Any]:
    """Target matrix Y [n, c] float64 and the classes (None for regression).

    Classification: ``labels`` [n] are integer class indices (integral floats accepted); one one-hot column per
    distinct label present, in sorted order, so gaps in the labels are not classes. Regression: ``labels`` [n] or
    [n, c] real values, one column per output.
    """
    y = np.asarray(labels)
    if y.ndim == 0 or y.shape[0] != n:
        got = f"{y.shape[0]} entries" if y.ndim else "a scalar"
        raise _fail(caller, "labels", f"an array with one entry per row of 'features' ({n})", got)
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool) or np.issubdtype(y.dtype, np.complexfloating):
        raise _fail(caller, "labels", "numeric", f"dtype {y.dtype}")
    if not np.isfinite(y).all():
        raise _fail(caller, "labels", "finite (no NaN or inf)", f"{int((~np.isfinite(y)).sum())} non-finite values")
    if regression:
        if y.ndim > 2 or y.size == 0:
            raise _fail(caller, "labels", "a 1-D or 2-D array of regression targets", f"shape {y.shape}")
        return y.reshape(n, -1).astype(np.float64), None
    if y.ndim != 1 or (np.issubdtype(y.dtype, np.floating) and not (y == np.round(y)).all()):
        raise _fail(caller, "labels", "a 1-D array of integer class indices", f"shape {y.shape}, dtype {y.dtype}")
    classes, codes = np.unique(y.astype(np.int64), return_inverse=True)
    if classes.size < 2:
        raise _fail(caller, "labels", "an array with at least 2 distinct classes", f"only class {classes.tolist()}")
    one_hot = np.zeros((n, classes.size))
    one_hot[np.arange(n), codes] = 1.0
    return one_hot, classes


def logme_statistics(features: np.ndarray, targets: np.ndarray) -> LogMEStatistics:
    """FᵀF, FᵀY, the squared norms of Y's columns and n, in float64, from features [n, d] and targets [n, c]."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    y = y.reshape(len(y), -1)
    return LogMEStatistics(gram=f.T @ f, cross=f.T @ y, target_sq=np.einsum("ij,ij->j", y, y), n=f.shape[0])


def logme_evidence(
    stats: LogMEStatistics, *, mode: Mode = "exact", max_iter: int = 50, tol: float = 1e-3
) -> LogMEResult:
    """Maximum evidence per target column from sufficient statistics (see the module docstring for the maths)."""
    _check_options("logme_evidence", mode, max_iter, tol)
    d = stats.gram.shape[0]
    with one_blas_thread():
        sigma, vectors = np.linalg.eigh(stats.gram)
    z2 = (vectors.T @ stats.cross.reshape(d, -1)) ** 2  # [d, c]
    return evidence_from_spectrum(sigma, z2, stats.target_sq, stats.n, mode=mode, max_iter=max_iter, tol=tol)


def evidence_from_spectrum(
    sigma: np.ndarray,
    z2: np.ndarray,
    target_sq: np.ndarray,
    n: int,
    *,
    mode: Mode = "exact",
    max_iter: int = 50,
    tol: float = 1e-3,
) -> LogMEResult:
    """The fixed point and evidence from the spectrum: eigenvalues ``sigma`` [d] of FᵀF and the squared
    projections ``z2`` [d, c] = (VᵀFᵀY)² of the cross statistics onto its eigenvectors."""
    d = sigma.shape[0]
    sigma = np.clip(sigma, 0.0, None)
    c = z2.shape[1]
    alpha, beta = np.ones(c), np.ones(c)
    m2, res2 = np.zeros(c), np.zeros(c)
    n_iter = np.zeros(c, dtype=np.int64)
    active = np.arange(c)
    col = sigma[:, None]
    for _ in range(max_iter):
        t = alpha[active] / beta[active]
        denom = col + t
        z2a, inv2 = z2[:, active], denom**-2
        gamma = (col / denom).sum(0)
        m2[active] = (z2a * inv2).sum(0)
        res2[active] = np.maximum(target_sq[active] - (z2a * (col + 2 * t) * inv2).sum(0), 0.0)
        alpha[active] = gamma / (m2[active] + EPSILON)
        beta[active] = (n - gamma) / (res2[active] + EPSILON)
        n_iter[active] += 1
        active = active[np.abs(alpha[active] / beta[active] - t) / t > tol]
        if active.size == 0:
            break
    # "reference" keeps what the reference's thin SVD of F keeps: the min(n, d) largest eigenvalues (eigh: ascending)
    kept = np.sort(sigma) if mode == "exact" else np.sort(sigma)[max(d - n, 0) :]
    logdet = np.log(alpha[None, :] + beta[None, :] * kept[:, None]).sum(0)
    evidence = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - logdet / 2
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * np.log(2 * np.pi)
    )
    return LogMEResult(evidences=evidence / n, alphas=alpha, betas=beta, n_iter=n_iter)


class LogME:
    """LogME as an estimator: ``LogME(regression=False).fit(features, labels).evidence_``; higher is better.

    ``features`` [n, d] (any real dtype, used in float64); ``labels`` [n] integer class indices, or for regression
    [n] / [n, c] real targets. ``mode`` is ``"exact"`` (default, the true evidence) or ``"reference"``
    (thuml/hf-dataset-selector's value); see the module docstring. After ``fit``: ``evidence_`` (the score),
    ``evidences_``, ``alphas_``, ``betas_`` and ``n_iter_`` per class/column, and ``classes_`` (None for
    regression).
    """

    def __init__(self, regression: bool = False, *, mode: Mode = "exact", max_iter: int = 50, tol: float = 1e-3):
        self.regression = regression
        self.mode = mode
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, features: np.ndarray, labels: np.ndarray) -> LogME:
        _check_options("LogME", self.mode, self.max_iter, self.tol)
        f = check_features(features, "LogME.fit")
        targets, self.classes_ = logme_targets(labels, f.shape[0], regression=self.regression, caller="LogME.fit")
        result = logme_evidence(logme_statistics(f, targets), mode=self.mode, max_iter=self.max_iter, tol=self.tol)
        self.evidence_ = result.evidence
        self.evidences_ = result.evidences
        self.alphas_ = result.alphas
        self.betas_ = result.betas
        self.n_iter_ = result.n_iter
        return self


def logme_score(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    regression: bool = False,
    mode: Mode = "exact",
    max_iter: int = 50,
    tol: float = 1e-3,
) -> float:
    """LogME of ``features`` [n, d] for ``labels`` (class indices [n], or regression targets [n] / [n, c]).

    The mean over classes/columns of the maximum log evidence divided by n; higher is better. See the module
    docstring for the model, the fixed point, the evidence and the two modes.
    """
    _check_options("logme_score", mode, max_iter, tol)
    f = check_features(features, "logme_score")
    targets, _ = logme_targets(labels, f.shape[0], regression=regression, caller="logme_score")
    return logme_evidence(logme_statistics(f, targets), mode=mode, max_iter=max_iter, tol=tol).evidence
