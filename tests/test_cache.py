import os

import numpy as np
import pytest

from sklearn_splice._cache import (
    cache_key,
    default_cache_dir,
    input_key,
    load_cached_array,
    save_cached_array,
)


def test_round_trip_and_no_temporary_files(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "sub" / "x.npz"
    save_cached_array(path, "k1", a)
    np.testing.assert_array_equal(load_cached_array(path, "k1"), a)
    assert [p.name for p in path.parent.iterdir()] == ["x.npz"]


def test_missing_file_is_none(tmp_path):
    assert load_cached_array(tmp_path / "none.npz", "k") is None


def test_other_key_is_rejected_and_removed(tmp_path):
    path = tmp_path / "x.npz"
    save_cached_array(path, "k1", np.ones(3))
    with pytest.warns(UserWarning, match="another key"):
        assert load_cached_array(path, "k2") is None
    assert not path.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_file_is_rejected(tmp_path, damage):
    path = tmp_path / "x.npz"
    save_cached_array(path, "k", np.ones((50, 8), dtype=np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00" * 100)
    with pytest.warns(UserWarning, match="Ignoring cache file"):
        assert load_cached_array(path, "k") is None


def test_checksum_catches_changed_values(tmp_path):
    path = tmp_path / "x.npz"
    save_cached_array(path, "k", np.ones(4))
    with np.load(path) as data:
        fields = dict(data)
    fields["array"] = fields["array"] * 2
    np.savez(path, **fields)
    with pytest.warns(UserWarning, match="checksum"):
        assert load_cached_array(path, "k") is None


def test_keys_do_not_collide():
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert cache_key("a") == cache_key("a")


def test_default_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SKLEARN_SPLICE_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("SKLEARN_SPLICE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "sklearn_splice"


def _hammer(path, n):
    import warnings

    a = np.arange(20000, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a partial file would warn; that must not happen
        for _ in range(n):
            save_cached_array(path, "k", a)
            got = load_cached_array(path, "k")
            assert got is None or np.array_equal(got, a)


def test_two_processes_filling_one_cache(tmp_path):
    import multiprocessing as mp

    path = tmp_path / "shared.npz"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(path, 40)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    np.testing.assert_array_equal(load_cached_array(path, "k"), np.arange(20000, dtype=np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["shared.npz"]


def test_input_keys_follow_content(tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    first = input_key(str(path), "image")
    assert first == input_key(path, "image")
    Image.fromarray(np.ones((5, 4, 3), np.uint8)).save(path)
    os.utime(path, ns=(1, 1))
    assert input_key(str(path), "image") != first
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 1
    assert input_key(a, "image") == input_key(a.copy(), "image") != input_key(b, "image")
    assert input_key(Image.fromarray(a), "image") != input_key(Image.fromarray(b), "image")
