"""Bad inputs, broken encoders and failed fits, tried the way a careful user would.

Every input form gets a bad member at the first, a middle and the last position, through
the embedding cache cold and warm; the answer is either an error that names the input by
its position (as data: ``.index``), or, with ``on_error="zero"``, an all-zero row at that
position with every other row unchanged.
"""

import io
import os
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from helpers import CountingEncoder, HashingEncoder
from sklearn_splice import OpenCLIPEncoder, SpliceTransformer, ZeroShotClassifier
from sklearn_splice._cache import MEMORY
from sklearn_splice._errors import InputError, UnreadableInputsWarning

WORDS = ["cat", "dog", "tree", "car", "sky", "sea", "grass", "house", "road", "snow"]
N = 12
POSITIONS = [0, 5, N - 1]


@pytest.fixture
def tiny_encoder(tiny_clip):
    config, checkpoint = tiny_clip
    return OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu", num_workers=2)


def _splice(encoder, **kw):
    params = dict(vocabulary=WORDS, l1_penalty=0.05, image_mean=np.zeros(32), device="cpu")
    return SpliceTransformer(encoder, **{**params, **kw})


def _truncated_png(folder):
    buf = io.BytesIO()
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    path = folder / "truncated.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 3 // 4])
    return path


def _bad_member(form, kind, folder):
    """A bad input of the given form and its path (None when it is not a file)."""
    if form == "paths":
        if kind == "missing":
            return str(folder / "Image 3 broken.png"), str(folder / "Image 3 broken.png")
        if kind == "fifo":
            path = folder / "pipe.png"
            os.mkfifo(path)
            return str(path), str(path)
        if kind == "truncated":
            path = _truncated_png(folder)
            return str(path), str(path)
        return str(folder), str(folder)  # a directory
    if form == "pil":
        if kind == "closed":
            img = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
            img.close()
            return img, None
        return Image.open(_truncated_png(folder)), None  # lazily opened, truncated
    return np.zeros((0, 0, 3), np.uint8), None  # an empty image array


def _good_members(form, paths):
    if form == "paths":
        return list(paths)
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    if form == "pil":
        return [Image.fromarray(a) for a in arrays]
    return arrays


BAD = [
    ("paths", "missing"),
    ("paths", "fifo"),
    ("paths", "truncated"),
    ("paths", "directory"),
    ("pil", "closed"),
    ("pil", "truncated"),
    ("arrays", "empty"),
]


@pytest.mark.parametrize("form,kind", BAD)
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_bad_member_is_named_by_its_position(
    tiny_encoder, image_files, tmp_path, form, kind, position, warm
):
    paths, _ = image_files
    good = _good_members(form, paths[: N - 1])
    splice = _splice(tiny_encoder).fit(good[:2])
    if warm:
        splice.transform(good)  # every good input is now cached
    bad, bad_path = _bad_member(form, kind, tmp_path)
    batch = good[:position] + [bad] + good[position:]
    with pytest.raises(InputError) as info:
        splice.transform(batch)
    assert info.value.index == position
    assert info.value.path == bad_path
    if bad_path is not None:
        assert f"Image {position} ({bad_path})" in str(info.value)


