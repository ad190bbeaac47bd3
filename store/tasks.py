"""Tasks: the canonical task model, its validation and split carving.

A task is a named dataset with splits (``train``/``validation``/``test``), a text or a text pair per example, and a
label: a class index for classification, a float for regression. Its canonical form is an Arrow table with the
columns ``example_id, split, text, text_pair, label`` plus the label names, kind and provenance held on `Task`.

`build_task` turns raw rows (`RawRow`, from any reader: `store.task_files` for directories and files,
`store.task_records` for tables, `store.hf_tasks` for Hugging Face datasets) into a `Task`. Validation is strict
and happens before anything is stored: every problem raises `TaskValidationError` naming the task, the file, the
line or row and what was expected.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from store.errors import InputError, MissingSplitError

SPLITS = ("train", "validation", "test")
EVAL_SPLITS = ("validation", "test")
FORMATS = ("jsonl", "csv", "parquet")
TEXT_COLUMNS = ("text", "text_a", "sentence", "sentence1", "premise", "question")
PAIR_COLUMNS = ("text_pair", "text_b", "sentence2", "hypothesis")
Kind = Literal["classification", "regression"]

TASK_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("split", pa.string()),
        ("text", pa.string()),
        ("text_pair", pa.string()),
        ("label", pa.float64()),
    ]
)


class TaskValidationError(InputError):
    """A task's data does not meet the canonical form; the message names task, file, row and expectation."""


@dataclass(frozen=True)
class Task:
    """A validated task in canonical form.

    ``table`` has one row per example with ``example_id`` (stable content hash), ``split``, ``text``,
    ``text_pair`` (null for single-text tasks) and ``label`` (class index as float64 for classification,
    the value for regression). ``label_names`` is the declared or observed label set (classification only).
    ``derived_splits`` records splits carved from another one (see `carve_split`).
    """

    name: str
    kind: Kind
    input: Literal["single", "pair"]
    table: pa.Table
    label_names: tuple[str, ...] = ()
    source_uri: str = ""
    license: str | None = None
    warnings: tuple[str, ...] = ()
    derived_splits: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def splits(self) -> tuple[str, ...]:
        present = set(self.table.column("split").to_pylist())
        return tuple(s for s in SPLITS if s in present) + tuple(sorted(present - set(SPLITS)))

    def split(self, name: str) -> pa.Table:
        """Rows of one split, in file order."""
        if name not in self.splits:
            raise MissingSplitError(f"Task {self.name!r} has no split {name!r}; it has {list(self.splits)}.")
        mask = pc.equal(self.table.column("split"), name)
        return self.table.filter(mask)

    def split_hash(self, name: str, rows: Sequence[int] | np.ndarray | None = None) -> str:
        """Content hash of one split (or of its ``rows``, positions in the split: a sample): its example ids in
        order (text, pair, label and duplicates included)."""
        ids = self.split(name).column("example_id").to_pylist()
        return _digest(ids if rows is None else ["rows", *(ids[i] for i in rows)])

    @property
    def content_hash(self) -> str:
        """Content hash of the whole task: kind, input, label names and every split's content."""
        parts = [self.kind, self.input, json.dumps(list(self.label_names))]
        parts += [f"{s}:{self.split_hash(s)}" for s in self.splits]
        return _digest(parts)

    @property
    def n_classes(self) -> int | None:
        """The number of classes a model fine-tuned on this task outputs; None for regression."""
        return len(self.label_names) if self.kind == "classification" else None

    def counts(self) -> dict[str, int]:
        values = Counter(self.table.column("split").to_pylist())
        return {s: values[s] for s in self.splits}

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description stored beside the table."""
        return {
            "name": self.name,
            "kind": self.kind,
            "input": self.input,
            "label_names": list(self.label_names),
            "source_uri": self.source_uri,
            "license": self.license,
            "warnings": list(self.warnings),
            "derived_splits": {k: dict(v) for k, v in self.derived_splits.items()},
        }


def _digest(parts: Iterable[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ raw rows


@dataclass
class RawRow:
    """One example as a reader found it, before validation; ``where`` locates it for error messages."""

    text: Any
    text_pair: Any
    label: Any
    where: str  # "file 'x', line 3" or "row 3"


# ------------------------------------------------------------------------------------------ canonicalising


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _check_texts(task: str, split: str, rows: list[RawRow]) -> bool:
    """Validate text fields; return whether the split holds pairs. Mixed pair/single rows are an error."""
    has_pair = [not _is_missing(r.text_pair) and r.text_pair != "" for r in rows]
    is_pair = has_pair[0] if rows else False
    for row, pair in zip(rows, has_pair, strict=True):
        if not isinstance(row.text, str) or not row.text.strip():
            raise TaskValidationError(
                f"Task {task!r}, split {split!r}, {row.where}: text is {row.text!r}; expected a non-empty string."
            )
        if pair != is_pair:
            expected = "a text pair like the rows before it" if is_pair else "a single text like the rows before it"
            raise TaskValidationError(
                f"Task {task!r}, split {split!r}, {row.where}: mixed pair/single rows; expected {expected}."
            )
        if pair and not isinstance(row.text_pair, str):
            raise TaskValidationError(
                f"Task {task!r}, split {split!r}, {row.where}: text pair is {row.text_pair!r}; expected a string."
            )
    return is_pair


def _infer_kind(labels: Iterable[Any]) -> Kind:
    for value in labels:
        if isinstance(value, str | bool | np.bool_):
            return "classification"
        if isinstance(value, float | np.floating) and not float(value).is_integer():
            return "regression"
    return "classification"


def _label_key(value: Any) -> str:
    """Class label as a name: strings as they are, integral numbers without a trailing '.0'."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _regression_value(task: str, split: str, row: RawRow) -> float:
    try:
        value = float(row.label)
    except (TypeError, ValueError):
        raise TaskValidationError(
            f"Task {task!r}, split {split!r}, {row.where}: label {row.label!r} is not a number; expected a finite "
            "float for a regression task."
        ) from None
    if not math.isfinite(value):
        raise TaskValidationError(
            f"Task {task!r}, split {split!r}, {row.where}: label is {value}; expected a finite float (NaN/inf are "
            "not allowed in a regression task)."
        )
    return value


