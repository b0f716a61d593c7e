"""Why this prediction: a linear classifier's scores split into per-concept contributions."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler
from sklearn.utils.validation import check_is_fitted

from ._explain import _pandas, check_top
from ._transformer import SpliceTransformer

__all__ = ["explain_predictions"]

COLUMNS = ["sample", "class", "term", "kind", "weight", "coefficient", "contribution"]
INTERCEPT = "(intercept)"
REST = "(rest)"

# Sort rank of the row kinds within one (sample, class): concepts, then intercept, then rest.
_CONCEPT, _INTERCEPT, _REST = 0, 1, 2


def _steps(estimator: Any) -> list[tuple[str, Any]]:
    """The (label, estimator) steps of a Pipeline, a fitted search or a sequence of estimators."""
    if hasattr(estimator, "best_estimator_"):  # GridSearchCV and friends delegate to it
        estimator = estimator.best_estimator_
    if isinstance(estimator, Pipeline):
        return [(f"step {name!r}", step) for name, step in estimator.steps]
    if isinstance(estimator, (list, tuple)) and len(estimator) >= 2:
        return [(f"step {i}", step) for i, step in enumerate(estimator)]
    raise TypeError(
        "explain_predictions needs a fitted Pipeline whose first step is a SpliceTransformer "
        "and whose last step is a linear classifier, or a sequence (splice, ..., classifier) "
        f"of fitted estimators; got {type(estimator).__name__}."
    )


def _affine(label: str, step: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` such that ``step.transform(x) == a * x + b`` feature by feature.

    Only scalers whose transform is exactly that are accepted: anything else would make the
    split into per-concept terms an approximation.
    """
    name = type(step).__name__
    check_is_fitted(step)
    if getattr(step, "n_features_in_", n_features) != n_features:
        raise ValueError(
            f"{label} ({name}) was fitted on {step.n_features_in_} features, but the "
            f"SpliceTransformer gives {n_features} concepts."
        )
    ones, zeros = np.ones(n_features), np.zeros(n_features)
    if isinstance(step, StandardScaler):
        a = 1.0 / step.scale_ if step.with_std else ones
        b = -step.mean_ * a if step.with_mean else zeros
        return a, b
    if isinstance(step, MaxAbsScaler):
        return 1.0 / step.scale_, zeros
    if isinstance(step, MinMaxScaler):
        if step.clip:
            raise ValueError(
                f"{label} (MinMaxScaler(clip=True)) clips values outside the training range, "
                "which is not affine, so its effect cannot be split per concept; use "
                "clip=False."
            )
        return step.scale_.astype(np.float64), step.min_.astype(np.float64)
    raise ValueError(
        f"{label} ({name}) is not a per-feature affine scaler: between the SpliceTransformer "
        "and the classifier only StandardScaler, MaxAbsScaler and MinMaxScaler(clip=False) "
        "can be accounted for exactly."
    )


def _linear_parts(label: str, clf: Any, n_features: int):
    """``(coef, intercept, labels)`` of a fitted linear classifier, one entry per score column.

    A binary classifier has one score column, that of ``classes_[1]``.
    """
    name = type(clf).__name__
    if not (is_classifier(clf) and hasattr(clf, "decision_function")):
        raise ValueError(
            f"The last step, {label} ({name}), is not a linear classifier with coef_, "
            "intercept_ and decision_function (e.g. LogisticRegression, LinearSVC, "
            "RidgeClassifier, SGDClassifier)."
        )
    check_is_fitted(clf)
    # RidgeClassifier keeps the kind of target it was fitted on in its label binarizer
    binarizer = getattr(clf, "_label_binarizer", None)
    if str(getattr(binarizer, "y_type_", "")).startswith("multilabel"):
        raise ValueError(
            f"The last step, {label} ({name}), was fitted on multilabel targets; only binary "
            "and multiclass classifiers are explained."
        )
    if not hasattr(clf, "coef_") or not hasattr(clf, "intercept_"):
        raise ValueError(
            f"The last step, {label} ({name}), has no coef_ and intercept_: its scores are not "
            "a linear function of the concept weights."
        )
    coef = clf.coef_.toarray() if sp.issparse(clf.coef_) else clf.coef_  # sparsify()'d SGD
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    classes = np.asarray(clf.classes_)
    n_scores = 1 if len(classes) == 2 else len(classes)
    if coef.shape != (n_scores, n_features):
        raise ValueError(
            f"The last step, {label} ({name}), has coef_ of shape {coef.shape}; a linear "
            f"classifier of {len(classes)} classes on {n_features} concepts has shape "
            f"({n_scores}, {n_features})."
        )
    intercept = np.broadcast_to(np.ravel(np.asarray(clf.intercept_, dtype=np.float64)), n_scores)
    # Binary scores are those of classes_[1]: a positive decision_function predicts it.
    labels = classes[1:] if len(classes) == 2 else classes
    return coef, np.array(intercept), labels


