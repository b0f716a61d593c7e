import os
import signal
import threading

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from sklearn_splice._errors import InputError, MissingInputError  # noqa: E402
from sklearn_splice._image_reader import preprocessed_batches  # noqa: E402

BAD_KINDS = [
    "missing",
    "truncated_file",
    "fifo",
    "directory",
    "empty_array",
    "closed_pil",
    "lazy_truncated_pil",
]


def write_image(path, seed=0, size=(24, 20)):
    arr = np.random.RandomState(seed).randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return str(path)


def make_bad_input(kind, folder, tag=""):
    """An unreadable image input of the given kind, and the path its error must name."""
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / f"{kind}{tag}"
    if kind == "missing":
        path = str(base) + ".png"
        return path, path
    if kind in ("truncated_file", "lazy_truncated_pil"):
        path = write_image(str(base) + ".png", seed=3, size=(64, 64))
        data = open(path, "rb").read()
        with open(path, "wb") as fh:
            fh.write(data[: len(data) // 2])
        return (path, path) if kind == "truncated_file" else (Image.open(path), None)
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip(reason="no FIFOs on this platform")
        path = str(base) + ".png"
        os.mkfifo(path)  # opening it for reading would block until a writer comes
        return path, path
    if kind == "directory":
        path = str(base) + ".jpg"
        os.mkdir(path)
        return path, path
    if kind == "empty_array":
        return np.zeros((0, 0, 3), np.uint8), None
    if kind == "closed_pil":
        img = Image.open(write_image(str(base) + ".png", seed=4))
        img.load()
        img.close()
        return img, None
    raise AssertionError(kind)


@pytest.fixture
def no_hang():
    """Fails the test instead of hanging when a read blocks (a FIFO opened, say)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise TimeoutError("the read blocked")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def to_tensor(img):
    return torch.from_numpy(np.array(img.resize((8, 8)))).permute(2, 0, 1).float()


@pytest.fixture
def good_paths(tmp_path):
    return [write_image(tmp_path / f"good{i}.png", seed=i) for i in range(7)]


def collect(items, workers, skip, batch_size=3, preprocess=to_tensor):
    return list(preprocessed_batches(items, preprocess, batch_size, workers, skip))


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_batches_keep_input_order(good_paths, workers):
    expected = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in good_paths])
    batches = collect(good_paths, workers, skip=False)
    assert [start for start, _, _ in batches] == [0, 3, 6]
    assert all(failed == [] for _, _, failed in batches)
    assert [len(pixels) for _, pixels, _ in batches] == [3, 3, 1]
    torch.testing.assert_close(torch.cat([pixels for _, pixels, _ in batches]), expected)


# 7 inputs in batches of 3: position 0 opens a batch, 4 is inside one, 5 closes a full
# batch, 6 is the last input (a batch of its own).
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("position", [0, 4, 5, 6])
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_unreadable_input_raises_its_error_with_its_index(
    good_paths, tmp_path, kind, position, workers, no_hang
):
    items = list(good_paths)
    items[position], path = make_bad_input(kind, tmp_path / "bad")
    with pytest.raises(InputError) as info:
        collect(items, workers, skip=False)
    err = info.value
    assert err.index == position and err.kind == "Image"
    assert err.path == path
    assert isinstance(err, MissingInputError) == (kind == "missing")


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_skipped_inputs_are_returned_as_data(good_paths, tmp_path, kind, workers, no_hang):
    items = list(good_paths)
    bad_positions = [0, 4, 6]
    for k, position in enumerate(bad_positions):
        items[position], _ = make_bad_input(kind, tmp_path / "bad", tag=str(k))
    batches = collect(items, workers, skip=True)
    failed = [f for _, _, batch_failed in batches for f in batch_failed]
    assert [f.index for f in failed] == bad_positions
    assert all(isinstance(f, InputError) for f in failed)
    assert [start for start, _, _ in batches] == [0, 3, 6]
    assert [len(pixels) for _, pixels, _ in batches[:2]] == [2, 2]
    assert batches[2][1] is None  # the last batch held only an unreadable input
    good = [p for i, p in enumerate(items) if i not in bad_positions]
    expected = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in good])
    torch.testing.assert_close(torch.cat([b[1] for b in batches[:2]]), expected)


@pytest.mark.parametrize("workers", [0, 2])
def test_first_error_in_input_order_wins(good_paths, tmp_path, workers):
    items = list(good_paths)
    items[5] = str(tmp_path / "missing.png")
    items[2] = np.zeros((0, 4, 3), np.uint8)
    with pytest.raises(InputError) as info:
        collect(items, workers, skip=False)
    assert info.value.index == 2 and not isinstance(info.value, MissingInputError)


@pytest.mark.parametrize("workers", [0, 2])
def test_other_errors_are_not_skipped(good_paths, workers):
    def broken(img):
        raise RuntimeError("preprocessing bug")

    with pytest.raises(RuntimeError, match="preprocessing bug"):
        collect(good_paths, workers, skip=True, preprocess=broken)


def test_closing_early_stops_the_reading_threads(good_paths):
    batches = preprocessed_batches(good_paths * 10, to_tensor, 2, 3, False)
    next(batches)
    assert any(t.name.startswith("splice-read") for t in threading.enumerate())
    batches.close()
    assert not any(t.name.startswith("splice-read") for t in threading.enumerate())
