import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from helpers import DictionaryEncoder, HashingEncoder
from sklearn_splice import (
    SpliceTransformer,
    coefficient_table,
    compare_classes,
    concept_distribution,
    decomposition_quality,
    top_concepts,
    top_concepts_frame,
)

pd = pytest.importorskip("pandas")
NAMES = ["sea", "sand", "swimwear", "snow", "tree"]
W = np.array(
    [
        [0.5, 0.2, 0.3, 0.0, 0.0],
        [0.4, 0.0, 0.2, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.6, 0.1],
        [0.0, 0.1, 0.0, 0.3, 0.0],
    ]
)
Y = np.array(["beach", "beach", "ski", "ski"])


def test_top_concepts_sorted_and_sparse_aware():
    pairs = top_concepts(sp.csr_matrix(W), NAMES, k=2)
    assert pairs[0] == [("sea", 0.5), ("swimwear", 0.3)]
    assert pairs[3] == [("snow", 0.3), ("sand", 0.1)]
    frame = top_concepts_frame(W, NAMES, k=3, index=["a", "b", "c", "d"])
    assert list(frame.columns) == ["sample", "rank", "concept", "weight"]
    assert frame[frame["sample"] == "b"]["concept"].tolist() == ["sea", "swimwear"]
    with pytest.raises(ValueError, match="5 columns but 4 feature names"):
        top_concepts(W, NAMES[:4])


def test_concept_distribution_per_class():
    dist = concept_distribution(W, NAMES, Y)
    beach = dist[dist["group"] == "beach"].set_index("concept")
    assert beach.loc["sea", "prevalence"] == 1.0 and beach.loc["sand", "prevalence"] == 0.5
    assert beach.loc["sea", "mean_weight"] == pytest.approx(0.45)
    assert dist[dist["group"] == "ski"]["concept"].iloc[0] == "snow"
    whole = concept_distribution(W, NAMES)
    assert set(whole["group"]) == {"all"}
    assert whole.set_index("concept").loc["sand", "prevalence"] == 0.5
    assert len(concept_distribution(W, NAMES, Y, min_prevalence=0.6)) == 3


def test_compare_classes_finds_the_spurious_concept():
    table = compare_classes(W, NAMES, Y, "beach", "ski", top=2)
    assert table["concept"].tolist() == ["sea", "swimwear"]
    assert table["difference"].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="'desert' has no samples"):
        compare_classes(W, NAMES, Y, "desert", "ski")


def test_coefficient_table_binary_and_multiclass():
    X = np.array([[1.0, 0, 0], [0.9, 0, 0.1], [0, 1.0, 0], [0, 0.8, 0.1]])
    clf = LogisticRegression().fit(X, ["a", "a", "b", "b"])
    table = coefficient_table(clf, ["x", "y", "z"], top=1)
    assert table.to_dict("list")["concept"] == ["y", "x"] and table["class"].tolist() == ["b", "a"]
    assert (table["coefficient"] > 0).all()
    clf3 = LogisticRegression().fit(np.vstack([X, [[0, 0, 1.0]]]), ["a", "a", "b", "b", "c"])
    table3 = coefficient_table(clf3, ["x", "y", "z"], top=1)
    assert table3["concept"].tolist() == ["x", "y", "z"]


def test_decomposition_quality_reports_l0_and_fidelity():
    X = np.random.RandomState(0).standard_normal((8, 16))
    splice = SpliceTransformer(HashingEncoder(width=16), vocabulary=[f"w{i}" for i in range(40)],
                               l1_penalty=0.05, device="cpu").fit(X)
    Wx = splice.transform(X)
    q = decomposition_quality(Wx, splice.embed(X), splice, y=[0] * 4 + [1] * 4)
    assert q["n_samples"].tolist() == [4, 4]
    l0 = np.diff(Wx.indptr)
    np.testing.assert_allclose(q["mean_l0"], [l0[:4].mean(), l0[4:].mean()])
    Z = splice.embed(X)
    cos = (splice.inverse_transform(Wx) * Z).sum(1)
    np.testing.assert_allclose(q["mean_fidelity"], [cos[:4].mean(), cos[4:].mean()])
    assert (q["mean_fidelity"] <= 1.0 + 1e-9).all()
    # The two figures that discount the mean, computed independently.
    mean = splice.mean_.astype(np.float64)
    baseline = Z @ mean / np.linalg.norm(mean)
    def halves(v):
        return [v[:4].mean(), v[4:].mean()]

    np.testing.assert_allclose(q["mean_baseline_fidelity"], halves(baseline))
    R = Z - mean
    R /= np.linalg.norm(R, axis=1, keepdims=True)
    CW = Wx @ splice.components_.astype(np.float64)
    norms = np.linalg.norm(CW, axis=1, keepdims=True)
    centred = (R * np.divide(CW, norms, out=np.zeros_like(CW), where=norms > 0)).sum(1)
    np.testing.assert_allclose(q["mean_centred_fidelity"], halves(centred))
    assert list(q.columns) == [
        "group", "n_samples", "mean_l0", "median_l0", "mean_fidelity",
        "mean_baseline_fidelity", "mean_centred_fidelity",
    ]


