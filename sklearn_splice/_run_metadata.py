"""The metadata of a decomposition run, and the one rule that decides whether two runs match.

A run's output folder holds ``_splice_run.json``, written once when the run starts. It
records everything the weights depend on (backbone, vocabulary, penalty, solver settings,
the mean used), so that a resumed run never appends to an output of other settings and a
reader never mixes two different decompositions.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Iterable

import numpy as np

from ._cache import cache_key, encoder_identity
from ._files import url_to_fs, write_atomic

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "OUTPUT_DTYPE",
    "RunMismatchError",
    "run_metadata",
    "write_run_metadata",
    "read_run_metadata",
    "check_same_run",
    "vocabulary_sha256",
    "mean_sha256",
]

FORMAT = "sklearn_splice.decomposition"
FORMAT_VERSION = 1
METADATA_FILE = "_splice_run.json"
# SpliceTransformer.transform always returns float64 weights (the solver works in float64).
OUTPUT_DTYPE = "float64"
# Keys that may differ between two parts of the same run.
_NOT_COMPARED = ("created", "library_version", "shards")


class RunMismatchError(ValueError):
    """An output folder belongs to a run with other settings than the one at hand.

    Parameters
    ----------
    where : str
        The output folder (or file) found to differ.
    key : str
        The first metadata key that differs.
    expected : object
        Its value in the run at hand.
    found : object
        Its value in ``where``.

    Attributes
    ----------
    where, key, expected, found
        As given.
    """

    def __init__(self, where: str, key: str, expected: Any, found: Any):
        self.where = str(where)
        self.key = key
        self.expected = expected
        self.found = found
        super().__init__(self.where, key, expected, found)

    def __str__(self) -> str:
        return (
            f"{self.where} holds the output of another run: its {self.key!r} is "
            f"{_short(self.found)}, not {_short(self.expected)}. Write to a new folder, or "
            "use the same transformer and settings as that run."
        )

    def __reduce__(self):
        return (type(self), (self.where, self.key, self.expected, self.found))


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def vocabulary_sha256(concepts: Iterable[str]) -> str:
    """SHA-256 of the concept words, in order (each length-prefixed, so no two lists collide).

    Parameters
    ----------
    concepts : iterable of str

    Returns
    -------
    digest : str
        64 hexadecimal digits.
    """
    return cache_key(*[str(c) for c in concepts])


def mean_sha256(mean: Any) -> str:
    """SHA-256 of the mean as little-endian float32 bytes (how ``mean_`` is stored).

    Parameters
    ----------
    mean : array-like of shape (d,)

    Returns
    -------
    digest : str
        64 hexadecimal digits.
    """
    data = np.ascontiguousarray(np.asarray(mean, dtype="<f4")).tobytes()
    return hashlib.sha256(data).hexdigest()


def _shard_entries(shards: Iterable[Any]) -> list[dict]:
    """``[{"id", "url"}]`` from mappings with those keys or ``(id, url)`` pairs."""
    entries = []
    for shard in shards:
        if isinstance(shard, dict):
            shard_id, url = shard["id"], shard["url"]
        else:
            shard_id, url = shard
        entries.append({"id": str(shard_id), "url": str(url)})
    return entries


def run_metadata(transformer: Any, shards: Iterable[Any]) -> dict:
    """The metadata of a run of a fitted ``SpliceTransformer`` over ``shards``.

    Parameters
    ----------
    transformer : SpliceTransformer
        Fitted.
    shards : iterable of (id, url) pairs or of dicts with keys ``"id"`` and ``"url"``
        The shards of the run.

    Returns
    -------
    metadata : dict
        Plain JSON values only (the keys of the format's ``_splice_run.json``).
    """
    from sklearn.utils.validation import check_is_fitted

    from . import __version__

    check_is_fitted(transformer)
    encoder = transformer.encoder_
    backbone = getattr(encoder, "backbone", None)
    architecture, pretrained = backbone() if callable(backbone) else (None, None)
    concepts = [str(c) for c in transformer.concepts_]
    mean = np.asarray(transformer.mean_, dtype=np.float32)
    excluded = [concepts[i] for i in transformer.excluded_indices_]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(),
        "backbone": {"architecture": architecture, "pretrained": pretrained},
        "encoder_identity": encoder_identity(encoder, warn=False),
        "modality": str(transformer.modality_),
        "concepts": concepts,
        "vocabulary_sha256": vocabulary_sha256(concepts),
        "l1_penalty": float(transformer.l1_penalty),
        "tol": float(transformer.tol),
        "max_iter": int(transformer.max_iter),
        "solver": str(transformer.solver),
        "exclude_concepts": excluded,
        "mean": [float(v) for v in mean],
        "mean_sha256": mean_sha256(mean),
        "n_features": int(transformer.components_.shape[1]),
        "output_dtype": OUTPUT_DTYPE,
        "shards": _shard_entries(shards),
    }


def _join(root: str, name: str) -> str:
    return root.rstrip("/") + "/" + name


def write_run_metadata(fs: Any, out: str, meta: dict) -> None:
    """Write ``meta`` as ``out/_splice_run.json``, atomically.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The filesystem of the output folder.
    out : str
        The output folder, as a path in ``fs``.
    meta : dict
        From :func:`run_metadata`.
    """
    data = json.dumps(meta, indent=1, allow_nan=False).encode("utf-8")
    fs.makedirs(out, exist_ok=True)
    write_atomic(fs, _join(out, METADATA_FILE), data)


def read_run_metadata(
    out: str, *, fs: Any = None, storage_options: dict | None = None
) -> dict:
    """The metadata of the run whose output is the folder ``out``.

    Parameters
    ----------
    out : str or path-like
        The output folder: a local path or an fsspec URL; with ``fs``, a path in ``fs``.
    fs : fsspec.AbstractFileSystem, default=None
        The filesystem of ``out`` when already opened.
    storage_options : dict, default=None
        For the filesystem, when ``fs`` is not given.

    Returns
    -------
    metadata : dict

    Raises
    ------
    FileNotFoundError
        When ``out`` has no run metadata (not an output folder, or nothing written yet).
    ValueError
        When the file is not valid JSON or is of another format or format version.
    """
    root = str(out)
    if fs is None:
        fs, root = url_to_fs(out, storage_options)
    where = str(out)
    try:
        raw = fs.cat_file(_join(root, METADATA_FILE))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{where} is not the output of a decomposition run: it has no {METADATA_FILE}."
        ) from None
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{where}/{METADATA_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(
            f"{where}/{METADATA_FILE} is not sklearn_splice decomposition metadata "
            f"(its format is {meta.get('format') if isinstance(meta, dict) else None!r})."
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{where} was written in format version {meta.get('format_version')!r}; this "
            f"version of sklearn_splice reads version {FORMAT_VERSION}."
        )
    return meta


def check_same_run(expected: dict, found: dict, where: str) -> None:
    """Refuse ``found`` unless it describes the same run as ``expected``.

    Two runs are the same when every key is equal except ``created``,
    ``library_version`` and ``shards``. Values are compared as JSON stores them.

    Parameters
    ----------
    expected : dict
        The run at hand.
    found : dict
        The metadata read from ``where``.
    where : str
        The folder ``found`` comes from, for the message.

    Raises
    ------
    RunMismatchError
        Naming the first key that differs.
    """
    expected = json.loads(json.dumps(expected))
    found = json.loads(json.dumps(found))
    keys = list(expected) + [k for k in found if k not in expected]
    for key in keys:
        if key in _NOT_COMPARED:
            continue
        if expected.get(key) != found.get(key):
            raise RunMismatchError(where, key, expected.get(key), found.get(key))
