import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import (
    LogisticRegression,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
)
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler
from sklearn.svm import SVC, LinearSVC

from helpers import CountingEncoder, HashingEncoder
from sklearn_splice import SpliceTransformer
from sklearn_splice._contributions import explain_predictions

pd = pytest.importorskip("pandas")

COLUMNS = ["sample", "class", "term", "kind", "weight", "coefficient", "contribution"]
WORDS = ["sea", "sand", "snow", "tree", "dog", "cat", "car", "road", "sky", "grass"]
CLASSIFIERS = {
    "logistic": LogisticRegression(max_iter=2000),
    "linear_svc": LinearSVC(),
    "ridge": RidgeClassifier(),
    "sgd": SGDClassifier(random_state=0),
}
SCALERS = {
    "none": [],
    "standard": [StandardScaler()],
    "standard_no_mean": [StandardScaler(with_mean=False)],
    "standard_no_std": [StandardScaler(with_std=False)],
    "maxabs": [MaxAbsScaler()],
    "minmax": [MinMaxScaler(feature_range=(-1, 2))],
    "chain": [MaxAbsScaler(), StandardScaler()],
}


def _splice(**params):
    params = {"l1_penalty": 0.05, "device": "cpu", "sparse_output": False, **params}
    return SpliceTransformer(HashingEncoder(width=8), vocabulary=WORDS, **params)


def _data(n_classes, n=36, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, 6))
    y = np.array(["ant", "bee", "cow"][:n_classes] * n)[:n]
    return X, y


@pytest.fixture(scope="module")
def fitted():
    """A fitted SpliceTransformer (dense output), the weights of its training inputs and
    those of the first 7 of them transformed on their own (the solver's last digits depend
    on the batch).

    The solver is the slow part, so the tests reuse these instead of refitting.
    """
    X, _ = _data(2)
    splice = _splice().fit(X)
    return splice, splice.transform(X), splice.transform(X[:7])


def _pipeline(clf, scalers, **splice_params):
    steps = [("splice", _splice(**splice_params))]
    steps += [(f"scale{i}", clone(s)) for i, s in enumerate(scalers)]
    return Pipeline(steps + [("clf", clone(clf))])


def _prefitted(fitted, clf, scalers, n_classes):
    """A fitted Pipeline made of the shared splice and steps fitted on its weights."""
    splice, W, _ = fitted
    _, y = _data(n_classes)
    steps, Wt = [("splice", splice)], W
    for i, scaler in enumerate(scalers):
        scaler = clone(scaler).fit(Wt)
        steps.append((f"scale{i}", scaler))
        Wt = scaler.transform(Wt)
    return Pipeline(steps + [("clf", clone(clf).fit(Wt, y))])


def _scores(pipe, X):
    """decision_function as (n_samples, n_score_columns)."""
    return pipe.decision_function(X).reshape(len(X), -1)


def _score_labels(clf):
    return list(clf.classes_[1:]) if len(clf.classes_) == 2 else list(clf.classes_)


def _truth(pipe, X, W=None):
    """What an explanation of ``pipe`` on ``X`` must agree with, measured on the pipeline.

    ``W``, the weights of ``X``, is computed unless given.
    """
    tail = pipe[1:]
    W = pipe[0].transform(X) if W is None else W
    W = W.toarray() if hasattr(W, "toarray") else np.asarray(W)
    names = pipe[0].get_feature_names_out()
    # The effective coefficients and intercepts: the scores of w = 0 and of each w = e_j.
    probe = np.vstack([np.zeros(len(names)), np.eye(len(names))])
    if hasattr(tail[0], "feature_names_in_"):  # a pipeline with pandas output
        probe = pd.DataFrame(probe, columns=names)
    measured = tail.decision_function(probe).reshape(len(names) + 1, -1)
    return W, names, _scores(pipe, X), measured[0], measured[1:] - measured[0]


