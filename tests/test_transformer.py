import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from helpers import DictionaryEncoder, HashingEncoder
from sklearn_splice import OpenCLIPEncoder, SpliceTransformer
from sklearn_splice._synthetic import make_concept_dictionary

WORDS = [
    "cat",
    "dog",
    "tree",
    "car",
    "sky",
    "sea",
    "grass",
    "house",
    "road",
    "snow",
    "boat",
    "bird",
]


@pytest.fixture
def tiny_encoder(tiny_clip):
    config, checkpoint = tiny_clip
    return OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu")


def test_planted_concepts_are_found():
    rng = np.random.RandomState(0)
    T = make_concept_dictionary(200, 32, family_fraction=0.0, random_state=0).astype(np.float64)
    concepts = [f"concept{i}" for i in range(200)]
    splice = SpliceTransformer(
        DictionaryEncoder(T, concepts),
        vocabulary=concepts,
        image_mean=np.zeros(32),
        l1_penalty=0.01,
        device="cpu",
    )
    splice.fit(np.eye(32)[:2])
    C = splice.components_.astype(np.float64)
    planted = [rng.choice(200, 3, replace=False) for _ in range(6)]
    X = np.array([C[p].T @ rng.uniform(0.5, 1.0, 3) for p in planted])
    W = splice.transform(X).toarray()
    names = splice.get_feature_names_out()
    for w, p in zip(W, planted):
        assert set(names[np.argsort(w)[-3:]]) == {concepts[i] for i in p}


def test_fit_transform_on_image_files(tiny_encoder, image_files):
    paths, _ = image_files
    splice = SpliceTransformer(tiny_encoder, vocabulary=WORDS, l1_penalty=0.05, device="cpu")
    W = splice.fit_transform(paths)
    assert sp.isspmatrix_csr(W) and W.shape == (12, len(WORDS))
    assert W.nnz > 0 and (W.data > 0).all()
    assert list(splice.get_feature_names_out()) == WORDS
    np.testing.assert_allclose(splice.transform(paths).toarray(), W.toarray(), atol=1e-10)
    # the fitted mean is the mean of unit-normalised image embeddings
    E = tiny_encoder.encode_image(paths).astype(np.float64)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    np.testing.assert_allclose(splice.mean_, E.mean(0), atol=1e-6)
    C = splice.components_
    np.testing.assert_allclose(np.linalg.norm(C, axis=1), 1.0, rtol=1e-5)
    assert not hasattr(splice, "n_features_in_")
    dense = clone(splice).set_params(sparse_output=False).fit_transform(paths)
    np.testing.assert_allclose(dense, W.toarray(), atol=1e-10)


def test_text_modality(tiny_encoder):
    texts = ["a photo of a cat", "a red car on the road", "snow on a house", "boats at sea"]
    splice = SpliceTransformer(
        tiny_encoder, vocabulary=WORDS, modality="text", l1_penalty=0.05, device="cpu"
    )
    W = splice.fit_transform(texts)
    E = tiny_encoder.encode_text(texts).astype(np.float64)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    np.testing.assert_allclose(splice.mean_, E.mean(0), atol=1e-6)
    assert W.shape == (4, len(WORDS))


def test_pandas_output_has_concept_columns(tiny_encoder, image_files):
    pytest.importorskip("pandas")
    paths, _ = image_files
    splice = SpliceTransformer(tiny_encoder, vocabulary=WORDS, l1_penalty=0.05, device="cpu")
    df = splice.set_output(transform="pandas").fit_transform(paths)
    assert list(df.columns) == WORDS and df.shape == (12, len(WORDS))
    assert (df.to_numpy() >= 0).all()


