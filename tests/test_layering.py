"""The method libraries stay portable: transfer/ imports neither orchestration, storage nor selection; selection/
imports neither orchestration nor storage (it may use transfer)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("transfer", {"prefect", "duckdb", "store", "flows", "selection"}),
        ("selection", {"prefect", "duckdb", "store", "flows"}),
    ],
)
def test_method_packages_import_only_what_they_may(package, forbidden):
    modules = [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(ROOT / package)])]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(forbidden)!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"{package} imports {result.stdout.strip()}"
    assert modules, f"no modules found in {package}/"
