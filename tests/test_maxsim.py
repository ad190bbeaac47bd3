"""Token-level MaxSim (transfer/maxsim.py): a hand-worked answer, FAISS vs exact search, properties, real-model
token embeddings, real-data ranking through the Prefect task's function, and the workspace token cache."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer.maxsim import equal_token_sample, maxsim_score, token_embeddings


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_known_answer(backend):
    # Target text 0 has tokens (1, 0) and (0, 1); text 1 has (0.6, 0.8). Source tokens: (1, 0) and (0.8, 0.6).
    # Best inner products: (1, 0) -> max(1, 0.8) = 1; (0, 1) -> max(0, 0.6) = 0.6; (0.6, 0.8) -> max(0.6, 0.96) = 0.96.
    # Per text: (1 + 0.6) / 2 = 0.8 and 0.96; over texts: (0.8 + 0.96) / 2 = 0.88 (a plain token mean would be 0.853).
    target = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    source = np.array([[1.0, 0.0], [0.8, 0.6]])
    assert maxsim_score(target, np.array([0, 0, 1]), source, backend=backend) == pytest.approx(0.88, abs=1e-6)
    # Text ids need not be contiguous: the mean runs over the texts that have tokens.
    assert maxsim_score(target, np.array([3, 3, 7]), source, backend=backend) == pytest.approx(0.88, abs=1e-6)


def test_known_answer_3d():
    # Target: one text, tokens (0, 0, 1) and (1, 0, 0). Source: (0, 0.6, 0.8) and (0, 1, 0).
    # Best: (0, 0, 1) -> 0.8; (1, 0, 0) -> 0 (orthogonal to both). Mean: 0.4.
    target = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    source = np.array([[0.0, 0.6, 0.8], [0.0, 1.0, 0.0]])
    assert maxsim_score(target, np.array([0, 0]), source) == pytest.approx(0.4, abs=1e-6)


@pytest.mark.parametrize(("m", "n", "d"), [(7, 3, 2), (200, 500, 32), (1000, 50, 384)])
def test_faiss_and_exact_backends_agree(m, n, d):
    rng = np.random.default_rng(m)
    target, source = unit_rows(rng, m, d), unit_rows(rng, n, d)
    index = np.sort(rng.integers(0, max(1, m // 5), size=m))
    faiss_score = maxsim_score(target, index, source, backend="faiss")
    exact_score = maxsim_score(target, index, source, backend="torch")
    assert faiss_score == pytest.approx(exact_score, abs=1e-6)
    best = (target.astype(np.float64) @ source.T.astype(np.float64)).max(1)  # float64 brute force
    expected = np.mean([best[index == t].mean() for t in np.unique(index)])
    assert exact_score == pytest.approx(expected, abs=1e-5)


sizes = st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(1, 8), st.integers(0, 10_000))


@settings(max_examples=30, deadline=None)
@given(sizes)
def test_source_order_does_not_matter(shape):
    m, n, d, seed = shape
    rng = np.random.default_rng(seed)
    target, source, index = unit_rows(rng, m, d), unit_rows(rng, n, d), rng.integers(0, 5, size=m)
    shuffled = source[rng.permutation(n)]
    assert maxsim_score(target, index, shuffled) == pytest.approx(maxsim_score(target, index, source), abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(sizes, st.integers(1, 20))
def test_more_source_tokens_never_lower_the_score(shape, extra):
    m, n, d, seed = shape
    rng = np.random.default_rng(seed)
    target, source, index = unit_rows(rng, m, d), unit_rows(rng, n, d), rng.integers(0, 5, size=m)
    grown = np.concatenate([source, unit_rows(rng, extra, d)])
    assert maxsim_score(target, index, grown) >= maxsim_score(target, index, source) - 1e-6


@settings(max_examples=30, deadline=None)
@given(sizes)
def test_identical_target_and_source_score_one(shape):
    m, _, d, seed = shape
    rng = np.random.default_rng(seed)
    tokens = unit_rows(rng, m, d)
    assert maxsim_score(tokens, rng.integers(0, 5, size=m), tokens) == pytest.approx(1.0, abs=1e-5)


def test_bad_parameters_name_themselves():
    tokens, index = np.eye(3), np.arange(3)
    with pytest.raises(ValueError, match=r"'target_tokens' parameter of maxsim_score must be a non-empty 2-D"):
        maxsim_score(np.zeros((0, 3)), np.zeros(0, int), tokens)
    with pytest.raises(ValueError, match=r"'source_tokens' parameter of maxsim_score must be a non-empty 2-D"):
        maxsim_score(tokens, index, np.ones(3))
    with pytest.raises(ValueError, match="same dimension. Got 3 and 2 instead"):
        maxsim_score(tokens, index, np.eye(2))
    with pytest.raises(ValueError, match=r"'target_text_index' parameter of maxsim_score must be an int array"):
        maxsim_score(tokens, np.arange(2), tokens)
    with pytest.raises(ValueError, match=r"'target_text_index' parameter"):
        maxsim_score(tokens, np.zeros(3), tokens)  # floats
    with pytest.raises(ValueError, match=r"'backend' parameter of maxsim_score must be one of"):
        maxsim_score(tokens, index, tokens, backend="annoy")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_token_embeddings_keep_real_tokens_only(encoder):
    tokenizer = encoder.tokenizer
    texts = ["A fine film.", "Not sure who was more lost - the flat characters or the audience.", "ok", ""]
    pairs = ["It rained.", "Yes", "no", "alone"]
    vectors, index = token_embeddings(encoder, texts, batch_size=3)  # longest first: "ok" is padded in batch 1
    counts = [len(tokenizer.tokenize(t)) for t in texts]
    assert np.bincount(index, minlength=len(texts)).tolist() == counts and counts[-1] == 0
    assert vectors.dtype == np.float32 and index.dtype == np.int64 and vectors.shape[1] == encoder.dim
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The rows of "ok" (padded in its batch) are the unpadded model's states without [CLS] and [SEP].
    inputs = tokenizer("ok", return_tensors="pt")
    with torch.inference_mode():
        alone = torch.nn.functional.normalize(encoder.model(**inputs).last_hidden_state[0, 1:-1], dim=-1)
    np.testing.assert_allclose(vectors[index == 2], alone.numpy(), atol=1e-5)

    _, pair_index = token_embeddings(encoder, texts, pairs)  # [CLS] a [SEP] b [SEP]
    pair_counts = [len(tokenizer.tokenize(t)) + len(tokenizer.tokenize(p)) for t, p in zip(texts, pairs, strict=True)]
    assert np.bincount(pair_index).tolist() == pair_counts

    truncated, _ = token_embeddings(encoder, [" ".join([texts[1]] * 12)])  # ~180 word pieces
    assert len(truncated) == encoder.max_length - 2


@pytest.mark.slow
def test_token_embeddings_bad_parameters(encoder):
    with pytest.raises(ValueError, match="'texts' parameter of token_embeddings must be a sequence of strings"):
        token_embeddings(encoder, "one string")
    with pytest.raises(ValueError, match=r"'text_pairs' parameter of token_embeddings must have one entry per text"):
        token_embeddings(encoder, ["a", "b"], ["c"])
    with pytest.raises(ValueError, match=r"must match the TextEncoder's \(128, cpu\). Got \(64, cpu\) instead"):
        token_embeddings(encoder, ["a"], max_length=64)


def _workspace_task(table: pd.DataFrame, name: str, workspace):
    from store.catalog import put_task
    from store.task_files import load_task

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = load_task(table, name=name)
    put_task(workspace, task)
    return task


@pytest.mark.slow
def test_a_task_is_closest_to_its_own_held_out_split(workspace, shared_tasks):
    from flows.maxsim import maxsim_scores
    from flows.runners import commit
    from store.task_files import load_task_dir

    def frame(name: str, split: str) -> pd.DataFrame:
        rows = load_task_dir(shared_tasks / name).split(split).select(["text", "label"]).to_pandas()
        return rows.assign(split="train")

    _workspace_task(frame("uci_sentiment_imdb", "train"), "imdb", workspace)
    _workspace_task(frame("uci_sentiment_imdb", "validation"), "imdb_heldout", workspace)
    _workspace_task(frame("tweeteval_stance_atheism", "train"), "atheism", workspace)
    options = {
        "model": "all-MiniLM-L6-v2",
        "device": "cpu",
        "max_target_texts": 20,
        "max_source_texts": 40,
        "source_tokens": 300,
    }
    result = maxsim_scores.fn(str(workspace.root), "imdb", ["imdb_heldout", "atheism"], seed=0, run_id="r", **options)
    scores = commit(workspace, result)
    assert result.writes == [] and set(scores) == {"imdb_heldout", "atheism"}
    assert scores["imdb_heldout"] > scores["atheism"] + 0.1  # measured: 0.55 vs 0.37
    assert len(list((workspace.root / "tokens").glob("*.npz"))) == 3  # the target and both sources


@pytest.mark.slow
def test_token_cache_is_read_back_and_keyed_by_content(workspace, encoder, monkeypatch):
    import flows.maxsim
    from flows.maxsim import sample_tokens
    from store.tokens import tokens_key

    table = pd.DataFrame({"text": ["good film", "bad film", "fine", "awful plot"], "label": [1, 0, 1, 0]})
    task = _workspace_task(table, "tiny", workspace)
    vectors, index = sample_tokens(workspace, task, "train", encoder, max_texts=3, seed=0)
    key = tokens_key(encoder.fingerprint, task.split_hash("train"), "train", 3, 0, encoder.max_length)
    assert (workspace.root / "tokens" / f"{key}.npz").is_file() and len(np.unique(index)) == 3

    def no_encoding(*args, **kwargs):
        raise AssertionError("token_embeddings ran although the sample is cached")

    monkeypatch.setattr(flows.maxsim, "token_embeddings", no_encoding)
    cached_vectors, cached_index = sample_tokens(workspace, task, "train", encoder, max_texts=3, seed=0)
    np.testing.assert_array_equal(cached_vectors, vectors)
    np.testing.assert_array_equal(cached_index, index)

    changed = _workspace_task(table.assign(text=["good film", "bad film", "fine", "awful acting"]), "tiny", workspace)
    changed_key = tokens_key(encoder.fingerprint, changed.split_hash("train"), "train", 3, 0, encoder.max_length)
    assert changed_key != key
    with pytest.raises(AssertionError, match="token_embeddings ran"):  # a new content hash is a cache miss
        sample_tokens(workspace, changed, "train", encoder, max_texts=3, seed=0)
    assert tokens_key(encoder.fingerprint, task.split_hash("train"), "train", 3, 1, encoder.max_length) != key


def test_equal_token_sample_draws_the_same_count_from_every_source():
    tokens = np.arange(20, dtype=np.float32).reshape(10, 2)
    sample = equal_token_sample(tokens, 4, seed=0)
    assert sample.shape == (4, 2) and len({tuple(r) for r in sample.tolist()}) == 4
    assert {tuple(r) for r in sample.tolist()} <= {tuple(r) for r in tokens.tolist()}
    assert np.array_equal(sample, equal_token_sample(tokens, 4, seed=0))
    assert not np.array_equal(sample, equal_token_sample(tokens, 4, seed=1))
    assert equal_token_sample(tokens, 10, seed=0) is tokens  # short sources are kept whole
    with pytest.raises(ValueError, match="'n_tokens' parameter of equal_token_sample must be a positive int. Got 0"):
        equal_token_sample(tokens, 0, seed=0)