def _check_frame(frame, pipe, X, *, top=None, truth=None):
    """Every property of an explanation, checked against the pipeline itself."""
    assert list(frame.columns) == COLUMNS
    labels = _score_labels(pipe[-1])
    W, names, scores, base, unit = truth or _truth(pipe, X)
    groups = frame.groupby(["sample", "class"], sort=False)
    assert list(groups.groups) == [(i, c) for i in range(len(X)) for c in labels]
    for (i, label), g in groups:
        k = labels.index(label)
        np.testing.assert_allclose(g["contribution"].sum(), scores[i, k], rtol=0, atol=1e-12)
        concepts = g[g["kind"] == "concept"]
        tail_kinds = ["intercept"] if top is None else ["intercept", "rest"]
        assert g["kind"].tolist() == ["concept"] * len(concepts) + tail_kinds
        assert g["term"].tolist()[len(concepts):] == [f"({kind})" for kind in tail_kinds]
        present = set(names[W[i] != 0])
        if top is None:
            assert set(concepts["term"]) == present
        else:
            assert len(concepts) == min(top, len(present)) and set(concepts["term"]) <= present
            cut = sorted(present - set(concepts["term"]))
            j_cut = [list(names).index(t) for t in cut]
            rest = W[i, j_cut] @ unit[j_cut, k] if j_cut else 0.0
            np.testing.assert_allclose(g["contribution"].iloc[-1], rest, rtol=0, atol=1e-12)
        j = [list(names).index(t) for t in concepts["term"]]
        np.testing.assert_array_equal(concepts["weight"], W[i, j])
        np.testing.assert_allclose(concepts["coefficient"], unit[j, k], rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(
            concepts["contribution"], concepts["weight"] * concepts["coefficient"]
        )
        assert (np.diff(np.abs(concepts["contribution"].to_numpy())) <= 0).all()
        intercept = g[g["kind"] == "intercept"]
        np.testing.assert_allclose(intercept["contribution"], base[k], rtol=1e-9, atol=1e-9)
        assert g[g["kind"] != "concept"][["weight", "coefficient"]].isna().all().all()


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("scaler", list(SCALERS))
@pytest.mark.parametrize("classifier", list(CLASSIFIERS))
def test_contributions_sum_to_the_decision_function(fitted, classifier, scaler, n_classes):
    X, _ = _data(n_classes)
    pipe = _prefitted(fitted, CLASSIFIERS[classifier], SCALERS[scaler], n_classes)
    truth = _truth(pipe, X[:7], W=fitted[2])
    frame = explain_predictions(pipe, X[:7])
    _check_frame(frame, pipe, X[:7], truth=truth)
    assert frame["sample"].dtype == np.int64
    assert set(frame["class"]) == set(_score_labels(pipe[-1]))
    frame_top = explain_predictions(pipe, X[:7], top=2)
    _check_frame(frame_top, pipe, X[:7], top=2, truth=truth)


@pytest.mark.parametrize("scaler", ["none", "standard_no_mean", "maxabs"])
def test_sparse_weights_and_pandas_output(scaler):
    X, y = _data(3)
    pipe = _pipeline(CLASSIFIERS["logistic"], SCALERS[scaler], sparse_output=True).fit(X, y)
    _check_frame(explain_predictions(pipe, X[:5]), pipe, X[:5])
    pandas_pipe = _pipeline(CLASSIFIERS["logistic"], SCALERS[scaler]).set_output(
        transform="pandas"
    ).fit(X, y)
    _check_frame(explain_predictions(pandas_pipe, X[:5], top=1), pandas_pipe, X[:5], top=1)


def test_standard_scaler_folds_into_coefficients_and_intercept():
    X, y = _data(2)
    pipe = _pipeline(CLASSIFIERS["logistic"], [StandardScaler()]).fit(X, y)
    scaler, clf = pipe["scale0"], pipe["clf"]
    frame = explain_predictions(pipe, X[:3])
    coef = clf.coef_[0] / scaler.scale_
    intercept = clf.intercept_[0] - clf.coef_[0] @ (scaler.mean_ / scaler.scale_)
    names = list(pipe["splice"].get_feature_names_out())
    concepts = frame[frame["kind"] == "concept"]
    np.testing.assert_allclose(
        concepts["coefficient"], coef[[names.index(t) for t in concepts["term"]]], rtol=1e-12
    )
    np.testing.assert_allclose(
        frame[frame["kind"] == "intercept"]["contribution"], intercept, rtol=1e-12
    )
    assert (frame["class"] == "bee").all()  # binary: the score of classes_[1]


def test_top_cuts_into_rest():
    X, y = _data(3)
    pipe = _pipeline(CLASSIFIERS["logistic"], []).fit(X, y)
    full = explain_predictions(pipe, X[:4])
    n_concepts = full[full["kind"] == "concept"].groupby(["sample", "class"]).size()
    assert n_concepts.max() > 1
    # Nothing to cut: the rows of the full frame, then a zero "(rest)" per (sample, class).
    wide = explain_predictions(pipe, X[:4], top=len(WORDS))
    pd.testing.assert_frame_equal(
        wide[wide["kind"] != "rest"].reset_index(drop=True), full, check_exact=True
    )
    assert (wide[wide["kind"] == "rest"]["contribution"] == 0.0).all()
    assert (wide[wide["kind"] == "rest"]["term"] == "(rest)").all()
    # top=0: every concept goes into "(rest)".
    none = explain_predictions(pipe, X[:4], top=0)
    assert set(none["kind"]) == {"intercept", "rest"}
    concept_sums = full[full["kind"] == "concept"].groupby(["sample", "class"])["contribution"]
    rest = none[none["kind"] == "rest"].set_index(["sample", "class"])["contribution"]
    np.testing.assert_allclose(rest.loc[concept_sums.sum().index], concept_sums.sum(), atol=1e-12)
    # top=1 keeps the largest |contribution| of each group.
    one = explain_predictions(pipe, X[:4], top=1)
    largest = full[full["kind"] == "concept"].groupby(["sample", "class"], sort=False).head(1)
    kept = one[one["kind"] == "concept"]
    assert kept["term"].tolist() == largest["term"].tolist()
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="top must be None or a nonnegative integer"):
            explain_predictions(pipe, X[:4], top=bad)


