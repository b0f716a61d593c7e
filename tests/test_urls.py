"""Inputs by URL (fsspec): memory:// and S3 through s3fs against a local moto server."""

import socket

import numpy as np
import pytest

from sklearn_splice import (
    InputError,
    MissingInputError,
    OpenCLIPEncoder,
    SpliceTransformer,
    decompose_dataset,
)
from sklearn_splice._cache import input_key
from sklearn_splice._images import load_image
from test_shards import image_bytes, image_members, put, tar_bytes

fsspec = pytest.importorskip("fsspec")

WORDS = [f"word{i}" for i in range(30)]


@pytest.fixture
def memory_images():
    """Three PNG images at memory:// URLs, removed afterwards."""
    fs = fsspec.filesystem("memory")
    urls = [put(f"memory://url-images/img{k}.png", image_bytes(k)) for k in range(3)]
    yield urls
    fs.rm("/url-images", recursive=True)


@pytest.fixture(scope="module")
def encoder(tiny_clip):
    config, checkpoint = tiny_clip
    return OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu", batch_size=1)


def test_a_url_reads_like_a_file(memory_images, tmp_path):
    from PIL import Image

    local = tmp_path / "img0.png"
    local.write_bytes(image_bytes(0))
    from_url = np.asarray(load_image(memory_images[0]))
    np.testing.assert_array_equal(from_url, np.asarray(load_image(str(local))))
    np.testing.assert_array_equal(
        np.asarray(load_image(local.as_uri())), np.asarray(Image.open(local).convert("RGB"))
    )


def test_missing_and_unreadable_urls_are_input_errors(memory_images):
    with pytest.raises(MissingInputError) as info:
        load_image("memory://url-images/none.png", index=4)
    assert info.value.index == 4 and info.value.path == "memory://url-images/none.png"
    put("memory://url-images/text.png", b"not an image")
    with pytest.raises(InputError, match="could not be read as an image") as info:
        load_image("memory://url-images/text.png", index=2)
    assert info.value.path == "memory://url-images/text.png"


def test_a_protocol_without_its_package_says_what_to_install():
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip(reason="gcsfs is installed")
    with pytest.raises(ImportError, match="pip install gcsfs"):
        load_image("gs://bucket/image.png")


def test_url_cache_keys_follow_the_content(memory_images):
    url = memory_images[1]
    first = input_key(url, "image")
    assert first is not None and first.startswith(f"url:{url}:")
    assert input_key(url, "image") == first
    put(url, image_bytes(99, size=(30, 30)))  # new content
    assert input_key(url, "image") != first
    assert input_key("memory://url-images/none.png", "image") is None


def test_transform_of_urls_equals_transform_of_files(encoder, memory_images, tmp_path):
    paths = []
    for k in range(3):
        path = tmp_path / f"img{k}.png"
        path.write_bytes(image_bytes(k))
        paths.append(str(path))
    splice = SpliceTransformer(encoder, vocabulary=WORDS, l1_penalty=0.05, device="cpu")
    W_files = splice.fit_transform(paths)
    W_urls = splice.transform(memory_images)
    assert W_files.nnz > 0
    np.testing.assert_array_equal(W_urls.toarray(), W_files.toarray())
    # URLs are cached under their own keys (size and version from fsspec's info())
    assert len(list((tmp_path / "splice-cache" / "embeddings").rglob("*.npz"))) == 6


# -- S3 through s3fs against moto's server -----------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """storage_options for the moto server, with dummy credentials in the environment."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    # s3fs keeps one filesystem per set of arguments: drop any made under other settings
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    options = {"client_kwargs": {"endpoint_url": s3_endpoint}}
    fs = fsspec.filesystem("s3", **options)
    fs.mkdir("splice-test")
    yield options
    fs.rm("splice-test", recursive=True)
    fsspec.filesystem("s3", **options).invalidate_cache()


def test_shards_and_output_on_s3(encoder, s3, tmp_path):
    import io

    import pyarrow.parquet as pq

    fs = fsspec.filesystem("s3", **s3)
    urls = []
    for i in range(2):
        data = tar_bytes(image_members(f"s{i}", [10 + i, 20 + i], labels=[i, i]))
        fs.pipe_file(f"splice-test/shards/s{i}.tar", data)
        urls.append(f"s3://splice-test/shards/s{i}.tar")
    splice = SpliceTransformer(encoder, vocabulary=WORDS, l1_penalty=0.05, device="cpu")
    summary = decompose_dataset(
        "s3://splice-test/shards/*.tar",
        splice,
        "s3://splice-test/out",
        storage_options=s3,
        progress=False,
    )
    assert summary.images == 4 and summary.shards_done == 2
    fs.invalidate_cache()
    assert fs.exists("splice-test/out/_splice_run.json")
    weights, inputs = (
        pq.read_table(io.BytesIO(fs.cat_file(f"splice-test/out/{kind}/shard=s1/part-0.parquet")))
        for kind in ("weights", "inputs")
    )
    assert inputs.column("key").to_pylist() == ["s1_000", "s1_001"]
    assert set(weights.column("label").to_pylist()) == {1}

    # the same images read one by one through s3 URLs give the same weights
    for k, seed in enumerate([11, 21]):  # the seeds of shard s1's images
        fs.pipe_file(f"splice-test/images/s1_{k}.png", image_bytes(seed))
    fitted = summary.transformer
    expected = fitted.transform(
        ["s3://splice-test/images/s1_0.png", "s3://splice-test/images/s1_1.png"]
    )
    rows = [inputs.column("key").to_pylist().index(k) for k in weights.column("key").to_pylist()]
    got = np.zeros(expected.shape)
    got[rows, weights.column("concept_index").to_numpy()] = weights.column("weight").to_numpy()
    np.testing.assert_allclose(got, expected.toarray(), rtol=0, atol=1e-12)

    # resume over S3 finds both shards done
    again = decompose_dataset(
        urls, fitted, "s3://splice-test/out", storage_options=s3, progress=False
    )
    assert again.shards_skipped == 2 and again.shards_done == 0

    with pytest.raises(MissingInputError) as info:
        fitted.transform(["s3://splice-test/images/none.png"])
    assert info.value.path == "s3://splice-test/images/none.png"