@pytest.mark.parametrize("form,kind", BAD)
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_on_error_zero_keeps_every_row_in_place(
    tiny_encoder, image_files, tmp_path, form, kind, position, warm
):
    paths, _ = image_files
    good = _good_members(form, paths[: N - 1])
    splice = _splice(tiny_encoder.set_params(on_error="zero")).fit(good[:2])
    expected = splice.transform(good).toarray()
    if not warm:
        from sklearn_splice._cache import clear_memory_cache

        clear_memory_cache()
        splice.set_params(cache_dir=False)
    bad, _ = _bad_member(form, kind, tmp_path)
    batch = good[:position] + [bad] + good[position:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        W = splice.transform(batch).toarray()
    unreadable = [w.message for w in caught if isinstance(w.message, UnreadableInputsWarning)]
    assert len(unreadable) == 1
    assert unreadable[0].indices == [position] and unreadable[0].n_inputs == N
    assert f"1 of {N} inputs" in str(unreadable[0])
    assert not W[position].any()
    np.testing.assert_allclose(np.delete(W, position, axis=0), expected, atol=1e-10)


def test_series_and_image_batch_arrays_take_the_same_path(tiny_encoder, image_files):
    pd = pytest.importorskip("pandas")
    paths, _ = image_files
    splice = _splice(tiny_encoder).fit(paths[:2])
    expected = splice.transform(paths).toarray()
    np.testing.assert_allclose(splice.transform(pd.Series(paths)).toarray(), expected)
    np.testing.assert_allclose(splice.transform(pd.DataFrame({"p": paths})).toarray(), expected)
    np.testing.assert_allclose(splice.transform(np.array(paths, dtype=object)).toarray(), expected)
    arrays = np.stack([np.asarray(Image.open(p).convert("RGB").resize((40, 40))) for p in paths])
    from_batch = splice.transform(arrays).toarray()
    from_list = splice.transform(list(arrays)).toarray()
    np.testing.assert_allclose(from_batch, from_list)


def test_a_two_column_frame_names_the_column_to_pass(image_files):
    pd = pytest.importorskip("pandas")
    paths, labels = image_files
    frame = pd.DataFrame({"path": paths, "label": labels})
    splice = SpliceTransformer(HashingEncoder(width=8), vocabulary=WORDS, device="cpu")
    with pytest.raises(ValueError, match=r"columns \['path', 'label'\].*X\['path'\]"):
        splice.fit(frame)


@pytest.mark.parametrize("position", POSITIONS)
def test_a_row_of_numbers_among_paths_is_named(image_files, position):
    paths, _ = image_files
    batch = list(paths[: N - 1])
    batch.insert(position, [0.1, 0.2])
    splice = SpliceTransformer(HashingEncoder(width=8), vocabulary=WORDS, device="cpu")
    with pytest.raises(InputError) as info:
        splice.fit(batch)
    assert info.value.index == position


# -- what encoders return ---------------------------------------------------------------
class OffByOne(HashingEncoder):
    """Returns one row too few or too many."""

    def __init__(self, width=8, extra=-1):
        super().__init__(width=width)
        self.extra = extra

    def encode_image(self, X):
        E = super().encode_image(X)
        return E[:-1] if self.extra < 0 else np.vstack([E, E[:1]])


@pytest.mark.parametrize("extra", [-1, 1])
def test_an_encoder_with_the_wrong_row_count_is_an_error(extra):
    X = np.random.RandomState(0).standard_normal((6, 8))
    splice = SpliceTransformer(OffByOne(extra=extra), vocabulary=WORDS, device="cpu")
    with pytest.raises(ValueError, match=rf"returned {6 + extra} rows for 6 inputs"):
        splice.fit(X)
    assert not hasattr(splice, "components_")
    good = SpliceTransformer(HashingEncoder(width=8), vocabulary=WORDS, device="cpu").fit(X)
    good.encoder_ = OffByOne(extra=extra)  # an encoder that breaks after fit
    with pytest.raises(ValueError, match=rf"returned {6 + extra} rows for 6 inputs"):
        good.transform(X)


class ItemEncoder(HashingEncoder):
    """Embeds any strings (URLs, keys) by hashing them; can drop or add a row."""

    def __init__(self, width=8, extra=0):
        super().__init__(width=width)
        self.extra = extra
        self.seen = []

    def encode_image(self, X):
        self.seen.append(list(X))
        E = self.encode_text([str(x) for x in X])
        if self.extra < 0:
            return E[:-1]
        return np.vstack([E] + [E[:1]] * self.extra)


@pytest.mark.parametrize("extra", [-1, 1])
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_wrong_row_counts_are_caught_through_the_cache(extra, warm):
    items = [f"bucket/{i}.jpg" for i in range(6)]  # identifiers of a custom encoder
    splice = SpliceTransformer(ItemEncoder(), vocabulary=WORDS, device="cpu").fit(items[:3])
    if warm:
        splice.transform(items[:3])
    splice.encoder_ = ItemEncoder(extra=extra)  # same identity: the cache is shared
    with pytest.raises(ValueError, match=r"returned \d+ rows for \d+ inputs"):
        splice.transform(items)


def test_a_custom_encoder_gets_its_strings_untouched():
    items = ["https://example.org/a.jpg", "dataset:key/7", "not/a/local/file.png"]
    enc = ItemEncoder()
    SpliceTransformer(enc, vocabulary=WORDS, device="cpu").fit(items)
    assert enc.seen == [items]


def test_zero_shot_checks_what_the_encoder_returns():
    class Short(HashingEncoder):
        def encode_image(self, X):
            return np.zeros((len(X) - 1, self.width))

    clf = ZeroShotClassifier(Short(width=8)).fit(None, ["cat", "dog"])
    with pytest.raises(ValueError, match="returned 2 rows for 3 inputs"):
        clf.predict(["a.jpg", "b.jpg", "c.jpg"])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("position", [0, 3, 5])
def test_non_finite_encoder_output_names_the_input(bad, position):
    class Poisoned(HashingEncoder):
        def encode_image(self, X):
            E = super().encode_image(X)
            E[position, 2] = bad
            return E

    X = np.random.RandomState(0).standard_normal((6, 8))
    with pytest.raises(InputError, match="NaN or infinite") as info:
        SpliceTransformer(Poisoned(), vocabulary=WORDS, device="cpu").fit(X)
    assert info.value.index == position


# -- extreme magnitudes -------------------------------------------------------------------
class PassThrough(HashingEncoder):
    """Returns float64 inputs as they are (no float32 rounding)."""

    def encode_image(self, X):
        return np.asarray(X, dtype=np.float64)


@pytest.mark.parametrize("scale", [1e-200, 1e-40, 1e40, 1e200])
@pytest.mark.parametrize("which", ["custom", "open_clip"])
def test_embeddings_of_any_magnitude_decompose_like_unit_ones(tiny_encoder, scale, which):
    width = 8 if which == "custom" else 32
    encoder = PassThrough(width=8) if which == "custom" else tiny_encoder
    X = np.random.RandomState(0).standard_normal((5, width))
    splice = SpliceTransformer(
        encoder, vocabulary=WORDS, l1_penalty=0.05, device="cpu", sparse_output=False
    )
    reference = clone(splice).fit(X).transform(X)
    scaled = clone(splice).fit(X * scale)
    np.testing.assert_allclose(scaled.mean_, clone(splice).fit(X).mean_, rtol=1e-6)
    np.testing.assert_allclose(scaled.transform(X * scale), reference, atol=1e-9)
    assert (reference > 0).any()


# -- parameters after fit ------------------------------------------------------------------
def test_exclude_concepts_set_after_fit_takes_effect():
    X = np.random.RandomState(0).standard_normal((20, 8))
    splice = SpliceTransformer(
        HashingEncoder(width=8),
        vocabulary=WORDS,
        l1_penalty=0.01,
        device="cpu",
        sparse_output=False,
    ).fit(X)
    W = splice.transform(X)
    used = [WORDS[j] for j in np.flatnonzero(W.any(axis=0))[:2]]
    splice.set_params(exclude_concepts=used)
    W2 = splice.transform(X)
    cols = [WORDS.index(c) for c in used]
    assert not W2[:, cols].any() and W[:, cols].any()
    np.testing.assert_array_equal(splice.excluded_indices_, sorted(cols))
    np.testing.assert_allclose(np.delete(W2, cols, 1), np.delete(W, cols, 1))
    splice.set_params(exclude_concepts=["no such concept"])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        splice.transform(X)


def test_get_feature_names_out_checks_input_features():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(np.random.RandomState(0).standard_normal((6, 8)), columns=list("abcdefgh"))
    splice = SpliceTransformer(HashingEncoder(width=8), vocabulary=WORDS, device="cpu").fit(X)
    assert list(splice.get_feature_names_out(list("abcdefgh"))) == WORDS
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        splice.get_feature_names_out(list("abcdefgX"))
    unnamed = clone(splice).fit(X.to_numpy())
    with pytest.raises(ValueError, match="input_features should have length equal to"):
        unnamed.get_feature_names_out(["a", "b"])


# -- all or nothing ---------------------------------------------------------------------------
def test_a_failed_first_fit_leaves_the_transformer_unfitted():
    splice = SpliceTransformer(OffByOne(), vocabulary=WORDS, device="cpu")
    X = np.random.RandomState(0).standard_normal((6, 8))
    with pytest.raises(ValueError):
        splice.fit(X)
    assert [k for k in vars(splice) if k.endswith("_")] == []
    with pytest.raises(NotFittedError):
        splice.transform(X)
    splice.set_params(encoder=HashingEncoder(width=8)).fit(X)  # and a good fit then works
    assert splice.transform(X).shape == (6, len(WORDS))


def test_a_failed_refit_keeps_the_previous_state():
    X = np.random.RandomState(0).standard_normal((6, 8))
    splice = SpliceTransformer(HashingEncoder(width=8), vocabulary=WORDS, device="cpu").fit(X)
    before = {k: v for k, v in vars(splice).items() if k.endswith("_")}
    W = splice.transform(X).toarray()
    with pytest.raises(ValueError):
        splice.set_params(vocabulary=["x", "y", "z"], encoder=OffByOne()).fit(X)
    assert {k: v for k, v in vars(splice).items() if k.endswith("_")}.keys() == before.keys()
    splice.set_params(encoder=HashingEncoder(width=8), vocabulary=WORDS)
    np.testing.assert_allclose(splice.transform(X).toarray(), W)


def test_a_rejected_first_partial_fit_batch_does_not_break_the_next():
    rng = np.random.RandomState(0)
    good = rng.standard_normal((6, 8))
    splice = SpliceTransformer(HashingEncoder(width=8), vocabulary=WORDS, device="cpu")
    with pytest.raises(ValueError):
        splice.partial_fit(np.full((3, 8), np.nan))
    with pytest.raises(NotFittedError):
        splice.transform(good)
    splice.partial_fit(good[:3]).partial_fit(good[3:])
    full = clone(splice).fit(good)
    np.testing.assert_allclose(splice.mean_, full.mean_, rtol=1e-6)
    assert splice.n_samples_seen_ == 6
    with pytest.raises(ValueError):
        splice.partial_fit(np.zeros((2, 5)))  # a later bad batch changes nothing
    np.testing.assert_allclose(splice.mean_, full.mean_, rtol=1e-6)
    assert splice.n_samples_seen_ == 6


def test_zero_shot_before_fit_is_not_fitted():
    clf = ZeroShotClassifier(HashingEncoder(width=8))
    for method in (clf.predict, clf.predict_proba, clf.decision_function):
        with pytest.raises(NotFittedError):
            method(np.zeros((2, 8)))


# -- order of work: cheap checks first -----------------------------------------------------------
def test_reference_mean_problems_come_before_any_encoding():
    enc = CountingEncoder(HashingEncoder(width=8))
    splice = SpliceTransformer(enc, vocabulary=WORDS, image_mean="reference", device="cpu")
    with pytest.raises(ValueError, match="needs to know which pretrained weights"):
        splice.fit(["a.jpg", "b.jpg"])
    assert enc.n_texts == 0 and enc.n_images == 0


def test_a_missing_image_is_named_before_the_vocabulary_is_encoded(
    tiny_encoder, image_files, tmp_path
):
    splice = _splice(tiny_encoder, image_mean="fit")
    batch = [image_files[0][0], str(tmp_path / "nope.jpg")]
    with pytest.raises(FileNotFoundError, match=r"Image 1 \(.*nope\.jpg\) does not exist") as info:
        splice.fit(batch)
    assert isinstance(info.value, InputError)
    assert not [k for k in MEMORY._items if k[0] == "concepts"]


def test_the_default_encoder_runs_on_the_transformers_device(monkeypatch):
    monkeypatch.setattr(OpenCLIPEncoder, "encode_text", HashingEncoder(width=512).encode_text)
    splice = SpliceTransformer(device="cpu", vocabulary=WORDS, image_mean=np.zeros(512))
    splice.fit(np.random.RandomState(0).standard_normal((2, 512)))
    assert splice.encoder_.device == "cpu"


# -- caches ---------------------------------------------------------------------------------------
def test_non_utf8_file_names_and_lone_surrogates_are_cached(tiny_encoder, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    name = b"caf\xe9.png"  # latin-1, not UTF-8
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(os.path.join(os.fsencode(raw), name))
    (listed,) = os.listdir(raw)  # comes back with a lone surrogate
    path = str(raw / listed)
    splice = _splice(tiny_encoder).fit([path, path])
    assert splice.transform([path]).shape == (1, len(WORDS))
    texts = ["caf\udce9", "plain"]
    text_splice = SpliceTransformer(
        tiny_encoder, vocabulary=WORDS, modality="text", device="cpu", image_mean=np.zeros(32)
    ).fit(texts)
    assert text_splice.transform(texts).shape == (2, len(WORDS))


class SharedCount(HashingEncoder):
    """Counts texts across clones (a grid search clones the encoder)."""

    texts = []

    def encode_text(self, texts):
        SharedCount.texts.extend(texts)
        return super().encode_text(texts)


def test_without_a_cache_folder_a_grid_search_encodes_the_vocabulary_once():
    SharedCount.texts = []
    enc = SharedCount(width=8)
    X = np.random.RandomState(0).standard_normal((30, 8))
    y = (X[:, 0] > 0).astype(int)
    pipe = Pipeline(
        [
            ("splice", SpliceTransformer(enc, vocabulary=WORDS, device="cpu", cache_dir=False)),
            ("clf", LogisticRegression()),
        ]
    )
    GridSearchCV(pipe, {"splice__l1_penalty": [0.01, 0.05, 0.1]}, cv=3).fit(X, y)
    assert sorted(SharedCount.texts) == sorted(WORDS)  # once, for 9 fits and the refit


def test_an_encoder_without_identity_warns_once_that_it_re_embeds():
    class Plain:
        def encode_text(self, texts):
            return HashingEncoder(width=8).encode_text(texts)

        def encode_image(self, X):
            return np.asarray(X, dtype=float)

    with pytest.warns(UserWarning, match="cannot be cached") as rec:
        for _ in range(3):
            SpliceTransformer(Plain(), vocabulary=WORDS, device="cpu").fit(np.eye(8))
    assert sum("cannot be cached" in str(w.message) for w in rec) == 1


def test_sparse_input_is_refused_clearly():
    splice = SpliceTransformer(HashingEncoder(width=8), vocabulary=WORDS, device="cpu")
    with pytest.raises(TypeError, match="(?i)sparse data was passed"):
        splice.fit(sp.random(4, 8, density=0.5, format="csr"))


# -- cache keys, identities, centring, modality, dtypes, labels ---------------------------
def test_palette_images_with_other_colours_get_other_cache_keys():
    from sklearn_splice._cache import input_key

    idx = (np.arange(64).reshape(8, 8) % 2).astype(np.uint8)
    red = Image.fromarray(idx, "P")
    red.putpalette([255, 0, 0, 250, 0, 0] + [0] * 762)
    blue = Image.fromarray(idx, "P")
    blue.putpalette([0, 0, 255, 0, 0, 250] + [0] * 762)
    assert input_key(red, "image") != input_key(blue, "image")
    assert input_key(red, "image") == input_key(red.copy(), "image")


def test_subclasses_of_the_encoder_do_not_share_its_cache(tiny_clip):
    config, checkpoint = tiny_clip

    class Mirrored(OpenCLIPEncoder):
        pass

    plain = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu")
    mirrored = Mirrored(config, pretrained=checkpoint, device="cpu")
    assert plain.cache_identity() != mirrored.cache_identity()


def test_encoders_holding_fitted_estimators_are_not_cached():
    from sklearn.decomposition import PCA

    from sklearn_splice._cache import encoder_identity

    class Projecting(HashingEncoder):
        def __init__(self, width=8, proj=None):
            super().__init__(width=width)
            self.proj = proj

    rng = np.random.RandomState(0)
    assert encoder_identity(Projecting(proj=PCA(4))) is not None  # unfitted: parameters say all
    a = Projecting(proj=PCA(4).fit(rng.standard_normal((20, 8))))
    with pytest.warns(UserWarning, match="cannot be cached"):
        assert encoder_identity(a) is None


def test_an_input_equal_to_the_fitted_mean_gets_all_zero_weights():
    e = np.random.RandomState(1).standard_normal((1, 8))
    splice = SpliceTransformer(
        PassThrough(width=8), vocabulary=WORDS, l1_penalty=0.05, device="cpu", sparse_output=False
    )
    with pytest.warns(UserWarning, match="same direction"):
        W = splice.fit_transform(np.vstack([e, 2 * e, e]))
    assert not W.any()
    other = np.random.RandomState(2).standard_normal((1, 8))
    assert splice.transform(other).any()  # a different input still decomposes


def test_modality_is_the_fitted_one_until_refit():
    class Both(HashingEncoder):
        def encode_image(self, X):
            return np.vstack([self.encode_text(["image:" + str(x)]) for x in X])

    items = ["a.png", "b.png", "c.png"]
    splice = SpliceTransformer(Both(width=8), vocabulary=WORDS, device="cpu", sparse_output=False)
    W = splice.fit_transform(items)
    assert splice.modality_ == "image"
    splice.set_params(modality="text")
    np.testing.assert_array_equal(splice.transform(items), W)  # still the fitted modality
    splice.fit(items)
    assert splice.modality_ == "text"
    assert not np.array_equal(splice.transform(items), W)


def test_encoders_may_return_bfloat16_tensors():
    torch = pytest.importorskip("torch")

    class Half(HashingEncoder):
        def encode_image(self, X):
            return torch.as_tensor(super().encode_image(X), dtype=torch.bfloat16)

    X = np.random.RandomState(0).standard_normal((4, 8))
    W = SpliceTransformer(Half(width=8), vocabulary=WORDS, device="cpu").fit_transform(X)
    assert W.shape == (4, len(WORDS))
    tensor = torch.as_tensor(X, dtype=torch.bfloat16).requires_grad_(True)
    assert SpliceTransformer(Half(width=8), vocabulary=WORDS, device="cpu").fit(tensor)


@pytest.mark.parametrize(
    "kw,y,error,match",
    [
        (dict(templates="a {:d}"), ["a", "b"], ValueError, "exactly one"),
        (dict(templates="a {:{}}"), ["a", "b"], ValueError, "exactly one"),
        (dict(templates="a {!r}"), ["a", "b"], ValueError, "exactly one"),
        ({}, ["cat", None], TypeError, "cannot be sorted"),
        ({}, [], ValueError, "y is empty"),
        ({}, [["a", "b"], ["c", "d"]], ValueError, "1d array"),
        ({}, ["a", " "], ValueError, "blank"),
    ],
)
def test_zero_shot_refuses_odd_labels_and_templates(kw, y, error, match):
    with pytest.raises(error, match=match):
        ZeroShotClassifier(HashingEncoder(width=4), **kw).fit(None, y)
