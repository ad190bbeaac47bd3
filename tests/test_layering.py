"""The method libraries stay portable: transfer/ and selection/ import without prefect, duckdb, store or flows."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_transfer_and_selection_do_not_import_orchestration_or_storage():
    modules = [f"{pkg}.{m.name}" for pkg in ("transfer", "selection") for m in pkgutil.iter_modules([str(ROOT / pkg)])]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'prefect', 'duckdb', 'store', 'flows', "
        "'selection' if False else 'flows'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"forbidden imports: {result.stdout}"
    assert "transfer.embeddings" in modules
