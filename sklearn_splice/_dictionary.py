"""The concept dictionary: centred, unit-norm text embeddings of the concepts."""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import numpy as np

from ._cache import cache_file, cache_key, encoder_identity, keep, recall, resolve_cache_dir
from ._embedding import check_embeddings
from ._progress import progress

__all__ = ["normalize_rows", "concept_embeddings", "build_dictionary"]


def normalize_rows(A: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero instead of becoming NaN.

    Each row is first divided by its largest absolute entry, so that norms of rows with
    entries near 1e200 or 1e-200 neither overflow nor underflow.

    Parameters
    ----------
    A : array-like of shape (n, d)
        Finite values.

    Returns
    -------
    U : ndarray of shape (n, d)
        Float rows of unit norm (or zero).
    """
    A = np.asarray(A)
    if A.dtype.kind != "f":
        A = A.astype(np.float64)
    peak = np.abs(A).max(axis=1, keepdims=True) if A.shape[1] else np.zeros((len(A), 1))
    scaled = A / np.where(peak > 0, peak, 1.0)
    norms = np.linalg.norm(scaled, axis=1, keepdims=True)
    return scaled / np.where(norms > 0, norms, 1.0)


def concept_embeddings(
    encoder: Any, concepts: list[str], *, cache_dir: Any = None, verbose: bool = False
) -> np.ndarray:
    """Unit-norm text embeddings of ``concepts`` (``t_v / ||t_v||``), cached.

    The cache key is the encoder's identity (``cache_identity()``, or the class and
    parameters of a scikit-learn estimator) together with the exact list of concept
    strings, so any change to either computes them again. They are kept in memory for
    every fit in the process, and on disk unless ``cache_dir=False``.

    Parameters
    ----------
    encoder : object
        Has ``encode_text(list_of_str) -> (n, d)`` array.
    concepts : list of str
        The concept strings.
    cache_dir : str, path-like, None or False, default=None
        The cache folder (None: the default one; False: memory only).
    verbose : bool, default=False
        Show progress while encoding.

    Returns
    -------
    embeddings : ndarray of shape (n_concepts, d), float32
        Read-only when it comes from (or went into) the cache.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_splice import concept_embeddings
    >>> class Toy:
    ...     def cache_identity(self):
    ...         return "toy"
    ...     def encode_text(self, texts):
    ...         return np.array([[len(t), 1.0] for t in texts])
    >>> concept_embeddings(Toy(), ["a", "bbb"], cache_dir=False).round(3)
    array([[0.707, 0.707],
           [0.949, 0.316]], dtype=float32)
    """
    concepts = list(concepts)
    identity = encoder_identity(encoder)
    folder = resolve_cache_dir(cache_dir) if identity is not None else None
    name = None
    if identity is not None:
        name = ("concepts", cache_key(identity, json.dumps(concepts, ensure_ascii=False)))
        cached = recall(name, folder)
        if cached is not None:
            if verbose:
                print("[sklearn_splice] concept embeddings from the cache", file=sys.stderr)
            return cached
    emb = _encode_concepts(encoder, concepts, verbose)
    emb = normalize_rows(emb).astype(np.float32)
    if name is None:
        return emb
    try:
        return keep(name, emb, folder)
    except OSError as exc:  # an unwritable cache must not stop the fit
        warnings.warn(
            f"Could not write the concept cache {cache_file(folder, name)}: {exc}", UserWarning
        )
        return recall(name, None)


def _encode_concepts(encoder: Any, concepts: list[str], verbose: bool) -> np.ndarray:
    source = f"{type(encoder).__name__}.encode_text (on the vocabulary)"
    if not verbose or getattr(encoder, "verbose", False):  # a verbose encoder shows its own
        return check_embeddings(encoder.encode_text(concepts), len(concepts), source=source)
    # In chunks, so that any encoder shows progress on a 10,000-word vocabulary.
    chunk = 1000
    starts = range(0, len(concepts), chunk)
    parts = []
    for start in progress(starts, len(starts), f"encoding {len(concepts)} concepts"):
        part = concepts[start : start + chunk]
        width = parts[0].shape[1] if parts else None
        parts.append(
            check_embeddings(encoder.encode_text(part), len(part), width=width, source=source)
        )
    return np.concatenate(parts)


def build_dictionary(unit_embeddings: np.ndarray) -> np.ndarray:
    """``C = normalise(t - mean(t))``: centre over the vocabulary, then unit rows.

    Parameters
    ----------
    unit_embeddings : array-like of shape (n_concepts, d)
        Unit-norm concept embeddings ``t``.

    Returns
    -------
    dictionary : ndarray of shape (n_concepts, d), float32
        The concept dictionary ``C``, one unit row per concept.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_splice import build_dictionary
    >>> build_dictionary(np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2))
    array([[ 0.,  1.],
           [ 0., -1.]], dtype=float32)
    """
    T = np.asarray(unit_embeddings, dtype=np.float64)
    return normalize_rows(T - T.mean(axis=0)).astype(np.float32)
