"""The data-set job on real parts: tar shards of PNG images, the tiny open_clip model,
Parquet read back with pyarrow, and a dask LocalCluster whose worker dies mid-run."""

import os
import pickle
import signal
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn_splice import (
    MissingShardError,
    OpenCLIPEncoder,
    RunMismatchError,
    ShardError,
    SpliceTransformer,
    decompose_dataset,
    fit_dataset,
)
from sklearn_splice._shards import decode_image, iter_samples
from test_shards import image_bytes, image_members, npy_bytes, put, tar_bytes

pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("fsspec")

WORDS = [f"word{i}" for i in range(30)]
N_SHARDS, PER_SHARD = 20, 3


def splice(encoder, **kw):
    params = {"vocabulary": WORDS, "l1_penalty": 0.05, "device": "cpu", "cache_dir": False}
    return SpliceTransformer(encoder, **{**params, **kw})


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """20 local tar shards of 3 labelled PNG images each."""
    folder = tmp_path_factory.mktemp("shards")
    urls = []
    for i in range(N_SHARDS):
        seeds = range(PER_SHARD * i, PER_SHARD * (i + 1))
        members = image_members(f"img{i:02d}", seeds, labels=[i % 2] * PER_SHARD)
        urls.append(put(str(folder / f"shard-{i:02d}.tar"), tar_bytes(members)))
    return urls


def images_of(urls):
    return [decode_image(s, u) for u in urls for s in iter_samples(u)]


@pytest.fixture(scope="module")
def encoder(tiny_clip):
    config, checkpoint = tiny_clip
    # one image per forward pass, in the job and in the reference transform alike: float32
    # passes over batches of other sizes differ in the last bits
    return OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu", batch_size=1)


@pytest.fixture(scope="module")
def fitted(encoder, shards):
    """fit_dataset in this process, checked against fit on all images at once."""
    unfitted = splice(encoder)
    out = fit_dataset(shards, unfitted, progress=False)
    assert not hasattr(unfitted, "mean_")  # the caller's object is not modified
    reference = splice(encoder).fit(images_of(shards))
    np.testing.assert_allclose(out.mean_, reference.mean_, rtol=0, atol=1e-7)
    assert out.n_samples_seen_ == reference.n_samples_seen_ == N_SHARDS * PER_SHARD
    assert out.image_mean == "fit"
    np.testing.assert_array_equal(out.components_, reference.components_)
    return out


def read_output(folder, urls):
    """The weights as one CSR matrix (rows in shard order, then position) and the inputs."""
    rows, cols, vals, inputs, offset = [], [], [], [], 0
    for url in urls:
        sid = os.path.basename(url)[: -len(".tar")]
        shard_inputs = pq.read_table(f"{folder}/inputs/shard={sid}/part-0.parquet").to_pylist()
        weights = pq.read_table(f"{folder}/weights/shard={sid}/part-0.parquet")
        position = {r["key"]: r["position"] for r in shard_inputs}
        w = weights.to_pydict()
        rows += [offset + position[k] for k in w["key"]]
        cols += w["concept_index"]
        vals += w["weight"]
        inputs += [{**r, "shard": sid} for r in shard_inputs]
        offset += len(shard_inputs)
    W = sp.csr_matrix((vals, (rows, cols)), shape=(offset, len(WORDS)))
    return W, inputs


def assert_same_matrix(W, expected):
    expected = sp.csr_matrix(expected)
    assert W.nnz == expected.nnz > 0
    np.testing.assert_array_equal(W.indptr, expected.indptr)
    np.testing.assert_array_equal(W.indices, expected.indices)
    np.testing.assert_allclose(W.data, expected.data, rtol=0, atol=1e-12)


def part_times(folder):
    found = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            found[path] = os.stat(path).st_mtime_ns
    return found


# -- on a cluster whose worker dies (first: the model-load count starts at zero) -------------
KILLED_MARKER = "killed-once"
COUNTS = {"loads": 0, "encodes": 0}


