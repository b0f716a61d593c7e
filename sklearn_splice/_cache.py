"""On-disk cache of arrays: atomic writes, no pickle, verified reads."""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

__all__ = ["default_cache_dir", "cache_key", "load_cached_array", "save_cached_array"]

CACHE_ENV = "SKLEARN_SPLICE_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$SKLEARN_SPLICE_CACHE_DIR``, else ``$XDG_CACHE_HOME/sklearn_splice``, else ``~/.cache/sklearn_splice``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sklearn_splice"


def cache_key(*parts: str) -> str:
    """A SHA-256 over the parts, length-prefixed so that no two part lists collide."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _checksum(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def load_cached_array(path: Path, key: str) -> np.ndarray | None:
    """The array stored at ``path`` for ``key``, or None when missing or not trustworthy.

    A file that cannot be read, holds another key or fails its checksum is reported once
    with a warning and removed, so that the caller rebuilds it.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_key = str(data["key"])
            array = data["array"]
            checksum = str(data["checksum"])
        if stored_key != key:
            problem = "it belongs to another key"
        elif _checksum(array) != checksum:
            problem = "its checksum does not match"
        else:
            return array
    except Exception as exc:  # any unreadable file is rebuilt, whatever the reason
        problem = f"it could not be read ({type(exc).__name__}: {exc})"
    warnings.warn(f"Ignoring cache file {path}: {problem}; it will be rebuilt.", UserWarning)
    try:
        path.unlink()
    except OSError:
        pass
    return None


def save_cached_array(path: Path, key: str, array: np.ndarray) -> None:
    """Write atomically (temporary file, then rename) so readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, array=array, key=np.array(key), checksum=np.array(_checksum(array)))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
