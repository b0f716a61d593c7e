"""Matplotlib charts of concept weights (optional: ``pip install sklearn-splice[plot]``).

The charts are scikit-learn style Display objects: the constructor stores the numbers to
draw, ``from_*`` class methods compute them from weights, distributions, estimators or
contribution tables, and ``plot(ax=None, **kwargs)`` draws them and returns the Display,
with the axes (``ax_``), the figure (``figure_``) and the bars (``bars_``) as attributes.
The ``plot_*`` functions are thin wrappers that return the Axes.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np

from ._contributions import INTERCEPT, REST
from ._explain import check_top

__all__ = [
    "ConceptDisplay",
    "PrevalenceDisplay",
    "CoefficientDisplay",
    "ContributionDisplay",
    "plot_concepts",
    "plot_prevalence",
    "plot_coefficients",
]

TOTAL = "decision function"

POSITIVE, NEGATIVE = "tab:blue", "tab:red"
# Matplotlib aliases of a bar's colour: a user's choice of any of them replaces our colours.
_COLOR_KEYS = ("color", "facecolor", "fc")


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib: `pip install matplotlib` (or the [plot] extra)."
        ) from exc
    return plt


def _figure_and_axes(ax, size):
    """``(figure, axes)``: ``ax`` and its figure, or a new figure of ``size`` inches."""
    if ax is None:
        _, ax = _pyplot().subplots(figsize=size)
    return ax.figure, ax


def _barh_size(n_bars):
    return (6, max(2.0, 0.3 * n_bars + 1))


def _style(defaults, kwargs):
    """Our bar style updated with the user's keyword arguments, which win."""
    style = dict(defaults)
    if any(key in kwargs for key in _COLOR_KEYS):
        style.pop("color", None)
    style.update(kwargs)
    return style


def _is_per_bar(key, value, n):
    """Whether a keyword argument gives one value per bar (not one colour for all)."""
    if not isinstance(value, (list, np.ndarray)) or len(value) != n:
        return False
    if key in _COLOR_KEYS and all(isinstance(v, Real) for v in value):
        return False  # an RGB(A) colour given as a list of numbers
    return True


def _per_bar_reversed(kwargs, n):
    """``kwargs`` with one-value-per-bar lists reversed, for bars drawn from the bottom up."""
    return {k: list(v)[::-1] if _is_per_bar(k, v, n) else v for k, v in kwargs.items()}


def _check_index(index, n, what):
    if isinstance(index, bool) or not isinstance(index, Integral) or not 0 <= index < n:
        raise ValueError(f"index must be an integer in [0, {n}) ({n} {what}), got {index!r}.")
    return int(index)


def _ranked(key, top):
    """Positions of the ``top`` largest ``key`` values, largest first, ties in order."""
    return np.argsort(-np.asarray(key, dtype=float), kind="stable")[:check_top(top)]


def _ranked_barh(ax, names, values, colors, kwargs):
    """Horizontal bars, ``names[0]`` at the top; returns the bars in the order of ``names``.

    The bars are drawn from the bottom up (``ax.patches`` runs from the last name to the
    first).
    """
    n = len(values)
    up = slice(None, None, -1)
    style = _style({"color": list(colors)[up]}, _per_bar_reversed(kwargs, n))
    container = ax.barh(np.arange(n), np.asarray(values, dtype=float)[up], **style)
    ax.set_yticks(np.arange(n))
    ax.set_yticklabels(list(names)[up])
    return list(container)[up]


