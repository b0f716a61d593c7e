"""Reading a decomposition written by :func:`decompose_dataset`: lazily, with dask.

The output is one folder per run (any fsspec URL)::

    OUT/_splice_run.json                      the run's settings
    OUT/weights/shard=<id>/part-0.parquet     one row per nonzero weight
    OUT/inputs/shard=<id>/part-0.parquet      one row per input, the shard's commit marker

Only committed shards (those with an inputs part) are read: a weights part left by a
crashed run without its inputs part is not part of the result. Statistics are dask
reductions over one partition per shard, so no process holds every code at once.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._files import import_scale, url_to_fs

__all__ = ["DecomposedDataset", "read_decomposition"]

_PART = re.compile(r"part-(\d+)\.parquet")
_SHARD_DIR = "shard="
_WEIGHT_COLUMNS = ("key", "concept_index", "weight", "label")
_INPUT_COLUMNS = ("key", "position", "label", "status", "error", "n_concepts")


def _need(module: str):
    return import_scale(module, "Reading a decomposed data set")


class DamagedOutputError(ValueError):
    """An output folder whose files contradict each other (e.g. a weight without input).

    Parameters
    ----------
    where : str
        The folder or file at fault.
    reason : str
        What is wrong there.

    Attributes
    ----------
    where, reason
        As given.
    """

    def __init__(self, where: str, reason: str):
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):  # keeps the data through pickling (dask workers)
        return (type(self), (self.where, self.reason))


@dataclass(frozen=True)
class _Shard:
    """One committed shard of one output folder."""

    id: str
    output: str  # the output folder as the user named it (for messages)
    inputs: tuple  # part files, in part order
    weights: tuple


def _parts(fs, folder: str) -> dict[str, list[tuple[int, str]]]:
    """``{shard id: [(part number, path), ...]}`` under ``folder`` (``weights`` or ``inputs``).

    ``find`` rather than a glob: a shard id or a folder may hold glob characters. Files
    that are not ``part-N.parquet`` (a temporary file of a write in flight) are skipped.
    """
    if not fs.exists(folder):
        return {}
    found: dict[str, list[tuple[int, str]]] = {}
    for path in fs.find(folder):
        parent, name = posixpath.split(path.rstrip("/"))
        shard_dir = posixpath.basename(parent)
        match = _PART.fullmatch(name)
        if match is None or not shard_dir.startswith(_SHARD_DIR):
            continue
        if posixpath.dirname(parent).rstrip("/") != folder.rstrip("/"):
            continue  # deeper than weights/shard=<id>/
        found.setdefault(shard_dir[len(_SHARD_DIR):], []).append((int(match.group(1)), path))
    return {k: [p for _, p in sorted(v)] for k, v in found.items()}


def _shards_of(fs, root: str, shown: str, meta: dict) -> list[_Shard]:
    """The committed shards of one output, in the run's shard order (others after, by id)."""
    inputs = _parts(fs, posixpath.join(root, "inputs"))
    weights = _parts(fs, posixpath.join(root, "weights"))
    listed = [s["id"] for s in meta.get("shards", [])]
    rank = {sid: i for i, sid in enumerate(listed)}
    order = sorted(inputs, key=lambda sid: (rank.get(sid, len(rank)), sid))
    return [
        _Shard(sid, shown, tuple(inputs[sid]), tuple(weights.get(sid, ()))) for sid in order
    ]


def _read_part(fs, path: str, wanted) -> Any:
    """The columns of ``wanted`` that a part file has, as a pyarrow table."""
    pq = _need("pyarrow.parquet")
    with fs.open(path, "rb") as fh:
        part = pq.ParquetFile(fh)
        names = set(part.schema_arrow.names)
        return part.read(columns=[c for c in wanted if c in names])


def _column(table, name, pa_type, n):
    pa = _need("pyarrow")
    if name not in table.column_names:
        return pa.nulls(n, type=pa_type)
    return table.column(name).cast(pa_type)


def _pandas_types():
    """How the Arrow columns become pandas ones: nullable integers and strings."""
    pa = _need("pyarrow")
    pd = _need("pandas")
    return {pa.int64(): pd.Int64Dtype(), pa.string(): pd.StringDtype()}.get


