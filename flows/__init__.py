"""Prefect flows, deployments and the ``transferscope`` CLI: thin orchestration over `transfer`, `selection` and
`store`. Importing this package sets Prefect's local-mode defaults (before Prefect itself is imported) and nothing
else: each flow's module (and with it Prefect and torch) is imported on first access, ``from flows import
rank_sources``, so the CLI starts without them."""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import TYPE_CHECKING, Any

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if TYPE_CHECKING:
    from flows.advisor import advise_sources
    from flows.embed import embed_tasks
    from flows.evaluate import evaluate_rankings
    from flows.measure import measure_transfer
    from flows.measure_selection import measure_selection
    from flows.rank import build_esms, rank_sources
    from flows.recommend import recommend_source
    from flows.select import select_training_subset

# Each exported flow and the module that defines it.
FLOW_MODULES = {
    "advise_sources": "flows.advisor",
    "build_esms": "flows.rank",
    "embed_tasks": "flows.embed",
    "evaluate_rankings": "flows.evaluate",
    "measure_selection": "flows.measure_selection",
    "measure_transfer": "flows.measure",
    "rank_sources": "flows.rank",
    "recommend_source": "flows.recommend",
    "select_training_subset": "flows.select",
}
__all__ = [
    "advise_sources",
    "build_esms",
    "embed_tasks",
    "evaluate_rankings",
    "measure_selection",
    "measure_transfer",
    "rank_sources",
    "recommend_source",
    "select_training_subset",
]


def __getattr__(name: str) -> Any:
    """Import the flow ``name`` on first access (PEP 562) and keep it as this package's attribute."""
    if name not in FLOW_MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    flow = getattr(importlib.import_module(FLOW_MODULES[name]), name)
    globals()[name] = flow
    return flow


class _Package(types.ModuleType):
    """``flows.measure_selection`` names both a module and its flow. Importing a submodule binds it on the package,
    which would make ``from flows import measure_selection`` return the module whenever the module was imported
    first; the package attribute stays the flow, as when this package imported every flow eagerly."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name in FLOW_MODULES and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
