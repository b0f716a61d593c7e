"""The data-set job: tar shards in, partitioned Parquet out, one task per shard.

Each shard is read streaming (:mod:`._shards`) and embedded a batch at a time; its
embeddings are solved together (up to 8,192 rows per call), and it is written
as two Parquet files under the output folder (any fsspec URL)::

    OUT/_splice_run.json                     the run's settings (see ._run_metadata)
    OUT/weights/shard=<id>/part-0.parquet    one row per nonzero weight (long form)
    OUT/inputs/shard=<id>/part-0.parquet     one row per input, in shard order

Each file is written atomically, the weights first and the inputs last: a shard is done
exactly when its inputs file exists. Rerunning (``resume=True``) skips the shards that are
done and recomputes the others, overwriting any weights file left by a crash under the same
name, so no row is ever written twice.

On a ``dask.distributed`` client each shard is one task. The transformer travels to the
workers once (as the result of one task, which the scheduler can recompute if the worker
holding it dies) and holds no model: the encoder loads its model on first use into a
per-process registry, so each worker process loads it once and keeps it for every shard.

The per-input embedding cache is off in a data-set job (one file per input would mean a
million files for a million images); a rerun recomputes only unfinished shards instead.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._compat import HasMethods, Interval, StrOptions, validate_params
from ._errors import InputError
from ._files import import_scale, is_local_fs, url_to_fs, write_atomic
from ._inputs import ITEMS, MATRIX, Inputs
from ._progress import progress as progress_bar
from ._run_metadata import (
    METADATA_FILE,
    check_same_run,
    read_run_metadata,
    run_metadata,
    write_run_metadata,
)
from ._shards import (
    Sample,
    Shard,
    ShardError,
    decode_embedding,
    decode_image,
    iter_samples,
    resolve_shards,
)

__all__ = ["DecompositionSummary", "decompose_dataset", "fit_dataset"]

WEIGHTS_DIR = "weights"
INPUTS_DIR = "inputs"
PART_NAME = "part-0.parquet"
_EXISTS = (
    "{output} already holds a decomposition run; pass resume=True to finish it, or write "
    "to a new folder."
)
# fit reads no inputs when the mean is given: this stands in for them.
_NOT_READ = ["(no input is read when the mean is given)"]


def _need(module: str):
    return import_scale(module, "The data-set job")


@dataclass
class DecompositionSummary:
    """What a :func:`decompose_dataset` run did.

    Parameters
    ----------
    output : str
        The output folder.
    images : int
        Inputs decomposed by this run (images or precomputed embeddings).
    unreadable : int
        Inputs of this run's shards that could not be read; each is recorded with its
        error in the shard's inputs file.
    shards_done : int
        Shards decomposed by this run.
    shards_skipped : int
        Shards already done by an earlier run into the same folder.
    failed_shards : list of (str, str)
        ``(url, reason)`` of the shards that could not be read (``on_error="skip"``);
        nothing is written for them, so a rerun tries them again.
    seconds : float
        Wall time of the run.
    transformer : SpliceTransformer
        The fitted transformer the run used: the caller's own when it was fitted, else a
        fitted clone (the caller's is never modified).

    Attributes
    ----------
    images_per_second : float
        ``(images + unreadable) / seconds``.
    """

    output: str
    images: int = 0
    unreadable: int = 0
    shards_done: int = 0
    shards_skipped: int = 0
    failed_shards: list = field(default_factory=list)
    seconds: float = 0.0
    transformer: Any = field(default=None, repr=False)

    @property
    def images_per_second(self) -> float:
        """Inputs read per second of wall time (0 when nothing was read)."""
        n = self.images + self.unreadable
        return n / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        lines = [
            f"Decomposed {self.images} inputs into {self.output} in {self.seconds:.1f} s "
            f"({self.images_per_second:.1f} inputs/s).",
            f"Shards: {self.shards_done} done now, {self.shards_skipped} already done, "
            f"{len(self.failed_shards)} failed.",
            f"Unreadable inputs: {self.unreadable} (listed with their errors in "
            f"{INPUTS_DIR}/).",
        ]
        lines += [f"  failed: {url}: {reason}" for url, reason in self.failed_shards]
        return "\n".join(lines)


# -- reading a shard in batches ------------------------------------------------------------
@dataclass
class _Batch:
    """Decoded samples of one batch; ``failed`` maps a position to its error text."""

    samples: list
    images: list  # (position, PIL image)
    embeddings: list  # (position, array)
    labels: dict
    failed: dict


def _decode(samples: list[Sample], url: str, width: int | None) -> _Batch:
    batch = _Batch(samples, [], [], {}, {})
    for s in samples:
        try:
            if s.problem is not None:
                raise InputError(s.position, s.problem, path=f"{url}#{s.key}")
            if s.label is not None:
                try:
                    batch.labels[s.position] = int(s.label.strip())
                except ValueError:
                    raise InputError(
                        s.position,
                        f"has the label {s.label.strip()[:40]!r} in .cls, not an integer.",
                        path=f"{url}#{s.key}.cls",
                    ) from None
            if s.embedding is not None:
                batch.embeddings.append((s.position, decode_embedding(s, url, width)))
            else:
                batch.images.append((s.position, decode_image(s, url)))
        except InputError as exc:
            batch.failed[s.position] = str(exc)
    return batch


def _batches(shard: Shard, storage_options, batch_size: int, width) -> Iterator[_Batch]:
    """Decoded batches of a shard; the next one is read and decoded while this one runs."""

    def read():
        samples: list = []
        for sample in iter_samples(shard.url, storage_options):
            samples.append(sample)
            if len(samples) == batch_size:
                yield _decode(samples, shard.url, width)
                samples = []
        if samples:
            yield _decode(samples, shard.url, width)

    source = read()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="splice-shard") as pool:
        pending = pool.submit(next, source, None)
        try:
            while True:
                batch = pending.result()
                if batch is None:
                    return
                pending = pool.submit(next, source, None)
                yield batch
        finally:
            pending.exception()  # wait for the read in flight, then close the shard's file
            source.close()


def _apply(call, items: list, failed: dict):
    """``call(items)``; an unreadable item (InputError) is recorded and the rest retried.

    Returns the output for the items still readable, and their (position, item) pairs.
    """
    items = list(items)
    while items:
        try:
            return call([x for _, x in items]), items
        except InputError as exc:
            if not 0 <= exc.index < len(items):
                raise
            position = items[exc.index][0]
            failed[position] = str(exc)
            del items[exc.index]
    return None, items


# -- one shard -------------------------------------------------------------------------------
@dataclass
class _ShardResult:
    id: str
    url: str
    images: int = 0
    unreadable: int = 0
    failure: ShardError | None = None  # the error itself: its type says missing or damaged


def _out_paths(root: str, shard_id: str) -> tuple[str, str]:
    base = root.rstrip("/")
    return (
        f"{base}/{WEIGHTS_DIR}/shard={shard_id}/{PART_NAME}",
        f"{base}/{INPUTS_DIR}/shard={shard_id}/{PART_NAME}",
    )


def _table_bytes(table) -> bytes:
    pq = _need("pyarrow.parquet")
    pa = _need("pyarrow")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


# Embedded rows of a shard solved together: the batched solver runs best on many rows at
# once, as in transform; the embeddings (not the images) wait, so memory stays small.
_SOLVE_ROWS = 8192


def _decompose_shard(job, shard: Shard, output: str, storage_options, batch_size: int):
    """Decompose one shard and commit it; shard-level failures come back as data."""
    pa = _need("pyarrow")
    width = int(job.components_.shape[1])
    concepts = [str(c) for c in job.concepts_]
    keys, positions = [], []
    labels: dict = {}
    failed: dict = {}
    coded: dict = {}
    waiting_rows: list = []
    waiting_positions: list = []

    def embed(xs):  # what transform does before it solves
        return job._embed(job._classify(xs, reset=False))

    def solve_waiting():
        if not waiting_rows:
            return
        W = job._decompose(np.vstack(waiting_rows))
        W = W.tocsr() if sp.issparse(W) else sp.csr_matrix(np.asarray(W))
        for row, position in enumerate(waiting_positions):
            lo, hi = W.indptr[row], W.indptr[row + 1]
            coded[position] = (W.indices[lo:hi], W.data[lo:hi])
        waiting_rows.clear()
        waiting_positions.clear()

    try:
        for batch in _batches(shard, storage_options, batch_size, width):
            labels.update(batch.labels)
            for items, call in (
                (batch.images, embed),
                (batch.embeddings, lambda xs: embed(np.stack(xs))),
            ):
                E, kept = _apply(call, items, batch.failed)
                if E is not None:
                    waiting_rows.append(np.asarray(E))
                    waiting_positions.extend(position for position, _ in kept)
            failed.update(batch.failed)
            keys.extend(sample.key for sample in batch.samples)
            positions.extend(sample.position for sample in batch.samples)
            if len(waiting_positions) >= _SOLVE_ROWS:
                solve_waiting()
        solve_waiting()
    except ShardError as exc:
        return _ShardResult(shard.id, shard.url, failure=exc)

    statuses, errors, n_concepts = [], [], []
    w_pos, w_idx, w_val = [], [], []
    for position in positions:
        if position in coded:
            idx, val = coded[position]
            statuses.append("ok")
            errors.append(None)
            n_concepts.append(len(idx))
            w_pos.append(np.full(len(idx), position, dtype=np.int64))
            w_idx.append(idx)
            w_val.append(val)
        else:
            statuses.append("unreadable")
            errors.append(failed.get(position, "could not be decomposed"))
            n_concepts.append(0)

    pos = np.concatenate(w_pos) if w_pos else np.zeros(0, dtype=np.int64)
    idx = np.concatenate(w_idx).astype(np.int32) if w_idx else np.zeros(0, dtype=np.int32)
    val = np.concatenate(w_val) if w_val else np.zeros(0, dtype=np.float64)
    key_array = np.asarray(keys, dtype=object)
    weights = {
        "key": pa.array(key_array[pos] if len(pos) else [], type=pa.string()),
        "concept": pa.DictionaryArray.from_arrays(
            pa.array(idx, type=pa.int32()), pa.array(concepts, type=pa.string())
        ),
        "concept_index": pa.array(idx, type=pa.int32()),
        "weight": pa.array(val, type=pa.float64()),
    }
    if labels:
        weights["label"] = pa.array([labels.get(int(p)) for p in pos], type=pa.int64())
    inputs = {
        "key": pa.array(keys, type=pa.string()),
        "position": pa.array(positions, type=pa.int32()),
        "label": pa.array([labels.get(p) for p in positions], type=pa.int64()),
        "status": pa.array(statuses, type=pa.string()),
        "error": pa.array(errors, type=pa.string()),
        "n_concepts": pa.array(n_concepts, type=pa.int32()),
    }
    fs, root = url_to_fs(output, storage_options)
    weights_path, inputs_path = _out_paths(root, shard.id)
    # the weights first: the inputs file is the shard's commit marker
    for path, columns in ((weights_path, weights), (inputs_path, inputs)):
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        write_atomic(fs, path, _table_bytes(pa.table(columns)))
    n_ok = statuses.count("ok")
    return _ShardResult(shard.id, shard.url, n_ok, len(statuses) - n_ok)


def _shard_sums(encoder, shard: Shard, storage_options, batch_size: int):
    """(sum of unit-normalised embeddings, their count) of a shard's readable inputs."""
    from ._embedding import embed_inputs
    from ._transformer import _unit_sum

    width = getattr(encoder, "embedding_dim", None)
    width = int(width) if isinstance(width, Integral) else None
    total, count = None, 0
    try:
        for batch in _batches(shard, storage_options, batch_size, width):
            for items, kind in ((batch.images, ITEMS), (batch.embeddings, MATRIX)):

                def embed(xs, kind=kind):
                    data = xs if kind == ITEMS else np.stack(xs)
                    return embed_inputs(encoder, Inputs(kind, data), "image", use_cache=False)

                E, _ = _apply(embed, items, batch.failed)
                if E is None:
                    continue
                t, c = _unit_sum(E)
                total = t if total is None else total + t
                count += c
    except ShardError as exc:
        return _ShardResult(shard.id, shard.url, failure=exc), None, 0
    return _ShardResult(shard.id, shard.url), total, count


# -- running tasks ---------------------------------------------------------------------------
def _identity(obj):
    return obj


def _run(tasks: list[tuple], client, desc: str, enabled: bool) -> Iterator[Any]:
    """Results of ``fn(*args)`` for each task, in completion order, with a progress bar."""
    if client is None:
        yield from progress_bar((fn(*args) for fn, *args in tasks), len(tasks), desc, enabled)
        return
    as_completed = _need("distributed").as_completed
    futures = [client.submit(fn, *args, pure=False) for fn, *args in tasks]
    try:
        # the client's own loop: it need not be the process's default client
        done = as_completed(futures, loop=client.loop)
        for future in progress_bar(done, len(futures), desc, enabled):
            yield future.result()
    finally:
        client.cancel(futures)  # a failure leaves no task running for nothing


def _on_workers(obj, client):
    """``obj`` as the workers get it: one task's result, recomputed if its worker dies."""
    if client is None:
        return obj
    # Sent once, in the graph of a single dask task, on purpose: scattered data would be lost
    # with its worker. dask's size warning (10 MB; a CLIP dictionary takes more) is about
    # graphs that repeat their data, which this one does not.
    with _need("dask").config.set({"distributed.admin.large-graph-warning-threshold": "1PB"}):
        return client.submit(_identity, obj, pure=False)


def _check_image_modality(transformer) -> None:
    modality = getattr(transformer, "modality_", transformer.modality)
    if modality != "image":
        raise ValueError(
            f"A data-set job decomposes images (or their embeddings); the transformer has "
            f"modality={modality!r}."
        )


def _fitted_with_mean(transformer, mean: Any = None, n_seen: int = 0):
    """A fitted clone: its dictionary built by ``fit``, its mean given, or ``transformer``'s own."""
    from sklearn.base import clone

    fitted = clone(transformer)
    if mean is None:
        return fitted.fit(_NOT_READ)  # "reference" or an array: fit reads no input
    fitted.set_params(image_mean=np.asarray(mean, dtype=np.float64)).fit(_NOT_READ)
    fitted.set_params(image_mean=transformer.image_mean)
    fitted.n_samples_seen_ = int(n_seen)
    return fitted


@validate_params(
    {
        "shards": [str, os.PathLike, "array-like"],
        "transformer": [HasMethods(["fit", "transform"])],
        "client": "no_validation",  # a distributed.Client, imported only when given
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "progress": ["boolean"],
        "storage_options": [dict, None],
    },
    prefer_skip_nested_validation=True,
)
def fit_dataset(
    shards: Any,
    transformer: Any,
    *,
    client: Any = None,
    batch_size: int = 256,
    progress: bool = True,
    storage_options: dict | None = None,
) -> Any:
    """Fit a ``SpliceTransformer`` on the images of tar shards, the mean as a reduction.

    Each shard is one task: it embeds its readable images (or reads its ``.npy``
    embeddings) and returns the sum of their unit-normalised embeddings and their count;
    the sums are added in shard order and divided once. The result equals ``fit`` on all
    the readable inputs at once, up to the round-off of the float64 sum (and of the
    encoder's float32 forward passes, whose last bits can depend on the batch size).

    Parameters
    ----------
    shards : str or list of str
        Tar shard URLs or paths (fsspec URLs such as ``s3://bucket/shard-000.tar``); a
        pattern with ``*`` is expanded.
    transformer : SpliceTransformer
        Not modified. With ``image_mean="fit"`` the mean is computed from the shards;
        otherwise nothing is read and this is ``fit`` on a clone.
    client : distributed.Client, default=None
        Run one task per shard on this dask cluster; None runs them in this process.
    batch_size : int, default=256
        Samples read and embedded at a time.
    progress : bool, default=True
        Show a progress bar over shards.
    storage_options : dict, default=None
        For the filesystems of the shards (credentials, endpoints).

    Returns
    -------
    fitted : SpliceTransformer
        A fitted clone of ``transformer``.

    Raises
    ------
    ShardError
        When a shard cannot be read (its URL in the message).

    Examples
    --------
    A shard of three precomputed embeddings in memory, and a toy encoder standing in for
    CLIP (``SpliceTransformer()`` and ``"s3://bucket/shards/*.tar"`` in real use):

    >>> import io, tarfile
    >>> import fsspec
    >>> import numpy as np
    >>> from sklearn_splice import SpliceTransformer, fit_dataset
    >>> class ToyEncoder:
    ...     def cache_identity(self):
    ...         return "toy"
    ...     def encode_text(self, texts):
    ...         return np.random.RandomState(0).randn(len(texts), 8)
    ...     def encode_image(self, X):
    ...         return np.asarray(X, dtype=float)
    >>> shard = io.BytesIO()
    >>> with tarfile.open(fileobj=shard, mode="w") as tar:
    ...     for k, vector in enumerate(np.random.RandomState(1).randn(3, 8)):
    ...         member = io.BytesIO()
    ...         np.save(member, vector)
    ...         info = tarfile.TarInfo(f"sample{k}.npy")
    ...         info.size = member.tell()
    ...         tar.addfile(info, io.BytesIO(member.getvalue()))
    >>> fsspec.filesystem("memory").pipe_file("/fit-example/shard-0.tar", shard.getvalue())
    >>> splice = SpliceTransformer(ToyEncoder(), vocabulary=["cat", "dog", "sky"], device="cpu")
    >>> fitted = fit_dataset(["memory://fit-example/shard-0.tar"], splice, progress=False)
    >>> fitted.mean_.shape, fitted.n_samples_seen_
    ((8,), 3)
    """
    _check_image_modality(transformer)
    if not (isinstance(transformer.image_mean, str) and transformer.image_mean == "fit"):
        return _fitted_with_mean(transformer)
    resolved = resolve_shards(shards, storage_options)
    from ._encoder import OpenCLIPEncoder

    encoder = transformer.encoder
    encoder = OpenCLIPEncoder(device=transformer.device) if encoder is None else encoder
    shipped = _on_workers(encoder, client)
    tasks = [(_shard_sums, shipped, s, storage_options, batch_size) for s in resolved]
    sums = {}
    for result, total, count in _run(tasks, client, "fitting the mean", progress):
        if result.failure is not None:
            raise result.failure
        sums[result.id] = (total, count)
    total, count = None, 0
    for shard in resolved:  # shard order: the same sum whatever order tasks finished in
        t, c = sums[shard.id]
        if t is not None:
            total = t if total is None else total + t
        count += c
    if count == 0:
        raise ValueError(
            "Every input of the shards is unreadable or has an all-zero embedding, so no mean "
            "can be fitted; set image_mean to 'reference' or an array."
        )
    return _fitted_with_mean(transformer, total / count, count)


def _prepare_output(output: str, meta: dict, storage_options, resume: bool):
    """Write the run metadata, or check it against the run already in ``output``."""
    fs, root = url_to_fs(output, storage_options)
    if fs.exists(f"{root.rstrip('/')}/{METADATA_FILE}"):
        found = read_run_metadata(root, fs=fs)
        if not resume:
            raise FileExistsError(_EXISTS.format(output=output))
        check_same_run(meta, found, output)
        known = {s["id"]: s["url"] for s in found.get("shards", [])}
        for s in meta["shards"]:
            if known.get(s["id"], s["url"]) != s["url"]:
                raise ValueError(
                    f"{output} has shard {s['id']!r} from {known[s['id']]}, but this run "
                    f"reads that id from {s['url']}; a resumed run must read the same shards."
                )
        new = [s for s in meta["shards"] if s["id"] not in known]
        if new:  # the shards list grows; everything else stays as first written
            write_run_metadata(fs, root, {**found, "shards": found["shards"] + new})
    else:
        write_run_metadata(fs, root, meta)
    return fs, root


def _fits_mean(transformer) -> bool:
    """Whether ``transformer`` is unfitted and would fit its mean on the inputs."""
    mean = transformer.image_mean
    fit = isinstance(mean, str) and mean == "fit"
    return fit and not hasattr(transformer, "components_")


def _recorded_run(output: str, storage_options) -> dict | None:
    """The metadata of the run already in ``output``, or None."""
    fs, root = url_to_fs(output, storage_options)
    if not fs.exists(f"{root.rstrip('/')}/{METADATA_FILE}"):
        return None
    return read_run_metadata(root, fs=fs)


def _done_shards(fs, root: str) -> set[str]:
    """Ids of the shards whose inputs file (the commit marker) exists."""
    folder = f"{root.rstrip('/')}/{INPUTS_DIR}"
    try:
        entries = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return set()
    done = set()
    for entry in entries:
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith("shard=") and fs.exists(f"{folder}/{name}/{PART_NAME}"):
            done.add(name[len("shard=") :])
    return done


@validate_params(
    {
        "shards": [str, os.PathLike, "array-like"],
        "transformer": [HasMethods(["fit", "transform"])],
        "output": [str, os.PathLike],
        "client": "no_validation",  # a distributed.Client, imported only when given
        "resume": ["boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "progress": ["boolean"],
        "on_error": [StrOptions({"raise", "skip"})],
        "storage_options": [dict, None],
    },
    prefer_skip_nested_validation=True,
)
def decompose_dataset(
    shards: Any,
    transformer: Any,
    output: Any,
    *,
    client: Any = None,
    resume: bool = True,
    batch_size: int = 256,
    progress: bool = True,
    on_error: str = "raise",
    storage_options: dict | None = None,
) -> DecompositionSummary:
    """Decompose every image of a set of tar shards into partitioned Parquet.

    One task per shard, on a ``dask.distributed`` cluster when ``client`` is given. Each
    shard is read streaming, decomposed ``batch_size`` samples at a time and committed as
    ``OUT/weights/shard=<id>/part-0.parquet`` (long form: ``key``, ``concept``,
    ``concept_index``, ``weight`` and ``label`` when the shard has ``.cls`` labels), then
    ``OUT/inputs/shard=<id>/part-0.parquet`` (one row per input: ``key``, ``position``,
    ``label``, ``status``, ``error``, ``n_concepts``), each written atomically. The run's
    settings are stored in ``OUT/_splice_run.json``. Read it back with
    ``read_decomposition``.

    A sample is a group of tar members with one key (webdataset's layout): an image
    (``.jpg``, ``.png``, ...) or a precomputed ``.npy`` embedding, and an optional ``.cls``
    integer label. An input that cannot be read is recorded with ``status="unreadable"``
    and its error; it never stops the run. Per-input embedding caching is off for the job.
    The weights are those of ``transformer.transform`` on the same inputs (exactly so when
    the encoder sees the same batches: float32 forward passes over batches of other sizes
    can differ in the last bits).

    Parameters
    ----------
    shards : str or list of str
        Tar shard URLs or paths (any fsspec URL: ``s3://``, ``gs://``, ``https://``,
        ``memory://``); a pattern with ``*`` is expanded. A shard's id, the name of its
        partition, is its file name without ``.tar``; ids must be unique.
    transformer : SpliceTransformer
        Used as is when fitted. Unfitted with ``image_mean="fit"``, it is first fitted on
        the shards by :func:`fit_dataset` (one pass more over every image), except when
        resuming a run: then the mean that run recorded is used, so that every shard of
        the output is centred alike (the fitted clone has that mean as ``image_mean``).
        Not modified.
    output : str
        The output folder: a local path or an fsspec URL.
    client : distributed.Client, default=None
        Run one task per shard on this dask cluster; None runs them in this process.
    resume : bool, default=True
        When ``output`` already holds a run: check that it is the same run (same
        backbone, vocabulary, penalty, mean, ...; otherwise :class:`RunMismatchError`) and
        decompose only the shards not done yet. When False, an existing run is an error.
    batch_size : int, default=256
        Samples read, decoded and embedded at a time (memory per worker is bounded by
        one batch of images, up to 8,192 embeddings and the sparse codes of one shard).
    progress : bool, default=True
        Show a progress bar over shards.
    on_error : {"raise", "skip"}, default="raise"
        What a shard that cannot be read (missing, not a tar file, truncated) does:
        ``"raise"`` raises its :class:`ShardError`; ``"skip"`` records it in the summary
        and goes on. Nothing is written for such a shard, so a rerun tries it again.
        Fitting the mean (an unfitted transformer) raises for such a shard either way:
        the mean must cover every shard of the run.
    storage_options : dict, default=None
        For the filesystems of the shards and of ``output`` (credentials, endpoints).

    Returns
    -------
    summary : DecompositionSummary
        Counts, timing and the fitted transformer used; printable.

    Raises
    ------
    ShardError
        With ``on_error="raise"``, for a shard that cannot be read (its URL in the
        message); shards already committed stay, and ``resume=True`` continues.

    Examples
    --------
    A shard of three precomputed embeddings in memory, and a toy encoder standing in for
    CLIP; in real use, ``SpliceTransformer()``, ``"s3://bucket/shards/*.tar"`` and
    ``client=distributed.Client(...)``:

    >>> import io, tarfile
    >>> import fsspec
    >>> import numpy as np
    >>> from sklearn_splice import SpliceTransformer, decompose_dataset
    >>> class ToyEncoder:
    ...     def cache_identity(self):
    ...         return "toy"
    ...     def encode_text(self, texts):
    ...         return np.random.RandomState(0).randn(len(texts), 8)
    ...     def encode_image(self, X):
    ...         return np.asarray(X, dtype=float)
    >>> shard = io.BytesIO()
    >>> with tarfile.open(fileobj=shard, mode="w") as tar:
    ...     for k, vector in enumerate(np.random.RandomState(1).randn(3, 8)):
    ...         member = io.BytesIO()
    ...         np.save(member, vector)
    ...         info = tarfile.TarInfo(f"sample{k}.npy")
    ...         info.size = member.tell()
    ...         tar.addfile(info, io.BytesIO(member.getvalue()))
    >>> fsspec.filesystem("memory").pipe_file("/example/shard-0.tar", shard.getvalue())
    >>> splice = SpliceTransformer(ToyEncoder(), vocabulary=["cat", "dog", "sky"],
    ...                            l1_penalty=0.1, image_mean=np.zeros(8), device="cpu")
    >>> summary = decompose_dataset(["memory://example/shard-0.tar"], splice,
    ...                             "memory://example/out", resume=False, progress=False)
    >>> summary.images, summary.shards_done
    (3, 1)
    >>> sorted(fsspec.filesystem("memory").ls("/example/out", detail=False))
    ['/example/out/_splice_run.json', '/example/out/inputs', '/example/out/weights']
    """
    start = time.perf_counter()
    output = str(output)
    _check_image_modality(transformer)
    resolved = resolve_shards(shards, storage_options)
    recorded = _recorded_run(output, storage_options)  # checked before any fitting
    if recorded is not None and not resume:
        raise FileExistsError(_EXISTS.format(output=output))
    if recorded is not None and _fits_mean(transformer):
        # the run's own mean: the same run, without another pass over the images
        from sklearn.base import clone

        mean = np.asarray(recorded["mean"], dtype=np.float64)
        transformer = clone(transformer).set_params(image_mean=mean)
    if hasattr(transformer, "components_"):
        fitted = transformer
    else:
        fitted = fit_dataset(
            [s.url for s in resolved],
            transformer,
            client=client,
            batch_size=batch_size,
            progress=progress,
            storage_options=storage_options,
        )
    # a shallow copy: the caller's object keeps its settings; the cache is off for the job
    job = copy.copy(fitted)
    job.set_params(embedding_cache=False, verbose=False, sparse_output=True)
    meta = run_metadata(job, resolved)
    fs, root = _prepare_output(output, meta, storage_options, resume)
    # workers may run elsewhere: a local folder is passed as an absolute path
    target = root if is_local_fs(fs) else output
    done = _done_shards(fs, root)
    todo = [s for s in resolved if s.id not in done]
    summary = DecompositionSummary(output, shards_skipped=len(resolved) - len(todo))
    summary.transformer = fitted
    shipped = _on_workers(job, client)
    tasks = [(_decompose_shard, shipped, s, target, storage_options, batch_size) for s in todo]
    for result in _run(tasks, client, "decomposing shards", progress):
        if result.failure is not None:
            if on_error == "raise":
                raise result.failure
            summary.failed_shards.append((result.url, result.failure.reason))
            continue
        summary.shards_done += 1
        summary.images += result.images
        summary.unreadable += result.unreadable
    summary.seconds = time.perf_counter() - start
    return summary
