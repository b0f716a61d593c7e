"""Reading the image inputs users pass: paths, PIL images and HxWxC uint8 arrays."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_image", "image_input_id"]

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def _to_rgb(img: Any) -> Any:
    """Convert any PIL mode to 8-bit RGB without clipping 16-bit data or losing palettes."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT_MODES:
        # PIL's own conversion clips 16-bit values at 255; rescale to the full range instead.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def _describe(item: Any) -> str:
    if isinstance(item, (str, os.PathLike)):
        return f"({os.fspath(item)})"
    return f"({type(item).__name__})"


def load_image(item: Any, index: int = 0) -> Any:
    """Return ``item`` as an RGB ``PIL.Image``; errors name the input's index and path.

    Accepts a file path (``str`` or ``pathlib.Path``), a ``PIL.Image.Image`` or an
    ``HxW`` / ``HxWxC`` uint8 array (C = 1, 3 or 4).
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"Image {index} {_describe(item)} does not exist.")
        if path.is_dir():
            raise ValueError(f"Image {index} {_describe(item)} is a directory, not an image file.")
        try:
            with Image.open(path) as img:
                img.load()
                return _to_rgb(img)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ValueError(
                f"Image {index} {_describe(item)} could not be read as an image: {exc}"
            ) from exc
    if isinstance(item, Image.Image):
        try:
            item.load()
        except (OSError, ValueError) as exc:
            raise ValueError(f"Image {index} (PIL image) could not be read: {exc}") from exc
        return _to_rgb(item)
    if isinstance(item, np.ndarray):
        arr = item
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
            raise ValueError(
                f"Image {index} is an array of shape {item.shape} and dtype {item.dtype}; "
                "image arrays must be HxW or HxWxC uint8 with C in (1, 3, 4)."
            )
        return _to_rgb(Image.fromarray(np.ascontiguousarray(arr)))
    raise TypeError(
        f"Image {index} is a {type(item).__name__}; pass file paths, PIL images or "
        "HxWxC uint8 arrays (or an (n, d) array of precomputed embeddings)."
    )


def image_input_id(item: Any) -> str | None:
    """A content key for an image input: path + size + mtime for files, a hash otherwise."""
    import hashlib

    if isinstance(item, (str, os.PathLike)):
        try:
            st = os.stat(item)
        except OSError:
            return None
        return f"file:{os.path.realpath(item)}:{st.st_size}:{st.st_mtime_ns}"
    h = hashlib.sha256()
    if isinstance(item, np.ndarray):
        h.update(f"{item.shape}{item.dtype}".encode())
        h.update(np.ascontiguousarray(item).tobytes())
        return "array:" + h.hexdigest()
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return None
    if isinstance(item, Image.Image):
        h.update(f"{item.mode}{item.size}".encode())
        h.update(item.tobytes())
        return "pil:" + h.hexdigest()
    return None
