"""The workspace: one DuckDB catalog, Parquet artefacts, and a views database for everyone else.

Layout under the workspace root::

    catalog.duckdb      the catalog; opened only by TransferScope, only for short transactions, under a file lock
    catalog.lock        the inter-process writer lock (flock)
    tables/<t>.parquet  a snapshot of every catalog table, rewritten atomically after each commit
    views.duckdb        SQL views over tables/ and the artefact files: point DBeaver or a notebook here
    tasks/ embeddings/  Parquet artefacts (one file per task version / per cached embedding)

DuckDB lets one process write a database file, and any process that opens it (even read-only) blocks every
writer. So the catalog is never handed to outside readers: they read the Parquet snapshots through the views, which
are always the last committed state and never block a writer. `transferscope sql` does the same in memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from store.artifacts import file_checksum, replace_atomically
from store.errors import ExpectedError, InputError

SCHEMA_DIR = Path(__file__).with_name("schema")
QUERY_DIR = Path(__file__).with_name("queries")
DERIVED_VIEW_DIR = Path(__file__).with_name("views")  # views over the tables (one SELECT per file), everywhere
SQLError = duckdb.Error  # what a bad `Workspace.sql` statement raises (callers need not import duckdb)
DEFAULT_WORKSPACE = "transferscope-workspace"
WORKSPACE_ENV = "TRANSFERSCOPE_WORKSPACE"
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
SNAPSHOT_RETRIES = 5
# DuckDB's messages when a Parquet file changed between planning and scanning a query.
_SNAPSHOT_CHANGED = re.compile(r"TProtocolException|Invalid data|No magic bytes|parquet|metadata", re.I)

# Artefact views: name -> (glob relative to the root, SELECT over `files`). Created once a matching file exists.
# Each keeps only files that a catalog row references (current task versions, cached embeddings), so an orphan
# left by a crash between file and row is never read.
ARTEFACT_VIEWS = {
    "task_examples": (
        "tasks/*/*.parquet",
        "SELECT f.* FROM files f SEMI JOIN tasks t ON f.task = t.name AND f.content_hash = t.content_hash",
    ),
    "embedding_vectors": (
        "embeddings/*.parquet",
        "SELECT f.* FROM files f SEMI JOIN embeddings e USING (cache_key)",
    ),
}


class WorkspaceLockedError(ExpectedError, TimeoutError):
    """Another process held the workspace catalog for longer than the lock timeout."""


@functools.cache
def query(name: str) -> str:
    """The text of ``store/queries/<name>.sql`` (SQL is data; values are always bound, never formatted in)."""
    path = QUERY_DIR / f"{name}.sql"
    if not path.exists():
        raise KeyError(f"No stored query {name!r} in {QUERY_DIR}.")
    return path.read_text(encoding="utf-8")


def optional_float(value: object) -> float | None:
    """A number to bind into SQL: None for a missing value (None or NaN), else a float."""
    return None if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root`` if given, else ``$TRANSFERSCOPE_WORKSPACE``, else ``./transferscope-workspace``."""
    return Path(root or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE).expanduser().resolve()


