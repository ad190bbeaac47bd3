"""Workspace store: migrations, atomic writes, checksums, the embedding cache, views/SQL and concurrent writers."""

from __future__ import annotations

import multiprocessing
import shutil
import threading
import time
import warnings

import duckdb
import numpy as np
import pandas as pd
import pytest

from store.artifacts import file_checksum, replace_atomically, write_parquet
from store.catalog import get_task, list_tasks, put_task
from store.embeddings import EmbeddingKey, find_embeddings, put_embeddings
from store.runs import config_hash, finish_run, start_run
from store.task_files import task_from_table
from store.workspace import SCHEMA_DIR, Workspace, WorkspaceLockedError


def small_task(name="toy", extra=""):
    frame = pd.DataFrame(
        {
            "text": ["good film", "bad film", "great plot" + extra, "awful"],
            "label": ["pos", "neg", "pos", "neg"],
            "split": ["train", "train", "train", "test"],
        }
    )
    return task_from_table(frame, name)


def key_for(task, split="train", **over):
    fields = dict(
        model="m",
        model_fp="fp",
        pooling="mean",
        max_length=128,
        normalize=True,
        precision="exact",
        task=task.name,
        split=split,
        content_hash=task.split_hash(split),
    )
    return EmbeddingKey(**{**fields, **over})


def test_migrations_apply_once_in_order(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert ws.applied_migrations == sorted(p.name for p in SCHEMA_DIR.glob("[0-9][0-9][0-9]_*.sql"))
    assert ws.applied_migrations[0] == "001_core.sql"
    assert Workspace(tmp_path / "ws").applied_migrations == []
    schema = tmp_path / "schema"
    shutil.copytree(SCHEMA_DIR, schema)
    (schema / "900_extra.sql").write_text("CREATE TABLE extra (x INTEGER);")
    (schema / "notes.sql").write_text("this is not a migration and is ignored")
    ws2 = Workspace(tmp_path / "ws", schema_dir=schema)
    assert ws2.applied_migrations == ["900_extra.sql"]
    recorded = ws2.sql("SELECT version, name FROM schema_migrations ORDER BY version").values.tolist()
    assert recorded[0] == [1, "001_core.sql"] and recorded[-1] == [900, "900_extra.sql"]
    (schema / "900_extra.sql").write_text("CREATE TABLE extra (y INTEGER);")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        Workspace(tmp_path / "ws", schema_dir=schema)


def test_failed_migration_leaves_nothing(tmp_path):
    schema = tmp_path / "schema"
    shutil.copytree(SCHEMA_DIR, schema)
    (schema / "900_bad.sql").write_text("CREATE TABLE half (x INTEGER); SELECT * FROM no_such_table;")
    with pytest.raises(duckdb.Error):
        Workspace(tmp_path / "ws", schema_dir=schema)
    ws = Workspace(tmp_path / "ws")
    assert "half" not in ws.view_definitions() and not (ws.tables_dir / "half.parquet").exists()


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), replace_atomically(target) as tmp:
        tmp.write_text("new, half written")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_task_roundtrip_and_change_detection(workspace):
    task = small_task()
    assert put_task(workspace, task) is True
    assert put_task(workspace, task) is False
    loaded = get_task(workspace, "toy")
    assert loaded.content_hash == task.content_hash and loaded.label_names == ("neg", "pos")
    assert put_task(workspace, small_task(extra="!")) is True
    assert list_tasks(workspace).shape[0] == 1
    with pytest.raises(KeyError, match="No task 'nope'.*Known tasks: \\['toy'\\]"):
        get_task(workspace, "nope")


def test_embedding_cache_hit_miss_and_corruption(workspace):
    task = small_task()
    put_task(workspace, task)
    key = key_for(task)
    assert find_embeddings(workspace, key) is None
    vectors = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    ids = task.split("train").column("example_id").to_pylist()
    relative = put_embeddings(workspace, key, ids, vectors)
    got_ids, got = find_embeddings(workspace, key)
    assert got_ids == ids and np.array_equal(got, vectors)
    # any change in what decides the numbers is a different key: a miss
    assert find_embeddings(workspace, key_for(task, max_length=64)) is None
    assert find_embeddings(workspace, key_for(task, precision="fast:onnxruntime-int8")) is None
    assert find_embeddings(workspace, key_for(small_task(extra="?"))) is None
    # a truncated file is detected, reported and dropped from the catalog
    path = workspace.path(relative)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning, match="fail their checksum; recomputing"):
        assert find_embeddings(workspace, key) is None
    assert workspace.sql("SELECT count(*) AS n FROM embeddings").n[0] == 0


def test_put_embeddings_rejects_bad_shapes(workspace):
    task = small_task()
    with pytest.raises(ValueError, match="'vectors' parameter must be \\[n, d\\]"):
        put_embeddings(workspace, key_for(task), ["a", "b"], np.zeros((3, 4)))


