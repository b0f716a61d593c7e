"""Reading SpLiCE weights: top concepts, concept distributions, class comparisons."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._dictionary import normalize_rows

__all__ = [
    "top_concepts",
    "top_concepts_frame",
    "concept_distribution",
    "decomposition_quality",
    "compare_classes",
    "coefficient_table",
]


def _pandas():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas comes with the test extra
        raise ImportError("This function returns a DataFrame: `pip install pandas`.") from exc
    return pd


def check_top(top):
    """``top`` as an int, or None; anything but a nonnegative integer is an error.

    Parameters
    ----------
    top : int or None

    Returns
    -------
    top : int or None
    """
    if top is None:
        return None
    if isinstance(top, bool) or not isinstance(top, Integral) or top < 0:
        raise ValueError(f"top must be None or a nonnegative integer, got {top!r}.")
    return int(top)


def _check(W, feature_names):
    # a copy: stored zeros (left by thresholding W.data) are dropped, the caller's W stays
    W = sp.csr_matrix(W, copy=True)
    W.eliminate_zeros()
    names = np.asarray(feature_names, dtype=object)
    if W.shape[1] != len(names):
        raise ValueError(
            f"W has {W.shape[1]} columns but {len(names)} feature names were given."
        )
    if not np.isfinite(W.data).all():
        raise ValueError("W has NaN or infinite weights.")
    if W.nnz and W.data.min() < 0:
        raise ValueError("W has negative weights; SpLiCE weights are nonnegative.")
    return W, names


def top_concepts(W: Any, feature_names: Any, k: int = 10) -> list[list[tuple[str, float]]]:
    """The ``k`` largest (concept, weight) pairs of each row, largest first.

    Parameters
    ----------
    W : array-like or sparse matrix of shape (n_samples, n_concepts)
        Output of ``SpliceTransformer.transform``.
    feature_names : array-like of str
        ``SpliceTransformer.get_feature_names_out()``.
    k : int, default=10
        Pairs per sample (fewer when fewer weights are nonzero).

    Returns
    -------
    pairs : list of list of (str, float)
        One list per row of ``W``: its nonzero weights as ``(concept, weight)`` pairs,
        largest first (ties in column order), at most ``k`` of them.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_splice import top_concepts
    >>> top_concepts(np.array([[0.0, 0.5, 0.2]]), ["cat", "dog", "tree"], k=2)
    [[('dog', 0.5), ('tree', 0.2)]]
    """
    W, names = _check(W, feature_names)
    out = []
    for i in range(W.shape[0]):
        row = W.getrow(i)
        order = np.argsort(-row.data, kind="stable")[:k]
        out.append([(str(names[row.indices[j]]), float(row.data[j])) for j in order])
    return out


def top_concepts_frame(W: Any, feature_names: Any, k: int = 10, index: Any = None):
    """:func:`top_concepts` as a tidy DataFrame: ``sample, rank, concept, weight``.

    Parameters
    ----------
    W : array-like or sparse matrix of shape (n_samples, n_concepts)
        Output of ``SpliceTransformer.transform``.
    feature_names : array-like of str
        ``SpliceTransformer.get_feature_names_out()``.
    k : int, default=10
        Rows per sample (fewer when fewer weights are nonzero).
    index : array-like of length n_samples, default=None
        Labels of the samples (e.g. their file paths). ``None`` numbers them 0..n-1.

    Returns
    -------
    frame : pandas.DataFrame
        Columns ``sample, rank, concept, weight``: one row per (sample, concept) pair,
        ``rank`` 1 being the sample's largest weight. Needs pandas.

    Examples
    --------
    >>> from sklearn_splice import top_concepts_frame
    >>> top_concepts_frame([[0.0, 0.5, 0.2]], ["cat", "dog", "tree"], index=["a.jpg"])
      sample  rank concept  weight
    0  a.jpg     1     dog     0.5
    1  a.jpg     2    tree     0.2
    """
    pd = _pandas()
    pairs = top_concepts(W, feature_names, k)
    labels = list(range(len(pairs))) if index is None else list(index)
    rows = [
        (labels[i], rank, concept, weight)
        for i, sample in enumerate(pairs)
        for rank, (concept, weight) in enumerate(sample, 1)
    ]
    return pd.DataFrame(rows, columns=["sample", "rank", "concept", "weight"])


def _groups(n, y):
    if y is None:
        return [("all", np.arange(n))]
    y = np.asarray(y)
    if len(y) != n:
        raise ValueError(f"y has {len(y)} labels for {n} samples.")
    return [(label, np.flatnonzero(y == label)) for label in np.unique(y)]


def _group_sums(W, feature_names, y, classes=None):
    """The concept names, and per group ``(label, n_samples, weight sums, nonzero counts)``.

    The one place that tells a matrix from a :class:`DecomposedDataset`, whose sums are
    dask reductions over its Parquet shards. ``classes``: only these groups of a matrix.
    """
    from ._dataset_reading import DecomposedDataset, concept_counts

    if isinstance(W, DecomposedDataset):
        names = W.concepts
        if feature_names is not None and list(np.asarray(feature_names)) != list(names):
            raise ValueError(
                "feature_names differ from the concepts of the decomposed data set; "
                "pass None to use its own."
            )
        if y is not None and not (isinstance(y, str) and y == "label"):
            raise ValueError(
                "For a decomposed data set, y must be None (one group) or 'label' (the "
                f"labels stored with its inputs), got {type(y).__name__}."
            )
        return names, concept_counts(W, by_label=y is not None)
    if feature_names is None:
        raise ValueError("feature_names is required with a weight matrix.")
    W, names = _check(W, feature_names)
    if classes is None:
        chosen = _groups(W.shape[0], y)
    else:
        y = np.asarray(y)
        if len(y) != W.shape[0]:
            raise ValueError(f"y has {len(y)} labels for {W.shape[0]} samples.")
        chosen = [(label, np.flatnonzero(y == label)) for label in classes]
    groups = []
    for label, rows in chosen:
        sub = W[rows]
        groups.append(
            (
                label,
                len(rows),
                np.asarray(sub.sum(axis=0), dtype=np.float64).ravel(),
                np.bincount(sub.indices, minlength=W.shape[1]),
            )
        )
    return names, groups


def concept_distribution(
    W: Any, feature_names: Any = None, y: Any = None, *, min_prevalence: float = 0.0
):
    """Mean weight and prevalence of every concept, over the data set or per class.

    Prevalence is the share of samples in which the concept's weight is nonzero.

    A :class:`DecomposedDataset` (the Parquet output of :func:`decompose_dataset`) is
    accepted in place of ``W``: the same figures are then computed with dask dataframes,
    shard by shard, without loading every code into one process. Its unreadable inputs
    are left out of ``n_samples`` (see :meth:`DecomposedDataset.input_counts`).

    Parameters
    ----------
    W : array-like, sparse matrix of shape (n_samples, n_concepts) or DecomposedDataset
        Output of ``SpliceTransformer.transform``, or of :func:`read_decomposition`.
    feature_names : array-like of str, default=None
        ``SpliceTransformer.get_feature_names_out()``; required for a matrix. For a
        DecomposedDataset, ``None`` (its own concepts) or the same names.
    y : array-like of shape (n_samples,) or "label", default=None
        Class labels: one group per distinct label. ``None`` makes one group, ``"all"``.
        For a DecomposedDataset, ``"label"`` groups by the labels stored with the inputs.
    min_prevalence : float, default=0.0
        Leave out the concepts whose prevalence in a group is below this share.

    Returns
    -------
    distribution : pandas.DataFrame
        Columns ``group, concept, mean_weight, prevalence, n_samples``, sorted by group,
        then prevalence and mean weight (largest first). ``group`` is ``"all"`` without
        ``y``. Concepts below ``min_prevalence`` are left out.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_splice import concept_distribution
    >>> W = np.array([[0.2, 0.0], [0.4, 0.1], [0.0, 0.3]])
    >>> concept_distribution(W, ["sea", "sand"], y=["beach", "beach", "desert"]).round(2)
        group concept  mean_weight  prevalence  n_samples
    0   beach     sea         0.30         1.0          2
    1   beach    sand         0.05         0.5          2
    2  desert    sand         0.30         1.0          1
    3  desert     sea         0.00         0.0          1
    """
    pd = _pandas()
    names, groups = _group_sums(W, feature_names, y)
    frames = []
    for label, n_samples, sums, counts in groups:
        n = max(n_samples, 1)
        frame = pd.DataFrame(
            {
                "group": label,
                "concept": names,
                "mean_weight": sums / n,
                "prevalence": counts / n,
                "n_samples": n_samples,
            }
        )
        frame = frame[frame["prevalence"] >= min_prevalence]
        frames.append(
            frame.sort_values(["prevalence", "mean_weight"], ascending=False, kind="stable")
        )
    return pd.concat(frames, ignore_index=True)


def decomposition_quality(W: Any, embeddings: Any, splice: Any, y: Any = None):
    """Sparsity (L0) and cosine fidelity of the decompositions, overall or per class.

    Three cosines are averaged per group. With ``z`` an input's unit embedding, ``w`` its
    weights, ``C`` the dictionary (``splice.components_``), ``mu`` the mean embedding
    (``splice.mean_``) and ``normalise`` scaling to unit length (zero stays zero):

    - ``mean_fidelity``: ``cos(z, normalise(normalise(C^T w) + mu))``, the cosine between
      ``z`` and its SpLiCE recomposition (``splice.inverse_transform(w)``).
    - ``mean_baseline_fidelity``: ``cos(z, normalise(mu))``, the same cosine for the
      recomposition of all-zero weights, i.e. what the mean alone achieves. CLIP
      embeddings of one data set share a large common component, so this is often high
      (around 0.7 on MSCOCO images): ``mean_fidelity`` is informative only by how much it
      exceeds it. It can even fall below it: ``normalise(C^T w)`` has length one whatever
      the length of ``z - mu``, so a concept part that points only roughly the right way
      can pull the recomposition further from ``z`` than the mean alone.
    - ``mean_centred_fidelity``: ``cos(normalise(z - mu), normalise(C^T w))``, how well the
      concepts reproduce the part of ``z`` that the mean does not explain, the part that
      SpLiCE actually decomposes. It is not inflated by the mean; it is 0 where ``w`` is
      all zero.

    Inputs with an all-zero embedding (unreadable images) count as 0 in all three.

    Parameters
    ----------
    W : array-like or sparse matrix of shape (n_samples, n_concepts)
        Output of ``splice.transform``.
    embeddings : array-like of shape (n_samples, d)
        The inputs' CLIP embeddings, e.g. ``splice.embed(X)``; they need not be unit length.
    splice : SpliceTransformer
        The fitted transformer that produced ``W``.
    y : array-like of shape (n_samples,), default=None
        Class labels: one row per distinct label. ``None`` makes one row, ``"all"``.

    Returns
    -------
    quality : pandas.DataFrame
        Columns ``group, n_samples, mean_l0, median_l0, mean_fidelity,
        mean_baseline_fidelity, mean_centred_fidelity``; ``mean_l0`` and ``median_l0``
        count the nonzero weights per sample, the last three are the mean cosines above.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_splice import SpliceTransformer, decomposition_quality
    >>> class Toy:  # stands in for CLIP: fixed random vectors of width 4
    ...     def cache_identity(self):
    ...         return "toy-width-4"
    ...     def encode_text(self, texts):
    ...         return np.random.RandomState(0).randn(len(texts), 4)
    ...     def encode_image(self, X):
    ...         return np.asarray(X)
    >>> X = np.random.RandomState(1).randn(6, 4)
    >>> splice = SpliceTransformer(Toy(), vocabulary=list("abcdefgh"), l1_penalty=0.01,
    ...                            device="cpu", cache_dir=False).fit(X)
    >>> q = decomposition_quality(splice.transform(X), splice.embed(X), splice)
    >>> list(q.columns)  # doctest: +NORMALIZE_WHITESPACE
    ['group', 'n_samples', 'mean_l0', 'median_l0', 'mean_fidelity',
     'mean_baseline_fidelity', 'mean_centred_fidelity']
    >>> bool((q["mean_fidelity"] > q["mean_baseline_fidelity"]).all())
    True
    """
    pd = _pandas()
    W, _ = _check(W, splice.get_feature_names_out())
    Z = np.asarray(embeddings, dtype=np.float64)
    d = splice.components_.shape[1]
    if Z.ndim != 2 or Z.shape != (W.shape[0], d):
        raise ValueError(
            f"embeddings has shape {Z.shape} but W has {W.shape[0]} rows and the transformer "
            f"embeds into {d} dimensions; pass splice.embed(X) for the X that gave W."
        )
    if not np.isfinite(Z).all():
        raise ValueError("embeddings contains NaN or infinite values.")
    from ._transformer import _centred

    Z = normalize_rows(Z)
    mean = np.asarray(splice.mean_, dtype=np.float64)
    concepts = normalize_rows(np.asarray(W @ np.asarray(splice.components_, dtype=np.float64)))
    recomposed = normalize_rows(concepts + mean)  # splice.inverse_transform(W)
    cos = (recomposed * Z).sum(axis=1)
    baseline = Z @ normalize_rows(mean[None, :])[0]
    # the solver's own centred target (all-zero where no direction is left)
    centred_cos = (_centred(Z, mean) * concepts).sum(axis=1)
    l0 = np.diff(W.indptr)
    rows = [
        (
            label,
            len(idx),
            float(l0[idx].mean()),
            float(np.median(l0[idx])),
            float(cos[idx].mean()),
            float(baseline[idx].mean()),
            float(centred_cos[idx].mean()),
        )
        for label, idx in _groups(W.shape[0], y)
    ]
    columns = [
        "group",
        "n_samples",
        "mean_l0",
        "median_l0",
        "mean_fidelity",
        "mean_baseline_fidelity",
        "mean_centred_fidelity",
    ]
    return pd.DataFrame(rows, columns=columns)


def compare_classes(
    W: Any, feature_names: Any = None, y: Any = None, class_a: Any = None, class_b: Any = None,
    *, top: int = 20, min_prevalence: float = 0.0,
):
    """Concepts far more prevalent in ``class_a`` than in ``class_b``.

    The paper's check for spurious correlations (e.g. "swimwear" far more frequent in one
    of two classes).

    A :class:`DecomposedDataset` is accepted in place of ``W``, as in
    :func:`concept_distribution`: its stored labels are the classes.

    Parameters
    ----------
    W : array-like, sparse matrix of shape (n_samples, n_concepts) or DecomposedDataset
        Output of ``SpliceTransformer.transform``, or of :func:`read_decomposition`.
    feature_names : array-like of str, default=None
        ``SpliceTransformer.get_feature_names_out()``; required for a matrix. For a
        DecomposedDataset, ``None`` (its own concepts) or the same names.
    y : array-like of shape (n_samples,) or "label", default=None
        Class labels; required for a matrix. For a DecomposedDataset, ``None`` or
        ``"label"``: the labels stored with its inputs.
    class_a : object
        The label of the class whose concepts are looked for (required).
    class_b : object
        The label of the class it is compared with (required).
    top : int, default=20
        Number of concepts returned.
    min_prevalence : float, default=0.0
        Leave out the concepts whose prevalence is below this share in both classes.

    Returns
    -------
    table : pandas.DataFrame
        ``concept, prevalence_a, prevalence_b, difference, mean_weight_a, mean_weight_b``,
        the ``top`` largest differences ``prevalence_a - prevalence_b`` first.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_splice import compare_classes
    >>> W = np.array([[0.3, 0.2], [0.4, 0.0], [0.0, 0.1]])
    >>> compare_classes(W, ["swimwear", "bird"], ["water", "water", "land"],
    ...                 "water", "land", top=1)[["concept", "difference"]]
        concept  difference
    0  swimwear         1.0
    """
    pd = _pandas()
    if class_a is None or class_b is None:
        raise ValueError("compare_classes needs class_a and class_b.")
    from ._dataset_reading import DecomposedDataset

    dataset = isinstance(W, DecomposedDataset)
    if y is None and not dataset:
        raise ValueError("y (the class labels) is required with a weight matrix.")
    if dataset:
        names, groups = _group_sums(W, feature_names, "label" if y is None else y)
    else:
        names, groups = _group_sums(W, feature_names, y, classes=(class_a, class_b))
    stats = {}
    for key, label in (("a", class_a), ("b", class_b)):
        n, sums, counts = next(
            ((n, s, c) for k, n, s, c in groups if k == label), (0, None, None)
        )
        if not n:
            raise ValueError(f"class {label!r} has no samples in y.")
        stats[key] = (counts / n, sums / n)
    frame = pd.DataFrame(
        {
            "concept": names,
            "prevalence_a": stats["a"][0],
            "prevalence_b": stats["b"][0],
            "difference": stats["a"][0] - stats["b"][0],
            "mean_weight_a": stats["a"][1],
            "mean_weight_b": stats["b"][1],
        }
    )
    frame = frame[np.maximum(frame["prevalence_a"], frame["prevalence_b"]) >= min_prevalence]
    frame = frame.sort_values("difference", ascending=False, kind="stable")
    return frame.head(top).reset_index(drop=True)


def coefficient_table(classifier: Any, feature_names: Any, *, top: int = 10):
    """A fitted linear classifier's coefficients as concept words, largest first per class.

    For a binary classifier, the positive class gets the largest coefficients and the
    negative class the most negative ones (shown with their sign flipped).

    Parameters
    ----------
    classifier : estimator
        A fitted linear classifier with ``coef_`` of shape (n_concepts,), (1, n_concepts)
        or (n_classes, n_concepts), e.g. ``LogisticRegression`` trained on SpLiCE weights.
        Its ``classes_``, when present, name the classes.
    feature_names : array-like of str
        ``SpliceTransformer.get_feature_names_out()``.
    top : int, default=10
        Concepts per class.

    Returns
    -------
    table : pandas.DataFrame
        Columns ``class, rank, concept, coefficient``: the ``top`` concepts of each class,
        rank 1 being the largest coefficient.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_splice import coefficient_table
    >>> X = np.array([[1.0, 0.0], [0.8, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> clf = LogisticRegression().fit(X, ["sea", "sea", "snow", "snow"])
    >>> coefficient_table(clf, ["waves", "ice"], top=1)[["class", "concept"]]
      class concept
    0  snow     ice
    1   sea   waves
    """
    pd = _pandas()
    coef = np.atleast_2d(np.asarray(classifier.coef_, dtype=np.float64))
    names = np.asarray(feature_names, dtype=object)
    classes = list(getattr(classifier, "classes_", range(coef.shape[0])))
    if coef.shape[1] != len(names):
        raise ValueError(
            f"The classifier has {coef.shape[1]} coefficients for {len(names)} names."
        )
    if coef.shape[0] == 1 and len(classes) == 2:
        per_class = [(classes[1], coef[0]), (classes[0], -coef[0])]
    else:
        per_class = list(zip(classes, coef))
    rows = []
    for label, values in per_class:
        order = np.argsort(-values, kind="stable")[:top]
        rows.extend(
            (label, rank, str(names[j]), float(values[j])) for rank, j in enumerate(order, 1)
        )
    return pd.DataFrame(rows, columns=["class", "rank", "concept", "coefficient"])