def _unified(tables, columns: dict):
    """The parts' tables as one, with exactly ``columns`` (name: Arrow type); a column a
    part lacks (``label`` of a shard without labels) is all null."""
    pa = _need("pyarrow")
    return pa.table(
        {
            name: pa.chunked_array(
                [_column(t, name, pa_type, t.num_rows) for t in tables]
                or [pa.array([], pa_type)]
            )
            for name, pa_type in columns.items()
        }
    )


def _weights_frame(fs, shard: _Shard | None, concepts, dtype: str):
    """One shard's weights as pandas (``shard`` None: the empty frame dask needs as meta)."""
    pa = _need("pyarrow")
    pd = _need("pandas")
    tables = [_read_part(fs, p, _WEIGHT_COLUMNS) for p in (shard.weights if shard else ())]
    table = _unified(
        tables,
        {
            "key": pa.string(),
            "concept_index": pa.int32(),
            "weight": pa.from_numpy_dtype(np.dtype(dtype)),
            "label": pa.int64(),
        },
    )
    frame = table.to_pandas(types_mapper=_pandas_types())
    index = frame["concept_index"].to_numpy()
    n_concepts = len(concepts.categories)
    if index.size and (index.min() < 0 or index.max() >= n_concepts):
        bad = index[(index < 0) | (index >= n_concepts)][0]
        raise DamagedOutputError(
            f"{shard.output} shard {shard.id!r}",
            f"concept_index {bad} is outside the run's {n_concepts} concepts",
        )
    frame.insert(0, "shard", pd.Series([shard.id if shard else ""] * len(frame), dtype="string"))
    frame.insert(2, "concept", pd.Categorical.from_codes(index, dtype=concepts))
    return frame


def _inputs_frame(fs, shard: _Shard | None):
    """One shard's inputs as pandas, in position order (``None``: the empty meta frame)."""
    pa = _need("pyarrow")
    pd = _need("pandas")
    tables = [_read_part(fs, p, _INPUT_COLUMNS) for p in (shard.inputs if shard else ())]
    table = _unified(
        tables,
        {
            "key": pa.string(),
            "position": pa.int32(),
            "label": pa.int64(),
            "status": pa.string(),
            "error": pa.string(),
            "n_concepts": pa.int32(),
        },
    )
    if shard is not None and (table.column("position").null_count
                              or table.column("n_concepts").null_count):
        raise DamagedOutputError(
            f"{shard.output} shard {shard.id!r}", "inputs lack a position or n_concepts"
        )
    frame = table.to_pandas(types_mapper=_pandas_types())
    frame.insert(0, "shard", pd.Series([shard.id if shard else ""] * len(frame), dtype="string"))
    return frame.sort_values("position", kind="stable").reset_index(drop=True)