class ConceptDisplay:
    """Horizontal bar chart of concepts and their values, the first at the top.

    Build it with :meth:`from_weights` (one input's largest SpLiCE weights, or the mean
    weights over inputs) or :meth:`from_distribution` (a class's most prevalent concepts
    from :func:`concept_distribution`); the constructor takes the bars as they are.

    Parameters
    ----------
    concepts : array-like of str
        The concept of each bar, drawn in this order from the top.
    values : array-like of float
        The length of each bar, in the order of ``concepts``.
    value_name : str, default="weight"
        What the values are; the label of the x axis.
    title : str, default=None
        Title of the axes; ``None`` leaves it empty.

    Attributes
    ----------
    bars_ : list of matplotlib.patches.Rectangle
        The bars, in the order of ``concepts``.
    ax_ : matplotlib.axes.Axes
        The axes drawn on.
    figure_ : matplotlib.figure.Figure
        The figure of ``ax_``.

    See Also
    --------
    plot_concepts : The same chart from (concept, weight) pairs, returning the axes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn_splice import ConceptDisplay
    >>> W = np.array([[0.5, 0.0, 0.3], [0.1, 0.2, 0.0]])
    >>> disp = ConceptDisplay.from_weights(W, ["sea", "snow", "sand"], index=0)
    >>> disp.concepts, [float(bar.get_width()) for bar in disp.bars_]
    (['sea', 'sand'], [0.5, 0.3])
    """

    def __init__(self, concepts, values, *, value_name="weight", title=None):
        self.concepts = concepts
        self.values = values
        self.value_name = value_name
        self.title = title

    def plot(self, ax=None, **kwargs):
        """Draw the bars.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; ``None`` draws on a new figure.
        **kwargs : dict
            Keyword arguments of :meth:`matplotlib.axes.Axes.barh` (e.g. ``color``), which
            replace the defaults.

        Returns
        -------
        display : ConceptDisplay
            This display, with ``bars_``, ``ax_`` and ``figure_`` set.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from sklearn_splice import ConceptDisplay
        >>> disp = ConceptDisplay(["sea", "sand"], [0.5, 0.2], title="beach").plot(color="teal")
        >>> [t.get_text() for t in disp.ax_.get_yticklabels()]
        ['sand', 'sea']
        """
        names = [str(c) for c in self.concepts]
        values = np.asarray(self.values, dtype=float).reshape(-1)
        if len(names) != len(values):
            raise ValueError(f"{len(names)} concepts were given for {len(values)} values.")
        fig, ax = _figure_and_axes(ax, _barh_size(len(values)))
        self.bars_ = _ranked_barh(ax, names, values, [POSITIVE] * len(values), kwargs)
        ax.set_xlabel(self.value_name)
        if self.title:
            ax.set_title(self.title)
        self.ax_, self.figure_ = ax, fig
        return self

    @classmethod
    def from_weights(
        cls, W, feature_names, *, index=None, top=10, ax=None, title=None, **kwargs
    ):
        """Chart one input's largest SpLiCE weights, or the largest mean weights.

        Parameters
        ----------
        W : array-like or sparse matrix of shape (n_samples, n_concepts)
            Output of ``SpliceTransformer.transform``.
        feature_names : array-like of str
            ``SpliceTransformer.get_feature_names_out()``.
        index : int, default=None
            Row of ``W`` to chart; ``None`` charts the mean weight of each concept over
            all rows.
        top : int, default=10
            Number of bars: the ``top`` largest nonzero values, the largest at the top;
            ``None`` for every nonzero value.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; ``None`` draws on a new figure.
        title : str, default=None
            Title of the axes; ``None`` says which input, or how many, the chart shows.
        **kwargs : dict
            Keyword arguments of :meth:`plot`.

        Returns
        -------
        display : ConceptDisplay
            The display, drawn.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from sklearn_splice import ConceptDisplay
        >>> W = [[0.5, 0.0, 0.3], [0.1, 0.2, 0.0]]
        >>> disp = ConceptDisplay.from_weights(W, ["sea", "snow", "sand"], top=2)
        >>> disp.concepts, disp.ax_.get_title()
        (['sea', 'sand'], 'mean concept weights over 2 inputs')
        """
        from ._explain import _check

        W, names = _check(W, feature_names)
        if index is None:
            values = np.asarray(W.mean(axis=0), dtype=float).reshape(-1)
            default_title = f"mean concept weights over {W.shape[0]} inputs"
            value_name = "mean weight"
        else:
            index = _check_index(index, W.shape[0], "rows in W")
            values = W[index].toarray().reshape(-1)
            default_title, value_name = f"concepts of input {index}", "weight"
        # A zero weight is a concept the input does not use: no bar for it.
        order = [j for j in _ranked(values, None) if values[j] > 0][:check_top(top)]
        disp = cls(
            [str(names[j]) for j in order],
            values[order],
            value_name=value_name,
            title=default_title if title is None else title,
        )
        return disp.plot(ax=ax, **kwargs)

    @classmethod
    def from_distribution(
        cls,
        distribution,
        *,
        group=None,
        column="prevalence",
        top=10,
        ax=None,
        title=None,
        **kwargs,
    ):
        """Chart one group's largest values of :func:`concept_distribution`.

        Parameters
        ----------
        distribution : pandas.DataFrame
            The output of :func:`concept_distribution`.
        group : object, default=None
            The group (class label) to chart; ``None`` when ``distribution`` has one group
            only (e.g. ``"all"``, computed without ``y``).
        column : {"prevalence", "mean_weight"}, default="prevalence"
            The values to chart: the share of inputs using each concept, or its mean weight.
        top : int, default=10
            Number of bars: the ``top`` largest nonzero values, the largest at the top;
            ``None`` for every nonzero value.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; ``None`` draws on a new figure.
        title : str, default=None
            Title of the axes; ``None`` names the group.
        **kwargs : dict
            Keyword arguments of :meth:`plot`.

        Returns
        -------
        display : ConceptDisplay
            The display, drawn.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from sklearn_splice import ConceptDisplay, concept_distribution
        >>> W = [[0.3, 0.0], [0.2, 0.1], [0.0, 0.2]]
        >>> dist = concept_distribution(W, ["sea", "sand"], ["beach", "beach", "desert"])
        >>> disp = ConceptDisplay.from_distribution(dist, group="beach")
        >>> disp.concepts, disp.values.tolist()
        (['sea', 'sand'], [1.0, 0.5])
        """
        missing = {"group", "concept", column} - set(distribution.columns)
        if missing:
            raise ValueError(
                f"distribution lacks the columns {sorted(missing)}; pass the output of "
                "concept_distribution."
            )
        groups = list(dict.fromkeys(distribution["group"]))
        if group is None:
            if len(groups) != 1:
                raise ValueError(f"distribution has several groups; choose one of {groups}.")
            group = groups[0]
        elif group not in groups:
            raise ValueError(f"group {group!r} is not in the distribution; it has {groups}.")
        rows = distribution[distribution["group"] == group]
        values = rows[column].to_numpy(dtype=float)
        order = [j for j in _ranked(values, None) if values[j] > 0][:check_top(top)]
        label = column.replace("_", " ")
        default_title = f"{label} of concepts" + ("" if group == "all" else f" in {group}")
        disp = cls(
            [str(c) for c in rows["concept"].to_numpy()[order]],
            values[order],
            value_name=label,
            title=default_title if title is None else title,
        )
        return disp.plot(ax=ax, **kwargs)


