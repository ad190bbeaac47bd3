"""A target registered as one file (train only) is evaluated on a test split carved from its train rows per seed:
no source may train on any of those rows, in the measurement, the ranking checkpoints and the selection pools."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from store.catalog import put_task
from store.leakage import drop_leaked, normalise_text
from store.task_files import load_task_file, task_from_table
from store.workspace import Workspace

# Every text of the one-file target also occurs in the source's train split (cased and punctuated differently).
TARGET_TEXTS = [f"the film {i} is {'good' if i % 2 else 'bad'}" for i in range(30)]
OWN_TEXTS = [f"a review of book {i} says it is {'fine' if i % 2 else 'dull'}" for i in range(40)]
BUDGET = {"lr": 5e-5, "batch_size": 16, "epochs": 1, "max_examples": 500, "max_length": 32}


@pytest.fixture()
def carved_workspace(tmp_path):
    """'short': 30 rows in one jsonl file (train only); 'reviews': its 30 texts plus 30 of its own in train, 10
    others in test."""
    path = tmp_path / "short.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": t.split()[-1]}) + "\n" for t in TARGET_TEXTS))
    shared = [t.upper().replace(" is ", " is... ") for t in TARGET_TEXTS]
    source = pd.DataFrame(
        {
            "text": shared + OWN_TEXTS,
            "label": [t.split()[-1].lower() for t in shared] + [t.split()[-1] for t in OWN_TEXTS],
            "split": ["train"] * 60 + ["test"] * 10,
        }
    )
    ws = Workspace(tmp_path / "ws")
    put_task(ws, load_task_file(path, "short"))
    put_task(ws, task_from_table(source, "reviews"))
    return ws


def test_a_carved_targets_whole_train_split_is_guarded(carved_workspace):
    from store.catalog import get_task

    short, reviews = get_task(carved_workspace, "short"), get_task(carved_workspace, "reviews")
    assert short.splits == ("train",)
    cleaned, report = drop_leaked(reviews, [short])  # the selection pool's guard against its targets
    assert report.n_dropped == 30 and report.dropped_by_task == {"short": 30}
    assert cleaned.split("train").column("text").to_pylist() == OWN_TEXTS[:30]


def test_sources_never_train_on_a_carved_targets_held_out_texts(carved_workspace, prefect_harness, monkeypatch):
    """The real measure_transfer flow, with fine-tuning replaced by recorders: the rows each source checkpoint is
    trained on hold none of the texts any seed evaluates the target on."""
    import flows.measure
    from flows.measure import MeasureRequest, measure_transfer

    sources, held = {}, {}

    def checkpoint(ws, data, recipe, *, seed, **_):
        sources[seed] = data.texts
        return "unused-checkpoint"

    def train_and_evaluate(train, test, *, seed, start, **_):
        if start == "unused-checkpoint":
            held[seed] = test.texts
        return {"primary": 0.5}

    monkeypatch.setattr(flows.measure, "ensure_checkpoint", checkpoint)
    monkeypatch.setattr(flows.measure, "train_and_evaluate", train_and_evaluate)
    request = MeasureRequest(
        "short", ("reviews",), seeds=(0, 1, 2), recipe=BUDGET, target_recipe=BUDGET, device="cpu",
        workspace=str(carved_workspace.root),
    )  # fmt: skip
    measure_transfer(request)
    assert sorted(sources) == sorted(held) == [0, 1, 2]
    for seed in (0, 1, 2):
        assert len(held[seed]) == 6  # 20% of the target's 30 rows, carved with this seed
        assert sorted(sources[seed]) == sorted(OWN_TEXTS[:30])  # the source keeps only its own texts
        assert not {normalise_text(t) for t in held[seed]} & {normalise_text(t) for t in sources[seed]}