def test_grid_search_pipeline_on_tiny_clip(tiny_encoder, image_files):
    paths, labels = image_files
    pipe = Pipeline(
        [
            ("splice", SpliceTransformer(tiny_encoder, vocabulary=WORDS, device="cpu")),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    )
    search = GridSearchCV(pipe, {"splice__l1_penalty": [0.01, 0.05, 0.1]}, cv=3)
    search.fit(paths, labels)
    names = search.best_estimator_["splice"].get_feature_names_out()
    coef = search.best_estimator_["clf"].coef_
    assert coef.shape == (1, len(names)) and list(names) == WORDS
    assert search.best_params_["splice__l1_penalty"] in (0.01, 0.05, 0.1)
    assert search.predict(paths).shape == (12,)


def test_inverse_transform_recomposes(tiny_encoder, image_files):
    paths, _ = image_files
    splice = SpliceTransformer(tiny_encoder, vocabulary=WORDS, l1_penalty=0.05, device="cpu").fit(
        paths
    )
    W = splice.transform(paths)
    Z = splice.inverse_transform(W)
    C, mu = splice.components_.astype(np.float64), splice.mean_.astype(np.float64)
    for w, z in zip(W.toarray(), Z):
        v = w @ C
        v = v / np.linalg.norm(v) if np.linalg.norm(v) else v
        expected = (v + mu) / np.linalg.norm(v + mu)
        np.testing.assert_allclose(z, expected, atol=1e-6)
    np.testing.assert_allclose(
        splice.inverse_transform(np.zeros((1, len(WORDS))))[0], mu / np.linalg.norm(mu), atol=1e-6
    )


def test_exclude_concepts_by_name():
    enc = HashingEncoder(width=16)
    X = np.random.RandomState(0).standard_normal((20, 16))
    base = SpliceTransformer(
        enc, vocabulary=WORDS, l1_penalty=0.05, sparse_output=False, device="cpu"
    )
    W = base.fit_transform(X)
    used = [WORDS[j] for j in np.argsort(-(W > 0).sum(0))[:2]]
    W2 = clone(base).set_params(exclude_concepts=used).fit_transform(X)
    cols = [WORDS.index(u) for u in used]
    assert W[:, cols].any() and not W2[:, cols].any()
    others = np.setdiff1d(np.arange(len(WORDS)), cols)
    np.testing.assert_allclose(W2[:, others], W[:, others])
    with pytest.raises(ValueError, match=r"'kat' \(close: cat\)"):
        clone(base).set_params(exclude_concepts=["kat"]).fit(X)


def test_image_mean_options(tiny_encoder, image_files):
    paths, _ = image_files
    mean = np.full(32, 0.1)
    splice = SpliceTransformer(tiny_encoder, vocabulary=WORDS, image_mean=mean, device="cpu").fit(
        paths
    )
    np.testing.assert_allclose(splice.mean_, mean)
    with pytest.raises(ValueError, match=r"image_mean has shape \(31,\).*must have shape \(32,\)"):
        splice.set_params(image_mean=np.zeros(31)).fit(paths)
    # a checkpoint file that does not say which tag's weights it holds has no reference mean
    with pytest.raises(ValueError, match="needs to know which pretrained weights"):
        splice.set_params(image_mean="reference").fit(paths)
    with pytest.raises(ValueError, match="No reference mean image embedding is shipped"):
        # the tiny architecture has no shipped mean, whatever tag its file is said to hold
        named = clone(splice).set_params(
            encoder=clone(tiny_encoder).set_params(pretrained_tag="openai")
        )
        named.fit(paths)
    with pytest.raises(ValueError, match="needs to know which pretrained weights"):
        SpliceTransformer(HashingEncoder(), vocabulary=WORDS, image_mean="reference").fit(np.eye(8))


def test_reference_mean_of_the_default_backbone_is_used():
    class FakeViTB32(OpenCLIPEncoder):
        """The paper's backbone in name; encodes with hashing so no weights are needed."""

        def encode_text(self, texts):
            return HashingEncoder(width=512).encode_text(texts)

    splice = SpliceTransformer(FakeViTB32(), vocabulary=WORDS, image_mean="reference", device="cpu")
    splice.fit(np.random.RandomState(0).standard_normal((3, 512)))
    from sklearn_splice import load_reference_mean

    np.testing.assert_array_equal(
        splice.mean_, load_reference_mean("ViT-B-32", "laion2b_s34b_b79k")
    )


def test_pickle_reload_in_a_fresh_process(tiny_encoder, image_files, tmp_path):
    paths, _ = image_files
    splice = SpliceTransformer(tiny_encoder, vocabulary=WORDS, l1_penalty=0.05, device="auto").fit(
        paths
    )
    expected = splice.transform(paths).toarray()
    blob = tmp_path / "splice.pkl"
    blob.write_bytes(pickle.dumps(splice))
    assert blob.stat().st_size < 50_000  # numpy state only, no torch model
    out = tmp_path / "out.npy"
    code = (
        "import pickle, sys, numpy as np; "
        f"s = pickle.load(open({str(blob)!r}, 'rb')); "
        f"np.save({str(out)!r}, s.transform({paths!r}).toarray())"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    np.testing.assert_allclose(np.load(out), expected, atol=1e-10)


def test_inputs_are_not_modified(tiny_encoder, image_files):
    paths, _ = image_files
    before = list(paths)
    X = np.random.RandomState(0).standard_normal((5, 32))
    X_before = X.copy()
    splice = SpliceTransformer(tiny_encoder, vocabulary=WORDS, device="cpu")
    splice.fit(paths)
    splice.transform(X)
    assert paths == before and np.array_equal(X, X_before)


def test_bad_inputs_get_clear_errors(tiny_encoder, image_files, tmp_path):
    paths, _ = image_files
    splice = SpliceTransformer(tiny_encoder, vocabulary=WORDS, device="cpu")
    with pytest.raises(NotFittedError):
        splice.transform(paths)
    with pytest.raises(FileNotFoundError, match=r"Image 1 \(.*gone\.jpg\) does not exist"):
        splice.fit([paths[0], str(tmp_path / "gone.jpg")])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ValueError, match=r"Image 0 \(.*broken\.jpg\) could not be read"):
        splice.fit([str(broken)])
    splice.fit(paths)
    with pytest.raises(ValueError, match=r"shape \(n_samples, 32\) for this model, got \(2, 31\)"):
        splice.transform(np.zeros((2, 31)))
    with pytest.raises(ValueError, match="'l1_penalty' parameter .* must be a float in the range"):
        clone(splice).set_params(l1_penalty=-1).fit(paths)
    with pytest.raises(ValueError, match="'vocabulary' parameter"):
        clone(splice).set_params(vocabulary="wordnet").fit(paths)
    with pytest.raises(ValueError, match="empty"):
        clone(splice).set_params(vocabulary=[]).fit(paths)
    with pytest.warns(UserWarning, match="repeats"):
        with pytest.raises(ValueError, match="1 distinct concept"):
            clone(splice).set_params(vocabulary=["cat", "cat"]).fit(paths)


def test_embedding_width_mismatch_with_custom_encoder():
    class Inconsistent(HashingEncoder):
        def encode_image(self, X):
            return np.zeros((len(X), 5))

    with pytest.raises(ValueError, match=r"returned embeddings of width 5, but width 8 is needed"):
        SpliceTransformer(Inconsistent(), vocabulary=WORDS).fit(np.zeros((3, 8)))


# -- robustness ---------------------------------------------------------------------
def toy(**kw):
    params = {"vocabulary": WORDS, "l1_penalty": 0.05, "device": "cpu", **kw}
    return SpliceTransformer(HashingEncoder(width=16), **params)


def test_all_zero_embeddings_give_all_zero_rows():
    X = np.random.RandomState(0).standard_normal((6, 16))
    X[[1, 4]] = 0.0
    splice = toy(sparse_output=False).fit(X)
    W = splice.transform(X)
    assert not W[[1, 4]].any() and W[[0, 2, 3, 5]].any()
    # the zero rows have no direction, so they do not pull the fitted mean
    U = X[[0, 2, 3, 5]] / np.linalg.norm(X[[0, 2, 3, 5]], axis=1, keepdims=True)
    np.testing.assert_allclose(splice.mean_, U.mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="Every input given to fit has an all-zero embedding"):
        toy().fit(np.zeros((3, 16)))


def test_unreadable_images_can_become_zero_rows(tiny_clip, image_files, tmp_path):
    config, checkpoint = tiny_clip
    paths, labels = image_files
    enc = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu", on_error="zero")
    items = list(paths)
    items[3] = str(tmp_path / "deleted.jpg")
    splice = SpliceTransformer(
        enc, vocabulary=WORDS, l1_penalty=0.05, device="cpu", sparse_output=False
    )
    with pytest.warns(UserWarning, match="1 of 12 inputs could not be read"):
        W = splice.fit_transform(items)
    assert W.shape == (12, len(WORDS)) and not W[3].any()
    ref = splice.transform(paths)
    np.testing.assert_allclose(np.delete(W, 3, axis=0), np.delete(ref, 3, axis=0), atol=1e-6)


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[np.nan] * 16]), "NaN"),
        (np.array([[np.inf] * 16]), "infinity"),
        (np.zeros((0, 16)), "0 sample"),
        (np.zeros((3, 15)), "15 features"),
        (np.array([["a"] * 16]), "could not convert|dtype"),
        (np.zeros((2, 16), dtype=complex), "Complex data not supported"),
    ],
)
def test_bad_embedding_arrays(X, match):
    splice = toy().fit(np.random.RandomState(0).standard_normal((4, 16)))
    with pytest.raises(ValueError, match=match):
        splice.transform(X)


