"""Find inputs by concept: rank the rows of a weight matrix by a small query over concepts."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np

from ._explain import _check, _pandas, check_top
from ._vocabulary import unknown_concepts_hint

__all__ = ["find_by_concept"]


def _names(value: Any, what: str) -> list[str]:
    """A string or a list of strings, as a list."""
    items = [value] if isinstance(value, str) else value
    try:
        items = list(items)
    except TypeError:
        raise TypeError(f"{what} must be a concept name or a list of them, got {value!r}.")
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{what} must hold concept names (str), got {item!r}.")
    return items


def _parse_query(query: Any) -> tuple[list[str], list[str]]:
    """``(include, exclude)`` concept names of a query, in order, each once.

    Parameters
    ----------
    query : str, sequence of str or dict
        ``"beach"``; ``("beach", "-people")`` (a leading ``-`` excludes); or
        ``{"include": [...], "exclude": [...]}`` (names taken literally).

    Returns
    -------
    include, exclude : list of str
        The included and the excluded concept names.
    """
    if isinstance(query, dict):
        unknown = set(query) - {"include", "exclude"}
        if unknown:
            raise ValueError(
                f"A query dict has the keys 'include' and 'exclude' only; got {sorted(unknown)}."
            )
        include = _names(query.get("include", []), "query['include']")
        exclude = _names(query.get("exclude", []), "query['exclude']")
    else:
        include, exclude = [], []
        for item in _names(query, "query"):
            if item.startswith("-"):
                exclude.append(item[1:])
            else:
                include.append(item)
    include, exclude = list(dict.fromkeys(include)), list(dict.fromkeys(exclude))
    if not include:
        raise ValueError(
            f"The query {query!r} includes no concept: name at least one, whose weight "
            "ranks the matches."
        )
    both = [name for name in include if name in exclude]
    if both:
        raise ValueError(f"The query both includes and excludes {', '.join(map(repr, both))}.")
    return include, exclude


def find_by_concept(
    W: Any,
    feature_names: Any,
    query: Any,
    *,
    top: int | None = None,
    min_weight: float = 0.0,
):
    """The inputs that contain some concepts and lack others, strongest first.

    Retrieval by concept: which images of a collection does SpLiCE describe with "beach",
    and which of those without "people"?

    The query language:

    - ``"beach"``: the inputs whose weight for ``beach`` is above ``min_weight``.
    - ``("beach", "sand", "-people")`` (a tuple or list): every name without a leading ``-``
      is **included**, every name with one is **excluded**.
    - ``{"include": ["beach", "sand"], "exclude": ["people"]}``: the same, with the names
      taken literally (use it for a concept whose name starts with ``-``). Either value
      may be a single string; ``"exclude"`` may be left out.

    An input matches when **every** included concept has a weight above ``min_weight``
    and **every** excluded concept has a weight at most ``min_weight`` (zero, by default).
    Its score is the sum of its included concepts' weights; matches are ranked by score,
    largest first, ties in input order. A query must include at least one concept. For
    "any of" several concepts, run one query per concept and combine the positions.

    Parameters
    ----------
    W : array-like or sparse matrix of shape (n_samples, n_concepts)
        Nonnegative concept weights, e.g. the output of ``SpliceTransformer.transform``.
    feature_names : array-like of str
        The concept of each column, ``SpliceTransformer.get_feature_names_out()``.
    query : str, sequence of str or dict
        The concepts to find, in the query language above. A name that is not in
        ``feature_names`` is a ``ValueError`` that suggests close matches.
    top : int, default=None
        Return at most this many matches. ``None`` returns them all.
    min_weight : float, default=0.0
        The weight a concept must exceed to count as present (and may not exceed, for an
        excluded concept).

    Returns
    -------
    matches : pandas.DataFrame
        One row per matching input, best first, with the columns ``position`` (int, the
        row of ``W``), ``score`` (float, the sum of the included weights) and one float
        column per included concept, in query order, holding its weight. A concept named
        ``position`` or ``score`` gets the column ``"<name> (weight)"`` instead. No match
        gives an empty frame with these columns.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_splice import find_by_concept
    >>> W = np.array([[0.5, 0.0, 0.2],
    ...               [0.3, 0.4, 0.0],
    ...               [0.0, 0.6, 0.0],
    ...               [0.7, 0.0, 0.0]])
    >>> names = ["beach", "people", "sand"]
    >>> find_by_concept(W, names, "beach")
       position  score  beach
    0         3    0.7    0.7
    1         0    0.5    0.5
    2         1    0.3    0.3
    >>> find_by_concept(W, names, ("beach", "sand", "-people"))
       position  score  beach  sand
    0         0    0.7    0.5   0.2
    >>> find_by_concept(W, names, {"include": "beach", "exclude": ["people"]}, top=1)
       position  score  beach
    0         3    0.7    0.7
    """
    W, names = _check(W, feature_names)
    include, exclude = _parse_query(query)
    top = check_top(top)
    if (
        isinstance(min_weight, bool)
        or not isinstance(min_weight, Real)
        or not math.isfinite(min_weight)
        or min_weight < 0
    ):
        raise ValueError(f"min_weight must be a finite number >= 0, got {min_weight!r}.")

    position = {}
    for j, name in enumerate(names):
        if str(name) in position:
            raise ValueError(
                f"feature_names repeats {str(name)!r} (columns {position[str(name)]} and {j}); "
                "each concept must name one column."
            )
        position[str(name)] = j
    missing = [name for name in include + exclude if name not in position]
    if missing:
        raise ValueError("The query names concepts that are not in feature_names: "
                         + unknown_concepts_hint(missing, position) + ".")

    # Only the queried columns are read: W stays sparse, whatever its width.
    inc = W[:, [position[name] for name in include]].toarray()
    exc = W[:, [position[name] for name in exclude]].toarray()
    match = (inc > min_weight).all(axis=1) & (exc <= min_weight).all(axis=1)
    rows = np.flatnonzero(match)
    score = inc[rows].sum(axis=1)
    order = np.argsort(-score, kind="stable")[:top]
    rows, score = rows[order], score[order]

    frame = {"position": rows.astype(np.int64), "score": score}
    for k, name in enumerate(include):
        column = f"{name} (weight)" if name in ("position", "score") else name
        frame[column] = inc[rows, k]
    return _pandas().DataFrame(frame)
