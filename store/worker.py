"""The workspace as a Prefect task sees it (`WorkerWorkspace`) and what a task returns (`Deferred`): catalog reads
from the committed Parquet snapshots, catalog writes recorded for the flow to commit. Why: flows/runners.py."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import duckdb
import pandas as pd

from store.errors import InputError
from store.workspace import Workspace, query, resolve_root

T = TypeVar("T")


@dataclass
class Deferred(Generic[T]):
    """What a task returns: its (small) value and the catalog statements it recorded, for the flow to commit."""

    value: T
    writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class _Recorder:
    """Stands in for a DuckDB connection inside `WorkerWorkspace.transaction`: records, never runs."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, dict[str, Any]]] = []

    def execute(self, statement: str, params: Mapping[str, Any] | None = None) -> None:
        self.statements.append((statement, dict(params or {})))


class WorkerWorkspace(Workspace):
    """The workspace as a task sees it: artefact files as usual, catalog reads from the committed Parquet
    snapshots, catalog writes recorded (`writes`) for the flow to commit. It never opens ``catalog.duckdb``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:  # no super().__init__: that opens the catalog
        self.root = resolve_root(root)
        self.catalog_path = self.root / "catalog.duckdb"
        self.views_path = self.root / "views.duckdb"
        self.tables_dir = self.root / "tables"
        if not self.tables_dir.is_dir():
            raise InputError(
                f"No workspace catalog snapshots at '{self.tables_dir}'; a worker needs the flow's workspace at the "
                "same path (a shared filesystem)."
            )
        self.lock_timeout = 0.0
        self.applied_migrations = []
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self._snapshots: duckdb.DuckDBPyConnection | None = None

    def __repr__(self) -> str:
        return f"WorkerWorkspace('{self.root}')"

    def _connect(self) -> duckdb.DuckDBPyConnection:
        raise RuntimeError(
            f"A task tried to open the catalog '{self.catalog_path}'; tasks read snapshots and return their writes "
            "for the flow to commit (flows/runners.py, store/worker.py)."
        )

    def writer_lock(self) -> contextlib.AbstractContextManager[None]:
        return self._connect()  # type: ignore[return-value]  # always raises

    def read(self, name: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """A stored read query over the last committed snapshot of every catalog table."""
        if self._snapshots is None:
            con = duckdb.connect(":memory:")
            for snapshot in sorted(self.tables_dir.glob("*.parquet")):
                path = str(snapshot).replace("'", "''")
                con.execute(f"CREATE VIEW \"{snapshot.stem}\" AS SELECT * FROM read_parquet('{path}')")
            self._snapshots = con
        return self._snapshots.execute(query(name), dict(params or {})).df()

    def execute(self, name: str, params: Mapping[str, Any] | None = None) -> None:
        self.writes.append((query(name), dict(params or {})))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        recorder = _Recorder()
        yield cast(duckdb.DuckDBPyConnection, recorder)
        self.writes.extend(recorder.statements)  # only if the block finished: a failed one records nothing

    def deferred(self, value: T) -> Deferred[T]:
        """``value`` with the writes recorded so far, to return from a task."""
        if self._snapshots is not None:
            self._snapshots.close()
            self._snapshots = None
        return Deferred(value, list(self.writes))