def _as_weights(W: Any) -> sp.csr_matrix:
    """The SpliceTransformer output (CSR, array or DataFrame) as CSR without stored zeros."""
    W = sp.csr_matrix(W if sp.issparse(W) else np.asarray(W), dtype=np.float64, copy=True)
    W.eliminate_zeros()
    W.sort_indices()
    return W


def explain_predictions(estimator: Any, X: Any, *, top: int | None = None):
    """Each prediction's score split exactly into one contribution per concept.

    A linear classifier on SpLiCE weights ``w`` scores class ``k`` as
    ``sum_j coef[k, j] * w_j + intercept[k]``. This function returns those terms, one row
    per nonzero weight, plus one ``"(intercept)"`` row, so that the rows of each
    (sample, class) add up to ``estimator.decision_function(X)``.

    Per-feature affine scalers between the SpliceTransformer and the classifier are folded
    in exactly: a scaler that maps ``w_j`` to ``a_j * w_j + b_j`` gives the effective
    coefficient ``coef[k, j] * a_j`` (the ``coefficient`` column), and its constant part
    ``sum_j coef[k, j] * b_j`` is added to the intercept term. Several scalers in a row
    compose.

    Parameters
    ----------
    estimator : Pipeline or sequence of estimators
        A fitted :class:`~sklearn.pipeline.Pipeline` whose first step is a fitted
        ``SpliceTransformer`` and whose last step is a linear classifier with ``coef_``,
        ``intercept_`` and ``decision_function`` (``LogisticRegression``, ``LinearSVC``,
        ``RidgeClassifier``, ``SGDClassifier``, ...), binary or multiclass. Between them,
        any number of ``StandardScaler`` (with or without mean and std), ``MaxAbsScaler``
        and ``MinMaxScaler(clip=False)`` steps, or ``"passthrough"``. Any other step, or a
        last step whose scores are not linear in its inputs, is refused with a
        ``ValueError`` naming it. A fitted search (``GridSearchCV``) stands for its
        ``best_estimator_``, and a sequence ``(splice, ..., classifier)`` of fitted
        estimators for the pipeline they make.
    X : list of inputs or array-like of shape (n_samples, d)
        What the pipeline predicts on: image paths, images, texts or embeddings, as for
        ``SpliceTransformer.transform``. It is embedded once.
    top : int, default=None
        Keep, per (sample, class), the ``top`` concepts of largest absolute contribution
        and add up all the others in one ``"(rest)"`` row (present even when it is zero).
        ``None`` keeps every concept, with no ``"(rest)"`` row.

    Returns
    -------
    contributions : pandas.DataFrame
        One row per term, with the columns

        - ``sample`` (int): position of the input in ``X``;
        - ``class``: the class label whose score the term belongs to; for a binary
          classifier only ``classes_[1]``, whose score is the sign-bearing
          ``decision_function`` (positive predicts ``classes_[1]``);
        - ``term`` (str): the concept word, ``"(intercept)"`` or ``"(rest)"``;
        - ``kind`` (str): ``"concept"``, ``"intercept"`` or ``"rest"``;
        - ``weight`` (float): the concept's SpLiCE weight (NaN for intercept and rest);
        - ``coefficient`` (float): the effective coefficient, scalers included (NaN for
          intercept and rest);
        - ``contribution`` (float): ``weight * coefficient`` for a concept, the intercept
          (scalers' constant parts included), or the sum of the cut concepts.

        Only concepts with a nonzero weight appear. Rows are ordered by sample, then class
        (in ``classes_`` order), then concepts by decreasing absolute contribution (ties in
        vocabulary order), then ``"(intercept)"`` and ``"(rest)"``. The contributions of
        each (sample, class) sum to its ``decision_function`` value up to rounding.

    Raises
    ------
    ValueError
        If a step cannot be accounted for exactly (named in the message), or if ``top``
        is not a nonnegative integer.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_splice import SpliceTransformer, explain_predictions
    >>> class Toy:  # stands in for CLIP: fixed random vectors of width 8
    ...     def cache_identity(self):
    ...         return "toy-width-8"
    ...     def encode_text(self, texts):
    ...         return np.random.RandomState(0).randn(len(texts), 8)
    ...     def encode_image(self, X):
    ...         return np.asarray(X)
    >>> rng = np.random.RandomState(1)
    >>> X, y = rng.randn(20, 8), ["cat"] * 10 + ["dog"] * 10
    >>> pipe = make_pipeline(
    ...     SpliceTransformer(Toy(), vocabulary=["sofa", "grass", "ball", "leash", "yarn"],
    ...                       l1_penalty=0.05, device="cpu", cache_dir=False),
    ...     LogisticRegression(),
    ... ).fit(X, y)
    >>> parts = explain_predictions(pipe, X[:2], top=2)
    >>> list(parts.columns)
    ['sample', 'class', 'term', 'kind', 'weight', 'coefficient', 'contribution']
    >>> totals = parts.groupby("sample")["contribution"].sum()
    >>> bool(np.allclose(totals, pipe.decision_function(X[:2]), rtol=0, atol=1e-12))
    True
    """
    top = check_top(top)
    steps = _steps(estimator)
    (first_label, splice), middle, (last_label, clf) = steps[0], steps[1:-1], steps[-1]
    if not isinstance(splice, SpliceTransformer):
        raise ValueError(
            f"The first step, {first_label} ({type(splice).__name__}), is not a "
            "SpliceTransformer: contributions are given per concept of its output."
        )
    check_is_fitted(splice)
    names = np.asarray(splice.get_feature_names_out(), dtype=object)
    p = len(names)

    # Compose the scalers into one map w -> a * w + b, refusing anything else up front,
    # before the (slow) embedding.
    a, b = np.ones(p), np.zeros(p)
    scalers = []
    for label, step in middle:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        a_step, b_step = _affine(label, step, p)
        a, b = a_step * a, a_step * b + b_step
        scalers.append(step)
    coef, intercept, labels = _linear_parts(last_label, clf, p)
    coef_eff = coef * a
    intercept_eff = intercept + coef @ b

    # The one embedding of X; the scalers and the classifier then run on its weights only.
    Wout = splice.transform(X)
    Xt = Wout
    for step in scalers:
        Xt = step.transform(Xt)
    W = _as_weights(Wout)
    n, K = W.shape[0], len(labels)
    scores = np.asarray(clf.decision_function(Xt), dtype=np.float64)
    scores = scores.reshape(n, 1) if scores.ndim == 1 else scores

    # Concept terms, one per (nonzero weight, class), as flat arrays.
    counts = np.diff(W.indptr)
    sample = np.repeat(np.repeat(np.arange(n), counts), K)
    klass = np.tile(np.arange(K), W.nnz)
    col = np.repeat(W.indices, K)
    weight = np.repeat(W.data, K)
    coefficient = coef_eff[klass, col]
    contribution = weight * coefficient
    group = sample * K + klass

    order = np.lexsort((col, -np.abs(contribution), klass, sample))
    sample, klass, col, weight, coefficient, contribution, group = (
        v[order] for v in (sample, klass, col, weight, coefficient, contribution, group)
    )
    # Position of each term within its (sample, class) group, the groups being contiguous.
    n_groups = n * K
    sizes = np.repeat(counts, K)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    rank = np.arange(W.nnz * K) - offsets[group]
    kept = rank < top if top is not None else np.ones(len(rank), dtype=bool)

    g_sample, g_class = np.repeat(np.arange(n), K), np.tile(np.arange(K), n)
    nan, zero = np.full(n_groups, np.nan), np.zeros(n_groups, dtype=np.intp)
    # Each piece: sample, class, term, kind, weight, coefficient, contribution, kind rank, rank.
    pieces = [
        (sample[kept], klass[kept], names[col[kept]], np.full(kept.sum(), "concept", object),
         weight[kept], coefficient[kept], contribution[kept],
         np.full(kept.sum(), _CONCEPT), rank[kept]),
        (g_sample, g_class, np.full(n_groups, INTERCEPT, object),
         np.full(n_groups, "intercept", object), nan, nan, intercept_eff[g_class],
         np.full(n_groups, _INTERCEPT), zero),
    ]
    if top is not None:
        rest = np.bincount(group[~kept], weights=contribution[~kept], minlength=n_groups)
        pieces.append(
            (g_sample, g_class, np.full(n_groups, REST, object),
             np.full(n_groups, "rest", object), nan, nan, rest, np.full(n_groups, _REST), zero)
        )
    s, k, term, kind, wt, cf, ct, key, rk = (np.concatenate(c) for c in zip(*pieces))
    final = np.lexsort((rk, key, k, s))
    frame = _pandas().DataFrame(
        {
            "sample": s[final].astype(np.int64),
            "class": labels[k[final]],
            "term": term[final],
            "kind": kind[final],
            "weight": wt[final].astype(np.float64),
            "coefficient": cf[final].astype(np.float64),
            "contribution": ct[final].astype(np.float64),
        },
        columns=COLUMNS,
    )
    _check_totals(frame["contribution"].to_numpy(), s[final] * K + k[final], scores,
                  n_groups, last_label, clf)
    return frame


def _check_totals(contribution, group, scores, n_groups, label, clf):
    """Refuse a last step whose decision_function is not ``coef_ @ x + intercept_``.

    ``coef_`` and ``intercept_`` exist on some classifiers whose scores are not that linear
    function (e.g. ``SVC(kernel="linear")`` with three or more classes, which votes).
    """
    totals = np.bincount(group, weights=contribution, minlength=n_groups)
    magnitude = np.bincount(group, weights=np.abs(contribution), minlength=n_groups)
    expected = scores.reshape(-1) if scores.size == n_groups else None
    if expected is None or not np.all(
        np.abs(totals - expected) <= 1e-9 * (1.0 + magnitude + np.abs(expected))
    ):
        raise ValueError(
            f"The last step, {label} ({type(clf).__name__}), has scores that are not "
            "coef_ @ x + intercept_ (its decision_function differs), so they cannot be "
            "split per concept."
        )
