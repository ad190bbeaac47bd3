"""Embeddings with the real all-MiniLM-L6-v2 against sentence-transformers (an independent implementation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from store.task_files import load_task_dir
from transfer.embeddings import TextEncoder, pool
from transfer.encoder import model_fingerprint, resolve_device, resolve_model_path


@pytest.fixture(scope="module")
def real_texts(shared_tasks):
    emotion = load_task_dir(shared_tasks / "tweeteval_emotion").split("test").column("text").to_pylist()[:150]
    trec = load_task_dir(shared_tasks / "trec").split("test").column("text").to_pylist()[:50]
    return emotion + trec


@pytest.fixture(scope="module")
def exact_vectors(encoder, real_texts):
    """Exact-mode embeddings of `real_texts`, computed once for the tests that compare others against them."""
    return encoder.encode(real_texts)


def test_exact_mode_matches_sentence_transformers(encoder, real_texts, exact_vectors):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(encoder.model_path), device="cpu")
    reference.max_seq_length = encoder.max_length
    expected = reference.encode(real_texts, batch_size=64, normalize_embeddings=True)
    ours = exact_vectors
    assert ours.dtype == np.float32 and ours.shape == (len(real_texts), 384)
    cosine = (ours * expected).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_output_is_deterministic_and_in_input_order(encoder, real_texts):
    texts = real_texts[:40]
    first = encoder.encode(texts)
    np.testing.assert_array_equal(first, encoder.encode(texts))
    permutation = np.random.default_rng(0).permutation(len(texts))
    shuffled = encoder.encode([texts[i] for i in permutation])
    np.testing.assert_allclose(shuffled, first[permutation], atol=1e-5)


def test_pairs_are_encoded_as_tokenizer_pairs(encoder, shared_tasks):
    rte = load_task_dir(shared_tasks / "rte").split("validation")
    texts, pairs = rte.column("text").to_pylist()[:8], rte.column("text_pair").to_pylist()[:8]
    ours = encoder.encode(texts, pairs)
    inputs = encoder.tokenizer(
        texts, pairs, truncation=True, max_length=encoder.max_length, padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        hidden = encoder.model(**inputs).last_hidden_state
    expected = torch.nn.functional.normalize(pool(hidden, inputs["attention_mask"], "mean"), dim=-1).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    assert not np.allclose(ours, encoder.encode(texts), atol=1e-2)


def test_pooling_options(encoder):
    texts = ["a short one", "a somewhat longer sentence about films"]
    cls = TextEncoder(encoder.model_path, pooling="cls", normalize=False, device="cpu").encode(texts)
    pooler = TextEncoder(encoder.model_path, pooling="pooler", normalize=False, device="cpu").encode(texts)
    inputs = encoder.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        output = encoder.model(**inputs)
    np.testing.assert_allclose(cls, output.last_hidden_state[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(pooler, output.pooler_output.numpy(), atol=1e-5)


def test_hidden_mean_pooling_ignores_padding():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(pool(hidden, mask, "mean").numpy(), [[1.0, 2.0], [8.0, 9.0]])


def test_cache_params_cover_what_changes_numbers(encoder):
    params = encoder.cache_params()
    assert set(params) == {"model_fp", "pooling", "max_length", "normalize", "precision"}
    assert params["precision"] == "exact" and params["model_fp"] == model_fingerprint(encoder.model_path)


def test_empty_input_and_bad_parameters(encoder):
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(ValueError, match="'texts' parameter of encode must be a sequence of strings"):
        encoder.encode("one string")
    with pytest.raises(ValueError, match="'text_pairs' parameter must have one entry per text"):
        encoder.encode(["a", "b"], ["x"])
    with pytest.raises(ValueError, match="'pooling' parameter of TextEncoder must be one of"):
        TextEncoder(pooling="max")
    with pytest.raises(ValueError, match="'max_length' parameter of TextEncoder must be a positive int. Got 0"):
        TextEncoder(max_length=0)


def test_model_resolution(encoder, tmp_path):
    assert resolve_model_path("default") == resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="encoder directory with a config.json"):
        resolve_model_path(tmp_path)
    with pytest.raises(ValueError, match="could not be resolved"):
        resolve_model_path("no-such-user/no-such-model")
    assert resolve_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(ValueError, match="'device' parameter"):
        resolve_device("tpu-9")


def test_local_copy_of_a_model_works_and_shares_the_fingerprint(encoder, tmp_path):
    import shutil

    local = tmp_path / "copy"
    shutil.copytree(encoder.model_path, local)
    other = TextEncoder(local, device="cpu")
    assert other.fingerprint == encoder.fingerprint
    np.testing.assert_array_equal(other.encode(["same text"]), encoder.encode(["same text"]))


@pytest.mark.slow
def test_fast_mode_on_cpu_stays_close_to_exact(encoder, real_texts, exact_vectors, shared_tasks, tmp_path, monkeypatch):
    """int8 ONNX Runtime: mean cosine >= 0.99 and 1st percentile >= 0.98 against exact mode on real texts, pairs
    included; the quantized model is exported once into the cache folder."""
    monkeypatch.setenv("TRANSFERSCOPE_CACHE", str(tmp_path))
    fast = TextEncoder(encoder.model_path, device="cpu", precision="fast")
    rte = load_task_dir(shared_tasks / "rte").split("validation")
    texts, pairs = rte.column("text").to_pylist()[:40], rte.column("text_pair").to_pylist()[:40]
    cosine = np.concatenate(
        [
            (fast.encode(real_texts) * exact_vectors).sum(1),
            (fast.encode(texts, pairs) * encoder.encode(texts, pairs)).sum(1),
        ]
    )
    assert cosine.mean() >= 0.99 and np.percentile(cosine, 1) >= 0.98, (cosine.mean(), np.percentile(cosine, 1))
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    assert fast.cache_params()["precision"].startswith("fast:onnxruntime-int8:")
    assert fast.cache_params() != encoder.cache_params()


@pytest.mark.gpu
def test_fast_mode_on_gpu_uses_autocast_and_stays_close(real_texts):
    exact = TextEncoder(device="cuda")
    fast = TextEncoder(device="cuda", precision="fast")
    cosine = (exact.encode(real_texts) * fast.encode(real_texts)).sum(1)
    assert fast.backend in {"torch-bfloat16", "torch-float16"}
    assert cosine.mean() >= 0.99 and np.percentile(cosine, 1) >= 0.98
