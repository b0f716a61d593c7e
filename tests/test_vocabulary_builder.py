import io
import random
import warnings

import numpy as np
import pytest

from sklearn_splice._vocabulary import load_vocabulary
from sklearn_splice._vocabulary_builder import build_vocabulary, count_concepts

CAPTIONS = [
    "A photo of a cat",
    "a cat on a red sofa",
    "red sofa in a living room",
    "a dog on a red sofa",
    "the cat and the dog",
]


def test_known_captions_give_a_known_vocabulary():
    # cat 3, red 3, sofa 3, "red sofa" 3, dog 2; photo, living, room, "living room" once
    assert build_vocabulary(CAPTIONS) == ["dog", "sofa", "red sofa", "red", "cat"]
    found = count_concepts(CAPTIONS)
    assert found.counts == [2, 3, 3, 3, 3]
    assert found.n_captions == 5 and found.n_candidates == 9


def test_least_frequent_first_so_the_last_k_are_the_k_most_frequent():
    rng = random.Random(0)
    words = ["sky", "sea", "boat", "sand", "palm", "sun", "wave", "gull"]
    captions = [" ".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(300)]
    found = count_concepts(captions, max_concepts=None, min_count=1)
    assert found.counts == sorted(found.counts)  # never decreasing
    for k in (1, 5, 17, len(found.concepts)):
        assert build_vocabulary(captions, max_concepts=k, min_count=1) == found.concepts[-k:]


def test_ties_are_broken_by_the_text_not_by_the_order_of_the_captions():
    captions = ["zebra apple", "zebra apple", "mango", "mango"]
    # all four concepts occur twice: ranked apple, mango, zebra, "zebra apple" (code point
    # order), so listed the other way round, and max_concepts keeps the first ranked
    assert build_vocabulary(captions) == ["zebra apple", "zebra", "mango", "apple"]
    assert build_vocabulary(captions[::-1]) == ["zebra apple", "zebra", "mango", "apple"]
    assert build_vocabulary(captions, max_concepts=2) == ["mango", "apple"]
    shuffled = CAPTIONS[:]
    random.Random(3).shuffle(shuffled)
    assert build_vocabulary(shuffled) == build_vocabulary(CAPTIONS)


def test_words_and_phrases_share_one_ranking():
    captions = ["hot dog"] * 3 + ["hot tea"] + ["dog park"] * 2
    found = count_concepts(captions, min_count=1)
    assert list(zip(found.concepts, found.counts)) == [
        ("tea", 1), ("hot tea", 1), ("park", 2), ("dog park", 2),
        ("hot dog", 3), ("hot", 4), ("dog", 5),
    ]
    assert build_vocabulary(captions, max_concepts=3) == ["hot dog", "hot", "dog"]
    assert build_vocabulary(captions, ngram_range=(1, 1), min_count=1) == [
        "tea", "park", "hot", "dog",
    ]
    assert build_vocabulary(captions, ngram_range=(2, 2), min_count=1) == [
        "hot tea", "dog park", "hot dog",
    ]


def test_min_count_counts_every_occurrence():
    captions = ["cat cat cat", "dog", "dog", "bird"]
    assert build_vocabulary(captions, ngram_range=(1, 1), min_count=3) == ["cat"]
    assert build_vocabulary(captions, ngram_range=(1, 1), min_count=2) == ["dog", "cat"]
    assert build_vocabulary(captions, ngram_range=(1, 1), min_count=1) == ["bird", "dog", "cat"]
    assert count_concepts(captions, min_count=2).counts == [2, 2, 3]  # "cat cat" twice too
    assert build_vocabulary(captions, min_count=2) == ["dog", "cat cat", "cat"]


def test_stop_words_are_never_concepts_nor_bridged_in_phrases():
    captions = ["a photo of a red sofa"] * 2
    assert build_vocabulary(captions) == ["sofa", "red sofa", "red", "photo"]  # no "photo red"
    # without stop words, phrases still join adjacent words only: "a" is one character
    assert build_vocabulary(captions, stop_words=None) == [
        "sofa", "red sofa", "red", "photo of", "photo", "of",
    ]
    assert build_vocabulary(captions, stop_words=["Photo", "of"]) == ["sofa", "red sofa", "red"]
    assert build_vocabulary(captions, stop_words={"sofa"}) == ["red", "photo of", "photo", "of"]


def test_punctuation_and_one_letter_words_end_phrases():
    captions = ["vitamin c tablets, white t-shirt"] * 2
    assert build_vocabulary(captions) == ["white", "vitamin", "tablets", "shirt"]
    assert build_vocabulary(["Café au lait"] * 2, stop_words=None) == [
        "lait", "café au", "café", "au lait", "au",
    ]


def test_lowercase():
    captions = ["Cat", "cat", "CAT"]
    assert build_vocabulary(captions, min_count=1) == ["cat"]
    assert count_concepts(captions, min_count=1).counts == [3]
    assert build_vocabulary(captions, min_count=1, lowercase=False) == ["cat", "Cat", "CAT"]
    # stop words are stop words in any case
    assert build_vocabulary(["The cat"] * 2, lowercase=False) == ["cat"]
    assert build_vocabulary(["A Photo Of The Cat"] * 2, lowercase=False) == ["Photo", "Cat"]


