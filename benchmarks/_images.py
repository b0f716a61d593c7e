"""Benchmark helper: a folder of real JPEG files cut from scikit-learn's sample photos."""

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images


def make_image_folder(n: int, size: int = 256, folder: str | None = None):
    """Write ``n`` JPEGs (random crops, two classes) and return (paths, labels)."""
    folder = Path(folder or tempfile.mkdtemp(prefix="splice-bench-"))
    rng = np.random.RandomState(0)
    photos = load_sample_images().images
    paths, labels = [], []
    for i in range(n):
        label = i % 2
        photo = photos[label]
        top = rng.randint(0, photo.shape[0] - size)
        left = rng.randint(0, photo.shape[1] - size)
        path = folder / f"img{i:05d}.jpg"
        crop = np.ascontiguousarray(photo[top : top + size, left : left + size])
        Image.fromarray(crop).save(path, quality=90)
        paths.append(str(path))
        labels.append(label)
    return paths, np.array(labels)
