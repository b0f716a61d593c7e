"""From a classified batch of inputs to checked embeddings: the one path every caller takes.

:func:`embed_inputs` asks the encoder only for the inputs not seen before with the same
backbone (``GridSearchCV`` clones the transformer for every candidate and fold, so without
this CLIP would embed the same images once per clone), checks what the encoder returned
with :func:`check_embeddings`, and re-addresses the encoder's errors and warnings from the
positions it was given to the caller's positions, through their data.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ._cache import cache_key, encoder_identity, input_key, keep, recall, resolve_cache_dir
from ._errors import InputError, UnreadableInputsWarning
from ._inputs import Inputs, as_numpy

__all__ = ["check_embeddings", "embed_inputs", "encode_items"]


def check_embeddings(
    E: Any,
    n_rows: int,
    *,
    width: int | None = None,
    source: str = "the encoder",
    positions: Sequence[int] | None = None,
) -> np.ndarray:
    """Check what an encoder returned: one row per input, the expected width, finite numbers.

    Parameters
    ----------
    E : array-like
        The encoder's output (a numpy array or a torch tensor).
    n_rows : int
        How many inputs it was given.
    width : int, default=None
        The required number of columns (None: any width of at least 1).
    source : str, default="the encoder"
        The call that produced ``E``, for messages.
    positions : sequence of int, default=None
        The caller's position of each row, when the encoder saw a subset.

    Returns
    -------
    E : ndarray of shape (n_rows, width)
        The same values as a numpy array of real numbers.

    Raises
    ------
    ValueError
        For a wrong row count or width, a non-numeric or complex dtype, or fewer than 2
        dimensions; :class:`InputError` (with ``.index``) for the first row holding NaN or
        infinite values.
    """
    try:
        E = as_numpy(E)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source} returned something that is not an array: {exc}") from exc
    if E.dtype.kind not in "biuf":
        raise ValueError(
            f"{source} returned an array of dtype {E.dtype}; embeddings must be real numbers."
        )
    if E.ndim != 2:
        raise ValueError(
            f"{source} returned an array of shape {E.shape}; expected (n_inputs, width)."
        )
    if E.shape[0] != n_rows:
        raise ValueError(
            f"{source} returned {E.shape[0]} rows for {n_rows} inputs; an encoder must return "
            "exactly one row per input, in the order given."
        )
    if width is not None and E.shape[1] != width:
        raise width_error(E.shape[1], width, source)
    if E.shape[1] == 0:
        raise ValueError(f"{source} returned embeddings of width 0.")
    if E.dtype.kind == "f":
        finite = np.isfinite(E).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            where = [int(positions[i]) if positions is not None else int(i) for i in bad]
            raise InputError(
                where[0],
                f"got an embedding with NaN or infinite values from {source} "
                f"({len(bad)} such input(s): {where[:10]}).",
            )
    return E


def width_error(got: int, width: int, source: str) -> ValueError:
    """The error for embeddings of the wrong width.

    Parameters
    ----------
    got : int
        The width returned.
    width : int
        The width needed.
    source : str
        The call that returned them.

    Returns
    -------
    error : ValueError
    """
    return ValueError(
        f"{source} returned embeddings of width {got}, but width {width} is needed (the "
        "concept dictionary's, or that of the embeddings cached for it)."
    )


def _encode_at(
    encode: Callable,
    items: list,
    positions: Sequence[int],
    n_total: int,
    source: str,
    width: int | None = None,
) -> np.ndarray:
    """``encode`` the items at ``positions``; its errors and warnings name caller positions."""
    subset = items if len(positions) == len(items) else [items[i] for i in positions]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = encode(subset)
        except InputError as exc:
            if not 0 <= exc.index < len(positions):
                raise
            raise exc.at(positions[exc.index]) from exc.__cause__
    for w in caught:
        message = w.message
        if isinstance(message, UnreadableInputsWarning):
            message = message.at(positions, n_total)
        warnings.warn_explicit(message, w.category, w.filename, w.lineno, source=w.source)
    return check_embeddings(
        out, len(positions), width=width, source=source, positions=positions
    )


def encode_items(
    encode: Callable,
    items: list,
    modality: str,
    *,
    identity: str | None,
    folder: Path | None,
    source: str = "the encoder",
    width: int | None = None,
) -> np.ndarray:
    """``encode(items)``, computing only the inputs not seen before with this backbone.

    Parameters
    ----------
    encode : callable
        ``encode(list) -> (len(list), d)`` array.
    items : list
        The inputs.
    modality : {"image", "text"}
    identity : str or None
        Names the backbone (see :func:`encoder_identity`); None caches nothing.
    folder : Path or None
        The cache folder; None keeps the embeddings in memory only.
    source : str, default="the encoder"
        The call, for messages.
    width : int, default=None
        The width the embeddings must have (None: any, the same for all).

    Returns
    -------
    E : ndarray of shape (len(items), d)
        Rows in the order of ``items``. All-zero rows (unreadable inputs under
        ``on_error="zero"``) are never cached.
    """
    n = len(items)
    if identity is None:
        return _encode_at(encode, items, range(n), n, source, width)
    backbone = cache_key(modality, identity)
    names = [
        None if key is None else ("input", backbone, key)
        for key in (input_key(item, modality) for item in items)
    ]
    found: dict[int, np.ndarray] = {}
    for i, name in enumerate(names):
        vec = None if name is None else recall(name, folder)
        if vec is not None:
            found[i] = vec
    missing = [i for i in range(n) if i not in found]
    if missing:
        widths = {v.shape[0] for v in found.values()}
        fresh = _encode_at(
            encode, items, missing, n, source, width if width is not None or not found
            else widths.pop()
        )
        for j, i in enumerate(missing):
            vec = np.array(fresh[j])  # the encoder's dtype: cold and warm caches agree
            found[i] = vec
            if names[i] is None or not vec.any():
                continue
            try:
                keep(names[i], vec, folder)
            except OSError:
                folder = None  # an unwritable cache must not stop the work
    E = np.stack([found[i] for i in range(n)])
    if width is not None and E.shape[1] != width:  # every row came from the cache
        raise width_error(E.shape[1], width, source)
    return E


def embed_inputs(
    encoder: Any,
    inputs: Inputs,
    modality: str,
    *,
    use_cache: bool = True,
    cache_dir: Any = None,
    width: int | None = None,
) -> np.ndarray:
    """The checked embeddings of a classified batch, as the encoder gives them (not normalised).

    Parameters
    ----------
    encoder : object
        Has ``encode_image`` and ``encode_text``.
    inputs : Inputs
        From :func:`classify_inputs`; a matrix must already be validated.
    modality : {"image", "text"}
    use_cache : bool, default=True
        Reuse and store the embeddings of items (never of matrices).
    cache_dir : str, path-like, None or False, default=None
        As ``SpliceTransformer(cache_dir=...)``.
    width : int, default=None
        The width the embeddings must have (the concept dictionary's), when known.

    Returns
    -------
    E : ndarray of shape (n_inputs, d)
    """
    encode = encoder.encode_image if modality == "image" else encoder.encode_text
    source = f"{type(encoder).__name__}.encode_{modality}"
    if inputs.is_matrix:
        X = inputs.data
        return check_embeddings(encode(X), X.shape[0], width=width, source=source)
    identity = encoder_identity(encoder) if use_cache else None
    folder = resolve_cache_dir(cache_dir) if identity is not None else None
    return encode_items(
        encode,
        inputs.data,
        modality,
        identity=identity,
        folder=folder,
        source=source,
        width=width,
    )
