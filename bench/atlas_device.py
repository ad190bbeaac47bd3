"""``python -m bench atlas_device``: the rest of the transfer atlas (`bench.transfer_atlas`), measured on a lent GPU
machine that has torch and transformers but no Prefect, DuckDB or ``../shared``, then merged into the atlas here.

Three steps:

- ``--prepare`` (here): writes ``atlas-kit/`` (git-ignored; carried with ``carry=["atlas-kit"]``): ``model/`` =
  all-MiniLM-L6-v2 with its weights in float16 (about 45 MB, so the kit fits the 64 MiB that travels; `prepare`
  also writes float32, for the CPU check in the tests), ``runs.json`` = every atlas run not yet in the committed
  table (`missing_runs`, seed by seed), each with the config hash the `measure_transfer` flow would store it under,
  and ``rows.json.gz`` = the exact rows each run trains and is evaluated on, worked out here by the flow's own code
  (`flows.checkpoints.sources_data`: the leakage-guarded, seeded source sample; `flows.measure.target_splits`: the
  target's 300 training rows and at most 1,000 held-out rows).
- no flag (there): ``python3 -m bench atlas_device --device cuda --out $OUT --shard I/N --deadline S``: pure
  ``transfer/`` functions, the same as the flow's (`transfer.finetune.fine_tune` on the source rows, then
  `transfer.groundtruth.train_and_evaluate` from that checkpoint, or from the base encoder for the no-transfer
  baseline). The kit's weights are cast to float32 before anything trains. Runs are grouped by (source, seed), one
  checkpoint each; shard I of N takes every N-th group in priority order, so N processes share one GPU. Each
  finished run is appended to ``OUT/atlas-shard-I.jsonl`` at once; no run starts after ``deadline`` seconds.
- ``--merge DIR`` (here): appends every row of ``DIR/atlas-shard-*.jsonl`` to the committed atlas
  (`bench.transfer_atlas.append_rows`; rows already there are kept).

Every row records where it ran (``device``, ``host``), that its weights travelled as float16 and trained in float32
(``weights_dtype``), and the device's library versions.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import shutil
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.gpu import MODEL_FILES
from bench.transfer_atlas import (
    ATLAS,
    ATLAS_RECIPE,
    KEY,
    MAX_TEST,
    QUICK,
    SEEDS,
    SOURCE_RECIPES,
    TARGET_RECIPE,
    append_rows,
    atlas_workspace,
    plan,
    read_atlas,
)

KIT = Path(__file__).resolve().parents[1] / "atlas-kit"
WEIGHTS = "model.safetensors"


def missing_runs(path: Path = ATLAS) -> list[tuple[str, str, int]]:
    """(target, source, seed) runs of the atlas grid not yet in the table at ``path``, with each (target, seed)'s
    no-transfer baseline (source ``""``), seed by seed (so a device that runs out of time leaves whole seeds)."""
    done = read_atlas(path)
    done = done[done.recipe == ATLAS_RECIPE]
    have = set(zip(done.target, done.source, done.seed.astype(int), strict=True))
    pairs = [(target, source) for _, _, target, source, seed in plan(False, "grid") if seed == SEEDS[0]]
    wanted: list[tuple[str, str, int]] = []
    for seed in SEEDS:
        for target, source in pairs:
            for run in ((target, "", seed), (target, source, seed)):
                if run not in have and run not in wanted:
                    wanted.append(run)
    return wanted


def prepare(
    kit: Path = KIT, weights: str = "float16", path: Path = ATLAS, runs: list | None = None, quick: bool = False
) -> Path:
    """Write the kit for ``runs`` (default `missing_runs`) of the atlas at ``path`` (``quick``: of the quick atlas,
    with its recipes and workspace)."""
    import torch
    from safetensors.torch import load_file, save_file

    from flows.checkpoints import sources_data
    from flows.measure import MeasureRequest, plan_measure, target_splits
    from store.catalog import get_task
    from transfer.encoder import resolve_model_path
    from transfer.finetune import Recipe

    if runs is None and quick:
        raise ValueError("The 'runs' parameter of prepare must list the runs of a quick kit; got None.")
    runs = missing_runs(path) if runs is None else runs
    recipe_name = "quick" if quick else ATLAS_RECIPE
    recipe = QUICK["recipe"] if quick else SOURCE_RECIPES[ATLAS_RECIPE]
    target_recipe = QUICK["target_recipe"] if quick else TARGET_RECIPE
    max_test = QUICK["max_test"] if quick else MAX_TEST
    ws = atlas_workspace(sorted({t for t, _, _ in runs} | {s for _, s, _ in runs if s}), quick)
    shutil.rmtree(kit, ignore_errors=True)
    base = resolve_model_path(None)
    for name in MODEL_FILES:
        (kit / "model" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(base / name, kit / "model" / name)
    dtype = {"float16": torch.float16, "float32": torch.float32}[weights]
    save_file({k: v.to(dtype) for k, v in load_file(str(base / WEIGHTS)).items()}, str(kit / "model" / WEIGHTS))
    rows: dict[str, Any] = {"sources": {}, "targets": {}}
    tasks: dict[str, Any] = {}
    configs: dict[str, str] = {}
    goals = {target: get_task(ws, target) for target in {t for t, _, _ in runs}}
    for target, source, seed in runs:
        goal = goals[target]
        tasks[target] = goal.n_classes
        if target not in configs:
            request = MeasureRequest(
                target, None, (seed,), recipe, target_recipe, max_test=max_test, workspace=str(ws.root)
            )
            configs[target] = plan_measure(request).config
        key = f"{target}/{seed}"
        if key not in rows["targets"]:
            train, test = target_splits(goal, Recipe(**target_recipe), max_test, seed)
            rows["targets"][key] = {"train": train.__dict__, "test": test.__dict__}
        if source and f"{source}/{seed}" not in rows["sources"]:
            data = sources_data(ws, [source], Recipe(**recipe), seed)[source]
            tasks[source] = data.task.n_classes
            rows["sources"][f"{source}/{seed}"] = {"texts": data.texts, "pairs": data.pairs, "labels": data.labels}
    listed = [{"target": t, "source": s, "seed": seed, "config_hash": configs[t]} for t, s, seed in runs]
    meta = {
        "runs": listed,
        "n_classes": tasks,
        "weights": weights,
        "recipe_name": recipe_name,
        "recipe": recipe,
        "target_recipe": target_recipe,
        "max_test": max_test,
    }
    (kit / "runs.json").write_text(json.dumps(meta, indent=1))
    with gzip.open(kit / "rows.json.gz", "wt") as handle:
        json.dump(rows, handle, default=lambda a: a.tolist())
    return kit


def float32_model(kit: Path, out: Path) -> Path:
    """The kit's encoder with its weights cast to float32, written to ``out`` (training never sees float16)."""
    from safetensors.torch import load_file, save_file

    for name in MODEL_FILES:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kit / "model" / name, out / name)
    save_file({k: v.float() for k, v in load_file(str(kit / "model" / WEIGHTS)).items()}, str(out / WEIGHTS))
    return out


