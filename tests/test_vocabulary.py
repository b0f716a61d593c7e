from importlib import resources

import numpy as np
import pytest

from sklearn_splice import REFERENCE_MEANS, load_reference_mean, load_vocabulary


def shipped_lines(name):
    text = resources.files("sklearn_splice").joinpath("data", "vocab", name).read_text("utf-8")
    return [line for line in text.splitlines() if line.strip()]


def test_laion_top_k_is_the_last_lines():
    lines = shipped_lines("laion.txt")
    concepts = load_vocabulary("laion", 10000)
    assert len(concepts) == 10000
    assert concepts == lines[-10000:]
    assert concepts[-1] == "-" and "the" in concepts


@pytest.mark.parametrize("name, n", [("laion", 37445), ("laion_bigrams", 15000), ("mscoco", 12832)])
def test_whole_vocabularies(name, n):
    concepts = load_vocabulary(name, None)
    assert len(concepts) == n
    assert all(c and c == c.strip() for c in concepts)


def test_user_list_is_cleaned_and_kept_in_order():
    assert load_vocabulary([" cat", "dog ", "tree"], size=1) == ["cat", "dog", "tree"]
    assert load_vocabulary(np.array(["a", "b"])) == ["a", "b"]


def test_duplicates_warn_and_keep_first_place():
    with pytest.warns(UserWarning, match="repeats 2 concept.*'cat'"):
        assert load_vocabulary(["cat", "dog", "cat", "cat"]) == ["cat", "dog"]


@pytest.mark.parametrize(
    "vocab, error, match",
    [
        ([], ValueError, "empty"),
        (["cat", "cat"], ValueError, "1 distinct concept"),
        (["cat", ""], ValueError, r"vocabulary\[1\] is blank"),
        (["cat", 3], TypeError, r"vocabulary\[1\] is int"),
        ("wordnet", ValueError, "Unknown vocabulary 'wordnet'"),
        (42, TypeError, "sequence of concept strings"),
    ],
)
def test_bad_vocabularies(vocab, error, match):
    with pytest.warns(UserWarning) if vocab == ["cat", "cat"] else _no_warning():
        with pytest.raises(error, match=match):
            load_vocabulary(vocab)


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("key", list(REFERENCE_MEANS))
def test_reference_means(key):
    mean = load_reference_mean(*key)
    assert mean.dtype == np.float32 and mean.ndim == 1
    assert mean.shape == ((1024,) if key[0] == "RN50" else (512,))
    assert 0.5 < np.linalg.norm(mean) < 0.75  # averages of unit vectors, not renormalised


def test_reference_mean_accepts_slash_names_and_rejects_unknown():
    assert load_reference_mean("ViT-B/32", "openai").shape == (512,)
    with pytest.raises(ValueError, match="No reference mean.*ViT-L-14/openai.*known backbones"):
        load_reference_mean("ViT-L-14", "openai")
