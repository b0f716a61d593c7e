"""Where and how sklearn_splice caches: the folder rule, keys, one memory store, files.

Every cache in the package goes through this module: the concept embeddings of a
vocabulary and the embeddings of individual inputs. Both live in one bounded in-process
store (shared by every clone in the process, so a grid search reuses them) and, unless the
cache folder is disabled, in files written atomically, stored without pickle and verified
on read.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ._files import is_url, replace_file, url_to_fs

__all__ = [
    "CACHE_ENV",
    "default_cache_dir",
    "resolve_cache_dir",
    "cache_key",
    "file_identity",
    "url_identity",
    "input_key",
    "encoder_identity",
    "MEMORY",
    "clear_memory_cache",
    "cache_file",
    "recall",
    "keep",
    "load_cached_array",
    "save_cached_array",
]

CACHE_ENV = "SKLEARN_SPLICE_CACHE_DIR"
# Bound of the in-process store: about half a million 512-d float32 embeddings.
_MEMORY_LIMIT = 1 << 30


def default_cache_dir() -> Path:
    """The default cache folder.

    ``$SKLEARN_SPLICE_CACHE_DIR``, else ``$XDG_CACHE_HOME/sklearn_splice``, else
    ``~/.cache/sklearn_splice``.

    Returns
    -------
    folder : Path
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sklearn_splice"


def resolve_cache_dir(cache_dir: Any) -> Path | None:
    """The cache folder a ``cache_dir`` parameter means: ``False`` none, ``None`` the default.

    Parameters
    ----------
    cache_dir : str, path-like, None or False

    Returns
    -------
    folder : Path or None
    """
    if cache_dir is False:
        return None
    return default_cache_dir() if cache_dir is None else Path(os.fspath(cache_dir))


def _utf8(text: str) -> bytes:
    # Undecodable file names come back from os.listdir as lone surrogates: keep them distinct.
    return text.encode("utf-8", "surrogatepass")


