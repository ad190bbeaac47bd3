"""``python -m bench startup``: how long the ``transferscope`` CLI takes for its light commands, start to exit.

Commands, each a fresh process on an empty workspace: ``transferscope --help``, ``transferscope --workspace W
tasks list`` and ``transferscope --workspace W sql "SELECT 1 AS x"``, run interleaved with the peer ``python -c
pass`` (the interpreter's own start-up, the floor) by ``interleaved_medians``: the median of 9 rounds (3 with
``--quick``) after one warm-up call each. ``ours`` is ``tasks list``; ``ratio`` is peer / ours as in the other
benchmarks, so below 1 here. These commands import neither torch, transformers, Prefect nor scikit-learn
(tests/test_startup.py); the load average is recorded because the figures are wall times. Target: each < 1.5 s.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import emit, interleaved_medians

TRANSFERSCOPE = Path(sys.executable).with_name("transferscope")


def commands(workspace: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The light CLI commands by name, as argument lists (``workspace`` is created by the first call)."""
    if not TRANSFERSCOPE.exists():
        raise SystemExit(f"{TRANSFERSCOPE} is missing: install the project (pip install -e .) in this environment.")
    cli, ws = str(TRANSFERSCOPE), str(workspace)
    return {
        "help": [cli, "--help"],
        "tasks_list": [cli, "--workspace", ws, "tasks", "list"],
        "sql": [cli, "--workspace", ws, "sql", "SELECT 1 AS x"],
    }


def run(quick: bool = False) -> None:
    repeats = 3 if quick else 9
    with tempfile.TemporaryDirectory(prefix="transferscope-startup-") as tmp:
        argvs = {**commands(Path(tmp) / "ws"), "peer": [sys.executable, "-c", "pass"]}
        medians = interleaved_medians(
            {
                name: functools.partial(subprocess.run, argv, check=True, capture_output=True)
                for name, argv in argvs.items()
            },
            repeats,
        )
    emit(
        {
            "bench": "startup",
            "ours": medians["tasks_list"],
            "peer": "python -c pass",
            "peer_value": medians["peer"],
            "ratio": medians["peer"] / medians["tasks_list"],
            "help": medians["help"],
            "tasks_list": medians["tasks_list"],
            "sql": medians["sql"],
            "repeats": repeats,
            "cpus": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0],
            "quick": quick,
            "targets": {"help": "< 1.5", "tasks_list": "< 1.5", "sql": "< 1.5"},
        }
    )
