import numpy as np
import pytest

from helpers import CountingEncoder, HashingEncoder
from sklearn_splice import build_dictionary, concept_embeddings


def test_build_dictionary_is_centred_with_unit_rows():
    T = np.random.RandomState(0).standard_normal((30, 8)) + 3.0
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    C = build_dictionary(T)
    assert C.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(C, axis=1), 1.0, rtol=1e-6)
    expected = T - T.mean(0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(C, expected, atol=1e-6)


def test_concept_embeddings_are_unit_and_cached(tmp_path):
    enc = CountingEncoder(HashingEncoder(width=8))
    words = ["cat", "dog", "tree"]
    a = concept_embeddings(enc, words, cache_dir=tmp_path)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    assert enc.n_texts == 3
    b = concept_embeddings(enc, words, cache_dir=tmp_path)
    assert enc.n_texts == 3  # served from the cache
    np.testing.assert_array_equal(a, b)
    assert len(list((tmp_path / "concepts").iterdir())) == 1


def test_changed_vocabulary_or_backbone_never_reuses_the_cache(tmp_path):
    enc = CountingEncoder(HashingEncoder(width=8))
    concept_embeddings(enc, ["cat", "dog", "tree"], cache_dir=tmp_path)
    concept_embeddings(enc, ["cat", "dog", "trees"], cache_dir=tmp_path)
    assert enc.n_texts == 6
    other = CountingEncoder(HashingEncoder(width=16))
    out = concept_embeddings(other, ["cat", "dog", "tree"], cache_dir=tmp_path)
    assert other.n_texts == 3 and out.shape == (3, 16)


def test_without_a_cache_folder_the_vocabulary_is_still_reused_in_memory(tmp_path):
    enc = CountingEncoder(HashingEncoder(width=8))
    first = concept_embeddings(enc, ["a", "b"], cache_dir=False)
    again = concept_embeddings(enc, ["a", "b"], cache_dir=False)
    assert enc.n_texts == 2 and not (tmp_path / "concepts").exists()
    np.testing.assert_array_equal(first, again)


def test_estimators_are_identified_by_class_and_parameters(tmp_path):
    a = concept_embeddings(HashingEncoder(width=8), ["a", "b"], cache_dir=tmp_path)
    assert len(list((tmp_path / "concepts").glob("*.npz"))) == 1
    b = concept_embeddings(HashingEncoder(width=6), ["a", "b"], cache_dir=tmp_path)
    assert b.shape == (2, 6) and a.shape == (2, 8)  # other parameters: another entry
    assert len(list((tmp_path / "concepts").glob("*.npz"))) == 2


def test_encoders_without_identity_are_not_cached_and_say_so_once(tmp_path):
    class Plain:  # neither cache_identity() nor an estimator
        calls = 0

        def encode_text(self, texts):
            Plain.calls += 1
            return HashingEncoder(width=8).encode_text(texts)

    with pytest.warns(UserWarning, match="grid search.*embeds its inputs and the vocabulary again"):
        concept_embeddings(Plain(), ["a", "b"], cache_dir=tmp_path)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time is silent
        concept_embeddings(Plain(), ["a", "b"], cache_dir=tmp_path)
    assert Plain.calls == 2 and not (tmp_path / "concepts").exists()


def test_bad_encoder_output_is_reported():
    class Broken(HashingEncoder):
        def encode_text(self, texts):
            return np.full((len(texts) - 1, 8), 1.0)

    with pytest.raises(
        ValueError, match=r"encode_text \(on the vocabulary\) returned 1 rows for 2"
    ):
        concept_embeddings(Broken(), ["a", "b"], cache_dir=False)


def test_unwritable_cache_does_not_stop_the_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # mkdir below it fails, even for root
    enc = CountingEncoder(HashingEncoder(width=8))
    with pytest.warns(UserWarning, match="Could not write the concept cache"):
        out = concept_embeddings(enc, ["a", "b"], cache_dir=blocker)
    assert out.shape == (2, 8)
