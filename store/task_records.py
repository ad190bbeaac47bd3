"""Records to tasks: the reading step every task reader shares. A record is one example as a dict (a file's line,
a table's row, a Hugging Face split's row) with its 1-based line or row number; `rows_from_records` picks the text,
pair and label columns and locates each row for error messages, `task_from_records` groups records by split and
validates them with `store.tasks.build_task`, and `task_from_table` does both for a pandas DataFrame or Arrow table.

Readers: `store.task_files` (directories and files) and `store.hf_tasks` (Hugging Face datasets) both build on this
module, so neither needs the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from store.tasks import (
    PAIR_COLUMNS,
    SPLITS,
    TEXT_COLUMNS,
    Kind,
    RawRow,
    Task,
    TaskValidationError,
    build_task,
    check_name,
)


def _location(path: str, line: int, kind: str = "line") -> str:
    return f"file '{path}', {kind} {line}" if path else f"row {line}"


def _pick_column(
    task: str, where: str, columns: Iterable[str], explicit: str | None, candidates: Sequence[str], role: str
) -> str | None:
    columns = list(columns)
    if explicit is not None:
        if explicit not in columns:
            raise TaskValidationError(
                f"Task {task!r}, {where}: missing {role} column {explicit!r}; found columns {columns}."
            )
        return explicit
    return next((c for c in candidates if c in columns), None)


def rows_from_records(
    task: str,
    path: str,
    records: list[tuple[dict[str, Any], int]],
    *,
    text_column: str | None,
    text_pair_column: str | None,
    label_column: str,
    row_kind: str = "line",
) -> list[RawRow]:
    """One `RawRow` per record: the text column (``text_column``, else the first of ``TEXT_COLUMNS`` present in
    the first record), the pair column likewise, and ``label_column``; ``path`` ("" for a table) and ``row_kind``
    locate each row in errors."""
    if not records:
        return []
    first = records[0][0]
    where = f"file '{path}'" if path else "table"
    text_col = _pick_column(task, where, first.keys(), text_column, TEXT_COLUMNS, "text")
    if text_col is None:
        raise TaskValidationError(
            f"Task {task!r}, {where}: missing text column; expected one of {list(TEXT_COLUMNS)} or an explicit "
            f"text_column, found {list(first.keys())}."
        )
    pair_col = _pick_column(task, where, first.keys(), text_pair_column, PAIR_COLUMNS, "text pair")
    rows = []
    for record, number in records:
        loc = _location(path, number, row_kind)
        if label_column not in record:
            raise TaskValidationError(
                f"Task {task!r}, {loc}: missing label field {label_column!r}; expected a class name, class index "
                "or number."
            )
        if text_col not in record:
            raise TaskValidationError(f"Task {task!r}, {loc}: missing text field {text_col!r}.")
        pair = record.get(pair_col) if pair_col else None
        rows.append(RawRow(record[text_col], pair, record[label_column], loc))
    return rows


def task_from_records(
    name: str,
    path: str,
    records: list[tuple[dict[str, Any], int]],
    *,
    split: str,
    split_column: str | None,
    row_kind: str,
    columns: tuple[str | None, str | None, str],
    kind: Kind | None,
    label_names: Sequence[str] | None,
    source_uri: str,
    license: str | None,
) -> Task:
    """Group records by split, read their (text, pair, label) ``columns`` and validate them into a `Task`."""
    text_column, text_pair_column, label_column = columns
    grouped = _group_by_split(name, path, records, split, split_column, row_kind)
    rows_by_split = {
        s: rows_from_records(
            name,
            path,
            recs,
            text_column=text_column,
            text_pair_column=text_pair_column,
            label_column=label_column,
            row_kind=row_kind,
        )
        for s, recs in grouped.items()
    }
    return build_task(name, rows_by_split, kind=kind, label_names=label_names, source_uri=source_uri, license=license)


def _group_by_split(
    task: str,
    path: str,
    records: list[tuple[dict[str, Any], int]],
    split: str,
    split_column: str | None,
    row_kind: str,
) -> dict[str, list[tuple[dict[str, Any], int]]]:
    if split_column is None:
        return {split: records}
    grouped: dict[str, list[tuple[dict[str, Any], int]]] = {}
    for record, number in records:
        value = record.get(split_column)
        if value not in SPLITS:
            raise TaskValidationError(
                f"Task {task!r}, {_location(path, number, row_kind)}: split column {split_column!r} is {value!r}; "
                f"expected one of {list(SPLITS)}."
            )
        grouped.setdefault(str(value), []).append((record, number))
    return grouped


def task_from_table(
    data: pd.DataFrame | pa.Table,
    name: str,
    *,
    split: str = "train",
    split_column: str | None = "split",
    kind: Kind | None = None,
    label_names: Sequence[str] | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str = "label",
    source_uri: str = "",
    license: str | None = None,
) -> Task:
    """Build a task from a pandas DataFrame or Arrow table (rows are numbered from 1 in errors)."""
    name = check_name(name)
    frame = data.to_pandas() if isinstance(data, pa.Table) else data
    if not isinstance(frame, pd.DataFrame):
        raise TaskValidationError(
            f"The 'data' parameter of task_from_table must be a pandas DataFrame or pyarrow Table. Got "
            f"{type(data).__name__} instead."
        )
    records = [(rec, i + 1) for i, rec in enumerate(frame.to_dict(orient="records"))]
    return task_from_records(
        name,
        "",
        records,
        split=split,
        split_column=split_column if split_column in frame.columns else None,
        row_kind="row",
        columns=(text_column, text_pair_column, label_column),
        kind=kind,
        label_names=label_names,
        source_uri=source_uri or "memory",
        license=license,
    )
