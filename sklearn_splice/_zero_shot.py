"""Zero-shot classification with text prompts, on dense or recomposed CLIP embeddings."""

from __future__ import annotations

import string
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from ._compat import HasMethods, Interval, _fit_context
from ._dictionary import normalize_rows
from ._embedding import check_embeddings, embed_inputs
from ._encoder import OpenCLIPEncoder
from ._inputs import classify_inputs

__all__ = ["ZeroShotClassifier"]


class ZeroShotClassifier(ClassifierMixin, BaseEstimator):
    """Classify by cosine similarity to text prompts such as "A photo of a {}." (CLIP zero-shot).

    ``fit`` embeds one prompt per class (averaging over several templates if given); it
    learns nothing from the inputs. ``predict`` takes either embeddings of shape
    ``(n, d)`` (dense CLIP embeddings, or SpLiCE recompositions from
    ``SpliceTransformer.inverse_transform``) or images, which the encoder embeds. Comparing
    the two measures how much accuracy the sparsity costs.

    Parameters
    ----------
    encoder : object, default=None
        As for :class:`SpliceTransformer`; ``None`` means the paper's ViT-B-32 backbone.
    class_names : list of str, default=None
        Text for each class, in the order of ``classes_``. ``None`` uses the labels in
        ``y`` (``np.unique(y)``), which must then be strings.
    templates : str or list of str, default="A photo of a {}."
        Prompt templates with exactly one ``{}`` for the class name (and no other
        replacement field); several are averaged.
    temperature : float, default=100.0
        Logit scale of ``predict_proba`` (CLIP's is 100).

    Attributes
    ----------
    classes_ : ndarray
        Class labels.
    class_embeddings_ : ndarray of shape (n_classes, d)
        Unit-norm text embedding of each class.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_splice import ZeroShotClassifier
    >>> class Toy:
    ...     def encode_text(self, texts):
    ...         return np.array([[1.0, 0.0] if "cat" in t else [0.0, 1.0] for t in texts])
    ...     def encode_image(self, X):
    ...         return np.asarray(X)
    >>> clf = ZeroShotClassifier(Toy()).fit(None, ["cat", "dog"])
    >>> clf.predict(np.array([[0.9, 0.1], [0.2, 0.8]])).tolist()
    ['cat', 'dog']
    """

    _parameter_constraints: dict = {
        "encoder": [None, HasMethods(["encode_image", "encode_text"])],
        "class_names": ["array-like", None],
        "templates": [str, list, tuple],
        "temperature": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self, encoder=None, *, class_names=None, templates="A photo of a {}.", temperature=100.0
    ):
        self.encoder = encoder
        self.class_names = class_names
        self.templates = templates
        self.temperature = temperature

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Embed the class prompts.

        Parameters
        ----------
        X : ignored
            Zero-shot: nothing is learned from the inputs.
        y : array-like of shape (n_samples,)
            Class labels (their unique values become ``classes_``).

        Returns
        -------
        self : ZeroShotClassifier
            The fitted classifier.
        """
        if y is None:
            raise ValueError("ZeroShotClassifier.fit needs y (the class labels).")
        y = column_or_1d(np.asarray(y, dtype=object), warn=True)
        if y.size == 0:
            raise ValueError("y is empty; ZeroShotClassifier.fit needs the class labels.")
        try:
            classes = np.unique(np.asarray(y.tolist()))
        except TypeError as exc:
            raise TypeError(
                f"The labels in y cannot be sorted ({exc}); give labels of one type, "
                "without None."
            ) from exc
        names = list(classes) if self.class_names is None else list(self.class_names)
        if len(names) != len(classes):
            raise ValueError(
                f"class_names has {len(names)} entries for {len(classes)} classes {list(classes)}."
            )
        for i, name in enumerate(names):
            what = "the labels in y" if self.class_names is None else "class_names"
            if isinstance(name, (str, np.str_)) and not name.strip():
                raise ValueError(f"Class name {i} (from {what}) is blank.")
            if not isinstance(name, (str, np.str_)):
                raise TypeError(
                    f"Class name {i} ({name!r}, from {what}) is a {type(name).__name__}; class "
                    "names must be strings. Pass class_names=[...] with one text per class "
                    "when the labels are not."
                )
        templates = [self.templates] if isinstance(self.templates, str) else list(self.templates)
        if not templates:
            raise ValueError("templates is empty; give at least one, e.g. 'A photo of a {}.'.")
        for i, template in enumerate(templates):
            _check_template(i, template)
        encoder = OpenCLIPEncoder() if self.encoder is None else self.encoder
        prompts = [t.format(str(name)) for name in names for t in templates]
        source = f"{type(encoder).__name__}.encode_text (on the prompts)"
        T = check_embeddings(encoder.encode_text(prompts), len(prompts), source=source)
        T = normalize_rows(np.asarray(T, dtype=np.float64))
        T = T.reshape(len(names), len(templates), -1).mean(axis=1)
        self.encoder_ = encoder
        self.classes_ = classes
        self.class_embeddings_ = normalize_rows(T).astype(np.float32)
        return self

    def _embeddings(self, X):
        d = self.class_embeddings_.shape[1]
        inputs = classify_inputs(X)
        if inputs.is_matrix:
            E = check_array(inputs.data, dtype=[np.float64, np.float32], input_name="X")
            if E.shape[1] != d:
                raise ValueError(f"Expected embeddings of shape (n_samples, {d}), got {E.shape}.")
        else:
            E = embed_inputs(self.encoder_, inputs, "image", use_cache=True, width=d)
        return normalize_rows(np.asarray(E, dtype=np.float64))

    def decision_function(self, X):
        """Cosine similarity of each input to each class prompt.

        Parameters
        ----------
        X : array-like of shape (n_samples, d), or a list of images
            Embeddings (dense or recomposed), or images for the encoder.

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes)
            Cosine similarities.
        """
        check_is_fitted(self)
        return self._embeddings(X) @ self.class_embeddings_.T.astype(np.float64)

    def predict_proba(self, X):
        """Softmax of ``temperature`` times the cosine similarities.

        Parameters
        ----------
        X : array-like of shape (n_samples, d), or a list of images
            As in ``decision_function``.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to 1.
        """
        logits = self.temperature * self.decision_function(X)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The class whose prompt is most similar to each input.

        Parameters
        ----------
        X : array-like of shape (n_samples, d), or a list of images
            As in ``decision_function``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Class labels.
        """
        scores = self.decision_function(X)  # first: it raises NotFittedError before fit
        return self.classes_[np.argmax(scores, axis=1)]

    def score(self, X, y, sample_weight=None):
        """Accuracy of ``predict(X)`` against ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, d), or a list of images
            As in ``decision_function``.
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            Mean accuracy.
        """
        return super().score(X, y, sample_weight=sample_weight)


def _check_template(i: int, template) -> None:
    """A template has exactly one empty replacement field ``{}`` and no other."""
    if not isinstance(template, str):
        raise TypeError(f"Template {i} is a {type(template).__name__}; templates must be strings.")
    try:
        parsed = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template)]
    except ValueError as exc:  # an unmatched brace
        raise ValueError(
            f"Template {i} ({template!r}) is not a valid format string: {exc}"
        ) from exc
    # "{:d}", "{!r}" or "{:{}}" would fail or change the class name: only a bare "{}" goes
    fields = [f + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "")
              for f, spec, conv in parsed if f is not None]
    if fields != [""]:
        raise ValueError(
            f"Template {i} ({template!r}) has {len(fields)} replacement field(s) "
            f"{['{' + f + '}' for f in fields]}; it needs exactly one '{{}}' where the class "
            "name goes (write literal braces as '{{' and '}}')."
        )