def _class_index(task: str, split: str, row: RawRow, index: Mapping[str, int], declared: bool, n_names: int) -> int:
    key = _label_key(row.label)
    if key in index:
        return index[key]
    is_int = isinstance(row.label, int | np.integer) and not isinstance(row.label, bool)
    if declared and is_int and 0 <= int(row.label) < n_names:
        return int(row.label)  # an integer label with declared names is a class index
    origin = "declared" if declared else "seen in train"
    raise TaskValidationError(
        f"Task {task!r}, split {split!r}, {row.where}: unknown label {row.label!r}; expected one of the labels "
        f"{origin}: {sorted(index)[:20]}."
    )


def _example_ids(split: str, texts: list[str], pairs: list[str | None], labels: list[float]) -> list[str]:
    """Stable ids: hash of (split, text, text_pair, label) plus the occurrence number among identical rows."""
    seen: Counter[tuple[str, str | None, float]] = Counter()
    ids = []
    for text, pair, label in zip(texts, pairs, labels, strict=True):
        key = (text, pair, label)
        occurrence = seen[key]
        seen[key] += 1
        ids.append(_digest([split, text, "" if pair is None else pair, repr(label), str(occurrence)])[:20])
    return ids


def build_task(
    name: str,
    rows_by_split: Mapping[str, list[RawRow]],
    *,
    kind: Kind | None = None,
    label_names: Sequence[str] | None = None,
    source_uri: str = "",
    license: str | None = None,
) -> Task:
    """Validate raw rows per split and return the canonical `Task`. Raises `TaskValidationError`."""
    if not rows_by_split or all(not rows for rows in rows_by_split.values()):
        raise TaskValidationError(f"Task {name!r}: empty task; expected at least one split with examples.")
    for split, rows in rows_by_split.items():
        if not rows:
            raise TaskValidationError(f"Task {name!r}, split {split!r}: empty split; expected at least one example.")
    pair_flags = {split: _check_texts(name, split, rows) for split, rows in rows_by_split.items()}
    if len(set(pair_flags.values())) > 1:
        raise TaskValidationError(
            f"Task {name!r}: mixed pair/single rows across splits {pair_flags}; expected every split to be pairs or "
            "every split to be single texts."
        )
    is_pair = next(iter(pair_flags.values()))
    all_labels = (r.label for rows in rows_by_split.values() for r in rows)
    kind = kind or _infer_kind(label for label in all_labels if not _is_missing(label))
    if kind not in ("classification", "regression"):
        raise TaskValidationError(f"Task {name!r}: kind {kind!r}; expected 'classification' or 'regression'.")
    warnings_: list[str] = []
    reference = rows_by_split.get("train") or next(iter(rows_by_split.values()))
    reference_split = "train" if "train" in rows_by_split else next(iter(rows_by_split))
    names: tuple[str, ...] = ()
    if kind == "classification":
        declared = label_names is not None
        for split, rows in rows_by_split.items():
            for row in rows:
                if _is_missing(row.label):
                    raise TaskValidationError(
                        f"Task {name!r}, split {split!r}, {row.where}: missing label; expected a class label."
                    )
        if declared:
            names = tuple(str(n) for n in label_names or ())
        else:
            keys = {_label_key(r.label) for r in reference}
            numeric = all(k.lstrip("-").isdigit() for k in keys)
            names = tuple(sorted(keys, key=int) if numeric else sorted(keys))
        index = {n: i for i, n in enumerate(names)}
        labels_by_split = {
            split: [float(_class_index(name, split, r, index, declared, len(names))) for r in rows]
            for split, rows in rows_by_split.items()
        }
        train_classes = set(labels_by_split[reference_split])
        if len(train_classes) < 2:
            raise TaskValidationError(
                f"Task {name!r}, split {reference_split!r}: a single class ({names[int(min(train_classes))]!r}); "
                "expected at least two classes to learn from."
            )
        unseen = [n for i, n in enumerate(names) if float(i) not in train_classes]
        if unseen:
            warnings_.append(
                f"{len(unseen)} of {len(names)} declared labels never occur in {reference_split}: {unseen[:10]}"
            )
    else:
        labels_by_split = {
            split: [_regression_value(name, split, r) for r in rows] for split, rows in rows_by_split.items()
        }
    columns: dict[str, list[Any]] = {c: [] for c in TASK_SCHEMA.names}
    for split, rows in rows_by_split.items():
        texts = [r.text for r in rows]
        pairs = [r.text_pair if is_pair else None for r in rows]
        labels = labels_by_split[split]
        columns["example_id"] += _example_ids(split, texts, pairs, labels)
        columns["split"] += [split] * len(rows)
        columns["text"] += texts
        columns["text_pair"] += pairs
        columns["label"] += labels
        conflicts = _conflicting_labels(texts, pairs, labels)
        if conflicts:
            warnings_.append(f"{conflicts} texts in {split} occur with conflicting labels")
    table = pa.table(columns, schema=TASK_SCHEMA)
    task = Task(
        name=name,
        kind=kind,
        input="pair" if is_pair else "single",
        table=table,
        label_names=names,
        source_uri=source_uri,
        license=license,
        warnings=tuple(warnings_),
    )
    for message in warnings_:
        warnings.warn(f"Task {name!r}: {message}", stacklevel=3)
    return task