class PrevalenceDisplay:
    """Grouped bar chart: the prevalence of chosen concepts in each class, side by side.

    Prevalence is the share of a class's inputs whose weight on the concept is nonzero.
    Build it with :meth:`from_distribution` or :meth:`from_predictions`.

    Parameters
    ----------
    prevalence : array-like of shape (n_groups, n_concepts)
        The prevalence of each concept (column) in each group (row), between 0 and 1.
    concepts : array-like of str
        The concepts, in the order of the columns; one cluster of bars each.
    groups : array-like
        The groups (class labels), in the order of the rows; one bar per cluster each.
    title : str, default=None
        Title of the axes; ``None`` leaves it empty.

    Attributes
    ----------
    bars_ : ndarray of shape (n_groups, n_concepts), dtype=object
        The bars (matplotlib Rectangles), ``bars_[k, j]`` showing ``prevalence[k, j]``.
    legend_ : matplotlib.legend.Legend
        The legend of the groups.
    ax_ : matplotlib.axes.Axes
        The axes drawn on.
    figure_ : matplotlib.figure.Figure
        The figure of ``ax_``.

    See Also
    --------
    plot_prevalence : The same chart, returning the axes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_splice import PrevalenceDisplay
    >>> W = [[0.3, 0.0], [0.0, 0.2], [0.1, 0.0]]
    >>> disp = PrevalenceDisplay.from_predictions(W, ["sea", "snow"], ["beach", "ski", "ski"])
    >>> disp.bars_.shape, float(disp.bars_[1, 0].get_height())
    ((2, 2), 0.5)
    """

    def __init__(self, prevalence, concepts, groups, *, title=None):
        self.prevalence = prevalence
        self.concepts = concepts
        self.groups = groups
        self.title = title

    def plot(self, ax=None, **kwargs):
        """Draw one cluster of bars per concept, one bar per group.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; ``None`` draws on a new figure.
        **kwargs : dict
            Keyword arguments of :meth:`matplotlib.axes.Axes.bar`, applied to every group.

        Returns
        -------
        display : PrevalenceDisplay
            This display, with ``bars_``, ``legend_``, ``ax_`` and ``figure_`` set.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> from sklearn_splice import PrevalenceDisplay
        >>> fig, ax = plt.subplots()
        >>> disp = PrevalenceDisplay([[1.0, 0.0], [0.2, 0.5]], ["sea", "snow"], ["beach", "ski"])
        >>> disp.plot(ax=ax).figure_ is fig
        True
        """
        concepts = [str(c) for c in self.concepts]
        groups = list(self.groups)
        prevalence = np.asarray(self.prevalence, dtype=float).reshape(len(groups), -1)
        if prevalence.shape[1] != len(concepts):
            raise ValueError(
                f"prevalence has shape {prevalence.shape}; ({len(groups)}, {len(concepts)}) "
                "was expected from the groups and concepts."
            )
        size = (max(6.0, 0.5 * len(concepts) * len(groups) + 2), 4.5)
        fig, ax = _figure_and_axes(ax, size)
        width = 0.8 / max(len(groups), 1)
        x = np.arange(len(concepts))
        self.bars_ = np.empty(prevalence.shape, dtype=object)
        for k, group in enumerate(groups):
            container = ax.bar(x + k * width, prevalence[k], width, label=str(group), **kwargs)
            for j, bar in enumerate(container):
                self.bars_[k, j] = bar
        ax.set_xticks(x + width * (len(groups) - 1) / 2)
        ax.set_xticklabels(concepts, rotation=45, ha="right")
        ax.set_ylabel("prevalence")
        ax.set_ylim(0, 1.05)
        # Outside the axes, so that the legend never hides a bar.
        self.legend_ = ax.legend(title="class", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        if self.title:
            ax.set_title(self.title)
        self.ax_, self.figure_ = ax, fig
        return self

    @staticmethod
    def _table(distribution, concepts, top):
        """``(prevalence, concepts, groups)`` of a concept_distribution frame."""
        missing = {"group", "concept", "prevalence"} - set(distribution.columns)
        if missing:
            raise ValueError(
                f"distribution lacks the columns {sorted(missing)}; pass the output of "
                "concept_distribution."
            )
        groups = list(dict.fromkeys(distribution["group"]))
        if concepts is None:
            top = check_top(top)
            keys = ["prevalence"] + (["mean_weight"] if "mean_weight" in distribution else [])
            used = distribution[distribution["prevalence"] > 0]
            concepts = []
            for group in groups:  # in the distribution's order of groups
                rows = used[used["group"] == group].sort_values(keys, ascending=False,
                                                                kind="stable")
                concepts.extend(rows["concept"].head(top) if top is not None else rows["concept"])
            concepts = list(dict.fromkeys(concepts))
        concepts = list(concepts)
        known = set(distribution["concept"])
        missing = [c for c in concepts if c not in known]
        if missing:
            raise ValueError(f"Concepts not in the distribution: {missing}")
        table = distribution.set_index(["group", "concept"])["prevalence"]
        absent = [(g, c) for g in groups for c in concepts if (g, c) not in table.index]
        if absent:
            # a concept left out of a group (min_prevalence) is not known to be 0 there
            raise ValueError(
                f"The distribution has no row for {len(absent)} (group, concept) pair(s), "
                f"e.g. {absent[0]}: it was filtered (min_prevalence). Pass an unfiltered "
                "concept_distribution, or choose concepts present in every group."
            )
        prevalence = np.array(
            [[float(table[(g, c)]) for c in concepts] for g in groups], dtype=float
        ).reshape(len(groups), len(concepts))
        return prevalence, concepts, groups

    @classmethod
    def from_distribution(
        cls, distribution, concepts=None, *, top=10, ax=None, title=None, **kwargs
    ):
        """Chart the prevalence of concepts per class from :func:`concept_distribution`.

        Parameters
        ----------
        distribution : pandas.DataFrame
            The output of :func:`concept_distribution`, computed with ``y`` for one bar per
            class (without it, one bar per concept for the group ``"all"``).
        concepts : array-like of str, default=None
            The concepts to show, in this order; each must appear in ``distribution``.
            ``None`` shows each class's ``top`` most prevalent concepts (prevalence above
            zero), in order of first appearance.
        top : int, default=10
            Concepts taken from each class when ``concepts`` is None; ``None`` for all.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; ``None`` draws on a new figure.
        title : str, default=None
            Title of the axes; ``None`` gives ``"prevalence by class"``.
        **kwargs : dict
            Keyword arguments of :meth:`plot`.

        Returns
        -------
        display : PrevalenceDisplay
            The display, drawn.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from sklearn_splice import PrevalenceDisplay, concept_distribution
        >>> W = [[0.3, 0.0], [0.0, 0.2]]
        >>> dist = concept_distribution(W, ["sea", "snow"], ["beach", "ski"])
        >>> disp = PrevalenceDisplay.from_distribution(dist, ["snow", "sea"])
        >>> disp.prevalence.tolist()
        [[0.0, 1.0], [1.0, 0.0]]
        """
        prevalence, concepts, groups = cls._table(distribution, concepts, top)
        disp = cls(
            prevalence, concepts, groups, title="prevalence by class" if title is None else title
        )
        return disp.plot(ax=ax, **kwargs)

    @classmethod
    def from_predictions(
        cls, W, feature_names, y, *, concepts=None, top=10, ax=None, title=None, **kwargs
    ):
        """Chart the prevalence of concepts per class from SpLiCE weights and labels.

        Parameters
        ----------
        W : array-like or sparse matrix of shape (n_samples, n_concepts)
            Output of ``SpliceTransformer.transform``.
        feature_names : array-like of str
            ``SpliceTransformer.get_feature_names_out()``.
        y : array-like of shape (n_samples,)
            Class labels, true or predicted: one bar per distinct label.
        concepts : array-like of str, default=None
            The concepts to show, in this order; ``None`` shows each class's ``top`` most
            prevalent concepts.
        top : int, default=10
            Concepts taken from each class when ``concepts`` is None; ``None`` for all.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; ``None`` draws on a new figure.
        title : str, default=None
            Title of the axes; ``None`` gives ``"prevalence by class"``.
        **kwargs : dict
            Keyword arguments of :meth:`plot`.

        Returns
        -------
        display : PrevalenceDisplay
            The display, drawn.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from sklearn_splice import PrevalenceDisplay
        >>> W = [[0.3, 0.0, 0.1], [0.0, 0.2, 0.0]]
        >>> disp = PrevalenceDisplay.from_predictions(
        ...     W, ["sea", "snow", "sand"], ["beach", "ski"], top=1)
        >>> disp.concepts
        ['sea', 'snow']
        """
        from ._explain import concept_distribution

        distribution = concept_distribution(W, feature_names, y)
        return cls.from_distribution(
            distribution, concepts, top=top, ax=ax, title=title, **kwargs
        )


def _linear_model(estimator):
    """``(classifier, feature_names or None)``: the last step of a pipeline or search."""
    if hasattr(estimator, "best_estimator_"):  # a fitted search stands for its best model
        estimator = estimator.best_estimator_
    steps = getattr(estimator, "steps", None)
    if steps:
        try:
            names = estimator[:-1].get_feature_names_out()
        except (AttributeError, ValueError):  # a step that does not name its outputs
            names = None
        return steps[-1][1], names
    return estimator, getattr(estimator, "feature_names_in_", None)


def _coefficients(estimator, feature_names, class_index):
    """``(coef row, names, class label or None, other label or None)`` of a linear model."""
    clf, found = _linear_model(estimator)
    if not hasattr(clf, "coef_"):
        raise ValueError(
            f"{type(clf).__name__} has no coef_: a fitted linear classifier is needed."
        )
    coef = clf.coef_.toarray() if hasattr(clf.coef_, "toarray") else clf.coef_
    coef = np.atleast_2d(np.asarray(coef, dtype=float))
    if feature_names is None:
        if found is None:
            raise ValueError(
                "feature_names is needed: pass SpliceTransformer.get_feature_names_out()."
            )
        feature_names = found
    names = np.asarray(feature_names, dtype=object).reshape(-1)
    if coef.shape[1] != len(names):
        raise ValueError(
            f"The classifier has {coef.shape[1]} coefficients for {len(names)} names."
        )
    class_index = _check_index(class_index, coef.shape[0], "rows in coef_")
    classes = getattr(clf, "classes_", None)
    label = other = None
    if classes is not None and coef.shape[0] == 1 and len(classes) == 2:
        # A binary model's one row scores classes_[1]; negative values favour classes_[0].
        label, other = classes[1], classes[0]
    elif classes is not None and len(classes) == coef.shape[0]:
        label = classes[class_index]
    return coef[class_index], names, label, other


class CoefficientDisplay:
    """Horizontal bar chart of a linear classifier's coefficients as concept words.

    Positive coefficients are drawn in blue, negative ones in red, the largest in absolute
    value at the top. Build it with :meth:`from_estimator`.

    Parameters
    ----------
    coefficients : array-like of float
        The coefficient of each bar, drawn in this order from the top.
    concepts : array-like of str
        The concept of each bar, in the order of ``coefficients``.
    class_label : object, default=None
        The class whose score the coefficients make (for a binary classifier
        ``classes_[1]``); kept for reference.
    title : str, default=None
        Title of the axes; ``None`` leaves it empty.

    Attributes
    ----------
    bars_ : list of matplotlib.patches.Rectangle
        The bars, in the order of ``concepts``.
    zero_line_ : matplotlib.lines.Line2D
        The vertical line at zero.
    ax_ : matplotlib.axes.Axes
        The axes drawn on.
    figure_ : matplotlib.figure.Figure
        The figure of ``ax_``.

    See Also
    --------
    plot_coefficients : The same chart, returning the axes.
    coefficient_table : The coefficients as a table.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_splice import CoefficientDisplay
    >>> clf = LogisticRegression().fit([[1.0, 0.0], [0.0, 1.0]], ["sea", "snow"])
    >>> disp = CoefficientDisplay.from_estimator(clf, ["waves", "ice"])
    >>> str(disp.class_label), sorted(disp.concepts)
    ('snow', ['ice', 'waves'])
    """

    def __init__(self, coefficients, concepts, *, class_label=None, title=None):
        self.coefficients = coefficients
        self.concepts = concepts
        self.class_label = class_label
        self.title = title

    def plot(self, ax=None, **kwargs):
        """Draw the bars, coloured by sign, and a line at zero.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; ``None`` draws on a new figure.
        **kwargs : dict
            Keyword arguments of :meth:`matplotlib.axes.Axes.barh` (e.g. ``color``), which
            replace the defaults.

        Returns
        -------
        display : CoefficientDisplay
            This display, with ``bars_``, ``zero_line_``, ``ax_`` and ``figure_`` set.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from sklearn_splice import CoefficientDisplay
        >>> disp = CoefficientDisplay([1.2, -0.8], ["waves", "ice"]).plot()
        >>> len(disp.bars_)
        2
        """
        names = [str(c) for c in self.concepts]
        coef = np.asarray(self.coefficients, dtype=float).reshape(-1)
        if len(names) != len(coef):
            raise ValueError(f"{len(names)} concepts were given for {len(coef)} coefficients.")
        fig, ax = _figure_and_axes(ax, _barh_size(len(coef)))
        colors = [POSITIVE if c >= 0 else NEGATIVE for c in coef]
        self.bars_ = _ranked_barh(ax, names, coef, colors, kwargs)
        self.zero_line_ = ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel("coefficient")
        if self.title:
            ax.set_title(self.title)
        self.ax_, self.figure_ = ax, fig
        return self

    @classmethod
    def from_estimator(
        cls, estimator, feature_names=None, *, class_index=0, top=10, ax=None, title=None,
        **kwargs,
    ):
        """Chart the largest coefficients (by absolute value) of a fitted linear classifier.

        Parameters
        ----------
        estimator : estimator, Pipeline or fitted search
            A fitted linear classifier with ``coef_`` (e.g. ``LogisticRegression`` trained
            on SpLiCE weights), a fitted Pipeline ending in one, or a fitted search
            (``GridSearchCV``), which stands for its ``best_estimator_``. The coefficients
            are those of the classifier, on the features it receives (after any scaler).
        feature_names : array-like of str, default=None
            ``SpliceTransformer.get_feature_names_out()``. ``None`` takes them from the
            pipeline's steps before the classifier, or the classifier's
            ``feature_names_in_``.
        class_index : int, default=0
            Row of ``coef_`` to draw. A binary classifier has only row 0, whose positive
            coefficients favour ``classes_[1]``.
        top : int, default=10
            Number of bars: the ``top`` largest coefficients by absolute value; ``None``
            for all.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; ``None`` draws on a new figure.
        title : str, default=None
            Title of the axes; ``None`` names the class the coefficients favour.
        **kwargs : dict
            Keyword arguments of :meth:`plot`.

        Returns
        -------
        display : CoefficientDisplay
            The display, drawn.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import numpy as np
        >>> from sklearn.linear_model import LogisticRegression
        >>> from sklearn_splice import CoefficientDisplay
        >>> X = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
        >>> clf = LogisticRegression().fit(X, ["beach", "forest", "ski"])
        >>> disp = CoefficientDisplay.from_estimator(
        ...     clf, ["sand", "tree", "snow"], class_index=2, top=1)
        >>> disp.concepts, disp.ax_.get_title()
        (['snow'], 'coefficients for ski')
        """
        coef, names, label, other = _coefficients(estimator, feature_names, class_index)
        order = _ranked(np.abs(coef), top)
        if title is None:
            if other is not None:
                title = f"coefficients: > 0 favours {label}, < 0 favours {other}"
            else:
                title = "coefficients" if label is None else f"coefficients for {label}"
        disp = cls(coef[order], [str(names[j]) for j in order], class_label=label, title=title)
        return disp.plot(ax=ax, **kwargs)


def _take_one(X, index):
    """The input at ``index`` of ``X``, as a collection of one in the same form."""
    if hasattr(X, "iloc"):  # Series and DataFrames: by position, keeping their form
        return X.iloc[[index]]
    if hasattr(X, "shape"):
        return X[index:index + 1]
    return [X[index]]


def _waterfall(frame, index, class_label, top):
    """``(terms, kinds, contributions, class_label)`` of one (sample, class) of a frame."""
    missing = {"sample", "class", "term", "kind", "contribution"} - set(frame.columns)
    if missing:
        raise ValueError(
            f"The frame lacks the columns {sorted(missing)}; pass the output of "
            "explain_predictions."
        )
    top = check_top(top)
    samples = list(dict.fromkeys(frame["sample"]))
    if isinstance(index, bool) or not isinstance(index, Integral) or index not in samples:
        shown = samples if len(samples) <= 10 else samples[:10] + ["..."]
        raise ValueError(f"index {index!r} is not a sample of the frame; its samples are {shown}.")
    rows = frame[frame["sample"] == index]
    classes = list(dict.fromkeys(rows["class"]))
    if class_label is None:
        # The predicted class: the largest score (the first of equals, in classes_ order).
        totals = rows.groupby("class", sort=False)["contribution"].sum()
        class_label = totals.index[int(np.argmax(totals.to_numpy()))]
    elif class_label not in classes:
        raise ValueError(
            f"class_label {class_label!r} is not a class of the frame; its classes are "
            f"{classes}. (A binary classifier's frame holds classes_[1] only.)"
        )
    part = rows[rows["class"] == class_label]
    kind = part["kind"].astype(str).to_numpy()
    contribution = part["contribution"].to_numpy(dtype=float)
    terms = part["term"].astype(str).to_numpy()
    concept = np.flatnonzero(kind == "concept")
    order = concept[_ranked(np.abs(contribution[concept]), None)]
    kept, cut = (order, order[:0]) if top is None else (order[:top], order[top:])
    out_terms = [INTERCEPT] + list(terms[kept])
    out_kinds = ["intercept"] + ["concept"] * len(kept)
    out_values = [contribution[kind == "intercept"].sum()] + list(contribution[kept])
    # One "(rest)" bar for the concepts cut here and any the frame had already cut.
    if len(cut) or (kind == "rest").any():
        out_terms.append(REST)
        out_kinds.append("rest")
        out_values.append(contribution[kind == "rest"].sum() + contribution[cut].sum())
    return out_terms, out_kinds, np.asarray(out_values, dtype=float), class_label


class ContributionDisplay:
    """Waterfall chart of one prediction: from the intercept, concept by concept, to the score.

    A linear classifier on SpLiCE weights scores a class as the sum of its intercept and one
    contribution (weight times coefficient) per concept. Each bar starts where the previous
    one ended and spans one term: the intercept first, then the concepts by decreasing
    absolute contribution, then ``"(rest)"`` (the concepts left out, added up). A last bar
    from zero shows the total, the ``decision_function`` value. Build it with
    :meth:`from_estimator` or :meth:`from_contributions`.

    Parameters
    ----------
    terms : array-like of str
        The name of each step, drawn in this order from the top.
    contributions : array-like of float
        The contribution of each step, in the order of ``terms``.
    kinds : array-like of {"intercept", "concept", "rest"}, default=None
        The kind of each step, which sets its colour; ``None`` takes ``"(intercept)"`` and
        ``"(rest)"`` by name and every other term as a concept.
    sample : int, default=None
        Position of the explained input; kept for reference.
    class_label : object, default=None
        The class whose score is explained; kept for reference.
    title : str, default=None
        Title of the axes; ``None`` leaves it empty.

    Attributes
    ----------
    bars_ : list of matplotlib.patches.Rectangle
        The bars of the steps, in the order of ``terms``; bar ``i`` spans ``starts_[i]``
        to ``ends_[i]``.
    total_bar_ : matplotlib.patches.Rectangle
        The last bar, from zero to ``decision_value_``.
    starts_ : ndarray of shape (n_terms,)
        Where each step starts: the sum of the contributions before it.
    ends_ : ndarray of shape (n_terms,)
        Where each step ends: the sum of the contributions up to it.
    decision_value_ : float
        The sum of all contributions, the explained ``decision_function`` value.
    texts_ : list of matplotlib.text.Text or None
        The value written by each bar, the total's last; ``None`` without values.
    ax_ : matplotlib.axes.Axes
        The axes drawn on.
    figure_ : matplotlib.figure.Figure
        The figure of ``ax_``.

    See Also
    --------
    explain_predictions : The contributions of many predictions, as a table.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_splice import ContributionDisplay
    >>> disp = ContributionDisplay(["(intercept)", "sea", "snow"], [0.5, 1.5, -0.5]).plot()
    >>> disp.starts_.tolist(), disp.ends_.tolist(), disp.decision_value_
    ([0.0, 0.5, 2.0], [0.5, 2.0, 1.5], 1.5)
    """

    def __init__(
        self, terms, contributions, *, kinds=None, sample=None, class_label=None, title=None
    ):
        self.terms = terms
        self.contributions = contributions
        self.kinds = kinds
        self.sample = sample
        self.class_label = class_label
        self.title = title

    def plot(self, ax=None, *, show_values=True, **kwargs):
        """Draw the waterfall.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; ``None`` draws on a new figure.
        show_values : bool, default=True
            Write each contribution (signed) and the total next to their bars.
        **kwargs : dict
            Keyword arguments of :meth:`matplotlib.axes.Axes.barh` (e.g. ``height``), which
            replace the defaults, for every bar.

        Returns
        -------
        display : ContributionDisplay
            This display, with ``bars_``, ``total_bar_``, ``starts_``, ``ends_``,
            ``decision_value_``, ``texts_``, ``ax_`` and ``figure_`` set.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from sklearn_splice import ContributionDisplay
        >>> disp = ContributionDisplay(["(intercept)", "sea"], [-1.0, 3.0])
        >>> [t.get_text() for t in disp.plot(show_values=True).texts_]
        [' -1 ', ' +3 ', ' 2 ']
        """
        terms = [str(t) for t in self.terms]
        values = np.asarray(self.contributions, dtype=float).reshape(-1)
        if len(terms) != len(values):
            raise ValueError(f"{len(terms)} terms were given for {len(values)} contributions.")
        if self.kinds is None:
            named = {INTERCEPT: "intercept", REST: "rest"}
            kinds = [named.get(t, "concept") for t in terms]
        else:
            kinds = [str(k) for k in self.kinds]
            if len(kinds) != len(terms):
                raise ValueError(f"{len(kinds)} kinds were given for {len(terms)} terms.")
        n = len(values)
        # A running sum: each step starts exactly where the previous one ended.
        self.ends_ = np.cumsum(values)
        self.starts_ = np.concatenate([[0.0], self.ends_[:-1]])[:n]
        self.decision_value_ = float(self.ends_[-1]) if n else 0.0
        fig, ax = _figure_and_axes(ax, _barh_size(n + 1))
        colors = [
            "tab:gray" if k == "intercept" else "lightgray" if k == "rest"
            else POSITIVE if v >= 0 else NEGATIVE
            for k, v in zip(kinds, values)
        ]
        y = np.arange(n + 1)
        self.bars_ = list(
            ax.barh(y[:n], values, left=self.starts_, **_style({"color": colors}, kwargs))
        )
        for bar in self.bars_:
            # A step's base is no baseline: let autoscaling leave room around it.
            bar.sticky_edges.x.clear()
        single = {k: v for k, v in kwargs.items() if not _is_per_bar(k, v, n)}
        self.total_bar_ = ax.barh(
            [n], [self.decision_value_], **_style({"color": "black"}, single)
        )[0]
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels(terms + [TOTAL])
        # Fixed limits rather than invert_yaxis, which would flip back on a second call.
        ax.set_ylim(n + 0.5, -0.5)
        ax.set_xlabel("contribution to the decision function")
        self.texts_ = None
        if show_values:
            ax.margins(x=0.15)  # room for the numbers at the bar ends
            self.texts_ = [
                ax.text(
                    max(s, e) if v >= 0 else min(s, e), i, f" {v:+.3g} ",
                    va="center", ha="left" if v >= 0 else "right",
                )
                for i, (s, e, v) in enumerate(zip(self.starts_, self.ends_, values))
            ]
            total = self.decision_value_
            self.texts_.append(
                ax.text(total, n, f" {total:.3g} ", va="center",
                        ha="left" if total >= 0 else "right", fontweight="bold")
            )
        if self.title:
            ax.set_title(self.title)
        self.ax_, self.figure_ = ax, fig
        return self

    @staticmethod
    def _default_title(sample, class_label, total):
        return f"input {sample}: decision function for {class_label} = {total:.3g}"

    @classmethod
    def from_contributions(
        cls, frame, *, index=0, class_label=None, top=10, ax=None, title=None, **kwargs
    ):
        """Chart one prediction from a table of :func:`explain_predictions`.

        Parameters
        ----------
        frame : pandas.DataFrame
            The output of :func:`explain_predictions`: columns ``sample``, ``class``,
            ``term``, ``kind`` and ``contribution`` at least, with ``kind`` one of
            ``"concept"``, ``"intercept"`` and ``"rest"``.
        index : int, default=0
            The input to chart: its value in the ``sample`` column (its position in the
            ``X`` given to :func:`explain_predictions`).
        class_label : object, default=None
            The class whose score is charted; ``None`` takes the class with the largest
            score (the predicted class of a multiclass model). A binary model's table holds
            ``classes_[1]`` only, whose score is negative when ``classes_[0]`` is predicted.
        top : int, default=10
            Concept bars: the ``top`` largest by absolute contribution; the others, and
            any ``"(rest)"`` row of ``frame``, make one ``"(rest)"`` bar. ``None`` keeps
            every concept of ``frame``.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; ``None`` draws on a new figure.
        title : str, default=None
            Title of the axes; ``None`` names the input, the class and the score.
        **kwargs : dict
            Keyword arguments of :meth:`plot` (e.g. ``show_values=False``).

        Returns
        -------
        display : ContributionDisplay
            The display, drawn.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import pandas as pd
        >>> from sklearn_splice import ContributionDisplay
        >>> frame = pd.DataFrame({
        ...     "sample": [0, 0, 0, 0], "class": ["dog"] * 4,
        ...     "term": ["leash", "sofa", "ball", "(intercept)"],
        ...     "kind": ["concept", "concept", "concept", "intercept"],
        ...     "weight": [0.4, 0.3, 0.1, float("nan")],
        ...     "coefficient": [2.0, -1.0, 1.0, float("nan")],
        ...     "contribution": [0.8, -0.3, 0.1, -0.2]})
        >>> disp = ContributionDisplay.from_contributions(frame, top=2)
        >>> disp.terms
        ['(intercept)', 'leash', 'sofa', '(rest)']
        >>> round(disp.decision_value_, 6)
        0.4
        """
        terms, kinds, values, class_label = _waterfall(frame, index, class_label, top)
        if title is None:
            title = cls._default_title(index, class_label, float(np.sum(values)))
        disp = cls(
            terms, values, kinds=kinds, sample=index, class_label=class_label, title=title
        )
        return disp.plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls, estimator, X, *, index=0, class_label=None, top=10, ax=None, title=None, **kwargs
    ):
        """Chart why a fitted SpLiCE pipeline scores one input as it does.

        Only the input at ``index`` is embedded and explained, with
        :func:`explain_predictions`.

        Parameters
        ----------
        estimator : Pipeline or sequence of estimators
            A fitted Pipeline from a ``SpliceTransformer`` to a linear classifier, as
            :func:`explain_predictions` takes it.
        X : list of inputs or array-like of shape (n_samples, d)
            Inputs the pipeline predicts on: image paths, images, texts or embeddings.
        index : int, default=0
            Position in ``X`` of the input to chart.
        class_label : object, default=None
            The class whose score is charted; ``None`` takes the predicted class (for a
            binary model, ``classes_[1]``, the only score it has).
        top : int, default=10
            Concept bars: the ``top`` largest by absolute contribution; the others make one
            ``"(rest)"`` bar. ``None`` keeps every concept.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; ``None`` draws on a new figure.
        title : str, default=None
            Title of the axes; ``None`` names the input, the class and the score.
        **kwargs : dict
            Keyword arguments of :meth:`plot` (e.g. ``show_values=False``).

        Returns
        -------
        display : ContributionDisplay
            The display, drawn; ``decision_value_`` equals
            ``estimator.decision_function`` of the input (for the charted class).

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import numpy as np
        >>> from sklearn.linear_model import LogisticRegression
        >>> from sklearn.pipeline import make_pipeline
        >>> from sklearn_splice import ContributionDisplay, SpliceTransformer
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
        >>> disp = ContributionDisplay.from_estimator(pipe, X, index=3, top=2)
        >>> bool(np.isclose(disp.decision_value_, pipe.decision_function(X[3:4])[0]))
        True
        """
        # Imported here: the plots need no part of the explanation code until used.
        from ._contributions import explain_predictions

        index = _check_index(index, len(X), "inputs in X")
        frame = explain_predictions(estimator, _take_one(X, index), top=None)
        terms, kinds, values, class_label = _waterfall(frame, 0, class_label, top)
        if title is None:
            title = cls._default_title(index, class_label, float(np.sum(values)))
        disp = cls(
            terms, values, kinds=kinds, sample=index, class_label=class_label, title=title
        )
        return disp.plot(ax=ax, **kwargs)


