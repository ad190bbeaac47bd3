"""Run records and config hashes: every stored result carries its run's id, config hash and library versions.

`recorded_run` records a run around a block (completed, partial with its error, or failed and re-raised).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from store.workspace import Workspace

VERSIONED_PACKAGES = ("transferscope", "torch", "transformers", "numpy", "duckdb", "pyarrow", "prefect")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(params: dict[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of a parameter dict's canonical JSON: equal configs, equal hashes."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()[:16]


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def start_run(ws: Workspace, flow: str, params: dict[str, Any], *, device: str | None = None) -> tuple[str, str]:
    """Record a run as started; returns (run_id, config_hash)."""
    run_id = uuid.uuid4().hex
    digest = config_hash(params)
    ws.execute(
        "start_run",
        {
            "run_id": run_id,
            "flow": flow,
            "params_json": canonical_json(params),
            "config_hash": digest,
            "versions_json": canonical_json(library_versions()),
            "device": device,
        },
    )
    return run_id, digest


def finish_run(
    ws: Workspace,
    run_id: str,
    *,
    status: str,
    timings: dict[str, float] | None = None,
    error: str | None = None,
) -> None:
    ws.execute(
        "finish_run",
        {"run_id": run_id, "status": status, "timings_json": canonical_json(timings or {}), "error": error},
    )


@dataclass
class RunRecord:
    """A started run (`recorded_run`): its id and config hash, and what to record when it ends: ``status``
    ("completed", or "partial" when some of it failed), ``timings`` (seconds; ``total_s`` is added) and ``error``."""

    run_id: str
    config: str
    status: str = "completed"
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@contextmanager
def recorded_run(ws: Workspace, flow: str, params: dict[str, Any], *, device: str | None = None) -> Iterator[RunRecord]:
    """Record a run around a block: started now; if the block raises, finished as failed with the error (and the
    error re-raised); else finished with the record's status, timings (plus the block's ``total_s``) and error."""
    run_id, config = start_run(ws, flow, params, device=device)
    record = RunRecord(run_id, config)
    started = time.perf_counter()
    try:
        yield record
    except BaseException as err:
        finish_run(ws, run_id, status="failed", error=f"{type(err).__name__}: {err}")
        raise
    timings = {"total_s": time.perf_counter() - started, **record.timings}
    finish_run(ws, run_id, status=record.status, timings=timings, error=record.error)