def test_chunked_transform_matches(monkeypatch):
    from sklearn_splice import _transformer

    X = np.random.RandomState(0).standard_normal((50, 16))
    W = toy().fit_transform(X)
    monkeypatch.setattr(_transformer, "_CHUNK", 7)
    W2 = toy().fit_transform(X)
    np.testing.assert_allclose(W2.toarray(), W.toarray(), atol=1e-9)


def test_cuda_pickle_runs_on_cpu(tmp_path):
    X = np.random.RandomState(0).standard_normal((5, 16))
    splice = toy(device="auto").fit(X)
    expected = splice.transform(X).toarray()
    fitted = {k: v for k, v in vars(splice).items() if k.endswith("_") and not k.startswith("_")}
    plain = (np.ndarray, int, str, HashingEncoder)
    assert all(isinstance(v, plain) for v in fitted.values()), fitted
    moved = pickle.loads(pickle.dumps(splice.set_params(device="cuda")))
    import torch

    if not torch.cuda.is_available():
        with pytest.warns(
            RuntimeWarning, match="not available on this machine; running on the CPU"
        ):
            out = moved.transform(X).toarray()
        np.testing.assert_allclose(out, expected, atol=1e-9)


INVALID_PARAMS = {
    "encoder": "not an encoder",
    "vocabulary": "wordnet",
    "vocabulary_size": 0,
    "l1_penalty": -0.1,
    "image_mean": "median",
    "modality": "audio",
    "exclude_concepts": 5,
    "sparse_output": "yes",
    "solver": "admm",
    "precompute": "sometimes",
    "tol": 0.0,
    "max_iter": 0,
    "batch_size": 0,
    "cache_dir": 3.5,
    "embedding_cache": "yes",
    "n_jobs": "many",
    "verbose": "loud",
}