def _conflicting_labels(texts: list[str], pairs: list[str | None], labels: list[float]) -> int:
    seen: dict[tuple[str, str | None], set[float]] = {}
    for text, pair, label in zip(texts, pairs, labels, strict=True):
        seen.setdefault((text, pair), set()).add(label)
    return sum(1 for values in seen.values() if len(values) > 1)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-." for c in name):
        raise TaskValidationError(
            f"The 'name' parameter must be a non-empty string of letters, digits, '_', '-' or '.'. Got {name!r}."
        )
    return name


# ---------------------------------------------------------------------------------------- split carving


def carve_split(task: Task, new_split: str, *, from_split: str = "train", fraction: float = 0.1, seed: int = 0) -> Task:
    """Carve ``new_split`` out of ``from_split`` deterministically (seeded, stratified by class for
    classification, by label quantile for regression); the task records what it did in ``derived_splits``.

    Example ids of moved rows change with their split (the id hashes the split)."""
    if new_split in task.splits:
        raise TaskValidationError(f"Task {task.name!r} already has a {new_split!r} split; nothing to carve.")
    if not 0.0 < fraction < 1.0:
        raise TaskValidationError(
            f"The 'fraction' parameter of carve_split must be a float in (0, 1). Got {fraction!r} instead."
        )
    source = task.split(from_split)
    labels = np.asarray(source.column("label").to_numpy(zero_copy_only=False), dtype=np.float64)
    if task.kind == "regression":
        groups = np.searchsorted(np.quantile(labels, [0.2, 0.4, 0.6, 0.8]), labels)
    else:
        groups = labels.astype(np.int64)
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(labels), dtype=bool)
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        take = int(round(fraction * len(members)))
        if take:
            chosen[rng.choice(members, size=take, replace=False)] = True
    if chosen.all() or not chosen.any():
        raise TaskValidationError(
            f"Task {task.name!r}: carving {fraction} of {len(labels)} {from_split} rows leaves an empty split."
        )
    rows = source.to_pylist()
    kept = [r for r, c in zip(rows, chosen, strict=True) if not c]
    moved = [r for r, c in zip(rows, chosen, strict=True) if c]
    others = task.table.filter(pc.not_equal(task.table.column("split"), from_split)).to_pylist()
    rebuilt = []
    for split, part in ((from_split, kept), (new_split, moved)):
        ids = _example_ids(split, [r["text"] for r in part], [r["text_pair"] for r in part], [r["label"] for r in part])
        rebuilt += [{**r, "split": split, "example_id": i} for r, i in zip(part, ids, strict=True)]
    table = pa.Table.from_pylist(others + rebuilt, schema=TASK_SCHEMA)
    derived = {**task.derived_splits, new_split: {"from": from_split, "fraction": fraction, "seed": seed}}
    return replace(task, table=table, derived_splits=derived)


def ensure_split(task: Task, split: str, *, from_split: str = "train", fraction: float = 0.1, seed: int = 0) -> Task:
    """The task itself when it has ``split``; otherwise a copy with the split carved (see `carve_split`)."""
    if split in task.splits:
        return task
    return carve_split(task, split, from_split=from_split, fraction=fraction, seed=seed)
