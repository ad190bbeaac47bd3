"""The method libraries stay portable: transfer/ imports neither orchestration, storage nor selection; selection/
imports neither orchestration nor storage (it may use transfer). The read side (results, reports) and the CLI
module stay light: they import no deep-learning or orchestration library until a command needs one. Only store/
imports DuckDB, and reports/ holds no SQL."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def loaded_modules(code: str, packages: set[str]) -> str:
    """The modules of ``packages`` loaded after running ``code`` in a fresh interpreter, comma-separated."""
    code += f"\nimport sys\nprint(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(packages)!r})))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("transfer", {"prefect", "duckdb", "store", "flows", "selection"}),
        ("selection", {"prefect", "duckdb", "store", "flows"}),
        ("store", {"flows", "prefect"}),
        ("reports", {"flows", "torch", "prefect"}),  # transfer's numpy helpers arrive through store only
    ],
)
def test_method_packages_import_only_what_they_may(package, forbidden):
    modules = [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(ROOT / package)])]
    loaded = loaded_modules(f"import importlib\nfor name in {modules!r}: importlib.import_module(name)", forbidden)
    assert loaded == "", f"{package} imports {loaded}"
    assert modules, f"no modules found in {package}/"


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        ("import store.results, reports.html", {"torch", "transformers", "prefect"}),
        ("import reports", {"torch", "transformers", "prefect"}),
        ("import flows.cli", {"torch", "transformers", "prefect", "sklearn", "scipy", "faiss"}),
    ],
)
def test_light_modules_leave_heavy_libraries_out(statement, forbidden):
    loaded = loaded_modules(statement, forbidden)
    assert loaded == "", f"`{statement}` imports {loaded}"


def direct_imports(packages: tuple[str, ...], forbidden: set[str]) -> list[str]:
    """Every import statement in ``packages`` (at any depth, lazy ones included) of a module in ``forbidden``."""
    import ast

    offenders = []
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in forbidden]
    return offenders


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("transfer", {"store", "selection", "flows"}),
        ("selection", {"store", "flows"}),
        ("store", {"selection", "flows"}),  # store may use transfer/, never the layers above it
    ],
)
def test_no_import_points_up_the_layers(package, forbidden):
    """Import statements, not only what loads at import time: a lazy import inside a function counts too."""
    assert direct_imports((package,), forbidden) == []


def package_imports(package: str) -> dict[str, set[str]]:
    """Each module of ``package`` (dotted name) -> the modules of ``package`` that its import statements name, at
    any depth, lazy ones included; ``from a import b`` names ``a`` and, when it is a module, ``a.b``."""
    import ast

    files = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in files.items():
        named = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                named |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: counted up from the module's own package
                    parts = module.split(".")
                    parts = parts[: len(parts) - node.level + (path.name == "__init__.py")]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                named |= {base} | {f"{base}.{a.name}" for a in node.names}
        graph[module] = {m for m in named if m in files and m != module}
    return graph


@pytest.mark.parametrize("package", ["transfer", "selection", "store", "flows", "reports", "bench"])
def test_modules_import_each_other_in_no_circle(package):
    """A circle (a imports b, b imports a, lazily or not) means the two are one module split in two, or that a
    piece both need belongs below them."""
    from graphlib import CycleError, TopologicalSorter

    try:
        tuple(TopologicalSorter(package_imports(package)).static_order())
    except CycleError as err:
        pytest.fail(f"{package} modules import each other in a circle: {' -> '.join(err.args[1])}")


def test_only_store_imports_duckdb():
    assert direct_imports(("flows", "transfer", "selection", "reports", "bench"), {"duckdb"}) == []


def test_reports_read_the_store_only():
    assert direct_imports(("reports",), {"transfer", "selection", "flows"}) == []


SQL = re.compile(
    r"\bSELECT\b[\s\S]+\bFROM\b|\bINSERT\s+INTO\b|\bDELETE\s+FROM\b|\bUPDATE\s+\w+\s+SET\b|\bCREATE\s+"
    r"(OR\s+REPLACE\s+)?(TABLE|VIEW)\b|\bWITH\s+\w+\s+AS\s*\(|\bJOIN\b[\s\S]+\bON\b",
    re.IGNORECASE,
)


def sql_strings(package: str) -> list[str]:
    """Every string literal in ``package`` (f-string pieces and implicitly joined literals included) that reads as
    SQL, as 'path:line: text'."""
    import ast

    found = []
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]}")
    return found


def test_reports_hold_no_sql():
    """The report reads through the store (its stored queries, `Results`): SQL lives in store/queries/*.sql."""
    assert sql_strings("reports") == []
    assert any("store/workspace.py" in found for found in sql_strings("store"))  # where SQL may be, it is seen
