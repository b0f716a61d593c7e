"""Concept vocabularies and reference mean image embeddings shipped with the package.

The data files come from the SpLiCE authors (https://github.com/AI4LIFE-GROUP/SpLiCE,
Apache License 2.0); see the package's NOTICE file.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from importlib import resources

import numpy as np

__all__ = ["VOCABULARIES", "load_vocabulary", "load_reference_mean", "REFERENCE_MEANS"]

#: Shipped vocabularies: name -> file under data/vocab, least frequent concept first.
VOCABULARIES = {
    "laion": "laion.txt",
    "laion_bigrams": "laion_bigrams.txt",
    "mscoco": "mscoco.txt",
}

#: Shipped MSCOCO mean image embeddings: (open_clip model name, pretrained tag) -> file.
REFERENCE_MEANS = {
    ("ViT-B-32", "laion2b_s34b_b79k"): "laion2b_s34b_b79k_ViT-B-32.npy",
    ("ViT-B-32", "openai"): "openai_ViT-B-32.npy",
    ("ViT-B-16", "openai"): "openai_ViT-B-16.npy",
    ("RN50", "openai"): "openai_RN50.npy",
}


def unknown_concepts_hint(missing, known) -> str:
    """``'kat' (close: cat); 'dgo' (close: dog)``: each unknown name with its near matches.

    Parameters
    ----------
    missing : iterable
        The names not found.
    known : iterable of str
        The concept names there are.

    Returns
    -------
    hint : str
    """
    import difflib

    known = list(known)
    hints = []
    for name in missing:
        close = difflib.get_close_matches(str(name), known, n=3)
        hints.append(f"{name!r}" + (f" (close: {', '.join(close)})" if close else ""))
    return "; ".join(hints)


def _data_file(*parts: str):
    return resources.files("sklearn_splice").joinpath("data", *parts)


def load_vocabulary(vocabulary="laion", size: int | None = 10000) -> list[str]:
    """Concept strings of a shipped vocabulary, or a checked copy of a user's list.

    Parameters
    ----------
    vocabulary : {"laion", "laion_bigrams", "mscoco"} or sequence of str, default="laion"
        A shipped vocabulary or the concepts themselves. The shipped files are sorted from
        least to most frequent, so the ``size`` most frequent concepts are their last
        ``size`` lines (the paper's default is the last 10,000 lines of ``"laion"``).
    size : int or None, default=10000
        Keep the ``size`` most frequent concepts of a shipped vocabulary (ignored for a
        user's list). ``None`` keeps all of them.

    Returns
    -------
    concepts : list of str
        Distinct, non-empty concept strings, in file order (least frequent first) or in the
        order given. Leading and trailing whitespace is removed; a repeated concept keeps
        its first place and raises a warning.

    Examples
    --------
    >>> from sklearn_splice import load_vocabulary
    >>> concepts = load_vocabulary("laion", size=5)
    >>> len(concepts)
    5
    >>> load_vocabulary(["cat", "dog", " tree "])
    ['cat', 'dog', 'tree']
    """
    if isinstance(vocabulary, str):
        if vocabulary not in VOCABULARIES:
            raise ValueError(
                f"Unknown vocabulary {vocabulary!r}; use one of {sorted(VOCABULARIES)} "
                "or pass a list of concept strings."
            )
        text = _data_file("vocab", VOCABULARIES[vocabulary]).read_text(encoding="utf-8")
        concepts = [line.strip() for line in text.splitlines() if line.strip()]
        if size is not None:
            if size < 1:
                raise ValueError(f"vocabulary_size must be a positive integer or None, got {size}.")
            concepts = concepts[-size:]
        source = f"vocabulary {vocabulary!r}"
    else:
        if not isinstance(vocabulary, Sequence) and not isinstance(vocabulary, np.ndarray):
            raise TypeError(
                "vocabulary must be a shipped vocabulary name or a sequence of concept "
                f"strings, got {type(vocabulary).__name__}."
            )
        concepts = []
        for i, concept in enumerate(vocabulary):
            if not isinstance(concept, str):
                raise TypeError(
                    f"vocabulary[{i}] is {type(concept).__name__} ({concept!r}); every concept "
                    "must be a string."
                )
            if not concept.strip():
                raise ValueError(f"vocabulary[{i}] is blank; every concept must contain text.")
            concepts.append(concept.strip())
        source = "the vocabulary"
    if not concepts:
        raise ValueError(f"{source} is empty; it needs at least 2 distinct concepts.")
    unique = list(dict.fromkeys(concepts))
    if len(unique) < len(concepts):
        repeated = sorted({c for c in concepts if concepts.count(c) > 1})
        warnings.warn(
            f"{source} repeats {len(concepts) - len(unique)} concept(s) "
            f"({', '.join(map(repr, repeated[:10]))}); each is kept once, at its first place.",
            UserWarning,
            stacklevel=2,
        )
    if len(unique) < 2:
        raise ValueError(
            f"{source} has {len(unique)} distinct concept(s); centring the dictionary needs at "
            "least 2."
        )
    return unique


def load_reference_mean(model_name: str, pretrained: str) -> np.ndarray:
    """The shipped MSCOCO mean image embedding of an open_clip backbone.

    Parameters
    ----------
    model_name : str
        The open_clip architecture, e.g. ``"ViT-B-32"``.
    pretrained : str
        The open_clip pretrained tag, e.g. ``"laion2b_s34b_b79k"`` or ``"openai"``.

    Returns
    -------
    mean : ndarray of shape (d,)
        Average of unit-normalised image embeddings (not renormalised).

    Examples
    --------
    >>> from sklearn_splice import load_reference_mean
    >>> load_reference_mean("ViT-B-32", "laion2b_s34b_b79k").shape
    (512,)
    """
    key = (str(model_name).replace("/", "-"), str(pretrained))
    if key not in REFERENCE_MEANS:
        known = ", ".join(f"{m}/{p}" for m, p in REFERENCE_MEANS)
        raise ValueError(
            f"No reference mean image embedding is shipped for {key[0]}/{key[1]}; known "
            f"backbones: {known}. Use image_mean='fit' or pass an array of shape (d,)."
        )
    with _data_file("means", REFERENCE_MEANS[key]).open("rb") as fh:
        return np.load(fh, allow_pickle=False).astype(np.float32)
