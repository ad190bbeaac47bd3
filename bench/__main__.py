"""Run a benchmark: ``python -m bench NAME [--quick]``; ``python -m bench all`` runs every speed benchmark (the
quality benchmarks take hours on CPU and resume across sessions: run them by name). ``python -m bench gpu`` is the
GPU-path check (`bench.gpu`; ``--prepare`` writes its kit, ``--out``, ``--only``, ``--cpu``); it exits 1 when a check
fails."""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = ("embed", "logme", "esm_logme", "divergence", "gio", "gradients", "finetune", "startup")
QUALITY = ("ranking_quality", "selection_quality", "transfer_atlas", "scale", "rank_scale")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=(*BENCHMARKS, *QUALITY, "gpu", "all"))
    parser.add_argument("--quick", action="store_true", help="small inputs, for CI and smoke runs")
    parser.add_argument("--stage", choices=("all", "recipe", "grid"), default="all", help="transfer_atlas only")
    parser.add_argument("--device", default="cpu", help="transfer_atlas only: cpu, cuda or auto")
    parser.add_argument("--out", help="gpu only: where the JSON goes (default $OUT/gpu.json when $OUT is set)")
    parser.add_argument("--prepare", action="store_true", help="gpu only: write gpu-kit/ (needs ../shared) and stop")
    parser.add_argument("--only", help="gpu only: comma-separated sections to run (environment always runs)")
    parser.add_argument("--cpu", action="store_true", help="gpu only: run the CPU fallback even where CUDA is present")
    args = parser.parse_args()
    if args.name == "gpu":
        from bench.gpu import run

        only = args.only.split(",") if args.only else None
        sys.exit(run(args.out, prepare_only=args.prepare, only=only, force_cpu=args.cpu))
    for name in BENCHMARKS if args.name == "all" else (args.name,):
        options = {"stage": args.stage, "device": args.device} if name == "transfer_atlas" else {}
        importlib.import_module(f"bench.{name}").run(quick=args.quick, **options)


if __name__ == "__main__":
    main()