def test_views_and_sql_see_committed_state(workspace):
    task = small_task()
    put_task(workspace, task)
    key = key_for(task)
    put_embeddings(workspace, key, task.split("train").column("example_id").to_pylist(), np.eye(3, 4))
    frame = workspace.sql(
        "SELECT v.example_id, x.text, len(v.embedding) AS d FROM embedding_vectors v "
        "JOIN task_examples x USING (example_id) ORDER BY x.text"
    )
    assert frame["text"].tolist() == ["bad film", "good film", "great plot"] and set(frame.d) == {4}
    assert workspace.sql("SELECT name FROM tasks WHERE kind = $kind", {"kind": "classification"}).name.tolist() == [
        "toy"
    ]
    # an outside client holding the views database open (another process) never blocks a writer
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    reader = context.Process(target=_hold_views, args=(str(workspace.views_path), ready, release))
    reader.start()
    assert ready.wait(60)
    put_task(workspace, small_task("second"))
    assert workspace.sql("SELECT count(*) AS n FROM tasks").n[0] == 2
    assert reader.is_alive()  # the reader held the views database open through the write
    release.set()
    reader.join(60)
    assert reader.exitcode == 0
    outside = duckdb.connect(str(workspace.views_path), read_only=True)
    assert outside.execute("SELECT count(*) FROM tasks").fetchone()[0] == 2
    outside.close()


def _hold_views(path: str, ready, release) -> None:
    con = duckdb.connect(path, read_only=True)
    assert con.execute("SELECT count(*) FROM embedding_vectors").fetchone()[0] == 3
    ready.set()
    assert release.wait(120)
    con.close()


def test_runs_record_config_hash_and_versions(workspace):
    run_id, digest = start_run(workspace, "flow_x", {"b": 1, "a": [1, 2]})
    assert digest == config_hash({"a": [1, 2], "b": 1})
    finish_run(workspace, run_id, status="completed", timings={"total_s": 1.5})
    row = workspace.sql("SELECT * FROM runs").iloc[0]
    assert row.status == "completed" and row.config_hash == digest and '"torch"' in row.versions_json


def test_checksum_is_content_based(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    import pyarrow as pa

    table = pa.table({"x": [1, 2, 3]})
    assert write_parquet(table, a) == write_parquet(table, b) == file_checksum(a)


def _writer(root: str, worker: int, count: int) -> None:
    ws = Workspace(root)
    for i in range(count):
        run_id, _ = start_run(ws, f"writer{worker}", {"i": i})
        finish_run(ws, run_id, status="completed")


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    root = str(tmp_path / "ws")
    Workspace(root)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(root, w, 15)) for w in range(3)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
        assert p.exitcode == 0
    frame = Workspace(root).sql(
        "SELECT flow, count(*) AS n, count_if(status = 'completed') AS done FROM runs GROUP BY flow ORDER BY flow"
    )
    assert frame.n.tolist() == [15, 15, 15] and frame.done.tolist() == [15, 15, 15]


def _hold_lock(root: str, conn) -> None:
    """Hold the workspace's write lock each time ``conn`` says "hold", until it says anything else."""
    ws = Workspace(root)
    while conn.recv() == "hold":
        with ws.transaction():
            conn.send("held")
            conn.recv()


def test_second_writer_waits_then_gives_a_clear_error(tmp_path):
    root = str(tmp_path / "ws")
    patient, impatient = Workspace(root, lock_timeout=30), Workspace(root, lock_timeout=0.5)
    context = multiprocessing.get_context("spawn")
    orders, conn = context.Pipe()
    holder = context.Process(target=_hold_lock, args=(root, conn), daemon=True)  # never outlives a failed test
    holder.start()

    def hold() -> None:
        orders.send("hold")
        assert orders.poll(60) and orders.recv() == "held"

    hold()
    started = time.monotonic()
    threading.Timer(1.0, orders.send, ("release",)).start()  # the holder commits after 1 s
    start_run(patient, "waited", {})  # blocks until the holder commits, then writes
    assert time.monotonic() - started > 0.5
    hold()
    with pytest.raises(WorkspaceLockedError, match="stayed locked by another TransferScope process for 0 s"):
        start_run(impatient, "blocked", {})
    orders.send("release")
    orders.send("stop")
    holder.join(60)
    assert holder.exitcode == 0
    start_run(impatient, "after", {})
    assert patient.sql("SELECT flow FROM runs ORDER BY flow").flow.tolist() == ["after", "waited"]