def shard_groups(runs: list[dict[str, Any]], shard: int, n_shards: int) -> list[tuple[tuple[str, int], list[dict]]]:
    """The (source, seed) groups of ``runs`` (in first-appearance order, so priority order) that shard ``shard``
    of ``n_shards`` measures: every ``n_shards``-th one."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for run in runs:
        groups[(run["source"], run["seed"])].append(run)
    return list(groups.items())[shard::n_shards]


def measure(kit: Path, out: Path, shard: int, n_shards: int, deadline: float, device: str) -> int:
    """Measure shard ``shard`` of the kit's runs on ``device`` until ``deadline`` seconds have passed; returns the
    number of rows written to ``out/atlas-shard-{shard}.jsonl``."""
    import numpy as np
    import torch

    from transfer.encoder import resolve_device
    from transfer.finetune import Recipe, fine_tune, save_fine_tuned
    from transfer.groundtruth import Split, train_and_evaluate

    started = time.perf_counter()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // max(1, n_shards)))
    meta = json.loads((kit / "runs.json").read_text())
    with gzip.open(kit / "rows.json.gz", "rt") as handle:
        rows = json.load(handle)
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"atlas-device-{os.getpid()}"
    base = str(float32_model(kit, scratch / "base"))
    resolved = resolve_device(device)
    where = {
        "device": torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else "cpu",
        "host": f"{platform.node()} ({os.cpu_count()} cores; {n_shards} processes share the device)",
        "weights_dtype": f"{meta['weights']} (carried), float32 (trained)",
        "optimizer": "AdamW fused",
        "versions": json.dumps(
            {
                "python": platform.python_version(),
                **{p: metadata.version(p) for p in ("numpy", "torch", "transformers")},
            },
            sort_keys=True,
        ),
    }
    recipe, target_recipe = Recipe(**meta["recipe"]), Recipe(**meta["target_recipe"])
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(out / f"atlas-shard-{shard}.jsonl", "a") as sink:
        for (source, seed), group in shard_groups(meta["runs"], shard, n_shards):
            if time.perf_counter() - started > deadline:
                break
            clock = time.perf_counter()
            start = base
            if source:
                data = rows["sources"][f"{source}/{seed}"]
                tuned = fine_tune(
                    data["texts"], np.array(data["labels"]), n_classes=meta["n_classes"][source],
                    text_pairs=data["pairs"], model=base, recipe=recipe, seed=seed, device=str(resolved),
                )  # fmt: skip
                start = str(save_fine_tuned(tuned, scratch / f"{source}-{seed}"))
            checkpoint_s = time.perf_counter() - clock
            for index, run in enumerate(group):
                if index and time.perf_counter() - started > deadline:
                    break
                clock = time.perf_counter()
                split = rows["targets"][f"{run['target']}/{seed}"]
                train, test = (
                    Split(s["texts"], s["pairs"], np.array(s["labels"])) for s in (split["train"], split["test"])
                )
                metrics = train_and_evaluate(
                    train, test, n_classes=meta["n_classes"][run["target"]], start=start, recipe=target_recipe,
                    seed=seed, device=str(resolved),
                )  # fmt: skip
                row = {
                    "recipe": meta["recipe_name"],
                    **run,
                    "value": metrics["primary"],
                    "metrics": json.dumps(metrics, sort_keys=True),
                    "source_recipe": json.dumps(meta["recipe"], sort_keys=True),
                    "target_recipe": json.dumps(meta["target_recipe"], sort_keys=True),
                    "max_test": meta["max_test"],
                    "model": "all-MiniLM-L6-v2",
                    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                    **where,
                    "seconds": time.perf_counter() - clock + (checkpoint_s if index == 0 else 0.0),
                }
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                written += 1
            shutil.rmtree(scratch / f"{source}-{seed}", ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return written


def merge(directory: Path, path: Path = ATLAS) -> int:
    """Append the rows of ``directory/atlas-shard-*.jsonl`` to the atlas at ``path``; returns the rows added."""
    rows = [
        json.loads(line) for f in sorted(directory.glob("atlas-shard-*.jsonl")) for line in f.read_text().splitlines()
    ]
    before = len(read_atlas(path))
    for row in rows:
        missing = set(KEY) - set(row)
        if missing:
            raise ValueError(f"A device row lacks the atlas key columns {sorted(missing)}: {row!r}.")
    return len(append_rows(path, rows)) - before if rows else 0
