"""partial_fit, n_jobs, and the dask engines scikit-learn users already have."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from helpers import HashingEncoder
from sklearn_splice import OpenCLIPEncoder, SpliceTransformer

WORDS = [f"word{i}" for i in range(30)]


def toy(**kw):
    params = {"vocabulary": WORDS, "l1_penalty": 0.05, "device": "cpu", **kw}
    return SpliceTransformer(HashingEncoder(width=16), **params)


def test_partial_fit_equals_fit():
    X = np.random.RandomState(0).standard_normal((90, 16))
    X[5] = 0.0  # an all-zero row is skipped by both
    full = toy().fit(X)
    inc = toy()
    for part in np.array_split(X, 4):
        inc.partial_fit(part)
    np.testing.assert_allclose(inc.mean_, full.mean_, atol=1e-6)
    assert inc.n_samples_seen_ == full.n_samples_seen_ == 89
    np.testing.assert_allclose(inc.transform(X).toarray(), full.transform(X).toarray(), atol=1e-6)


def test_partial_fit_with_a_given_mean_and_width_checks():
    inc = toy(image_mean=np.zeros(16)).partial_fit(np.ones((2, 16)))
    assert inc.n_samples_seen_ == 0 and not inc.mean_.any()
    inc = toy().partial_fit(np.random.RandomState(0).standard_normal((2, 16)))
    with pytest.raises(ValueError, match="16 features"):
        inc.partial_fit(np.ones((2, 15)))


def test_n_jobs_gives_the_same_result():
    X = np.random.RandomState(1).standard_normal((700, 16))
    ref = toy(batch_size=64).fit_transform(X).toarray()
    out = toy(batch_size=64, n_jobs=2).fit_transform(X).toarray()
    np.testing.assert_allclose(out, ref, atol=1e-9)


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_grid_search_on_a_dask_cluster(dask_client, tiny_clip, image_files, tmp_path):
    from joblib import parallel_config

    config, checkpoint = tiny_clip
    paths, labels = image_files
    enc = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu")
    pipe = Pipeline(
        [
            (
                "splice",
                SpliceTransformer(enc, vocabulary=WORDS, device="cpu", cache_dir=str(tmp_path)),
            ),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    )
    grid = {"splice__l1_penalty": [0.01, 0.1]}
    with parallel_config(backend="dask"):
        on_dask = GridSearchCV(pipe, grid, cv=3, n_jobs=-1).fit(paths, labels)
    local = GridSearchCV(pipe, grid, cv=3).fit(paths, labels)
    np.testing.assert_allclose(
        on_dask.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
    # the workers filled the shared on-disk embedding cache: one file per image
    assert len(list((tmp_path / "embeddings").rglob("*.npz"))) == len(paths)


def test_block_by_block_transform_with_dask_array(dask_client):
    da = pytest.importorskip("dask.array")
    X = np.random.RandomState(2).standard_normal((400, 16))
    splice = toy(sparse_output=False).fit(X)
    expected = splice.transform(X)
    blocks = da.from_array(X, chunks=(100, 16))
    lazy = blocks.map_blocks(splice.transform, dtype=np.float64, chunks=(100, len(WORDS)))
    out = lazy.compute()
    np.testing.assert_allclose(out, expected, atol=1e-9)


def test_n_jobs_under_the_dask_backend(dask_client):
    from joblib import parallel_config

    X = np.random.RandomState(3).standard_normal((600, 16))
    splice = toy(batch_size=64, n_jobs=3).fit(X)
    expected = toy(batch_size=64).fit(X).transform(X).toarray()
    with parallel_config(backend="dask"):
        out = splice.transform(X).toarray()
    np.testing.assert_allclose(out, expected, atol=1e-9)


def test_partial_fit_over_dask_blocks(dask_client):
    da = pytest.importorskip("dask.array")
    X = np.random.RandomState(4).standard_normal((500, 16))
    lazy = da.from_array(X, chunks=(120, 16))
    inc = toy()
    for block in lazy.to_delayed().ravel():  # one block in memory at a time
        inc.partial_fit(dask_client.compute(block).result())
    full = toy().fit(X)
    np.testing.assert_allclose(inc.mean_, full.mean_, atol=1e-6)
    assert inc.n_samples_seen_ == 500