class _FileLock:
    """An exclusive ``flock`` with a bounded wait. Separate opens conflict, so it also serialises threads."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        deadline = time.monotonic() + self.timeout
        with open(self.path, "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise WorkspaceLockedError(
                            f"The workspace catalog '{self.path.parent}' stayed locked by another TransferScope "
                            f"process for {self.timeout:.0f} s; wait for it to finish or raise 'lock_timeout'."
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class Workspace:
    """A TransferScope workspace directory (see the module docstring for its layout).

    ``lock_timeout`` bounds how long a write waits for another writer (seconds). Opening a workspace creates it
    and applies pending schema migrations (``store/schema/NNN_name.sql``, in order, each recorded once).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        lock_timeout: float = 120.0,
        schema_dir: Path = SCHEMA_DIR,
    ) -> None:
        if not lock_timeout > 0:
            raise InputError(f"The 'lock_timeout' parameter must be a positive number. Got {lock_timeout!r} instead.")
        self.root = resolve_root(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.catalog_path = self.root / "catalog.duckdb"
        self.views_path = self.root / "views.duckdb"
        self.tables_dir = self.root / "tables"
        self.lock_timeout = lock_timeout
        self._lock = _FileLock(self.root / "catalog.lock", lock_timeout)
        self.applied_migrations = self._migrate(schema_dir)

    def __repr__(self) -> str:
        return f"Workspace('{self.root}')"

    def path(self, relative: str) -> Path:
        """Absolute path of a workspace-relative artefact path."""
        return self.root / relative

    # ---------------------------------------------------------------------------------------- connections

    def _connect(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                return duckdb.connect(str(self.catalog_path))
            except duckdb.IOException as err:
                if "lock" not in str(err).lower() or time.monotonic() > deadline:
                    raise WorkspaceLockedError(
                        f"Could not open '{self.catalog_path}': {err}. Another program (not TransferScope) has it "
                        f"open; point outside readers at '{self.views_path}' instead."
                    ) from None
                time.sleep(0.1)

    def writer_lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the inter-process writer lock (no commit lands meanwhile), e.g. to copy the catalog file."""
        return self._lock.hold()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One short write transaction under the workspace lock; table snapshots are refreshed after commit."""
        with self._lock.hold():
            con = self._connect()
            try:
                con.begin()
                yield con
                con.commit()
            except BaseException:
                con.rollback()
                raise
            finally:
                con.close()
            self._export_snapshots()

    def execute(self, name: str, params: Mapping[str, Any] | None = None) -> None:
        """Run one stored write query in its own transaction."""
        with self.transaction() as con:
            con.execute(query(name), dict(params or {}))

    def read(self, name: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run one stored read query against the catalog (with the derived views, `derived_views`) and return a
        DataFrame."""
        with self._lock.hold():
            con = self._connect()
            try:
                for view, select in derived_views().items():
                    con.execute(f'CREATE OR REPLACE TEMP VIEW "{view}" AS {select}')
                return con.execute(query(name), dict(params or {})).df()
            finally:
                con.close()

    # ---------------------------------------------------------------------------------------- migrations

    def _migrate(self, schema_dir: Path) -> list[str]:
        files = sorted(p for p in schema_dir.glob("*.sql") if _MIGRATION_NAME.match(p.name))
        applied_now = []
        with self._lock.hold():
            con = self._connect()
            try:
                con.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
                    " checksum VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
                )
                done = dict(con.execute("SELECT version, checksum FROM schema_migrations").fetchall())
                for path in files:
                    version = int(path.name[:3])
                    checksum = file_checksum(path)
                    if version in done:
                        if done[version] != checksum:
                            raise RuntimeError(
                                f"Schema migration '{path.name}' changed after it was applied to '{self.root}'; "
                                "add a new migration instead of editing an applied one."
                            )
                        continue
                    con.begin()
                    try:
                        con.execute(path.read_text(encoding="utf-8"))
                        con.execute(
                            "INSERT INTO schema_migrations VALUES (?, ?, ?, now())",
                            [version, path.name, checksum],
                        )
                        con.commit()
                    except BaseException:
                        con.rollback()
                        raise
                    applied_now.append(path.name)
            finally:
                con.close()
            if applied_now or not self.tables_dir.exists():
                self._export_snapshots()
        return applied_now

    # ------------------------------------------------------------------------------------ snapshots/views

    def _export_snapshots(self) -> None:
        """Rewrite ``tables/<t>.parquet`` for every catalog table (atomically), then sync the views database.
        Called with the lock held, after a commit."""
        self.tables_dir.mkdir(exist_ok=True)
        con = self._connect()
        try:
            names = [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                    "AND table_type = 'BASE TABLE'"
                ).fetchall()
            ]
            for name in names:
                target = self.tables_dir / f"{name}.parquet"
                with replace_atomically(target) as tmp:
                    # Identifiers cannot be bound; names come from information_schema, paths are bound.
                    con.execute(f'COPY "{name}" TO $path (FORMAT parquet)', {"path": str(tmp)})
        finally:
            con.close()
        self._sync_views_database()

    def view_definitions(self) -> dict[str, str]:
        """``CREATE VIEW`` statements for every catalog table snapshot, every artefact kind present and, once the
        tables they read are there, the derived views (`derived_views`)."""
        definitions = {}
        for snapshot in sorted(self.tables_dir.glob("*.parquet")):
            definitions[snapshot.stem] = f"SELECT * FROM read_parquet('{_sql_path(snapshot)}')"
        for name, (pattern, select) in ARTEFACT_VIEWS.items():
            if next(self.root.glob(pattern), None) is not None:
                files = f"read_parquet('{_sql_path(self.root / pattern)}', union_by_name = true)"
                definitions[name] = select.replace("files", files)
        if "transfer_gains" in definitions:
            definitions.update(derived_views())
        return definitions

    def attach_views(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create the workspace's views in ``con`` (any connection, e.g. in-memory)."""
        for name, select in self.view_definitions().items():
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {select}')

    def _sync_views_database(self) -> None:
        """Keep ``views.duckdb`` in step with the view set. Views read files lazily, so this only writes when a view
        is added; if an outside reader has the file open, warn and retry after the next commit."""
        marker = self.root / ".views.json"
        definitions = self.view_definitions()
        if marker.exists() and json.loads(marker.read_text()) == definitions:
            return
        try:
            con = duckdb.connect(str(self.views_path))
        except duckdb.IOException as err:
            warnings.warn(
                f"Views database '{self.views_path}' is held open elsewhere ({err}); new views wait.",
                stacklevel=2,
            )
            return
        try:
            self.attach_views(con)
        finally:
            con.close()
        with replace_atomically(marker) as tmp:
            tmp.write_text(json.dumps(definitions))

    def sql(self, statement: str, params: Mapping[str, Any] | list[Any] | None = None) -> pd.DataFrame:
        """Run ad-hoc (read) SQL over the views in a private in-memory database; never touches the catalog.

        A snapshot is replaced by an atomic rename after each commit, but DuckDB opens a Parquet file once to plan
        and again to scan: a commit landing in between makes the scan see a different file ("Invalid data").
        Such a query is simply run again (up to ``SNAPSHOT_RETRIES`` times) and then sees one committed state."""
        attempt = 0
        while True:
            con = duckdb.connect(":memory:")
            try:
                self.attach_views(con)
                return con.execute(statement, params or []).df()
            except duckdb.Error as err:
                attempt += 1
                if attempt > SNAPSHOT_RETRIES or not _SNAPSHOT_CHANGED.search(str(err)):
                    raise
            finally:
                con.close()
            time.sleep(0.05 * attempt)


@functools.cache
def derived_views() -> dict[str, str]:
    """{name: SELECT} of the views over catalog tables (``store/views/<name>.sql``), defined once and created in
    every place SQL runs: catalog reads (`Workspace.read`), ad-hoc SQL (`Workspace.sql`) and ``views.duckdb``."""
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(DERIVED_VIEW_DIR.glob("*.sql"))}


def _sql_path(path: Path) -> str:
    """A path as a SQL string literal body (DDL cannot bind parameters)."""
    return str(path).replace("'", "''")
