"""Task loading, validation, hashing, carving and the leakage guard, on real shared tasks and hand-made files."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.hf_tasks import load_hf_task
from store.leakage import drop_leaked, normalise_text
from store.task_files import load_task, load_task_dir, load_task_file, task_from_table
from store.tasks import TaskValidationError, carve_split, ensure_split


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def quiet_load(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_task_dir(path, **kw)


# ------------------------------------------------------------------------------------------ real quirks


def test_missing_splits_are_handled(shared_tasks):
    assert quiet_load(shared_tasks / "tweeteval_sentiment").splits == ("validation", "test")
    assert quiet_load(shared_tasks / "rte").splits == ("train", "validation")
    assert quiet_load(shared_tasks / "trec").splits == ("train", "test")


def test_regression_and_pair_tasks(shared_tasks):
    stsb = quiet_load(shared_tasks / "stsb")
    assert (stsb.kind, stsb.input, stsb.label_names) == ("regression", "pair", ())
    labels = stsb.split("train").column("label").to_numpy()
    assert labels.min() >= 0.0 and labels.max() <= 5.0 and len(np.unique(labels)) > 20
    assert stsb.split("train").column("text_pair").null_count == 0
    emobank = quiet_load(shared_tasks / "emobank_valence")
    assert emobank.kind == "regression" and emobank.input == "single"
    assert stsb.n_classes is None and quiet_load(shared_tasks / "cb").n_classes == 3  # entailment/contradiction/neutral


def test_declared_labels_unseen_in_train_warn(shared_tasks):
    with pytest.warns(UserWarning, match="4 of 26 declared labels never occur in train"):
        atis = load_task_dir(shared_tasks / "atis_intent")
    assert len(atis.label_names) == 26
    assert any("never occur in train" in w for w in atis.warnings)
    test_labels = set(atis.split("test").column("label").to_numpy().astype(int))
    train_labels = set(atis.split("train").column("label").to_numpy().astype(int))
    assert len(test_labels - train_labels) == 4


def test_exact_duplicates_keep_distinct_stable_ids(shared_tasks):
    mpqa = quiet_load(shared_tasks / "mpqa")
    train = mpqa.split("train").to_pandas()
    ids = train["example_id"]
    assert ids.is_unique
    duplicated_rows = train.duplicated(["text", "label"]).sum()
    assert duplicated_rows >= 1000  # mpqa: 1,651 exact duplicate rows in train (DECISIONS.md)
    assert (
        quiet_load(shared_tasks / "mpqa")
        .split("train")
        .column("example_id")
        .equals(mpqa.split("train").column("example_id"))
    )
    assert any("78 texts in train occur with conflicting labels" in w for w in mpqa.warnings)


def test_duplicates_across_splits_get_distinct_ids(shared_tasks):
    sms = quiet_load(shared_tasks / "sms_spam")
    table = sms.table.to_pandas()
    assert table["example_id"].is_unique
    shared_texts = set(sms.split("train").column("text").to_pylist()) & set(
        sms.split("test").column("text").to_pylist()
    )
    assert shared_texts


def test_license_is_carried(shared_tasks):
    assert "CC BY 4.0" in quiet_load(shared_tasks / "banking77").license


def test_content_hash_changes_with_content(tmp_path):
    for name, label in (("a", "x"), ("b", "y")):
        folder = tmp_path / name
        folder.mkdir()
        write_jsonl(
            folder / "train.jsonl",
            [{"text": "one", "label": "x"}, {"text": "two", "label": label}, {"text": "three", "label": "y"}],
        )
    a, b = load_task_dir(tmp_path / "a", "t"), load_task_dir(tmp_path / "b", "t")
    assert a.content_hash != b.content_hash
    assert a.content_hash == load_task_dir(tmp_path / "a", "t").content_hash


# --------------------------------------------------------------------------------------- other sources


def test_single_file_with_split_column_and_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(
        "sentence,score,part\nhello there,pos,train\nbad day,neg,train\nok then,pos,test\n", encoding="utf-8"
    )
    task = load_task_file(path, "csvtask", text_column="sentence", label_column="score", split_column="part")
    assert task.counts() == {"train": 2, "test": 1}
    assert task.label_names == ("neg", "pos")


def test_parquet_dir_and_dataframe_agree(tmp_path):
    frame = pd.DataFrame(
        {
            "text": ["a b", "c d", "e f", "g h"],
            "label": ["p", "n", "p", "n"],
            "split": ["train", "train", "test", "test"],
        }
    )
    folder = tmp_path / "pq"
    folder.mkdir()
    for split in ("train", "test"):
        frame[frame.split == split].drop(columns="split").to_parquet(folder / f"{split}.parquet")
    from_dir = load_task(folder, "same")
    from_frame = load_task(frame, "same")
    from_arrow = load_task(pa.Table.from_pandas(frame), "same")
    assert from_dir.content_hash == from_frame.content_hash == from_arrow.content_hash


def test_integer_labels_with_declared_names_are_indices():
    frame = pd.DataFrame({"text": ["a", "b", "c"], "label": [0, 1, 1]})
    task = task_from_table(frame, "ints", label_names=["neg", "pos"])
    assert task.label_names == ("neg", "pos")
    assert task.table.column("label").to_pylist() == [0.0, 1.0, 1.0]


def test_hf_loader_reads_a_local_dataset_offline(shared_tasks, tmp_path, monkeypatch):
    """The Hugging Face path (`datasets.load_dataset`) on a local copy, so no hub is needed."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "yelp_copy"
    local.mkdir()
    for split in ("train", "test"):
        (local / f"{split}.jsonl").write_bytes((shared_tasks / "uci_sentiment_yelp" / f"{split}.jsonl").read_bytes())
    task = load_hf_task(str(local), "yelp")
    direct = quiet_load(shared_tasks / "uci_sentiment_yelp", name="yelp")
    assert task.counts() == {"train": 800, "test": 100}
    assert task.split("test").column("example_id").equals(direct.split("test").column("example_id"))
    assert task.source_uri == f"hf://{local}"


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"text": "a", "label": "x"}, {"sentence": "b", "label": "y"}],
            r"line 2: missing text field 'text'",
        ),
        ([{"text": "a", "label": "x"}, {"text": "b"}], r"line 2: missing label field 'label'"),
        ([{"text": "a", "label": "x"}, {"text": "b", "label": "x"}], r"single class \('x'\)"),
        ([{"text": "a", "label": "x"}, {"text": "", "label": "y"}], r"line 2: text is ''"),
        (
            [{"text_a": "a", "text_b": "b", "label": "x"}, {"text_a": "c", "label": "y"}],
            r"line 2: mixed pair/single",
        ),
        ([{"label": "x", "body": "a"}], r"missing text column"),
    ],
)
def test_validation_errors_name_file_and_line(tmp_path, rows, message):
    folder = tmp_path / "bad"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", rows)
    with pytest.raises(TaskValidationError, match=message) as info:
        load_task_dir(folder)
    assert "'bad'" in str(info.value)


