import numpy as np
import pytest
import scipy.sparse as sp

from helpers import HashingEncoder
from sklearn_splice import SpliceTransformer
from sklearn_splice._search import find_by_concept

pd = pytest.importorskip("pandas")

NAMES = ["beach", "people", "sand", "dog", "score"]
#               beach people sand  dog  score
W = np.array(
    [
        [0.50, 0.00, 0.20, 0.00, 0.00],  # 0
        [0.30, 0.40, 0.00, 0.00, 0.00],  # 1
        [0.00, 0.60, 0.00, 0.10, 0.00],  # 2
        [0.70, 0.00, 0.00, 0.00, 0.30],  # 3
        [0.20, 0.00, 0.50, 0.00, 0.00],  # 4
        [0.00, 0.00, 0.00, 0.00, 0.00],  # 5: nothing
    ]
)


def _positions(frame):
    return frame["position"].tolist()


@pytest.mark.parametrize("as_sparse", [False, True])
def test_single_concept_ranks_by_weight(as_sparse):
    found = find_by_concept(sp.csr_matrix(W) if as_sparse else W, NAMES, "beach")
    assert list(found.columns) == ["position", "score", "beach"]
    assert _positions(found) == [3, 0, 1, 4]
    np.testing.assert_array_equal(found["score"], [0.7, 0.5, 0.3, 0.2])
    np.testing.assert_array_equal(found["beach"], found["score"])
    assert found["position"].dtype == np.int64
    assert _positions(find_by_concept(W, NAMES, "dog")) == [2]


def test_include_and_exclude():
    # beach without people: row 1 has people.
    assert _positions(find_by_concept(W, NAMES, ("beach", "-people"))) == [3, 0, 4]
    # beach and sand: rows 0 and 4, both scoring 0.7, ties kept in input order.
    both = find_by_concept(W, NAMES, ["beach", "sand"])
    assert _positions(both) == [0, 4]
    assert list(both.columns) == ["position", "score", "beach", "sand"]
    np.testing.assert_array_equal(both["score"], [0.7, 0.7])
    np.testing.assert_array_equal(both[["beach", "sand"]].to_numpy(), [[0.5, 0.2], [0.2, 0.5]])
    # The dict form says the same; its values may be single names.
    frame = find_by_concept(W, NAMES, {"include": ["beach"], "exclude": "people"})
    pd.testing.assert_frame_equal(frame, find_by_concept(W, NAMES, ("beach", "-people")))
    assert _positions(find_by_concept(W, NAMES, {"include": "people"})) == [2, 1]
    # Several exclusions; repeated names count once.
    assert _positions(find_by_concept(W, NAMES, ("beach", "-people", "-sand", "beach"))) == [3]


def test_min_weight_is_the_presence_threshold():
    # Included: weight strictly above 0.3; row 1's 0.3 does not count.
    assert _positions(find_by_concept(W, NAMES, "beach", min_weight=0.3)) == [3, 0]
    # Excluded: weight at most min_weight. Row 4 has beach 0.2: excluded at 0, kept at 0.3.
    assert _positions(find_by_concept(W, NAMES, ("sand", "-beach"))) == []
    assert _positions(find_by_concept(W, NAMES, ("sand", "-beach"), min_weight=0.3)) == [4]


def test_top_and_empty_results():
    assert _positions(find_by_concept(W, NAMES, "beach", top=2)) == [3, 0]
    assert _positions(find_by_concept(W, NAMES, "beach", top=0)) == []
    none = find_by_concept(W, NAMES, ("people", "dog", "-beach", "-sand"), min_weight=0.5)
    assert none.empty and list(none.columns) == ["position", "score", "people", "dog"]


def test_concept_named_like_a_column():
    found = find_by_concept(W, NAMES, ("score", "beach"))
    assert list(found.columns) == ["position", "score", "score (weight)", "beach"]
    assert _positions(found) == [3]
    np.testing.assert_array_equal(found["score"], [1.0])
    np.testing.assert_array_equal(found["score (weight)"], [0.3])


def test_dataframe_weights():
    frame = pd.DataFrame(W, columns=NAMES)
    assert _positions(find_by_concept(frame, NAMES, ("beach", "-people"))) == [3, 0, 4]


@pytest.mark.parametrize(
    "query, error, message",
    [
        ("beech", ValueError, r"'beech' \(close: beach\)"),
        (("beach", "-peeple"), ValueError, r"not in feature_names: 'peeple' \(close: people\)"),
        ("-people", ValueError, "includes no concept"),
        ({"exclude": ["people"]}, ValueError, "includes no concept"),
        (("beach", "-beach"), ValueError, "both includes and excludes 'beach'"),
        ({"include": ["beach"], "without": ["sand"]}, ValueError, "'include' and 'exclude' only"),
        (("beach", 3), TypeError, "must hold concept names"),
        (7, TypeError, "must be a concept name or a list"),
    ],
)
def test_bad_queries(query, error, message):
    with pytest.raises(error, match=message):
        find_by_concept(W, NAMES, query)


def test_bad_arguments():
    for top in (-1, 2.0, True):
        with pytest.raises(ValueError, match="top must be"):
            find_by_concept(W, NAMES, "beach", top=top)
    for min_weight in (-0.1, float("nan"), "0"):
        with pytest.raises(ValueError, match="min_weight must be"):
            find_by_concept(W, NAMES, "beach", min_weight=min_weight)
    with pytest.raises(ValueError, match="5 columns but 4 feature names"):
        find_by_concept(W, NAMES[:4], "beach")
    with pytest.raises(ValueError, match="negative weights"):
        find_by_concept(-W, NAMES, "beach")


def test_on_splice_weights():
    X = np.random.RandomState(0).standard_normal((20, 6))
    words = [f"w{i}" for i in range(10)]
    splice = SpliceTransformer(HashingEncoder(width=8), vocabulary=words, l1_penalty=0.05,
                               device="cpu").fit(X)
    Wx = splice.transform(X)
    dense = Wx.toarray()
    names = splice.get_feature_names_out()
    a, b = names[np.argsort(-(dense > 0).sum(0))[:2]]  # the two most frequent concepts
    ja, jb = list(names).index(a), list(names).index(b)
    found = find_by_concept(Wx, names, (a, f"-{b}"))
    expected = np.flatnonzero((dense[:, ja] > 0) & (dense[:, jb] == 0))
    expected = expected[np.argsort(-dense[expected, ja], kind="stable")]
    assert len(expected) and _positions(found) == expected.tolist()
    np.testing.assert_array_equal(found[a], dense[expected, ja])


def test_repeated_feature_names_are_refused():
    W = np.array([[0.5, 0.0, 0.2], [0.3, 0.4, 0.0]])
    with pytest.raises(ValueError, match="repeats 'people'"):
        find_by_concept(W, ["beach", "people", "people"], ("beach", "-people"))
