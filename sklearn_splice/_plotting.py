"""Matplotlib charts of concept weights (optional: ``pip install sklearn-splice[plot]``).

Each function draws on ``ax`` (a new figure when None) and returns the Axes, like
scikit-learn's ``Display`` objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plot_concepts", "plot_prevalence", "plot_coefficients"]


def _axes(ax, height, *, size=None):
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib: `pip install matplotlib` (or the [plot] extra)."
        ) from exc
    _, ax = plt.subplots(figsize=size or (6, max(2.0, 0.3 * height + 1)))
    return ax


def plot_concepts(
    concepts: Any,
    weights: Any = None,
    *,
    top: int = 10,
    ax: Any = None,
    title: str | None = None,
):
    """Horizontal bars of the largest concept weights (one sample's, or a class's means).

    Parameters
    ----------
    concepts : list of (str, float) pairs, pandas.Series or array-like of str
        The concepts: ``(concept, weight)`` pairs (e.g. one list of :func:`top_concepts`),
        a Series of weights indexed by concept, or plain names with ``weights``.
    weights : array-like of float, default=None
        The weights of plain concept names, in the same order; ``None`` for pairs or a
        Series.
    top : int, default=10
        Number of bars: the ``top`` largest weights, the largest at the top.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; ``None`` draws on a new figure.
    title : str, default=None
        Title of the axes; ``None`` leaves it empty.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes drawn on.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_splice import plot_concepts
    >>> ax = plot_concepts([("sea", 0.5), ("sand", 0.2), ("sky", 0.3)], top=2)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['sky', 'sea']
    """
    if weights is None:
        if hasattr(concepts, "index") and hasattr(concepts, "to_numpy"):
            names, values = list(concepts.index), concepts.to_numpy()
        else:
            pairs = list(concepts)
            names, values = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        names, values = list(concepts), list(weights)
    values = np.asarray(values, dtype=float)
    order = np.argsort(-values, kind="stable")[:top][::-1]
    ax = _axes(ax, len(order))
    ax.barh([str(names[i]) for i in order], values[order], color="tab:blue")
    ax.set_xlabel("weight")
    if title:
        ax.set_title(title)
    return ax


def plot_prevalence(
    distribution: Any, concepts: Any, *, ax: Any = None, title: str | None = None
):
    """Side-by-side prevalence of chosen concepts in each class.

    Parameters
    ----------
    distribution : pandas.DataFrame
        The output of :func:`concept_distribution`, computed with ``y`` for one bar per
        class (without it, one bar per concept for the group ``"all"``).
    concepts : array-like of str
        The concepts to show, in this order; each must appear in ``distribution``.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; ``None`` draws on a new figure.
    title : str, default=None
        Title of the axes; ``None`` leaves it empty.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes drawn on, with a legend of the classes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_splice import concept_distribution, plot_prevalence
    >>> dist = concept_distribution([[0.3, 0.0], [0.0, 0.2]], ["sea", "snow"], ["beach", "ski"])
    >>> ax = plot_prevalence(dist, ["sea", "snow"])
    >>> len(ax.patches)
    4
    """
    groups = list(dict.fromkeys(distribution["group"]))
    concepts = list(concepts)
    missing = [c for c in concepts if c not in set(distribution["concept"])]
    if missing:
        raise ValueError(f"Concepts not in the distribution: {missing}")
    table = distribution.set_index(["group", "concept"])["prevalence"]
    ax = _axes(ax, len(concepts), size=(max(6.0, 0.5 * len(concepts) * len(groups) + 2), 4.5))
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(concepts))
    for k, group in enumerate(groups):
        values = [float(table.get((group, c), 0.0)) for c in concepts]
        ax.bar(x + k * width, values, width, label=str(group))
    ax.set_xticks(x + width * (len(groups) - 1) / 2)
    ax.set_xticklabels(concepts, rotation=45, ha="right")
    ax.set_ylabel("prevalence")
    ax.set_ylim(0, 1.05)
    ax.legend(title="class", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        ax.set_title(title)
    return ax


def plot_coefficients(
    classifier: Any,
    feature_names: Any,
    *,
    top: int = 10,
    class_index: int = 0,
    ax: Any = None,
    title: str | None = None,
):
    """A linear classifier's largest coefficients (by absolute value) as concept words.

    Positive coefficients are drawn in blue, negative ones in red.

    Parameters
    ----------
    classifier : estimator
        A fitted linear classifier with ``coef_``, e.g. ``LogisticRegression`` trained on
        SpLiCE weights.
    feature_names : array-like of str
        ``SpliceTransformer.get_feature_names_out()``.
    top : int, default=10
        Number of bars: the ``top`` largest coefficients by absolute value.
    class_index : int, default=0
        Row of ``coef_`` to draw (a binary classifier has only row 0, which favours
        ``classes_[1]``).
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; ``None`` draws on a new figure.
    title : str, default=None
        Title of the axes; ``None`` leaves it empty.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes drawn on.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_splice import plot_coefficients
    >>> clf = LogisticRegression().fit([[1.0, 0.0], [0.0, 1.0]], [0, 1])
    >>> len(plot_coefficients(clf, ["waves", "ice"]).patches)
    2
    """
    coef = np.atleast_2d(np.asarray(classifier.coef_, dtype=float))[class_index]
    names = np.asarray(feature_names, dtype=object)
    order = np.argsort(-np.abs(coef), kind="stable")[:top][::-1]
    ax = _axes(ax, len(order))
    colors = ["tab:blue" if coef[i] >= 0 else "tab:red" for i in order]
    ax.barh([str(names[i]) for i in order], coef[order], color=colors)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("coefficient")
    if title:
        ax.set_title(title)
    return ax