def test_regression_nan_label_is_an_error(tmp_path):
    folder = tmp_path / "reg"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "a", "label": 0.5}\n{"text": "b", "label": NaN}\n')
    with pytest.raises(TaskValidationError, match=r"line 2: label is nan; expected a finite float"):
        load_task_dir(folder, kind="regression")


def test_unknown_test_label_is_an_error(tmp_path):
    folder = tmp_path / "unk"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    write_jsonl(folder / "test.jsonl", [{"text": "c", "label": "x"}, {"text": "d", "label": "z"}])
    with pytest.raises(TaskValidationError, match=r"test\.jsonl', line 2: unknown label 'z'"):
        load_task_dir(folder)


def test_undecodable_bytes_name_the_line(tmp_path):
    folder = tmp_path / "enc"
    folder.mkdir()
    (folder / "train.jsonl").write_bytes(b'{"text": "a", "label": "x"}\n{"text": "b\xff", "label": "y"}\n')
    with pytest.raises(TaskValidationError, match=r"train\.jsonl', line 2: undecodable bytes"):
        load_task_dir(folder)


def test_empty_split_and_empty_task(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "train.jsonl").write_text("")
    with pytest.raises(TaskValidationError, match="empty"):
        load_task_dir(folder)
    with pytest.raises(TaskValidationError, match="holds no split file"):
        load_task_dir(tmp_path)


def test_invalid_json_line(tmp_path):
    folder = tmp_path / "js"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    with pytest.raises(TaskValidationError, match="line 2: invalid JSON"):
        load_task_dir(folder)


# --------------------------------------------------------------------------------------------- carving


