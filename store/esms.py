"""ESM catalog: one safetensors file per (source checkpoint, fit parameters), with a checksum. The checkpoint's key
(`store.checkpoints.CheckpointKey.cache_key`: base model, exact training rows, recipe, seed) is the ESM's input, so
two recipes or seeds that tune on the same rows get two ESMs.

Also moves ESMs between workspaces: `export_esms` writes a folder of our files plus a manifest (or, with
``layout="hfselect"``, one ``hf-dataset-selector`` directory per source); `import_esms` reads either layout.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from store.artifacts import file_checksum
from store.errors import InputError
from store.runs import canonical_json, config_hash
from store.workspace import Workspace
from transfer.esm import EmbeddingSpaceMap, export_hfselect, import_hfselect

MANIFEST = "manifest.json"


def esm_cache_key(checkpoint_key: str, params: dict[str, Any]) -> str:
    """The ESM's key: the checkpoint it maps to (its cache key, which holds base model, rows, recipe and seed) and
    the map's parameters (`EmbeddingSpaceMap.params`)."""
    return config_hash({"checkpoint": checkpoint_key, "params": params})


def find_esm(ws: Workspace, cache_key: str) -> EmbeddingSpaceMap | None:
    """The stored ESM under ``cache_key``, or None (a file failing its checksum is dropped with a warning)."""
    rows = ws.read("find_esm", {"cache_key": cache_key})
    if not len(rows):
        return None
    path = ws.path(rows.at[0, "path"])
    if path.exists() and file_checksum(path) == rows.at[0, "checksum"]:
        return EmbeddingSpaceMap.load(path)[0]
    warnings.warn(f"ESM file '{path}' is missing or fails its checksum; rebuilding it.", stacklevel=2)
    ws.execute("delete_esm", {"cache_key": cache_key})
    return None


def find_esms(ws: Workspace, keys: dict[str, str]) -> dict[str, EmbeddingSpaceMap | None]:
    """{name: the stored ESM under ``keys[name]``, or None}, from one catalog read (each file checksum-verified as
    in `find_esm`)."""
    rows = ws.read("all_esms").set_index("cache_key")
    found: dict[str, EmbeddingSpaceMap | None] = {}
    for name, key in keys.items():
        if key not in rows.index:
            found[name] = None
            continue
        path = ws.path(rows.at[key, "path"])
        intact = path.exists() and file_checksum(path) == rows.at[key, "checksum"]
        found[name] = EmbeddingSpaceMap.load(path)[0] if intact else find_esm(ws, key)  # find_esm drops a bad one
    return found


def put_esm(
    ws: Workspace,
    esm: EmbeddingSpaceMap,
    *,
    base_model: str,
    base_fp: str,
    source: str,
    data_hash: str,
    checkpoint_key: str,
    heldout_mse: float | None = None,
    identity_mse: float | None = None,
    run_id: str | None = None,
) -> str:
    """Save an ESM fitted from the checkpoint ``checkpoint_key`` (file first, atomically, then its catalog row);
    returns its cache key (`esm_cache_key`)."""
    params = esm.params()
    key = esm_cache_key(checkpoint_key, params)
    relative = f"esms/{key}.safetensors"
    metadata = {
        "base_model": base_model,
        "base_fp": base_fp,
        "source": source,
        "data_hash": data_hash,
        "checkpoint_key": checkpoint_key,
    }
    esm.save(ws.path(relative), metadata)
    ws.execute(
        "insert_esm",
        {
            "cache_key": key,
            "base_model": base_model,
            "base_fp": base_fp,
            "source": source,
            "data_hash": data_hash,
            "checkpoint_key": checkpoint_key,
            "fit": params["fit_method"],
            "params_json": canonical_json(params),
            "dim": esm.n_features_in_,
            "path": relative,
            "checksum": file_checksum(ws.path(relative)),
            "heldout_mse": heldout_mse,
            "identity_mse": identity_mse,
            "run_id": run_id,
        },
    )
    return key


def list_esms(ws: Workspace) -> pd.DataFrame:
    return ws.read("all_esms")


def export_esms(
    ws: Workspace, directory: str | Path, *, layout: Literal["transferscope", "hfselect"] = "transferscope"
) -> list[str]:
    """Export every stored ESM to ``directory``; returns the sources written."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    rows = list_esms(ws)
    manifest = []
    for row in rows.itertuples():
        path = ws.path(row.path)
        if layout == "hfselect":
            esm, _ = EmbeddingSpaceMap.load(path)
            export_hfselect(
                esm,
                target / f"{row.source}-{row.cache_key}",
                {"base_model_name": row.base_model, "task_id": row.source},
            )
        else:
            shutil.copyfile(path, target / path.name)
            manifest.append(
                {
                    k: getattr(row, k)
                    for k in ("source", "base_model", "base_fp", "data_hash", "checkpoint_key", "cache_key", "checksum")
                }
                | {"file": path.name}
            )
    if layout == "transferscope":
        (target / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return rows["source"].tolist()


def import_esms(ws: Workspace, directory: str | Path, *, base_fp: str | None = None) -> list[str]:
    """Import ESMs from a folder written by `export_esms` (either layout) or by hf-dataset-selector (one
    sub-directory per ESM with config.json + model.safetensors). ESMs in the hf-dataset-selector layout carry a
    base model *name*, not a content fingerprint: pass ``base_fp`` (the fingerprint of the encoder you will use
    them with; `transfer.encoder.model_fingerprint`) to attach them to it. Returns the sources imported.
    An ESM keeps the checkpoint key it was exported with (one exported by an older TransferScope, or from
    hf-dataset-selector, has none: it gets a stand-in, ``rows:<data hash>`` or ``hfselect:<checksum>``)."""
    folder = Path(directory)
    imported = []
    if (folder / MANIFEST).exists():
        for entry in json.loads((folder / MANIFEST).read_text()):
            file = folder / entry["file"]
            if file_checksum(file) != entry["checksum"]:
                raise InputError(f"ESM file '{file}' does not match the checksum in its manifest; not importing it.")
            esm, _ = EmbeddingSpaceMap.load(file)
            put_esm(
                ws,
                esm,
                base_model=entry["base_model"],
                base_fp=entry["base_fp"],
                source=entry["source"],
                data_hash=entry["data_hash"],
                checkpoint_key=entry.get("checkpoint_key") or f"rows:{entry['data_hash']}",
            )
            imported.append(entry["source"])
        return imported
    for sub in sorted(p for p in folder.iterdir() if (p / "config.json").exists()):
        if base_fp is None:
            raise InputError(
                "The 'base_fp' parameter of import_esms is required for hf-dataset-selector ESMs: they name their "
                "base model but carry no fingerprint of it."
            )
        esm, config = import_hfselect(sub)
        origin = f"hfselect:{file_checksum(sub / 'model.safetensors')[:16]}"
        put_esm(
            ws,
            esm,
            base_model=config["base_model_name"],
            base_fp=base_fp,
            source=config["task_id"],
            data_hash=origin,
            checkpoint_key=origin,
        )
        imported.append(config["task_id"])
    if not imported:
        raise InputError(f"No ESMs found in '{folder}': expected {MANIFEST} or sub-directories with config.json.")
    return imported
