"""Reading the image inputs users pass: paths, PIL images and HxWxC uint8 arrays."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._errors import InputError, InputTypeError, MissingInputError
from ._files import MISSING, is_local_fs, is_url, regular_file_problem, url_to_fs

__all__ = ["load_image", "check_regular_file"]

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def _to_rgb(img: Any) -> Any:
    """Convert any PIL mode to 8-bit RGB without clipping 16-bit data or losing palettes."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT_MODES:
        # PIL's own conversion clips 16-bit values at 255; rescale the 16-bit range instead,
        # the same for every image (mode "I" is how PIL opens 16-bit PNGs).
        arr = np.asarray(img, dtype=np.float64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(
                f"its {img.mode!r} pixel values span [{arr.min():g}, {arr.max():g}], outside "
                "the 16-bit range [0, 65535] that integer images are read as"
            )
        arr8 = np.rint(arr * (255.0 / 65535.0)).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def load_image(item: Any, index: int = 0) -> Any:
    """Return ``item`` as an RGB ``PIL.Image``.

    Parameters
    ----------
    item : str, bytes, path-like, PIL.Image.Image or ndarray
        A path to a regular file, an fsspec URL (``s3://``, ``gs://``, ``https://``,
        ``memory://``, ``file://``; read with fsspec), a PIL image, or an ``HxW`` /
        ``HxWxC`` uint8 array (C = 1, 3 or 4).
    index : int, default=0
        The input's position in the caller's collection, carried by any error.

    Returns
    -------
    image : PIL.Image.Image
        An 8-bit RGB image.

    Raises
    ------
    MissingInputError
        The path or URL does not exist.
    InputError
        Anything else that makes the input unreadable (not a regular file, not an image,
        truncated, empty, a closed PIL image); ``.index`` and ``.path`` say which input.
    InputTypeError
        The input is of another type.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, (str, bytes, os.PathLike)):
        source = _read_url(item, index) if is_url(item) else item
        if source is item:
            check_regular_file(item, index)
        try:
            with Image.open(source) as img:
                img.load()
                rgb = _to_rgb(img)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise InputError(
                index, f"could not be read as an image: {exc}", path=item, kind="Image"
            ) from exc
        return _check_size(rgb, index, item)
    if isinstance(item, Image.Image):
        try:
            item.load()
            rgb = _to_rgb(item)
        except (OSError, ValueError, AttributeError) as exc:
            raise InputError(index, f"(PIL image) could not be read: {exc}", kind="Image") from exc
        return _check_size(rgb, index)
    if isinstance(item, np.ndarray):
        arr = item
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.dtype != np.uint8 or not (
            arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))
        ):
            raise InputError(
                index,
                f"is an array of shape {item.shape} and dtype {item.dtype}; image arrays must "
                "be HxW or HxWxC uint8 with C in (1, 3, 4).",
                kind="Image",
            )
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise InputError(index, f"is an empty image array of shape {item.shape}.", kind="Image")
        return _to_rgb(Image.fromarray(np.ascontiguousarray(arr)))
    raise InputTypeError(
        index,
        f"is a {type(item).__name__}; pass file paths, PIL images or HxWxC uint8 arrays "
        "(or an (n, d) array of precomputed embeddings).",
        kind="Image",
    )


def _read_url(url: str, index: int) -> Any:
    """The bytes at ``url`` as a file object; a missing or unreadable URL is an InputError."""
    import io

    fs, path = url_to_fs(url)  # ImportError (fsspec or the protocol's package) propagates
    problem = regular_file_problem(path) if is_local_fs(fs) else None
    if problem is not None:  # a local FIFO would block
        error = MissingInputError if problem == MISSING else InputError
        raise error(index, problem, path=url, kind="Image")
    try:
        return io.BytesIO(fs.cat_file(path))
    except FileNotFoundError:
        raise MissingInputError(index, MISSING, path=url, kind="Image") from None
    except IsADirectoryError:
        raise InputError(index, "is a directory, not a file.", path=url, kind="Image") from None
    except Exception as exc:  # network, permission and service errors of any backend
        raise InputError(
            index, f"could not be read: {type(exc).__name__}: {exc}", path=url, kind="Image"
        ) from exc


def check_regular_file(path: Any, index: int) -> None:
    """Refuse what is not a regular file before opening it: a FIFO or device would block.

    A URL (``s3://``, ``memory://``, ...) is not checked here: reading it reports a missing
    or unreadable object with the same errors.

    Parameters
    ----------
    path : str, bytes or path-like
        The image file.
    index : int
        Its position in the caller's collection, carried by the error.
    """
    if is_url(path):
        return
    problem = regular_file_problem(path)
    if problem is not None:
        error = MissingInputError if problem == MISSING else InputError
        raise error(index, problem, path=path, kind="Image")


def _check_size(image: Any, index: int, path: Any = None) -> Any:
    if image.width == 0 or image.height == 0:
        raise InputError(index, f"is an empty image of size {image.size}.", path=path, kind="Image")
    return image
