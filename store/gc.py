"""Garbage collection: remove artefacts that no catalog row references (old task versions, embeddings or ESMs of
dropped rows, checkpoints, stray temporary files and quarantined ``*.corrupt`` files).

A writer stores a file before committing its row, so files younger than ``min_age_s`` are left alone: a
concurrent flow's fresh file is never collected between its write and its commit.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from store.workspace import Workspace

ARTEFACT_GLOBS = ("tasks/*/*", "embeddings/*", "checkpoints/*", "esms/*", "features/*")


def collect_garbage(ws: Workspace, *, dry_run: bool = False, min_age_s: float = 3600.0) -> list[Path]:
    """Delete (or, with ``dry_run``, only list) unreferenced artefacts older than ``min_age_s`` seconds."""
    referenced = {ws.path(p) for p in ws.read("referenced_paths")["path"]}
    now = time.time()
    garbage = []
    for pattern in ARTEFACT_GLOBS:
        for path in sorted(ws.root.glob(pattern)):
            if path in referenced or now - path.stat().st_mtime < min_age_s:
                continue
            garbage.append(path)
            if not dry_run:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    return garbage
