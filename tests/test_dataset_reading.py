"""Reading the Parquet output of decompose_dataset: the matrix, and statistics with dask."""

import copy
import io
import os
import tarfile

import numpy as np
import pytest

from helpers import HashingEncoder
from sklearn_splice import (
    RunMismatchError,
    SpliceTransformer,
    compare_classes,
    concept_distribution,
    decompose_dataset,
    read_decomposition,
)
from sklearn_splice._dataset_reading import DamagedOutputError

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")
pytest.importorskip("dask.dataframe")

WORDS = [f"word{i}" for i in range(24)]
WIDTH = 16


def npy_bytes(row):
    buf = io.BytesIO()
    np.save(buf, np.asarray(row))
    return buf.getvalue()


def write_shard(path, members):
    """A tar shard of (name, bytes) members, in the order given (webdataset layout)."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


@pytest.fixture(scope="module")
def embeddings():
    """36 embeddings in 3 classes, split into shards of 14, 12 and 10."""
    rng = np.random.RandomState(0)
    X = rng.standard_normal((36, WIDTH))
    y = np.arange(36) % 3
    X[y == 1] += 1.5 * rng.standard_normal(WIDTH)  # classes that differ
    return X, y, [(0, 14), (14, 26), (26, 36)]


@pytest.fixture(scope="module")
def shards(embeddings, tmp_path_factory):
    X, y, spans = embeddings
    folder = tmp_path_factory.mktemp("shards")
    paths = []
    for s, (lo, hi) in enumerate(spans):
        members = []
        for i in range(lo, hi):
            members += [(f"in{i:03d}.npy", npy_bytes(X[i])), (f"in{i:03d}.cls", b"%d" % y[i])]
        paths.append(write_shard(folder / f"part-{s}.tar", members))
    return paths


def splice():
    return SpliceTransformer(
        HashingEncoder(width=WIDTH), vocabulary=WORDS, l1_penalty=0.05, device="cpu",
        cache_dir=False,
    )


@pytest.fixture(scope="module")
def fitted(embeddings):
    X, _, _ = embeddings
    return splice().fit(X)


@pytest.fixture(scope="module")
def output(shards, fitted, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("decomposed") / "out")
    decompose_dataset(shards, fitted, out, progress=False)
    return out


def test_the_matrix_read_back_is_what_transform_gives(output, embeddings, fitted):
    X, y, _ = embeddings
    dataset = read_decomposition(output)
    assert dataset.shard_ids == ["part-0", "part-1", "part-2"]
    assert list(dataset.concepts) == WORDS and dataset.metadata["l1_penalty"] == 0.05
    W, index = dataset.to_sparse()
    expected = fitted.transform(X).toarray()
    assert W.shape == expected.shape and W.nnz == np.count_nonzero(expected)
    np.testing.assert_allclose(W.toarray(), expected, rtol=0, atol=1e-12)
    assert index["key"].tolist() == [f"in{i:03d}" for i in range(36)]
    assert index["label"].tolist() == y.tolist() and set(index["status"]) == {"ok"}
    # the dask frames are the same rows, one partition per shard
    weights = dataset.weights
    assert weights.npartitions == 3
    frame = weights.compute()
    assert len(frame) == W.nnz and frame["weight"].sum() == pytest.approx(W.sum())
    assert (frame["concept"].astype(str) == np.asarray(WORDS)[frame["concept_index"]]).all()
    assert dataset.inputs.compute()["n_concepts"].sum() == W.nnz


def test_statistics_with_dask_equal_those_of_the_matrix(output, embeddings, fitted):
    X, y, _ = embeddings
    W = fitted.transform(X)
    dataset = read_decomposition(output)
    for args, kwargs in [((), {}), ((), {"y": "label"}), ((), {"min_prevalence": 0.3})]:
        got = concept_distribution(dataset, *args, **kwargs)
        labels = y if kwargs.get("y") == "label" else None
        rest = {k: v for k, v in kwargs.items() if k != "y"}
        want = concept_distribution(W, WORDS, labels, **rest)
        assert got["concept"].tolist() == want["concept"].tolist()
        assert got["group"].tolist() == want["group"].tolist()
        assert got["n_samples"].tolist() == want["n_samples"].tolist()
        for column in ("mean_weight", "prevalence"):
            np.testing.assert_allclose(got[column], want[column], rtol=1e-12, atol=1e-15)
    got = compare_classes(dataset, class_a=1, class_b=2, top=5)
    want = compare_classes(W, WORDS, y, 1, 2, top=5)
    assert got["concept"].tolist() == want["concept"].tolist()
    np.testing.assert_allclose(
        got.drop(columns="concept").to_numpy(), want.drop(columns="concept").to_numpy(),
        rtol=1e-12,
    )
    assert compare_classes(dataset, WORDS, "label", 1, 2, top=5).equals(got)
    with pytest.raises(ValueError, match="class 7 has no samples"):
        compare_classes(dataset, class_a=7, class_b=1)


def test_statistics_run_on_a_dask_cluster_shard_by_shard(output, fitted, embeddings):
    distributed = pytest.importorskip("distributed")
    X, y, _ = embeddings
    with distributed.Client(  # worker processes: the shards' readers travel pickled
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as client:
        with distributed.get_task_stream(client) as stream:
            dist = concept_distribution(read_decomposition(output), y="label")
    reads = [t for t in stream.data if t["key"][0].startswith("read-splice-weights")]
    assert len(reads) == 3  # one read per shard, run on the cluster
    want = concept_distribution(fitted.transform(X), WORDS, y)
    np.testing.assert_allclose(dist["prevalence"], want["prevalence"])


def test_unreadable_inputs_are_counted_apart(fitted, embeddings, tmp_path):
    X, y, _ = embeddings
    members = []
    for i in range(8):
        data = b"not an array" if i in (2, 5) else npy_bytes(X[i])
        members += [(f"k{i}.npy", data), (f"k{i}.cls", b"%d" % y[i])]
    shard = write_shard(tmp_path / "mixed.tar", members)
    out = str(tmp_path / "out")
    summary = decompose_dataset([shard], fitted, out, progress=False)
    assert summary.unreadable == 2
    dataset = read_decomposition(out)
    counts = dataset.input_counts()
    assert counts.to_dict("records") == [
        {"group": "all", "n_inputs": 8, "n_decomposed": 6, "n_unreadable": 2}
    ]
    per_label = dataset.input_counts(by_label=True).set_index("group")
    assert per_label["n_unreadable"].sum() == 2 and per_label["n_inputs"].sum() == 8
    W, index = dataset.to_sparse()
    assert W.shape == (8, len(WORDS)) and W[[2, 5]].nnz == 0
    assert index["status"].tolist().count("unreadable") == 2
    assert "could not be read" in index["error"].iloc[2]
    # the denominator is the decomposed inputs, with or without concepts
    readable = [i for i in range(8) if i not in (2, 5)]
    want = concept_distribution(fitted.transform(X[readable]), WORDS)
    got = concept_distribution(dataset)
    assert got["n_samples"].iloc[0] == 6
    np.testing.assert_allclose(got["prevalence"], want["prevalence"])


def test_an_uncommitted_shard_is_not_read(output, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(output, copy)
    # a crash between the two writes: the weights part without its inputs part
    os.remove(copy / "inputs" / "shard=part-1" / "part-0.parquet")
    (copy / "inputs" / "shard=part-2" / ".part-0.parquet.tmp").write_bytes(b"half written")
    dataset = read_decomposition(str(copy))
    assert dataset.shard_ids == ["part-0", "part-2"]
    W, index = dataset.to_sparse()
    assert W.shape[0] == 24 and set(index["shard"]) == {"part-0", "part-2"}
    dist = concept_distribution(dataset)
    assert dist["n_samples"].iloc[0] == 24


def test_several_outputs_of_one_run_read_as_one(shards, fitted, output, tmp_path):
    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    decompose_dataset(shards[:2], fitted, first, progress=False)
    decompose_dataset(shards[2:], fitted, second, progress=False)
    together = read_decomposition([first, second])
    alone = read_decomposition(output)
    assert together.shard_ids == alone.shard_ids
    assert (together.to_sparse()[0] != alone.to_sparse()[0]).nnz == 0
    with pytest.raises(ValueError, match="'part-0' is in both"):
        read_decomposition([first, output])
    other = str(tmp_path / "other")
    stricter = copy.deepcopy(fitted).set_params(l1_penalty=0.1)
    decompose_dataset(shards[2:], stricter, other, progress=False)
    with pytest.raises(RunMismatchError, match="l1_penalty") as info:
        read_decomposition([first, other])
    assert info.value.where == other and info.value.key == "l1_penalty"


def test_an_output_in_memory_storage(shards, fitted):
    out = "memory://splice-reading/out"
    decompose_dataset(shards[:1], fitted, out, progress=False)
    dataset = read_decomposition(out)
    assert dataset.to_sparse()[0].shape == (14, len(WORDS))
    assert concept_distribution(dataset)["n_samples"].iloc[0] == 14


def test_damaged_and_wrong_inputs_are_clear_errors(output, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    with pytest.raises(FileNotFoundError, match="no _splice_run.json"):
        read_decomposition(str(tmp_path))
    dataset = read_decomposition(output)
    with pytest.raises(ValueError, match="y must be None .* or 'label'"):
        concept_distribution(dataset, y=np.zeros(36))
    with pytest.raises(ValueError, match="feature_names differ"):
        concept_distribution(dataset, WORDS[::-1])
    with pytest.raises(ValueError, match="feature_names is required"):
        concept_distribution(np.eye(2))
    copy = tmp_path / "copy"
    shutil.copytree(output, copy)
    path = copy / "weights" / "shard=part-1" / "part-0.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)  # a weight lost
    damaged = read_decomposition(str(copy))
    with pytest.raises(DamagedOutputError, match="weights parts hold"):
        concept_distribution(damaged)
    assert os.path.exists(path)  # nothing the user passed is modified


def test_per_label_needs_labels(fitted, embeddings, tmp_path):
    X, _, _ = embeddings
    members = [(f"k{i}.npy", npy_bytes(X[i])) for i in range(5)]
    shard = write_shard(tmp_path / "nolabels.tar", members)
    out = str(tmp_path / "out")
    decompose_dataset([shard], fitted, out, progress=False)
    dataset = read_decomposition(out)
    assert dataset.to_sparse()[1]["label"].isna().all()
    assert concept_distribution(dataset)["n_samples"].iloc[0] == 5
    with pytest.raises(ValueError, match="5 decomposed inputs have no label"):
        concept_distribution(dataset, y="label")


@pytest.fixture
def s3(monkeypatch):
    """storage_options of a bucket on a local S3-compatible server (moto), and its fs."""
    import socket

    fsspec = pytest.importorskip("fsspec")
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    # s3fs keeps one filesystem per set of arguments: drop any made under other settings
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    options = {"client_kwargs": {"endpoint_url": endpoint}}
    fsspec.filesystem("s3", **options).mkdir("splice-reading")
    yield options
    fsspec.filesystem("s3", **options).invalidate_cache()
    server.stop()


def test_an_output_on_s3_reads_as_the_local_one(shards, fitted, output, s3):
    out = "s3://splice-reading/out"
    decompose_dataset(shards, fitted, out, progress=False, storage_options=s3)
    remote, local = read_decomposition(out, storage_options=s3), read_decomposition(output)
    assert remote.shard_ids == local.shard_ids
    assert (remote.to_sparse()[0] != local.to_sparse()[0]).nnz == 0
    got, want = concept_distribution(remote, y="label"), concept_distribution(local, y="label")
    np.testing.assert_allclose(got["prevalence"], want["prevalence"])
    with pytest.raises(FileNotFoundError, match="s3://splice-reading/nothing is not the output"):
        read_decomposition("s3://splice-reading/nothing", storage_options=s3)