class KillOnceCLIP(OpenCLIPEncoder):
    """The tiny model; counts its loads in each process, and the first dask worker to
    encode its second batch kills its own process (once per ``marker`` folder)."""

    def __init__(self, model_name="ViT-B-32", pretrained=None, *, device="cpu", marker=None):
        super().__init__(model_name, pretrained, device=device, batch_size=1)
        self.marker = marker

    def _create(self, *args):
        COUNTS["loads"] += 1
        return super()._create(*args)

    def encode_image(self, images):
        COUNTS["encodes"] += 1
        if COUNTS["encodes"] == 2 and self.marker is not None and _in_a_worker():
            try:
                os.close(os.open(os.path.join(self.marker, KILLED_MARKER), os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().encode_image(images)


def _in_a_worker():
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def _counts():
    return dict(COUNTS)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    # not the process's default client: the job must use the client it is given
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def test_a_worker_killed_mid_run_loses_nothing_and_resume_redoes_nothing(
    client, tiny_clip, shards, fitted, tmp_path
):
    config, checkpoint = tiny_clip
    marker = tmp_path / "marker"
    marker.mkdir()
    enc = KillOnceCLIP(config, checkpoint, marker=str(marker))
    # the mean of the in-process fit, given: the job fits the dictionary without reading
    transformer = splice(enc, image_mean=fitted.mean_)
    out = str(tmp_path / "out")
    summary = decompose_dataset(shards, transformer, out, client=client, progress=False)

    assert (marker / KILLED_MARKER).exists()  # a worker process did die mid-shard
    assert summary.shards_done == N_SHARDS and summary.shards_skipped == 0
    assert summary.images == N_SHARDS * PER_SHARD and summary.unreadable == 0
    W, inputs = read_output(out, shards)
    keys = [(r["shard"], r["key"]) for r in inputs]
    assert len(keys) == len(set(keys)) == N_SHARDS * PER_SHARD  # every input exactly once
    assert all(r["status"] == "ok" for r in inputs)
    assert_same_matrix(W, summary.transformer.transform(images_of(shards)))
    assert [r["label"] for r in inputs] == [i % 2 for i in range(N_SHARDS) for _ in "abc"]

    # the transformer the workers got holds no model; each worker process loaded it once
    assert b"torch" not in pickle.dumps(summary.transformer)
    counts = client.run(_counts)
    assert all(c["loads"] <= 1 for c in counts.values()), counts
    assert sum(c["encodes"] for c in counts.values()) > sum(c["loads"] for c in counts.values())

    # rerun: every shard is skipped and no file is written again
    before = part_times(out)
    again = decompose_dataset(shards, transformer, out, client=client, progress=False)
    assert again.shards_skipped == N_SHARDS and again.shards_done == 0 and again.images == 0
    assert part_times(out) == before
    assert "0 done now, 20 already done" in str(again)


def test_fit_dataset_on_the_cluster_equals_fit(client, encoder, shards, fitted):
    on_cluster = fit_dataset(shards, splice(encoder), client=client, progress=False)
    np.testing.assert_allclose(on_cluster.mean_, fitted.mean_, rtol=0, atol=1e-7)
    assert on_cluster.n_samples_seen_ == fitted.n_samples_seen_


def test_the_jobs_send_the_transformer_without_a_large_graph_warning(
    client, encoder, shards, fitted, tmp_path
):
    # Each job sends the encoder or transformer once, as one task: a real CLIP model's
    # dictionary takes tens of MB, over dask's 10 MB warning threshold. Lowered here, the
    # threshold makes the tiny one exceed it too.
    dask = pytest.importorskip("dask")
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "2kB"}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit_dataset(shards[:2], splice(encoder), client=client, progress=False)
            decompose_dataset(shards[:2], fitted, str(tmp_path), client=client, progress=False)
    assert len(pickle.dumps(fitted)) > 2000
    assert not [w for w in caught if "large graph" in str(w.message)]


# -- in this process -------------------------------------------------------------------------
def test_parquet_equals_transform_and_the_cache_stays_empty(fitted, shards, tmp_path):
    out = tmp_path / "out"
    summary = decompose_dataset(shards[:4], fitted, str(out), progress=False)
    W, inputs = read_output(out, shards[:4])
    assert_same_matrix(W, fitted.transform(images_of(shards[:4])))
    weights = pq.read_table(out / "weights" / "shard=shard-00" / "part-0.parquet")
    assert weights.schema.field("concept_index").type == "int32"
    assert weights.schema.field("weight").type == "double"
    assert weights.schema.field("label").type == "int64"
    concept = weights.column("concept").to_pylist()
    assert concept == [WORDS[i] for i in weights.column("concept_index").to_pylist()]
    row = inputs[0]
    assert row == {**row, "position": 0, "status": "ok", "error": None, "label": 0}
    assert sum(r["n_concepts"] for r in inputs) == W.nnz
    assert summary.images == 4 * PER_SHARD and "12 inputs" in str(summary)
    # no per-input embedding file was written, and the caller's transformer kept its cache on
    assert not (tmp_path / "splice-cache" / "embeddings").exists()
    assert fitted.embedding_cache is True and summary.transformer is fitted


def test_a_corrupt_image_is_recorded_and_the_others_decomposed(fitted, tmp_path):
    members = image_members("a", [100, 101]) + [("a_bad.png", b"\x89PNG broken")]
    members += image_members("b", [102, 103])
    url = put(str(tmp_path / "corrupt.tar"), tar_bytes(members))
    summary = decompose_dataset([url], fitted, str(tmp_path / "out"), progress=False)
    assert summary.images == 4 and summary.unreadable == 1
    W, inputs = read_output(tmp_path / "out", [url])
    bad = inputs[2]
    assert bad["key"] == "a_bad" and bad["status"] == "unreadable" and bad["n_concepts"] == 0
    assert f"{url}#a_bad.png" in bad["error"] and "could not be read as an image" in bad["error"]
    good = [0, 1, 3, 4]
    samples = list(iter_samples(url))
    assert_same_matrix(W[good], fitted.transform([decode_image(samples[i], url) for i in good]))
    assert W[2].nnz == 0


def test_damaged_and_missing_shards(fitted, shards, tmp_path):
    whole = tar_bytes(image_members("t", [7, 8, 9]))
    truncated = put(str(tmp_path / "truncated.tar"), whole[: len(whole) // 2])
    missing = str(tmp_path / "missing.tar")
    out = str(tmp_path / "out")
    with pytest.raises(ShardError, match="truncated.tar") as info:
        decompose_dataset([shards[0], truncated], fitted, out, progress=False)
    assert info.value.url == truncated
    assert not os.path.exists(f"{out}/weights/shard=truncated")
    assert os.path.exists(f"{out}/inputs/shard=shard-00/part-0.parquet")  # kept: resumable

    summary = decompose_dataset(
        [shards[0], truncated, missing], fitted, out, on_error="skip", progress=False
    )
    assert summary.shards_skipped == 1 and summary.shards_done == 0
    assert [url for url, _ in summary.failed_shards] == [truncated, missing]
    assert "does not exist" in summary.failed_shards[1][1] and missing in str(summary)
    with pytest.raises(MissingShardError, match="missing.tar"):
        decompose_dataset([missing], fitted, out, progress=False)


def test_duplicate_shard_ids_are_refused_before_anything_is_written(fitted, shards, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    copy = put(str(other / os.path.basename(shards[0])), open(shards[0], "rb").read())
    with pytest.raises(ValueError, match="Two shards have the id 'shard-00'"):
        decompose_dataset([shards[0], copy], fitted, str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


def test_resume_refuses_another_run_and_recomputes_a_half_written_shard(
    encoder, fitted, shards, tmp_path
):
    out = tmp_path / "out"
    decompose_dataset(shards[:2], fitted, str(out), progress=False)
    other = splice(encoder, l1_penalty=0.2, image_mean=fitted.mean_)
    with pytest.raises(RunMismatchError, match="l1_penalty") as info:
        decompose_dataset(shards[:2], other, str(out), progress=False)
    assert info.value.key == "l1_penalty"
    with pytest.raises(FileExistsError, match="resume=True"):
        decompose_dataset(shards[:2], fitted, str(out), resume=False, progress=False)

    # a crash between the two writes leaves a weights file without its inputs file
    (out / "inputs" / "shard=shard-01" / "part-0.parquet").unlink()
    (out / "weights" / "shard=shard-01" / "part-0.parquet").write_bytes(b"left by a crash")
    summary = decompose_dataset(shards[:3], fitted, str(out), progress=False)
    assert summary.shards_skipped == 1 and summary.shards_done == 2
    W, inputs = read_output(out, shards[:3])
    assert len(inputs) == 3 * PER_SHARD
    assert_same_matrix(W, fitted.transform(images_of(shards[:3])))
    from sklearn_splice._run_metadata import read_run_metadata

    meta = read_run_metadata(str(out))  # the new shard joined the run's list
    assert [s["id"] for s in meta["shards"]] == ["shard-00", "shard-01", "shard-02"]


def test_embedding_shards_need_no_images(fitted, tmp_path):
    rng = np.random.RandomState(5)
    E = rng.standard_normal((5, fitted.components_.shape[1]))
    members = [(f"e{k}.npy", npy_bytes(E[k])) for k in range(5)]
    members.insert(2, ("e_wrong.npy", npy_bytes(np.ones(3))))
    url = put(str(tmp_path / "emb.tar"), tar_bytes(members))
    summary = decompose_dataset([url], fitted, str(tmp_path / "out"), progress=False)
    assert summary.images == 5 and summary.unreadable == 1
    W, inputs = read_output(tmp_path / "out", [url])
    assert "shape (3,)" in inputs[2]["error"]
    assert_same_matrix(W[[0, 1, 3, 4, 5]], fitted.transform(E))
    schema = pq.read_table(tmp_path / "out/weights/shard=emb/part-0.parquet").schema
    assert "label" not in schema.names  # no .cls members: no label column


def test_memory_urls_for_shards_and_output(fitted):
    import fsspec

    fs = fsspec.filesystem("memory")
    urls = [
        put(f"memory://job-in/m{i}.tar", tar_bytes(image_members(f"m{i}", [200 + i, 300 + i])))
        for i in range(2)
    ]
    try:
        summary = decompose_dataset(urls, fitted, "memory://job-out/run", progress=False)
        assert summary.images == 4
        import io

        raw = fs.cat_file("/job-out/run/weights/shard=m1/part-0.parquet")
        weights = pq.read_table(io.BytesIO(raw))
        assert set(weights.column("key").to_pylist()) <= {"m1_000", "m1_001"}
        assert fs.exists("/job-out/run/_splice_run.json")
        expected = sp.csr_matrix(fitted.transform(images_of(urls))[2:])
        rows = [0 if k == "m1_000" else 1 for k in weights.column("key").to_pylist()]
        got = sp.csr_matrix(
            (weights.column("weight").to_pylist(), (rows, weights.column("concept_index"))),
            shape=expected.shape,
        )
        assert_same_matrix(got, expected)
    finally:
        fs.rm("/job-in", recursive=True)
        fs.rm("/job-out", recursive=True)


def test_an_image_shard_with_a_few_bad_members(fitted, tmp_path):
    members = [("x.png", image_bytes(1)), ("x.cls", b"not a number"), ("y.txt", b"caption")]
    url = put(str(tmp_path / "odd.tar"), tar_bytes(members))
    summary = decompose_dataset([url], fitted, str(tmp_path / "out"), progress=False)
    assert summary.unreadable == 2 and summary.images == 0
    _, inputs = read_output(tmp_path / "out", [url])
    assert "not an integer" in inputs[0]["error"] and "no image" in inputs[1]["error"]


def test_resuming_with_an_unfitted_transformer_reuses_the_runs_mean(encoder, shards, tmp_path):
    out = str(tmp_path / "out")
    first = decompose_dataset(shards[:2], splice(encoder), out, progress=False)
    # a third shard joins: a mean fitted again would differ from the run's and be refused
    unfitted = splice(encoder)
    again = decompose_dataset(shards[:3], unfitted, out, progress=False)
    assert again.shards_skipped == 2 and again.shards_done == 1
    np.testing.assert_array_equal(again.transformer.mean_, first.transformer.mean_)
    assert unfitted.image_mean == "fit" and not hasattr(unfitted, "mean_")
    refitted = fit_dataset(shards[:3], unfitted, progress=False)
    with pytest.raises(RunMismatchError, match="'mean'"):
        decompose_dataset(shards[:3], refitted, out, progress=False)


def test_parameters_are_checked_before_anything_runs(encoder, fitted, shards, tmp_path):
    from sklearn.utils._param_validation import InvalidParameterError

    out = str(tmp_path / "out")
    with pytest.raises(InvalidParameterError, match="on_error"):
        decompose_dataset(shards[:1], fitted, out, on_error="ignore")
    with pytest.raises(InvalidParameterError, match="batch_size"):
        decompose_dataset(shards[:1], fitted, out, batch_size=0)
    with pytest.raises(ValueError, match="modality='text'"):
        decompose_dataset(shards[:1], splice(encoder, modality="text"), out)
    assert not os.path.exists(out)
