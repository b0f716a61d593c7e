"""Small test encoders that follow the SpliceTransformer encoder protocol."""

import hashlib

import numpy as np
from sklearn.base import BaseEstimator


def text_vector(text, width):
    """A fixed pseudo-random vector per string (the same in every process)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    return np.random.RandomState(seed).standard_normal(width)


class HashingEncoder(BaseEstimator):
    """Texts become fixed random vectors; numeric 'images' are projected to ``width``.

    The projection for inputs of ``p`` features is seeded by ``p``, so any input width
    works (as scikit-learn's common checks need) and results are reproducible.
    """

    def __init__(self, width=8):
        self.width = width

    def encode_text(self, texts):
        return np.array([text_vector(t, self.width) for t in texts])

    def encode_image(self, X):
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] == self.width:
            return X
        proj = np.random.RandomState(X.shape[1]).standard_normal((X.shape[1], self.width))
        return X @ proj


class DictionaryEncoder(BaseEstimator):
    """Concept i embeds as row i of a given matrix; images are given as embeddings."""

    def __init__(self, embeddings=None, concepts=None):
        self.embeddings = embeddings
        self.concepts = concepts

    def encode_text(self, texts):
        index = {c: i for i, c in enumerate(self.concepts)}
        return np.asarray(self.embeddings)[[index[t] for t in texts]]

    def encode_image(self, X):
        return np.asarray(X, dtype=np.float64)


class CountingEncoder(BaseEstimator):
    """Wraps an encoder and counts the texts and images it was asked to embed."""

    def __init__(self, inner=None):
        self.inner = inner
        self.n_texts = 0
        self.n_images = 0

    def encode_text(self, texts):
        self.n_texts += len(texts)
        return self.inner.encode_text(texts)

    def encode_image(self, X):
        self.n_images += len(X)
        return self.inner.encode_image(X)

    def cache_identity(self):
        return "counting:" + type(self.inner).__name__ + str(self.inner.get_params())
