"""A checkpoint directory in place is never rewritten: two real processes, one saving the same checkpoint key over
and over (as a ``serve`` deployment and a CLI flow fine-tuning the same source would), the other looking it up and
reading it meanwhile; the reader never sees a missing, partial, changing or checksum-failing directory."""

from __future__ import annotations

import json
import multiprocessing
import time
import warnings
from pathlib import Path

import pytest

READS = 5  # the writer keeps saving until the reader has verified this many lookups (or MAX_SAVES)
MAX_SAVES = 200
REREADS = 20
FILES = {"config.json", "model.safetensors", "tokenizer.json", "head.safetensors", "recipe.json"}
KEY = {"base_model": "m", "base_fp": "fp", "task": "toy", "content_hash": "rows", "recipe_json": "{}", "seed": 0}


def tiny_fine_tuned(directory: Path):
    """A `FineTuned` small enough to save in milliseconds: a 1-layer, 8-wide BERT with random weights over a 9-token
    WordPiece vocabulary (written to ``directory``), and a 2-class head."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from transfer.finetune import EncoderWithHead, FineTuned, Recipe

    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "plot"]))
    config = BertConfig(
        vocab_size=9, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16,
        max_position_embeddings=32,
    )  # fmt: skip
    network = EncoderWithHead(BertModel(config), 2)
    return FineTuned(network, BertTokenizerFast(str(vocab)), Recipe(), "classification", 4, 1, 0.5, [])


def keep_saving(root: str, reader_ready, verified, done) -> None:
    """The writer: save the checkpoint of `KEY` again and again until the reader has verified `READS` lookups. Each
    save is a complete write of the same key with other bytes (its recorded wall time), as two real fine-tunes of
    one key in two processes are."""
    from store.checkpoints import CheckpointKey, save_checkpoint
    from store.workspace import Workspace

    ws, key = Workspace(root), CheckpointKey(**KEY)
    tuned = tiny_fine_tuned(Path(root))
    reader_ready.wait(60)
    try:
        for save in range(MAX_SAVES):
            tuned.seconds = float(save)
            save_checkpoint(ws, key, tuned)
            if verified.value >= READS:
                break
    finally:
        done.set()


def keep_reading(root: str, reader_ready, verified, done, results) -> None:
    """The reader, until the writer is done: look the checkpoint up (`find_checkpoint` checksums every file against
    the catalog row), then keep reading the directory it got (`REREADS` checksums, as a model load reads file after
    file) and its recipe; report what went wrong."""
    from store.artifacts import directory_checksum
    from store.checkpoints import CheckpointKey, find_checkpoint
    from store.workspace import Workspace

    ws, key = Workspace(root), CheckpointKey(**KEY)
    problems: list[str] = []
    seen = False
    reader_ready.set()
    deadline = time.monotonic() + 60
    while (not done.is_set() or not seen) and time.monotonic() < deadline:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # find_checkpoint warns when a directory is missing or corrupt
                directory = find_checkpoint(ws, key)
            if directory is None:
                if seen:
                    problems.append("the checkpoint vanished after it had been stored")
                time.sleep(0.01)
                continue
            seen = True
            checksum = directory_checksum(directory)  # what the catalog row says: find_checkpoint compared them
            for _ in range(REREADS):
                assert directory_checksum(directory) == checksum, "the directory changed while it was read"
            assert {p.name for p in directory.iterdir()} >= FILES, sorted(p.name for p in directory.iterdir())
            assert json.loads((directory / "recipe.json").read_text())["n_outputs"] == 2
            with verified.get_lock():
                verified.value += 1
        except Exception as err:  # a partial directory: missing files, a failed checksum, a broken file
            problems.append(f"{type(err).__name__}: {err}")
    results.put(problems)


def test_a_reader_never_sees_a_checkpoint_half_written_by_another_process(tmp_path):
    from store.workspace import Workspace

    root = tmp_path / "ws"
    Workspace(root)  # created (and migrated) once, before the two processes open it
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch's threads
    reader_ready, done, results = context.Event(), context.Event(), context.Queue()
    verified = context.Value("i", 0)
    reader = context.Process(target=keep_reading, args=(str(root), reader_ready, verified, done, results))
    writer = context.Process(target=keep_saving, args=(str(root), reader_ready, verified, done))
    reader.start()
    writer.start()
    writer.join(90)
    problems = results.get(timeout=60)
    reader.join(30)
    assert writer.exitcode == 0 and reader.exitcode == 0
    assert problems == []
    assert verified.value >= READS  # the reader really read while the writer wrote
    rows = Workspace(root).sql("SELECT path FROM checkpoints")
    assert len(rows) == 1 and (root / rows.path[0]).is_dir()  # one row, pointing at a complete directory


def test_saving_over_a_checkpoint_in_place_leaves_it_untouched(workspace, tmp_path):
    """`save_fine_tuned` refuses an existing directory; `save_checkpoint` of a key whose directory is in place writes
    beside it and points the catalog row there, the first directory byte for byte as it was."""
    from store.artifacts import directory_checksum
    from store.checkpoints import CheckpointKey, checkpoint_path, find_checkpoint, save_checkpoint
    from transfer.finetune import save_fine_tuned

    tuned = tiny_fine_tuned(tmp_path)
    first = save_fine_tuned(tuned, tmp_path / "checkpoint")
    before = directory_checksum(first)
    with pytest.raises(FileExistsError, match="already exists; save_fine_tuned never replaces one"):
        save_fine_tuned(tuned, first)
    key = CheckpointKey(**KEY)
    home = save_checkpoint(workspace, key, tuned)
    assert home == checkpoint_path(workspace, key) and directory_checksum(first) == before
    home_sum = directory_checksum(home)
    tuned.seconds = 2.0  # another fine-tune of the same key: other bytes
    beside = save_checkpoint(workspace, key, tuned)
    assert beside != home and beside.name.startswith(home.name) and directory_checksum(home) == home_sum
    assert find_checkpoint(workspace, key) == beside


def test_gradient_features_in_place_are_never_replaced(workspace):
    """The gradient-feature cache follows the same rule: a second write of a key whose directory is in place (a
    concurrent writer's) lands beside it, and the catalog row points at the new, complete copy."""
    import numpy as np

    from store.artifacts import directory_checksum
    from store.features import features_key, find_features, put_features

    key = features_key("toy", "train", "checkpoint", {"dim": 2})
    options = {"task": "toy", "split": "train", "checkpoint_key": "checkpoint", "params": {"dim": 2}}
    put_features(workspace, key, example_ids=["a", "b"], shards=iter([np.eye(2)]), **options)
    first = workspace.path(f"features/{key}")
    before = directory_checksum(first)
    put_features(workspace, key, example_ids=["a", "b"], shards=iter([2 * np.eye(2)]), **options)
    assert directory_checksum(first) == before  # untouched while the second copy was written
    path = workspace.sql("SELECT path FROM gradient_features").path[0]
    assert path != f"features/{key}" and np.array_equal(find_features(workspace, key)[1], 2 * np.eye(2))
