"""Data sets in the forms people have them: image folders, torch Datasets, DataFrames."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_image_folder", "from_torch_dataset", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def load_image_folder(folder: Any, *, extensions=IMAGE_EXTENSIONS) -> tuple[list[str], np.ndarray]:
    """Image paths and labels from a ``class_name/image.jpg`` tree (like torchvision's ImageFolder).

    Images directly in ``folder`` (no class sub-folder) are an error; class folders are
    read in sorted order, files in sorted order within each.

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

    Images may be PIL images, HxWxC uint8 arrays, or CxHxW tensors (float in [0, 1] or
    uint8), which become HxWxC uint8 arrays. Use a dataset without a ``transform``: the
    encoder applies CLIP's own preprocessing.

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
            raise ValueError(f"dataset[{i}] is not an (image, label) pair.")
        image, label = item[0], item[1]
        if hasattr(image, "detach") and hasattr(image, "ndim"):  # a torch tensor
            arr = image.detach().cpu().numpy()
            if arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
                arr = np.moveaxis(arr, 0, -1)
            if arr.dtype != np.uint8:
                arr = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
            image = arr
        images.append(image)
        labels.append(label.item() if hasattr(label, "item") else label)
    return images, np.asarray(labels)
