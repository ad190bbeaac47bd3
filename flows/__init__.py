"""Prefect flows, deployments and the ``transferscope`` CLI: thin orchestration over `transfer`, `selection` and
`store`. Importing this package sets Prefect's local-mode defaults (before Prefect itself is imported)."""

import os

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from flows.embed import embed_tasks  # noqa: E402
from flows.evaluate import evaluate_rankings  # noqa: E402
from flows.measure import measure_transfer  # noqa: E402
from flows.measure_selection import measure_selection  # noqa: E402
from flows.rank import build_esms, rank_sources  # noqa: E402
from flows.select import select_training_subset  # noqa: E402

__all__ = [
    "build_esms",
    "embed_tasks",
    "evaluate_rankings",
    "measure_selection",
    "measure_transfer",
    "rank_sources",
    "select_training_subset",
]
