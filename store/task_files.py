"""Task readers for files: a directory of ``{train,validation,test}.{jsonl,csv,parquet}`` (with an optional
``meta.json``) or one file (optionally with a split column); and `load_task`, which picks the reader for a source
(a DataFrame or Arrow table goes to `store.task_records.task_from_table`, a Hugging Face name to `store.hf_tasks`).

Every reader turns records into `store.tasks.RawRow` s located by file and line (or row) with
`store.task_records` and validates them with `store.tasks.build_task`; errors name the task, the file, the line
and what was expected.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from store.task_records import rows_from_records, task_from_records, task_from_table
from store.tasks import FORMATS, SPLITS, Kind, RawRow, Task, TaskValidationError, build_task, check_name


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
            rows_by_split[split] = rows_from_records(
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
    return task_from_records(
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
