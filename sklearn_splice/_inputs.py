"""What a batch of inputs is, decided once per call.

Every entry point (``fit``, ``partial_fit``, ``transform``, ``embed``, the zero-shot
classifier and the encoders) asks :func:`classify_inputs`, so one rule decides whether
``X`` is a numeric matrix (precomputed embeddings or features, validated by scikit-learn)
or a collection of items to embed one by one (file paths, PIL images, image arrays,
strings, or anything a custom encoder understands).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from numbers import Number
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._errors import InputTypeError

__all__ = ["Inputs", "classify_inputs", "as_numpy"]

MATRIX = "matrix"
ITEMS = "items"


@dataclass(frozen=True)
class Inputs:
    """A classified batch: ``kind`` is ``"matrix"`` or ``"items"``.

    For a matrix, ``data`` is ``X`` exactly as given (so that ``validate_data`` records
    DataFrame column names); for items it is a list holding the caller's objects, unchanged.
    """

    kind: str
    data: Any

    @property
    def is_matrix(self) -> bool:
        return self.kind == MATRIX


def as_numpy(obj: Any) -> np.ndarray:
    """A numpy array of ``obj``; torch tensors on any device, with gradients or in bfloat16
    (which numpy lacks) included.

    Parameters
    ----------
    obj : array-like or torch.Tensor

    Returns
    -------
    array : ndarray
    """
    if hasattr(obj, "detach") and hasattr(obj, "cpu") and hasattr(obj, "dtype"):
        obj = obj.detach().cpu()
        if str(obj.dtype) == "torch.bfloat16":
            obj = obj.float()
        return obj.numpy()
    return np.asarray(obj)


def _is_pil_image(obj: Any) -> bool:
    return hasattr(obj, "getpixel") and hasattr(obj, "mode")


def _is_single_item(obj: Any) -> bool:
    return isinstance(obj, (str, bytes, os.PathLike)) or _is_pil_image(obj)


def _member_kind(obj: Any) -> str:
    """``"row"`` for a row of numbers (a number alone counts too), ``"item"`` otherwise."""
    if isinstance(obj, (Number, np.number)):
        return "row"
    if isinstance(obj, (list, tuple)):
        return "row"
    if isinstance(obj, np.ndarray):
        return "row" if obj.ndim <= 1 and obj.dtype.kind in "biufc" else "item"
    return "item"


def _numeric_dtype(dtype: Any) -> bool:
    return getattr(dtype, "kind", "O") in "biufc"


def _from_frame(X: Any) -> Inputs:
    """A pandas DataFrame: numeric columns are a matrix; one other column is a list of items."""
    if all(_numeric_dtype(t) for t in X.dtypes):
        return Inputs(MATRIX, X)
    if X.shape[1] == 1:
        return _from_list(list(X.iloc[:, 0]))
    columns = [str(c) for c in X.columns]
    text_columns = [str(c) for c, t in zip(X.columns, X.dtypes) if not _numeric_dtype(t)]
    raise ValueError(
        f"X is a DataFrame with {X.shape[1]} columns {columns}; non-numeric input must be one "
        f"column of paths, images or texts. Pass that column alone, e.g. "
        f"X[{text_columns[0]!r}], and give labels as y."
    )


def _from_array(X: np.ndarray) -> Inputs:
    if X.dtype.kind in "biufc":
        if X.ndim == 4:  # (n, H, W, C) image arrays
            return _from_list(list(X))
        if X.ndim == 3:
            raise ValueError(
                f"Got an array of shape {X.shape}: pass a list of HxW or HxWxC image arrays, "
                "an (n, H, W, C) array of images, or an (n, d) array of embeddings."
            )
        return Inputs(MATRIX, X)
    if X.ndim == 1 or (X.ndim == 2 and X.shape[1] == 1):
        return _from_list(list(X.reshape(-1)) if X.ndim == 2 else list(X))
    return Inputs(MATRIX, X)  # e.g. an object array of numbers: validate_data decides


def _from_list(items) -> Inputs:
    """A list or tuple: rows of numbers are a matrix (kept as given), anything else items."""
    if not len(items):
        raise ValueError("Got an empty collection of inputs; at least one is needed.")
    kinds = [_member_kind(obj) for obj in items]
    n_rows = kinds.count("row")
    if n_rows == len(items):
        return Inputs(MATRIX, items)
    if n_rows == 0:
        return Inputs(ITEMS, list(items))
    majority = "row" if 2 * n_rows > len(items) else "item"
    odd = next(i for i, k in enumerate(kinds) if k != majority)
    if majority == "row":
        reason = (
            f"is a {type(items[odd]).__name__} among rows of numbers; a matrix of "
            "embeddings must hold numbers only."
        )
    else:
        reason = (
            f"is a {type(items[odd]).__name__} among {_describe_items(items, kinds)}; "
            "a collection of inputs must not mix in rows of numbers."
        )
    raise InputTypeError(odd, reason)


def _describe_items(items: list, kinds: list) -> str:
    first = next(obj for obj, k in zip(items, kinds) if k == "item")
    return f"{type(first).__name__} inputs"


def classify_inputs(X: Any) -> Inputs:
    """Decide whether ``X`` is a numeric matrix or a collection of items to embed.

    Parameters
    ----------
    X : object
        What the caller passed.

    Returns
    -------
    inputs : Inputs
        ``kind`` ``"matrix"`` (numeric arrays, sparse matrices, numeric DataFrames, nested
        lists of numbers; validated later by scikit-learn) or ``"items"`` (a list of paths,
        PIL images, image arrays, strings or other objects).

    Raises
    ------
    TypeError
        For a single path, string or image (it must be wrapped in a list), a mapping, or an
        object that is not a collection; :class:`InputTypeError` (with ``.index``) for a
        collection that mixes rows of numbers with other inputs.
    ValueError
        For an empty collection, a 3-D numeric array, or a DataFrame with several columns
        that are not all numeric.
    """
    if sp.issparse(X):
        return Inputs(MATRIX, X)
    if _is_single_item(X):
        raise TypeError(
            f"Expected a collection of inputs, got a single {type(X).__name__}; "
            f"wrap it in a list: [{X!r}]."
        )
    if hasattr(X, "iloc") and hasattr(X, "dtypes") and getattr(X, "ndim", 0) == 2:
        return _from_frame(X)
    if hasattr(X, "iloc") and getattr(X, "ndim", 0) == 1:  # a pandas Series
        return Inputs(MATRIX, X) if _numeric_dtype(X.dtype) else _from_list(list(X))
    if isinstance(X, np.ndarray):
        return _from_array(X)
    if isinstance(X, (list, tuple)):
        return _from_list(X)
    if hasattr(X, "__array__"):  # dask, torch and other array types
        return _from_array(as_numpy(X))
    if isinstance(X, dict) or not hasattr(X, "__iter__"):
        raise TypeError(
            f"Expected a collection of inputs (a list, array or DataFrame column), got "
            f"{type(X).__name__}."
        )
    return _from_list(list(X))
