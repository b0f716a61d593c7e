"""Tar shards read streaming: keys, members, damaged shards; run metadata; atomic writes."""

import io
import json
import tarfile

import numpy as np
import pytest

from sklearn_splice import InputError, MissingShardError, RunMismatchError, ShardError
from sklearn_splice._shards import (
    decode_embedding,
    decode_image,
    iter_samples,
    resolve_shards,
    shard_id,
)

pytest.importorskip("fsspec")


# -- writing shards (shared with test_dataset.py and test_urls.py) ---------------------------
def image_bytes(seed, fmt="PNG", size=(24, 20)):
    """A small random RGB image, encoded."""
    from PIL import Image

    pixels = np.random.RandomState(seed).randint(0, 256, size=(size[1], size[0], 3))
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def npy_bytes(vector):
    buf = io.BytesIO()
    np.save(buf, np.asarray(vector))
    return buf.getvalue()


def tar_bytes(members, mode="w"):
    """A tar file holding ``members``, a list of (name, bytes), in that order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def put(url, data):
    """Write ``data`` at a local path or fsspec URL."""
    import fsspec

    with fsspec.open(url, "wb") as fh:
        fh.write(data)
    return url


def image_members(prefix, seeds, labels=None):
    """(name, bytes) of one PNG per seed, keyed ``<prefix>_<k>``, with optional .cls."""
    members = []
    for k, seed in enumerate(seeds):
        key = f"{prefix}_{k:03d}"
        members.append((f"{key}.png", image_bytes(seed)))
        if labels is not None:
            members.append((f"{key}.cls", str(labels[k]).encode()))
    return members


@pytest.fixture
def memfs():
    """A clean fsspec memory filesystem for each test."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    yield fs
    fs.store.clear()


# -- shard ids -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url, expected",
    [
        ("s3://bucket/train/shard-000.tar", "shard-000"),
        ("/data/a.b.tar.gz", "a.b"),
        ("memory://x/part7.tgz", "part7"),
        ("https://host/path/shard-9.TAR", "shard-9"),
    ],
)
def test_shard_id_is_the_base_name_without_the_tar_suffix(url, expected):
    assert shard_id(url) == expected


def test_duplicate_shard_ids_name_both_urls():
    with pytest.raises(ValueError, match=r"s3://a/x\.tar and s3://b/x\.tar"):
        resolve_shards(["s3://a/x.tar", "s3://b/x.tar"])
    with pytest.raises(ValueError, match="No shards"):
        resolve_shards([])


def test_patterns_are_expanded_in_order(tmp_path):
    for name in ["b.tar", "a.tar", "c.txt"]:
        (tmp_path / name).write_bytes(b"")
    shards = resolve_shards(str(tmp_path / "*.tar"))
    assert [s.id for s in shards] == ["a", "b"]
    assert shards[0].url.endswith("a.tar")
    with pytest.raises(ValueError, match="matches no file"):
        resolve_shards(str(tmp_path / "*.zip"))


# -- samples ---------------------------------------------------------------------------------
def test_members_are_grouped_by_key_in_order(memfs):
    members = [
        ("dir/cat.png", image_bytes(0)),
        ("dir/cat.cls", b"3\n"),
        ("dir/cat.txt", b"a cat"),
        ("dir/cat.json", b"{}"),
        ("dir/dog.seg.png", image_bytes(1)),  # the key ends at the first dot
        ("README", b"no extension: not a sample"),
        ("emb.npy", npy_bytes(np.arange(4.0))),
    ]
    url = put("memory://shards/s0.tar", tar_bytes(members))
    samples = list(iter_samples(url))
    assert [s.key for s in samples] == ["dir/cat", "dir/dog", "emb"]
    assert [s.position for s in samples] == [0, 1, 2]
    cat, dog, emb = samples
    assert cat.label.strip() == "3" and cat.image == members[0][1] and cat.problem is None
    assert dog.image_name == "dir/dog.seg.png" and dog.label is None
    assert emb.image is None and emb.embedding is not None
    np.testing.assert_array_equal(decode_embedding(emb, url, 4), np.arange(4.0))


def test_gzipped_and_local_shards_read_the_same(tmp_path):
    members = image_members("k", [0, 1, 2])
    plain = put(str(tmp_path / "p.tar"), tar_bytes(members))
    gz = put(str(tmp_path / "g.tar.gz"), tar_bytes(members, mode="w:gz"))
    keys = [[(s.key, s.image) for s in iter_samples(u)] for u in (plain, gz)]
    assert keys[0] == keys[1] and len(keys[0]) == 3


def test_samples_without_a_single_image_say_why(memfs):
    members = [
        ("a.png", image_bytes(0)),
        ("a.jpg", image_bytes(1, fmt="JPEG")),
        ("b.txt", b"only a caption"),
    ]
    url = put("memory://shards/odd.tar", tar_bytes(members))
    a, b = iter_samples(url)
    assert "several image members" in a.problem
    assert "no image" in b.problem


