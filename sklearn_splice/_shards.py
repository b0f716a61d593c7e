"""Webdataset-style tar shards, read streaming from any fsspec URL.

A shard is a tar file whose members are grouped into samples by key: the member's path up
to the first dot of its base name (``images/cat01.jpg`` and ``images/cat01.cls`` are the
sample ``images/cat01``), the webdataset rule. Members of one sample are consecutive, as
webdataset writes them. Per sample:

- an image member (``.jpg``, ``.jpeg``, ``.png``, ``.webp``, ...): the image;
- ``.npy``: a precomputed embedding of shape ``(d,)`` (used instead of the image);
- ``.cls``: an integer label;
- anything else (``.txt`` captions, ``.json`` metadata) is ignored.

The tar is read with the standard library's :mod:`tarfile` in stream mode over an fsspec
file object: nothing is extracted to disk and members are read once, in order.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import tarfile
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from ._errors import InputError
from ._files import MISSING, is_url, regular_file_problem, url_to_fs

__all__ = [
    "Shard",
    "Sample",
    "ShardError",
    "MissingShardError",
    "IMAGE_EXTENSIONS",
    "shard_id",
    "resolve_shards",
    "iter_samples",
    "decode_image",
    "decode_embedding",
]

IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "ppm", "pgm", "pbm", "pnm"}
)
_TAR_SUFFIX = re.compile(r"\.(tar|tar\.gz|tgz|tar\.bz2|tbz2|tar\.xz|txz)$", re.IGNORECASE)
# webdataset's rule: the key is everything before the first dot of the base name.
_KEY = re.compile(r"^((?:.*/|)[^./][^.]*)\.([^/]+)$")
_GLOB = re.compile(r"[*?\[]")


class Shard(NamedTuple):
    """One shard of a run: its id (the name of its output partition) and its URL."""

    id: str
    url: str


class Sample(NamedTuple):
    """One sample of a shard, as read (nothing decoded yet).

    ``image`` is the image member's bytes and ``image_name`` its member name; ``embedding``
    the ``.npy`` member's bytes; ``label`` the ``.cls`` text; ``problem`` says why the
    sample cannot be used, when that is already known from its members.
    """

    key: str
    position: int
    image: bytes | None
    image_name: str | None
    embedding: bytes | None
    label: str | None
    problem: str | None


class ShardError(OSError):
    """A shard cannot be read (missing, not a tar file, truncated, keys out of order).

    Parameters
    ----------
    url : str
        The shard.
    reason : str
        What is wrong with it.

    Attributes
    ----------
    url, reason
        As given.
    """

    def __init__(self, url: str, reason: str):
        self.url = str(url)
        self.reason = str(reason)
        super().__init__(self.url, self.reason)

    def __str__(self) -> str:
        return f"Shard {self.url} {self.reason}"

    def __reduce__(self):  # keeps the data through pickling (dask workers)
        return (type(self), (self.url, self.reason))


class MissingShardError(ShardError, FileNotFoundError):
    """A shard URL names nothing (also a ``FileNotFoundError``).

    Parameters
    ----------
    url : str
        The shard.
    reason : str
        What is wrong with it.
    """


def shard_id(url: str) -> str:
    """The id of a shard: its base name without the ``.tar`` (``.tar.gz``, ...) suffix.

    Parameters
    ----------
    url : str

    Returns
    -------
    id : str
    """
    name = posixpath.basename(str(url).rstrip("/"))
    return _TAR_SUFFIX.sub("", name)


def resolve_shards(shards: Any, storage_options: dict | None = None) -> list[Shard]:
    """The shards a caller means: one URL, a list of them, glob patterns expanded.

    Parameters
    ----------
    shards : str, path-like or list of them
        Shard URLs or local paths; a pattern with ``*``, ``?`` or ``[`` is expanded (sorted).
    storage_options : dict, default=None
        For the filesystem, when a pattern is expanded.

    Returns
    -------
    shards : list of Shard
        Local paths made absolute (the workers of a cluster may have another working
        folder).

    Raises
    ------
    ValueError
        For no shards, a pattern that matches nothing, or two shards with the same id
        (their outputs would collide); the message names both URLs.
    """
    given = [shards] if isinstance(shards, (str, os.PathLike)) else list(shards)
    urls = []
    for item in given:
        url = os.fspath(item)
        if not isinstance(url, str):
            raise TypeError(f"A shard must be a URL or path string, got {type(item).__name__}.")
        if _GLOB.search(url):
            fs, path = url_to_fs(url, storage_options)
            found = sorted(fs.glob(path))
            if not found:
                raise ValueError(f"The shard pattern {url} matches no file.")
            protocol = url.split("://", 1)[0] + "://" if is_url(url) else ""
            urls.extend(protocol + p if protocol and "://" not in p else p for p in found)
        else:
            # workers may run elsewhere: a local path is made absolute here, once
            urls.append(url if is_url(url) else os.path.abspath(url))
    if not urls:
        raise ValueError("No shards given; pass at least one shard URL.")
    seen: dict[str, str] = {}
    out = []
    for url in urls:
        sid = shard_id(url)
        if not sid:
            raise ValueError(f"The shard URL {url!r} has no file name to name its output.")
        if sid in seen:
            raise ValueError(
                f"Two shards have the id {sid!r}: {seen[sid]} and {url}. Shards are "
                "written to one partition per id, so their names (without .tar) must differ."
            )
        seen[sid] = url
        out.append(Shard(sid, url))
    return out


def _open(url: str, storage_options: dict | None):
    if not is_url(url):  # a local FIFO or device would block
        problem = regular_file_problem(url)
        if problem is not None:
            raise (MissingShardError if problem == MISSING else ShardError)(url, problem)
    fs, path = url_to_fs(url, storage_options)
    try:
        return fs.open(path, "rb")
    except FileNotFoundError:
        raise MissingShardError(url, "does not exist.") from None
    except IsADirectoryError:
        raise ShardError(url, "is a directory, not a tar file.") from None
    except OSError as exc:
        raise ShardError(url, f"could not be opened: {exc}") from exc


def _members(url: str, storage_options: dict | None) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each regular member, in order, streaming."""
    with _open(url, storage_options) as fh:
        try:
            with tarfile.open(fileobj=fh, mode="r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    data = tar.extractfile(member)
                    yield member.name, data.read() if data is not None else b""
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            # tarfile raises ReadError, EOFError or zlib/lzma errors for damaged archives
            raise ShardError(url, f"could not be read as a tar file: {exc}") from exc


def iter_samples(url: str, storage_options: dict | None = None) -> Iterator[Sample]:
    """The samples of a shard, in shard order, read streaming.

    Parameters
    ----------
    url : str
        The shard: a local path or an fsspec URL.
    storage_options : dict, default=None
        For the filesystem.

    Yields
    ------
    sample : Sample

    Raises
    ------
    ShardError
        When the shard is missing (:class:`MissingShardError`), not a tar file, damaged,
        or has the members of one key apart (a key would be two samples).
    """
    done: set[str] = set()
    current: dict | None = None
    position = 0

    def finish(sample: dict) -> Sample:
        images = sample["images"]
        problem = None
        if len(images) > 1:
            exts = ", ".join(ext for ext, _ in images)
            problem = f"has several image members ({exts}); one per sample is read"
        elif not images and sample["npy"] is None:
            problem = "has no image (.jpg, .png, ...) or .npy member"
        image_name, image = images[0] if len(images) == 1 else (None, None)
        return Sample(
            sample["key"],
            sample["position"],
            image,
            None if image_name is None else f"{sample['key']}.{image_name}",
            sample["npy"],
            sample["cls"],
            problem,
        )

    for name, data in _members(url, storage_options):
        match = _KEY.match(name)
        if match is None:
            continue  # no extension: not part of a sample (webdataset skips it too)
        key, ext = match.group(1), match.group(2).lower()
        if current is None or key != current["key"]:
            if current is not None:
                done.add(current["key"])
                yield finish(current)
                position += 1
            if key in done:
                raise ShardError(
                    url,
                    f"has the members of key {key!r} apart from each other; the members of "
                    "one sample must be consecutive (as webdataset writes them).",
                )
            current = {"key": key, "position": position, "images": [], "npy": None, "cls": None}
        last = ext.rsplit(".", 1)[-1]
        if last in IMAGE_EXTENSIONS:
            current["images"].append((ext, data))
        elif ext == "npy":
            current["npy"] = data
        elif ext == "cls":
            current["cls"] = data.decode("utf-8", "replace")
    if current is not None:
        yield finish(current)


def decode_image(sample: Sample, url: str) -> Any:
    """The sample's image as an RGB ``PIL.Image``.

    Parameters
    ----------
    sample : Sample
        With an image member.
    url : str
        The shard, to name the image in errors.

    Returns
    -------
    image : PIL.Image.Image

    Raises
    ------
    InputError
        When the bytes are not a readable image; ``.index`` is the sample's position in the
        shard and ``.path`` is ``<shard url>#<member name>``.
    """
    from PIL import Image, UnidentifiedImageError

    from ._images import load_image

    where = f"{url}#{sample.image_name}"
    try:
        img = Image.open(io.BytesIO(sample.image))
        img.load()
    except Exception as exc:  # any decoding failure makes this one input unreadable
        # PIL's own message would show the repr of an in-memory buffer
        why = "not an image format PIL knows" if isinstance(exc, UnidentifiedImageError) else exc
        raise InputError(
            sample.position, f"could not be read as an image: {why}", path=where, kind="Image"
        ) from exc
    try:
        return load_image(img, sample.position)  # the library's one rule for modes and sizes
    except InputError as exc:
        raise InputError(sample.position, exc.reason, path=where, kind="Image") from exc


def decode_embedding(sample: Sample, url: str, width: int | None) -> np.ndarray:
    """The sample's ``.npy`` embedding, checked: shape ``(width,)``, finite real numbers.

    Parameters
    ----------
    sample : Sample
        With a ``.npy`` member.
    url : str
        The shard, to name the member in errors.
    width : int or None
        The embedding width the run needs (None: any 1-D array).

    Returns
    -------
    embedding : ndarray of shape (width,)

    Raises
    ------
    InputError
        When the member is not such an array.
    """
    where = f"{url}#{sample.key}.npy"
    try:
        arr = np.load(io.BytesIO(sample.embedding), allow_pickle=False)
    except Exception as exc:  # not an .npy file, or one holding objects
        raise InputError(
            sample.position, f"could not be read as an .npy array: {exc}", path=where
        ) from exc
    wrong_width = width is not None and arr.shape != (width,)
    if arr.dtype.kind not in "fiu" or arr.ndim != 1 or wrong_width:
        shape = "(d,)" if width is None else f"({width},)"
        raise InputError(
            sample.position,
            f"is an embedding of shape {arr.shape} and dtype {arr.dtype}; shape {shape} "
            "of real numbers is needed.",
            path=where,
        )
    if not np.isfinite(arr).all():
        raise InputError(
            sample.position, "is an embedding with NaN or infinite values.", path=where
        )
    return arr
