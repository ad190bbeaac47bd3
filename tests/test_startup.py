"""The CLI's light commands start fast: they import neither torch, transformers, Prefect nor scikit-learn (the
property that keeps them fast, and that no Prefect server starts for them) and finish inside a generous bound on a
loaded 2-core machine; `python -m bench startup` records the real figure."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.startup import commands

HEAVY = {"torch", "transformers", "prefect", "sklearn"}
BOUND_S = 6.0


def imported_packages(argv: list[str]) -> set[str]:
    """Top-level packages the command imports (``python -X importtime`` runs the console script itself)."""
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, check=True)
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    return {line.rpartition("|")[2].strip().split(".")[0] for line in lines}


@pytest.mark.parametrize("name", ["help", "tasks_list", "sql"])
def test_light_command_starts_without_heavy_libraries(name, tmp_path):
    argv = commands(tmp_path / "ws")[name]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    packages = imported_packages(argv)
    assert "typer" in packages, "importtime output not parsed"
    heavy = sorted(packages & HEAVY)
    assert heavy == [], f"`{' '.join(argv[1:])}` imports {heavy}"
    assert elapsed < BOUND_S, f"`{' '.join(argv[1:])}` took {elapsed:.1f} s"


def test_flows_package_imports_each_flow_on_first_access():
    code = (
        "import sys\n"
        "import flows\n"
        "assert not [m for m in sys.modules if m.startswith('flows.')], sys.modules\n"
        "import flows.measure_selection  # a module and a flow of the same name: the package keeps the flow\n"
        "from flows import *\n"
        "from flows import measure_selection\n"
        "from prefect import Flow\n"
        "print(len(flows.__all__), [name for name in flows.__all__ if not isinstance(getattr(flows, name), Flow)])\n"
        "print(isinstance(measure_selection, Flow), sorted(set(flows.__all__) - set(globals())))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    flows_line, selection_line = done.stdout.splitlines()[-2:]
    assert flows_line == "9 []"  # advise_sources, build_esms, embed_tasks, ... every flow, each a Flow
    assert selection_line == "True []"


def test_sql_prints_a_missing_value_as_null(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(
        app, ["--workspace", str(tmp_path / "ws"), "sql", "SELECT NULL::DOUBLE AS x, 1.5 AS y, [1, 2] AS z"]
    )
    assert result.exit_code == 0, result.output
    assert "NULL" in result.output and "nan" not in result.output and "1.5" in result.output
