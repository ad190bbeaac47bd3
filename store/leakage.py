"""Leakage guard: keep a task's training data free of texts that another task evaluates on.

mr, sst2 and sst5 share Rotten Tomatoes sentences (SST's copy is tokenised: "it 's", "does n't"), and subj shares
snippets with mr. Texts are compared after lower-casing and keeping only letters and digits, so tokenisation and
punctuation do not hide an overlap. A pair example matches only when both of its texts match.

A task's evaluation data is its validation and test splits; a task with neither (one file registered as train) is
evaluated on a test split carved from its train split per seed (`flows.measure.target_splits`), so any of its train
rows may be held out and its whole train split is guarded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.compute as pc

from store.errors import InputError
from store.tasks import EVAL_SPLITS, Task

_NOT_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


def normalise_text(text: str | None) -> str:
    """Lower-cased letters and digits only: ``"It 's  GOOD!"`` → ``"itsgood"``."""
    return "" if text is None else _NOT_ALNUM.sub("", text.lower())


def _keys(table: pa.Table) -> list[str]:
    texts = table.column("text").to_pylist()
    pairs = table.column("text_pair").to_pylist()
    return [normalise_text(t) + "\x1f" + normalise_text(p) for t, p in zip(texts, pairs, strict=True)]


@dataclass(frozen=True)
class LeakageReport:
    """How many training rows of ``task`` were dropped, in total and per other task, and their ids."""

    task: str
    split: str
    n_before: int
    n_dropped: int
    dropped_by_task: dict[str, int]
    dropped_ids: tuple[str, ...] = ()


def evaluation_splits(task: Task) -> tuple[str, ...]:
    """The splits ``task`` may be evaluated on: its validation and test splits; without either, its train split
    (a test split is carved from it per seed, so every train row may be held out)."""
    present = tuple(s for s in EVAL_SPLITS if s in task.splits)
    return present or tuple(s for s in ("train",) if s in task.splits)


def evaluation_keys(tasks: Iterable[Task]) -> dict[str, set[str]]:
    """Normalised text keys of each task's `evaluation_splits`."""
    return {task.name: {k for s in evaluation_splits(task) for k in _keys(task.split(s))} for task in tasks}


@dataclass(frozen=True)
class EvaluationIndex:
    """Which tasks evaluate on each normalised text key (key -> the names of the tasks whose `evaluation_splits`
    hold it): built once over a workspace's tasks, it guards every source in one dictionary lookup per row, so
    guarding n sources costs O(total rows), not O(n²) task scans."""

    owners: dict[str, frozenset[str]]

    @classmethod
    def of(cls, tasks: Iterable[Task]) -> EvaluationIndex:
        owners: dict[str, set[str]] = {}
        for name, keys in evaluation_keys(tasks).items():
            for key in keys:
                owners.setdefault(key, set()).add(name)
        return cls({key: frozenset(names) for key, names in owners.items()})


def drop_leaked(
    task: Task,
    others: Iterable[Task] | EvaluationIndex,
    *,
    split: str = "train",
) -> tuple[Task, LeakageReport]:
    """Drop from ``task``'s ``split`` every example whose normalised text (or pair) occurs in the
    `evaluation_splits` of any task in ``others`` (tasks, or an `EvaluationIndex` over them; ``task`` itself never
    counts); return the cleaned task and a report of what was dropped."""
    if split not in task.splits:
        return task, LeakageReport(task.name, split, 0, 0, {})
    index = others if isinstance(others, EvaluationIndex) else EvaluationIndex.of(others)
    rows = task.split(split)
    keys = _keys(rows)
    dropped_by_task: Counter[str] = Counter()
    leaked = [False] * len(keys)
    for i, key in enumerate(keys):
        owners = index.owners.get(key, frozenset()) - {task.name}
        if owners:
            leaked[i] = True
            dropped_by_task.update(owners)
    drop_ids = tuple(eid for eid, bad in zip(rows.column("example_id").to_pylist(), leaked, strict=True) if bad)
    report = LeakageReport(task.name, split, len(keys), len(drop_ids), dict(dropped_by_task), drop_ids)
    if drop_ids and len(drop_ids) == len(keys):
        raise InputError(
            f"Task {task.name!r}: every {split} example also occurs in another task's evaluation data "
            f"({dict(dropped_by_task)}); nothing would be left to train on."
        )
    return drop_examples(task, drop_ids), report


def drop_examples(task: Task, example_ids: Sequence[str]) -> Task:
    """``task`` without the rows whose ``example_id`` is in ``example_ids`` (e.g. a plan's leaked rows)."""
    if not example_ids:
        return task
    keep = pc.invert(pc.is_in(task.table.column("example_id"), value_set=pa.array(list(example_ids))))
    return replace(task, table=task.table.filter(keep))
