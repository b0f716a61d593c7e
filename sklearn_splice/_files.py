"""Files and URLs: whether a path names a regular file (a FIFO would block), and where
fsspec reads or writes a URL, atomically."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from typing import Any, BinaryIO

__all__ = [
    "MISSING",
    "regular_file_problem",
    "is_url",
    "import_scale",
    "url_to_fs",
    "is_local_fs",
    "write_atomic",
    "replace_file",
]

MISSING = "does not exist."


def regular_file_problem(path: Any) -> str | None:
    """Why ``path`` is not a regular file that can be opened without blocking, or None.

    Parameters
    ----------
    path : str, bytes or path-like

    Returns
    -------
    problem : str or None
        A sentence to follow the path in a message (``MISSING`` when it does not exist).
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return MISSING
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
        return f"cannot be accessed: {getattr(exc, 'strerror', None) or exc}."
    if stat.S_ISDIR(mode):
        return "is a directory, not a file."
    if not stat.S_ISREG(mode):
        return "is not a regular file (a pipe, socket or device); only files can be read."
    return None


# A protocol prefix as fsspec understands it ("s3://", "memory://", "file://"); one letter
# before ":" is a Windows drive, not a protocol.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
# The package that provides each common protocol, for the error when it is missing.
_PROTOCOL_PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "http": "aiohttp",
    "https": "aiohttp",
}


def is_url(item: Any) -> bool:
    """Whether ``item`` is a string with a protocol (``s3://``, ``memory://``, ``file://``).

    Parameters
    ----------
    item : object

    Returns
    -------
    url : bool
    """
    return isinstance(item, str) and _URL.match(item) is not None


def import_scale(module: str, purpose: str) -> Any:
    """Import a dependency of the ``scale`` extra, or say how to install it.

    Parameters
    ----------
    module : str
        Module to import (``"pyarrow.parquet"``, ``"dask.dataframe"``, ...).
    purpose : str
        What needs it, for the message (``"The data-set job"``).

    Returns
    -------
    module : module
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs {module.split('.')[0]}: pip install \"sklearn-splice[scale]\""
        ) from exc


def url_to_fs(url: Any, storage_options: dict | None = None) -> tuple[Any, str]:
    """The fsspec filesystem of a URL or local path, and the path within it.

    Parameters
    ----------
    url : str or path-like
        A local path or any fsspec URL.
    storage_options : dict, default=None
        Passed to the filesystem (credentials, ``client_kwargs={"endpoint_url": ...}``).

    Returns
    -------
    fs : fsspec.AbstractFileSystem
    path : str

    Raises
    ------
    ImportError
        When fsspec, or the package of the URL's protocol, is not installed; the message
        says what to install.
    """
    try:
        import fsspec
    except ImportError as exc:
        raise ImportError(
            f"Reading or writing {url!r} needs fsspec: pip install \"sklearn-splice[scale]\""
        ) from exc
    url = os.fspath(url)
    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as exc:
        protocol = url.split("://", 1)[0] if is_url(url) else "file"
        package = _PROTOCOL_PACKAGES.get(protocol, f"the fsspec implementation of {protocol}")
        raise ImportError(
            f"Reading or writing {url!r} needs {package}: pip install {package}"
            if protocol in _PROTOCOL_PACKAGES
            else f"Reading or writing {url!r} needs {package} ({exc})"
        ) from exc


def is_local_fs(fs: Any) -> bool:
    """Whether an fsspec filesystem is the local one.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem

    Returns
    -------
    local : bool
    """
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def write_atomic(fs: Any, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file, or all of the new one.

    A local file is written under a temporary name in the same folder and renamed; on
    object stores one PUT (``pipe_file``) creates the object whole.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
    path : str
        The file, in ``fs``.
    data : bytes
    """
    if not is_local_fs(fs):
        fs.pipe_file(path, data)
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    replace_file(path, lambda fh: fh.write(data))


def _file_mode(path: str) -> int:
    """The permissions of the file replaced, else those of a new file (mkstemp makes 0600)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def replace_file(path: Any, write: Callable[[BinaryIO], Any]) -> None:
    """Replace a local file whole: readers see the old file or the new one, never half.

    ``write`` fills a temporary file beside the target (a hidden name, so readers of the
    folder skip it), which is synced and renamed over the target with the target's
    permissions. On failure or interruption the temporary file is removed and the target
    is left as it was.

    Parameters
    ----------
    path : str or path-like
        The file; its folder must exist.
    write : callable
        Called with the temporary file, open for binary writing.
    """
    import tempfile

    target = os.path.realpath(path)
    fd, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=os.path.dirname(target)
    )
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temporary, _file_mode(target))
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
