"""The labelled rows the gradient-based selection methods (ICONS: `flows.icons`, VoG: `flows.vog`) read, and their
settings over the method's defaults.

Label space: the pool's label names are the model's classes; each target's labels are mapped onto them with
``label_map`` ({target label: pool label}; unmapped names must already match), and a label that matches no pool
label is an error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from selection.icons import ICONS_DEFAULTS
from selection.vog import VOG_DEFAULTS, VOG_STRATEGIES
from store.errors import InputError
from store.tasks import Task
from transfer.finetune import sample_indices


def method_settings(method: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` over the method's defaults; unknown names and a VoG strategy outside the list are errors."""
    defaults = ICONS_DEFAULTS if method == "icons" else VOG_DEFAULTS
    settings = {**defaults, **(options or {})}
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise InputError(
            f"The 'method_params' parameter has unknown {method} parameters {unknown}; known: {sorted(defaults)}."
        )
    if method == "icons" and not isinstance(settings["stratify"], bool):
        raise InputError(f"The 'stratify' ICONS parameter must be true or false. Got {settings['stratify']!r}.")
    if method == "vog" and settings["strategy"] not in VOG_STRATEGIES:
        raise InputError(
            f"The 'strategy' VoG parameter must be one of {list(VOG_STRATEGIES)}. Got {settings['strategy']!r}."
        )
    return settings


@dataclass(frozen=True)
class LabelledRows:
    """Rows of one task split with labels as pool class indices (float64; the value for regression)."""

    task: str
    split: str
    example_ids: list[str]
    texts: list[str]
    pairs: list[str] | None
    labels: np.ndarray


def labelled_rows(
    pool: Task, source: Task, split: str, label_map: Mapping[str, str] | None, *, max_rows: int | None, seed: int
) -> LabelledRows:
    """``source``'s ``split`` (a seeded sample of at most ``max_rows``) with labels in the pool's label space."""
    rows = source.split(split)
    if max_rows is not None:
        rows = rows.take(sample_indices(rows.num_rows, max_rows, seed))
    labels = rows.column("label").to_numpy()
    if pool.kind != source.kind:
        raise InputError(f"Pool {pool.name!r} is a {pool.kind} task but {source.name!r} is a {source.kind} task.")
    if pool.kind == "classification" and source is not pool:
        mapping = {name: (label_map or {}).get(name, name) for name in source.label_names}
        unknown = sorted({v for v in mapping.values() if v not in pool.label_names})
        if unknown:
            raise InputError(
                f"The labels {unknown} of target {source.name!r} match no label of pool {pool.name!r} "
                f"{list(pool.label_names)}; pass label_map={{target label: pool label}} for every label."
            )
        index = np.array([pool.label_names.index(mapping[name]) for name in source.label_names], dtype=np.float64)
        labels = index[labels.astype(int)]
    return LabelledRows(
        task=source.name,
        split=split,
        example_ids=rows.column("example_id").to_pylist(),
        texts=rows.column("text").to_pylist(),
        pairs=rows.column("text_pair").to_pylist() if source.input == "pair" else None,
        labels=labels,
    )


def target_rows(
    pool: Task, targets: list[Task], split: str, label_map: Mapping[str, str] | None, *, max_rows: int, seed: int
) -> list[LabelledRows]:
    """Each target's rows (a seeded sample of at most ``max_rows`` per target) in the pool's label space."""
    return [labelled_rows(pool, goal, split, label_map, max_rows=max_rows, seed=seed) for goal in targets]
