"""Move a whole workspace between machines: `export_workspace` copies the catalog (under the writer lock, so it is
a committed state) and every artefact a catalog row references into a folder with a manifest; `import_workspace`
copies such a folder into a new workspace and verifies every artefact against the checksum its catalog row holds.
(For ESMs alone, see `store.esms.export_esms` / `import_esms`.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from store.artifacts import directory_checksum, file_checksum
from store.errors import InputError
from store.runs import library_versions
from store.workspace import Workspace

MANIFEST = "transferscope-workspace.json"
# Catalog tables whose rows point at artefacts: table -> is the artefact a directory?
ARTEFACT_TABLES = {"tasks": False, "embeddings": False, "esms": False, "checkpoints": True, "gradient_features": True}


def export_workspace(ws: Workspace, destination: str | Path) -> Path:
    """Copy ``ws`` to the empty or new folder ``destination``; returns the manifest's path."""
    target = Path(destination)
    if target.exists() and any(target.iterdir()):
        raise InputError(f"The 'destination' parameter of export_workspace must be a new or empty folder: '{target}'.")
    target.mkdir(parents=True, exist_ok=True)
    with ws.writer_lock():  # no commit can land while the catalog file is copied
        shutil.copy2(ws.catalog_path, target / ws.catalog_path.name)
    paths = sorted(set(ws.read("referenced_paths")["path"]))
    for relative in paths:
        source, copy = ws.path(relative), target / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, copy)
        elif source.exists():
            shutil.copy2(source, copy)
    manifest = {"artefacts": paths, "exported_from": str(ws.root), "versions": library_versions()}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return target / MANIFEST


def verify_artefacts(ws: Workspace) -> list[str]:
    """Every catalog-referenced artefact that is missing or fails its stored checksum, as messages."""
    problems = []
    for table, is_directory in ARTEFACT_TABLES.items():
        rows = ws.sql(f'SELECT path, checksum FROM "{table}"')  # names from a fixed list
        for row in rows.itertuples(index=False):
            path = ws.path(row.path)
            exists = path.is_dir() if is_directory else path.is_file()
            found = (directory_checksum(path) if is_directory else file_checksum(path)) if exists else None
            if found != row.checksum:
                problems.append(f"{table}: '{row.path}' is {'corrupt' if exists else 'missing'}")
    return problems


def import_workspace(source: str | Path, destination: str | Path) -> Workspace:
    """Copy an exported workspace folder to ``destination`` (new or empty) and verify it; returns the workspace
    (schema migrations newer than the export are applied on opening). A failed check removes nothing already
    there and raises with every problem listed."""
    origin, target = Path(source), Path(destination)
    if not (origin / MANIFEST).is_file():
        raise InputError(
            f"The 'source' parameter of import_workspace must be a folder written by export_workspace "
            f"(with {MANIFEST}). Got '{origin}'."
        )
    if target.exists() and any(target.iterdir()):
        raise InputError(f"The 'destination' parameter of import_workspace must be a new or empty folder: '{target}'.")
    shutil.copytree(origin, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MANIFEST))
    ws = Workspace(target)
    problems = verify_artefacts(ws)
    if problems:
        raise InputError(f"Imported workspace '{target}' failed verification: " + "; ".join(problems))
    return ws
