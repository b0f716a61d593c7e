"""Data sets in the forms people have them: image folders, torch Datasets, DataFrames."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import InputError

__all__ = ["load_image_folder", "from_torch_dataset", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def load_image_folder(folder: Any, *, extensions=IMAGE_EXTENSIONS) -> tuple[list[str], np.ndarray]:
    """Image paths and labels from a ``class_name/image.jpg`` tree (like torchvision's ImageFolder).

    Images directly in ``folder`` (no class sub-folder) are an error; class folders are
    read in sorted order, files in sorted order within each.

    Parameters
    ----------
    folder : str or path
        The root folder, holding one sub-folder per class.
    extensions : tuple of str, default=IMAGE_EXTENSIONS
        File name endings (case-insensitive) that count as images.

    Returns
    -------
    paths : list of str
    labels : ndarray of str
        The class folder name of each image.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sklearn_splice import load_image_folder
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ["cats/a.jpg", "cats/b.png", "dogs/c.jpg", "dogs/notes.txt"]:
    ...     (root / name).parent.mkdir(exist_ok=True)
    ...     _ = (root / name).write_bytes(b"")
    >>> paths, labels = load_image_folder(root)
    >>> [pathlib.Path(p).name for p in paths], labels.tolist()
    (['a.jpg', 'b.png', 'c.jpg'], ['cats', 'cats', 'dogs'])
    """
    root = Path(os.fspath(folder))
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} does not exist or is not a folder.")
    exts = tuple(e.lower() for e in extensions)
    loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in exts]
    if loose:
        raise ValueError(
            f"{root} holds images outside class folders ({', '.join(sorted(loose)[:5])}); "
            "expected the layout class_name/image.jpg."
        )
    paths, labels = [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(class_dir.rglob("*")):
            if path.is_file() and path.suffix.lower() in exts:
                paths.append(str(path))
                labels.append(class_dir.name)
    if not paths:
        raise ValueError(f"No images ({', '.join(exts)}) found in the class folders of {root}.")
    return paths, np.asarray(labels)


def from_torch_dataset(dataset: Any) -> tuple[list, np.ndarray]:
    """Images and labels from a torch ``Dataset`` yielding ``(image, label)``.

    Images may be PIL images, HxWxC uint8 arrays, or CxHxW / HxW tensors, which become
    HxWxC uint8 arrays: uint8 tensors as they are, float tensors (in [0, 1], as
    ``ToTensor`` makes them) scaled by 255. Use a dataset without a ``Normalize``
    transform: the encoder applies CLIP's own preprocessing.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset or sequence
        Anything with ``len()`` whose items are ``(image, label, ...)`` tuples or lists.

    Returns
    -------
    images : list
        The images, tensors converted to HxWxC uint8 arrays, others as given.
    labels : ndarray of shape (n_samples,)
        The labels (0-d tensors become Python numbers).

    Raises
    ------
    InputError
        A ValueError whose ``.index`` is the dataset position: for an item that is not an
        (image, label) pair, a float tensor with values outside [0, 1] or with NaN, or an
        integer tensor with values outside [0, 255].

    Examples
    --------
    >>> import torch
    >>> from sklearn_splice import from_torch_dataset
    >>> data = [(torch.zeros(3, 8, 8), 0), (torch.ones(3, 8, 8), 1)]  # any indexable dataset
    >>> images, labels = from_torch_dataset(data)
    >>> images[1].shape, images[1].max(), labels.tolist()
    ((8, 8, 3), np.uint8(255), [0, 1])
    """
    images, labels = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise InputError(i, "is not an (image, label) pair.", kind=_KIND)
        image, label = item[0], item[1]
        if hasattr(image, "detach") and hasattr(image, "ndim"):  # a torch tensor
            image = _tensor_image(image, i)
        images.append(image)
        labels.append(label.item() if hasattr(label, "item") else label)
    return images, np.asarray(labels)


_KIND = "Dataset item"
_NORMALISED_HINT = (
    "use the dataset without its Normalize transform (or without transforms at all, to get "
    "PIL images), or give uint8 tensors."
)


def _tensor_image(tensor: Any, index: int) -> Any:
    """A CxHxW or HxW image tensor as an HxWxC (or HxW) uint8 array; refuses what would clip."""
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.float()  # NumPy has no bfloat16
    arr = tensor.numpy()
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.dtype == np.uint8 or arr.size == 0:
        return arr
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise InputError(index, "is a float image tensor containing NaN.", kind=_KIND)
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(
                index,
                f"is a float image tensor with values in [{lo:.4g}, {hi:.4g}]; float images "
                "must lie in [0, 1] (as ToTensor makes them), so this one looks normalised "
                f"or scaled to 0-255: {_NORMALISED_HINT}",
                kind=_KIND,
            )
        return np.rint(arr * 255.0).astype(np.uint8)
    if arr.dtype.kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise InputError(
                index,
                f"is an integer image tensor with values in [{lo}, {hi}]; integer images "
                "must lie in [0, 255].",
                kind=_KIND,
            )
        return arr.astype(np.uint8)
    raise InputError(
        index,
        f"is an image tensor of dtype {tensor.dtype}; give uint8 tensors, or float tensors "
        "in [0, 1].",
        kind=_KIND,
    )
