"""Embedding Space Maps (Schulte et al., EMNLP 2024, "Less is More: Parameter-Efficient Selection of Intermediate
Tasks for Transfer Learning"; package ``hf-dataset-selector``).

An ESM approximates what fine-tuning on a source task does to the embedding space: one affine map
``φ(x) = W x + b`` (``W`` [d, d], ``b`` [d]) from the base encoder's embedding of a text to the source-fine-tuned
encoder's embedding of the same text. Two fits:

* ``"sgd"`` — the paper's recipe: ``Linear(d, d)`` trained with MSE, AdamW (lr 1e-3, weight decay 0.001 as in the
  paper's ``train_esm.py``; the package's ``ESMTrainer`` defaults are 0.01/0.01), 10 epochs, batch 32, linear decay
  without warm-up, gradient-norm clipping at 1.0, batches in data order (the paper's pipeline does not shuffle).
  One deliberate difference: the map starts at the identity (``init="identity"``) instead of ``nn.Linear``'s random
  init (``init="random"`` reproduces the paper). The MSE objective is convex, so both reach the same least-squares
  map given enough steps; from a random start, lr 1e-3 with linear decay moves a weight by at most lr·steps/2, so
  with fewer than ~2,000 steps (e.g. 800 texts × 10 epochs = 250 steps) the random-start map is still worse than
  the identity (measured on SST-2: held-out MSE 1.0e-3 vs identity 2.7e-4), while the identity start fits.
* ``"ridge"`` — the closed form ``argmin ‖X Wᵀ + 1bᵀ − Y‖² + α‖W − I‖²`` (shrunk towards "fine-tuning changed
  nothing", bias unpenalised), a fast alternative: with centred ``Xc, Yc``,
  ``Wᵀ = I + (XcᵀXc + αI)⁻¹ Xcᵀ(Yc − Xc)`` and ``b = ȳ − W x̄``; ``α = ridge_alpha · tr(XcᵀXc)/d`` so the
  penalty does not depend on the embeddings' scale.

Saved as safetensors (``weight``, ``bias``) with a JSON config in the file's metadata; `export_hfselect` and
`import_hfselect` read and write the directory layout ``hf-dataset-selector`` saves and shares on the Hub
(``config.json`` + ``model.safetensors`` with ``model.weight``/``model.bias``).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from transfer.checks import check_positive_int
from transfer.errors import InputError

HFSELECT_VERSION = "0.2.1"


@dataclass(frozen=True)
class ESMRecipe:
    """Training recipe of an SGD-fitted ESM (defaults: the paper's scripts)."""

    lr: float = 1e-3
    weight_decay: float = 0.001
    epochs: int = 10
    batch_size: int = 32
    grad_clip: float = 1.0
    shuffle: bool = False
    seed: int = 0
    init: Literal["identity", "random"] = "identity"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            check_positive_int("ESMRecipe", name, getattr(self, name))
        if self.init not in ("identity", "random"):
            raise InputError(f"The 'init' parameter of ESMRecipe must be 'identity' or 'random'. Got {self.init!r}.")
        if not self.lr > 0 or self.weight_decay < 0 or not self.grad_clip > 0:
            raise InputError(
                f"ESMRecipe needs lr > 0, weight_decay >= 0 and grad_clip > 0. Got {self.lr!r}, "
                f"{self.weight_decay!r}, {self.grad_clip!r} instead."
            )


def _as_matrix(name: str, value: Any, dim: int | None = None) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2 or (dim is not None and array.shape[1] != dim) or not np.isfinite(array).all():
        expected = f"[n, {dim}]" if dim is not None else "[n, d]"
        raise InputError(
            f"The {name!r} parameter of EmbeddingSpaceMap must be a finite {expected} matrix. Got shape "
            f"{array.shape} instead."
        )
    return array


class EmbeddingSpaceMap:
    """An affine map between embedding spaces, fitted scikit-learn style.

    Parameters: ``fit_method`` ``"sgd"`` (the paper's recipe) or ``"ridge"`` (closed form, penalty
    ``ridge_alpha``); ``recipe`` for SGD. Learned state: ``weight_`` [d, d] and ``bias_`` [d] (float32),
    ``n_features_in_``, ``losses_`` (SGD: one mean loss per epoch).
    """

    def __init__(
        self,
        *,
        fit_method: Literal["sgd", "ridge"] = "sgd",
        recipe: ESMRecipe = ESMRecipe(),
        ridge_alpha: float = 0.1,
        device: str = "cpu",
    ) -> None:
        if fit_method not in ("sgd", "ridge"):
            raise InputError(
                f"The 'fit_method' parameter of EmbeddingSpaceMap must be 'sgd' or 'ridge'. Got {fit_method!r}."
            )
        if not ridge_alpha >= 0:
            raise InputError(f"The 'ridge_alpha' parameter must be >= 0. Got {ridge_alpha!r} instead.")
        self.fit_method = fit_method
        self.recipe = recipe
        self.ridge_alpha = ridge_alpha
        self.device = device

    def params(self) -> dict[str, Any]:
        """What decides the fitted map besides the data (stored with it and in the cache key)."""
        if self.fit_method == "ridge":
            return {"fit_method": "ridge", "ridge_alpha": self.ridge_alpha}
        return {"fit_method": "sgd", **asdict(self.recipe)}

    def fit(self, base: np.ndarray, tuned: np.ndarray) -> EmbeddingSpaceMap:
        """Fit φ so that φ(base[i]) ≈ tuned[i]; ``base`` and ``tuned`` are [n, d] embeddings of the same texts."""
        base = _as_matrix("base", base)
        tuned = _as_matrix("tuned", tuned, base.shape[1])
        if len(tuned) != len(base) or len(base) < 2:
            raise InputError(
                f"The 'base' and 'tuned' parameters of EmbeddingSpaceMap.fit must hold the same texts (>= 2). "
                f"Got {len(base)} and {len(tuned)} rows."
            )
        self.n_features_in_ = base.shape[1]
        if self.fit_method == "ridge":
            self._fit_ridge(base.astype(np.float64), tuned.astype(np.float64))
        else:
            self._fit_sgd(base.astype(np.float32), tuned.astype(np.float32))
        return self

    def _fit_ridge(self, x: np.ndarray, y: np.ndarray) -> None:
        x_mean, y_mean = x.mean(0), y.mean(0)
        xc, yc = x - x_mean, y - y_mean
        gram = xc.T @ xc
        penalty = self.ridge_alpha * np.trace(gram) / x.shape[1]
        identity = np.eye(x.shape[1])
        weight_t = identity + np.linalg.solve(gram + penalty * identity, xc.T @ (yc - xc))  # [d, d] = Wᵀ
        self.weight_ = weight_t.T.astype(np.float32)
        self.bias_ = (y_mean - x_mean @ weight_t).astype(np.float32)
        self.losses_: list[float] = []

    def _fit_sgd(self, x: np.ndarray, y: np.ndarray) -> None:
        recipe = self.recipe
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            layer = nn.Linear(x.shape[1], y.shape[1]).to(self.device)
        if recipe.init == "identity":
            with torch.no_grad():
                layer.weight.copy_(torch.eye(x.shape[1]))
                layer.bias.zero_()
        optimizer = torch.optim.AdamW(layer.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        steps_per_epoch = -(-len(x) // recipe.batch_size)
        total = steps_per_epoch * recipe.epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
        inputs, targets = torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
        rng = np.random.default_rng(recipe.seed)
        self.losses_ = []
        for _ in range(recipe.epochs):
            order = rng.permutation(len(x)) if recipe.shuffle else np.arange(len(x))
            epoch_loss = 0.0
            for first in range(0, len(x), recipe.batch_size):
                index = torch.from_numpy(order[first : first + recipe.batch_size]).to(self.device)
                loss = nn.functional.mse_loss(layer(inputs[index]), targets[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(layer.parameters(), recipe.grad_clip)
                optimizer.step()
                scheduler.step()
                epoch_loss += float(loss.detach()) * len(index)
            self.losses_.append(epoch_loss / len(x))
        self.weight_ = layer.weight.detach().cpu().numpy()
        self.bias_ = layer.bias.detach().cpu().numpy()

    def _check_fitted(self) -> None:
        if not hasattr(self, "weight_"):
            raise RuntimeError("This EmbeddingSpaceMap is not fitted yet; call fit(base, tuned) first.")

    def transform(self, base: np.ndarray) -> np.ndarray:
        """φ(base) = base Wᵀ + b, [n, d], in the input's float precision (float64 stays float64)."""
        self._check_fitted()
        base = _as_matrix("base", base, self.n_features_in_)
        dtype = np.float64 if base.dtype == np.float64 else np.float32
        return (base @ self.weight_.T.astype(dtype) + self.bias_.astype(dtype)).astype(dtype)

    def mse(self, base: np.ndarray, tuned: np.ndarray) -> float:
        """Mean squared error of φ(base) against ``tuned`` (per entry, as the training loss)."""
        return float(np.mean((self.transform(base) - np.asarray(tuned, dtype=np.float64)) ** 2))

    @property
    def affine(self) -> np.ndarray:
        """Ã = [W b], float64 [d, d + 1]: φ(x) = Ã [x; 1]."""
        self._check_fitted()
        return np.hstack([self.weight_, self.bias_[:, None]]).astype(np.float64)

    # --------------------------------------------------------------------------------------- persistence

    def save(self, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> Path:
        """Write ``weight``/``bias`` safetensors with ``{"params": ..., **metadata}`` as JSON metadata,
        atomically (temporary file, then rename)."""
        from safetensors.numpy import save_file

        self._check_fitted()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        config = {"params": self.params(), **(metadata or {})}
        try:
            save_file({"weight": self.weight_, "bias": self.bias_}, str(tmp), metadata={"config": json.dumps(config)})
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> tuple[EmbeddingSpaceMap, dict[str, Any]]:
        """A map saved by `save`, with its config."""
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            config = json.loads((handle.metadata() or {}).get("config", "{}"))
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - safe_open is no dict
        return cls._from_arrays(tensors["weight"], tensors["bias"], config.get("params", {})), config

    @classmethod
    def _from_arrays(cls, weight: np.ndarray, bias: np.ndarray, params: dict[str, Any]) -> EmbeddingSpaceMap:
        if weight.ndim != 2 or weight.shape[0] != weight.shape[1] or bias.shape != (weight.shape[0],):
            raise InputError(f"An ESM needs weight [d, d] and bias [d]. Got {weight.shape} and {bias.shape}.")
        if params.get("fit_method") == "ridge":
            esm = cls(fit_method="ridge", ridge_alpha=params.get("ridge_alpha", 0.1))
        else:
            recipe_fields = {k: v for k, v in params.items() if k in ESMRecipe.__dataclass_fields__}
            esm = cls(recipe=ESMRecipe(**recipe_fields))
        esm.weight_ = weight.astype(np.float32)
        esm.bias_ = bias.astype(np.float32)
        esm.n_features_in_ = weight.shape[1]
        esm.losses_ = []
        return esm


def export_hfselect(esm: EmbeddingSpaceMap, directory: str | os.PathLike[str], config: dict[str, Any]) -> Path:
    """Write ``directory`` in the layout ``hf-dataset-selector`` loads (``ESM.from_pretrained``) and publishes:
    ``model.safetensors`` (``model.weight``, ``model.bias``) and ``config.json`` (an ``ESMConfig``: at least
    ``base_model_name`` and ``task_id``; the ESM's own fields are filled in)."""
    import torch as _torch
    from safetensors.torch import save_file

    esm._check_fitted()
    if not config.get("base_model_name") or not config.get("task_id"):
        raise InputError("The 'config' parameter of export_hfselect needs 'base_model_name' and 'task_id'.")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    params = esm.params()
    fields = {
        "esm_architecture": "linear",
        "esm_embedding_dim": esm.n_features_in_,
        "esm_num_epochs": params.get("epochs"),
        "esm_batch_size": params.get("batch_size"),
        "esm_learning_rate": params.get("lr"),
        "esm_weight_decay": params.get("weight_decay"),
        "esm_optimizer": "AdamW" if esm.fit_method == "sgd" else "ridge (closed form)",
        "version": HFSELECT_VERSION,
        **config,
    }
    tensors = {"model.weight": _torch.from_numpy(esm.weight_.copy()), "model.bias": _torch.from_numpy(esm.bias_.copy())}
    save_file(tensors, str(target / "model.safetensors"))
    (target / "config.json").write_text(json.dumps(fields, indent=2, sort_keys=True))
    return target


def import_hfselect(directory: str | os.PathLike[str]) -> tuple[EmbeddingSpaceMap, dict[str, Any]]:
    """Read an ESM directory written by ``hf-dataset-selector`` (current and legacy 0.1.0 layouts) or by
    `export_hfselect`; returns the map and the ``config.json`` fields."""
    from safetensors.numpy import load_file

    path = Path(directory)
    if not (path / "config.json").exists() or not (path / "model.safetensors").exists():
        raise InputError(
            f"The 'directory' parameter of import_hfselect must hold config.json and model.safetensors. Got '{path}'."
        )
    config = json.loads((path / "config.json").read_text())
    if config.get("esm_architecture", "linear") != "linear":
        raise InputError(f"Only linear ESMs can be imported. Got architecture {config.get('esm_architecture')!r}.")
    tensors = load_file(str(path / "model.safetensors"))
    prefix = "model." if "model.weight" in tensors else "sequential.0."  # 0.1.0 wrapped the Linear in a Sequential
    if f"{prefix}weight" not in tensors:
        raise InputError(f"'{path / 'model.safetensors'}' holds no linear ESM weights; found {sorted(tensors)}.")
    params = {"fit_method": "sgd"}
    for ours, theirs in (("lr", "esm_learning_rate"), ("weight_decay", "esm_weight_decay"),
                         ("epochs", "esm_num_epochs"), ("batch_size", "esm_batch_size")):  # fmt: skip
        if config.get(theirs) is not None:
            params[ours] = config[theirs]
    return EmbeddingSpaceMap._from_arrays(tensors[f"{prefix}weight"], tensors[f"{prefix}bias"], params), config
