"""The reserved tasks are never the target of a measured-transfer or source-ranking grid, benchmark, fixture or test:
the benchmarks refuse them in code, and a scan of the test and benchmark sources finds none used as such a target."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest

from bench import ranking_quality, transfer_atlas
from bench.common import RESERVED_TARGETS, check_targets

ROOT = Path(__file__).resolve().parents[1]
# Calls whose target makes a measured-transfer or source-ranking run, and CLI commands that do the same.
TARGETED_CALLS = {
    "rank",
    "rank_sources",
    "RankRequest",
    "advise_sources",
    "measure_transfer",
    "MeasureRequest",
    "evaluate_rankings",
    "recommend_sources",
    "measure_grid",
    "refresh",
}
TARGETED_COMMANDS = {"rank", "measure", "evaluate"}


def test_the_reserved_list_is_the_six_tasks():
    assert {
        "financial_phrasebank",
        "poem_sentiment",
        "uci_sentiment_yelp",
        "ethos_binary",
        "cr",
        "tweeteval_stance_feminist",
    } == RESERVED_TARGETS


def test_check_targets_refuses_a_reserved_target():
    check_targets("bench", ["rte", "mr"])
    with pytest.raises(
        ValueError, match=r"'targets' parameter of transfer_atlas must not name a reserved task; \['cr'\]"
    ):
        check_targets("transfer_atlas", ["rte", "cr"])


def test_benchmark_grids_have_no_reserved_target():
    assert not set(transfer_atlas.TARGETS) & RESERVED_TARGETS
    assert not set(transfer_atlas.RECIPE_TARGETS) & RESERVED_TARGETS
    assert not set(transfer_atlas.QUICK["targets"]) & RESERVED_TARGETS
    # ranking_quality judges rankings on the atlas's targets (and TaskWeb's six, none reserved)
    assert not set(pd.read_csv(ranking_quality.TASKWEB).target) & RESERVED_TARGETS


def test_transfer_atlas_refuses_a_reserved_target_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setattr(transfer_atlas, "WORKSPACE", tmp_path / "ws")
    monkeypatch.setitem(transfer_atlas.QUICK, "targets", ("uci_sentiment_imdb", "poem_sentiment"))
    with pytest.raises(ValueError, match=r"must not name a reserved task; \['poem_sentiment'\]"):
        transfer_atlas.run(quick=True, path=tmp_path / "atlas.parquet")
    assert not (tmp_path / "ws").exists() and not (tmp_path / "atlas.parquet").exists()


def string_values(node: ast.AST, constants: dict[str, ast.AST]) -> set[str]:
    """The string literals an expression names (directly, through a module-level constant, or in a collection)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Name) and node.id in constants:
        return string_values(constants[node.id], constants)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return set().union(*(string_values(e, constants) for e in node.elts)) if node.elts else set()
    return set()


def reserved_targets_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    constants: dict[str, ast.AST] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            for name, value in zip(statement.targets, [statement.value] * len(statement.targets), strict=True):
                if isinstance(name, ast.Name):
                    constants[name.id] = value
                elif isinstance(name, ast.Tuple) and isinstance(value, ast.Tuple):
                    constants.update(
                        {n.id: v for n, v in zip(name.elts, value.elts, strict=False) if isinstance(n, ast.Name)}
                    )
    found: list[tuple[str, str]] = []  # (where, target)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in TARGETED_CALLS:
                args = [k.value for k in node.keywords if k.arg in ("target", "targets")] + node.args[:1]
                for arg in args:
                    found += [(f"{path.name}:{node.lineno} {name}", t) for t in string_values(arg, constants)]
        if isinstance(node, ast.List):
            words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            for i, word in enumerate(words[:-1]):
                if word in TARGETED_COMMANDS:
                    hits = string_values(node.elts[i + 1], constants)
                    found += [(f"{path.name}:{node.lineno} CLI {word}", t) for t in hits]
    return [f"{where}: {target}" for where, target in found if target in RESERVED_TARGETS]


def test_no_test_or_benchmark_targets_a_reserved_task():
    files = sorted([*(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")])
    offending = [hit for f in files for hit in reserved_targets_in(f)]
    assert offending == []


def test_the_scan_can_fail(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        'TARGET = "cr"\n'
        "rank_sources(target=TARGET, sources=['sst2'])\n"
        "measure_transfer('ethos_binary', sources=['sst2'])\n"
        "invoke(app, ['--workspace', 'w', 'rank', 'poem_sentiment'])\n"
        "select_training_subset('pool', 'cr')\n"
        "rank_sources(RankRequest('cr', ('sst2',)))\n"
        "measure_transfer(MeasureRequest(target='uci_sentiment_yelp'))\n"
    )
    assert len(reserved_targets_in(planted)) == 5