def test_decomposition_quality_by_hand():
    # Two opposite concepts along x: their mean is 0, so the dictionary is (e_x, -e_x).
    # The mean embedding is e_z.
    concepts = ["east", "west"]
    splice = SpliceTransformer(
        DictionaryEncoder(np.array([[1.0, 0, 0], [-1.0, 0, 0]]), concepts),
        vocabulary=concepts, image_mean=np.array([0.0, 0.0, 1.0]), device="cpu",
    ).fit(np.eye(3))
    np.testing.assert_array_equal(splice.components_, [[1, 0, 0], [-1, 0, 0]])
    Z = np.array([[3.0, 0.0, 4.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])  # z1 = (0.6, 0, 0.8)
    Wh = np.array([[0.5, 0.0], [0.0, 0.0], [0.0, 0.0]])
    q = decomposition_quality(Wh, Z, splice, y=["a", "b", "c"]).set_index("group")
    # Sample a: recomposition normalise((1, 0, 0) + (0, 0, 1)) = (1, 0, 1) / sqrt(2);
    # cos with (0.6, 0, 0.8) = 1.4 / sqrt(2). The mean alone: cos = 0.8. Centred parts:
    # normalise(z - mu) = (3, 0, -1) / sqrt(10) against (1, 0, 0): 3 / sqrt(10).
    np.testing.assert_allclose(
        q.loc["a", ["mean_fidelity", "mean_baseline_fidelity", "mean_centred_fidelity"]],
        [1.4 / np.sqrt(2), 0.8, 3 / np.sqrt(10)], rtol=1e-12,
    )
    # Sample b: no weights, so its recomposition is the mean, orthogonal to z = e_y; the
    # centred fidelity of all-zero weights is 0. Sample c, an all-zero embedding: 0 in all.
    for group in "bc":
        np.testing.assert_array_equal(
            q.loc[group, ["mean_fidelity", "mean_baseline_fidelity", "mean_centred_fidelity"]],
            [0.0, 0.0, 0.0],
        )
    assert q.loc["a", "mean_l0"] == 1 and q.loc["b", "mean_l0"] == 0
    # Over the three: the means of the per-sample cosines.
    overall = decomposition_quality(Wh, Z, splice)
    np.testing.assert_allclose(overall["mean_baseline_fidelity"], 0.8 / 3, rtol=1e-12)
    np.testing.assert_allclose(overall["mean_centred_fidelity"], 1 / np.sqrt(10), rtol=1e-12)


def test_stored_zeros_are_not_counted_and_w_is_left_alone():
    import scipy.sparse as sp

    from sklearn_splice import concept_distribution, top_concepts

    W = sp.csr_matrix(np.array([[0.5, 0.2], [0.3, 0.0]]))
    W.data[W.data < 0.25] = 0.0  # the usual thresholding leaves a stored zero
    stored = W.nnz
    dist = concept_distribution(W, ["cat", "dog"])
    assert dist.loc[dist["concept"] == "dog", "prevalence"].item() == 0.0
    assert top_concepts(W, ["cat", "dog"], 2) == [[("cat", 0.5)], [("cat", 0.3)]]
    assert W.nnz == stored  # the caller's matrix is not changed
    with pytest.raises(ValueError, match="NaN or infinite"):
        top_concepts(sp.csr_matrix(np.array([[np.nan, 1.0]])), ["cat", "dog"], 1)


def test_decomposition_quality_checks_that_its_inputs_match():
    X = np.random.RandomState(0).standard_normal((6, 8))
    splice = SpliceTransformer(
        HashingEncoder(width=8), vocabulary=list("abcdefgh"), l1_penalty=0.01, device="cpu"
    ).fit(X)
    W, Z = splice.transform(X), splice.embed(X)
    for bad_W, bad_Z in [(W[:1], Z), (W, Z[:1]), (W, Z[:, :4])]:
        with pytest.raises(ValueError, match="embeddings has shape"):
            decomposition_quality(bad_W, bad_Z, splice)
    with pytest.raises(ValueError, match="negative weights"):
        decomposition_quality(-W.toarray(), Z, splice)


def test_a_matrix_still_needs_its_names_labels_and_classes():
    with pytest.raises(ValueError, match="feature_names is required"):
        concept_distribution(W)
    with pytest.raises(ValueError, match="y .* is required"):
        compare_classes(W, NAMES, class_a="beach", class_b="ski")
    with pytest.raises(ValueError, match="needs class_a and class_b"):
        compare_classes(W, NAMES, Y, "beach")
    with pytest.raises(ValueError, match="y has 3 labels for 4 samples"):
        compare_classes(W, NAMES, Y[:3], "beach", "ski")
    # keywords name the same arguments as positions
    assert compare_classes(W, NAMES, Y, "beach", "ski").equals(
        compare_classes(W, feature_names=NAMES, y=Y, class_a="beach", class_b="ski")
    )
