import numpy as np
import pytest
from PIL import Image

from sklearn_splice._images import load_image


def test_paths_pil_and_arrays(tmp_path):
    arr = np.random.RandomState(0).randint(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    for item in (str(path), path, Image.fromarray(arr), arr):
        img = load_image(item)
        assert img.mode == "RGB" and img.size == (30, 20)
        np.testing.assert_array_equal(np.asarray(img), arr)


def test_modes_are_converted(tmp_path):
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))
    assert load_image(gray).mode == "RGB"
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 128)])
    assert load_image(rgba).mode == "RGB"
    sixteen = gray.astype(np.uint16) * 257
    path = tmp_path / "16bit.png"
    Image.fromarray(sixteen).save(path)
    img = np.asarray(load_image(path))
    # PIL's own conversion would clip everything above 255 to white
    np.testing.assert_array_equal(img[..., 0], gray)
    cmyk = Image.fromarray(np.dstack([gray] * 3)).convert("CMYK")
    assert load_image(cmyk).mode == "RGB"
    pal = Image.fromarray(np.dstack([gray] * 3)).convert("P")
    assert load_image(pal).mode == "RGB"


def test_missing_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Image 7 \(.*nope\.jpg\) does not exist"):
        load_image(str(tmp_path / "nope.jpg"), 7)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match=r"Image 2 \(.*notes\.jpg\) could not be read"):
        load_image(bad, 2)
    with pytest.raises(ValueError, match="is a directory"):
        load_image(tmp_path)


def test_bad_arrays_and_types():
    with pytest.raises(ValueError, match=r"shape \(4, 4, 3\) and dtype float64"):
        load_image(np.zeros((4, 4, 3)), 0)
    with pytest.raises(TypeError, match="Image 3 is a int"):
        load_image(5, 3)


def _save(tmp_path, name, img, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


def test_file_kinds_that_must_fail_name_index_and_path(tmp_path):
    photo = Image.fromarray(np.random.RandomState(0).randint(0, 256, (64, 64, 3), dtype=np.uint8))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    full = _save(tmp_path, "full.jpg", photo)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    text = tmp_path / "notes.png"
    text.write_text("hello")
    for i, path in enumerate([empty, truncated, text]):
        with pytest.raises(ValueError, match=rf"Image {i + 3} \({path}\) could not be read"):
            load_image(str(path), i + 3)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = _save(tmp_path, "big.png", Image.new("RGB", (300, 300)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100 // 2)  # 300x300 is > 2x the limit
    with pytest.raises(
        ValueError, match=r"Image 0 .*big\.png.*could not be read.*decompression bomb"
    ):
        load_image(str(path), 0)


def test_modes_saved_to_disk_convert(tmp_path):
    rgb = np.random.RandomState(1).randint(0, 256, (8, 8, 3), dtype=np.uint8)
    base = Image.fromarray(rgb)
    cases = {
        "gray.png": base.convert("L"),
        "rgba.png": base.convert("RGBA"),
        "cmyk.jpg": base.convert("CMYK"),
        "palette.png": base.convert("P"),
        "palette_transparent.png": base.convert("P"),
        "one.png": Image.new("RGB", (1, 1), (10, 20, 30)),
        "bits.png": base.convert("1"),
    }
    for name, img in cases.items():
        kw = {"transparency": 0} if name == "palette_transparent.png" else {}
        out = load_image(_save(tmp_path, name, img, **kw))
        assert out.mode == "RGB", name
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "one.png")), [[[10, 20, 30]]])
    gray = np.asarray(load_image(tmp_path / "gray.png"))
    assert (gray[..., 0] == gray[..., 1]).all()


def test_integer_images_are_read_on_one_fixed_16_bit_scale():
    flat = np.full((4, 4), 200, dtype=np.int32)
    brighter = flat.copy()
    brighter[0, 0] = 256
    a = np.asarray(load_image(Image.fromarray(flat, "I"), 0))
    b = np.asarray(load_image(Image.fromarray(brighter, "I"), 0))
    assert a[1, 1, 0] == b[1, 1, 0] == round(200 * 255 / 65535)
    too_big = flat.copy()
    too_big[0, 0] = 70000
    with pytest.raises(ValueError, match=r"Image 2 .*outside the 16-bit range"):
        load_image(Image.fromarray(too_big, "I"), 2)
