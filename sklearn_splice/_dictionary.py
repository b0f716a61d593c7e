"""The concept dictionary: centred, unit-norm text embeddings of the concepts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ._cache import cache_key, default_cache_dir, load_cached_array, save_cached_array
from ._progress import progress

__all__ = ["normalize_rows", "concept_embeddings", "build_dictionary"]

# Recently used concept embeddings, so that clones fitted in one process (a grid search)
# do not each re-read and re-verify the cache file.
_MEMO: dict[str, np.ndarray] = {}
_MEMO_SIZE = 4


def normalize_rows(A: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero instead of becoming NaN."""
    A = np.asarray(A)
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    return A / np.where(norms > 0, norms, 1.0)


def _resolve_cache_dir(cache_dir: Any) -> Path | None:
    if cache_dir is False:
        return None
    return default_cache_dir() if cache_dir is None else Path(os.fspath(cache_dir))


def concept_embeddings(
    encoder: Any, concepts: list[str], *, cache_dir: Any = None, verbose: bool = False
) -> np.ndarray:
    """Unit-norm text embeddings of ``concepts`` (``t_v / ||t_v||``), cached on disk.

    The cache key is the encoder's ``cache_identity()`` (backbone and weights) together with
    the exact list of concept strings, so any change to either rebuilds the entry. Encoders
    without ``cache_identity`` are not cached; ``cache_dir=False`` disables the cache.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_splice import concept_embeddings
    >>> class Toy:
    ...     def encode_text(self, texts):
    ...         return np.array([[len(t), 1.0] for t in texts])
    >>> concept_embeddings(Toy(), ["a", "bbb"], cache_dir=False).round(3)
    array([[0.707, 0.707],
           [0.949, 0.316]], dtype=float32)
    """
    identity = getattr(encoder, "cache_identity", None)
    folder = _resolve_cache_dir(cache_dir) if callable(identity) else None
    path = key = None
    if folder is not None:
        key = cache_key("concepts-v1", identity(), json.dumps(concepts, ensure_ascii=False))
        path = folder / "concepts" / f"{key}.npz"
        if key in _MEMO and path.exists():
            return _MEMO[key]
        cached = load_cached_array(path, key)
        if cached is not None and cached.shape[0] == len(concepts):
            if verbose:
                print(f"[sklearn_splice] concept embeddings from cache {path}", file=sys.stderr)
            return _memo(key, cached)
    emb = _encode_concepts(encoder, list(concepts), verbose)
    if emb.ndim != 2 or emb.shape[0] != len(concepts):
        raise ValueError(
            f"encoder.encode_text returned shape {emb.shape} for {len(concepts)} concepts; "
            "expected (n_concepts, embedding_dim)."
        )
    if not np.isfinite(emb).all():
        raise ValueError("encoder.encode_text returned NaN or infinite values for the concepts.")
    emb = normalize_rows(emb).astype(np.float32)
    if path is not None:
        _memo(key, emb)
        try:
            save_cached_array(path, key, emb)
        except OSError as exc:  # an unwritable cache must not stop the fit
            import warnings

            warnings.warn(f"Could not write the concept cache {path}: {exc}", UserWarning)
    return emb


def _encode_concepts(encoder: Any, concepts: list[str], verbose: bool) -> np.ndarray:
    if not verbose or getattr(encoder, "verbose", False):  # a verbose encoder shows its own
        return np.asarray(encoder.encode_text(concepts), dtype=np.float32)
    # In chunks, so that any encoder shows progress on a 10,000-word vocabulary.
    chunk = 1000
    starts = range(0, len(concepts), chunk)
    parts = []
    for start in progress(starts, len(starts), f"encoding {len(concepts)} concepts"):
        parts.append(np.asarray(encoder.encode_text(concepts[start : start + chunk]), dtype=np.float32))
    return np.concatenate(parts)


def _memo(key: str, emb: np.ndarray) -> np.ndarray:
    emb.setflags(write=False)  # shared between fits: nobody may change it in place
    _MEMO[key] = emb
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.pop(next(iter(_MEMO)))
    return emb


def build_dictionary(unit_embeddings: np.ndarray) -> np.ndarray:
    """``C = normalise(t - mean(t))``: centre over the vocabulary, then unit rows (SPEC.md).

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