def test_members_of_a_key_apart_are_an_error(memfs):
    members = [("a.png", image_bytes(0)), ("b.png", image_bytes(1)), ("a.cls", b"1")]
    url = put("memory://shards/apart.tar", tar_bytes(members))
    with pytest.raises(ShardError, match="memory://shards/apart.tar.*'a'") as info:
        list(iter_samples(url))
    assert info.value.url == url


def test_damaged_shards_are_errors_naming_the_url(memfs, tmp_path):
    whole = tar_bytes(image_members("k", [0, 1, 2, 3]))
    truncated = put("memory://shards/trunc.tar", whole[: len(whole) // 2])
    with pytest.raises(ShardError, match="memory://shards/trunc.tar") as info:
        list(iter_samples(truncated))
    assert not isinstance(info.value, MissingShardError)
    garbage = put(str(tmp_path / "garbage.tar"), b"this is not a tar file" * 100)
    with pytest.raises(ShardError, match="garbage.tar.*tar file"):
        list(iter_samples(garbage))
    with pytest.raises(MissingShardError, match="memory://shards/none.tar") as info:
        list(iter_samples("memory://shards/none.tar"))
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(MissingShardError, match="does not exist"):
        list(iter_samples(str(tmp_path / "none.tar")))


def test_shard_errors_survive_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(MissingShardError("s3://b/x.tar", "does not exist.")))
    assert isinstance(err, MissingShardError) and err.url == "s3://b/x.tar"


def test_decoding_errors_name_the_member(memfs):
    members = [("ok.png", image_bytes(0)), ("bad.jpg", b"\xff\xd8 not really a jpeg")]
    members += [("e.npy", npy_bytes(np.ones(3))), ("nan.npy", npy_bytes([np.nan, 0, 0]))]
    url = put("memory://shards/mixed.tar", tar_bytes(members))
    ok, bad, e, nan = iter_samples(url)
    assert decode_image(ok, url).mode == "RGB"
    with pytest.raises(InputError) as info:
        decode_image(bad, url)
    assert info.value.index == 1 and info.value.path == f"{url}#bad.jpg"
    with pytest.raises(InputError, match=r"shape \(4,\)"):
        decode_embedding(e, url, 4)
    with pytest.raises(InputError, match="NaN"):
        decode_embedding(nan, url, 3)


# -- run metadata and atomic writes ----------------------------------------------------------
def fitted(l1_penalty=0.1):
    """A fitted transformer on a hashing encoder (no model)."""
    from helpers import HashingEncoder

    from sklearn_splice import SpliceTransformer

    splice = SpliceTransformer(
        HashingEncoder(width=4),
        vocabulary=["a", "b", "c"],
        l1_penalty=l1_penalty,
        image_mean=np.array([0.5, 0.25, 0, 0]),
        exclude_concepts=["b"],
        device="cpu",
    )
    return splice.fit(np.ones((2, 4)))


def test_run_metadata_round_trip_and_same_run_rule(memfs):
    from sklearn_splice._files import url_to_fs
    from sklearn_splice._run_metadata import (
        check_same_run,
        read_run_metadata,
        run_metadata,
        write_run_metadata,
    )

    meta = run_metadata(fitted(), [("s0", "memory://in/s0.tar")])
    assert meta["format"] == "sklearn_splice.decomposition" and meta["format_version"] == 1
    assert meta["exclude_concepts"] == ["b"] and meta["n_features"] == 4
    assert meta["shards"] == [{"id": "s0", "url": "memory://in/s0.tar"}]
    assert meta["mean"] == [0.5, 0.25, 0.0, 0.0] and meta["output_dtype"] == "float64"
    fs, root = url_to_fs("memory://out/run")
    write_run_metadata(fs, root, meta)
    found = read_run_metadata("memory://out/run")
    assert found == json.loads(json.dumps(meta))
    # created, library_version and shards may differ within one run
    check_same_run({**meta, "created": "x", "library_version": "0", "shards": []}, found, "w")
    with pytest.raises(RunMismatchError, match="'l1_penalty'") as info:
        check_same_run(run_metadata(fitted(l1_penalty=0.2), []), found, "memory://out/run")
    assert info.value.key == "l1_penalty" and info.value.found == 0.1


def test_run_metadata_errors_name_the_folder(memfs):
    from sklearn_splice._run_metadata import read_run_metadata

    with pytest.raises(FileNotFoundError, match="memory://nothing"):
        read_run_metadata("memory://nothing")
    put("memory://other/_splice_run.json", b'{"format": "something else"}')
    with pytest.raises(ValueError, match="memory://other.*not sklearn_splice"):
        read_run_metadata("memory://other")
    put("memory://broken/_splice_run.json", b"{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_run_metadata("memory://broken")


def test_atomic_local_writes_leave_no_temporary_file(tmp_path):
    from sklearn_splice._files import url_to_fs, write_atomic

    fs, path = url_to_fs(str(tmp_path / "f.bin"))
    write_atomic(fs, path, b"one")
    write_atomic(fs, path, b"two")
    assert (tmp_path / "f.bin").read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