def plot_concepts(
    concepts: Any,
    weights: Any = None,
    *,
    top: int = 10,
    ax: Any = None,
    title: str | None = None,
):
    """Horizontal bars of the largest concept weights (one sample's, or a class's means).

    A thin wrapper around :class:`ConceptDisplay`: it returns the
    axes, where ``ConceptDisplay`` returns the display with its bars.

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
    order = _ranked(values, top)
    disp = ConceptDisplay([str(names[i]) for i in order], values[order], title=title)
    return disp.plot(ax=ax).ax_


def plot_prevalence(
    distribution: Any, concepts: Any, *, ax: Any = None, title: str | None = None
):
    """Side-by-side prevalence of chosen concepts in each class.

    A thin wrapper around :meth:`PrevalenceDisplay.from_distribution`: it returns the axes,
    where the display keeps its bars too.

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
    prevalence, concepts, groups = PrevalenceDisplay._table(distribution, concepts, None)
    return PrevalenceDisplay(prevalence, concepts, groups, title=title).plot(ax=ax).ax_


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

    Positive coefficients are drawn in blue, negative ones in red. A thin wrapper around
    :meth:`CoefficientDisplay.from_estimator`: it returns the axes,
    where the display keeps its bars too.

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
    coef, names, label, _ = _coefficients(classifier, feature_names, class_index)
    order = _ranked(np.abs(coef), top)
    disp = CoefficientDisplay(
        coef[order], [str(names[j]) for j in order], class_label=label, title=title
    )
    return disp.plot(ax=ax).ax_