class DecomposedDataset:
    """The decomposition of a data set, as written by :func:`decompose_dataset`.

    Made by :func:`read_decomposition`; nothing is read until asked for. One or more output
    folders of the same run are read together, one dask partition per shard; only
    committed shards (those whose inputs part exists) are included.

    :func:`concept_distribution` and :func:`compare_classes` accept it in place of a
    weight matrix and compute with dask dataframes.

    Parameters
    ----------
    outputs : list of str
        The output folders, as given to :func:`read_decomposition`.
    metadata : dict
        The run's metadata (the first folder's ``_splice_run.json``).
    shards : list
        The committed shards, in order: folders as given, then the run's shard order.
    filesystems : dict
        The fsspec filesystem of each folder.

    Attributes
    ----------
    metadata : dict
        The settings of the run: backbone, vocabulary and its hash, penalty, mean, shards.
    concepts : ndarray of str
        The concept words, one per column of :meth:`to_sparse`.
    shard_ids : list of str
        The committed shards, in row order.

    See Also
    --------
    read_decomposition : Opens an output folder.
    decompose_dataset : Writes one.

    Examples
    --------
    >>> from sklearn_splice import concept_distribution, read_decomposition
    >>> decomposition = read_decomposition("s3://bucket/decomposed")  # doctest: +SKIP
    >>> W, index = decomposition.to_sparse()  # doctest: +SKIP
    >>> per_class = concept_distribution(decomposition, y="label")  # doctest: +SKIP
    """

    def __init__(self, outputs, metadata, shards, filesystems):
        self.outputs = list(outputs)
        self.metadata = metadata
        self._shards = list(shards)
        self._fs = dict(filesystems)
        self.concepts = np.asarray(metadata["concepts"], dtype=object)
        self.shard_ids = [s.id for s in self._shards]

    def __repr__(self) -> str:
        where = self.outputs[0] if len(self.outputs) == 1 else f"{len(self.outputs)} folders"
        return (
            f"DecomposedDataset({where!r}: {len(self._shards)} shards, "
            f"{len(self.concepts)} concepts)"
        )

    def _concept_dtype(self):
        return _need("pandas").CategoricalDtype(list(self.concepts), ordered=False)

    @property
    def weights(self):
        """Dask dataframe of the nonzero weights, one partition per shard.

        Columns ``shard, key, concept`` (categorical over :attr:`concepts`),
        ``concept_index, weight, label`` (nullable Int64; missing without labels).
        """
        dd = _need("dask.dataframe")
        concepts, dtype = self._concept_dtype(), self.metadata.get("output_dtype", "float64")
        meta = _weights_frame(None, None, concepts, dtype)
        if not self._shards:
            return dd.from_pandas(meta, npartitions=1)
        return dd.from_map(
            _weights_frame,
            [self._fs[s.output] for s in self._shards],
            self._shards,
            [concepts] * len(self._shards),
            [dtype] * len(self._shards),
            meta=meta,
            label="read-splice-weights",
            enforce_metadata=False,
        )

    @property
    def inputs(self):
        """Dask dataframe of the inputs, one partition per shard, in position order.

        Columns ``shard, key, position, label, status`` (``"ok"`` or ``"unreadable"``),
        ``error, n_concepts``.
        """
        dd = _need("dask.dataframe")
        meta = _inputs_frame(None, None)
        if not self._shards:
            return dd.from_pandas(meta, npartitions=1)
        return dd.from_map(
            _inputs_frame,
            [self._fs[s.output] for s in self._shards],
            self._shards,
            meta=meta,
            label="read-splice-inputs",
            enforce_metadata=False,
        )

    def to_sparse(self):
        """All weights as one CSR matrix, for results that fit in memory.

        Returns
        -------
        W : scipy.sparse.csr_matrix of shape (n_inputs, n_concepts)
            One row per input (shards in order, then positions), one column per concept:
            what ``SpliceTransformer.transform`` gives on the same inputs. Unreadable
            inputs have an all-zero row.
        index : pandas.DataFrame
            One row per row of ``W``: ``shard, key, position, label, status, error``.
        """
        import scipy.sparse as sp

        pd = _need("pandas")
        dask = _need("dask")
        weights, inputs = dask.compute(self.weights, self.inputs)
        inputs = inputs.reset_index(drop=True)
        # the row of each (shard, key); keys are unique within a shard
        row_of = pd.Series(np.arange(len(inputs)), index=pd.MultiIndex.from_frame(
            inputs[["shard", "key"]]
        ))
        if not row_of.index.is_unique:
            dup = inputs[inputs.duplicated(["shard", "key"])].iloc[0]
            raise DamagedOutputError(
                f"shard {dup['shard']!r}", f"input key {dup['key']!r} appears twice"
            )
        rows = row_of.reindex(pd.MultiIndex.from_frame(weights[["shard", "key"]])).to_numpy()
        if np.isnan(rows.astype(float)).any():
            lost = weights[np.isnan(rows.astype(float))].iloc[0]
            raise DamagedOutputError(
                f"shard {lost['shard']!r}", f"a weight of key {lost['key']!r} has no input row"
            )
        W = sp.csr_matrix(
            (weights["weight"].to_numpy(), (rows.astype(np.int64),
                                            weights["concept_index"].to_numpy())),
            shape=(len(inputs), len(self.concepts)),
        )
        W.sort_indices()
        index = inputs[["shard", "key", "position", "label", "status", "error"]]
        return W, index

    def input_counts(self, by_label: bool = False):
        """Inputs per group: all of them, the decomposed and the unreadable.

        Parameters
        ----------
        by_label : bool, default=False
            One row per stored label (inputs without a label are a group of their own,
            shown as ``<NA>``) instead of one row, ``"all"``.

        Returns
        -------
        counts : pandas.DataFrame
            Columns ``group, n_inputs, n_decomposed, n_unreadable``.
        """
        pd = _need("pandas")
        dask = _need("dask")
        inputs = self.inputs[["label", "status"]]
        inputs = inputs.assign(ok=inputs["status"] == "ok")
        if by_label:
            per = inputs.groupby("label", dropna=False)["ok"].agg(["count", "sum"])
            (per,) = dask.compute(per)
            per = per.sort_index()
            groups = list(per.index)
        else:
            total, ok = dask.compute(inputs["ok"].count(), inputs["ok"].sum())
            per = pd.DataFrame({"count": [total], "sum": [ok]})
            groups = ["all"]
        n = per["count"].to_numpy(dtype=np.int64)
        ok = per["sum"].to_numpy(dtype=np.int64)
        return pd.DataFrame(
            {"group": groups, "n_inputs": n, "n_decomposed": ok, "n_unreadable": n - ok}
        )


