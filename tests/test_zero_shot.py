import numpy as np
import pytest
from sklearn.base import clone

from helpers import HashingEncoder, text_vector
from sklearn_splice import OpenCLIPEncoder, SpliceTransformer, ZeroShotClassifier


def test_predicts_the_class_whose_prompt_is_closest():
    enc = HashingEncoder(width=32)
    classes = ["cat", "dog", "car"]
    prompts = np.array([text_vector(f"A photo of a {c}.", 32) for c in classes])
    rng = np.random.RandomState(0)
    y = rng.randint(0, 3, 30)
    X = prompts[y] + 0.3 * rng.standard_normal((30, 32))
    clf = ZeroShotClassifier(enc).fit(None, np.array(classes)[y])
    assert list(clf.classes_) == sorted(classes)
    pred = clf.predict(X)
    assert (pred == np.array(classes)[y]).mean() > 0.9
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert clf.score(X, np.array(classes)[y]) > 0.9


def test_class_names_and_templates():
    enc = HashingEncoder(width=16)
    clf = ZeroShotClassifier(enc, class_names=["kitty", "puppy"], templates=["{}", "a {}"]).fit(
        None, [0, 1]
    )
    expected = np.array([text_vector(t, 16) for t in ["kitty", "a kitty"]])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    mean = expected.mean(0) / np.linalg.norm(expected.mean(0))
    np.testing.assert_allclose(clf.class_embeddings_[0], mean, atol=1e-6)
    with pytest.raises(ValueError, match="class_names has 3 entries for 2 classes"):
        clone(clf).set_params(class_names=["a", "b", "c"]).fit(None, [0, 1])
    with pytest.raises(ValueError, match="needs exactly one '{}'"):
        clone(clf).set_params(templates="no slot").fit(None, [0, 1])
    with pytest.raises(ValueError, match=r"shape \(n_samples, 16\)"):
        clf.predict(np.zeros((2, 5)))


def test_on_images_and_on_splice_recompositions(tiny_clip, image_files):
    config, checkpoint = tiny_clip
    paths, labels = image_files
    enc = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu")
    names = np.array(["china", "flower"])[labels]
    clf = ZeroShotClassifier(enc).fit(None, names)
    dense = clf.predict_proba(paths)
    splice = SpliceTransformer(
        enc, vocabulary=["a", "b", "c", "d", "e", "f", "g", "h"], l1_penalty=0.001, device="cpu"
    ).fit(paths)
    np.testing.assert_allclose(clf.predict_proba(splice.embed(paths)), dense, atol=1e-5)
    recomposed = splice.inverse_transform(splice.transform(paths))
    assert clf.predict(recomposed).shape == (12,)
    assert 0.0 <= clf.score(recomposed, names) <= 1.0