def test_x_is_embedded_once():
    X, y = _data(2)
    counting = CountingEncoder(HashingEncoder(width=8))
    splice = SpliceTransformer(counting, vocabulary=WORDS, l1_penalty=0.05, device="cpu",
                               embedding_cache=False)
    pipe = Pipeline([("splice", splice), ("clf", LogisticRegression())]).fit(X, y)
    before = pipe["splice"].encoder_.n_images
    explain_predictions(pipe, X[:5], top=3)
    assert pipe["splice"].encoder_.n_images - before == 5


def test_sequence_and_search_forms_match_the_pipeline():
    X, y = _data(3)
    pipe = _pipeline(CLASSIFIERS["ridge"], [MaxAbsScaler()]).fit(X, y)
    expected = explain_predictions(pipe, X[:4])
    as_tuple = explain_predictions((pipe[0], pipe[1], pipe[2]), X[:4])
    pd.testing.assert_frame_equal(as_tuple, expected)
    search = GridSearchCV(_pipeline(CLASSIFIERS["ridge"], [MaxAbsScaler()]),
                          {"clf__alpha": [1.0]}, cv=2).fit(X, y)
    pd.testing.assert_frame_equal(
        explain_predictions(search, X[:4]), explain_predictions(search.best_estimator_, X[:4])
    )
    with_passthrough = Pipeline(
        [("splice", pipe[0]), ("nothing", "passthrough"), ("scale", pipe[1]), ("clf", pipe[2])]
    )
    pd.testing.assert_frame_equal(explain_predictions(with_passthrough, X[:4]), expected)


def test_binary_linear_svc_kernel_is_linear():
    X, y = _data(2)
    pipe = _pipeline(SVC(kernel="linear"), [StandardScaler()]).fit(X, y)
    _check_frame(explain_predictions(pipe, X[:4], top=2), pipe, X[:4], top=2)


@pytest.mark.parametrize(
    "steps, message",
    [
        ([("pca", PCA(n_components=3))], r"step 'pca' \(PCA\) is not a per-feature affine"),
        ([("mm", MinMaxScaler(clip=True))], r"step 'mm' \(MinMaxScaler\(clip=True\)\) clips"),
    ],
)
def test_other_middle_steps_are_refused(steps, message):
    X, y = _data(2)
    pipe = Pipeline([("splice", _splice()), *steps, ("clf", LogisticRegression())]).fit(X, y)
    with pytest.raises(ValueError, match=message):
        explain_predictions(pipe, X[:3])


@pytest.mark.parametrize(
    "clf, message",
    [
        (KNeighborsClassifier(n_neighbors=3), "is not a linear classifier"),
        (RandomForestClassifier(n_estimators=3, random_state=0), "is not a linear classifier"),
        (Ridge(), "is not a linear classifier"),
        (SVC(kernel="rbf"), "has no coef_ and intercept_"),
        (SVC(kernel="linear"), "not coef_ @ x \\+ intercept_"),  # three classes: one-vs-one votes
    ],
)
def test_nonlinear_last_steps_are_refused(clf, message):
    X, y = _data(3)
    if not is_classifier(clf):
        y = np.unique(y, return_inverse=True)[1]
    pipe = Pipeline([("splice", _splice()), ("model", clf)]).fit(X, y)
    with pytest.raises(ValueError, match=rf"The last step, step 'model' \({type(clf).__name__}\)"):
        explain_predictions(pipe, X[:3])
    with pytest.raises(ValueError, match=message):
        explain_predictions(pipe, X[:3])


def test_first_step_must_be_splice_and_estimator_a_pipeline():
    X, y = _data(2)
    W = _splice().fit(X).transform(X)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(W, y)
    with pytest.raises(ValueError, match=r"The first step, step 'scale' \(StandardScaler\)"):
        explain_predictions(pipe, W)
    with pytest.raises(TypeError, match="needs a fitted Pipeline"):
        explain_predictions(LogisticRegression().fit(W, y), W)


def test_multilabel_classifiers_are_refused():
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline

    from helpers import HashingEncoder
    from sklearn_splice import SpliceTransformer, explain_predictions

    rng = np.random.RandomState(0)
    X = rng.standard_normal((30, 8))
    Y = np.c_[X[:, 0] > 0, X[:, 1] > 0].astype(int)
    splice = SpliceTransformer(
        HashingEncoder(width=8), vocabulary=list("abcdefgh"), l1_penalty=0.01, device="cpu"
    )
    pipe = make_pipeline(splice, RidgeClassifier()).fit(X, Y)
    with pytest.raises(ValueError, match="multilabel"):
        explain_predictions(pipe, X[:3])