def _group_label(value):
    """A label as a plain Python int (as pandas and JSON show it)."""
    return int(value) if value is not None else None


def concept_counts(dataset: DecomposedDataset, by_label: bool) -> list:
    """Per group: ``(group, n_decomposed, weight sums, nonzero counts)`` over the concepts.

    Unreadable inputs are left out of the groups (their count is in
    :meth:`DecomposedDataset.input_counts`). Computed as dask reductions: partial sums
    per shard, combined; no process holds every code.

    Parameters
    ----------
    dataset : DecomposedDataset
    by_label : bool
        One group per stored label, or one group ``"all"``.

    Returns
    -------
    groups : list of (object, int, ndarray, ndarray)
        ``sums`` and ``counts`` have one entry per concept.
    """
    dask = _need("dask")
    n_concepts = len(dataset.concepts)
    weights, inputs = dataset.weights, dataset.inputs
    ok = inputs[inputs["status"] == "ok"]
    where = dataset.outputs[0] if len(dataset.outputs) == 1 else ", ".join(dataset.outputs)
    keys = ["label", "concept_index"] if by_label else ["concept_index"]
    per_concept = weights.groupby(keys)["weight"].agg(["sum", "count"])
    n_weights, n_promised = weights["weight"].count(), inputs["n_concepts"].sum()
    if by_label:
        sizes = ok.groupby("label")["key"].count()
        unlabelled = ok["label"].isna().sum()
        per_concept, sizes, unlabelled, n_weights, n_promised = dask.compute(
            per_concept, sizes, unlabelled, n_weights, n_promised
        )
        if unlabelled:
            raise ValueError(
                f"{where}: {unlabelled} decomposed inputs have no label; per-label "
                "statistics need a label on every input (use y=None for one group)."
            )
    else:
        per_concept, n_ok, n_weights, n_promised = dask.compute(
            per_concept, ok["key"].count(), n_weights, n_promised
        )
    if int(n_weights) != int(n_promised):
        raise DamagedOutputError(
            where,
            f"the weights parts hold {n_weights} rows, the inputs parts promise {n_promised}",
        )
    out = []
    if by_label:
        frame = per_concept.reset_index()
        for label, n in sorted(sizes.items()):
            sub = frame[frame["label"] == label]
            out.append((_group_label(label), int(n), *_dense(sub, n_concepts)))
    else:
        out.append(("all", int(n_ok), *_dense(per_concept.reset_index(), n_concepts)))
    return out


