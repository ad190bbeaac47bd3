"""Run a benchmark: ``python -m bench NAME [--quick]``; ``python -m bench all`` runs every speed benchmark (the
quality benchmarks take hours on CPU and resume across sessions: run them by name)."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = ("embed", "logme", "esm_logme", "divergence", "gio", "gradients", "finetune")
QUALITY = ("ranking_quality", "selection_quality", "transfer_atlas", "scale")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=(*BENCHMARKS, *QUALITY, "all"))
    parser.add_argument("--quick", action="store_true", help="small inputs, for CI and smoke runs")
    parser.add_argument("--stage", choices=("all", "recipe", "grid"), default="all", help="transfer_atlas only")
    parser.add_argument("--device", default="cpu", help="transfer_atlas only: cpu, cuda or auto")
    args = parser.parse_args()
    for name in BENCHMARKS if args.name == "all" else (args.name,):
        options = {"stage": args.stage, "device": args.device} if name == "transfer_atlas" else {}
        importlib.import_module(f"bench.{name}").run(quick=args.quick, **options)


if __name__ == "__main__":
    main()
