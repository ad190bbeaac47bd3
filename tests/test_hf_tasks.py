"""Hugging Face datasets as tasks, offline: folders written with the `datasets` package the way users (and the hub)
hold them -- a ``save_to_disk`` folder and local parquet dataset repositories (``data/{split}-00000-of-00001.parquet``,
and a README whose YAML header declares configs) -- read by `store.hf_tasks.load_hf_task` and by
``transferscope tasks add NAME hf:PATH``. Downloading from the hub itself is not tested (no network here): every
test runs with the hub switched off and socket connections refused."""

from __future__ import annotations

import socket
import warnings

import datasets
import huggingface_hub.constants
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from store.catalog import get_task
from store.hf_tasks import load_hf_task
from store.task_records import task_from_table
from store.tasks import TaskValidationError
from store.workspace import Workspace

PAIRS = {
    "premise": ["a cat sits", "dogs bark", "rain falls", "the sun is up", "birds sing", "snow melts"],
    "hypothesis": ["an animal sits", "cats bark", "it is wet", "it is night", "there is sound", "it is cold"],
    "label": [0, 1, 0, 1, 0, 1],
    "split": ["train", "train", "train", "train", "dev", "dev"],
}
PAIR_FEATURES = datasets.Features(
    {
        "premise": datasets.Value("string"),
        "hypothesis": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["entailment", "contradiction"]),
    }
)
SCORES = {
    "sentence1": ["a man plays", "a woman cooks", "kids run", "a car stops", "a dog sleeps"],
    "sentence2": ["a man performs", "someone cooks", "adults sit", "a bus moves", "a dog naps"],
    "score": [4.2, 3.5, 0.8, 1.25, 4.75],
    "split": ["train", "train", "train", "test", "test"],
}
SENTIMENT = {
    "text": ["great film", "dull plot", "loved it", "boring", "fine acting", "awful"],
    "label": ["pos", "neg", "pos", "neg", "pos", "neg"],
    "split": ["train", "train", "train", "train", "test", "test"],
}
README = """---
configs:
- config_name: sentiment
  data_files:
  - split: train
    path: sentiment/train-*
  - split: test
    path: sentiment/test-*
- config_name: similarity
  data_files:
  - split: train
    path: similarity/train-*
  - split: test
    path: similarity/test-*
---
# A tiny two-config dataset, laid out as on the Hugging Face hub.
"""


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """The hub switched off (as `HF_HUB_OFFLINE=1`/`HF_DATASETS_OFFLINE=1` do at import), the datasets cache in
    ``tmp_path`` and every socket connection an error, so a test that reached for the network would fail."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")

    def refuse(sock: socket.socket, address: object) -> None:
        raise AssertionError(f"a test reached for the network: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def dataset_dict(columns: dict[str, list], features: datasets.Features | None = None) -> datasets.DatasetDict:
    """A `DatasetDict` with one dataset per value of ``columns["split"]`` (the split column itself dropped)."""
    frame = pd.DataFrame(columns)
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_pandas(part.drop(columns="split"), features=features, preserve_index=False)
            for split, part in frame.groupby("split", sort=False)
        }
    )


def write_repository(root, layout: dict[str, datasets.DatasetDict], readme: str | None = None):
    """A local dataset repository as on the hub: ``{folder}/{split}-00000-of-00001.parquet`` per folder and split,
    and a README (its YAML header declares the configs)."""
    for folder, splits in layout.items():
        (root / folder).mkdir(parents=True)
        for split, part in splits.items():
            part.to_parquet(root / folder / f"{split}-00000-of-00001.parquet")
    if readme is not None:
        (root / "README.md").write_text(readme)
    return root


def expected(columns: dict[str, list], name: str, **options) -> str:
    """The content hash of the same rows read as a plain table ("dev" is the validation split)."""
    frame = pd.DataFrame(columns).replace({"split": {"dev": "validation"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return task_from_table(frame, name, **options).content_hash


def test_a_save_to_disk_folder_is_read_in_place(tmp_path):
    saved = tmp_path / "nli"
    dataset_dict(PAIRS, PAIR_FEATURES).save_to_disk(saved)
    task = load_hf_task(str(saved), "nli")
    assert task.counts() == {"train": 4, "validation": 2}  # "dev" is the validation split
    assert (task.input, task.label_names) == ("pair", ("entailment", "contradiction"))  # from the ClassLabel
    assert task.content_hash == expected(PAIRS, "nli", label_names=["entailment", "contradiction"])
    assert not (tmp_path / "hf-cache").exists()  # load_from_disk: no second copy in the datasets cache


def test_a_saved_single_dataset_is_its_recorded_split(tmp_path):
    frame = pd.DataFrame(SENTIMENT).drop(columns="split")
    datasets.Dataset.from_pandas(frame, preserve_index=False).save_to_disk(tmp_path / "plain")
    datasets.Dataset.from_pandas(frame, preserve_index=False, split="test").save_to_disk(tmp_path / "held_out")
    assert load_hf_task(str(tmp_path / "plain"), "plain").content_hash == expected(
        {**SENTIMENT, "split": "train"}, "plain"
    )
    assert load_hf_task(str(tmp_path / "held_out"), "held_out").counts() == {"test": 6}
    with pytest.raises(TaskValidationError, match=r"'config' parameter must be None .* Got 'main' instead"):
        load_hf_task(str(tmp_path / "plain"), "plain", config="main")


def test_a_parquet_repository_reads_like_the_hub(tmp_path):
    repo = write_repository(tmp_path / "nli_repo", {"data": dataset_dict(PAIRS, PAIR_FEATURES)})
    task = load_hf_task(str(repo), "nli")
    assert task.counts() == {"train": 4, "validation": 2}
    assert (task.input, task.label_names) == ("pair", ("entailment", "contradiction"))
    assert task.content_hash == expected(PAIRS, "nli", label_names=["entailment", "contradiction"])
    assert task.source_uri == f"hf://{repo}"


def test_readme_configs_pick_the_data_a_regression_pair_task_too(tmp_path):
    layout = {"sentiment": dataset_dict(SENTIMENT), "similarity": dataset_dict(SCORES)}
    repo = write_repository(tmp_path / "two_configs", layout, README)
    scores = load_hf_task(str(repo), "sts", config="similarity", label_column="score")
    assert (scores.kind, scores.input, scores.counts()) == ("regression", "pair", {"train": 3, "test": 2})
    assert scores.table.column("label").to_pylist() == SCORES["score"]
    assert scores.content_hash == expected(SCORES, "sts", label_column="score")
    sentiment = load_hf_task(str(repo), "sentiment", config="sentiment")
    assert (sentiment.kind, sentiment.input, sentiment.counts()) == (
        "classification",
        "single",
        {"train": 4, "test": 2},
    )
    assert sentiment.content_hash == expected(SENTIMENT, "sentiment")
    with pytest.raises(TaskValidationError, match=r"(?s)Config name is missing.*\['sentiment', 'similarity'\]"):
        load_hf_task(str(repo), "sts")
    with pytest.raises(TaskValidationError, match=r"BuilderConfig 'nope' not found"):
        load_hf_task(str(repo), "sts", config="nope")


def test_cli_adds_hf_datasets_from_local_folders(tmp_path):
    saved = tmp_path / "saved"
    dataset_dict(PAIRS, PAIR_FEATURES).save_to_disk(saved)
    layout = {"sentiment": dataset_dict(SENTIMENT), "similarity": dataset_dict(SCORES)}
    repo = write_repository(tmp_path / "two_configs", layout, README)
    plain = write_repository(tmp_path / "nli_repo", {"data": dataset_dict(PAIRS, PAIR_FEATURES)})
    ws = Workspace(tmp_path / "ws")
    commands = [
        ["nli", f"hf:{saved}"],
        ["nli_repo", f"hf:{plain}"],
        ["sts", f"hf:{repo}", "--config", "similarity", "--label-column", "score", "--kind", "regression"],
        ["sentiment", f"hf:{repo}", "--config", "sentiment"],
    ]
    for args in commands:
        result = CliRunner().invoke(app, ["--workspace", str(ws.root), "tasks", "add", *args])
        assert result.exit_code == 0, result.output
        assert "stored" in result.output
    nli, sts = get_task(ws, "nli"), get_task(ws, "sts")
    assert nli.content_hash == expected(PAIRS, "nli", label_names=["entailment", "contradiction"])
    assert get_task(ws, "nli_repo").content_hash == expected(PAIRS, "nli_repo", label_names=nli.label_names)
    assert (sts.kind, sts.input) == ("regression", "pair")
    assert sts.content_hash == expected(SCORES, "sts", label_column="score")
    assert get_task(ws, "sentiment").content_hash == expected(SENTIMENT, "sentiment")
    missing = CliRunner().invoke(app, ["--workspace", str(ws.root), "tasks", "add", "sts", f"hf:{repo}"])
    assert missing.exit_code == 2 and "Config name is missing" in missing.output