def test_lock_timeout_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="'lock_timeout' parameter must be a positive number. Got 0"):
        Workspace(tmp_path, lock_timeout=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Workspace(tmp_path)


def test_gc_removes_only_unreferenced_artefacts(workspace):
    from store.gc import collect_garbage

    put_task(workspace, small_task())
    old_version = workspace.path(workspace.sql("SELECT path FROM tasks").path[0])
    put_task(workspace, small_task(extra="!"))  # the first version is no longer referenced
    task = get_task(workspace, "toy")
    key = key_for(task)
    kept = workspace.path(
        put_embeddings(workspace, key, task.split("train").column("example_id").to_pylist(), np.zeros((3, 2)))
    )
    stray = workspace.path("embeddings/orphan.parquet.tmp-1-abc")
    stray.write_bytes(b"half")
    assert collect_garbage(workspace) == []  # everything is younger than the grace period
    listed = collect_garbage(workspace, dry_run=True, min_age_s=0)
    assert sorted(listed) == sorted([old_version, stray]) and old_version.exists()
    assert sorted(collect_garbage(workspace, min_age_s=0)) == sorted([old_version, stray])
    assert not old_version.exists() and not stray.exists() and kept.exists()
    assert get_task(workspace, "toy").content_hash == task.content_hash


def test_workspace_export_import_round_trip_and_verification(workspace, tmp_path):
    from store.archive import MANIFEST, export_workspace, import_workspace
    from store.features import features_key, find_features, put_features

    put_task(workspace, small_task())
    task = get_task(workspace, "toy")
    ids = task.split("train").column("example_id").to_pylist()
    put_embeddings(workspace, key_for(task), ids, np.ones((3, 4)))
    key = features_key("toy", "train", "ckpt", {"dim": 2})
    put_features(
        workspace,
        key,
        task="toy",
        split="train",
        checkpoint_key="ckpt",
        params={"dim": 2},
        example_ids=ids,
        shards=iter([np.eye(3, 2)[:2], np.eye(3, 2)[2:]]),
    )
    manifest = export_workspace(workspace, tmp_path / "export")
    assert manifest.name == MANIFEST
    with pytest.raises(ValueError, match="'destination' parameter of export_workspace must be a new or empty folder"):
        export_workspace(workspace, tmp_path / "export")
    moved = import_workspace(tmp_path / "export", tmp_path / "elsewhere")
    assert get_task(moved, "toy").content_hash == task.content_hash
    assert np.array_equal(find_embeddings(moved, key_for(task))[1], np.ones((3, 4), np.float32))
    got_ids, features = find_features(moved, key)
    assert got_ids == ids and features.dtype == np.float16 and np.array_equal(features, np.eye(3, 2))
    assert moved.sql("SELECT count(*) AS n FROM tasks").n[0] == 1
    # A corrupted artefact in the export is named, not silently used.
    shard = next((tmp_path / "export" / "features").rglob("shard-00001.npy"))
    shard.write_bytes(shard.read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(ValueError, match=r"gradient_features: 'features/[0-9a-f]+' is corrupt"):
        import_workspace(tmp_path / "export", tmp_path / "third")
    with pytest.raises(ValueError, match="written by export_workspace"):
        import_workspace(tmp_path / "nothing-here", tmp_path / "fourth")


def test_sql_runs_again_when_a_snapshot_changes_under_it(workspace, monkeypatch):
    """A commit can replace a snapshot between DuckDB's planning and scanning of a query; sql() retries those
    errors (and only those)."""
    put_task(workspace, small_task())
    real_connect = duckdb.connect
    failures = iter(["TProtocolException: Invalid data", "IO Error: No magic bytes found at end of file"])

    class Flaky:
        def __init__(self, con):
            self.con = con

        def execute(self, statement, params=None):
            message = next(failures, None)
            if message is not None and "count" in statement:
                raise duckdb.Error(message)
            return self.con.execute(statement, params or [])

        def close(self):
            self.con.close()

    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: Flaky(real_connect(*a, **k)))
    assert workspace.sql("SELECT count(*) AS n FROM tasks").n[0] == 1
    with pytest.raises(duckdb.Error, match="syntax error"):
        workspace.sql("SELEC 1")


def test_results_flag_near_ties_per_method(workspace):
    from store.rankings import put_ranking
    from store.results import Results
    from store.runs import start_run

    run_id, config = start_run(workspace, "rank_sources", {})
    tied = {"a": -0.701, "b": -0.699, "c": -0.75}
    put_ranking(workspace, run_id, config, "t", "esm-logme", tied, higher_is_better=True)
    put_ranking(workspace, run_id, config, "t", "mmd", {"a": 1.0, "b": 2.0}, higher_is_better=False)
    assert Results(workspace).near_ties("t") == {"esm-logme": [["b", "a"]]}


def test_recorded_run_finishes_completed_partial_or_failed(workspace):
    import json

    from store.runs import recorded_run

    with recorded_run(workspace, "ok", {"a": 1}, device="cpu") as run:
        run.timings["step_s"] = 1.5
    with recorded_run(workspace, "some", {"a": 2}) as run:
        run.status, run.error = "partial", "mmd: ValueError: no"
    with pytest.raises(KeyError), recorded_run(workspace, "bad", {"a": 3}):
        raise KeyError("boom")
    rows = workspace.sql("SELECT flow, status, error, timings_json FROM runs").set_index("flow")
    assert rows.loc["ok"].status == "completed" and pd.isna(rows.loc["ok"].error)
    assert set(json.loads(rows.loc["ok"].timings_json)) == {"total_s", "step_s"}
    assert (rows.loc["some"].status, rows.loc["some"].error) == ("partial", "mmd: ValueError: no")
    assert rows.loc["bad"].status == "failed" and rows.loc["bad"].error == "KeyError: 'boom'"
