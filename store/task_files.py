"""Task readers for files and tables: a directory of ``{train,validation,test}.{jsonl,csv,parquet}`` (with an
optional ``meta.json``), one file (optionally with a split column), a pandas DataFrame or Arrow table; and
`load_task`, which picks the reader for a source (a Hugging Face name goes to `store.hf_tasks`).

Every reader turns records into `store.tasks.RawRow` s located by file and line (or row) and validates them with
`store.tasks.build_task`; errors name the task, the file, the line and what was expected.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from store.tasks import (
    FORMATS,
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


def _decode(task: str, path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise TaskValidationError(
            f"Task {task!r}, file '{path}', line {line}: undecodable bytes ({err.reason} at byte {err.start}); "
            "expected UTF-8 text."
        ) from None


def _read_records(task: str, path: Path) -> list[tuple[dict[str, Any], int]]:
    """Records of one file with their 1-based line (jsonl, csv: data line incl. header) or row number."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix == "parquet":
        try:
            frame = pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError) as err:  # pyarrow's error for an unreadable or corrupt file
            raise TaskValidationError(f"Task {task!r}, file '{path}': not a readable Parquet file ({err}).") from None
        return [(rec, i + 1) for i, rec in enumerate(frame.to_dict(orient="records"))]
    text = _decode(task, path, path.read_bytes())
    if suffix == "jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TaskValidationError(
                    f"Task {task!r}, file '{path}', line {number}: invalid JSON ({err.msg}); expected one JSON "
                    "object per line."
                ) from None
            if not isinstance(record, dict):
                raise TaskValidationError(
                    f"Task {task!r}, file '{path}', line {number}: expected a JSON object, got {type(record).__name__}."
                )
            records.append((record, number))
        return records
    if suffix == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        return [(row, reader.line_num) for row in reader]
    raise TaskValidationError(f"Task {task!r}, file '{path}': unsupported format {suffix!r}; expected {FORMATS}.")


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


def _rows_from_records(
    task: str,
    path: str,
    records: list[tuple[dict[str, Any], int]],
    *,
    text_column: str | None,
    text_pair_column: str | None,
    label_column: str,
    row_kind: str = "line",
) -> list[RawRow]:
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


def _read_meta(path: Path) -> dict[str, Any]:
    meta_path = path / "meta.json"
    if not meta_path.exists():
        return {}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TaskValidationError(f"File '{meta_path}': not valid JSON ({err}); expected a JSON object.") from None
    if not isinstance(meta, dict):
        raise TaskValidationError(f"File '{meta_path}': expected a JSON object, got {type(meta).__name__}.")
    return meta


def load_task_dir(
    path: str | Path,
    name: str | None = None,
    *,
    kind: Kind | None = None,
    label_names: Sequence[str] | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str = "label",
    license: str | None = None,
) -> Task:
    """Load a directory of ``{train,validation,test}.{jsonl,csv,parquet}``; ``meta.json`` (optional) supplies
    the name, ``type``, ``labels`` and licence. Explicit arguments override ``meta.json``."""
    path = Path(path)
    if not path.is_dir():
        raise TaskValidationError(f"The 'path' parameter must be a task directory. Got '{path}' instead.")
    meta = _read_meta(path)
    name = check_name(name or meta.get("task") or path.name)
    rows_by_split: dict[str, list[RawRow]] = {}
    for split in SPLITS:
        files = [path / f"{split}.{fmt}" for fmt in FORMATS if (path / f"{split}.{fmt}").exists()]
        if len(files) > 1:
            raise TaskValidationError(
                f"Task {name!r}: several files for split {split!r}: {[str(f) for f in files]}; expected one."
            )
        if files:
            records = _read_records(name, files[0])
            rows_by_split[split] = _rows_from_records(
                name,
                str(files[0]),
                records,
                text_column=text_column,
                text_pair_column=text_pair_column,
                label_column=label_column,
                row_kind="row" if files[0].suffix == ".parquet" else "line",
            )
    if not rows_by_split:
        raise TaskValidationError(
            f"Task {name!r}: directory '{path}' holds no split file; expected "
            f"{{{','.join(SPLITS)}}}.{{{','.join(FORMATS)}}}."
        )
    declared = label_names if label_names is not None else meta.get("labels")
    meta_kind = kind or meta.get("type")
    return build_task(
        name,
        rows_by_split,
        kind=meta_kind,
        label_names=declared if (meta_kind or "classification") == "classification" else None,
        source_uri=str(path.resolve()),
        license=license or (meta.get("source") or {}).get("license") or meta.get("license"),
    )


def load_task_file(
    path: str | Path,
    name: str | None = None,
    *,
    split: str = "train",
    split_column: str | None = None,
    kind: Kind | None = None,
    label_names: Sequence[str] | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str = "label",
    license: str | None = None,
) -> Task:
    """Load one jsonl/csv/parquet file: every row in ``split``, or split by the values of ``split_column``."""
    path = Path(path)
    if not path.is_file():
        raise TaskValidationError(f"The 'path' parameter must be an existing file. Got '{path}' instead.")
    name = check_name(name or path.stem)
    records = _read_records(name, path)
    return _task_from_records(
        name,
        str(path),
        records,
        split=split,
        split_column=split_column,
        row_kind="row" if path.suffix == ".parquet" else "line",
        columns=(text_column, text_pair_column, label_column),
        kind=kind,
        label_names=label_names,
        source_uri=str(path.resolve()),
        license=license,
    )


def _task_from_records(
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
        s: _rows_from_records(
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
    return _task_from_records(
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


def load_task(source: str | Path | pd.DataFrame | pa.Table, name: str | None = None, **options: Any) -> Task:
    """Load a task from a directory, a file, a DataFrame/Arrow table, or (otherwise) a Hugging Face dataset name."""
    if isinstance(source, pd.DataFrame | pa.Table):
        if name is None:
            raise TaskValidationError("The 'name' parameter is required when loading a task from a table.")
        return task_from_table(source, name, **options)
    path = Path(source)
    if path.is_dir():
        return load_task_dir(path, name, **options)
    if path.is_file():
        return load_task_file(path, name, **options)
    if isinstance(source, str) and not source.startswith((".", "/", "~")) and source.count("/") <= 1:
        from store.hf_tasks import load_hf_task

        return load_hf_task(source, name, **options)
    raise TaskValidationError(
        f"The 'source' parameter must be a task directory, a file or a dataset name. Got {source!r}."
    )
