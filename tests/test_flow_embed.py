"""Integration: the real embed_tasks flow (Prefect, local test server) on two real tasks with the real model,
results queried by SQL, cache reuse and partial recomputation, and the CLI over the same workspace."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from store.catalog import get_task, put_task
from store.task_files import load_task_dir
from store.workspace import Workspace

pytestmark = pytest.mark.slow
TASKS = ("uci_sentiment_yelp", "cb")


@pytest.fixture(scope="module")
def flow_workspace(tmp_path_factory, shared_tasks, prefect_harness):
    ws = Workspace(tmp_path_factory.mktemp("flow") / "ws")
    for name in TASKS:
        put_task(ws, load_task_dir(shared_tasks / name))
    return ws


@pytest.fixture(scope="module")
def first_run(flow_workspace):
    from flows import embed_tasks

    return embed_tasks(tasks=list(TASKS), device="cpu", workspace=str(flow_workspace.root))


def test_flow_embeds_every_split_and_sql_sees_it(flow_workspace, first_run, encoder):
    assert {(r["task"], r["split"]) for r in first_run} == {
        ("uci_sentiment_yelp", "train"),
        ("uci_sentiment_yelp", "validation"),
        ("uci_sentiment_yelp", "test"),
        ("cb", "train"),
        ("cb", "validation"),
    }
    assert not any(r["cached"] for r in first_run)
    counts = flow_workspace.sql(
        "SELECT task, split, count(*) AS n, min(len(embedding)) AS d FROM embedding_vectors "
        "GROUP BY ALL ORDER BY task, split"
    )
    assert counts.n.tolist() == [250, 56, 100, 800, 100] and set(counts.d) == {384}
    run = flow_workspace.sql("SELECT * FROM runs WHERE flow = 'embed_tasks'").iloc[0]
    assert run.status == "completed" and json.loads(run.params_json)["tasks"] == list(TASKS)
    # the stored vectors are the encoder's output for the stored texts, pairs included
    cb = get_task(flow_workspace, "cb").split("validation")
    stored = flow_workspace.sql(
        "SELECT v.embedding FROM embedding_vectors v JOIN task_examples x USING (example_id) WHERE x.example_id = $id",
        {"id": cb.column("example_id")[0].as_py()},
    )
    expected = encoder.encode([cb.column("text")[0].as_py()], [cb.column("text_pair")[0].as_py()])[0]
    np.testing.assert_allclose(np.asarray(stored.embedding[0]), expected, atol=1e-5)


def test_second_run_computes_nothing_and_changes_recompute_only_what_changed(flow_workspace, first_run, shared_tasks):
    from flows import embed_tasks

    again = embed_tasks(tasks=list(TASKS), device="cpu", workspace=str(flow_workspace.root))
    assert all(r["cached"] for r in again)
    assert flow_workspace.sql("SELECT count(*) AS n FROM embeddings").n[0] == len(first_run)
    # change one test example of yelp: only yelp/test is recomputed
    yelp = load_task_dir(shared_tasks / "uci_sentiment_yelp")
    table = yelp.table.to_pandas()
    first_test = table.index[table.split == "test"][0]
    table.loc[first_test, "text"] = "A changed review."
    table["label"] = [yelp.label_names[int(i)] for i in table["label"]]
    from store.task_files import task_from_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        changed = task_from_table(table.drop(columns="example_id"), "uci_sentiment_yelp")
    assert put_task(flow_workspace, changed)
    third = embed_tasks(tasks=["uci_sentiment_yelp"], device="cpu", workspace=str(flow_workspace.root))
    assert {r["split"]: r["cached"] for r in third} == {"train": True, "validation": True, "test": False}


def test_cli_over_the_same_workspace(flow_workspace, first_run, tmp_path):
    from flows.cli import app

    runner = CliRunner()
    root = str(flow_workspace.root)
    listed = runner.invoke(app, ["--workspace", root, "tasks", "list"])
    assert listed.exit_code == 0 and "uci_sentiment_yelp" in listed.output and "cb" in listed.output
    out = runner.invoke(
        app,
        [
            "--workspace",
            root,
            "sql",
            "SELECT task, count(*) AS n FROM embedding_vectors GROUP BY task ORDER BY task",
            "--format",
            "json",
        ],
    )
    assert out.exit_code == 0, out.output
    assert {row["task"] for row in json.loads(out.output)} == {"cb", "uci_sentiment_yelp"}
    bad = runner.invoke(app, ["--workspace", root, "sql", "SELECT * FROM no_such_table"])
    assert bad.exit_code == 2 and "SQL error" in bad.output
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b"}\n')
    added = runner.invoke(app, ["--workspace", root, "tasks", "add", "broken", str(folder)])
    assert added.exit_code == 2 and "line 2: missing label field" in added.output
    assert "broken" not in Workspace(root).sql("SELECT name FROM tasks").name.tolist()
    cached = runner.invoke(app, ["--workspace", root, "embed", "cb", "--split", "validation"])
    assert cached.exit_code == 0, cached.output
    key_rows = Workspace(root).sql("SELECT count(*) AS n FROM embeddings WHERE task = 'cb'")
    assert key_rows.n[0] == 2


def test_a_sample_is_embedded_alone_and_served_from_the_whole_split(tmp_path, shared_tasks, encoder):
    """A method that reads some rows of a split (ESM-LogME's target sample) embeds only those, cached under the
    sample's own key; once the whole split is embedded, any sample is served from it."""
    from flows.embed import ensure_embeddings

    ws = Workspace(tmp_path / "ws")
    put_task(ws, load_task_dir(shared_tasks / "cb"))
    stored = get_task(ws, "cb")
    rows = np.array([3, 10, 40, 200])
    ids, sample, cached = ensure_embeddings(ws, stored, "train", encoder, rows=rows)
    train_ids = stored.split("train").column("example_id").to_pylist()
    assert not cached and ids == [train_ids[i] for i in rows]
    assert ws.sql("SELECT n FROM embeddings").n.tolist() == [4]
    assert ensure_embeddings(ws, stored, "train", encoder, rows=rows)[2]  # the sample's own cache entry
    _, whole, cached = ensure_embeddings(ws, stored, "train", encoder, rows=np.arange(len(train_ids)))
    assert not cached and sorted(ws.sql("SELECT n FROM embeddings").n) == [4, 250]  # every row: the whole split
    np.testing.assert_allclose(whole[rows], sample, atol=1e-5)
    other_ids, other, cached = ensure_embeddings(ws, stored, "train", encoder, rows=np.array([0, 7]))
    assert cached and other_ids == [train_ids[0], train_ids[7]] and np.array_equal(other, whole[[0, 7]])
    assert len(ws.sql("SELECT n FROM embeddings")) == 2
