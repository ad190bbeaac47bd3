"""``python -m bench atlas_device``: the runs of the transfer atlas (`bench.transfer_atlas`) not yet measured here,
measured on a lent GPU machine that has torch and transformers but no Prefect, DuckDB or ``../shared``, then merged
into the atlas here.

Steps:

- ``--prepare [--stage grid|grid2]`` (here): writes ``atlas-kit/`` (git-ignored; carried with
  ``carry=["atlas-kit"]``): ``model/`` = all-MiniLM-L6-v2 with its weights in float16 (about 45 MB; `prepare` also
  writes float32, for the CPU check in the tests), ``runs.json`` = every run of the stage's grid not yet in the
  committed table (`missing_runs`; default both: ``grid`` the v1 atlas, ``grid2`` the v2 grid = the pilots that
  passed, then the candidates not screened yet, each x the atlas's sources x `V2_SEEDS`, with baselines), in
  priority order, each with its atlas recipe name and the config hash the `measure_transfer` flow would store it
  under, and ``rows.json.gz`` = the exact rows each run trains and is evaluated on, worked out here by the flow's
  own code (`flows.checkpoints.sources_data`: the leakage-guarded, seeded source sample; `flows.measure.
  target_splits`: the target's training rows and at most 1,000 held-out rows). Measured: the v2 grid still to do
  when this was written (1,083 runs of 22 recipe-targets, 204 of them under ``medium+t1000``) is a 6.0 MB
  ``rows.json.gz`` and a 0.15 MB ``runs.json`` beside the 46.1 MB model: 49.9 MiB of the 64 MiB that travel, so one
  kit holds it (``--prepare`` prints the kit's size).
- no flag (there): ``python3 -m bench atlas_device --device cuda --out $OUT --processes P --deadline S``: pure
  ``transfer/`` functions, the same as the flow's (`transfer.finetune.fine_tune` makes each source checkpoint once
  per machine, shared by the processes under a file lock; each target run fine-tunes from that checkpoint, or from
  the base encoder for the no-transfer baseline). The kit's weights are cast to float32 before anything trains.
  Runs are grouped by (recipe, target, seed): one group shares its training rows, so ``--batch R`` trains up to R
  of its runs at once as one batched model (`transfer.batched.train_and_evaluate_batched`: each run's own head,
  data order, AdamW state and gradient clipping; default the whole group on CUDA, 1 elsewhere), and ``--batch 1``
  is today's one-model-per-run path (`transfer.groundtruth.train_and_evaluate`). P processes (``--processes``, or
  one process per ``--shard I/N``) take every P-th group in priority order. Each finished run is appended to
  ``OUT/atlas-shard-I.jsonl`` at once; no group starts after ``deadline`` seconds; ``--limit K`` measures only the
  kit's first K runs. Last line: JSON with rows, seconds and runs per minute.
- ``--compare K`` (there): the first K runs both ways on the same device and process count, after making their
  source checkpoints (untimed): ``--batch 1`` into ``OUT/compare-batch1``, then ``--batch R`` into
  ``OUT/compare-batchR``; prints ``{"bench", "ours", "peer", "peer_value", "ratio"}`` in runs per minute (goal,
  issue #29: ratio >= 3). Its rows are real measurements (merge either folder).
- ``--merge DIR`` (here): appends every row of ``DIR/atlas-shard-*.jsonl`` to the committed atlas
  (`bench.transfer_atlas.append_rows`; rows already there are kept), each under its own recipe name and target
  recipe, exactly as the CPU campaign writes it.

A lent session (15 device-minutes, 10 per command): one command, ``carry=["atlas-kit"]``, ``timeout_s=600``:
``python3 -m bench atlas_device --device cuda --out $OUT --compare 72 --processes 4 && python3 -m bench atlas_device
--device cuda --out $OUT --processes 4 --deadline 360`` (the compare makes seed 0's 17 source checkpoints, which the
measurement then reuses: they stay in ``$TMPDIR`` while the machine is warm), then ``--merge`` the returned folder
here. Not yet measured on a GPU: the process count and the gain are what the compare is for.

Every row records where it ran (``device``, ``host``: cores, processes, runs per batched model), that its weights
travelled as float16 and trained in float32 (``weights_dtype``), and the device's library versions. A batched run
is the single run's computation up to float rounding except for dropout masks (`transfer.batched`), so its values
differ from a one-model run's by seed-level noise, like any rerun on another device.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import check_targets
from bench.gpu import MODEL_FILES
from bench.transfer_atlas import (
    ATLAS,
    ATLAS_RECIPE,
    KEY,
    MAX_TEST,
    QUICK,
    SEEDS,
    SOURCE_RECIPES,
    SOURCES,
    TARGET_RECIPES,
    TARGETS,
    V2_SEEDS,
    append_rows,
    atlas_workspace,
    passed_pilots,
    pilot_verdicts,
    plan,
    read_atlas,
)

KIT = Path(__file__).resolve().parents[1] / "atlas-kit"
WEIGHTS = "model.safetensors"
STAGES = ("grid", "grid2")
MAX_GROUP = len(SOURCES) + 1  # the runs of one (recipe, target, seed): its baseline and every source


def missing_runs(path: Path = ATLAS, stage: str = "all") -> list[tuple[str, str, str, int]]:
    """(recipe name, target, source, seed) runs of ``stage``'s grid not yet in the table at ``path`` under that
    recipe: ``grid`` = the v1 atlas (`TARGETS` x `SOURCES` x `SEEDS`); ``grid2`` = the v2 grid (`V2_SEEDS`): the
    pilots that passed (`passed_pilots`), then the pilot candidates not screened yet (a failed pilot gets none);
    ``all`` = both. Each (recipe, target, seed) lists its baseline (source ``""``) first, then every source but the
    target. Priority order: block by block (v1, passed, unscreened), seed by seed within a block, so a device that
    runs out of time leaves whole seeds of the most useful targets."""
    if stage not in ("all", *STAGES):
        raise ValueError(f"The 'stage' parameter of missing_runs must be one of {['all', *STAGES]}. Got {stage!r}.")
    done = read_atlas(path)
    have = set(zip(done.recipe, done.target, done.source, done.seed.astype(int), strict=True))
    blocks: list[tuple[list[tuple[str, str]], tuple[int, ...]]] = []
    if stage in ("all", "grid"):
        blocks.append(([(ATLAS_RECIPE, target) for target in TARGETS], SEEDS))
    if stage in ("all", "grid2"):
        verdicts = pilot_verdicts()
        screens = dict.fromkeys((name, target) for name, _, target, _, _ in plan(False, "pilot"))
        blocks += [(passed_pilots(), V2_SEEDS), ([s for s in screens if s not in verdicts], V2_SEEDS)]
    return [
        (name, target, source, seed)
        for targets, seeds in blocks
        for seed in seeds
        for name, target in targets
        for source in ("", *(s for s in SOURCES if s != target))
        if (name, target, source, seed) not in have
    ]


def run_recipes(name: str) -> tuple[str, dict[str, Any], dict[str, Any], int]:
    """(source recipe name, source recipe, target recipe, max_test) of the atlas recipe ``name`` (``quick``: the
    quick atlas's)."""
    if name == "quick":
        return "quick", QUICK["recipe"], QUICK["target_recipe"], QUICK["max_test"]
    source = TARGET_RECIPES[name][0]
    return source, SOURCE_RECIPES[source], TARGET_RECIPES[name][1], MAX_TEST


def prepare(
    kit: Path = KIT,
    weights: str = "float16",
    path: Path = ATLAS,
    runs: list[tuple[str, str, str, int]] | None = None,
    quick: bool = False,
    stage: str = "all",
) -> Path:
    """Write the kit for ``runs`` ((recipe name, target, source, seed); default `missing_runs` of ``stage``) of the
    atlas at ``path`` (``quick``: of the quick atlas, in its workspace)."""
    import torch
    from safetensors.torch import load_file, save_file

    from flows.checkpoints import sources_data
    from flows.measure import MeasureRequest, plan_measure, target_splits
    from store.catalog import get_task
    from transfer.encoder import resolve_model_path
    from transfer.finetune import Recipe

    if runs is None and quick:
        raise ValueError("The 'runs' parameter of prepare must list the runs of a quick kit; got None.")
    runs = missing_runs(path, stage) if runs is None else runs
    check_targets("atlas_device", sorted({t for _, t, _, _ in runs}))
    ws = atlas_workspace(sorted({t for _, t, _, _ in runs} | {s for _, _, s, _ in runs if s}), quick)
    shutil.rmtree(kit, ignore_errors=True)
    base = resolve_model_path(None)
    for name in MODEL_FILES:
        (kit / "model" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(base / name, kit / "model" / name)
    dtype = {"float16": torch.float16, "float32": torch.float32}[weights]
    save_file({k: v.to(dtype) for k, v in load_file(str(base / WEIGHTS)).items()}, str(kit / "model" / WEIGHTS))
    rows: dict[str, Any] = {"sources": {}, "targets": {}}
    tasks: dict[str, Any] = {}
    configs: dict[tuple[str, str], str] = {}
    recipes: dict[str, Any] = {}
    for name, target, source, seed in runs:
        source_name, recipe, target_recipe, max_test = run_recipes(name)
        recipes[name] = {"source": source_name, "recipe": recipe, "target_recipe": target_recipe, "max_test": max_test}
        goal = get_task(ws, target)
        tasks[target] = goal.n_classes
        if (name, target) not in configs:
            request = MeasureRequest(
                target, None, (seed,), recipe, target_recipe, max_test=max_test, workspace=str(ws.root)
            )
            configs[name, target] = plan_measure(request).config
        key = f"{name}/{target}/{seed}"
        if key not in rows["targets"]:
            train, test = target_splits(goal, Recipe(**target_recipe), max_test, seed)
            rows["targets"][key] = {"train": train.__dict__, "test": test.__dict__}
        if source and f"{source_name}/{source}/{seed}" not in rows["sources"]:
            data = sources_data(ws, [source], Recipe(**recipe), seed)[source]
            tasks[source] = data.task.n_classes
            rows["sources"][f"{source_name}/{source}/{seed}"] = {
                "texts": data.texts, "pairs": data.pairs, "labels": data.labels,
            }  # fmt: skip
    listed = [
        {"recipe": n, "target": t, "source": s, "seed": seed, "config_hash": configs[n, t]} for n, t, s, seed in runs
    ]
    meta = {"runs": listed, "n_classes": tasks, "weights": weights, "recipes": recipes}
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


def shard_groups(runs: list[dict[str, Any]], shard: int, n_shards: int) -> list[list[dict[str, Any]]]:
    """The (recipe, target, seed) groups of ``runs`` (in first-appearance order, so priority order) that shard
    ``shard`` of ``n_shards`` measures: every ``n_shards``-th one."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["recipe"], run["target"], run["seed"]), []).append(run)
    return list(groups.values())[shard::n_shards]


def measure(
    kit: Path,
    out: Path,
    shard: int,
    n_shards: int,
    deadline: float,
    device: str,
    batch: int = 1,
    limit: int | None = None,
    train: bool = True,
) -> int:
    """Measure shard ``shard`` of the kit's first ``limit`` runs (default all) on ``device``, up to ``batch`` runs of
    a group at once, starting nothing after ``deadline`` seconds; returns the rows written to
    ``out/atlas-shard-{shard}.jsonl``. ``train=False``: only make the source checkpoints those runs start from."""
    import numpy as np
    import torch

    from transfer.batched import train_and_evaluate_batched
    from transfer.encoder import resolve_device
    from transfer.finetune import Recipe, fine_tune, save_fine_tuned
    from transfer.groundtruth import Split, train_and_evaluate

    if batch < 1:
        raise ValueError(f"The 'batch' parameter of measure must be >= 1. Got {batch!r}.")
    started = time.perf_counter()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // max(1, n_shards)))
    meta = json.loads((kit / "runs.json").read_text())
    raw = (kit / "rows.json.gz").read_bytes()
    rows = json.loads(gzip.decompress(raw))
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"atlas-device-{hashlib.sha256(raw).hexdigest()[:12]}"
    shared = scratch / "checkpoints"  # one per (source recipe, source, seed), made once for every process here
    shared.mkdir(parents=True, exist_ok=True)
    base = str(float32_model(kit, scratch / f"base-{os.getpid()}"))
    resolved = resolve_device(device)
    where = {
        "device": torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else "cpu",
        "host": f"{platform.node()} ({os.cpu_count()} cores; {n_shards} processes share the device; up to {batch} "
        f"runs per batched model)",
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

    def checkpoint(run: dict[str, Any]) -> str:
        """The directory of ``run``'s source checkpoint, fine-tuned here unless another process already has."""
        spec = meta["recipes"][run["recipe"]]
        directory = shared / f"{spec['source']}-{run['source']}-{run['seed']}"
        with open(f"{directory}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not directory.exists():
                data = rows["sources"][f"{spec['source']}/{run['source']}/{run['seed']}"]
                tuned = fine_tune(
                    data["texts"], np.array(data["labels"]), n_classes=meta["n_classes"][run["source"]],
                    text_pairs=data["pairs"], model=base, recipe=Recipe(**spec["recipe"]), seed=run["seed"],
                    device=str(resolved),
                )  # fmt: skip
                save_fine_tuned(tuned, directory)
        return str(directory)

    out.mkdir(parents=True, exist_ok=True)
    groups = shard_groups(meta["runs"][:limit], shard, n_shards)
    chunks = [group[first : first + batch] for group in groups for first in range(0, len(group), batch)]
    written = 0
    with open(out / f"atlas-shard-{shard}.jsonl", "a") as sink:
        for chunk in chunks:  # runs of one (recipe, target, seed): the same training and held-out rows
            if time.perf_counter() - started > deadline:
                break
            clock = time.perf_counter()
            starts = [checkpoint(run) if run["source"] else base for run in chunk]
            if not train:
                continue
            recipe, target, seed = (chunk[0][key] for key in ("recipe", "target", "seed"))
            spec = meta["recipes"][recipe]
            split = rows["targets"][f"{recipe}/{target}/{seed}"]
            train_split, test = (
                Split(s["texts"], s["pairs"], np.array(s["labels"])) for s in (split["train"], split["test"])
            )
            setup = {
                "n_classes": meta["n_classes"][target], "recipe": Recipe(**spec["target_recipe"]),
                "device": str(resolved),
            }  # fmt: skip
            if batch == 1:
                results = [train_and_evaluate(train_split, test, start=starts[0], seed=seed, **setup)]
            else:
                results = train_and_evaluate_batched(
                    [train_split] * len(chunk), [test] * len(chunk), starts=starts, seeds=[seed] * len(chunk), **setup
                )
            seconds = (time.perf_counter() - clock) / len(chunk)
            for run, metrics in zip(chunk, results, strict=True):
                row = {
                    **run,
                    "value": metrics["primary"],
                    "metrics": json.dumps(metrics, sort_keys=True),
                    "source_recipe": json.dumps(spec["recipe"], sort_keys=True),
                    "target_recipe": json.dumps(spec["target_recipe"], sort_keys=True),
                    "max_test": spec["max_test"],
                    "model": "all-MiniLM-L6-v2",
                    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                    **where,
                    "seconds": seconds,
                }
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                written += 1
    shutil.rmtree(base, ignore_errors=True)
    return written


def launch(
    kit: Path,
    out: Path,
    device: str,
    processes: int,
    batch: int,
    deadline: float,
    limit: int | None = None,
    train: bool = True,
) -> dict[str, Any]:
    """`measure` the kit with ``processes`` processes (shards 0..P-1) sharing ``device``; returns the rows written,
    the wall seconds and runs per minute."""
    clock = time.perf_counter()
    commands = [
        [
            sys.executable, "-m", "bench", "atlas_device", "--kit", str(kit), "--device", device, "--out", str(out),
            "--shard", f"{shard}/{processes}", "--batch", str(batch), "--deadline", str(deadline),
            *(["--limit", str(limit)] if limit is not None else []), *([] if train else ["--checkpoints"]),
        ]
        for shard in range(processes)
    ]  # fmt: skip
    children = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
        for command in commands
    ]
    outputs = [child.communicate()[0] for child in children]
    failed = [command for command, child in zip(commands, children, strict=True) if child.returncode]
    if failed:
        raise RuntimeError(f"atlas_device: {len(failed)} of {processes} processes failed, e.g. {failed[0]}.")
    seconds = time.perf_counter() - clock
    written = sum(json.loads(output.splitlines()[-1])["rows"] for output in outputs)
    return {
        "rows": written,
        "seconds": round(seconds, 1),
        "runs_per_minute": round(60 * written / seconds, 1),
        "processes": processes,
        "batch": batch,
    }


def compare(kit: Path, out: Path, device: str, processes: int, batch: int, limit: int) -> dict[str, Any]:
    """The kit's first ``limit`` runs measured one model per run (``--batch 1``) and ``batch`` runs per batched
    model, each with ``processes`` processes on ``device``, after their source checkpoints are made (untimed)."""
    launch(kit, out / "checkpoints", device, processes, batch, 3600, limit, train=False)
    single = launch(kit, out / "compare-batch1", device, processes, 1, 3600, limit)
    batched = launch(kit, out / f"compare-batch{batch}", device, processes, batch, 3600, limit)
    return {
        "bench": "atlas_device",
        "ours": batched["runs_per_minute"],
        "peer": f"one model per run ({processes} processes)",
        "peer_value": single["runs_per_minute"],
        "ratio": round(batched["runs_per_minute"] / single["runs_per_minute"], 2),
        "unit": "runs per minute",
        "single": single,
        "batched": batched,
    }


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


def cli(args: Any) -> None:
    """``python -m bench atlas_device`` with the parsed arguments of `bench.__main__`."""
    kit = Path(args.kit) if args.kit else KIT
    if args.prepare:
        size = sum(f.stat().st_size for f in prepare(kit, stage=args.stage).rglob("*") if f.is_file())
        print(f"{kit}: {size / 2**20:.1f} MiB (at most 64 MiB travel)")
        return
    if args.merge:
        print(f"{merge(Path(args.merge))} rows added to {ATLAS}")
        return
    out = Path(args.out or os.environ.get("OUT", "."))
    batch = args.batch or (MAX_GROUP if args.device == "cuda" else 1)
    if args.compare:
        print(json.dumps(compare(kit, out, args.device, args.processes, batch, args.compare)))
    elif args.processes > 1:
        print(json.dumps(launch(kit, out, args.device, args.processes, batch, args.deadline, args.limit)))
    else:
        shard, n_shards = (int(x) for x in args.shard.split("/"))
        clock = time.perf_counter()
        rows = measure(kit, out, shard, n_shards, args.deadline, args.device, batch, args.limit, not args.checkpoints)
        seconds = time.perf_counter() - clock
        summary = {"rows": rows, "seconds": round(seconds, 1), "runs_per_minute": round(60 * rows / seconds, 1)}
        print(json.dumps({**summary, "processes": n_shards, "batch": batch}))