def test_words_keep_their_marks_and_lose_invisible_characters():
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "café latte")
    assert build_vocabulary([decomposed] * 2) == ["latte", "café latte", "café"]
    assert build_vocabulary(["café", unicodedata.normalize("NFD", "café")]) == ["café"]
    assert build_vocabulary(["İstanbul skyline"] * 2)[0] == "skyline"
    assert len(build_vocabulary(["İstanbul skyline"] * 2)) == 3  # "i̇stanbul" stays whole
    assert build_vocabulary(["co\u00adoperate e\u200dmail"] * 2) == [
        "email", "cooperate email", "cooperate"
    ]
    assert build_vocabulary(["हिन्दी किताब"] * 2) == ["हिन्दी किताब", "हिन्दी", "किताब"]


def test_streams_are_read_once_caption_by_caption():
    text = "\n".join(CAPTIONS) + "\n"
    assert build_vocabulary(io.StringIO(text)) == ["dog", "sofa", "red sofa", "red", "cat"]
    assert build_vocabulary(c for c in CAPTIONS) == ["dog", "sofa", "red sofa", "red", "cat"]
    assert build_vocabulary(np.array(CAPTIONS)) == ["dog", "sofa", "red sofa", "red", "cat"]
    pd = pytest.importorskip("pandas")
    assert build_vocabulary(pd.Series(CAPTIONS, index=[9, 8, 7, 6, 5]))[-1] == "cat"


def test_counts_agree_with_count_vectorizer():
    from sklearn.feature_extraction.text import CountVectorizer

    rng = random.Random(1)
    words = ["kite", "beach", "dune", "surf", "shell", "crab", "reef", "tide"]
    captions = [" ".join(rng.choices(words, k=rng.randint(1, 8))) for _ in range(2000)]
    vectorizer = CountVectorizer(ngram_range=(1, 2))  # no stop words in these captions
    totals = np.asarray(vectorizer.fit_transform(captions).sum(axis=0)).ravel()
    expected = dict(zip(vectorizer.get_feature_names_out(), totals.tolist()))
    found = count_concepts(iter(captions), max_concepts=None, min_count=1)
    assert dict(zip(found.concepts, found.counts)) == expected


def test_the_result_is_a_vocabulary_for_splice_transformer():
    from sklearn_splice import SpliceTransformer

    class Toy:
        def cache_identity(self):
            return "toy-width-6"

        def encode_text(self, texts):
            return np.random.RandomState(0).randn(len(texts), 6)

        def encode_image(self, X):
            return np.asarray(X)

    concepts = build_vocabulary(CAPTIONS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no repeated or blank concept to warn about
        assert load_vocabulary(concepts) == concepts
        X = np.random.RandomState(1).randn(4, 6)
        splice = SpliceTransformer(Toy(), vocabulary=concepts, device="cpu", cache_dir=False)
        splice.fit(X)
    assert list(splice.get_feature_names_out()) == concepts


@pytest.mark.parametrize(
    "captions, error, match",
    [
        (["a cat", "a dog", None], TypeError, r"captions\[2\] is NoneType \(None\)"),
        (["a cat", b"a dog"], TypeError, r"captions\[1\] is bytes"),
        ([float("nan")], TypeError, r"captions\[0\] is float \(nan\)"),
        ("a cat on a sofa", TypeError, "not a single str; wrap one caption in a list"),
        (42, TypeError, "iterable of strings, got int"),
        ([], ValueError, "No captions were given"),
        (
            ["the cat", "a dog", "of the"],
            ValueError,
            r"No word or phrase occurs at least 2 time\(s\) in the 3 caption\(s\) once stop "
            r"words are removed \(2 distinct ones occur less often\); lower min_count",
        ),
        (["", "  ", "!!"], ValueError, r"No word or phrase .* in the 3 caption\(s\)"),
    ],
)
def test_bad_captions(captions, error, match):
    with pytest.raises(error, match=match):
        build_vocabulary(captions)


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"max_concepts": 0}, ValueError, "max_concepts must be a positive integer or None"),
        ({"max_concepts": 2.5}, ValueError, "max_concepts"),
        ({"max_concepts": True}, ValueError, "max_concepts"),
        ({"min_count": 0}, ValueError, "min_count must be a positive integer"),
        ({"ngram_range": (2, 1)}, ValueError, r"ngram_range must be a pair .* got \(2, 1\)"),
        ({"ngram_range": (0, 2)}, ValueError, "ngram_range"),
        ({"ngram_range": 2}, ValueError, "ngram_range"),
        ({"stop_words": "french"}, ValueError, "stop_words must be 'english', None or"),
        ({"stop_words": ["the", 3]}, TypeError, r"stop_words\[1\] is int"),
        ({"stop_words": 3}, TypeError, "stop_words must be"),
        ({"lowercase": "yes"}, TypeError, "lowercase must be True or False"),
    ],
)
def test_bad_parameters_are_refused_before_the_captions_are_read(params, error, match):
    read = []

    def captions():
        read.append(True)
        yield "a cat"

    with pytest.raises(error, match=match):
        build_vocabulary(captions(), **params)
    assert read == []


def test_numpy_integers_are_accepted():
    assert build_vocabulary(
        CAPTIONS, max_concepts=np.int64(2), min_count=np.int32(3), ngram_range=(1, np.int8(1))
    ) == ["red", "cat"]