def test_carve_split_is_deterministic_and_stratified(shared_tasks):
    trec = quiet_load(shared_tasks / "trec")
    carved = carve_split(trec, "validation", fraction=0.1, seed=3)
    again = carve_split(trec, "validation", fraction=0.1, seed=3)
    assert carved.content_hash == again.content_hash != carve_split(trec, "validation", seed=4).content_hash
    assert carved.derived_splits == {"validation": {"from": "train", "fraction": 0.1, "seed": 3}}
    counts = carved.counts()
    assert counts["train"] + counts["validation"] == trec.counts()["train"]
    train = np.bincount(trec.split("train").column("label").to_numpy().astype(int))
    val = np.bincount(carved.split("validation").column("label").to_numpy().astype(int), minlength=len(train))
    np.testing.assert_allclose(val, np.round(0.1 * train), atol=1)
    assert ensure_split(carved, "validation") is carved


def test_carve_regression_split(shared_tasks):
    stsb = quiet_load(shared_tasks / "stsb")
    carved = carve_split(stsb.__class__(**{**stsb.__dict__, "table": stsb.split("train")}), "test", fraction=0.2)
    assert carved.counts()["test"] == pytest.approx(0.2 * stsb.counts()["train"], abs=5)


# -------------------------------------------------------------------------------------------- leakage


def test_normalise_text_ignores_tokenisation():
    assert normalise_text("it 's not   GOOD , is n't it ?") == normalise_text("It's not good, isn't it?")


@pytest.mark.parametrize(
    ("train", "other", "dropped"), [("mr", "sst2", 1698), ("mr", "sst5", 2039), ("subj", "mr", 678)]
)
def test_leakage_counts_match_measured(shared_tasks, train, other, dropped):
    source, target = quiet_load(shared_tasks / train), quiet_load(shared_tasks / other)
    cleaned, report = drop_leaked(source, [target])
    assert report.n_dropped == dropped == report.dropped_by_task[other]
    assert cleaned.counts()["train"] == source.counts()["train"] - dropped
    assert cleaned.counts()["test"] == source.counts()["test"]  # only the training split is touched


def test_leakage_pairs_need_both_texts():
    train = task_from_table(
        pd.DataFrame({"text": ["a", "a", "q"], "text_pair": ["b", "c", "r"], "label": ["x", "y", "x"]}), "tr"
    )
    evaluation = task_from_table(
        pd.DataFrame({"text": ["A!", "z"], "text_pair": ["b.", "w"], "label": ["x", "y"], "split": ["test", "test"]}),
        "ev",
    )
    cleaned, report = drop_leaked(train, [evaluation])
    assert report.n_dropped == 1
    assert cleaned.split("train").column("text_pair").to_pylist() == ["c", "r"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(alphabet="abc ", min_size=1, max_size=6).filter(str.strip), min_size=4, max_size=12))
def test_example_ids_do_not_depend_on_unrelated_rows(texts):
    labels = ["x", "y"] * (len(texts) // 2) + ["x"] * (len(texts) % 2)
    frame = pd.DataFrame({"text": texts, "label": labels})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = task_from_table(frame, "h")
        ids = full.table.column("example_id").to_pylist()
        assert len(set(ids)) == len(ids)
        extended = task_from_table(pd.concat([frame, pd.DataFrame({"text": ["zz"], "label": ["y"]})]), "h")
    assert extended.table.column("example_id").to_pylist()[: len(ids)] == ids


def test_one_evaluation_index_guards_like_scanning_every_task(shared_tasks):
    from store.leakage import EvaluationIndex

    tasks = [quiet_load(shared_tasks / name) for name in ("mr", "sst2", "sst5", "subj")]
    index = EvaluationIndex.of(tasks)  # mr's own evaluation texts are in it too: a task never guards against itself
    for task in tasks:
        scanned = drop_leaked(task, [t for t in tasks if t is not task])
        indexed = drop_leaked(task, index)
        assert indexed[1] == scanned[1]
        assert indexed[0].table.equals(scanned[0].table)
    report = drop_leaked(tasks[0], index)[1]  # mr against the other three at once: the measured pairwise counts
    assert report.dropped_by_task["sst2"] == 1698 and report.dropped_by_task["sst5"] == 2039
    assert 2039 <= report.n_dropped <= 1698 + 2039 + report.dropped_by_task.get("subj", 0)
