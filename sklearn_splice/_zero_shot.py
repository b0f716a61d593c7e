"""Zero-shot classification with text prompts, on dense or recomposed CLIP embeddings."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted
from numbers import Real

from ._dictionary import normalize_rows
from ._encoder import OpenCLIPEncoder

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
        Prompt templates with one ``{}`` for the class name; several are averaged.
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

    def __init__(self, encoder=None, *, class_names=None, templates="A photo of a {}.", temperature=100.0):
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
        y : array-like
            Class labels (their unique values become ``classes_``).

        Returns
        -------
        self : ZeroShotClassifier
        """
        if y is None:
            raise ValueError("ZeroShotClassifier.fit needs y (the class labels).")
        self.classes_ = np.unique(np.asarray(y))
        names = self.classes_ if self.class_names is None else list(self.class_names)
        if len(names) != len(self.classes_):
            raise ValueError(
                f"class_names has {len(names)} entries for {len(self.classes_)} classes {list(self.classes_)}."
            )
        templates = [self.templates] if isinstance(self.templates, str) else list(self.templates)
        if not templates or any("{}" not in t for t in templates):
            raise ValueError("Every template needs one '{}' where the class name goes.")
        self.encoder_ = OpenCLIPEncoder() if self.encoder is None else self.encoder
        prompts = [t.format(name) for name in names for t in templates]
        T = normalize_rows(np.asarray(self.encoder_.encode_text(prompts), dtype=np.float64))
        T = T.reshape(len(names), len(templates), -1).mean(axis=1)
        self.class_embeddings_ = normalize_rows(T).astype(np.float32)
        return self

    def _embeddings(self, X):
        d = self.class_embeddings_.shape[1]
        if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind in "fiu":
            E = X
        else:
            E = np.asarray(self.encoder_.encode_image(X))
        if E.ndim != 2 or E.shape[1] != d:
            raise ValueError(f"Expected embeddings of shape (n_samples, {d}), got {E.shape}.")
        if not np.isfinite(E).all():
            raise ValueError("X contains NaN or infinite values.")
        return normalize_rows(np.asarray(E, dtype=np.float64))

    def decision_function(self, X):
        """Cosine similarity of each input to each class prompt, shape (n_samples, n_classes)."""
        check_is_fitted(self)
        return self._embeddings(X) @ self.class_embeddings_.T.astype(np.float64)

    def predict_proba(self, X):
        """Softmax of ``temperature`` times the cosine similarities."""
        logits = self.temperature * self.decision_function(X)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The class whose prompt is most similar to each input."""
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def score(self, X, y, sample_weight=None):
        """Accuracy of ``predict(X)`` against ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, d), or images
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        return super().score(X, y, sample_weight=sample_weight)