def test_every_constraint_is_tested():
    assert set(INVALID_PARAMS) | {"device"} == set(SpliceTransformer._parameter_constraints)


@pytest.mark.parametrize("name, value", sorted(INVALID_PARAMS.items()))
def test_invalid_parameters_are_named(name, value):
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of SpliceTransformer"):
        toy().set_params(**{name: value}).fit(np.eye(16)[:3])


def test_invalid_device_is_named():
    with pytest.raises(ValueError, match="device='gpu' is not a valid torch device"):
        toy(device="gpu").fit(np.eye(16)[:3])


ENCODER_INVALID = {
    "model_name": 3,
    "pretrained": 3,
    "precision": "fp8",
    "batch_size": 0,
    "num_workers": -1,
    "on_error": "skip",
    "cache_dir": 1.5,
    "verbose": "loud",
    "pretrained_tag": 3,
}


def test_every_encoder_constraint_is_tested():
    assert set(ENCODER_INVALID) | {"device"} == set(OpenCLIPEncoder._parameter_constraints)


@pytest.mark.parametrize("name, value", sorted(ENCODER_INVALID.items()))
def test_invalid_encoder_parameters_are_named(tiny_clip, name, value):
    from sklearn.utils._param_validation import InvalidParameterError

    config, checkpoint = tiny_clip
    enc = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu").set_params(**{name: value})
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of OpenCLIPEncoder"):
        enc._load()


def test_the_prepared_dictionary_is_reused_across_calls_and_renewed_by_a_refit(monkeypatch):
    from sklearn_splice import _transformer

    calls = []
    real = _transformer._prepare_dictionary

    def counting(components, device):
        calls.append(id(components))
        return real(components, device)

    monkeypatch.setattr(_transformer, "_prepare_dictionary", counting)
    D = make_concept_dictionary(len(WORDS), 16, random_state=0)
    enc = DictionaryEncoder(D, WORDS)
    X = np.abs(np.random.default_rng(0).normal(size=(6, 16)))
    t = SpliceTransformer(encoder=enc, vocabulary=WORDS, cache_dir=False).fit(X)
    first = t.transform(X).toarray()
    for start in range(0, 6, 2):  # batch by batch, as a streaming caller does
        # the same certified solutions (to the solver's tolerance) from the same dictionary
        np.testing.assert_allclose(t.transform(X[start : start + 2]).toarray(),
                                   first[start : start + 2], atol=1e-4)
    assert len(calls) == 1
    # a new dictionary (another vocabulary) is prepared afresh, never served stale
    t.set_params(vocabulary=WORDS[::-1]).fit(X)
    again = t.transform(X).toarray()
    assert len(calls) == 2
    fresh = clone(t).fit(X).transform(X).toarray()
    np.testing.assert_array_equal(again, fresh)
    assert not np.array_equal(again, first)
