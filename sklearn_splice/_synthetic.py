"""Synthetic dictionaries and signals shaped like SpLiCE's, for tests and benchmarks."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state


def _unit_rows(A: np.ndarray) -> np.ndarray:
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def make_concept_dictionary(
    n_concepts: int = 10000,
    n_features: int = 512,
    *,
    n_factors: int = 16,
    noise: float = 0.4,
    family_fraction: float = 0.1,
    random_state=None,
) -> np.ndarray:
    """A centred, unit-row dictionary correlated like CLIP text embeddings.

    Rows share a few latent factors (mean absolute cosine of about 0.1-0.3 after
    centring) and a fraction of them are near-duplicates of another row (cosine about
    0.8-0.9), like "dog"/"dogs"/"puppy" in a real vocabulary.
    """
    rng = check_random_state(random_state)
    factors = rng.standard_normal((n_factors, n_features))
    loadings = rng.standard_normal((n_concepts, n_factors))
    loadings = loadings * rng.uniform(0.3, 1.0, (n_concepts, 1))
    T = loadings @ factors / np.sqrt(n_factors)
    T = T + noise * rng.standard_normal((n_concepts, n_features))
    T = _unit_rows(T)
    n_family = int(family_fraction * n_concepts)
    if n_family:
        members = rng.choice(n_concepts, n_family, replace=False)
        parents = rng.choice(n_concepts, n_family)
        parents = np.where(parents == members, (parents + 1) % n_concepts, parents)
        offsets = _unit_rows(rng.standard_normal((n_family, n_features)))
        T[members] = _unit_rows(T[parents] + 0.6 * offsets)
    T = T - T.mean(axis=0)
    return _unit_rows(T).astype(np.float32)


def make_sparse_signals(
    dictionary: np.ndarray,
    n_samples: int = 256,
    *,
    n_active: int = 20,
    noise: float = 0.5,
    random_state=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm signals built from ``n_active`` random atoms plus dense noise.

    Returns the signals ``(n_samples, d)`` and the planted weights ``(n_samples, c)``.
    """
    rng = check_random_state(random_state)
    c, d = dictionary.shape
    W = np.zeros((n_samples, c))
    for i in range(n_samples):
        atoms = rng.choice(c, n_active, replace=False)
        W[i, atoms] = rng.uniform(0.5, 1.5, n_active)
    Z = W @ dictionary.astype(np.float64)
    Z = _unit_rows(Z) + noise * _unit_rows(rng.standard_normal((n_samples, d)))
    return _unit_rows(Z), W
