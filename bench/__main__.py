"""Run a benchmark: ``python -m bench NAME [--quick]``; ``python -m bench all`` runs every speed benchmark (the
quality benchmarks take hours on CPU and resume across sessions: run them by name). ``python -m bench gpu`` is the
GPU-path check (`bench.gpu`; ``--prepare`` writes its kit, ``--out``, ``--only``, ``--cpu``); it exits 1 when a check
fails. ``python -m bench atlas_device`` measures the rest of the transfer atlas on a GPU machine (`bench.atlas_device`:
``--prepare [--stage grid|grid2]`` writes its kit here, ``--processes P --deadline S --out DIR --device cuda``
measures there, ``--compare K`` times batched against one model per run there, ``--merge DIR`` appends what came
back)."""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = ("embed", "logme", "esm_logme", "divergence", "gio", "gradients", "finetune", "startup")
QUALITY = (
    "ranking_quality", "selection_quality", "transfer_atlas", "atlas_targets", "recommend_simulation", "scale",
    "rank_scale", "selection_diagnosis", "selection_generalisation",
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=(*BENCHMARKS, *QUALITY, "gpu", "atlas_device", "all"))
    parser.add_argument("--quick", action="store_true", help="small inputs, for CI and smoke runs")
    parser.add_argument(
        "--stage",
        choices=("all", "recipe", "grid", "pilot", "grid2", "learned", "committed", "new"),
        default="all",
        help="transfer_atlas: recipe, grid, pilot (screens the v2 candidate targets) or grid2 (the pilots that "
        "passed); atlas_device --prepare: grid (v1) or grid2 (passed pilots, then unscreened candidates; default "
        "both); ranking_quality: learned "
        "(re-evaluate the learned rows only), committed (every row again from the committed atlas and method "
        "scores, no workspace) or new (rank only the complete targets the committed scores lack, then committed)",
    )
    parser.add_argument("--device", default="cpu", help="transfer_atlas and atlas_device: cpu, cuda or auto")
    parser.add_argument("--out", help="gpu: where the JSON goes (default $OUT/gpu.json); atlas_device: rows folder")
    parser.add_argument("--prepare", action="store_true", help="gpu, atlas_device: write the kit (needs ../shared)")
    parser.add_argument("--shard", default="0/1", help="atlas_device only: I/N, this process's share of the runs")
    parser.add_argument("--deadline", type=float, default=480.0, help="atlas_device only: start no run after S s")
    parser.add_argument("--merge", help="atlas_device only: append the rows in this folder to the atlas")
    parser.add_argument("--kit", help="atlas_device only: the kit folder (default atlas-kit/ in the repository)")
    parser.add_argument(
        "--batch", type=int, help="atlas_device only: runs per batched model (default: a whole group on cuda, else 1)"
    )
    parser.add_argument("--processes", type=int, default=1, help="atlas_device only: P processes share the device")
    parser.add_argument("--limit", type=int, help="atlas_device only: measure only the kit's first K runs")
    parser.add_argument("--compare", type=int, help="atlas_device only: time the first K runs batched and not")
    parser.add_argument("--checkpoints", action="store_true", help="atlas_device only: only make source checkpoints")
    parser.add_argument("--only", help="gpu only: comma-separated sections to run (environment always runs)")
    parser.add_argument("--cpu", action="store_true", help="gpu only: run the CPU fallback even where CUDA is present")
    args = parser.parse_args()
    stages = {
        "transfer_atlas": ("all", "recipe", "grid", "pilot", "grid2"),
        "ranking_quality": ("all", "learned", "committed", "new"),
        "atlas_device": ("all", "grid", "grid2"),
    }
    if args.stage != "all" and args.stage not in stages.get(args.name, ()):
        parser.error(f"--stage {args.stage} does not apply to {args.name}")
    if args.name == "gpu":
        from bench.gpu import run

        only = args.only.split(",") if args.only else None
        sys.exit(run(args.out, prepare_only=args.prepare, only=only, force_cpu=args.cpu))
    if args.name == "atlas_device":
        from bench import atlas_device

        atlas_device.cli(args)
        return
    for name in BENCHMARKS if args.name == "all" else (args.name,):
        options = {
            "transfer_atlas": {"stage": args.stage, "device": args.device},
            "ranking_quality": {"stage": args.stage},
        }.get(name, {})
        importlib.import_module(f"bench.{name}").run(quick=args.quick, **options)


if __name__ == "__main__":
    main()