def cache_key(*parts: str) -> str:
    """A SHA-256 over the parts, length-prefixed so that no two part lists collide.

    Parameters
    ----------
    *parts : str
        Any text, lone surrogates included.

    Returns
    -------
    key : str
        64 hexadecimal digits.
    """
    h = hashlib.sha256()
    for part in parts:
        data = _utf8(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def file_identity(path: Any) -> str | None:
    """``file:<real path>:<size>:<mtime in ns>``, or None when the file cannot be stat'ed.

    A file replaced in place keeps its identity only if its size and modification time
    stay the same to the nanosecond; tools that copy and then restore the time stamp
    (``cp -p``, ``rsync -t``) of a file of equal size would not be noticed.

    Parameters
    ----------
    path : str, bytes or path-like

    Returns
    -------
    identity : str or None
    """
    try:
        st = os.stat(path)
        real = os.fsdecode(os.path.realpath(path))
    except (OSError, ValueError):
        return None
    return f"file:{real}:{st.st_size}:{st.st_mtime_ns}"


# What fsspec's info() may say about an object's version, most specific first: an ETag or
# checksum changes with the content, a time stamp with every write.
_VERSION_FIELDS = (
    "ETag", "etag", "md5Hash", "crc32c", "checksum", "generation", "version_id",
    "mtime", "LastModified", "last_modified", "updated", "created",
)


def url_identity(url: str) -> str | None:
    """``url:<url>:<size>:<version>`` from fsspec's ``info()``, or None.

    The version is the first of the ETag, checksum, generation or modification time that
    the storage reports. Without size and version (e.g. an HTTP server that sends neither
    Content-Length nor ETag) a changed object could not be told apart: None, not cached.

    Parameters
    ----------
    url : str
        An fsspec URL.

    Returns
    -------
    identity : str or None
    """
    try:
        fs, path = url_to_fs(url)
        info = fs.info(path)
    except Exception:  # no package for the protocol, missing or unreachable: not cached;
        return None  # reading it (the default encoder) names the problem
    version = next((info[k] for k in _VERSION_FIELDS if info.get(k) is not None), None)
    size = info.get("size")
    if version is None or size is None:
        return None
    return f"url:{url}:{size}:{version}"


def input_key(item: Any, kind: str) -> str | None:
    """A content key for one input, or None when it has none (never cached then).

    Texts and in-memory images (arrays, PIL images) are keyed by a hash of their content;
    files by :func:`file_identity`; fsspec URLs by :func:`url_identity` (size and ETag,
    checksum or modification time: one ``info()`` request per input).

    Parameters
    ----------
    item : object
        One input.
    kind : {"image", "text"}

    Returns
    -------
    key : str or None
    """
    if kind == "text":
        return "text:" + hashlib.sha256(_utf8(item)).hexdigest() if isinstance(item, str) else None
    if is_url(item):
        return url_identity(item)
    if isinstance(item, (str, bytes, os.PathLike)):
        return file_identity(item)
    h = hashlib.sha256()
    if isinstance(item, np.ndarray):
        if item.dtype.kind not in "biufc":
            return None
        h.update(f"{item.shape}{item.dtype}".encode())
        h.update(np.ascontiguousarray(item).tobytes())
        return "array:" + h.hexdigest()
    if hasattr(item, "getpixel") and hasattr(item, "tobytes"):  # a PIL image
        try:
            h.update(f"{item.mode}{item.size}".encode())
            h.update(item.tobytes())
            # palette images store indices: the colours are in the palette
            palette = item.getpalette() if item.mode in ("P", "PA") else None
            h.update(repr((palette, item.info.get("transparency"))).encode())
        except (OSError, ValueError, AttributeError):
            return None  # unreadable (closed, truncated): the reader names it
        return "pil:" + h.hexdigest()
    return None


_WARNED_UNCACHEABLE: set[str] = set()


def _fingerprint(value: Any) -> str:
    """Stable text for a parameter value; raises TypeError for values without one."""
    if value is None or isinstance(value, (bool, int, float, complex, str)):
        return repr(value)
    if isinstance(value, bytes):
        return "bytes:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, os.PathLike):
        return "path:" + os.fsdecode(value)
    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufcUS":
            raise TypeError("array of objects")
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        return f"array:{value.shape}:{value.dtype}:{digest}"
    if isinstance(value, (list, tuple)):
        return type(value).__name__ + "[" + ",".join(_fingerprint(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted((_fingerprint(k), _fingerprint(v)) for k, v in value.items())
        return "dict{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if hasattr(value, "get_params") and hasattr(value, "set_params"):
        if any(k.endswith("_") and not k.startswith("__") for k in vars(value)):
            # a fitted estimator: its outputs depend on more than its parameters
            raise TypeError("fitted estimator")
        params = value.get_params(deep=False)
        cls = type(value)
        return f"{cls.__module__}.{cls.__qualname__}({_fingerprint(params)})"
    raise TypeError(type(value).__name__)


def encoder_identity(encoder: Any, *, warn: bool = True) -> str | None:
    """What names an encoder's outputs in the caches, or None when nothing does.

    ``encoder.cache_identity()`` when the encoder has it; for an unfitted scikit-learn
    estimator (nested ones included) its class and parameters, which define it; otherwise
    None (a fitted estimator among them, or another object), with a warning (once per class
    and process) that its inputs are embedded again on every fit.

    Parameters
    ----------
    encoder : object
    warn : bool, default=True
        Warn when there is no identity (callers that only record it pass False).

    Returns
    -------
    identity : str or None
    """
    identity = getattr(encoder, "cache_identity", None)
    if callable(identity):
        return str(identity())
    try:
        if hasattr(encoder, "get_params"):
            return "estimator:" + _fingerprint(encoder)
    except TypeError:
        pass
    cls = type(encoder)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if warn and name not in _WARNED_UNCACHEABLE:
        _WARNED_UNCACHEABLE.add(name)
        warnings.warn(
            f"The encoder {cls.__qualname__} has no cache_identity() method and is not a "
            "scikit-learn estimator with plain parameters, so its embeddings cannot be "
            "cached: every fit (each candidate and fold of a grid search) embeds its inputs "
            "and the vocabulary again. Give it a cache_identity() method returning a string "
            "that changes whenever its outputs would.",
            UserWarning,
            stacklevel=3,
        )
    return None


class MemoryStore:
    """A thread-safe LRU store of arrays, bounded by their total size in bytes.

    Parameters
    ----------
    limit : int
        Most bytes held; the least recently used arrays go first.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> np.ndarray | None:
        """The array stored under ``key``, or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple, value: np.ndarray) -> np.ndarray:
        """Store a read-only view of ``value`` (callers share it) and return that view."""
        value = value.view()
        value.flags.writeable = False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.limit and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes
        return value

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)


#: The one in-process store of the package: concept and input embeddings.
MEMORY = MemoryStore(_MEMORY_LIMIT)


def clear_memory_cache() -> None:
    """Forget every embedding held in this process (the files on disk stay)."""
    MEMORY.clear()


# What each kind of entry is stored under; inputs are many, so their files are spread over
# subfolders by the first characters of their digest.
_LAYOUT = {"concepts": ("concepts", False), "input": ("embeddings", True)}


def cache_file(folder: Path | None, name: tuple[str, ...]) -> Path | None:
    """The file of the entry ``name`` (its kind first) under ``folder``; None without one.

    Parameters
    ----------
    folder : Path or None
    name : tuple of str
        ``("concepts", key)`` or ``("input", backbone, key)``.

    Returns
    -------
    path : Path or None
    """
    if folder is None:
        return None
    sub, spread = _LAYOUT[name[0]]
    digest = cache_key(*name[1:])
    where = Path(folder) / sub / digest[:2] if spread else Path(folder) / sub
    return where / f"{digest}.npz"


def recall(name: tuple[str, ...], folder: Path | None) -> np.ndarray | None:
    """The entry ``name`` from memory, else from its file (then kept in memory too).

    Parameters
    ----------
    name : tuple of str
        As for :func:`cache_file`.
    folder : Path or None
        The cache folder; None looks in memory only.

    Returns
    -------
    array : ndarray or None
        Read-only; None when the entry is in neither place (or its file was damaged).
    """
    array = MEMORY.get(name)
    path = cache_file(folder, name)
    if array is None and path is not None:
        array = load_cached_array(path, cache_key(*name))
        if array is not None:
            array = MEMORY.put(name, array)
    return array


def keep(name: tuple[str, ...], array: np.ndarray, folder: Path | None) -> np.ndarray:
    """Keep ``array`` as the entry ``name`` in memory and, with a folder, in its file.

    Parameters
    ----------
    name : tuple of str
        As for :func:`cache_file`.
    array : ndarray
    folder : Path or None

    Returns
    -------
    array : ndarray
        The read-only view held in memory.

    Raises
    ------
    OSError
        When the file cannot be written; the entry is kept in memory all the same.
    """
    kept = MEMORY.put(name, array)
    path = cache_file(folder, name)
    if path is not None:
        save_cached_array(path, cache_key(*name), array)
    return kept


def _checksum(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def load_cached_array(path: Path, key: str) -> np.ndarray | None:
    """The array stored at ``path`` for ``key``, or None when missing or not trustworthy.

    A file that cannot be read, holds another key or fails its checksum is reported once
    with a warning and removed, so that the caller rebuilds it.

    Parameters
    ----------
    path : Path
        The cache file.
    key : str
        The key it must have been written for.

    Returns
    -------
    array : ndarray or None
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_key = str(data["key"])  # a digest of the key: any text can be stored
            array = data["array"]
            checksum = str(data["checksum"])
        if stored_key != cache_key(key):
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
    """Write atomically (temporary file, then rename) so readers never see a partial file.

    Parameters
    ----------
    path : Path
        The cache file.
    key : str
        Stored with the array and checked by :func:`load_cached_array`.
    array : ndarray
        A numeric array.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(
        path,
        lambda fh: np.savez(
            fh, array=array, key=np.array(cache_key(key)), checksum=np.array(_checksum(array))
        ),
    )