def _dense(frame, n_concepts):
    index = frame["concept_index"].to_numpy(dtype=np.int64)
    sums = np.zeros(n_concepts)
    counts = np.zeros(n_concepts, dtype=np.int64)
    sums[index] = frame["sum"].to_numpy(dtype=np.float64)
    counts[index] = frame["count"].to_numpy(dtype=np.int64)
    return sums, counts


def read_decomposition(path_or_paths: Any, *, storage_options: dict | None = None):
    """Open the output of :func:`decompose_dataset` (or several outputs of one run).

    Parameters
    ----------
    path_or_paths : str, path-like or list of them
        Output folders: local paths or fsspec URLs (``s3://bucket/out``,
        ``memory://out``). Several folders are read as one data set; they must hold the
        same run (same backbone, vocabulary, penalty, mean...) and no shard twice.
    storage_options : dict, default=None
        Passed to fsspec for every folder (e.g. ``{"anon": True}`` or an S3 endpoint).

    Returns
    -------
    dataset : DecomposedDataset
        The committed shards of the folders, read lazily.

    Examples
    --------
    A shard of six precomputed embeddings with labels, decomposed, then read back:

    >>> import io, tarfile, tempfile
    >>> import numpy as np
    >>> from sklearn_splice import (SpliceTransformer, concept_distribution,
    ...                             decompose_dataset, read_decomposition)
    >>> class Toy:  # stands in for CLIP: fixed random vectors of width 4
    ...     def cache_identity(self):
    ...         return "toy-width-4"
    ...     def encode_text(self, texts):
    ...         return np.random.RandomState(0).randn(len(texts), 4)
    ...     def encode_image(self, X):
    ...         return np.asarray(X)
    >>> folder = tempfile.mkdtemp()
    >>> with tarfile.open(f"{folder}/shard-000.tar", "w") as tar:
    ...     for i, row in enumerate(np.random.RandomState(1).randn(6, 4)):
    ...         npy = io.BytesIO()
    ...         np.save(npy, row)
    ...         for name, data in ((f"{i}.npy", npy.getvalue()), (f"{i}.cls", b"%d" % (i % 2))):
    ...             info = tarfile.TarInfo(name)
    ...             info.size = len(data)
    ...             tar.addfile(info, io.BytesIO(data))
    >>> splice = SpliceTransformer(Toy(), vocabulary=list("abcdefgh"), l1_penalty=0.01,
    ...                            image_mean=np.zeros(4), device="cpu", cache_dir=False)
    >>> summary = decompose_dataset(f"{folder}/shard-000.tar", splice, f"{folder}/out",
    ...                             progress=False)
    >>> decomposition = read_decomposition(f"{folder}/out")
    >>> decomposition  # doctest: +ELLIPSIS
    DecomposedDataset('.../out': 1 shards, 8 concepts)
    >>> W, index = decomposition.to_sparse()
    >>> W.shape, index["label"].tolist()
    ((6, 8), [0, 1, 0, 1, 0, 1])
    >>> distribution = concept_distribution(decomposition, y="label")
    >>> distribution["group"].unique().tolist(), int(distribution["n_samples"].iloc[0])
    ([0, 1], 3)
    """
    import os

    from ._run_metadata import check_same_run, read_run_metadata

    many = isinstance(path_or_paths, (list, tuple))
    paths = [os.fspath(p) for p in (path_or_paths if many else [path_or_paths])]
    if not paths:
        raise ValueError("read_decomposition needs at least one output folder.")
    metadata, shards, filesystems, seen = None, [], {}, {}
    for path in paths:
        if path in filesystems:
            raise ValueError(f"The output folder {path} is given twice.")
        fs, root = url_to_fs(path, storage_options)
        found = read_run_metadata(path, storage_options=storage_options)
        if metadata is None:
            metadata = found
        else:
            check_same_run(metadata, found, path)
        filesystems[path] = fs
        for shard in _shards_of(fs, root, path, found):
            if shard.id in seen:
                raise ValueError(
                    f"Shard {shard.id!r} is in both {seen[shard.id]} and {path}; "
                    "each input would be counted twice."
                )
            seen[shard.id] = path
            shards.append(shard)
    return DecomposedDataset(paths, metadata, shards, filesystems)
