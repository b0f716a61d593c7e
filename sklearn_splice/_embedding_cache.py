"""Embeddings of individual inputs, reused across clones, refits and worker processes.

``GridSearchCV`` clones the transformer for every candidate and fold, so without a cache
CLIP would embed the same images once per (candidate, fold). Each input gets a content key
(path + size + mtime for files, a hash for arrays, PIL images and strings); its embedding
is kept in a bounded in-process store and, when a cache folder is set, in one small file
per input, which joblib worker processes share.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._cache import cache_key, load_cached_array, save_cached_array
from ._images import image_input_id

__all__ = ["cached_encode", "clear_memory_cache"]

_MEMORY: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_MEMORY_BYTES = 0
_MEMORY_LIMIT = 1 << 30  # 1 GiB: about half a million 512-d float32 embeddings
_LOCK = threading.Lock()


def clear_memory_cache() -> None:
    """Forget every embedding held in this process."""
    global _MEMORY_BYTES
    with _LOCK:
        _MEMORY.clear()
        _MEMORY_BYTES = 0


def _remember(key: tuple[str, str], vector: np.ndarray) -> None:
    global _MEMORY_BYTES
    with _LOCK:
        if key in _MEMORY:
            return
        _MEMORY[key] = vector
        _MEMORY_BYTES += vector.nbytes
        while _MEMORY_BYTES > _MEMORY_LIMIT and _MEMORY:
            _, old = _MEMORY.popitem(last=False)
            _MEMORY_BYTES -= old.nbytes


def _recall(key: tuple[str, str]) -> np.ndarray | None:
    with _LOCK:
        vector = _MEMORY.get(key)
        if vector is not None:
            _MEMORY.move_to_end(key)
        return vector


def _input_id(item: Any, kind: str) -> str | None:
    if kind == "text":
        if not isinstance(item, str):
            return None
        return "text:" + hashlib.sha256(item.encode("utf-8")).hexdigest()
    return image_input_id(item)


def cached_encode(
    encode: Callable[[list], np.ndarray],
    identity: str | None,
    items: list,
    kind: str,
    folder: Path | None,
) -> np.ndarray:
    """``encode(items)``, computing only the inputs not seen before with this backbone.

    ``identity`` names the backbone (``encoder.cache_identity()``); without it nothing is
    cached. Inputs without a content key (unknown types) are always encoded. Row order is
    that of ``items``.
    """
    if identity is None:
        return np.asarray(encode(items))
    backbone = cache_key("embeddings-v1", kind, identity)
    ids = [_input_id(item, kind) for item in items]
    found: dict[int, np.ndarray] = {}
    for i, item_id in enumerate(ids):
        if item_id is None:
            continue
        vec = _recall((backbone, item_id))
        if vec is None and folder is not None:
            vec = load_cached_array(_path(folder, backbone, item_id), item_id)
            if vec is not None:
                _remember((backbone, item_id), vec)
        if vec is not None:
            found[i] = vec
    missing = [i for i in range(len(items)) if i not in found]
    if missing:
        # Encode the missing inputs as one call so the encoder still batches them and its
        # errors still name each input by its position in the caller's list.
        fresh = _encode_subset(encode, items, missing)
        for j, i in enumerate(missing):
            vec = np.ascontiguousarray(fresh[j], dtype=np.float32)
            found[i] = vec
            if ids[i] is None or not vec.any():
                continue  # all-zero rows mark unreadable inputs: never remembered
            _remember((backbone, ids[i]), vec)
            if folder is not None:
                try:
                    save_cached_array(_path(folder, backbone, ids[i]), ids[i], vec)
                except OSError:
                    folder = None  # an unwritable cache must not stop the work
    return np.stack([found[i] for i in range(len(items))])


def _encode_subset(encode, items, positions):
    """Encode ``items[positions]``; errors and warnings name inputs by their index in ``items``."""
    import warnings

    if len(positions) == len(items):
        return np.asarray(encode(items))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = np.asarray(encode([items[i] for i in positions]))
    except (FileNotFoundError, ValueError, TypeError) as exc:
        raise type(exc)(_reindex(str(exc), positions)) from exc
    for w in caught:
        warnings.warn(_reindex(str(w.message), positions), w.category, stacklevel=3)
    return out


def _reindex(message: str, positions: list[int]) -> str:
    """Rewrite "Image k" / "Text k" (and "k: Image k") from subset to caller positions."""
    import re

    def index(k: str) -> str:
        k = int(k)
        return str(positions[k] if k < len(positions) else k)

    message = re.sub(r"\b(\d+): (Image|Text) (\d+)", lambda m: f"{index(m.group(1))}: {m.group(2)} {index(m.group(3))}", message)
    return re.sub(r"(?<!: )\b(Image|Text) (\d+)", lambda m: f"{m.group(1)} {index(m.group(2))}", message)


def _path(folder: Path, backbone: str, item_id: str) -> Path:
    name = hashlib.sha256(item_id.encode("utf-8")).hexdigest()
    return Path(folder) / "embeddings" / backbone[:32] / name[:2] / f"{name}.npz"
