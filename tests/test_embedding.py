import os

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from sklearn_splice import OpenCLIPEncoder, SpliceTransformer
from sklearn_splice._cache import clear_memory_cache
from sklearn_splice._embedding import encode_items
from sklearn_splice._errors import InputError, UnreadableInputsWarning

WORDS = ["cat", "dog", "tree", "car", "sky", "sea", "grass", "house", "road", "snow"]


@pytest.fixture
def tiny_encoder(tiny_clip):
    config, checkpoint = tiny_clip
    return OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu")


@pytest.fixture
def tower_calls(tiny_encoder):
    """Counts the images that reach the shared model's image tower."""
    model = tiny_encoder._load()[0]
    seen = []
    handle = model.visual.register_forward_hook(lambda mod, inp, out: seen.append(out.shape[0]))
    yield seen
    handle.remove()


def search(encoder, n_jobs=None, cache_dir=None):
    pipe = Pipeline(
        [
            (
                "splice",
                SpliceTransformer(encoder, vocabulary=WORDS, device="cpu", cache_dir=cache_dir),
            ),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    )
    return GridSearchCV(pipe, {"splice__l1_penalty": [0.01, 0.05, 0.1]}, cv=3, n_jobs=n_jobs)


def test_grid_search_embeds_each_image_once(tiny_encoder, tower_calls, image_files):
    paths, labels = image_files
    search(tiny_encoder).fit(paths, labels)
    # 3 penalties x 3 folds (fit + score) + the refit: without the cache, 9 * 12 + 12 images
    assert sum(tower_calls) == len(paths)


def test_without_the_cache_every_clone_embeds_again(tiny_encoder, tower_calls, image_files):
    paths, labels = image_files
    gs = search(tiny_encoder)
    gs.set_params(estimator__splice__embedding_cache=False).fit(paths, labels)
    assert sum(tower_calls) == 9 * len(paths) + len(paths)


def test_worker_processes_share_the_disk_cache(tiny_encoder, image_files, tmp_path):
    paths, labels = image_files
    folder = tmp_path / "cache"
    parallel = search(tiny_encoder, n_jobs=2, cache_dir=str(folder)).fit(paths, labels)
    files = list((folder / "embeddings").rglob("*.npz"))
    assert len(files) == len(paths)  # one per image, whichever worker wrote it
    clear_memory_cache()
    serial = search(tiny_encoder, cache_dir=str(folder)).fit(paths, labels)
    np.testing.assert_allclose(
        parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"]
    )


def test_changed_file_is_embedded_again(tiny_encoder, tower_calls, tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    splice = SpliceTransformer(
        tiny_encoder, vocabulary=WORDS, image_mean=np.zeros(32), device="cpu"
    )
    splice.fit([str(path)])
    first = splice.transform([str(path)])
    assert sum(tower_calls) == 1
    Image.fromarray(np.full((40, 40, 3), 255, np.uint8)).save(path)
    os.utime(path, ns=(10**9, 10**9))
    second = splice.transform([str(path)])
    assert sum(tower_calls) == 2
    assert (first != second).nnz > 0


def test_cached_rows_keep_their_order_and_errors_their_index(tmp_path):
    calls = []

    def encode(items):
        calls.append(list(items))
        for i, item in enumerate(items):
            if item == "bad":
                raise InputError(i, "is not allowed", kind="Text")
        return np.array([[len(t), 1.0] for t in items])

    def cached(items, identity="toy"):
        return encode_items(encode, items, "text", identity=identity, folder=tmp_path)

    out = cached(["a", "bbb"])
    out2 = cached(["cc", "bbb", "a"])
    np.testing.assert_array_equal(out2, [[2, 1], [3, 1], [1, 1]])
    np.testing.assert_array_equal(out, [[1, 1], [3, 1]])
    assert calls[1] == ["cc"]
    with pytest.raises(InputError, match=r"Text 2 is not allowed") as info:
        cached(["a", "cc", "bad"])
    assert info.value.index == 2 and calls[-1] == ["bad"]  # the encoder saw it at 0
    clear_memory_cache()
    cached(["a", "bbb"])
    assert len(calls) == 3  # served from disk after the memory was cleared
    cached(["a"], identity="other-backbone")
    assert calls[-1] == ["a"]


def test_unreadable_inputs_keep_their_index_when_others_are_cached(
    tiny_encoder, image_files, tmp_path
):
    paths, _ = image_files
    tiny_encoder.set_params(on_error="zero")
    splice = SpliceTransformer(
        tiny_encoder, vocabulary=WORDS, image_mean=np.zeros(32), device="cpu"
    )
    splice.fit(paths[:3])
    splice.transform(paths[:3])  # now cached
    items = paths[:3] + [str(tmp_path / "gone.jpg")]
    with pytest.warns(
        UnreadableInputsWarning, match=r"1 of 4 inputs.*Image 3 \(.*gone\.jpg\)"
    ) as rec:
        W = splice.transform(items)
    (warning,) = [w.message for w in rec if isinstance(w.message, UnreadableInputsWarning)]
    assert warning.indices == [3] and warning.n_inputs == 4
    assert W[3].nnz == 0
    tiny_encoder.set_params(on_error="raise")
    with pytest.raises(FileNotFoundError, match=r"Image 3 \(.*gone\.jpg\)"):
        splice.transform(items)
